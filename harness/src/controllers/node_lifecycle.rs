//! The node lifecycle controller: a node whose kubelet has not renewed its Lease within
//! the grace period (`--node-monitor-grace-period`, 40 s) gets its conditions set to
//! `Unknown` ("Kubelet stopped posting node status."), its pods marked not ready, and the
//! `node.kubernetes.io/unreachable` taints (NoSchedule so nothing new lands there,
//! NoExecute so the taint-eviction controller moves what runs there). A node that posts
//! Ready again loses the taints.
//!
//! It checks every monitor period (5 s) on the control plane's clock, so a test on a
//! virtual clock passes the grace period at once.

use crate::clock::Clock;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Clock,
    /// How long a node may go without renewing its lease (`--node-monitor-grace-period`).
    pub grace: Duration,
    /// How often nodes are checked (`--node-monitor-period`).
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { clock: Clock::real(), grace: Duration::from_secs(40), period: Duration::from_secs(5) }
    }
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, options: Options) {
    loop {
        options.clock.sleep(options.period).await;
        // A failed pass (the API server restarting) is simply tried again next period.
        let _ = pass(&client, &options).await;
    }
}

fn ready_status(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into())
}

async fn pass(client: &kube::Client, options: &Options) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), crate::kubelet::LEASE_NAMESPACE);
    let renewed: HashMap<String, String> = leases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|lease| {
            let time = lease.spec.as_ref()?.renew_time.as_ref()?;
            let text = serde_json::to_value(time).ok()?.as_str()?.to_string();
            Some((lease.name_any(), text))
        })
        .collect();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let created = node.metadata.creation_timestamp.as_ref().and_then(|t| serde_json::to_value(t).ok());
        let last = renewed.get(&name).cloned().or_else(|| created.and_then(|c| c.as_str().map(str::to_string)));
        let silent = last.as_deref().and_then(|t| options.clock.since(t)).is_some_and(|d| d > options.grace);
        let status = ready_status(&node);
        if silent && status != "Unknown" {
            mark_unknown(client, &node, &options.clock).await?;
            mark_pods_not_ready(client, &name, &options.clock).await?;
        }
        let wanted = match (silent, status.as_str()) {
            (true, _) | (false, "Unknown") => Some(UNREACHABLE),
            (false, "False") => Some(NOT_READY),
            _ => None,
        };
        set_taints(client, &node, wanted, &options.clock).await?;
    }
    Ok(())
}

/// Every condition the kubelet posts becomes `Unknown`, as Kubernetes writes it.
async fn mark_unknown(client: &kube::Client, node: &Node, clock: &Clock) -> Result<(), kube::Error> {
    let now = clock.timestamp();
    let conditions: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "type": c.type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": c.last_heartbeat_time, "lastTransitionTime": now,
            })
        })
        .collect();
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": conditions}});
    nodes.patch_status(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
}

/// The node's pods can no longer be trusted to serve: Ready=False, so endpoints drop them.
async fn mark_pods_not_ready(client: &kube::Client, node: &str, clock: &Clock) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    let now = clock.timestamp();
    for pod in list.items {
        let conditions: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let mut value = serde_json::to_value(&c).unwrap_or(Value::Null);
                if c.type_ == "Ready" && c.status != "False" {
                    value["status"] = json!("False");
                    value["lastTransitionTime"] = json!(now);
                }
                value
            })
            .collect();
        let namespaced: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": conditions}});
        // A pod deleted meanwhile needs no marking.
        let _ = namespaced.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
    Ok(())
}

/// Keeps exactly the wanted condition taint (both effects) among the node's taints.
async fn set_taints(
    client: &kube::Client,
    node: &Node,
    wanted: Option<&str>,
    clock: &Clock,
) -> Result<(), kube::Error> {
    let current: Vec<Value> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    let ours = |t: &Value| matches!(t["key"].as_str(), Some(UNREACHABLE | NOT_READY));
    let mut next: Vec<Value> =
        current.iter().filter(|t| !ours(t) || Some(t["key"].as_str().unwrap_or("")) == wanted).cloned().collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t["key"] == key && t["effect"] == effect) {
                let mut taint = json!({"key": key, "effect": effect});
                if effect == "NoExecute" {
                    taint["timeAdded"] = json!(clock.timestamp());
                }
                next.push(taint);
            }
        }
    }
    if next == current {
        return Ok(());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": next}});
    nodes.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
}
