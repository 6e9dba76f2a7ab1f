//! `schedule/*`: whether the workloads fit a cluster of a given shape, and that shape
//! (`ClusterShape`, from `--cluster` or a `kubeyard.dev/v1alpha1` Cluster document).

mod deprecated_node_label;
mod unschedulable;

use super::Rule;
use crate::quantity::Quantity;
use crate::scheduling::NodeInfo;
use crate::workloads;
use crate::yaml::{Node, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

pub(super) const RULES: &[&Rule] = &[&unschedulable::RULE, &deprecated_node_label::RULE];

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
        let labels = crate::node::kubelet_labels(&name);
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
