//! The scheduler: a client of the API server, as in Kubernetes. It watches nodes and pods
//! (kube-rs reflectors), places each pending pod with the compiler's scheduling framework
//! and binds it through the `binding` subresource; a pod that fits nowhere gets
//! `PodScheduled=False` and a `FailedScheduling` event saying why, once per reason.
//!
//! Pods are taken oldest first (then by namespace and name) and ties between equal nodes
//! are broken by a generator seeded with `--seed`, so the same cluster and seed give the
//! same placement.

use crate::clock;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kubeyard_compiler::scheduling::{Framework, NodeInfo};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const NAME: &str = "default-scheduler";

/// Keeps a reflector's store current and says when anything changed.
fn reflect<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    tokio::spawn(async move {
        let stream =
            reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
        futures_util::pin_mut!(stream);
        while stream.next().await.is_some() {
            changed.notify_one();
        }
    });
    store
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, seed: u64) {
    let changed = Arc::new(Notify::new());
    let pods = reflect(Api::<Pod>::all(client.clone()), Arc::clone(&changed));
    let nodes = reflect(Api::<Node>::all(client.clone()), Arc::clone(&changed));
    let (_, _) = tokio::join!(pods.wait_until_ready(), nodes.wait_until_ready());
    let framework = Framework::default();
    let mut rng = fastrand::Rng::with_seed(seed);
    // Bindings made but not yet seen through the watch, so a pod is not placed twice
    // and its node's resources count it at once.
    let mut assumed: HashMap<String, String> = HashMap::new();
    // The last reason reported per pod: each change is said once.
    let mut reported: HashMap<String, String> = HashMap::new();
    loop {
        let pods: Vec<Value> = pods.state().iter().filter_map(|p| serde_json::to_value(p.as_ref()).ok()).collect();
        let mut infos: Vec<NodeInfo> = nodes
            .state()
            .iter()
            .filter_map(|n| serde_json::to_value(n.as_ref()).ok())
            .map(|n| NodeInfo::new(&n))
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let mut pending = Vec::new();
        for pod in &pods {
            let uid = text(pod, "/metadata/uid");
            let bound = text(pod, "/spec/nodeName");
            if !bound.is_empty() {
                assumed.remove(uid);
            }
            let node = if bound.is_empty() { assumed.get(uid).map(String::as_str).unwrap_or_default() } else { bound };
            let finished = matches!(text(pod, "/status/phase"), "Succeeded" | "Failed");
            if !node.is_empty() {
                if !finished && let Some(info) = infos.iter_mut().find(|i| i.name == node) {
                    info.add_pod(pod);
                }
            } else if pod.pointer("/metadata/deletionTimestamp").is_none()
                && matches!(text(pod, "/spec/schedulerName"), "" | NAME)
            {
                pending.push(pod);
            }
        }
        pending.sort_by_key(|p| {
            (text(p, "/metadata/creationTimestamp"), text(p, "/metadata/namespace"), text(p, "/metadata/name"))
        });
        for pod in pending {
            let (uid, namespace, name) =
                (text(pod, "/metadata/uid"), text(pod, "/metadata/namespace"), text(pod, "/metadata/name"));
            match framework.schedule(pod, &infos, &mut |n| rng.usize(..n)) {
                Ok(i) => {
                    if bind(&client, namespace, name, &infos[i].name).await {
                        infos[i].add_pod(pod);
                        assumed.insert(uid.to_string(), infos[i].name.clone());
                        reported.remove(uid);
                    }
                }
                Err(unschedulable) => {
                    let message = unschedulable.to_string();
                    if reported.get(uid) != Some(&message) {
                        report(&client, pod, &message).await;
                        reported.insert(uid.to_string(), message);
                    }
                }
            }
        }
        // Forget pods that are gone.
        let live: std::collections::HashSet<&str> = pods.iter().map(|p| text(p, "/metadata/uid")).collect();
        reported.retain(|uid, _| live.contains(uid.as_str()));
        assumed.retain(|uid, _| live.contains(uid.as_str()));
        // Woken by any change; a periodic pass retries what did not fit.
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// `POST pods/{name}/binding`; false when the pod is gone or already bound.
async fn bind(client: &kube::Client, namespace: &str, name: &str, node: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding).await.is_ok()
}

/// `PodScheduled=False` with the reason, and a `FailedScheduling` event, as the
/// Kubernetes scheduler reports a pod that fits nowhere.
async fn report(client: &kube::Client, pod: &Value, message: &str) {
    let (namespace, name) = (text(pod, "/metadata/namespace"), text(pod, "/metadata/name"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let now = clock::now();
    let condition = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastTransitionTime": now, "lastProbeTime": null,
    }]}});
    // A pod deleted meanwhile has nothing to report to.
    let _ = pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(condition)).await;
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace,
            "uid": text(pod, "/metadata/uid"),
        },
        "reason": "FailedScheduling",
        "message": message,
        "type": "Warning",
        "source": {"component": NAME},
        "reportingComponent": NAME,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    if let Ok(event) = serde_json::from_value::<Event>(event) {
        let _ = Api::<Event>::namespaced(client.clone(), namespace).create(&PostParams::default(), &event).await;
    }
}
