//! kubectl 1.32, the real client, against `kubeyard apiserver` started as users start
//! it: apply, get, describe, scale, patch, delete and get -w.

use crate::support;
use crate::support::kubectl::Kubectl;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Cluster {
    _server: support::api::Process,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = support::api::Process::start(&dir.path().join("kubeconfig"), extra);
        Cluster { _server: server, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn client(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig(), self.dir.path())
    }

    fn command(&self, args: &[&str]) -> Command {
        self.client().command(args)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.client().run(args)
    }

    /// Runs kubectl and returns its standard output, failing the test if it fails.
    fn ok(&self, args: &[&str]) -> String {
        self.client().ok(args)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
";

fn kubectl_available() -> bool {
    Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success())
}

#[test]
fn kubectl_applies_reads_changes_and_deletes() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let manifests = cluster.write("app.yaml", APP);
    let applied = cluster.ok(&["apply", "-f", &manifests]);
    assert_eq!(
        applied.lines().collect::<Vec<_>>(),
        ["deployment.apps/web created", "service/web created", "configmap/settings created"]
    );
    let again = cluster.ok(&["apply", "-f", &manifests]);
    assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");
    let changed = cluster.write("app.yaml", &APP.replace("nginx:1.25", "nginx:1.26"));
    let reapplied = cluster.ok(&["apply", "-f", &changed]);
    assert!(reapplied.contains("deployment.apps/web configured"), "{reapplied}");
    assert_eq!(
        cluster.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"
        ]),
        "nginx:1.26 2"
    );

    // get: tables, all namespaces, YAML, label selectors.
    let table = cluster.ok(&["get", "deployments"]);
    assert!(table.starts_with("NAME") && table.contains("web"), "{table}");
    let everywhere = cluster.ok(&["get", "configmaps", "-A"]);
    assert!(everywhere.starts_with("NAMESPACE") && everywhere.contains("settings"), "{everywhere}");
    let yaml = cluster.ok(&["get", "service", "web", "-o", "yaml"]);
    assert!(yaml.contains("kind: Service") && yaml.contains("sessionAffinity: None"), "{yaml}");
    let selected = cluster.ok(&["get", "deploy,svc,cm", "-l", "app=web", "-o", "name"]);
    assert_eq!(selected.lines().collect::<Vec<_>>(), ["deployment.apps/web", "service/web"]);
    let described = cluster.ok(&["describe", "deployment", "web"]);
    assert!(described.contains("Name:") && described.contains("nginx:1.26"), "{described}");

    // scale and patch, each kind of patch.
    assert!(cluster.ok(&["scale", "deployment", "web", "--replicas=5"]).contains("scaled"));
    cluster.ok(&["patch", "deployment", "web", "-p", r#"{"metadata":{"labels":{"patched":"strategic"}}}"#]);
    cluster.ok(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"paused":true}}"#]);
    cluster.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
    ]);
    assert_eq!(
        cluster.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.paused} {.metadata.labels.patched} {.metadata.labels.json}"
        ]),
        "5 true strategic yes"
    );

    // An invalid object is refused with the field named; kubectl, finding the server's
    // OpenAPI documents, leaves validation to the server (no --validate=false needed).
    let bad = cluster.write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n");
    let refused = cluster.kubectl(&["apply", "-f", &bad]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is invalid") && stderr.contains("metadata.name"), "{stderr}");
    // Values the schemas allow and the API server does not, in its words: a Job's pods
    // default to restarting Always, which a Job may not.
    let job = cluster.write(
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox, imagePullPolicy: always}]\n",
    );
    let refused = cluster.kubectl(&["apply", "-f", &job]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("The Job \"once\" is invalid: \n"), "{stderr}");
    assert!(
        stderr.contains("\n* spec.template.spec.containers[0].imagePullPolicy: Unsupported value: \"always\": supported values: \"Always\", \"IfNotPresent\", \"Never\"\n"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("\n* spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"\n"),
        "{stderr}"
    );
    let typo = cluster.write("typo.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndatta: {a: b}\n");
    let refused = cluster.kubectl(&["apply", "-f", &typo]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown field \"datta\""), "{refused:?}");
    let explained = cluster.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("replicas <integer>"), "{explained}");
    // With the API's prose, as a real server publishes it: a field's own words above its
    // type's.
    let explained = cluster.ok(&["explain", "pod.spec"]);
    let described = "DESCRIPTION:\n    Specification of the desired behavior of the pod.";
    assert!(explained.contains(described), "{explained}");
    assert!(explained.contains("PodSpec is a description of a pod."), "{explained}");
    // An enum's values, which a live server lists and the published documents leave out.
    let restart = "  restartPolicy\t<string>\n  enum: Always, Never, OnFailure\n    Restart policy for all containers";
    assert!(explained.contains(restart), "{explained}");
    // A CRD's own schema type has a field named `$ref`: explained as a field, not a reference.
    let explained = cluster.ok(&["explain", "crd.spec.versions.schema.openAPIV3Schema"]);
    assert!(explained.contains("$ref\t<string>") && explained.contains("x-kubernetes-validations"), "{explained}");

    assert!(cluster.ok(&["delete", "-f", &changed]).contains("deployment.apps \"web\" deleted"));
    let gone = cluster.kubectl(&["get", "deploy", "web"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{gone:?}");
}

/// kubectl's generators (`create`, `expose`, `run`) send protobuf bodies, not JSON.
#[test]
fn kubectl_create_expose_and_run_send_protobuf_and_are_understood() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let created = [
        cluster.ok(&["create", "namespace", "shop"]),
        // No controller manager runs beside this API server: a namespace's `default`
        // account is made by hand, or its pods are refused (as kube-apiserver does).
        cluster.ok(&["create", "serviceaccount", "default", "-n", "shop"]),
        cluster.ok(&["create", "configmap", "settings", "-n", "shop", "--from-literal=mode=fast"]),
        cluster.ok(&["create", "secret", "generic", "token", "-n", "shop", "--from-literal=key=hello"]),
        cluster.ok(&["create", "deployment", "web", "-n", "shop", "--image=nginx:1.25", "--replicas=2", "--port=80"]),
        cluster.ok(&["expose", "deployment", "web", "-n", "shop", "--port=80", "--type=NodePort"]),
        cluster.ok(&["run", "one", "-n", "shop", "--image=nginx:1.25", "--labels=app=one", "--port=8080"]),
        cluster.ok(&["create", "job", "once", "-n", "shop", "--image=busybox", "--", "echo", "hi"]),
        cluster.ok(&["create", "role", "reader", "-n", "shop", "--verb=get", "--resource=pods"]),
        cluster.ok(&["create", "ingress", "front", "-n", "shop", "--rule=shop.example/=web:80"]),
    ];
    assert_eq!(
        created.iter().map(|line| line.trim()).collect::<Vec<_>>(),
        [
            "namespace/shop created",
            "serviceaccount/default created",
            "configmap/settings created",
            "secret/token created",
            "deployment.apps/web created",
            "service/web exposed",
            "pod/one created",
            "job.batch/once created",
            "role.rbac.authorization.k8s.io/reader created",
            "ingress.networking.k8s.io/front created",
        ]
    );
    // What was sent arrived whole: the secret's bytes, the deployment's port, the
    // service's ports with nothing that Go wrote only because it writes every field.
    let get = |args: &[&str]| cluster.ok(&[&["get", "-n", "shop"][..], args].concat());
    assert_eq!(get(&["secret", "token", "-o", "jsonpath={.data.key}"]), "aGVsbG8=");
    assert_eq!(
        get(&["deployment", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports}"]),
        r#"2 [{"containerPort":80,"protocol":"TCP"}]"#
    );
    let service =
        get(&["service", "web", "-o", "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort}"]);
    assert_eq!(service, "NodePort 80 80");
    assert_eq!(get(&["configmap", "settings", "-o", "jsonpath={.data.mode}"]), "fast");
    assert_eq!(get(&["pod", "one", "-o", "jsonpath={.metadata.labels.app}"]), "one");
}

#[test]
fn kubectl_get_watch_sees_a_change() {
    let cluster = Cluster::start(&[]);
    let manifests = cluster.write("app.yaml", APP);
    cluster.ok(&["apply", "-f", &manifests]);
    let mut watch = cluster
        .command(&["get", "configmap", "settings", "-w", "--output-watch-events", "--request-timeout=60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("EVENT"), "{first}");
    let initial = lines.next().unwrap().unwrap();
    let columns = |line: &str| line.split_whitespace().take(3).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(columns(&initial), ["ADDED", "settings", "1"], "{initial}");
    cluster.ok(&["patch", "configmap", "settings", "-p", r#"{"data":{"extra":"1"}}"#]);
    let change = lines.next().unwrap().unwrap();
    assert_eq!(columns(&change), ["MODIFIED", "settings", "2"], "{change}");
    let _ = watch.kill();
    let _ = watch.wait();
}

/// A second `kubectl apply` of the same files: everything `unchanged`, but for a Secret
/// written with `stringData`, which kubectl reports `configured` on every apply against a
/// real cluster too (kubernetes/kubernetes#87736): the server moves `stringData` into `data`, so the last-applied
/// configuration always has a field the live object lacks and the patch is never empty.
fn unchanged_but_string_data(output: &str) -> bool {
    output.lines().all(|l| l.ends_with(" unchanged") || l == "secret/payments-credentials configured")
        && output.lines().filter(|l| l.ends_with(" unchanged")).count() == 29
}

#[test]
fn kubectl_applies_a_whole_application_and_finds_nothing_to_change_the_second_time() {
    let cluster = Cluster::start(&[]);
    let app = support::storefront().display().to_string();
    let first = cluster.ok(&["apply", "-f", &app]);
    assert!(first.lines().count() == 30 && first.lines().all(|l| l.ends_with(" created")), "{first}");
    let second = cluster.ok(&["apply", "-f", &app]);
    assert!(unchanged_but_string_data(&second), "{second}");
    let deployments = cluster.ok(&["get", "deployments", "-o", "name"]);
    assert_eq!(deployments.lines().count(), 10, "{deployments}");
}

/// kubectl sends credentials only over TLS (client-go's clientcmd drops them for plain
/// HTTP): over HTTP a token shuts kubectl out, over `--tls` kubectl gets in with it.
#[test]
fn a_token_over_tls_lets_kubectl_in_and_keeps_others_out() {
    let plain = Cluster::start(&["--token", "t0ken"]);
    let refused = plain.kubectl(&["get", "ns"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("provide credentials"), "{refused:?}");

    let cluster = Cluster::start(&["--token", "t0ken", "--tls"]);
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).unwrap();
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:") && kubeconfig.contains("certificate-authority-data: "),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("token: \"t0ken\""), "{kubeconfig}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cluster.kubeconfig()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(cluster.ok(&["get", "namespaces", "-o", "name"]).contains("namespace/default"));
    let manifests = cluster.write("app.yaml", APP);
    cluster.ok(&["apply", "-f", &manifests]);
    let wrong = cluster.write("wrong-kubeconfig", &kubeconfig.replace("token: \"t0ken\"", "token: \"nope\""));
    // kubectl words a 401 by where it met it: during discovery (a fresh cache) it says the
    // server asked for credentials; with discovery cached it quotes the Status' message, as
    // against a real API server. Each gets its own cache directory so neither depends on
    // what another test left in ~/.kube/cache for a reused port.
    let fresh = cluster.dir.path().join("fresh-cache").display().to_string();
    let refused =
        Command::new("kubectl").args(["--kubeconfig", &wrong, "--cache-dir", &fresh, "get", "ns"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("provide credentials"), "{refused:?}");
    let cached = cluster.dir.path().join("cache").display().to_string();
    let refused =
        Command::new("kubectl").args(["--kubeconfig", &wrong, "--cache-dir", &cached, "get", "ns"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("You must be logged in to the server (Unauthorized)"),
        "{refused:?}"
    );
}

#[test]
fn kubectl_against_a_server_that_keeps_state_in_etcd() {
    let etcd = support::etcd::Etcd::start();
    let cluster = Cluster::start(&["--etcd", &etcd.url]);
    let app = support::storefront().display().to_string();
    let first = cluster.ok(&["apply", "-f", &app]);
    assert!(first.lines().all(|l| l.ends_with(" created")), "{first}");
    let second = cluster.ok(&["apply", "-f", &app]);
    assert!(unchanged_but_string_data(&second), "{second}");
    cluster.ok(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    let mut watch = cluster
        .command(&["get", "deployments", "-w", "--output-watch-events", "--request-timeout=60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // A header, then the ten deployments that exist.
    for _ in 0..11 {
        lines.next().unwrap().unwrap();
    }
    cluster.ok(&["delete", "deployment", "traffic"]);
    let deleted = lines.next().unwrap().unwrap();
    assert!(deleted.starts_with("DELETED") && deleted.contains("traffic"), "{deleted}");
    let _ = watch.kill();
    let _ = watch.wait();
}

/// kubectl with a CustomResourceDefinition, as an operator author uses it: apply the CRD
/// and an object of its kind at once, find it by plural, short name and category, read its
/// schema with `explain`, change its status through the subresource, refuse a bad one in
/// the API server's words, and delete the CRD, which takes the kind with it.
#[test]
fn kubectl_serves_a_custom_resource_from_its_crd() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let fixtures = support::workspace().join("fixtures/crds/widgets");
    // As on a real cluster, kubectl maps every object before the CRD it applies in the
    // same command is served: the CRD is created, its object refused.
    let both = format!("{},{}", fixtures.join("crd.yaml").display(), fixtures.join("widget.yaml").display());
    let together = cluster.kubectl(&["apply", "-f", &both]);
    let (stdout, stderr) = (String::from_utf8_lossy(&together.stdout), String::from_utf8_lossy(&together.stderr));
    assert!(stdout.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"), "{stdout}");
    assert!(stderr.contains("no matches for kind \"Widget\" in version \"example.com/v1\""), "{stderr}");
    let applied = cluster.ok(&["apply", "-f", &fixtures.join("widget.yaml").display().to_string()]);
    assert!(applied.contains("widget.example.com/gear created"), "{applied}");
    let listed = cluster.ok(&["get", "widgets"]);
    assert!(listed.starts_with("NAME") && listed.contains("SIZE") && listed.contains("COLOR"), "{listed}");
    assert!(listed.contains("gear") && listed.contains("red") && !listed.contains("READY"), "{listed}");
    assert!(cluster.ok(&["get", "widgets", "-o", "wide"]).contains("READY"));
    assert!(cluster.ok(&["get", "wd", "gear", "-o", "jsonpath={.spec.size}"]) == "3");
    assert!(cluster.ok(&["get", "all"]).contains("widget.example.com/gear"));
    let explained = cluster.ok(&["explain", "widget.spec.size"]);
    assert!(explained.contains("integer"), "{explained}");
    let crds = cluster.ok(&["get", "crd"]);
    assert!(crds.contains("CREATED AT") && crds.contains("widgets.example.com"), "{crds}");
    cluster.ok(&[
        "patch",
        "widget",
        "gear",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert_eq!(cluster.ok(&["get", "widget", "gear", "-o", "jsonpath={.status.ready}"]), "true");
    let scaled = cluster.ok(&["scale", "widget", "gear", "--replicas=4"]);
    assert!(scaled.contains("widget.example.com/gear scaled"), "{scaled}");
    assert_eq!(cluster.ok(&["get", "widget", "gear", "-o", "jsonpath={.spec.replicas}"]), "4");
    let refused = cluster.kubectl(&["apply", "-f", &fixtures.join("bad-widget.yaml").display().to_string()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("The Widget \"broken\" is invalid") && stderr.contains("spec.size"), "{stderr}");
    cluster.ok(&["delete", "crd", "widgets.example.com"]);
    // kubectl's discovery cache still knows the kind: the list is a 404, as on any cluster.
    let cached = cluster.kubectl(&["get", "widgets"]);
    let stderr = String::from_utf8_lossy(&cached.stderr);
    assert!(
        !cached.status.success() && stderr.contains("the server could not find the requested resource"),
        "{stderr}"
    );
    std::fs::remove_dir_all(cluster.dir.path().join("cache")).expect("the cache is there");
    let gone = cluster.kubectl(&["get", "widgets"]);
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        !gone.status.success() && stderr.contains("the server doesn't have a resource type \"widgets\""),
        "{stderr}"
    );
}

/// A ValidatingAdmissionPolicy as kubectl users meet it: a `Warn` binding's message printed
/// as `Warning:`, a `Deny` binding's refusal as the error, in Kubernetes' words.
#[test]
fn kubectl_meets_validating_admission_policies() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let fixtures = support::workspace().join("fixtures/admission-policies");
    let file = |name: &str| fixtures.join(name).display().to_string();
    let applied = cluster.ok(&["apply", "-f", &file("policy.yaml")]);
    assert!(
        applied.contains("validatingadmissionpolicy.admissionregistration.k8s.io/max-replicas created"),
        "{applied}"
    );
    let warned = cluster.kubectl(&["apply", "-f", &file("deployments.yaml")]);
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(warned.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding \
             'max-replicas-elsewhere': replicas 8 exceeds 5"
        ),
        "{stderr}"
    );
    let denied = cluster.kubectl(&["apply", "-f", &file("prod-deployment.yaml")]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    // kubectl prints a 422 from its causes, as it does against Kubernetes (whose docs show
    // the same `is invalid: : ValidatingAdmissionPolicy ...` line).
    assert!(
        stderr.contains(
            "The deployments \"wide\" is invalid: : ValidatingAdmissionPolicy 'max-replicas' with binding \
             'max-replicas-prod' denied request: replicas 8 exceeds 5"
        ),
        "{stderr}"
    );
    let listed = cluster.ok(&["get", "validatingadmissionpolicybindings"]);
    assert!(listed.contains("max-replicas-prod") && listed.contains("max-replicas-elsewhere"), "{listed}");
}

#[test]
fn kubectl_meets_admission_webhooks() {
    use base64::Engine;
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let answer = |response: serde_json::Value| serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    // Refuses ConfigMaps holding `forbidden`, as a policy webhook of an operator would.
    let guard = support::webhook::Webhook::start(move |review| {
        let request = &review["request"];
        if request["object"]["data"].get("forbidden").is_some() {
            let status = serde_json::json!({"code": 403, "reason": "Forbidden", "message": "forbidden data"});
            return answer(serde_json::json!({"uid": request["uid"], "allowed": false, "status": status}));
        }
        answer(serde_json::json!({"uid": request["uid"], "allowed": true}))
    });
    // Annotates every new ConfigMap.
    let annotate = support::webhook::Webhook::start(move |review| {
        let patch = r#"[{"op":"add","path":"/metadata/annotations","value":{"checked-by":"guard"}}]"#;
        let patch = base64::engine::general_purpose::STANDARD.encode(patch);
        answer(
            serde_json::json!({"uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch", "patch": patch}),
        )
    });
    let configurations = format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: guard
webhooks:
  - name: guard.example.com
    clientConfig:
      url: {url}/validate
      caBundle: {ca}
    rules:
      - operations: [CREATE, UPDATE]
        apiGroups: ['']
        apiVersions: [v1]
        resources: [configmaps]
    sideEffects: None
    admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: annotate
webhooks:
  - name: annotate.example.com
    clientConfig:
      url: {mutator}/mutate
      caBundle: {mutator_ca}
    rules:
      - operations: [CREATE]
        apiGroups: ['']
        apiVersions: [v1]
        resources: [configmaps]
    sideEffects: None
    admissionReviewVersions: [v1]
",
        url = guard.url,
        ca = guard.ca_bundle,
        mutator = annotate.url,
        mutator_ca = annotate.ca_bundle,
    );
    let file = cluster.write("webhooks.yaml", &configurations);
    let applied = cluster.ok(&["apply", "-f", &file]);
    assert!(applied.contains("validatingwebhookconfiguration.admissionregistration.k8s.io/guard created"), "{applied}");
    let listed = cluster.ok(&["get", "validatingwebhookconfigurations"]);
    assert!(listed.starts_with("NAME    WEBHOOKS   AGE\nguard   1 "), "{listed}");

    cluster.ok(&["create", "configmap", "fine", "--from-literal=a=1"]);
    let annotated = cluster.ok(&["get", "configmap", "fine", "-o", "jsonpath={.metadata.annotations.checked-by}"]);
    assert_eq!(annotated, "guard");
    let denied = cluster.kubectl(&["create", "configmap", "bad", "--from-literal=forbidden=x"]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    assert_eq!(
        stderr.trim(),
        r#"error: failed to create configmap: admission webhook "guard.example.com" denied the request: forbidden data"#
    );
}

/// kubectl moves an object between client-side and server-side apply as against a real
/// API server: the server lets `kubectl` take what its last-applied configuration set
/// (and keeps that annotation in step), and kubectl hands the client-side manager's
/// fields to its applier with a JSON patch of managedFields; and back again.
#[test]
fn kubectl_moves_objects_between_client_side_and_server_side_apply() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: color\ndata:\n  color: blue\n";
    let file = cluster.write("color.yaml", manifest);
    assert_eq!(cluster.ok(&["apply", "-f", &file]).trim(), "configmap/color created");
    let managed = |cluster: &Cluster| -> serde_json::Value {
        let text = cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.metadata.managedFields}"]);
        serde_json::from_str(&text).unwrap()
    };
    let before = managed(&cluster);
    assert_eq!(before[0]["manager"], "kubectl-client-side-apply", "{before}");
    assert_eq!(before[0]["operation"], "Update");
    // The client-side manager owns the color; kubectl's server-side apply of another
    // color is no conflict, and the client-side entry becomes kubectl's.
    let green = cluster.write("green.yaml", &manifest.replace("blue", "green"));
    assert_eq!(cluster.ok(&["apply", "--server-side", "-f", &green]).trim(), "configmap/color serverside-applied");
    assert_eq!(cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.data.color}"]), "green");
    let after = managed(&cluster);
    let managers: Vec<(&str, &str)> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()))
        .collect();
    // kubectl first applied the annotation alone as `kubectl-last-applied`, so that it is
    // not left without an owner.
    assert_eq!(managers, [("kubectl", "Apply"), ("kubectl-last-applied", "Apply")], "{after}");
    assert_eq!(after[0]["fieldsV1"], serde_json::json!({"f:data": {"f:color": {}}}));
    let annotation = cluster.ok(&[
        "get",
        "cm",
        "color",
        "-o",
        r#"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
    ]);
    assert!(annotation.contains(r#""color":"green""#), "the annotation follows the applies: {annotation}");
    // Another field manager is not kubectl: its conflict stands.
    let red = cluster.write("red.yaml", &manifest.replace("blue", "red"));
    let refused = cluster.kubectl(&["apply", "--server-side", "--field-manager=flux", "-f", &red]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains(r#"conflict with "kubectl": .data.color"#));
    // And back: a client-side apply of an object made server-side works, with kubectl's
    // warning that the annotation is missing.
    let made = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\ndata:\n  size: large\n";
    cluster.ok(&["apply", "--server-side", "-f", &cluster.write("made.yaml", made)]);
    let back = cluster.kubectl(&["apply", "-f", &cluster.write("back.yaml", &made.replace("large", "small"))]);
    assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
    assert!(
        String::from_utf8_lossy(&back.stderr)
            .contains("missing the kubectl.kubernetes.io/last-applied-configuration annotation")
    );
    assert_eq!(cluster.ok(&["get", "cm", "made", "-o", "jsonpath={.data.size}"]), "small");
}

#[test]
fn kubectl_applies_server_side_with_ownership_and_conflicts() {
    assert!(kubectl_available(), "kubectl 1.32 is part of every machine this project runs on");
    let cluster = Cluster::start(&[]);
    let manifest = "apiVersion: v1
kind: ConfigMap
metadata:
  name: color
  labels: {app: demo, tier: web}
data:
  color: blue
  size: large
";
    let file = cluster.write("color.yaml", manifest);
    // An apply creates the object, and records who applied what.
    assert_eq!(cluster.ok(&["apply", "--server-side", "-f", &file]).trim(), "configmap/color serverside-applied");
    let version = |cluster: &Cluster| cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.metadata.resourceVersion}"]);
    let first = version(&cluster);
    let managed = cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.metadata.managedFields}"]);
    let managed: serde_json::Value = serde_json::from_str(&managed).unwrap();
    assert_eq!(managed[0]["manager"], "kubectl");
    assert_eq!(managed[0]["operation"], "Apply");
    assert_eq!(
        managed[0]["fieldsV1"],
        serde_json::json!({"f:data": {"f:color": {}, "f:size": {}}, "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}}})
    );
    // Applying the same again changes nothing, not even the resourceVersion.
    cluster.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(version(&cluster), first);
    // Another manager's change, then an apply that would undo it: a conflict, as kubectl
    // prints it; forced, the applier takes the field back.
    cluster.ok(&[
        "patch",
        "cm",
        "color",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
        "--field-manager=ops",
    ]);
    let refused = cluster.kubectl(&["apply", "--server-side", "-f", &file]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.starts_with(r#"error: Apply failed with 1 conflict: conflict with "ops" using v1: .data.color"#),
        "{stderr}"
    );
    cluster.ok(&["apply", "--server-side", "--force-conflicts", "-f", &file]);
    assert_eq!(cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.data.color}"]), "blue");
    // Fields the applier drops, nobody else owning them, go; kubectl diff shows it first.
    let smaller = cluster.write("smaller.yaml", &manifest.replace("  size: large\n", "").replace(", tier: web", ""));
    let diff = cluster.kubectl(&["diff", "--server-side", "-f", &smaller]);
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(shown.contains("-  size: large") && shown.contains("-    tier: web"), "{shown}");
    cluster.ok(&["apply", "--server-side", "-f", &smaller]);
    let left = cluster.ok(&["get", "cm", "color", "-o", "jsonpath={.data}{.metadata.labels}"]);
    assert_eq!(left, r#"{"color":"blue"}{"app":"demo"}"#);
    // A scale through the subresource owns the replicas; an apply that disagrees conflicts.
    let deployment = cluster.write(
        "web.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.27}
",
    );
    cluster.ok(&["apply", "--server-side", "-f", &deployment]);
    cluster.ok(&["scale", "deployment", "web", "--replicas=5"]);
    let refused = cluster.kubectl(&["apply", "--server-side", "-f", &deployment]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with(
            r#"error: Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#
        ),
        "{stderr}"
    );
}
