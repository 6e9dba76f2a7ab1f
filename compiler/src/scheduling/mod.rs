//! Where a pod can run and where it runs best: the Kubernetes scheduler framework's
//! default filters and scores, as pure functions of a pod and the nodes with what is
//! already bound to them. The harness's scheduler runs them against the API server; a
//! test can run them against any set of nodes.
//!
//! As in Kubernetes, what the plugins read is taken out of the objects once (its
//! `PreFilter` and the node cache): a [`PodInfo`] per pod, a [`NodeInfo`] per node that
//! bound pods are added to and removed from. Filters (`filters.rs`) rule nodes out, each
//! with the reason Kubernetes gives; scores (`scores.rs`) rank what is left (0 to 100 per
//! plugin, times its weight); ties are broken by a seeded random choice, so the same seed
//! places every pod the same way.

pub mod filters;
pub mod scores;

use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// CPU (millicores), memory (bytes) and a pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.pods = self.pods.saturating_add(other.pods);
    }

    fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu).max(0);
        self.memory = self.memory.saturating_sub(other.memory).max(0);
        self.pods = self.pods.saturating_sub(other.pods).max(0);
    }

    /// One pod asking for the cpu and memory of `requests` (`crate::pod::requests`).
    pub fn of_pod(requests: &crate::pod::ResourceList) -> Resources {
        let get = |key: &str| requests.get(key);
        Resources {
            milli_cpu: get("cpu").map_or(0, |q| q.millis_ceil().clamp(0, i64::MAX as i128) as i64),
            memory: get("memory").map_or(0, |q| q.units_ceil().clamp(0, i64::MAX as i128) as i64),
            pods: 1,
        }
    }
}

fn amounts(map: Option<&Value>) -> Resources {
    let get = |key: &str| map.and_then(|m| m.get(key)).and_then(crate::pod::quantity);
    Resources {
        milli_cpu: get("cpu").map_or(0, |q| q.millis_ceil().clamp(0, i64::MAX as i128) as i64),
        memory: get("memory").map_or(0, |q| q.units_ceil().clamp(0, i64::MAX as i128) as i64),
        pods: get("pods").map_or(0, |q| q.units_ceil().clamp(0, i64::MAX as i128) as i64),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

/// What a pod asks for, as the scheduler counts it (`crate::pod::requests`: containers
/// and sidecars, or the init phase if it needs more, plus the overhead), in the units
/// the framework compares.
pub fn pod_requests(pod: &Value) -> Resources {
    let requests = pod.get("spec").map(|spec| crate::pod::requests(spec, crate::pod::Amounts::Requests));
    Resources::of_pod(&requests.unwrap_or_default())
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

/// A host port a pod takes: protocol, port and host IP (`0.0.0.0` for every address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub port: i64,
    pub ip: String,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Value) -> Vec<HostPort> {
    let mut ports = Vec::new();
    for list in ["containers", "initContainers"] {
        for container in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
            for port in container.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if host_port > 0 {
                    let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
                    let ip = port.get("hostIP").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("0.0.0.0");
                    ports.push(HostPort { protocol, port: host_port, ip: ip.to_string() });
                }
            }
        }
    }
    ports
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
    /// `timeAdded`, as written (RFC 3339), for `NoExecute` taints.
    pub time_added: Option<String>,
}

impl Taint {
    pub fn from_value(taint: &Value) -> Taint {
        Taint {
            key: text(taint, "key").to_string(),
            value: text(taint, "value").to_string(),
            effect: text(taint, "effect").to_string(),
            time_added: taint.get("timeAdded").and_then(Value::as_str).map(str::to_string),
        }
    }

    /// The taints of a Node object.
    pub fn of_node(node: &Value) -> Vec<Taint> {
        node.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten().map(Taint::from_value).collect()
    }

    pub fn new(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into(), time_added: None }
    }
}

/// A pod toleration, as Kubernetes matches it (`Toleration.ToleratesTaint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    /// `Exists`, or `Equal` (also when the field is empty).
    pub operator: String,
    pub value: String,
    pub effect: String,
    pub seconds: Option<i64>,
}

impl Toleration {
    pub fn from_value(toleration: &Value) -> Toleration {
        Toleration {
            key: text(toleration, "key").to_string(),
            operator: text(toleration, "operator").to_string(),
            value: text(toleration, "value").to_string(),
            effect: text(toleration, "effect").to_string(),
            seconds: toleration.get("tolerationSeconds").and_then(Value::as_i64),
        }
    }

    /// The tolerations of a Pod object.
    pub fn of_pod(pod: &Value) -> Vec<Toleration> {
        pod.pointer("/spec/tolerations").and_then(Value::as_array).into_iter().flatten().map(Self::from_value).collect()
    }

    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// How long a pod with `tolerations` may stay on a node with the `NoExecute` `taint`:
/// `Some(ZERO)` when it does not tolerate it, `None` for ever; the most generous matching
/// toleration wins (the taint-eviction controller's `getMinTolerationTime` over matches).
pub fn tolerated_for(tolerations: &[Toleration], taint: &Taint) -> Option<Duration> {
    let matching: Vec<&Toleration> = tolerations.iter().filter(|t| t.tolerates(taint)).collect();
    if matching.is_empty() {
        return Some(Duration::ZERO);
    }
    if matching.iter().any(|t| t.seconds.is_none()) {
        return None;
    }
    matching.iter().filter_map(|t| t.seconds).max().map(|s| Duration::from_secs(s.max(0) as u64))
}

/// One `NodeSelectorRequirement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl Requirement {
    fn from_value(requirement: &Value) -> Requirement {
        Requirement {
            key: text(requirement, "key").to_string(),
            operator: text(requirement, "operator").to_string(),
            values: strings(requirement.get("values")),
        }
    }

    fn matches(&self, actual: Option<&str>) -> bool {
        let number = |text: &str| text.parse::<i64>().ok();
        match self.operator.as_str() {
            "In" => actual.is_some_and(|a| self.values.iter().any(|v| v == a)),
            "NotIn" => actual.is_none_or(|a| !self.values.iter().any(|v| v == a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            "Gt" | "Lt" => {
                let (Some(actual), Some(bound)) =
                    (actual.and_then(number), self.values.first().and_then(|v| number(v)))
                else {
                    return false;
                };
                if self.operator == "Gt" { actual > bound } else { actual < bound }
            }
            _ => false,
        }
    }
}

impl fmt::Display for Requirement {
    /// `kubernetes.io/arch In [arm64]`, `disktype Exists`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.operator)?;
        if !self.values.is_empty() {
            write!(f, " [{}]", self.values.join(", "))?;
        }
        Ok(())
    }
}

/// A `NodeSelectorTerm`: all of its expressions (on labels) and fields (on the name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Term {
    pub expressions: Vec<Requirement>,
    pub fields: Vec<Requirement>,
}

impl Term {
    pub fn from_value(term: &Value) -> Term {
        let list = |key: &str| {
            term.get(key).and_then(Value::as_array).into_iter().flatten().map(Requirement::from_value).collect()
        };
        Term { expressions: list("matchExpressions"), fields: list("matchFields") }
    }

    /// An empty term matches nothing.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(node.labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches((r.key == "metadata.name").then_some(node.name.as_str())))
    }
}

/// What the plugins read of a pod, read once per scheduling attempt.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity: any term must match. `None`: no requirement.
    pub required_terms: Option<Vec<Term>>,
    /// Preferred node affinity: weights and terms.
    pub preferred_terms: Vec<(i64, Term)>,
    /// `spec.nodeName` set before scheduling.
    pub node_name: Option<String>,
    /// The uid of the pod's controller, to spread replicas.
    pub controller: Option<String>,
}

impl PodInfo {
    pub fn new(pod: &Value) -> PodInfo {
        let affinity = pod.pointer("/spec/affinity/nodeAffinity");
        let required = affinity
            .and_then(|a| a.pointer("/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"))
            .and_then(Value::as_array)
            .map(|terms| terms.iter().map(Term::from_value).collect());
        let preferred = affinity
            .and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((p.get("weight").and_then(Value::as_i64).unwrap_or(0), Term::from_value(p.get("preference")?)))
            })
            .collect();
        PodInfo {
            requests: pod_requests(pod),
            host_ports: host_ports(pod),
            tolerations: Toleration::of_pod(pod),
            node_selector: pod
                .pointer("/spec/nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            required_terms: required,
            preferred_terms: preferred,
            node_name: pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            controller: controller_uid(pod).map(str::to_string),
        }
    }

    /// What of the pod's node selection rules out every one of `nodes`, in words: the
    /// `nodeSelector` entry no node carries, or for each term of the required node
    /// affinity the requirement no node meets. `None` when some node satisfies both (the
    /// NodeAffinity filter lets it through). The scheduler only says "didn't match Pod's
    /// node affinity/selector"; lint names the term to change.
    pub fn unmatched_selection(&self, nodes: &[NodeInfo]) -> Option<String> {
        let selects = |node: &NodeInfo| self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
        let affine =
            |node: &NodeInfo| self.required_terms.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(node)));
        if nodes.iter().any(|n| selects(n) && affine(n)) {
            return None;
        }
        for (key, value) in &self.node_selector {
            if nodes.iter().any(|n| n.labels.get(key) == Some(value)) {
                continue;
            }
            let seen: std::collections::BTreeSet<&str> =
                nodes.iter().filter_map(|n| n.labels.get(key).map(String::as_str)).collect();
            let seen: Vec<&str> = seen.into_iter().collect();
            return Some(match seen.as_slice() {
                [] => format!("nodeSelector {key}: {value} matches no node: none has the label {key}"),
                _ => format!("nodeSelector {key}: {value} matches no node: they have {key}: {}", seen.join(", ")),
            });
        }
        if !nodes.iter().any(selects) {
            let all: Vec<String> = self.node_selector.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            return Some(format!("no node has all of nodeSelector's labels ({})", all.join(", ")));
        }
        let terms = self.required_terms.as_ref()?;
        let eligible: Vec<&NodeInfo> = nodes.iter().filter(|n| selects(n)).collect();
        let why: Vec<String> = terms
            .iter()
            .enumerate()
            .map(|(i, term)| {
                let matches_on = |r: &Requirement, n: &NodeInfo| {
                    if term.fields.contains(r) {
                        r.matches((r.key == "metadata.name").then_some(n.name.as_str()))
                    } else {
                        r.matches(n.labels.get(&r.key).map(String::as_str))
                    }
                };
                let failing =
                    term.expressions.iter().chain(&term.fields).find(|r| !eligible.iter().any(|n| matches_on(r, n)));
                match failing {
                    _ if term.expressions.is_empty() && term.fields.is_empty() => {
                        format!("term {} is empty and matches nothing", i + 1)
                    }
                    Some(requirement) => format!("term {} needs {requirement}, which no node meets", i + 1),
                    None => format!("term {}'s requirements meet no one node together", i + 1),
                }
            })
            .collect();
        Some(format!("required node affinity matches no node: {}", why.join("; ")))
    }

    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }
}

/// A node and what is bound to it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`: cordoned.
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    /// Host ports taken by bound pods.
    pub host_ports: Vec<HostPort>,
    /// Bound pods per controlling owner's uid, to spread replicas.
    pub owners: HashMap<String, usize>,
}

impl NodeInfo {
    pub fn new(node: &Value) -> NodeInfo {
        NodeInfo {
            name: node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            labels: node
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default(),
            taints: Taint::of_node(node),
            unschedulable: node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)),
            allocatable: amounts(node.pointer("/status/allocatable").or_else(|| node.pointer("/status/capacity"))),
            requested: Resources::default(),
            host_ports: Vec::new(),
            owners: HashMap::new(),
        }
    }

    /// The same node with the fields of a newer copy of its object, and what is bound kept.
    pub fn updated(&self, node: &Value) -> NodeInfo {
        NodeInfo {
            requested: self.requested,
            host_ports: self.host_ports.clone(),
            owners: self.owners.clone(),
            ..NodeInfo::new(node)
        }
    }

    /// Counts a pod bound to this node.
    pub fn add(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(uid) = &pod.controller {
            *self.owners.entry(uid.clone()).or_default() += 1;
        }
    }

    /// Stops counting a pod that was bound here (deleted or finished).
    pub fn remove(&mut self, pod: &PodInfo) {
        self.requested.subtract(&pod.requests);
        for port in &pod.host_ports {
            if let Some(at) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(at);
            }
        }
        if let Some(uid) = &pod.controller
            && let Some(count) = self.owners.get_mut(uid)
        {
            *count -= 1;
            if *count == 0 {
                self.owners.remove(uid);
            }
        }
    }

    /// Counts a pod given as its object.
    pub fn add_pod(&mut self, pod: &Value) {
        self.add(&PodInfo::new(pod));
    }
}

/// Why a filter ruled a node out, in Kubernetes' words.
pub type Reason = Cow<'static, str>;

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

/// Where a pod goes, and how many nodes were looked at to find out (the scheduler starts
/// its next search where this one stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub node: usize,
    pub examined: usize,
}

/// The feasible nodes Kubernetes looks for before it stops filtering
/// (`numFeasibleNodesToFind` with the adaptive default `percentageOfNodesToScore`): every
/// node up to 100, then `50 - nodes/125` percent of them (at least 5 %, at least 100).
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if nodes < MIN_NODES {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_NODES)
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
    /// The first filter's reason for ruling the node out, if any does.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        self.filters.iter().try_for_each(|filter| filter.filter(pod, node))
    }

    /// The index of the node the pod goes to, every node considered; `pick(n)` chooses
    /// among `n` equally good nodes (a seeded random number makes the choice repeatable).
    pub fn schedule(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        pick: &mut dyn FnMut(usize) -> usize,
    ) -> Result<usize, Unschedulable> {
        self.place(pod, nodes, 0, nodes.len(), pick).map(|placement| placement.node)
    }

    /// As the Kubernetes scheduler places a pod: nodes are filtered from `start` on,
    /// round the list, until [`feasible_nodes_to_find`] of them pass (or all were
    /// tried); those are scored.
    pub fn schedule_from(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        start: usize,
        pick: &mut dyn FnMut(usize) -> usize,
    ) -> Result<Placement, Unschedulable> {
        self.place(pod, nodes, start, feasible_nodes_to_find(nodes.len()), pick)
    }

    fn place(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        start: usize,
        wanted: usize,
        pick: &mut dyn FnMut(usize) -> usize,
    ) -> Result<Placement, Unschedulable> {
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut examined = 0;
        for offset in 0..nodes.len() {
            if feasible.len() >= wanted.max(1) {
                break;
            }
            let i = (start + offset) % nodes.len();
            examined += 1;
            match self.filter(pod, &nodes[i]) {
                Err(reason) => *reasons.entry(reason.into_owned()).or_default() += 1,
                Ok(()) => feasible.push(i),
            }
        }
        if feasible.is_empty() {
            return Err(Unschedulable { nodes: nodes.len(), reasons });
        }
        // Scored in node order, so which nodes tie does not depend on where the search began.
        feasible.sort_unstable();
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = Vec::with_capacity(feasible.len());
        for (plugin, weight) in &self.scores {
            scores.clear();
            scores.extend(feasible.iter().map(|&i| plugin.score(pod, &nodes[i])));
            plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                *total += (*score).clamp(0, scores::MAX) * weight;
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let top: Vec<usize> = feasible.iter().zip(&totals).filter(|(_, t)| **t == best).map(|(i, _)| *i).collect();
        Ok(Placement { node: top[pick(top.len()).min(top.len() - 1)], examined })
    }
}

#[cfg(test)]
mod tests;
