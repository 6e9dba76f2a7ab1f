//! Scores: each plugin rates every feasible node from 0 to 100; the framework adds them
//! up with the plugins' weights.

use super::{NodeInfo, PodInfo};

pub const MAX: i64 = 100;

pub trait Score: Send + Sync {
    fn name(&self) -> &'static str;
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Turns raw scores into 0..=100 across the feasible nodes.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Higher raw is better: scaled so the best is 100.
fn scale_up(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        *score = if max == 0 { 0 } else { *score * MAX / max };
    }
}

/// Lower raw is better: scaled so the lowest is 100 and the highest 0.
fn scale_down(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        *score = if max == 0 { MAX } else { MAX - *score * MAX / max };
    }
}

/// `NodeResourcesFit` with the `LeastAllocated` strategy: the more cpu and memory left
/// after placing the pod, the better. Pods that request nothing count as 100m cpu and
/// 200 MB, as the scheduler counts them for scoring.
pub struct LeastAllocated;

impl Score for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let wants = pod.requests;
        let cpu = if wants.milli_cpu == 0 { 100 } else { wants.milli_cpu };
        let memory = if wants.memory == 0 { 200 * 1024 * 1024 } else { wants.memory };
        let left = |capacity: i64, used: i64| {
            if capacity <= 0 {
                0
            } else {
                (i128::from((capacity - used).max(0)) * i128::from(MAX) / i128::from(capacity)) as i64
            }
        };
        let cpu_left = left(node.allocatable.milli_cpu, node.requested.milli_cpu.saturating_add(cpu));
        let memory_left = left(node.allocatable.memory, node.requested.memory.saturating_add(memory));
        (cpu_left + memory_left) / 2
    }
}

/// Preferred node affinity: the sum of the weights of the terms the node matches.
pub struct NodeAffinity;

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_terms.iter().filter(|(_, term)| term.matches(node)).map(|(weight, _)| weight).sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        scale_up(scores);
    }
}

/// Fewer untolerated `PreferNoSchedule` taints are better.
pub struct TaintToleration;

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !pod.tolerates(t)).count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        scale_down(scores);
    }
}

/// Replicas of one owner spread across nodes: fewer of the pod's siblings is better.
pub struct Spread;

impl Score for Spread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.controller.as_ref().and_then(|uid| node.owners.get(uid)).copied().unwrap_or(0) as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        scale_down(scores);
    }
}
