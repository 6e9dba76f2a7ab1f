//! Service accounts, as a cluster's pods and clients see them: every namespace gets its
//! `default` account and the `kube-root-ca.crt` ConfigMap; pods run as an account that
//! must exist and get its credentials mounted (`kube-api-access-*`); the API server
//! issues tokens (`kubectl create token`, the kubelet's TokenRequests) and takes them
//! while what they are bound to lives; and the `kubernetes` Service leads pods to it,
//! so a client inside a pod (kubectl's in-cluster configuration here) just works.

use crate::support::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use kube::api::{Api, LogParams};
use kubeyard_harness::controlplane::{Config, ControlPlane};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, text) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_as_accounts_whose_tokens_the_api_server_issues_and_takes_back() {
    let plane = ControlPlane::boot(Config { secure: true, ..Config::with_nodes(1) }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, plane.kubeconfig()).unwrap();
    let client = plane.client();

    // The API server's own Service, at the range's first address.
    let master = Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await.unwrap();
    let spec = master.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 443));

    // A new namespace gets its default account and the cluster's CA.
    ok(&kubeconfig, &["create", "namespace", "shop"]);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    eventually("shop's default account and root CA", WITHIN, || async {
        accounts.get_opt("default").await.ok().flatten().is_some()
            && maps.get_opt("kube-root-ca.crt").await.ok().flatten().is_some()
    })
    .await;
    let ca = maps.get("kube-root-ca.crt").await.unwrap().data.unwrap()["ca.crt"].clone();
    assert!(ca.contains("BEGIN CERTIFICATE") && plane.kubeconfig().contains("certificate-authority-data"), "{ca}");
    // Deleted, it comes back.
    ok(&kubeconfig, &["delete", "serviceaccount", "default", "-n", "shop"]);
    eventually("the default account made again", WITHIN, || async {
        accounts.get_opt("default").await.ok().flatten().is_some()
    })
    .await;

    // A pod runs as `default`, with the credentials mounted in every container.
    ok(&kubeconfig, &["run", "web", "-n", "shop", "--image=nginx:1.25"]);
    let pod = Api::<Pod>::namespaced(client.clone(), "shop").get("web").await.unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume = spec.volumes.unwrap().into_iter().find(|v| v.name.starts_with("kube-api-access-")).unwrap();
    let sources = volume.projected.unwrap().sources.unwrap();
    assert_eq!(sources[0].service_account_token.as_ref().unwrap().expiration_seconds, Some(3607));
    assert_eq!(sources[1].config_map.as_ref().unwrap().name, "kube-root-ca.crt");
    let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str(), mount.read_only),
        (volume.name.as_str(), "/var/run/secrets/kubernetes.io/serviceaccount", Some(true))
    );

    // An account that does not exist: refused, in Kubernetes' words.
    let (refused, text) = kubectl(
        &kubeconfig,
        &[
            "run",
            "lost",
            "-n",
            "shop",
            "--image=nginx:1.25",
            "--overrides",
            r#"{"spec":{"serviceAccountName":"robot"}}"#,
        ],
    );
    assert!(!refused, "{text}");
    assert!(
        text.contains(
            r#"pods "lost" is forbidden: error looking up service account shop/robot: serviceaccount "robot" not found"#
        ),
        "{text}"
    );
    // An account that opts out of automounting: no volume.
    ok(&kubeconfig, &["create", "serviceaccount", "robot", "-n", "shop"]);
    ok(
        &kubeconfig,
        &["patch", "serviceaccount", "robot", "-n", "shop", "-p", r#"{"automountServiceAccountToken":false}"#],
    );
    ok(
        &kubeconfig,
        &[
            "run",
            "quiet",
            "-n",
            "shop",
            "--image=nginx:1.25",
            "--overrides",
            r#"{"spec":{"serviceAccountName":"robot"}}"#,
        ],
    );
    let quiet = Api::<Pod>::namespaced(client.clone(), "shop").get("quiet").await.unwrap();
    assert!(quiet.spec.unwrap().volumes.unwrap_or_default().is_empty());

    // Tokens: issued to kubectl, taken instead of the cluster's own token.
    let token = ok(&kubeconfig, &["create", "token", "robot", "-n", "shop"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let as_robot = format!("--token={token}");
    assert!(ok(&kubeconfig, &[&as_robot, "get", "pods", "-n", "shop", "-o", "name"]).contains("pod/web"));
    let (short, text) = kubectl(&kubeconfig, &["create", "token", "robot", "-n", "shop", "--duration=1m"]);
    assert!(!short && text.contains("may not specify a duration less than 10 minutes"), "{text}");
    let (missing, text) = kubectl(&kubeconfig, &["create", "token", "nobody", "-n", "shop"]);
    assert!(!missing && text.contains(r#"serviceaccounts "nobody" not found"#), "{text}");

    // A token bound to a pod dies with it; one of a deleted account dies with it.
    let bound = ok(
        &kubeconfig,
        &["create", "token", "default", "-n", "shop", "--bound-object-kind=Pod", "--bound-object-name=web"],
    );
    let as_web = format!("--token={}", bound.trim());
    ok(&kubeconfig, &[&as_web, "get", "pods", "-n", "shop"]);
    ok(&kubeconfig, &["delete", "pod", "web", "-n", "shop", "--grace-period=0", "--force"]);
    eventually("the pod gone", WITHIN, || async {
        Api::<Pod>::namespaced(client.clone(), "shop").get_opt("web").await.ok().flatten().is_none()
    })
    .await;
    let (taken, text) = kubectl(&kubeconfig, &[&as_web, "get", "pods", "-n", "shop"]);
    assert!(!taken && text.contains("Unauthorized"), "{text}");
    ok(&kubeconfig, &["delete", "serviceaccount", "robot", "-n", "shop"]);
    let (taken, text) = kubectl(&kubeconfig, &[&as_robot, "get", "pods", "-n", "shop"]);
    assert!(!taken && text.contains("Unauthorized"), "{text}");
}

/// kubectl's own binary (static, from the machine) in the busybox test image: a client
/// that finds the API server from inside a pod by its in-cluster configuration alone.
const KUBECTL_IMAGE: &str = "kubeyard/test-kubectl:1";

async fn kubectl_image(docker: &kubeyard_harness::containers::docker::Docker) {
    if docker.has_image(KUBECTL_IMAGE).await.unwrap() {
        return;
    }
    kubeyard_harness::containers::image::busybox(docker, crate::user_images::IMAGE).await.unwrap();
    let binary = std::fs::read(std::fs::canonicalize(which("kubectl")).unwrap()).unwrap();
    let mut context = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM {}\nCOPY kubectl /bin/kubectl\n", crate::user_images::IMAGE);
    for (path, bytes, mode) in [("Dockerfile", dockerfile.as_bytes(), 0o644), ("kubectl", &binary[..], 0o755)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        context.append_data(&mut header, path, bytes).unwrap();
    }
    docker.build(KUBECTL_IMAGE, context.into_inner().unwrap()).await.unwrap();
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).expect("on the PATH")
}

const IN_CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api-client}
spec:
  containers:
  - name: client
    image: kubeyard/test-kubectl:1
    imagePullPolicy: Never
    command: ["/bin/sh", "-c"]
    args: ["until kubectl get pods -o name; do sleep 1; done; exec sleep 3600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_a_pod_reaches_the_api_server_with_its_mounted_credentials() {
    let docker = kubeyard_harness::containers::docker::Docker::connect().await.unwrap();
    kubectl_image(&docker).await;
    let cluster = crate::containers::boot(1).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    std::fs::write(dir.path().join("pod.yaml"), IN_CLUSTER).unwrap();
    ok(&kubeconfig, &["apply", "-f", dir.path().join("pod.yaml").to_str().unwrap()]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");

    // kubectl in the pod: KUBERNETES_SERVICE_HOST and _PORT, the mounted token and CA,
    // through the `kubernetes` Service to the API server, whose certificate names it.
    eventually("kubectl in the pod listed the pods", Duration::from_secs(90), || async {
        let logs = pods.logs("api-client", &LogParams::default()).await.unwrap_or_default();
        logs.contains("pod/api-client")
    })
    .await;
    let exec = |script: &str| ok(&kubeconfig, &["exec", "api-client", "--", "sh", "-c", script]);
    assert_eq!(exec("echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT").trim(), "10.96.0.1:443");
    let mounted = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(exec(&format!("cat {mounted}/namespace")).trim(), "default");
    assert!(exec(&format!("cat {mounted}/ca.crt")).contains("BEGIN CERTIFICATE"));
    // The token is the account's, bound to this pod: good from the host too, until the
    // pod is deleted.
    let token = exec(&format!("cat {mounted}/token"));
    let as_pod = format!("--token={}", token.trim());
    assert!(ok(&kubeconfig, &[&as_pod, "get", "pod", "api-client", "-o", "name"]).contains("pod/api-client"));
    ok(&kubeconfig, &["delete", "pod", "api-client", "--grace-period=1"]);
    eventually("the pod gone", Duration::from_secs(60), || async {
        pods.get_opt("api-client").await.ok().flatten().is_none()
    })
    .await;
    let (taken, text) = kubectl(&kubeconfig, &[&as_pod, "get", "pods"]);
    assert!(!taken && text.contains("Unauthorized"), "{text}");
}
