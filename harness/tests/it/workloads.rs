//! The workload controllers on whole in-process clusters with simulated nodes:
//! DaemonSets follow nodes, taints and labels and roll their template; Jobs complete
//! within their parallelism or fail past their backoff limit; StatefulSets start in
//! order, claim volumes, scale down from the top and roll from the highest ordinal;
//! EndpointSlices list a Service's ready pods; deadlines and `minReadySeconds` are
//! counted on the control plane's clock, so a virtual clock passes them at once.

use crate::support;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kubeyard_harness::clock::Clock;
use kubeyard_harness::controlplane::{Config, ControlPlane};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::eventually;

const WITHIN: Duration = Duration::from_secs(30);

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

fn pods_api(plane: &ControlPlane) -> Api<Pod> {
    Api::namespaced(plane.client(), "default")
}

/// The default namespace's pods carrying `key=value`, not being deleted.
async fn pods_labelled(plane: &ControlPlane, key: &str, value: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("{key}={value}"));
    let pods = pods_api(plane).list(&params).await.unwrap().items;
    pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

async fn create<K>(plane: &ControlPlane, object: Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    create_in(plane, "default", object).await
}

async fn create_in<K>(plane: &ControlPlane, namespace: &str, object: Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(plane.client(), namespace).create(&PostParams::default(), &object).await.unwrap()
}

fn container(image: &str) -> Value {
    json!({"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 8080}],
           "resources": {"requests": {"cpu": "50m"}}})
}

fn daemon_set(name: &str, node_selector: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
           "spec": {"selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"nodeSelector": node_selector, "containers": [container("agent:1")]}}}})
}

async fn daemon_status(plane: &ControlPlane, name: &str) -> Value {
    let set = Api::<DaemonSet>::namespaced(plane.client(), "default").get(name).await.unwrap();
    serde_json::to_value(set.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_ready_pod_per_node_it_tolerates_and_rolls_its_template() {
    let mut config = Config::with_nodes(3);
    config.nodes[2].taints = vec![json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})];
    let plane = ControlPlane::boot(config).await.unwrap();
    create::<DaemonSet>(&plane, daemon_set("agent", json!({}))).await;

    eventually("a ready agent on node-1 and node-2", WITHIN, || async {
        let pods = pods_labelled(&plane, "app", "agent").await;
        let nodes: BTreeSet<String> = pods.iter().filter(|p| ready(p)).map(node_of).collect();
        pods.len() == 2 && nodes == BTreeSet::from(["node-1".to_string(), "node-2".to_string()])
    })
    .await;
    eventually("the status counts them", WITHIN, || async {
        let status = daemon_status(&plane, "agent").await;
        status["desiredNumberScheduled"] == 2 && status["numberReady"] == 2 && status["numberAvailable"] == 2
    })
    .await;
    let pods = pods_labelled(&plane, "app", "agent").await;
    let pod = serde_json::to_value(&pods[0]).unwrap();
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["controller"].as_bool()), (Some("DaemonSet"), Some(true)));
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchFields"][0];
    assert_eq!(
        (term["key"].as_str(), term["values"][0].as_str()),
        (Some("metadata.name"), Some(node_of(&pods[0]).as_str()))
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    let unreachable = tolerations.iter().find(|t| t["key"] == "node.kubernetes.io/unreachable").unwrap();
    assert!(unreachable.get("tolerationSeconds").is_none(), "daemon pods stay on unreachable nodes: {unreachable}");
    assert!(tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/unschedulable"));
    let first_hash = pods[0].labels()["controller-revision-hash"].clone();

    // A new template rolls out a node at a time (maxUnavailable 1): at least one of
    // the two nodes keeps a ready agent at every look.
    let sets: Api<DaemonSet> = Api::namespaced(plane.client(), "default");
    let patch = json!({"spec": {"template": {"spec": {"containers": [container("agent:2")]}}}});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    eventually("both agents replaced by ready agent:2 pods", WITHIN, || async {
        let pods = pods_labelled(&plane, "app", "agent").await;
        let ready_count = pods.iter().filter(|p| ready(p)).count();
        assert!(ready_count >= 1, "more than maxUnavailable agents down at once");
        let updated = pods.iter().filter(|p| p.labels()["controller-revision-hash"] != first_hash).count();
        pods.len() == 2 && ready_count == 2 && updated == 2
    })
    .await;
    eventually("the status counts the updated pods", WITHIN, || async {
        daemon_status(&plane, "agent").await["updatedNumberScheduled"] == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_follows_node_labels() {
    let mut config = Config::with_nodes(3);
    config.nodes[0].labels.insert("role".into(), "edge".into());
    let plane = ControlPlane::boot(config).await.unwrap();
    create::<DaemonSet>(&plane, daemon_set("edge", json!({"role": "edge"}))).await;
    let on = |nodes: &[&str]| nodes.iter().map(|n| n.to_string()).collect::<BTreeSet<String>>();
    let agents = || async {
        let pods = pods_labelled(&plane, "app", "edge").await;
        pods.iter().filter(|p| ready(p)).map(node_of).collect::<BTreeSet<String>>()
    };
    eventually("an agent on node-1 only", WITHIN, || async { agents().await == on(&["node-1"]) }).await;

    let nodes: Api<Node> = Api::all(plane.client());
    let label = |value: Value| json!({"metadata": {"labels": {"role": value}}});
    nodes.patch("node-2", &PatchParams::default(), &Patch::Merge(label(json!("edge")))).await.unwrap();
    eventually("node-2 labelled: an agent there too", WITHIN, || async { agents().await == on(&["node-1", "node-2"]) })
        .await;
    nodes.patch("node-1", &PatchParams::default(), &Patch::Merge(label(Value::Null))).await.unwrap();
    eventually("node-1 unlabelled: its agent gone", WITHIN, || async {
        pods_labelled(&plane, "app", "edge").await.iter().map(node_of).collect::<BTreeSet<_>>() == on(&["node-2"])
    })
    .await;
    eventually("the status says one node", WITHIN, || async {
        let status = daemon_status(&plane, "edge").await;
        status["desiredNumberScheduled"] == 1 && status["currentNumberScheduled"] == 1 && status["numberReady"] == 1
    })
    .await;
}

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32, simulate: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff_limit,
                    "template": {"metadata": {"annotations": {"kubeyard.dev/simulate": simulate}},
                                 "spec": {"restartPolicy": "Never", "containers": [container("batch:1")]}}}})
}

async fn job_status(plane: &ControlPlane, name: &str) -> Value {
    let job = Api::<Job>::namespaced(plane.client(), "default").get(name).await.unwrap();
    serde_json::to_value(job.status).unwrap_or(Value::Null)
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == kind && c["status"] == "True")
}

/// Every pod the Job ever made, by name (finished pods stay).
async fn job_pods(plane: &ControlPlane, name: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    pods_api(plane).list(&params).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_its_completions_never_running_more_than_its_parallelism() {
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    create::<Job>(&plane, job("batch", 5, 2, 6, "complete-after=300ms")).await;
    let most_active = std::cell::Cell::new(0);
    eventually("the Job Complete", WITHIN, || async {
        let pods = job_pods(&plane, "batch").await;
        let active = pods.iter().filter(|p| !matches!(phase(p), "Succeeded" | "Failed")).count();
        most_active.set(most_active.get().max(active));
        assert!(active <= 2, "{active} pods active at once");
        condition(&job_status(&plane, "batch").await, "Complete").is_some()
    })
    .await;
    assert_eq!(most_active.get(), 2, "two pods ran side by side at some look");
    let status = job_status(&plane, "batch").await;
    assert_eq!(status["succeeded"], 5, "{status}");
    assert!(status.get("failed").is_none_or(|f| f == 0), "{status}");
    assert!(condition(&status, "SuccessCriteriaMet").is_some(), "{status}");
    assert_eq!(condition(&status, "Complete").unwrap()["reason"], "CompletionsReached");
    assert!(status["completionTime"].is_string() && status["startTime"].is_string(), "{status}");
    assert!(status.get("active").is_none_or(|a| a == 0), "{status}");

    let pods = job_pods(&plane, "batch").await;
    assert_eq!(pods.len(), 5, "no pod made beyond the completions");
    for pod in &pods {
        assert_eq!(phase(pod), "Succeeded");
        let name = pod.name_any();
        assert!(name.starts_with("batch-") && name.len() == "batch-".len() + 5, "{name}");
        assert!(pod.labels().contains_key("batch.kubernetes.io/controller-uid"), "{:?}", pod.labels());
        assert_eq!(pod.owner_references()[0].kind, "Job");
        assert!(pod.finalizers().is_empty(), "counted pods lose the tracking finalizer: {:?}", pod.finalizers());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_pods_fail_ends_failed_past_its_backoff_limit() {
    let plane = ControlPlane::boot(Config::with_nodes(2)).await.unwrap();
    create::<Job>(&plane, job("doomed", 1, 1, 2, "complete-after=200ms,exit-code=1")).await;
    eventually("the Job Failed", WITHIN, || async {
        condition(&job_status(&plane, "doomed").await, "Failed").is_some()
    })
    .await;
    let status = job_status(&plane, "doomed").await;
    let failed = condition(&status, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{status}");
    assert_eq!(failed["message"], "Job has reached the specified backoff limit");
    assert_eq!(condition(&status, "FailureTarget").unwrap()["reason"], "BackoffLimitExceeded");
    assert_eq!(status["failed"], 3, "backoffLimit 2: the third failure ends it: {status}");
    assert!(status.get("completionTime").is_none_or(Value::is_null), "{status}");
    let pods = job_pods(&plane, "doomed").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| phase(p) == "Failed"));
}

fn stateful_set(replicas: i32, partition: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"replicas": replicas, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [container("db:1")]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

/// The set's pods by ordinal, as one listing shows them.
async fn members(plane: &ControlPlane) -> BTreeMap<usize, Pod> {
    let pods = pods_api(plane).list(&ListParams::default().labels("app=db")).await.unwrap().items;
    pods.into_iter().filter_map(|p| Some((p.name_any().strip_prefix("db-")?.parse().ok()?, p))).collect()
}

async fn wait_for_ready_members(plane: &ControlPlane, count: usize) {
    eventually(&format!("{count} ready members, each only after the one before was ready"), WITHIN, || async {
        let members = members(plane).await;
        for (ordinal, _) in members.iter().filter(|(o, _)| **o > 0) {
            let before = members.get(&(ordinal - 1));
            assert!(before.is_some_and(ready), "db-{ordinal} exists before db-{} is ready", ordinal - 1);
        }
        members.len() == count && members.values().all(ready)
    })
    .await;
}

async fn set_status(plane: &ControlPlane) -> Value {
    let set = Api::<StatefulSet>::namespaced(plane.client(), "default").get("db").await.unwrap();
    serde_json::to_value(set.status).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_starts_in_order_claims_volumes_and_scales_down_from_the_top() {
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    create::<StatefulSet>(&plane, stateful_set(3, 0)).await;
    wait_for_ready_members(&plane, 3).await;
    for (ordinal, pod) in members(&plane).await {
        let name = format!("db-{ordinal}");
        assert_eq!(pod.labels()["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(pod.labels()["apps.kubernetes.io/pod-index"], ordinal.to_string());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some(name.as_str()), Some("db")));
        let volume = spec.volumes.iter().flatten().find(|v| v.name == "data").unwrap();
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, format!("data-db-{ordinal}"));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.client(), "default");
    let names: BTreeSet<String> =
        claims.list(&ListParams::default()).await.unwrap().items.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, BTreeSet::from(["data-db-0", "data-db-1", "data-db-2"].map(String::from)));
    eventually("the status counts three ready replicas", WITHIN, || async {
        let status = set_status(&plane).await;
        status["replicas"] == 3 && status["readyReplicas"] == 3 && status["currentRevision"] == status["updateRevision"]
    })
    .await;

    let sets: Api<StatefulSet> = Api::namespaced(plane.client(), "default");
    sets.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    eventually("scaled down to db-0, db-2 going before db-1", WITHIN, || async {
        let members = members(&plane).await;
        let live = |o: usize| members.get(&o).is_some_and(|p| p.metadata.deletion_timestamp.is_none());
        assert!(!live(2) || live(1), "db-1 went before db-2");
        members.keys().copied().collect::<Vec<_>>() == [0]
    })
    .await;
    assert_eq!(claims.list(&ListParams::default()).await.unwrap().items.len(), 3, "claims are retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_rolls_from_the_highest_ordinal_down_to_its_partition() {
    let plane = ControlPlane::boot(Config::with_nodes(3)).await.unwrap();
    create::<StatefulSet>(&plane, stateful_set(3, 1)).await;
    wait_for_ready_members(&plane, 3).await;
    let revision = |pod: &Pod| pod.labels()["controller-revision-hash"].clone();
    let old = revision(&members(&plane).await[&0]);
    let sets: Api<StatefulSet> = Api::namespaced(plane.client(), "default");
    let patch = json!({"spec": {"template": {"spec": {"containers": [container("db:2")]}}}});
    sets.patch("db", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    eventually("db-2 and db-1 updated and ready, db-0 kept", WITHIN, || async {
        let members = members(&plane).await;
        let updated = |o: usize| members.get(&o).is_some_and(|p| revision(p) != old);
        assert!(!updated(1) || updated(2), "db-1 was updated before db-2");
        members.len() == 3 && members.values().all(ready) && updated(2) && updated(1) && !updated(0)
    })
    .await;
    eventually("the status says two updated, the current revision kept", WITHIN, || async {
        let status = set_status(&plane).await;
        status["updatedReplicas"] == 2 && status["currentRevision"] == old && status["updateRevision"] != old
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_list_the_ready_pods_of_a_service() {
    let mut config = Config::with_nodes(2);
    for node in &mut config.nodes {
        node.labels.insert("topology.kubernetes.io/zone".into(), format!("zone-{}", node.index));
    }
    let plane = ControlPlane::boot(config).await.unwrap();
    create::<Service>(
        &plane,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    create::<ReplicaSet>(
        &plane,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container("web:1")]}}}}),
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(plane.client(), "default");
    let slice_params = ListParams::default().labels("kubernetes.io/service-name=web");
    let ready_ips = || async {
        let listed = slices.list(&slice_params).await.unwrap().items;
        let mut ips: Vec<String> = listed
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.clone())
            .collect();
        ips.sort();
        ips
    };
    let pod_ips = |pods: &[Pod]| {
        let mut ips: Vec<String> = pods.iter().filter_map(|p| p.status.as_ref()?.pod_ip.clone()).collect();
        ips.sort();
        ips
    };
    eventually("the three ready pods' IPs in the slices", WITHIN, || async {
        let pods = pods_labelled(&plane, "app", "web").await;
        pods.len() == 3 && pods.iter().all(ready) && ready_ips().await == pod_ips(&pods)
    })
    .await;

    let listed = slices.list(&slice_params).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    let slice = serde_json::to_value(&listed[0]).unwrap();
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(slice["metadata"]["name"].as_str().unwrap().starts_with("web-"), "{slice}");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!((slice["ports"][0]["port"].as_i64(), slice["ports"][0]["name"].as_str()), (Some(8080), Some("http")));
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");
    let node = endpoint["nodeName"].as_str().unwrap();
    assert_eq!(endpoint["zone"], format!("zone-{}", node.trim_start_matches("node-")), "{endpoint}");

    // A pod turning not ready stays listed, not ready, and leaves the ready addresses.
    let pods = pods_labelled(&plane, "app", "web").await;
    let victim = pods[0].name_any();
    let annotate = json!({"metadata": {"annotations": {"kubeyard.dev/simulate": "never-ready"}}});
    pods_api(&plane).patch(&victim, &PatchParams::default(), &Patch::Merge(annotate)).await.unwrap();
    let rest: Vec<Pod> = pods.iter().filter(|p| p.name_any() != victim).cloned().collect();
    eventually("the not-ready pod out of the ready addresses", WITHIN, || async {
        ready_ips().await == pod_ips(&rest)
    })
    .await;
    let listed = slices.list(&slice_params).await.unwrap().items;
    let entry = listed
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some(victim.as_str()));
    let conditions = entry.and_then(|e| e.conditions.clone()).unwrap_or_default();
    assert_eq!((conditions.ready, conditions.serving), (Some(false), Some(false)), "{entry:?}");
}

/// Every object's `resourceVersion` of the kinds the workload controllers write.
async fn versions(plane: &ControlPlane) -> BTreeMap<String, String> {
    async fn of<K>(plane: &ControlPlane, kind: &str, into: &mut BTreeMap<String, String>)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let listed = Api::<K>::namespaced(plane.client(), "default").list(&ListParams::default()).await.unwrap();
        for object in listed.items {
            into.insert(format!("{kind}/{}", object.name_any()), object.resource_version().unwrap_or_default());
        }
    }
    let mut all = BTreeMap::new();
    of::<DaemonSet>(plane, "DaemonSet", &mut all).await;
    of::<StatefulSet>(plane, "StatefulSet", &mut all).await;
    of::<Job>(plane, "Job", &mut all).await;
    of::<EndpointSlice>(plane, "EndpointSlice", &mut all).await;
    of::<Pod>(plane, "Pod", &mut all).await;
    of::<PersistentVolumeClaim>(plane, "PersistentVolumeClaim", &mut all).await;
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_workloads_are_left_alone() {
    let plane = ControlPlane::boot(Config::with_nodes(2)).await.unwrap();
    create::<DaemonSet>(&plane, daemon_set("agent", json!({}))).await;
    create::<StatefulSet>(&plane, stateful_set(2, 0)).await;
    create::<Job>(&plane, job("once", 1, 1, 6, "complete-after=100ms")).await;
    create::<Service>(
        &plane,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    )
    .await;
    eventually("everything converged", WITHIN, || async {
        let agents = daemon_status(&plane, "agent").await["numberAvailable"] == 2;
        let set = set_status(&plane).await["availableReplicas"] == 2;
        let done = condition(&job_status(&plane, "once").await, "Complete").is_some();
        let slices = Api::<EndpointSlice>::namespaced(plane.client(), "default");
        let listed = slices.list(&ListParams::default().labels("kubernetes.io/service-name=db")).await.unwrap();
        let endpoints: Vec<_> = listed.items.iter().flat_map(|s| s.endpoints.iter()).collect();
        let named = endpoints.iter().filter(|e| e.hostname.as_deref().is_some_and(|h| h.starts_with("db-"))).count();
        agents && set && done && endpoints.len() == 2 && named == 2
    })
    .await;
    // Let the last writes land, then nothing should change any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = versions(&plane).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(versions(&plane).await, before, "a controller keeps rewriting what it converged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_workloads_or_their_namespace_leaves_nothing_behind() {
    use k8s_openapi::api::core::v1::Namespace;
    let plane = ControlPlane::boot(Config::with_nodes(2)).await.unwrap();
    let tracked =
        |pods: &[Pod]| pods.iter().filter(|p| p.finalizers().iter().any(|f| f.contains("job-tracking"))).count();

    // A running Job deleted in the background: its pods' tracking finalizers are released.
    create::<Job>(&plane, job("sleeper", 2, 2, 6, "complete-after=1h")).await;
    eventually("two running tracked pods", WITHIN, || async {
        let pods = job_pods(&plane, "sleeper").await;
        pods.iter().filter(|p| phase(p) == "Running").count() == 2 && tracked(&pods) == 2
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(plane.client(), "default");
    jobs.delete("sleeper", &kube::api::DeleteParams::background()).await.unwrap();
    eventually("the Job's pods gone", WITHIN, || async { job_pods(&plane, "sleeper").await.is_empty() }).await;

    // A namespace with every kind of workload goes whole.
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "work"}})).unwrap();
    let namespaces: Api<Namespace> = Api::all(plane.client());
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    create_in::<Job>(&plane, "work", job("sleeper", 1, 1, 6, "complete-after=1h")).await;
    create_in::<StatefulSet>(&plane, "work", stateful_set(2, 0)).await;
    create_in::<DaemonSet>(&plane, "work", daemon_set("agent", json!({}))).await;
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                         "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}});
    create_in::<Service>(&plane, "work", service).await;
    let work_pods: Api<Pod> = Api::namespaced(plane.client(), "work");
    eventually("the namespace's pods running", WITHIN, || async {
        let pods = work_pods.list(&ListParams::default()).await.unwrap().items;
        pods.iter().filter(|p| ready(p)).count() == 5
    })
    .await;
    namespaces.delete("work", &Default::default()).await.unwrap();
    eventually("the namespace gone", WITHIN, || async { namespaces.get_opt("work").await.unwrap().is_none() }).await;
    assert!(work_pods.list(&ListParams::default()).await.unwrap().items.is_empty());
}

/// Ten minutes of deadlines and five of `minReadySeconds` pass in a moment of real time
/// when the clock is pushed: every controller that counts time counts it on the control
/// plane's clock, and wakes when that clock passes the moment, not after real seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_min_ready_seconds_follow_the_control_planes_clock() {
    let plane = ControlPlane::boot(Config { clock: Clock::manual(), ..Config::with_nodes(2) }).await.unwrap();
    let mut stuck = job("stuck", 1, 1, 6, "complete-after=1h");
    stuck["spec"]["activeDeadlineSeconds"] = json!(600);
    create::<Job>(&plane, stuck).await;
    let deployment = |name: &str, extra: Value, simulate: &str| {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, "annotations": {"kubeyard.dev/simulate": simulate}},
                                  "spec": {"containers": [container("nginx:1.25")]}}}
        });
        if let (Some(spec), Some(extra)) = (object["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        object
    };
    create::<Deployment>(&plane, deployment("patient", json!({"minReadySeconds": 300}), "")).await;
    create::<Deployment>(&plane, deployment("never", json!({"progressDeadlineSeconds": 600}), "never-ready")).await;
    let deployments = Api::<Deployment>::namespaced(plane.client(), "default");
    let status = |name: &'static str| {
        let deployments = deployments.clone();
        async move { serde_json::to_value(deployments.get(name).await.unwrap().status).unwrap_or(Value::Null) }
    };

    // Ready, but not yet for five minutes: not available.
    eventually("patient's pods ready", WITHIN, || async { status("patient").await["readyReplicas"] == 2 }).await;
    let before = status("patient").await;
    assert!(before.get("availableReplicas").is_none_or(|a| a == 0), "{before}");
    assert!(condition(&job_status(&plane, "stuck").await, "Failed").is_none());

    plane.advance(Duration::from_secs(660)).await;
    eventually("patient available", WITHIN, || async { status("patient").await["availableReplicas"] == 2 }).await;
    eventually("the Job past its deadline", WITHIN, || async {
        // Its pods are stopped within their grace period, on the same clock.
        plane.advance(Duration::from_secs(5)).await;
        condition(&job_status(&plane, "stuck").await, "Failed").is_some_and(|c| c["reason"] == "DeadlineExceeded")
    })
    .await;
    eventually("never's rollout past its deadline", WITHIN, || async {
        let status = status("never").await;
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .any(|c| c["type"] == "Progressing" && c["status"] == "False" && c["reason"] == "ProgressDeadlineExceeded")
    })
    .await;
    let failed = job_status(&plane, "stuck").await;
    assert_eq!(condition(&failed, "Failed").unwrap()["message"], "Job was active longer than specified deadline");
    // The Job's times are the control plane's: ten minutes or more apart.
    let seconds = |field: &str| kubeyard_harness::clock::parse(failed[field].as_str().unwrap_or_default());
    let (started, ended) =
        (seconds("startTime").unwrap(), condition(&failed, "Failed").unwrap()["lastTransitionTime"].clone());
    let ended = kubeyard_harness::clock::parse(ended.as_str().unwrap()).unwrap();
    assert!(ended.duration_since(started).unwrap() >= Duration::from_secs(600), "{failed}");
}
