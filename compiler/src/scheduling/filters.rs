//! Filters: a node is out for the first reason one of them gives, worded as the
//! Kubernetes scheduler words it.

use super::{NodeInfo, PodInfo, Reason, Taint};

pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    /// `Err(reason)` rules the node out.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason>;
}

/// `spec.unschedulable` (a cordoned node), unless the pod tolerates the taint that says so.
pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        if node.unschedulable && !pod.tolerates(&Taint::new("node.kubernetes.io/unschedulable", "", "NoSchedule")) {
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

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        match &pod.node_name {
            Some(wanted) if *wanted != node.name => Err("node(s) didn't match the requested node name".into()),
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

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let wants = pod.requests;
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

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let clash = pod.host_ports.iter().any(|wanted| node.host_ports.iter().any(|taken| wanted.conflicts(taken)));
        if clash { Err("node(s) didn't have free ports for the requested pod ports".into()) } else { Ok(()) }
    }
}

/// `nodeSelector` and required node affinity.
pub struct NodeAffinity;

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let selector_ok = pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
        let affinity_ok = pod.required_terms.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(node)));
        if selector_ok && affinity_ok {
            Ok(())
        } else {
            Err("node(s) didn't match Pod's node affinity/selector".into())
        }
    }
}

/// `NoSchedule` and `NoExecute` taints the pod does not tolerate.
pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        match node
            .taints
            .iter()
            .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            .find(|t| !pod.tolerates(t))
        {
            Some(taint) => Err(format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value).into()),
            None => Ok(()),
        }
    }
}
