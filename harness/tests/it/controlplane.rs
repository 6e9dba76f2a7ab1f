//! The whole control plane in-process: pods converge on simulated nodes; a node whose
//! kubelet falls silent turns Unknown and tainted, and its pods are replaced elsewhere
//! after the toleration period (on a manual clock); the same seed gives the same
//! placement; a pod's status the API server refused is sent again.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kubeyard_harness::clock::Clock;
use kubeyard_harness::controlplane::{Config, ControlPlane};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use support::eventually;

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx",
                                                       "resources": {"requests": {"cpu": "100m"}}}]}}}
    }))
    .unwrap()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn pods(plane: &ControlPlane) -> Vec<Pod> {
    Api::<Pod>::namespaced(plane.client(), "default").list(&ListParams::default()).await.unwrap().items
}

async fn ready_pods(plane: &ControlPlane) -> Vec<Pod> {
    pods(plane).await.into_iter().filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none()).collect()
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_and_get_ready_on_simulated_nodes() {
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    let nodes = Api::<Node>::all(plane.client()).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(nodes.len(), 3);
    for node in &nodes {
        let status = serde_json::to_value(node.status.as_ref().unwrap()).unwrap();
        assert_eq!(status["allocatable"]["cpu"], "4");
        let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True", "{status}");
    }
    let sets: Api<ReplicaSet> = Api::namespaced(plane.client(), "default");
    sets.create(&PostParams::default(), &replica_set("web", 6)).await.unwrap();
    eventually("six ready pods", Duration::from_secs(20), || async { ready_pods(&plane).await.len() == 6 }).await;

    let pods = ready_pods(&plane).await;
    let ips: HashSet<String> = pods.iter().filter_map(|p| p.status.as_ref()?.pod_ip.clone()).collect();
    assert_eq!(ips.len(), 6, "every pod has its own IP");
    let spread: HashSet<String> = pods.iter().map(node_of).collect();
    assert_eq!(spread.len(), 3, "the replicas spread over the nodes");
    for pod in &pods {
        let status = serde_json::to_value(pod.status.as_ref().unwrap()).unwrap();
        assert_eq!(status["phase"], "Running");
        assert!(status["containerStatuses"][0]["state"]["running"].is_object(), "{status}");
        assert!(status["podIP"].as_str().unwrap().starts_with("10.244."), "{status}");
    }
    // A deleted pod is stopped by its kubelet and goes; the set makes another.
    let victim = pods[0].metadata.name.clone().unwrap();
    Api::<Pod>::namespaced(plane.client(), "default").delete(&victim, &Default::default()).await.unwrap();
    eventually("the deleted pod gone and replaced", Duration::from_secs(20), || async {
        let all = self::pods(&plane).await;
        !all.iter().any(|p| p.metadata.name.as_deref() == Some(&victim)) && ready_pods(&plane).await.len() == 6
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_loses_its_pods_after_the_toleration_period() {
    let config = Config { clock: Clock::manual(), ..Config::with_nodes(3) };
    let plane = ControlPlane::boot(config).await.unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(plane.client(), "default");
    sets.create(&PostParams::default(), &replica_set("web", 6)).await.unwrap();
    eventually("six ready pods", Duration::from_secs(20), || async { ready_pods(&plane).await.len() == 6 }).await;
    let before = ready_pods(&plane).await;
    let lost: Vec<String> =
        before.iter().filter(|p| node_of(p) == "node-1").filter_map(|p| p.metadata.name.clone()).collect();
    assert!(!lost.is_empty(), "node-1 runs some of the pods");

    plane.kubelets().stop("node-1").unwrap();
    plane.advance(Duration::from_secs(45)).await;
    let nodes: Api<Node> = Api::all(plane.client());
    eventually("node-1 Unknown and tainted unreachable", Duration::from_secs(10), || async {
        let node = serde_json::to_value(nodes.get("node-1").await.unwrap()).unwrap();
        let unknown = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
        let tainted = node["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        });
        unknown && tainted
    })
    .await;
    for name in ["node-2", "node-3"] {
        let node = serde_json::to_value(nodes.get(name).await.unwrap()).unwrap();
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{name} kept renewing its lease: {node}");
    }
    // Within the 300 s toleration the pods stay where they are (not ready).
    let still: Vec<Pod> =
        pods(&plane).await.into_iter().filter(|p| lost.contains(p.metadata.name.as_ref().unwrap())).collect();
    assert!(still.iter().all(|p| p.metadata.deletion_timestamp.is_none() && !ready(p)));

    plane.advance(Duration::from_secs(300)).await;
    eventually("six ready pods off node-1", Duration::from_secs(20), || async {
        let ready = ready_pods(&plane).await;
        ready.len() == 6 && ready.iter().all(|p| node_of(p) != "node-1")
    })
    .await;

    // The kubelet comes back: the node is ready again, untainted, and finishes the deletions.
    plane.kubelets().start_node("node-1").await.unwrap();
    plane.advance(Duration::from_secs(10)).await;
    eventually("node-1 ready and untainted, its old pods gone", Duration::from_secs(20), || async {
        let node = serde_json::to_value(nodes.get("node-1").await.unwrap()).unwrap();
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let tainted = node["spec"]["taints"].as_array().is_some_and(|t| !t.is_empty());
        let left = pods(&plane).await.into_iter().any(|p| lost.contains(p.metadata.name.as_ref().unwrap()));
        ready && !tainted && !left
    })
    .await;
}

/// Which node each pod of a set landed on, by the pods' order of creation.
async fn placement(seed: u64) -> BTreeMap<String, String> {
    let config = Config { seed, ..Config::with_nodes(5) };
    let plane = ControlPlane::boot(config).await.unwrap();
    let pods_api: Api<Pod> = Api::namespaced(plane.client(), "default");
    // Pods made one by one, so their order (and so the scheduler's) is the same each run.
    for i in 0..12 {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i:02}")},
            "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "500m"}}}]}
        }))
        .unwrap();
        pods_api.create(&PostParams::default(), &pod).await.unwrap();
        eventually("the pod bound", Duration::from_secs(10), || async {
            pods_api.get(&format!("p{i:02}")).await.is_ok_and(|p| !node_of(&p).is_empty())
        })
        .await;
    }
    pods(&plane).await.iter().map(|p| (p.metadata.name.clone().unwrap_or_default(), node_of(p))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_places_every_pod_on_the_same_node() {
    let first = placement(42).await;
    let second = placement(42).await;
    assert_eq!(first, second);
    insta::with_settings!({snapshot_path => "../../../snapshots/controlplane", prepend_module_to_snapshot => false}, {
        insta::assert_yaml_snapshot!("placement-seed-42", first);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_or_a_namespace_leaves_nothing_behind() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
    Api::<Namespace>::all(plane.client()).create(&PostParams::default(), &namespace).await.unwrap();
    let deployment = |name: &str| -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
        }))
        .unwrap()
    };
    let shop: Api<Deployment> = Api::namespaced(plane.client(), "shop");
    let default: Api<Deployment> = Api::namespaced(plane.client(), "default");
    shop.create(&PostParams::default(), &deployment("cart")).await.unwrap();
    default.create(&PostParams::default(), &deployment("web")).await.unwrap();
    default.create(&PostParams::default(), &deployment("keep")).await.unwrap();
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "1"}})).unwrap();
    Api::<ConfigMap>::namespaced(plane.client(), "shop").create(&PostParams::default(), &config).await.unwrap();
    let running = |namespace: &'static str| {
        let client = plane.client();
        async move {
            let pods = Api::<Pod>::namespaced(client, namespace).list(&ListParams::default()).await.unwrap().items;
            pods.iter().filter(|p| ready(p)).count()
        }
    };
    eventually("nine ready pods", Duration::from_secs(20), || async {
        running("shop").await == 3 && running("default").await == 6
    })
    .await;

    // Background propagation (kubectl's default): the ReplicaSet and the pods follow.
    default.delete("web", &Default::default()).await.unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(plane.client(), "default");
    eventually("no ReplicaSet or pod of web left", Duration::from_secs(20), || async {
        let sets = sets.list(&ListParams::default().labels("app=web")).await.unwrap().items;
        let pods = Api::<Pod>::namespaced(plane.client(), "default")
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items;
        sets.is_empty() && pods.is_empty()
    })
    .await;

    // A namespace goes with everything in it, bound pods too (their kubelets stop them).
    Api::<Namespace>::all(plane.client()).delete("shop", &Default::default()).await.unwrap();
    eventually("the namespace gone", Duration::from_secs(30), || async {
        Api::<Namespace>::all(plane.client()).get_opt("shop").await.unwrap().is_none()
    })
    .await;
    let params = ListParams::default();
    assert!(Api::<Deployment>::namespaced(plane.client(), "shop").list(&params).await.unwrap().items.is_empty());
    assert!(Api::<ReplicaSet>::namespaced(plane.client(), "shop").list(&params).await.unwrap().items.is_empty());
    assert!(Api::<Pod>::namespaced(plane.client(), "shop").list(&params).await.unwrap().items.is_empty());
    assert!(Api::<ConfigMap>::namespaced(plane.client(), "shop").list(&params).await.unwrap().items.is_empty());
    assert_eq!(running("default").await, 3, "the other namespace's keep deployment is untouched");
}

/// Counts pods (not being deleted) and ready pods of `app`.
async fn counts(plane: &ControlPlane, app: &str) -> (usize, usize) {
    let pods = Api::<Pod>::namespaced(plane.client(), "default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items;
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    (live.len(), live.iter().filter(|p| ready(p)).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_within_its_bounds_on_simulated_nodes() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(plane.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "roll"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "roll"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    eventually("ten ready pods", Duration::from_secs(20), || async { counts(&plane, "roll").await.1 == 10 }).await;

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
    deployments.patch("roll", &PatchParams::default(), &Patch::Strategic(image)).await.unwrap();
    let start = Instant::now();
    let mut steps = 0;
    loop {
        let (pods, ready) = counts(&plane, "roll").await;
        assert!(pods <= 12, "{pods} pods: more than replicas + maxSurge");
        assert!(ready >= 9, "{ready} ready: fewer than replicas - maxUnavailable");
        steps += 1;
        let deployment = deployments.get("roll").await.unwrap();
        let status = deployment.status.unwrap_or_default();
        let done = status.updated_replicas == Some(10)
            && status.available_replicas == Some(10)
            && status.replicas == Some(10)
            && status.observed_generation == deployment.metadata.generation;
        if done && pods == 10 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the rollout did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(steps > 3, "the rollout was observed along the way ({steps} observations)");
    let pods = Api::<Pod>::namespaced(plane.client(), "default")
        .list(&ListParams::default().labels("app=roll"))
        .await
        .unwrap();
    let images: HashSet<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default())
        .collect();
    assert_eq!(images, HashSet::from(["nginx:1.27".to_string()]));
}

/// Sends `operation`s on core `resource` to the test's flaky webhook, `hook`.
async fn flaky_webhook(plane: &ControlPlane, hook: &support::webhook::Webhook, operation: &str, resource: &str) {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let configuration: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "flaky"},
        "webhooks": [{
            "name": "flaky.example.com", "clientConfig": hook.client_config("/"),
            "rules": [{"operations": [operation], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]
        }]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(plane.client())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_status_the_api_server_refused_is_sent_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use support::webhook::Webhook;

    let plane = ControlPlane::boot(Config::with_nodes(1)).await.unwrap();
    // Refuses the first two statuses that say the pod is ready, as an API server that is
    // restarting or out of connections would; the kubelet's status manager sends again.
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    // The webhook runs a runtime of its own: made and dropped off this one's threads.
    let hook = tokio::task::spawn_blocking(move || Webhook::start(move |review| {
        let ready = review["request"]["object"]["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let refuse = ready && counted.fetch_add(1, Ordering::SeqCst) < 2;
        let response = if refuse {
            json!({"allowed": false, "status": {"code": 503, "message": "not now"}})
        } else {
            json!({"allowed": true})
        };
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": review["request"]["uid"], "allowed": response["allowed"], "status": response["status"]}})
    }))
    .await
    .unwrap();
    flaky_webhook(&plane, &hook, "UPDATE", "pods/status").await;
    let sets: Api<ReplicaSet> = Api::namespaced(plane.client(), "default");
    sets.create(&PostParams::default(), &replica_set("web", 1)).await.unwrap();
    eventually("the pod ready after two refusals", Duration::from_secs(30), || async {
        ready_pods(&plane).await.len() == 1
    })
    .await;
    assert!(refused.load(Ordering::SeqCst) >= 3, "two refused, then taken");
    tokio::task::spawn_blocking(move || drop(hook)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_the_kubelet_could_not_confirm_is_confirmed_again() {
    use kube::api::DeleteParams;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use support::webhook::Webhook;

    let plane = ControlPlane::boot(Config::with_nodes(1)).await.unwrap();
    // Refuses the first two deletes of a pod already being deleted (the kubelet's, once
    // its containers stopped) with a 503; the status manager tries again at its syncs.
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    let hook = tokio::task::spawn_blocking(move || {
        Webhook::start(move |review| {
            let confirming = review["request"]["oldObject"]["metadata"]["deletionTimestamp"].is_string();
            let refuse = confirming && counted.fetch_add(1, Ordering::SeqCst) < 2;
            let status = if refuse { json!({"code": 503, "message": "not now"}) } else { json!(null) };
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": review["request"]["uid"], "allowed": !refuse, "status": status}})
        })
    })
    .await
    .unwrap();
    flaky_webhook(&plane, &hook, "DELETE", "pods").await;
    let pods: Api<Pod> = Api::namespaced(plane.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod ready", Duration::from_secs(30), || async { ready_pods(&plane).await.len() == 1 }).await;
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the pod gone after two refused confirmations", Duration::from_secs(60), || async {
        pods.get_opt("web").await.unwrap().is_none()
    })
    .await;
    assert!(refused.load(Ordering::SeqCst) >= 3, "two refused, then taken");
    tokio::task::spawn_blocking(move || drop(hook)).await.unwrap();
}
