//! Capacity: what the workloads ask for against what a namespace's quota allows and what
//! a cluster of a given shape can hold.

use super::facts::PodFacts;
use super::{Finding, Member, Rule, SetContext};
use crate::diagnostic::Severity;
use crate::quantity::{Format, Quantity};
use crate::scheduling::{Framework, NodeInfo, PodInfo, Resources};
use crate::workloads::{self, Replicas};
use crate::yaml::{Node, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

pub static QUOTA_EXCEEDED: Rule = Rule {
    id: "quota/exceeded",
    name: "Workloads ask for more than their namespace's ResourceQuota",
    severity: Severity::Error,
    rationale: "The API server refuses pods that would take a namespace past its ResourceQuota, and pods without a request for a resource the quota limits. The workload is created but its pods never are; the reason hides in the controller's events.",
    fix: "Lower replicas or requests, raise the quota, or add the missing requests.",
    needs_set: true,
};

pub static UNSCHEDULABLE: Rule = Rule {
    id: "schedule/unschedulable",
    name: "Pods that no node of the cluster shape can hold",
    severity: Severity::Error,
    rationale: "A pod whose requests fit on no node, or whose nodeSelector and taints rule every node out, stays Pending forever; replicas that do not all fit leave a workload short. Given the cluster's shape (--cluster or a kubeyard.dev/v1alpha1 Cluster document), this is known before anything is applied.",
    fix: "Lower the requests or replicas, relax nodeSelector or add tolerations, or plan for bigger or more nodes.",
    needs_set: true,
};

/// More nodes than any cluster kubeyard models (Kubernetes' own tested limit is 5,000).
const MAX_NODES: i64 = 10_000;

/// One node of a cluster shape.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeShape {
    pub name: String,
    pub cpu: Quantity,
    pub memory: Quantity,
    pub pods: i64,
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)`
    pub taints: Vec<(String, String, String)>,
}

/// The nodes a workload will run on.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterShape {
    pub nodes: Vec<NodeShape>,
}

impl NodeShape {
    /// A node with the labels every kubelet sets on its node (charts select on them).
    fn new(name: String, cpu: Quantity, memory: Quantity, pods: i64) -> NodeShape {
        let labels = BTreeMap::from([
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("kubernetes.io/hostname".to_string(), name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        NodeShape { name, cpu, memory, pods, labels, taints: Vec::new() }
    }

    /// The node as the scheduler sees it, nothing bound yet.
    fn node_info(&self) -> NodeInfo {
        let taints: Vec<serde_json::Value> = self
            .taints
            .iter()
            .map(|(key, value, effect)| serde_json::json!({"key": key, "value": value, "effect": effect}))
            .collect();
        NodeInfo::new(&serde_json::json!({
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {
                "cpu": self.cpu.to_string(),
                "memory": self.memory.to_string(),
                "pods": self.pods.to_string(),
            }},
        }))
    }
}

impl FromStr for ClusterShape {
    type Err = String;

    /// `nodes=3,cpu=4,memory=8Gi[,pods=110]`
    fn from_str(text: &str) -> Result<ClusterShape, String> {
        let mut count = 1i64;
        let mut cpu = None;
        let mut memory = None;
        let mut pods = 110;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("\"{part}\" is not key=value"))?;
            match key.trim() {
                "nodes" => count = value.trim().parse().map_err(|_| format!("nodes={value} is not a number"))?,
                "cpu" => cpu = Some(value.trim().parse::<Quantity>().map_err(|e| e.to_string())?),
                "memory" => memory = Some(value.trim().parse::<Quantity>().map_err(|e| e.to_string())?),
                "pods" => pods = value.trim().parse().map_err(|_| format!("pods={value} is not a number"))?,
                other => return Err(format!("unknown cluster setting \"{other}\" (use nodes, cpu, memory, pods)")),
            }
        }
        if !(1..=MAX_NODES).contains(&count) {
            return Err(format!("nodes={count}: a cluster has 1 to {MAX_NODES} nodes"));
        }
        let cpu = cpu.ok_or("the cluster shape needs cpu=... (per node)")?;
        let memory = memory.ok_or("the cluster shape needs memory=... (per node)")?;
        Ok(ClusterShape {
            nodes: (1..=count).map(|i| NodeShape::new(format!("node-{i}"), cpu, memory, pods)).collect(),
        })
    }
}

impl ClusterShape {
    /// A `kubeyard.dev/v1alpha1` `Cluster` document: `spec.nodes` lists node groups, each
    /// with a `count`, a `capacity` (cpu, memory, pods), `labels` and `taints`.
    pub fn from_document(cluster: &Node) -> Result<ClusterShape, String> {
        let groups =
            cluster.get("spec").and_then(|s| s.get("nodes")).and_then(Node::as_seq).ok_or("spec.nodes is missing")?;
        let mut nodes = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let count = match group.get("count").map(|c| &c.value) {
                Some(Value::Int(n)) => *n,
                None => 1,
                _ => return Err(format!("spec.nodes[{g}].count is not a number")),
            };
            let capacity = group.get("capacity");
            let quantity = |key: &str, default: &str| -> Result<Quantity, String> {
                match capacity.and_then(|c| c.get(key)) {
                    Some(node) => {
                        let text = node.as_str().map(str::to_string).unwrap_or_else(|| node.to_json().to_string());
                        text.parse::<Quantity>().map_err(|e| format!("spec.nodes[{g}].capacity.{key}: {e}"))
                    }
                    None => default.parse::<Quantity>().map_err(|e| e.to_string()),
                }
            };
            let cpu = quantity("cpu", "4")?;
            let memory = quantity("memory", "8Gi")?;
            let pods = quantity("pods", "110")?.units_ceil() as i64;
            let prefix = group.get("name").and_then(Node::as_str).map_or_else(|| format!("group-{g}"), str::to_string);
            let labels = workloads::string_map(group.get("labels"));
            let taints: Vec<(String, String, String)> = group
                .get("taints")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let field = |k: &str| t.get(k).and_then(Node::as_str).unwrap_or_default().to_string();
                    (field("key"), field("value"), field("effect"))
                })
                .collect();
            if nodes.len() as i64 + count.max(0) > MAX_NODES {
                return Err(format!("spec.nodes declares more than {MAX_NODES} nodes"));
            }
            for i in 1..=count.max(0) {
                let mut node = NodeShape::new(format!("{prefix}-{i}"), cpu, memory, pods);
                node.labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                node.taints = taints.clone();
                nodes.push(node);
            }
        }
        if nodes.is_empty() {
            return Err("spec.nodes declares no nodes".into());
        }
        Ok(ClusterShape { nodes })
    }
}

/// A workload with pods, as the capacity rules see it.
struct Demand<'a> {
    index: usize,
    member: &'a Member<'a>,
    pods: &'a PodFacts,
}

pub(super) fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let demands: Vec<Demand> = context
        .members
        .iter()
        .enumerate()
        .filter_map(|(index, member)| Some(Demand { index, member, pods: member.facts?.pods.as_ref()? }))
        .collect();
    quotas(context, &demands, out);
    if let Some(cluster) = context.cluster {
        schedule(cluster, &demands, out);
    }
}

fn replica_count(replicas: Replicas, nodes: usize) -> i64 {
    match replicas {
        Replicas::Fixed(n) => n.max(0),
        Replicas::PerNode => nodes.max(1) as i64,
    }
}

fn quotas(context: &SetContext<'_>, demands: &[Demand<'_>], out: &mut Vec<(usize, Finding)>) {
    let nodes = context.cluster.map_or(1, |c| c.nodes.len());
    for (index, member) in context.members.iter().enumerate() {
        let Some(facts) = member.facts.filter(|f| !f.quota.is_empty()) else { continue };
        let namespace = member.namespace.as_deref();
        let in_namespace: Vec<&Demand> =
            demands.iter().filter(|d| d.member.namespace.as_deref() == namespace).collect();
        for entry in &facts.quota {
            let resource = entry.resource.as_str();
            // `cpu` in a quota means requests.cpu; `pods` counts pods.
            let (counted, is_pods) = match resource {
                "pods" | "count/pods" => ("pods", true),
                "cpu" | "requests.cpu" => ("cpu", false),
                "memory" | "requests.memory" => ("memory", false),
                other => match other.strip_prefix("requests.") {
                    Some(r) => (r, false),
                    None => continue,
                },
            };
            let mut total = Quantity::zero();
            for demand in &in_namespace {
                let count = replica_count(demand.pods.replicas, nodes);
                let each = if is_pods {
                    Some(Quantity::from_units(1, Format::DecimalSI))
                } else {
                    demand.pods.requests.get(counted).copied()
                };
                match each {
                    Some(each) => {
                        total = each.checked_mul(count).and_then(|q| total.checked_add(&q)).unwrap_or(total);
                    }
                    // Only cpu and memory quotas refuse pods that do not state the request.
                    None if count > 0 && matches!(counted, "cpu" | "memory") => out.push((
                        demand.index,
                        Finding::new(
                            &QUOTA_EXCEEDED,
                            demand.member.info.kind_span,
                            format!(
                                "pods of {} request no {counted}, but the ResourceQuota \"{}\" limits {resource}: the API server will refuse them",
                                demand.member.info.display_name(),
                                member.info.name.as_deref().unwrap_or("?")
                            ),
                        )
                        .label(format!("no {counted} request"))
                        .help(format!("set resources.requests.{counted} on every container (a LimitRange can default it)")),
                    )),
                    None => {}
                }
            }
            if total > entry.limit {
                out.push((
                    index,
                    Finding::new(
                        &QUOTA_EXCEEDED,
                        entry.span,
                        format!(
                            "workloads in namespace {} ask for {resource} {total}, above this quota's {}",
                            namespace.unwrap_or("default"),
                            entry.limit
                        ),
                    )
                    .label("exceeded by the workloads in the input")
                    .path(format!("spec.hard.{resource}")),
                ));
            }
        }
    }
}

/// Places every workload's pods on the cluster's nodes with the scheduler's own framework
/// (`scheduling::Framework`: node name, taints, node affinity and nodeSelector, ports,
/// room; then its scores), as the scheduler would, one pod after another.
fn schedule(cluster: &ClusterShape, demands: &[Demand<'_>], out: &mut Vec<(usize, Finding)>) {
    let framework = Framework::default();
    let empty: Vec<NodeInfo> = cluster.nodes.iter().map(NodeShape::node_info).collect();
    let mut nodes = empty.clone();
    let need = |d: &Demand| (d.pods.scheduling.requests.milli_cpu, d.pods.scheduling.requests.memory);
    // Largest pods first: what is applied together is scheduled in no fixed order, and
    // this order is the one in which what fits at all is placed.
    let mut order: Vec<&Demand> =
        demands.iter().filter(|d| !matches!(d.member.info.gvk.kind.as_str(), "CronJob")).collect();
    order.sort_by_key(|d| std::cmp::Reverse(need(d)));
    // The scheduler starts each search where the last one stopped; among equally good
    // nodes lint takes the first (the scheduler picks at random).
    let mut start = 0;
    let mut first = |_: usize| 0;
    for demand in order {
        let pod = &demand.pods.scheduling;
        let (cpu, memory) = need(demand);
        let name = demand.member.info.display_name();
        let shown =
            format!("cpu {}, memory {}", Quantity::from_millis(cpu), Quantity::from_units(memory, Format::BinarySI));
        // The nodes that take such a pod at all: every filter but room, on empty nodes.
        let weightless = PodInfo { requests: Resources { pods: 1, ..Resources::default() }, ..pod.clone() };
        let accepting: Vec<usize> =
            (0..empty.len()).filter(|&i| framework.filter(&weightless, &empty[i]).is_ok()).collect();
        if accepting.is_empty() {
            let why = framework.schedule(&weightless, &empty, &mut first).err();
            out.push((
                demand.index,
                Finding::new(
                    &UNSCHEDULABLE,
                    demand.member.info.kind_span,
                    format!("no node of the cluster accepts pods of {name}"),
                )
                .label("nodeSelector, node affinity or taints rule out every node")
                .help(match why {
                    Some(why) => format!("the scheduler would say \"{why}\": check spec.nodeSelector and node affinity against the nodes' labels, and add tolerations for their taints"),
                    None => "check spec.nodeSelector and node affinity against the nodes' labels, and add tolerations for their taints".to_string(),
                }),
            ));
            continue;
        }
        if !accepting.iter().any(|&i| framework.filter(pod, &empty[i]).is_ok()) {
            let largest = &cluster.nodes[accepting[0]];
            out.push((
                demand.index,
                Finding::new(
                    &UNSCHEDULABLE,
                    demand.member.info.kind_span,
                    format!("each pod of {name} requests {shown}, more than any node has"),
                )
                .label("fits on no node")
                .help(format!("nodes have cpu {}, memory {}", largest.cpu, largest.memory)),
            ));
            continue;
        }
        let wanted = match demand.pods.replicas {
            Replicas::Fixed(n) => n.max(0),
            // The DaemonSet controller makes one pod for each node that takes it.
            Replicas::PerNode => accepting.len() as i64,
        };
        let mut placed = 0;
        let mut refused = None;
        match demand.pods.replicas {
            // Each daemon pod is bound to its node; room decides.
            Replicas::PerNode => {
                for &i in &accepting {
                    match framework.filter(pod, &nodes[i]) {
                        Ok(()) => {
                            nodes[i].add(pod);
                            placed += 1;
                        }
                        Err(reason) => refused = refused.or(Some(reason.to_string())),
                    }
                }
            }
            Replicas::Fixed(_) => {
                while placed < wanted {
                    match framework.schedule_from(pod, &nodes, start, &mut first) {
                        Ok(placement) => {
                            nodes[placement.node].add(pod);
                            start = (start + placement.examined) % nodes.len();
                            placed += 1;
                        }
                        Err(why) => {
                            refused = Some(why.to_string());
                            break;
                        }
                    }
                }
            }
        }
        if placed < wanted {
            let why = refused.map_or_else(String::new, |why| format!("; the scheduler would say \"{why}\""));
            out.push((
                demand.index,
                Finding::new(
                    &UNSCHEDULABLE,
                    demand.member.info.kind_span,
                    format!("only {placed} of {wanted} pods of {name} fit in the cluster ({shown} each)"),
                )
                .label("not all replicas fit")
                .help(format!(
                    "the cluster has {} nodes; the workloads in the input need more room{why}",
                    cluster.nodes.len()
                )),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_shapes() {
        let shape: ClusterShape = "nodes=3,cpu=4,memory=8Gi".parse().unwrap();
        assert_eq!(shape.nodes.len(), 3);
        assert_eq!(shape.nodes[0].pods, 110);
        assert_eq!(shape.nodes[2].memory, "8Gi".parse::<Quantity>().unwrap());
        assert!("nodes=3".parse::<ClusterShape>().is_err());
        assert!("nodes=3,cpu=4,memory=8Gi,disk=1".parse::<ClusterShape>().is_err());
        assert!("nodes=0,cpu=4,memory=8Gi".parse::<ClusterShape>().is_err());
    }
}
