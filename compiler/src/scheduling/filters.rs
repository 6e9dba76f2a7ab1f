//! Filters: a node is out for the first reason one of them gives, worded as the
//! Kubernetes scheduler words it.

use super::{NodeInfo, host_ports, pod_requests};
use serde_json::Value;
use std::collections::BTreeMap;

pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    /// `Err(reason)` rules the node out.
    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String>;
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// `spec.unschedulable` (a cordoned node), unless the pod tolerates the taint that says so.
pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        let cordoned = node.node.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
        let taint = ("node.kubernetes.io/unschedulable", "", "NoSchedule");
        if cordoned && !tolerations(pod).iter().any(|t| tolerates(t, taint)) {
            return Err("node(s) were unschedulable".into());
        }
        Ok(())
    }
}

/// `spec.nodeName` set before scheduling.
pub struct NodeName;

impl Filter for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        match text(pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
            Some(wanted) if wanted != node.name => Err("node(s) didn't match the requested node name".into()),
            _ => Ok(()),
        }
    }
}

/// Requests against what the node can give, minus what its pods already take.
pub struct NodeResourcesFit;

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        let wants = pod_requests(pod);
        let (free, used) = (node.allocatable, node.requested);
        if used.pods + 1 > free.pods {
            return Err("Too many pods".into());
        }
        if wants.milli_cpu > 0 && used.milli_cpu.saturating_add(wants.milli_cpu) > free.milli_cpu {
            return Err("Insufficient cpu".into());
        }
        if wants.memory > 0 && used.memory.saturating_add(wants.memory) > free.memory {
            return Err("Insufficient memory".into());
        }
        Ok(())
    }
}

/// Host ports already taken on the node (by protocol, port and overlapping host IP).
pub struct NodePorts;

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        let clash = host_ports(pod).iter().any(|(protocol, port, ip)| {
            node.host_ports
                .iter()
                .any(|(p, n, i)| p == protocol && n == port && (ip == i || ip == "0.0.0.0" || i == "0.0.0.0"))
        });
        if clash { Err("node(s) didn't have free ports for the requested pod ports".into()) } else { Ok(()) }
    }
}

/// One `NodeSelectorRequirement` against a node's labels (or, for `matchFields`, its name).
fn requirement_matches(requirement: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let key = text(requirement, "/key").unwrap_or_default();
    let values: Vec<&str> =
        requirement.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let actual = lookup(key);
    let number = |text: &str| text.parse::<i64>().ok();
    match text(requirement, "/operator").unwrap_or_default() {
        "In" => actual.is_some_and(|a| values.contains(&a.as_str())),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a.as_str())),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" | "Lt" => {
            let (Some(actual), Some(bound)) =
                (actual.as_deref().and_then(number), values.first().and_then(|v| number(v)))
            else {
                return false;
            };
            if text(requirement, "/operator") == Some("Gt") { actual > bound } else { actual < bound }
        }
        _ => false,
    }
}

/// A `NodeSelectorTerm`: all of its expressions and fields. An empty term matches nothing.
pub(super) fn term_matches(term: &Value, node: &NodeInfo, labels: &BTreeMap<String, String>) -> bool {
    let expressions = term.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
    let fields = term.get("matchFields").and_then(Value::as_array).cloned().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let by_label = |key: &str| labels.get(key).cloned();
    let by_field = |key: &str| (key == "metadata.name").then(|| node.name.clone());
    expressions.iter().all(|r| requirement_matches(r, &by_label))
        && fields.iter().all(|r| requirement_matches(r, &by_field))
}

/// `nodeSelector` and required node affinity.
pub struct NodeAffinity;

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        let labels = node.labels();
        let selector_ok = pod
            .pointer("/spec/nodeSelector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
        let terms = pod
            .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array);
        let affinity_ok = terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, node, &labels)));
        if selector_ok && affinity_ok {
            Ok(())
        } else {
            Err("node(s) didn't match Pod's node affinity/selector".into())
        }
    }
}

pub(super) fn tolerations(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Whether a toleration tolerates a taint `(key, value, effect)`.
pub(super) fn tolerates(toleration: &Value, (key, value, effect): (&str, &str, &str)) -> bool {
    let field = |name: &str| text(toleration, &format!("/{name}")).unwrap_or_default();
    if !field("effect").is_empty() && field("effect") != effect {
        return false;
    }
    let exists = field("operator") == "Exists";
    if field("key").is_empty() {
        return exists;
    }
    field("key") == key && (exists || field("value") == value)
}

/// The node's taints as `(key, value, effect)`.
pub(super) fn taints(node: &NodeInfo) -> Vec<(String, String, String)> {
    node.node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let field = |name: &str| text(t, &format!("/{name}")).unwrap_or_default().to_string();
            (field("key"), field("value"), field("effect"))
        })
        .collect()
}

/// `NoSchedule` and `NoExecute` taints the pod does not tolerate.
pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &Value, node: &NodeInfo) -> Result<(), String> {
        let tolerations = tolerations(pod);
        for (key, value, effect) in taints(node) {
            if !matches!(effect.as_str(), "NoSchedule" | "NoExecute") {
                continue;
            }
            if !tolerations.iter().any(|t| tolerates(t, (&key, &value, &effect))) {
                return Err(format!("node(s) had untolerated taint {{{key}: {value}}}"));
            }
        }
        Ok(())
    }
}
