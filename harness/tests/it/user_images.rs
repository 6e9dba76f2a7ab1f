//! Pods of the user's own images in a container cluster: an image built locally (busybox,
//! `FROM scratch`, no registry) runs as real containers in the host's engine, at the pod's
//! address, reached through a NodePort from the host and by the Service's name from
//! another pod; a crashing container restarts with CrashLoopBackOff; a container over its
//! memory limit is OOMKilled; an absent image is ErrImagePull, then ImagePullBackOff; and
//! nothing is left in the engine once the cluster is removed.

use crate::containers::{boot, http_get, service_serves};
use crate::support::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kubeyard_harness::containers::docker::Docker;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(90);
pub(crate) const IMAGE: &str = "kubeyard/test-busybox:2";
/// An image that does not exist when the test starts: tagged from IMAGE midway.
const LATE: &str = "kubeyard/test-late:1";

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "kubeyard/test-busybox:2", imagePullPolicy: IfNotPresent,
         env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}],
         command: ["/bin/sh", "-c"],
         args: ["mkdir -p /tmp/www && echo $(POD_NAME) > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
         ports: [{containerPort: 8080}],
         readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1},
         resources: {limits: {cpu: 200m, memory: 64Mi}}}
  replicas: 2
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - name: client
    image: kubeyard/test-busybox:2
    imagePullPolicy: Never
    args: ["-c", "until wget -q -O - http://web/; do sleep 1; done; exec sleep 3600"]
---
kind: Pod
apiVersion: v1
metadata: {name: crasher}
spec:
  containers:
  - {name: crasher, image: "kubeyard/test-busybox:2", imagePullPolicy: IfNotPresent,
     args: ["-c", "echo about to fail; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    args: ["-c", "head -c 400000000 /dev/zero | tail -n 1"]
    resources:
      limits: {memory: 32Mi}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: site}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: files, labels: {app: files}}
spec:
  volumes:
  - {name: site, configMap: {name: site}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - {name: shared, emptyDir: {}}
  initContainers:
  - {name: prepare, image: "kubeyard/test-busybox:2", imagePullPolicy: IfNotPresent,
     securityContext: {runAsUser: 1000}, volumeMounts: [{name: shared, mountPath: /shared}],
     args: ["-c", "echo prepared by $(id -u) > /shared/note"]}
  containers:
  - {name: web, image: "kubeyard/test-busybox:2", imagePullPolicy: IfNotPresent,
     args: ["-c", "exec httpd -f -p 8080 -h /www"],
     volumeMounts: [{name: site, mountPath: /www/site}, {name: info, mountPath: /www/info},
                    {name: shared, mountPath: /www/shared}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {MODE: from-map, LEVEL: debug}
---
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  containers:
  - name: main
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    envFrom: [{configMapRef: {name: settings}}]
    env: [{name: MODE, value: from-env}]
    args: ["-c", "echo MODE=$MODE LEVEL=$LEVEL WEB=$WEB_PORT; trap 'echo got TERM; exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      preStop: {exec: {command: ["/bin/sh", "-c", "echo pre-stop ran > /proc/1/fd/1; sleep 3"]}}
---
apiVersion: v1
kind: Pod
metadata: {name: sick}
spec:
  containers:
  - name: sick
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    args: ["-c", "echo healthy > /tmp/health; sleep 2; rm /tmp/health; exec sleep 3600"]
    livenessProbe: {exec: {command: [cat, /tmp/health]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  containers:
  - name: ticker
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    args: ["-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: layout}
spec:
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: site, configMap: {name: site}}
  - {name: host, hostPath: {path: /var/kubeyard-test, type: DirectoryOrCreate}}
  containers:
  - name: layout
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    args: ["-c", "echo in-subpath > /sub/file && echo mine > /own/file && echo greeting=$(cat /etc/greeting.txt) listed=$(ls /full/inner) own=$(ls /full/pods) && echo host > /host/mark && echo done; exec sleep 3600"]
    volumeMounts:
    - {name: scratch, mountPath: /sub, subPath: inner}
    - {name: scratch, mountPath: /own, subPathExpr: "pods/$(POD_NAME)"}
    - {name: scratch, mountPath: /full}
    - {name: site, mountPath: /etc/greeting.txt, subPath: greeting}
    - {name: host, mountPath: /host}
---
apiVersion: v1
kind: Pod
metadata: {name: repl}
spec:
  restartPolicy: Never
  containers:
  - name: repl
    image: kubeyard/test-busybox:2
    imagePullPolicy: IfNotPresent
    stdin: true
    stdinOnce: true
    args: ["-c", "while read line; do echo got: $line; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: late}
spec:
  containers:
  - {name: late, image: "kubeyard/test-late:1", imagePullPolicy: IfNotPresent, args: ["-c", "exec sleep 3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: absent}
spec:
  containers:
  - name: absent
    image: kubeyard/no-such-image:1
    imagePullPolicy: IfNotPresent
"#;

/// The first container's status, as JSON.
fn container_status(pod: &Pod) -> serde_json::Value {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
    statuses.first().map(|s| serde_json::to_value(s).unwrap()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_local_images_run_in_the_engine_serve_restart_and_are_removed() {
    let docker = Docker::connect().await.unwrap();
    kubeyard_harness::containers::image::busybox(&docker, IMAGE).await.expect("the test image builds");
    let _ = std::process::Command::new("docker").args(["rmi", LATE]).output();
    let cluster = boot(2).await;
    let id = cluster.id().to_string();
    let client = cluster.client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), cluster.kubeconfig()).unwrap();
    std::fs::write(dir.path().join("app.yaml"), APP).unwrap();
    let applied = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.path().join("config"))
        .args(["apply", "-f"])
        .arg(dir.path().join("app.yaml"))
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The web pods run for real: ready by their HTTP probe, each answering with its name.
    eventually("two ready web pods", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
        list.len() == 2 && list.iter().all(crate::containers::ready)
    })
    .await;
    service_serves(&cluster, "web", 2, 30090).await;
    let mut answered = std::collections::BTreeSet::new();
    for (node, address) in cluster.nodes() {
        for _ in 0..6 {
            let answer = http_get(&format!("http://{address}:30090/")).unwrap_or_else(|e| panic!("{node}: {e}"));
            answered.insert(answer.trim().to_string());
        }
    }
    assert!(answered.iter().all(|a| a.starts_with("web-")), "{answered:?}");
    let engine = docker.containers_labelled("io.kubernetes.pod.namespace=default").await.unwrap();
    assert!(engine.iter().any(|c| c.starts_with("k8s_web_web-")), "named as dockershim names them: {engine:?}");

    // Another pod reaches them by the Service's name: cluster DNS and the cluster IP
    // routed through its node's proxy, from its own network namespace.
    eventually("the client fetched the page", WITHIN, || async {
        let logs = pods.logs("client", &LogParams::default()).await.unwrap_or_default();
        logs.contains("web-")
    })
    .await;

    // kubectl exec (over WebSocket, v5.channel.k8s.io): output, errors, the exit code,
    // stdin; and kubectl cp both ways (tar through exec).
    let kubeconfig = dir.path().join("config");
    let kubectl_with = |env: &[(&str, &str)], args: &[&str], input: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let kubectl = |args: &[&str], input: Option<&str>| kubectl_with(&[], args, input);
    let (code, out, err) = kubectl(&["exec", "client", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"], None);
    assert_eq!((code, out.as_str()), (Some(3), "hi\n"), "{err}");
    assert!(err.contains("oops") && err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = kubectl(&["exec", "-i", "client", "--", "cat"], Some("through stdin\n"));
    assert_eq!((code, out.as_str()), (Some(0), "through stdin\n"), "{err}");
    // kubectl's fallback, SPDY, reaches the same session.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let (code, out, err) =
        kubectl_with(&spdy, &["exec", "client", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"], None);
    assert_eq!((code, out.as_str()), (Some(3), "hi\n"), "{err}");
    assert!(err.contains("oops") && err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = kubectl_with(&spdy, &["exec", "-i", "client", "--", "cat"], Some("over SPDY\n"));
    assert_eq!((code, out.as_str()), (Some(0), "over SPDY\n"), "{err}");
    let local = dir.path().join("note.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    let (code, _, err) = kubectl(&["cp", local.to_str().unwrap(), "client:/tmp/note.txt"], None);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = kubectl(&["exec", "client", "--", "cat", "/tmp/note.txt"], None);
    assert_eq!(out, "copied in\n");
    let back = dir.path().join("back.txt");
    let (code, _, err) = kubectl(&["cp", "client:/tmp/note.txt", back.to_str().unwrap()], None);
    assert_eq!((code, std::fs::read_to_string(&back).ok().as_deref()), (Some(0), Some("copied in\n")), "{err}");

    // The API server's proxy reaches a pod on its port and a Service's ready endpoints,
    // as `kubectl get --raw` asks them; a Service with no endpoints is a 503.
    let web = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    let web = web[0].metadata.name.clone().unwrap();
    let raw = |path: String| kubectl(&["get", "--raw", &path], None);
    let (code, out, err) = raw(format!("/api/v1/namespaces/default/pods/{web}:8080/proxy/"));
    assert_eq!((code, out.trim()), (Some(0), web.as_str()), "{err}");
    let (code, out, err) = raw("/api/v1/namespaces/default/services/web:80/proxy/?any=query".into());
    assert!(code == Some(0) && out.starts_with("web-"), "{out}{err}");
    let (code, _, err) = raw("/api/v1/namespaces/default/services/web:81/proxy/".into());
    assert!(code != Some(0) && err.contains("no service port 81 found for service \"web\""), "{err}");

    // kubectl port-forward serves the host: over SPDY in a WebSocket (kubectl 1.32's
    // way) and over plain SPDY (its fallback); a port nothing listens on is an error
    // kubectl prints. kube-rs forwards over channels.
    for websockets in ["true", "false"] {
        let mut forward = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["port-forward", &format!("pod/{web}"), ":8080", "--address", "127.0.0.1"])
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(forward.stdout.take().unwrap()));
        let first = lines.next().unwrap().unwrap();
        // "Forwarding from 127.0.0.1:40123 -> 8080"
        let local = first.split_whitespace().nth(2).unwrap_or_default().to_string();
        assert!(first.ends_with("-> 8080"), "{first}");
        for _ in 0..3 {
            assert_eq!(http_get(&format!("http://{local}/")).map(|a| a.trim().to_string()), Ok(web.clone()));
        }
        let _ = forward.kill();
        let _ = forward.wait();
    }
    let refused = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["port-forward", &format!("pod/{web}"), ":9999", "--address", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut refused = refused;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(refused.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let local = first.split_whitespace().nth(2).unwrap_or_default().to_string();
    assert!(http_get(&format!("http://{local}/")).is_err());
    let output = refused.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("connect: connection refused") && err.contains("lost connection to pod"), "{err}");
    let mut forwarder = pods.portforward(&web, &[8080]).await.unwrap();
    let mut stream = forwarder.take_stream(8080).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.") && answer.trim_end().ends_with(&web), "{answer}");
    drop(stream);
    let _ = forwarder.join().await;

    // kubectl logs -f follows a container as it writes.
    let mut follow = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()))
        .take(8)
        .map(Result::unwrap)
        .collect();
    let _ = follow.kill();
    let _ = follow.wait();
    let numbers: Vec<u32> = lines.iter().filter_map(|l| l.strip_prefix("tick ")?.parse().ok()).collect();
    assert!(numbers.len() == 8 && numbers.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");

    // kubectl attach: the container's own output from now on, and its standard input
    // (closed with kubectl's, as the container asks with stdinOnce).
    let mut attached = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["attach", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(attached.stdout.take().unwrap()))
        .take(3)
        .map(Result::unwrap)
        .collect();
    let _ = attached.kill();
    let _ = attached.wait();
    assert!(lines.iter().all(|l| l.starts_with("tick ")), "{lines:?}");
    eventually("the repl pod running", WITHIN, || async {
        pods.get("repl").await.is_ok_and(|p| container_status(&p)["state"]["running"].is_object())
    })
    .await;
    let (code, out, err) = kubectl(&["attach", "-i", "repl"], Some("hello\nworld\n"));
    assert_eq!((code, out.as_str()), (Some(0), "got: hello\ngot: world\n"), "{err}");

    // A failing liveness probe restarts the real container, with the kubelet's event.
    eventually("the sick pod restarted by its liveness probe", WITHIN, || async {
        let Ok(pod) = pods.get("sick").await else { return false };
        container_status(&pod)["restartCount"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let events = kubectl(&["get", "events", "--field-selector", "involvedObject.name=sick"], None).1;
    assert!(events.contains("Liveness probe failed") && events.contains("will be restarted"), "{events}");

    // A failing container restarts, with its last state and then CrashLoopBackOff.
    eventually("the crasher restarted", WITHIN, || async {
        let Ok(pod) = pods.get("crasher").await else { return false };
        let status = container_status(&pod);
        status["restartCount"].as_u64().unwrap_or(0) >= 1
            && status["lastState"]["terminated"]["exitCode"] == 3
            && status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let logs = pods.logs("crasher", &LogParams::default()).await.unwrap();
    assert!(logs.contains("about to fail"), "{logs}");

    // Over its memory limit, the kernel kills it: OOMKilled, 137.
    crate::support::eventually_showing("the hog was OOMKilled", WITHIN, || async {
        let pod = pods.get("hog").await.map_err(|e| e.to_string())?;
        let status = container_status(&pod);
        let terminated = &status["state"]["terminated"];
        if terminated["reason"] == "OOMKilled" && terminated["exitCode"] == 137 {
            return Ok(());
        }
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(pods.clone().into_client(), "default")
            .list(&ListParams::default().fields("involvedObject.name=hog"))
            .await
            .map(|l| l.items.into_iter().map(|e| format!("{:?}: {:?}", e.reason, e.message)).collect::<Vec<_>>())
            .unwrap_or_default();
        Err(format!("phase {:?}, container {status}, events {events:?}", pod.status.and_then(|s| s.phase)))
    })
    .await;

    // An image the engine does not have and cannot pull: ErrImagePull, then the back-off.
    eventually("the absent image backs off", WITHIN, || async {
        let Ok(pod) = pods.get("absent").await else { return false };
        container_status(&pod)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;
    let pod = pods.get("absent").await.unwrap();
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    // Built while the pod backs off (as a user runs `docker build`), the image is taken at
    // the next attempt.
    eventually("the late image backs off", WITHIN, || async {
        let Ok(pod) = pods.get("late").await else { return false };
        container_status(&pod)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;
    let tagged = std::process::Command::new("docker").args(["tag", IMAGE, LATE]).status().unwrap();
    assert!(tagged.success());
    eventually("the late pod running once its image is there", WITHIN, || async {
        let Ok(pod) = pods.get("late").await else { return false };
        container_status(&pod)["state"]["running"].is_object()
    })
    .await;
    let _ = std::process::Command::new("docker").args(["rmi", LATE]).output();

    // Volumes: a ConfigMap's keys, the downward API and an emptyDir an init container
    // (not root) wrote into, all as files; a change to the ConfigMap reaches the file.
    eventually("the files pod ready", WITHIN, || async {
        pods.get("files").await.is_ok_and(|p| crate::containers::ready(&p))
    })
    .await;
    let ip = pods.get("files").await.unwrap().status.and_then(|s| s.pod_ip).unwrap();
    let page = |path: &str| http_get(&format!("http://{ip}:8080/{path}"));
    assert_eq!(page("site/greeting").as_deref(), Ok("hello"));
    assert_eq!(page("info/labels").as_deref(), Ok("app=\"files\""));
    assert_eq!(page("shared/note").as_deref().map(str::trim), Ok("prepared by 1000"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let change = serde_json::json!({"data": {"greeting": "hello again"}});
    maps.patch("site", &PatchParams::default(), &Patch::Merge(change)).await.unwrap();
    eventually("the changed ConfigMap in the file", WITHIN, || async {
        page("site/greeting").as_deref() == Ok("hello again")
    })
    .await;

    // subPath mounts (a directory made in an emptyDir, one named by the pod's name through
    // subPathExpr, a ConfigMap's key as one file) and a hostPath directory.
    eventually("the layout pod printed what it found", WITHIN, || async {
        let logs = pods.logs("layout", &LogParams::default()).await.unwrap_or_default();
        logs.contains("done")
    })
    .await;
    let logs = pods.logs("layout", &LogParams::default()).await.unwrap();
    assert!(logs.contains("greeting=hello") && logs.contains("listed=file") && logs.contains("own=layout"), "{logs}");

    // envFrom, with env over it, and the Services' link variables; on deletion the
    // preStop hook runs before SIGTERM.
    eventually("the graceful pod printed its settings", WITHIN, || async {
        pods.logs("graceful", &LogParams::default())
            .await
            .is_ok_and(|l| l.contains("MODE=from-env LEVEL=debug WEB=tcp://"))
    })
    .await;
    pods.delete("graceful", &Default::default()).await.unwrap();
    eventually("the preStop hook ran, before SIGTERM", WITHIN, || async {
        let logs = pods.logs("graceful", &LogParams::default()).await.unwrap_or_default();
        assert!(!logs.contains("got TERM") || logs.contains("pre-stop ran"), "SIGTERM came first: {logs}");
        logs.contains("pre-stop ran") && !logs.contains("got TERM")
    })
    .await;

    let service = Api::<Service>::namespaced(client.clone(), "default").get("web").await.unwrap();
    assert!(service.spec.and_then(|s| s.cluster_ip).is_some());

    cluster.remove().await.unwrap();
    let left = docker.containers_labelled(&format!("kubeyard.dev/cluster={id}")).await.unwrap();
    assert!(left.is_empty(), "left in the engine: {left:?}");
}

/// The issue's proof: a two-tier app of a locally built image (a web tier reading a key
/// from a database pod through a Service by name) passes `kubeyard test --cluster
/// containers`, whose `http` and `exec` steps ask it through the web Service, its
/// NodePort and the pods themselves.
#[test]
fn a_two_tier_app_passes_its_http_and_exec_steps_in_containers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let docker = Docker::connect().await.unwrap();
        kubeyard_harness::containers::image::busybox(&docker, IMAGE).await.expect("the test image builds");
    });
    let output = crate::support::kubeyard(&["test", "--cluster", "containers", "fixtures/e2e-images/two-tier"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 test: 1 passed, 0 failed"), "{stdout}");
}
