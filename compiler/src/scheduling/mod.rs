//! Where a pod can run and where it runs best: the Kubernetes scheduler framework's
//! default filters and scores, as pure functions of a pod and the nodes with what is
//! already bound to them. The harness's scheduler runs them against the API server; a
//! test can run them against any set of nodes.
//!
//! Filters (`filters.rs`) rule nodes out, each with the reason Kubernetes gives;
//! scores (`scores.rs`) rank what is left (0 to 100 per plugin, times its weight); ties
//! are broken by a seeded random choice, so the same seed places every pod the same way.

pub mod filters;
pub mod scores;

use crate::quantity::Quantity;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// CPU (millicores), memory (bytes) and a pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

fn quantity(value: Option<&Value>) -> Option<Quantity> {
    match value? {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn amounts(map: Option<&Value>) -> Resources {
    let get = |key: &str| quantity(map.and_then(|m| m.get(key)));
    Resources {
        milli_cpu: get("cpu").map_or(0, |q| q.millis_ceil().clamp(0, i64::MAX as i128) as i64),
        memory: get("memory").map_or(0, |q| q.units_ceil().clamp(0, i64::MAX as i128) as i64),
        pods: get("pods").map_or(0, |q| q.units_ceil().clamp(0, i64::MAX as i128) as i64),
    }
}

/// What a pod asks for, as the scheduler counts it: the sum of its containers, or the
/// largest init container if that is more, plus its overhead.
pub fn pod_requests(pod: &Value) -> Resources {
    let containers = |list: &str| -> Vec<Resources> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| amounts(c.pointer("/resources/requests")))
            .collect()
    };
    let mut total = Resources { pods: 1, ..Resources::default() };
    for c in containers("containers") {
        total.milli_cpu = total.milli_cpu.saturating_add(c.milli_cpu);
        total.memory = total.memory.saturating_add(c.memory);
    }
    for c in containers("initContainers") {
        total.milli_cpu = total.milli_cpu.max(c.milli_cpu);
        total.memory = total.memory.max(c.memory);
    }
    let overhead = amounts(pod.pointer("/spec/overhead"));
    total.milli_cpu = total.milli_cpu.saturating_add(overhead.milli_cpu);
    total.memory = total.memory.saturating_add(overhead.memory);
    total
}

/// A node and what is bound to it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub node: Value,
    pub allocatable: Resources,
    pub requested: Resources,
    /// `(protocol, host port, host IP)` taken by bound pods.
    pub host_ports: Vec<(String, i64, String)>,
    /// Bound pods per controlling owner's uid, to spread replicas.
    pub owners: HashMap<String, usize>,
}

/// The uid of the object that controls a pod (its ReplicaSet, StatefulSet, ...).
pub fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller") == Some(&Value::Bool(true)))?
        .get("uid")?
        .as_str()
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Value) -> Vec<(String, i64, String)> {
    let mut ports = Vec::new();
    for list in ["containers", "initContainers"] {
        for container in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
            for port in container.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if host_port > 0 {
                    let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
                    let ip = port.get("hostIP").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("0.0.0.0");
                    ports.push((protocol, host_port, ip.to_string()));
                }
            }
        }
    }
    ports
}

impl NodeInfo {
    pub fn new(node: &Value) -> NodeInfo {
        NodeInfo {
            name: node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            allocatable: amounts(node.pointer("/status/allocatable").or_else(|| node.pointer("/status/capacity"))),
            node: node.clone(),
            requested: Resources::default(),
            host_ports: Vec::new(),
            owners: HashMap::new(),
        }
    }

    /// Counts a pod bound to this node.
    pub fn add_pod(&mut self, pod: &Value) {
        let requests = pod_requests(pod);
        self.requested.milli_cpu = self.requested.milli_cpu.saturating_add(requests.milli_cpu);
        self.requested.memory = self.requested.memory.saturating_add(requests.memory);
        self.requested.pods += 1;
        self.host_ports.extend(host_ports(pod));
        if let Some(uid) = controller_uid(pod) {
            *self.owners.entry(uid.to_string()).or_default() += 1;
        }
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    }
}

/// Why a pod fits no node, counted by reason, as Kubernetes reports it:
/// `0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut reasons: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        // The scheduler sorts the counted reasons as strings.
        reasons.sort();
        if reasons.is_empty() {
            write!(f, "0/{} nodes are available.", self.nodes)
        } else {
            write!(f, "0/{} nodes are available: {}.", self.nodes, reasons.join(", "))
        }
    }
}

/// The default plugins, in Kubernetes' order, with its score weights.
pub struct Framework {
    pub filters: Vec<Box<dyn filters::Filter>>,
    pub scores: Vec<(Box<dyn scores::Score>, i64)>,
}

impl Default for Framework {
    fn default() -> Framework {
        Framework {
            filters: vec![
                Box::new(filters::NodeUnschedulable),
                Box::new(filters::NodeName),
                Box::new(filters::TaintToleration),
                Box::new(filters::NodeAffinity),
                Box::new(filters::NodePorts),
                Box::new(filters::NodeResourcesFit),
            ],
            scores: vec![
                (Box::new(scores::TaintToleration), 3),
                (Box::new(scores::NodeAffinity), 2),
                (Box::new(scores::LeastAllocated), 1),
                (Box::new(scores::Spread), 2),
            ],
        }
    }
}

impl Framework {
    /// The index of the node the pod goes to; `pick(n)` chooses among `n` equally good
    /// nodes (a seeded random number makes the choice repeatable).
    pub fn schedule(
        &self,
        pod: &Value,
        nodes: &[NodeInfo],
        pick: &mut dyn FnMut(usize) -> usize,
    ) -> Result<usize, Unschedulable> {
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            match self.filters.iter().find_map(|filter| filter.filter(pod, node).err()) {
                Some(reason) => *reasons.entry(reason).or_default() += 1,
                None => feasible.push(i),
            }
        }
        if feasible.is_empty() {
            return Err(Unschedulable { nodes: nodes.len(), reasons });
        }
        let mut totals = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.scores {
            let mut scores: Vec<i64> = feasible.iter().map(|&i| plugin.score(pod, &nodes[i])).collect();
            plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(scores) {
                *total += score.clamp(0, scores::MAX) * weight;
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let top: Vec<usize> = feasible.iter().zip(&totals).filter(|(_, t)| **t == best).map(|(i, _)| *i).collect();
        Ok(top[pick(top.len()).min(top.len() - 1)])
    }
}

#[cfg(test)]
mod tests;
