//! The containerized control plane on the machine's Docker engine: images built from the
//! `kubeyard` binary and the host's etcd, every component in a container of its own on a
//! private network, kubectl against the published API server, and nothing left behind.

use crate::support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kubeyard_harness::containers::docker::Docker;
use kubeyard_harness::containers::{ClusterSpec, ContainerCluster};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use support::eventually;

const WITHIN: Duration = Duration::from_secs(60);

pub fn spec(nodes: usize) -> ClusterSpec {
    ClusterSpec {
        kubeyard_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_kubeyard"))),
        ..ClusterSpec::with_nodes(nodes)
    }
}

pub async fn boot(nodes: usize) -> ContainerCluster {
    ContainerCluster::boot(&spec(nodes), &|step: &str| eprintln!("{step}")).await.expect("the cluster boots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cluster_runs_workloads_answers_kubectl_and_leaves_nothing_behind() {
    let cluster = boot(2).await;
    let id = cluster.id().to_string();
    let client = cluster.client().unwrap();

    // Each node registered with its container's address and a /24 of the cluster network.
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(nodes.len(), 2);
    for (name, address) in cluster.nodes() {
        let node = nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name.as_str())).unwrap();
        let addresses = node.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
        assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == address.to_string()), "{addresses:?}");
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).unwrap_or_default();
        let [_, b, _, host] = address.octets();
        assert_eq!(cidr, format!("10.{b}.{}.0/24", host - 10));
    }

    // kubectl, through the kubeconfig, against the API server published on loopback.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let output = std::process::Command::new("kubectl")
        .args(["get", "nodes", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("node-1") && text.contains("Ready"), "{text}");

    // A Deployment converges: the scheduler, controllers and node agents are at work.
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default").create(&PostParams::default(), &deployment).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("four ready pods", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
        list.len() == 4
            && list.iter().all(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
    })
    .await;
    // Pod addresses come from their node's /24.
    for pod in pods.list(&ListParams::default().labels("app=web")).await.unwrap().items {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let (_, address) = cluster.nodes().into_iter().find(|(n, _)| *n == node).unwrap();
        let [_, b, _, host] = address.octets();
        assert!(ip.starts_with(&format!("10.{b}.{}.", host - 10)), "{ip} on {node}");
    }

    cluster.remove().await.unwrap();
    let docker = Docker::connect().await.unwrap();
    let label = format!("kubeyard.dev/cluster={id}");
    assert!(docker.containers_labelled(&label).await.unwrap().is_empty());
    assert!(docker.networks_labelled(&label).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_dropped_without_remove_is_removed_too() {
    let cluster = boot(1).await;
    let label = format!("kubeyard.dev/cluster={}", cluster.id());
    drop(cluster);
    let docker = Docker::connect().await.unwrap();
    assert!(docker.containers_labelled(&label).await.unwrap().is_empty());
    assert!(docker.networks_labelled(&label).await.unwrap().is_empty());
}

/// A plain HTTP GET from the host; the body, or why not.
pub fn http_get(url: &str) -> Result<String, String> {
    let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(3))).build().new_agent();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response.body_mut().read_to_string().map_err(|e| e.to_string())
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_pods_are_real_processes_with_probes_logs_and_restarts() {
    let cluster = boot(2).await;
    let client = cluster.client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let manifest = dir.path().join("echo.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: kubeyard/echo
        args: ["--text", "$(GREETING)"]
        env: [{name: GREETING, value: hello}]
        ports: [{name: http, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
        livenessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: echo, image: "kubeyard/echo:latest", args: ["--exit-after", "500ms", "--exit-code", "3"]}
"#,
    )
    .unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(applied.contains("deployment.apps/echo created"), "{applied}");

    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually("three ready echo pods", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=echo")).await.map(|l| l.items).unwrap_or_default();
        list.len() == 3 && list.iter().all(ready)
    })
    .await;
    // Each answers at its own address, with its own name: a process listening on the
    // pod's IP (the port from containerPort, through PORT).
    for pod in pods.list(&ListParams::default().labels("app=echo")).await.unwrap().items {
        let name = pod.metadata.name.clone().unwrap();
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap();
        let answer = http_get(&format!("http://{ip}:9000/")).unwrap();
        assert_eq!(answer.trim(), format!("{name} hello"), "$(GREETING) in args expands from env");
        let logs = kubectl(&kubeconfig, &["logs", &name]);
        assert!(logs.contains(&format!("{name} listening on {ip}:9000")) && logs.contains("GET / 200"), "{logs}");
    }

    // A container that exits with 3 is restarted with back-off: CrashLoopBackOff.
    eventually("the crasher in CrashLoopBackOff", WITHIN, || async {
        let Ok(pod) = pods.get("crasher").await else { return false };
        let status = pod.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next());
        status.is_some_and(|s| {
            let waiting = s.state.and_then(|s| s.waiting).and_then(|w| w.reason);
            let last = s.last_state.and_then(|l| l.terminated).map(|t| t.exit_code);
            waiting.as_deref() == Some("CrashLoopBackOff") && last == Some(3) && s.restart_count >= 1
        })
    })
    .await;
    let logs = kubectl(&kubeconfig, &["logs", "crasher"]);
    assert!(logs.contains("exiting with code 3, as told"), "{logs}");
    // Deleted, the pods stop (SIGTERM) and go.
    let deleted = kubectl(&kubeconfig, &["delete", "pod", "crasher", "--wait=true", "--timeout=30s"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    cluster.remove().await.unwrap();
}
