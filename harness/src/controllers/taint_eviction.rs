//! The taint-eviction controller: pods on a node with a `NoExecute` taint they do not
//! tolerate are deleted at once; pods that tolerate it for `tolerationSeconds` are deleted
//! that long after the taint was added (every pod tolerates `unreachable` and `not-ready`
//! for 300 s unless it says otherwise: the API server's DefaultTolerationSeconds). Their
//! owners make replacements, which the scheduler keeps off the tainted node.
//!
//! Driven by the shared informers: a node is looked at when it changes (its taints), when
//! a pod bound to it changes, and the moment a pod's toleration runs out, on the control
//! plane's clock. `decide` is the pure part: from a node, its pods and the time, which
//! pods go and when to look again.

use super::{Error, Wakeups, Wiring};
use crate::clock::{self, Clock};
use crate::informers::Informers;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kubeyard_compiler::scheduling::{Taint, Toleration, tolerated_for};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<Node>,
    pods: crate::informers::Informer<Pod>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: Clock) {
    // A pod bound to a node concerns that node, if the node has a NoExecute taint: on an
    // untainted node no pod change can evict anything, and a taint arriving is a change of
    // the node itself, which looks at all its pods. (At 100,000 pods, every status change
    // of every pod came here only to be answered "not tainted".)
    let nodes = informers.nodes.clone();
    let node_of = move |pod: Arc<Pod>| {
        let name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())?;
        nodes.get("", name).filter(|node| has_no_execute_taint(node)).map(|_| ObjectRef::<Node>::new(name))
    };
    let mut wiring = Wiring::of(&informers.nodes).watches(&informers.pods, node_of);
    let context = Context { client, wakeups: wiring.wakeups(&clock), clock, pods: informers.pods.clone() };
    wiring.run(reconcile, Arc::new(context)).await;
}

async fn reconcile(node: Arc<Node>, context: Arc<Context>) -> Result<Action, Error> {
    // Most nodes carry no NoExecute taint: answered from the typed node, before anything
    // is converted or any pod looked at (every pod change on a node comes here).
    if !has_no_execute_taint(&node) {
        return Ok(Action::await_change());
    }
    let taints = no_execute_taints(&node);
    let name = node.name_any();
    let pods: Vec<Arc<Pod>> = context
        .pods
        .all()
        .into_iter()
        .filter(|pod| pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        .collect();
    let decision = decide(&taints, &pods, context.clock.now());
    for (namespace, pod) in &decision.evict {
        let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
        match pods.delete(pod, &DeleteParams::default()).await {
            // Gone already: what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    if let Some(left) = decision.next {
        context.wakeups.after(&node, left);
    }
    Ok(Action::await_change())
}

fn has_no_execute_taint(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"))
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    Taint::of_node(&serde_json::to_value(node).unwrap_or(Value::Null))
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

/// What one look at a node decided.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// The pods to delete, as (namespace, name).
    evict: Vec<(String, String)>,
    /// How long until the next pod's toleration runs out.
    next: Option<Duration>,
}

/// `processPodOnNode` for each pod of a node with these `NoExecute` taints, at `now`.
fn decide(taints: &[Taint], pods: &[Arc<Pod>], now: SystemTime) -> Decision {
    let mut decision = Decision::default();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let tolerations = Toleration::of_pod(&serde_json::to_value(pod.as_ref()).unwrap_or(Value::Null));
        // How long the pod may still stay: the least time left under any taint.
        let left = taints
            .iter()
            .filter_map(|taint| {
                let limit = tolerated_for(&tolerations, taint)?;
                let added = taint.time_added.as_deref().and_then(clock::parse);
                let waited = added.map_or(limit, |a| now.duration_since(a).unwrap_or_default());
                Some(limit.saturating_sub(waited))
            })
            .min();
        match left {
            Some(Duration::ZERO) => decision.evict.push((pod.namespace().unwrap_or_default(), pod.name_any())),
            Some(left) => decision.next = Some(decision.next.map_or(left, |next: Duration| next.min(left))),
            None => {}
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, added: Option<&str>) -> Taint {
        let mut value = json!({"key": key, "effect": "NoExecute"});
        if let Some(added) = added {
            value["timeAdded"] = json!(added);
        }
        let node = json!({"spec": {"taints": [value]}});
        Taint::of_node(&node).remove(0)
    }

    fn pod(name: &str, tolerations: Value, deleting: bool) -> Arc<Pod> {
        let mut pod = json!({"metadata": {"name": name, "namespace": "shop"},
                             "spec": {"nodeName": "n1", "containers": [], "tolerations": tolerations}});
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    #[test]
    fn pods_go_when_their_toleration_runs_out() {
        let added = "2026-01-01T00:00:00Z";
        let at = |seconds: u64| clock::parse(added).unwrap() + Duration::from_secs(seconds);
        let unreachable = [taint("node.kubernetes.io/unreachable", Some(added))];
        let tolerates = |seconds: Option<i64>| {
            let mut toleration =
                json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
            if let Some(seconds) = seconds {
                toleration["tolerationSeconds"] = json!(seconds);
            }
            json!([toleration])
        };
        let pods = [
            pod("intolerant", json!([]), false),
            pod("patient", tolerates(Some(300)), false),
            pod("brief", tolerates(Some(30)), false),
            pod("forever", tolerates(None), false),
            pod("leaving", json!([]), true),
        ];
        let names = |d: &Decision| d.evict.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>();
        let table = [
            (0, vec!["intolerant"], Some(30)),
            (29, vec!["intolerant"], Some(1)),
            (30, vec!["intolerant", "brief"], Some(270)),
            (300, vec!["intolerant", "patient", "brief"], None),
        ];
        for (seconds, evicted, next) in table {
            let decision = decide(&unreachable, &pods, at(seconds));
            assert_eq!(names(&decision), evicted, "at {seconds} s");
            assert_eq!(decision.next, next.map(Duration::from_secs), "at {seconds} s");
        }
        // A taint with no time added counts as long past (as before): every pod that
        // tolerates it for a while goes too.
        let undated = [taint("node.kubernetes.io/unreachable", None)];
        let decision = decide(&undated, &pods, at(0));
        assert_eq!(names(&decision), ["intolerant", "patient", "brief"]);
        assert_eq!(decision.next, None);
    }
}
