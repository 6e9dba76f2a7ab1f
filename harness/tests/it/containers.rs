//! The containerized control plane on the machine's Docker engine: images built from the
//! `kubeyard` binary and the host's etcd, every component in a container of its own on a
//! private network, kubectl against the published API server, and nothing left behind.

use crate::support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kubeyard_harness::containers::docker::Docker;
use kubeyard_harness::containers::{ClusterSpec, ContainerCluster};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use support::{eventually, eventually_showing};

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
                 // An image the engine does not have: simulated, as asked.
                 "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"kubeyard.dev/simulate": ""}},
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

pub fn ready(pod: &Pod) -> bool {
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

    // A key of a ConfigMap not there yet: CreateContainerConfigError, tried again until
    // the ConfigMap appears, then the container starts with it (and a label, through the
    // downward API).
    let configured = dir.path().join("configured.yaml");
    std::fs::write(
        &configured,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: configured, labels: {tier: front}}
spec:
  containers:
  - name: echo
    image: kubeyard/echo
    args: ["--text", "$(GREETING) $(TIER)"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: greetings, key: morning}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    ports: [{containerPort: 9000}]
"#,
    )
    .unwrap();
    kubectl(&kubeconfig, &["apply", "-f", configured.to_str().unwrap()]);
    eventually("configured waiting for its ConfigMap", WITHIN, || async {
        let Ok(pod) = pods.get("configured").await else { return false };
        let status = pod.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next());
        let waiting = status.and_then(|s| s.state).and_then(|s| s.waiting);
        waiting.is_some_and(|w| {
            w.reason.as_deref() == Some("CreateContainerConfigError")
                && w.message.is_some_and(|m| m.contains("configmap \"greetings\""))
        })
    })
    .await;
    let greetings =
        serde_json::from_value(json!({"metadata": {"name": "greetings"}, "data": {"morning": "hi"}})).unwrap();
    Api::<ConfigMap>::namespaced(cluster.client().unwrap(), "default")
        .create(&PostParams::default(), &greetings)
        .await
        .unwrap();
    eventually("configured answering with its ConfigMap's value", WITHIN, || async {
        let Ok(pod) = pods.get("configured").await else { return false };
        let Some(ip) = pod.status.and_then(|s| s.pod_ip) else { return false };
        http_get(&format!("http://{ip}:9000/")).is_ok_and(|a| a.trim() == "configured hi front")
    })
    .await;
    // Deleted, the pods stop (SIGTERM) and go.
    let deleted = kubectl(&kubeconfig, &["delete", "pod", "crasher", "--wait=true", "--timeout=30s"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    cluster.remove().await.unwrap();
}

/// Three echo pods behind a NodePort Service, leaving a lost node after 2 s.
const ECHO_SERVICE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: echo
        image: kubeyard/echo
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
"#;

/// A cluster whose lost nodes are noticed in 6 s, running `ECHO_SERVICE`, converged.
async fn echo_cluster(nodes: usize) -> (ContainerCluster, tempfile::TempDir) {
    let mut spec = spec(nodes);
    spec.node_grace = Duration::from_secs(6);
    let cluster = ContainerCluster::boot(&spec, &|step: &str| eprintln!("{step}")).await.expect("the cluster boots");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), cluster.kubeconfig()).unwrap();
    std::fs::write(dir.path().join("echo.yaml"), ECHO_SERVICE).unwrap();
    let applied = kubectl(&dir.path().join("config"), &["apply", "-f", dir.path().join("echo.yaml").to_str().unwrap()]);
    assert!(applied.contains("service/echo created"), "{applied}");
    let client = cluster.client().unwrap();
    eventually("three ready echo pods", WITHIN, || echo_ready(&client, None)).await;
    service_serves(&cluster, "echo", 3, 30080).await;
    (cluster, dir)
}

/// Waits until the Service's endpoints list `ready` addresses and every node's proxy
/// answers at `node_port`. Ready pods reach the endpoints a moment later (the endpoints
/// controller follows the pods) and each node's proxy follows the endpoints through its
/// own watch, as kube-proxy does in Kubernetes, so neither is instant.
pub async fn service_serves(cluster: &ContainerCluster, service: &str, ready: usize, node_port: u16) {
    let client = cluster.client().unwrap();
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, "default");
    eventually(&format!("the {service} Service's endpoints list {ready}"), WITHIN, || async {
        let Ok(listed) = endpoints.get(service).await else { return false };
        let subsets = listed.subsets.unwrap_or_default();
        subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>() == ready
    })
    .await;
    for (node, address) in cluster.nodes() {
        eventually(&format!("{node} answers at NodePort {node_port}"), WITHIN, || async {
            let url = format!("http://{address}:{node_port}/");
            tokio::task::spawn_blocking(move || http_get(&url).is_ok()).await.unwrap_or(false)
        })
        .await;
    }
}

/// Three ready echo pods not being deleted, none on `avoiding`; with nothing to avoid,
/// no other echo pod either (a lost node's pods stay Terminating until its kubelet
/// confirms, as in Kubernetes).
async fn echo_ready(client: &kube::Client, avoiding: Option<&str>) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods.list(&ListParams::default().labels("app=echo")).await.map(|l| l.items).unwrap_or_default();
    let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let placed_well = live.iter().all(|p| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        ready(p) && (avoiding.is_none() || node != avoiding)
    });
    live.len() == 3 && placed_well && (avoiding.is_some() || list.len() == 3)
}

async fn node_ready(client: &kube::Client, name: &str) -> Option<bool> {
    let node = Api::<Node>::all(client.clone()).get(name).await.ok()?;
    Some(kubeyard_harness::kubelet::node_ready(&node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_port_service_answers_at_every_node_from_several_pods_and_by_name_inside() {
    let (cluster, _dir) = echo_cluster(3).await;
    let mut answered = std::collections::BTreeSet::new();
    for (node, address) in cluster.nodes() {
        for _ in 0..8 {
            let answer = http_get(&format!("http://{address}:30080/")).unwrap_or_else(|e| panic!("{node}: {e}"));
            answered.insert(answer.trim().to_string());
        }
    }
    assert!(answered.len() >= 2 && answered.iter().all(|a| a.starts_with("echo-")), "{answered:?}");
    // From inside a pod: the Service's name resolves (cluster DNS) to its cluster IP, and
    // the cluster IP is served (each node's proxy).
    let (_, address) = cluster.nodes()[0].clone();
    let service = Api::<k8s_openapi::api::core::v1::Service>::namespaced(cluster.client().unwrap(), "default")
        .get("echo")
        .await
        .unwrap();
    let cluster_ip = service.spec.and_then(|s| s.cluster_ip).unwrap();
    let resolved = http_get(&format!("http://{address}:30080/resolve?name=echo.default.svc.cluster.local")).unwrap();
    assert_eq!(resolved.trim(), cluster_ip);
    let fetched =
        http_get(&format!("http://{address}:30080/fetch?url=http://echo.default.svc.cluster.local/")).unwrap();
    assert!(fetched.starts_with("echo-"), "{fetched}");
    let short = http_get(&format!("http://{address}:30080/fetch?url=http://echo/")).unwrap();
    assert!(short.starts_with("echo-"), "the search list makes `echo` the default namespace's: {short}");
    let missing = http_get(&format!("http://{address}:30080/resolve?name=nothing.default.svc.cluster.local"));
    assert!(missing.is_err(), "an unknown Service does not resolve: {missing:?}");
    cluster.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_loses_its_pods_to_the_others_and_the_service_keeps_answering() {
    let (cluster, _dir) = echo_cluster(3).await;
    let client = cluster.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = pods.list(&ListParams::default().labels("app=echo")).await.unwrap().items;
    let victim = first[0].spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let (_, survivor) = cluster.nodes().into_iter().find(|(n, _)| *n != victim).unwrap();
    cluster.stop_node(&victim).await.unwrap();
    let failures = std::sync::Mutex::new(Vec::new());
    eventually("the pods replaced away from the stopped node", WITHIN, || async {
        // The Service keeps answering through a live node the whole time.
        if let Err(error) = http_get(&format!("http://{survivor}:30080/")) {
            failures.lock().unwrap().push(error);
        }
        node_ready(&client, &victim).await == Some(false) && echo_ready(&client, Some(&victim)).await
    })
    .await;
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "the Service stopped answering: {failures:?}");
    let answer = http_get(&format!("http://{survivor}:30080/")).unwrap();
    assert!(answer.starts_with("echo-"), "{answer}");
    cluster.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_replaced_and_rejoins_without_duplicates() {
    let (cluster, _dir) = echo_cluster(3).await;
    let client = cluster.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = pods.list(&ListParams::default().labels("app=echo")).await.unwrap().items;
    let victim = first[0].spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    cluster.disconnect_node(&victim).await.unwrap();
    eventually("the cut-off node NotReady and its pods replaced", WITHIN, || async {
        node_ready(&client, &victim).await == Some(false) && echo_ready(&client, Some(&victim)).await
    })
    .await;
    cluster.reconnect_node(&victim).await.unwrap();
    eventually("the node Ready again, and exactly three pods", Duration::from_secs(90), || async {
        // The pods evicted meanwhile are stopped by their kubelet once it is back, and go.
        node_ready(&client, &victim).await == Some(true) && echo_ready(&client, None).await
    })
    .await;
    // Its unreachable taints go a moment after it posts Ready again (the node lifecycle
    // controller's next pass); then it takes new work: scaled up, pods spread to it too.
    eventually("the rejoined node untainted", WITHIN, || async {
        let node = Api::<Node>::all(client.clone()).get(&victim).await.ok();
        node.and_then(|n| n.spec).is_some_and(|s| s.taints.unwrap_or_default().is_empty())
    })
    .await;
    let scale = serde_json::json!({"spec": {"replicas": 9}});
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch_scale("echo", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&scale))
        .await
        .unwrap();
    eventually("nine ready pods, some on the rejoined node", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=echo")).await.map(|l| l.items).unwrap_or_default();
        let on_victim = list.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&victim));
        list.len() == 9 && list.iter().all(ready) && on_victim.count() > 0
    })
    .await;
    cluster.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_and_etcd_restarted_under_load_lose_no_acknowledged_write() {
    let (cluster, _dir) = echo_cluster(2).await;
    let client = cluster.client().unwrap();
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (maps, stop) = (maps.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut attempts = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                attempts += 1;
                let map = serde_json::from_value(
                    json!({"metadata": {"name": format!("write-{attempts}")}, "data": {"n": attempts.to_string()}}),
                )
                .unwrap();
                match maps.create(&PostParams::default(), &map).await {
                    Ok(_) => acknowledged.push(format!("write-{attempts}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            (acknowledged, attempts)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart_etcd().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart_api_server().await.unwrap();
    eventually("the API server answering again", WITHIN, || async { maps.list(&ListParams::default()).await.is_ok() })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acknowledged, attempts) = writer.await.unwrap();
    assert!(acknowledged.len() > 10, "{} of {attempts} writes acknowledged", acknowledged.len());
    let stored: std::collections::HashSet<String> =
        maps.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|m| m.metadata.name).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The controllers and node agents carry on by themselves: a scale-up converges.
    let scale = serde_json::json!({"spec": {"replicas": 5}});
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch_scale("echo", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&scale))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("five ready pods after the restarts", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=echo")).await.map(|l| l.items).unwrap_or_default();
        list.len() == 5 && list.iter().all(ready)
    })
    .await;
    for (node, _) in cluster.nodes() {
        assert_eq!(node_ready(&client, &node).await, Some(true), "{node}");
    }
    cluster.remove().await.unwrap();
}

#[test]
fn kubeyard_test_runs_the_same_tests_on_containers() {
    // The container fixtures (real processes behind a real Service, an API server
    // restart, nodes paused, cut off and killed), and in-process fixtures that hold in
    // real time too.
    let args = [
        "test",
        "--cluster",
        "containers",
        "--parallel",
        "2",
        "fixtures/e2e-containers",
        "fixtures/e2e/cordon",
        "fixtures/e2e/rollback",
    ];
    let output = support::kubeyard_within(&args, None, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("5 tests: 5 passed, 0 failed"), "{stdout}");
}

/// A test whose API server went away fails naming the request it made, the transport's
/// own words and the container that is down with how it ended, not with kube's bare
/// "ServiceError: client error (SendRequest)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_went_away_is_named_with_its_container() {
    use kubeyard_harness::testing::{Cluster, Error, Expectation};
    let cluster = Cluster::containers(&spec(1)).await.expect("the cluster boots");
    let id = cluster.container_cluster().expect("a container cluster").id().to_string();
    let apiserver = format!("kubeyard-{id}-apiserver");
    // Discovery answered once (as it has in any test by its first assertion).
    assert_eq!(cluster.get("v1", "ConfigMap", None, "never").await.expect("answered"), None);
    Docker::connect().await.expect("the engine").kill(&apiserver).await.expect("killed");
    let never = Expectation::matching(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never"}}));
    let error = cluster.eventually(&never, Duration::from_secs(2)).await.expect_err("nothing answers");
    let Error::Unreachable(why) = &error else { panic!("not said as unreachable: {error:?}") };
    assert!(why.contains("GET /api/v1/namespaces/"), "{why}");
    assert!(why.contains("tried again for"), "{why}");
    let said = cluster.explain_unreachable(why).await;
    assert!(said.contains(&format!("container {apiserver} (apiserver) exited with code 137")), "{said}");
    assert!(
        said.contains(&format!("the API server is {}", cluster.container_cluster().map(|c| c.url()).unwrap_or("")))
    );
}

/// An admission webhook as operators deploy one: a pod (kubeyard's echo image serving
/// HTTPS with a certificate for its Service's name) behind a Service, called by the API
/// server in its own container over the cluster network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_webhook_on_a_pod_behind_a_service_is_called() {
    use kubeyard_harness::apiserver::tls;
    let cluster = boot(1).await;
    let client = cluster.client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let ca = tls::Authority::new("webhook-ca").unwrap();
    let issued = ca.issue("guard", &["guard.default.svc".to_string()], &[tls::Usage::Server]).unwrap();
    let env =
        json!([{"name": "ECHO_TLS_CERT", "value": issued.cert_pem}, {"name": "ECHO_TLS_KEY", "value": issued.key_pem}]);
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guard"},
         "spec": {"selector": {"matchLabels": {"app": "guard"}}, "template": {"metadata": {"labels": {"app": "guard"}},
            "spec": {"containers": [{"name": "guard", "image": "kubeyard/echo", "env": env,
                "ports": [{"name": "https", "containerPort": 8443}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "guard"},
         "spec": {"selector": {"app": "guard"}, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
    ]});
    let file = dir.path().join("guard.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.contains("deployment.apps/guard created"), "{applied}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("the webhook's pod ready", WITHIN, || async {
        let list = pods.list(&ListParams::default().labels("app=guard")).await.map(|l| l.items).unwrap_or_default();
        list.len() == 1 && list.iter().all(ready)
    })
    .await;

    use base64::Engine;
    let configuration = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard"},
        "webhooks": [{"name": "guard.example.com",
            "clientConfig": {"service": {"namespace": "default", "name": "guard", "path": "/admit"},
                             "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca.pem)},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    let file = dir.path().join("webhook.json");
    std::fs::write(&file, configuration.to_string()).unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.contains("validatingwebhookconfiguration.admissionregistration.k8s.io/guard created"), "{applied}");

    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let denied: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "denied",
        "labels": {"kubeyard.dev/deny": "not-on-this-cluster"}}}))
    .unwrap();
    // The Service's endpoints may trail the pod's readiness by a moment.
    let refusal = std::sync::Mutex::new(String::new());
    eventually("the webhook refuses", WITHIN, || async {
        match config_maps.create(&PostParams::default(), &denied).await {
            Err(kube::Error::Api(status)) if status.code == 403 => {
                *refusal.lock().unwrap() = status.message;
                true
            }
            _ => false,
        }
    })
    .await;
    assert_eq!(
        refusal.into_inner().unwrap(),
        r#"admission webhook "guard.example.com" denied the request: not-on-this-cluster"#
    );
    let allowed: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "allowed"}})).unwrap();
    config_maps.create(&PostParams::default(), &allowed).await.expect("the webhook allows it");
    let logs = kubectl(&kubeconfig, &["logs", "deployment/guard"]);
    assert!(logs.contains("POST /admit?timeout=10s 200"), "{logs}");
}

/// Real processes are measured: `kubectl top` shows what a pod that keeps 200m of CPU
/// busy really uses, an autoscaler reads it and scales out, and a LoadBalancer Service
/// gets the nodes' addresses, where it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_usage_feeds_top_and_the_autoscaler_and_a_load_balancer_answers() {
    let cluster = boot(2).await;
    let client = cluster.client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let manifest = dir.path().join("busy.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: busy}
spec:
  replicas: 1
  selector: {matchLabels: {app: busy}}
  template:
    metadata: {labels: {app: busy}}
    spec:
      containers:
      - name: echo
        image: kubeyard/echo
        args: ["--use-cpu", "200m", "--use-memory", "32Mi"]
        ports: [{containerPort: 9000}]
        resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: busy}
spec:
  type: LoadBalancer
  selector: {app: busy}
  ports: [{port: 8088, targetPort: 9000}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: busy}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: busy}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#,
    )
    .unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(applied.contains("deployment.apps/busy created"), "{applied}");

    // `kubectl top pod`: the busy loop's CPU (about 200m; the machine is shared, so a
    // wide band) and at least the memory it holds.
    // kubectl polls every 50 ms here: top every second is plenty.
    eventually_showing("kubectl top shows the busy pod's real usage", WITHIN, || {
        let kubeconfig = kubeconfig.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let shown = kubectl(&kubeconfig, &["top", "pod", "-l", "app=busy", "--no-headers"]);
            let line = shown.lines().next().unwrap_or_default();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let cpu = fields.get(1).and_then(|c| c.strip_suffix('m')).and_then(|c| c.parse::<u32>().ok());
            let memory = fields.get(2).and_then(|m| m.strip_suffix("Mi")).and_then(|m| m.parse::<u32>().ok());
            let right = line.starts_with("busy-")
                && cpu.is_some_and(|cpu| (100..=450).contains(&cpu))
                && memory.is_some_and(|memory| memory >= 32);
            if right { Ok(()) } else { Err(shown) }
        }
    })
    .await;
    let nodes = kubectl(&kubeconfig, &["top", "node", "--no-headers"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    assert!(nodes.lines().all(|l| !l.contains("<unknown>")), "every node measured: {nodes}");

    // 200m against a 100m request is 200% of a 50% target: the autoscaler scales out to
    // its maximum.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually("the autoscaler scales the busy Deployment to 2", WITHIN, || async {
        deployments.get("busy").await.ok().and_then(|d| d.spec?.replicas) == Some(2)
    })
    .await;

    // The LoadBalancer: the ready nodes' addresses, each answering at the Service's port.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "default");
    let ingress = || async {
        let service = services.get("busy").await.ok()?;
        let ingress = service.status?.load_balancer?.ingress?;
        let mut addresses: Vec<String> = ingress.into_iter().filter_map(|i| i.ip).collect();
        addresses.sort();
        Some(addresses)
    };
    eventually("the LoadBalancer's ingress lists both nodes", WITHIN, || async {
        ingress().await.is_some_and(|a| a.len() == 2)
    })
    .await;
    let addresses = ingress().await.unwrap_or_default();
    let mut nodes: Vec<String> = cluster.nodes().into_iter().map(|(_, address)| address.to_string()).collect();
    nodes.sort();
    assert_eq!(addresses, nodes);
    for address in addresses {
        eventually(&format!("the LoadBalancer answers at {address}:8088"), WITHIN, || {
            let url = format!("http://{address}:8088/");
            async move {
                tokio::task::spawn_blocking(move || http_get(&url))
                    .await
                    .is_ok_and(|a| a.is_ok_and(|a| a.starts_with("busy-")))
            }
        })
        .await;
    }
    let listed = kubectl(&kubeconfig, &["get", "service", "busy", "--no-headers"]);
    assert!(!listed.contains("<pending>"), "{listed}");
    cluster.remove().await.unwrap();
}

/// What a watch on one API server saw: each ConfigMap's name with its resourceVersion,
/// in the order the events came, and how many times it was told 410 and relisted.
#[derive(Default)]
struct Seen {
    events: Vec<(String, u64)>,
    relists: usize,
}

/// Watches ConfigMaps in `default` from `from` until `stop`, as a client must: from the
/// last resourceVersion after a stream ends, relisting after a 410.
async fn watch_config_maps(maps: Api<ConfigMap>, from: String, seen: std::sync::Arc<std::sync::Mutex<Seen>>) {
    use futures_util::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let mut version = from;
    loop {
        let Ok(stream) = maps.watch(&WatchParams::default().timeout(60), &version).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(map) | WatchEvent::Modified(map)) => {
                    let rv = map.metadata.resource_version.clone().unwrap_or_default();
                    let name = map.metadata.name.clone().unwrap_or_default();
                    seen.lock().unwrap().events.push((name, rv.parse().unwrap_or(0)));
                    version = rv;
                }
                Ok(WatchEvent::Bookmark(mark)) => version = mark.metadata.resource_version,
                Ok(WatchEvent::Deleted(_)) => {}
                Ok(WatchEvent::Error(status)) if status.code == 410 => {
                    let listed = maps.list(&ListParams::default()).await;
                    if let Ok(listed) = listed {
                        let mut seen = seen.lock().unwrap();
                        seen.relists += 1;
                        for map in &listed.items {
                            let rv = map.metadata.resource_version.clone().unwrap_or_default();
                            seen.events.push((map.metadata.name.clone().unwrap_or_default(), rv.parse().unwrap_or(0)));
                        }
                        version = listed.metadata.resource_version.unwrap_or_default();
                    }
                    break;
                }
                _ => break,
            }
        }
    }
}

/// etcd of three members and two API servers behind the load balancer. The etcd leader is
/// killed while a client writes through the balancer and another client watches the
/// second API server, then the first API server is killed: no acknowledged write is
/// lost, the watch sees every write (in order, or after a 410 and a relist: never a
/// silent gap), a write through one server is seen by a watch on the other, and the
/// cluster converges again. The figures go to the test's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_control_plane_loses_its_etcd_leader_and_an_api_server_and_no_acknowledged_write() {
    let mut spec = spec(1);
    spec.etcd_members = 3;
    spec.api_servers = 2;
    let cluster = ContainerCluster::boot(&spec, &|step: &str| eprintln!("{step}")).await.expect("the cluster boots");
    assert_eq!((cluster.etcd_endpoints().len(), cluster.api_server_urls().len()), (3, 2));
    let client = cluster.client().unwrap();
    let urls = cluster.api_server_urls();
    let first: Api<ConfigMap> = Api::namespaced(cluster.client_at(&urls[0]).unwrap(), "default");
    let second: Api<ConfigMap> = Api::namespaced(cluster.client_at(&urls[1]).unwrap(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // The kubernetes Service lists both API servers (their leases in etcd).
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client.clone(), "default");
    eventually("the kubernetes Service's endpoints list both API servers", WITHIN, || async {
        let Ok(listed) = endpoints.get("kubernetes").await else { return false };
        listed.subsets.unwrap_or_default().iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>() == 2
    })
    .await;

    // A watch on the second server, from now on.
    let from = second.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let watcher = tokio::spawn(watch_config_maps(second.clone(), from, seen.clone()));
    // A write through the first server is seen there.
    let map = |name: &str| serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": name}})).unwrap();
    first.create(&PostParams::default(), &map("through-the-first")).await.unwrap();
    eventually("the second server's watch sees a write through the first", WITHIN, || async {
        seen.lock().unwrap().events.iter().any(|(name, _)| name == "through-the-first")
    })
    .await;

    // A CRD made through the first server is served by the second.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cluster.client_at(&urls[0]).unwrap());
    crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap()).await.unwrap();
    let widgets = kube::core::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let on_second: Api<kube::api::DynamicObject> =
        Api::namespaced_with(cluster.client_at(&urls[1]).unwrap(), "default", &widgets);
    eventually("the second server serves the CRD made through the first", WITHIN, || async {
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        on_second.create(&PostParams::default(), &serde_json::from_value(widget).unwrap()).await.is_ok()
    })
    .await;
    // NodePort Services made through both servers at once never share an address or port.
    let services = |url: &str, prefix: &'static str| {
        let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(cluster.client_at(url).unwrap(), "default");
        async move {
            for i in 0..5 {
                let service = json!({"metadata": {"name": format!("{prefix}-{i}")},
                    "spec": {"type": "NodePort", "selector": {"app": "none"}, "ports": [{"port": 80}]}});
                api.create(&PostParams::default(), &serde_json::from_value(service).unwrap()).await.unwrap();
            }
        }
    };
    futures_util::future::join(services(&urls[0], "one"), services(&urls[1], "two")).await;
    let listed = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let held: Vec<(String, i32)> = listed
        .items
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            Some((spec.cluster_ip.clone()?, spec.ports.as_ref()?.first()?.node_port.unwrap_or(0)))
        })
        .collect();
    let ips: std::collections::HashSet<&String> = held.iter().map(|(ip, _)| ip).collect();
    let ports: std::collections::HashSet<i32> = held.iter().map(|(_, p)| *p).filter(|p| *p != 0).collect();
    assert_eq!((ips.len(), ports.len()), (held.len(), 10), "addresses or ports shared: {held:?}");

    // A workload, converged.
    let deployment: Deployment = ha_deployment();
    Api::<Deployment>::namespaced(client.clone(), "default").create(&PostParams::default(), &deployment).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ready_pods = |count: usize| {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=ha")).await.map(|l| l.items).unwrap_or_default();
            let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            live.len() == count && live.iter().all(|p| ready(p))
        }
    };
    eventually("two ready pods", WITHIN, || ready_pods(2)).await;

    // A writer through the load balancer, one ConfigMap after another.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let writer = {
        let (maps, stop, acknowledged) = (maps.clone(), stop.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let mut attempts = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                attempts += 1;
                let name = format!("write-{attempts}");
                match maps.create(&PostParams::default(), &map(&name)).await {
                    Ok(_) => acknowledged.lock().unwrap().push((name, std::time::Instant::now())),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            attempts
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The etcd leader dies.
    let leader = cluster.etcd_leader().await.expect("etcd has a leader");
    cluster.kill_etcd_member(leader).await.unwrap();
    let killed = std::time::Instant::now();
    eventually("a write acknowledged after the etcd leader's death", WITHIN, || async {
        maps.create(&PostParams::default(), &map(&format!("probe-{}", killed.elapsed().as_millis()))).await.is_ok()
    })
    .await;
    let writes_again = killed.elapsed();
    let new_leader = cluster.etcd_leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);

    // Then the first API server dies: the balancer passes it over.
    cluster.kill_api_server(0).await.unwrap();
    let api_killed = std::time::Instant::now();
    eventually("a write through the balancer after an API server's death", WITHIN, || async {
        maps.create(&PostParams::default(), &map(&format!("after-{}", api_killed.elapsed().as_millis()))).await.is_ok()
    })
    .await;
    let api_failover = api_killed.elapsed();

    // The cluster converges again: a scale-up goes through scheduler, controllers, node.
    let scale = json!({"spec": {"replicas": 3}});
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch_scale("ha", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&scale))
        .await
        .unwrap();
    let scaled = std::time::Instant::now();
    eventually("three ready pods after the losses", WITHIN, || ready_pods(3)).await;
    let converged = scaled.elapsed();
    // The writer goes on too (a write it had in flight on a follower when the leader died
    // may have waited for etcd's request timeout, 7 s, and failed).
    eventually("the writer's writes acknowledged again after the losses", WITHIN, || async {
        acknowledged.lock().unwrap().iter().filter(|(_, at)| *at > api_killed).count() > 5
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let attempts = writer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let after_kill = acknowledged.iter().filter(|(_, at)| *at > killed).count();

    // Every acknowledged write is stored.
    let stored: std::collections::HashSet<String> =
        maps.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|m| m.metadata.name).collect();
    let lost: Vec<&String> = acknowledged.iter().map(|(n, _)| n).filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The second server's watch saw each of them: in order, or after a relist.
    eventually("the watch sees every acknowledged write", WITHIN, || async {
        let seen = seen.lock().unwrap();
        acknowledged.iter().all(|(name, _)| seen.events.iter().any(|(n, _)| n == name))
    })
    .await;
    watcher.abort();
    let (events, relists) = {
        let seen = seen.lock().unwrap();
        (seen.events.clone(), seen.relists)
    };
    if relists == 0 {
        assert!(events.windows(2).all(|w| w[0].1 < w[1].1), "the watch repeated or reordered events");
    }
    eprintln!(
        "etcd leader (member {leader}) killed: {} of {attempts} writes acknowledged, {after_kill} after the kill, 0 lost; \
         writes again after {writes_again:.1?}; API server 0 killed: writes again after {api_failover:.1?}; \
         scale-up converged in {converged:.1?}; the watch on API server 1 saw {} events, relisted {} times",
        acknowledged.len(),
        events.len(),
        relists
    );
    // The dead come back.
    cluster.start_etcd_member(leader).await.unwrap();
    cluster.start_api_server(0).await.unwrap();
    assert!(first.list(&ListParams::default()).await.is_ok());
    cluster.remove().await.unwrap();
}

/// Two echo pods, as plain JSON.
fn ha_deployment() -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "ha"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "ha"}},
            "template": {
                "metadata": {"labels": {"app": "ha"}},
                "spec": {"containers": [{"name": "echo", "image": "kubeyard/echo",
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1}}]},
            },
        },
    }))
    .unwrap()
}
