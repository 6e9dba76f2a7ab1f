//! The node lifecycle controller: a node whose kubelet has not renewed its Lease within
//! the grace period (`--node-monitor-grace-period`, 50 s) gets its conditions set to
//! `Unknown` ("Kubelet stopped posting node status."), its pods marked not ready, and the
//! `node.kubernetes.io/unreachable` taints (NoSchedule so nothing new lands there,
//! NoExecute so the taint-eviction controller moves what runs there). A node that posts
//! Ready again loses the taints.
//!
//! Driven by the shared informers: a node is looked at when it or its Lease changes, and
//! again the moment its grace period would run out, on the control plane's clock (so a
//! test on a virtual clock passes the grace period at once). `decide` is the pure part:
//! from a node, its Lease and the time, what to write.

use super::{Error, Wakeups, Wiring};
use crate::clock::{self, Clock};
use crate::events;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// How long after its grace period runs out a node is looked at: it is silent once the
/// time since its last renewal is strictly more than the grace period.
const PAST_GRACE: Duration = Duration::from_millis(1);

/// `--node-monitor-grace-period`'s default: 50 s since Kubernetes 1.32 (it was 40 s; at 40 s
/// a kubelet's lease, renewed every 10 s with retries, could miss the deadline once and
/// flap its node).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(50);

/// How often a kubelet renews its lease where the grace period was turned down: a quarter
/// of it, at most the kubelet's default 10 s. A kubelet renews at a quarter of its
/// `nodeLeaseDurationSeconds`, so a cluster tuned to notice a silent node sooner has its
/// kubelets' lease shortened with it; otherwise every healthy node would go Unknown between
/// two renewals. In process and in containers alike.
pub fn renew_interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Clock,
    /// How long a node may go without renewing its lease (`--node-monitor-grace-period`).
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { clock: Clock::real(), grace: DEFAULT_GRACE }
    }
}

struct Context {
    client: kube::Client,
    options: Options,
    wakeups: Wakeups<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    nodes_expected: Expectations<Node>,
    /// The nodes (by uid) already said to be registered.
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, options: Options) {
    // A Lease is named after its node: its renewal concerns that node.
    let node_of = |lease: Arc<Lease>| [ObjectRef::<Node>::new(&lease.name_any())];
    let mut wiring = Wiring::of(&informers.nodes).watches(&informers.leases, node_of).reads(&informers.pods);
    let context = Context {
        client,
        wakeups: wiring.wakeups(&options.clock),
        options,
        leases: informers.leases.clone(),
        pods: informers.pods.clone(),
        nodes_expected: Expectations::new(&informers.nodes),
        registered: std::sync::Mutex::default(),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

async fn reconcile(node: Arc<Node>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(node.as_ref());
    // The conditions and taints are judged on the node as this controller last wrote it.
    if !context.nodes_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    // A node seen for the first time (by uid: one deleted and made again is new).
    let uid = node.uid().unwrap_or_default();
    let first = context.registered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid);
    if first {
        let name = node.name_any();
        let object = json!({"apiVersion": "v1", "kind": "Node", "metadata": node.metadata});
        let message = format!("Node {name} event: Registered Node {name} in Controller");
        let source = events::Source { component: "node-controller", host: None };
        let now = context.options.clock.timestamp();
        events::record(&context.client, &object, source, events::Type::Normal, "RegisteredNode", &message, &now).await;
    }
    let lease = context.leases.get(crate::kubelet::LEASE_NAMESPACE, &node.name_any());
    let decision = decide(&node, lease.as_deref(), context.options.clock.now(), context.options.grace);
    let written = Written::default();
    let result = apply(&context, &node, &decision, &written).await;
    context.nodes_expected.expect(&key, &written);
    result?;
    if let Some(left) = decision.silent_in {
        context.wakeups.after(&node, left + PAST_GRACE);
    }
    Ok(Action::await_change())
}

/// What one look at a node decided.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// The node just went silent: its conditions, every one now `Unknown` (its pods are
    /// marked not ready too).
    unknown: Option<Vec<Value>>,
    /// Its taints, when the condition taints among them change.
    taints: Option<Vec<Value>>,
    /// How long until it goes silent, while it is not.
    silent_in: Option<Duration>,
    /// The time it was decided at, as the API writes it (pods' transitions are stamped so).
    at: String,
}

fn ready_status(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// When the node's kubelet last showed life: its Lease's renewal, else the node's creation.
fn last_heard(node: &Node, lease: Option<&Lease>) -> Option<SystemTime> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|t| t.as_str().and_then(clock::parse));
    let created = || {
        let text = serde_json::to_value(node.metadata.creation_timestamp.as_ref()?).ok()?;
        text.as_str().and_then(clock::parse)
    };
    renewed.or_else(created)
}

/// `monitorNodeHealth` for one node at `now`.
fn decide(node: &Node, lease: Option<&Lease>, now: SystemTime, grace: Duration) -> Decision {
    let since = last_heard(node, lease).map(|then| now.duration_since(then).unwrap_or_default());
    let silent = since.is_some_and(|since| since > grace);
    let status = ready_status(node);
    let stamp = clock::format(now);
    let silent_in = since.filter(|_| !silent).map(|since| grace - since);
    let mut decision = Decision { silent_in, at: stamp.clone(), ..Decision::default() };
    if silent && status != "Unknown" {
        decision.unknown = Some(unknown_conditions(node, &stamp));
    }
    let wanted = match (silent, status.as_str()) {
        (true, _) | (false, "Unknown") => Some(UNREACHABLE),
        (false, "False") => Some(NOT_READY),
        _ => None,
    };
    decision.taints = taints(node, wanted, &stamp);
    decision
}

/// Every condition the kubelet posts becomes `Unknown`, as Kubernetes writes it.
fn unknown_conditions(node: &Node, now: &str) -> Vec<Value> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    conditions
        .map(|c| {
            json!({
                "type": c.type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": c.last_heartbeat_time, "lastTransitionTime": now,
            })
        })
        .collect()
}

/// The node's taints keeping exactly the wanted condition taint (both effects); `None`
/// when they already do.
fn taints(node: &Node, wanted: Option<&str>, now: &str) -> Option<Vec<Value>> {
    let current: Vec<Value> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
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
                    taint["timeAdded"] = json!(now);
                }
                next.push(taint);
            }
        }
    }
    (next != current).then_some(next)
}

/// A pod's conditions with `Ready` now `False`: its node can no longer be trusted to
/// serve it, so endpoints drop it.
fn not_ready_conditions(pod: &Pod, now: &str) -> Vec<Value> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    conditions
        .map(|c| {
            let mut value = serde_json::to_value(c).unwrap_or(Value::Null);
            if c.type_ == "Ready" && c.status != "False" {
                value["status"] = json!("False");
                value["lastTransitionTime"] = json!(now);
            }
            value
        })
        .collect()
}

/// Writes the decision: the node's conditions, then its pods', then its taints (against
/// the version the conditions' write returned).
async fn apply(context: &Context, node: &Node, decision: &Decision, written: &Written) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(context.client.clone());
    let name = node.name_any();
    let mut version = node.resource_version();
    if let Some(conditions) = &decision.unknown {
        let patch = json!({"status": {"conditions": conditions}});
        let marked = nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        written.note(&marked);
        version = marked.resource_version();
        // Said on the node, and on each of its pods, as the node controller says it.
        let source = events::Source { component: "node-controller", host: None };
        let node_object = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}});
        let message = format!("Node {name} status is now: NodeNotReady");
        events::record(
            &context.client,
            &node_object,
            source,
            events::Type::Normal,
            "NodeNotReady",
            &message,
            &decision.at,
        )
        .await;
        let on_node = context
            .pods
            .all()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()));
        for pod in on_node {
            let pods: Api<Pod> = Api::namespaced(context.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({"status": {"conditions": not_ready_conditions(&pod, &decision.at)}});
            // A pod deleted meanwhile needs no marking.
            if pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.is_ok() {
                let object = json!({"metadata": pod.metadata});
                let (kind, why) = (events::Type::Warning, "Node is not ready");
                events::record(&context.client, &object, source, kind, "NodeNotReady", why, &decision.at).await;
            }
        }
    }
    if let Some(taints) = &decision.taints {
        let patch = json!({"metadata": {"resourceVersion": version}, "spec": {"taints": taints}});
        written.note(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn at(second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(second)
    }

    /// A node made at 0 whose Ready condition is `ready`, with these taints.
    fn node(ready: &str, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "node-1", "creationTimestamp": clock::format(at(0))},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "lastHeartbeatTime": clock::format(at(1))},
                {"type": "MemoryPressure", "status": "False"},
            ]},
        }))
        .unwrap()
    }

    fn lease(renewed: u64) -> Lease {
        let micro = format!("{}.000000Z", clock::format(at(renewed)).trim_end_matches('Z'));
        serde_json::from_value(json!({"metadata": {"name": "node-1"}, "spec": {"renewTime": micro}})).unwrap()
    }

    fn keys(taints: &[Value]) -> Vec<String> {
        taints
            .iter()
            .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or("")))
            .collect()
    }

    #[test]
    fn silent_nodes_go_unknown_and_condition_taints_follow_readiness() {
        let unreachable =
            json!([{"key": UNREACHABLE, "effect": "NoSchedule"}, {"key": UNREACHABLE, "effect": "NoExecute"}]);
        let other = json!([{"key": "dedicated", "effect": "NoSchedule"}, {"key": UNREACHABLE, "effect": "NoSchedule"}]);
        let both = [format!("{UNREACHABLE}:NoSchedule"), format!("{UNREACHABLE}:NoExecute")];
        let not_ready = [format!("{NOT_READY}:NoSchedule"), format!("{NOT_READY}:NoExecute")];
        // (case, node, lease renewed at, now, marked Unknown, taints written, silent in)
        let cases = vec![
            (
                "a renewed lease: nothing to do until the grace runs out",
                node("True", json!([])),
                Some(100),
                110,
                false,
                None,
                Some(30),
            ),
            (
                "exactly the grace period is not yet silent",
                node("True", json!([])),
                Some(100),
                140,
                false,
                None,
                Some(0),
            ),
            (
                "silent: Unknown, and tainted unreachable",
                node("True", json!([])),
                Some(100),
                145,
                true,
                Some(both.to_vec()),
                None,
            ),
            (
                "no lease: counted from the node's creation",
                node("True", json!([])),
                None,
                41,
                true,
                Some(both.to_vec()),
                None,
            ),
            (
                "already Unknown and tainted: nothing more",
                node("Unknown", unreachable.clone()),
                Some(100),
                200,
                false,
                None,
                None,
            ),
            (
                "back, not yet posting Ready: still unreachable",
                node("Unknown", json!([])),
                Some(190),
                200,
                false,
                Some(both.to_vec()),
                Some(30),
            ),
            (
                "not ready: the not-ready taints replace unreachable",
                node("False", unreachable.clone()),
                Some(190),
                200,
                false,
                Some(not_ready.to_vec()),
                Some(30),
            ),
            (
                "ready again: condition taints go, others stay",
                node("True", other),
                Some(190),
                200,
                false,
                Some(vec!["dedicated:NoSchedule".to_string()]),
                Some(30),
            ),
            ("ready and untainted: nothing", node("True", json!([])), Some(190), 200, false, None, Some(30)),
        ];
        for (name, node, renewed, now, unknown, taints, silent_in) in cases {
            let lease = renewed.map(lease);
            let decision = decide(&node, lease.as_ref(), at(now), GRACE);
            assert_eq!(decision.unknown.is_some(), unknown, "{name}");
            assert_eq!(decision.taints.as_deref().map(keys), taints, "{name}");
            assert_eq!(decision.silent_in, silent_in.map(Duration::from_secs), "{name}");
        }
    }

    #[test]
    fn what_a_silent_node_is_written() {
        let decision = decide(&node("True", json!([])), Some(&lease(100)), at(145), GRACE);
        let conditions = decision.unknown.unwrap();
        assert_eq!(conditions.len(), 2, "every condition");
        for condition in &conditions {
            assert_eq!(condition["status"], "Unknown");
            assert_eq!(condition["reason"], "NodeStatusUnknown");
            assert_eq!(condition["message"], "Kubelet stopped posting node status.");
            assert_eq!(condition["lastTransitionTime"], clock::format(at(145)));
        }
        assert_eq!(conditions[0]["lastHeartbeatTime"], clock::format(at(1)), "the last heartbeat kept");
        let taints = decision.taints.unwrap();
        assert_eq!(taints[1]["timeAdded"], clock::format(at(145)), "NoExecute counts from now");
        assert!(taints[0].get("timeAdded").is_none());

        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": clock::format(at(5))},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": clock::format(at(2))}]}}))
        .unwrap();
        let marked = not_ready_conditions(&pod, &decision.at);
        assert_eq!(marked[0]["status"], "False");
        assert_eq!(marked[0]["lastTransitionTime"], clock::format(at(145)));
        assert_eq!(marked[1]["lastTransitionTime"], clock::format(at(2)), "other conditions as they were");
    }
}
