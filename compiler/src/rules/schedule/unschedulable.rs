use super::NodeShape;
use crate::quantity::{Format, Quantity};
use crate::rules::facts::PodFacts;
use crate::rules::{Finding, Member, SetContext};
use crate::scheduling::{Framework, NodeInfo, PodInfo, Resources};
use crate::workloads::Replicas;

rule! {
    /// Pods that no node of the cluster shape can hold
    ///
    /// A pod whose requests fit on no node, or whose nodeSelector and taints rule every node out, stays Pending
    /// forever; replicas that do not all fit leave a workload short. Given the cluster's shape (--cluster or a
    /// kubeyard.dev/v1alpha1 Cluster document), this is known before anything is applied.
    ///
    /// Fix: Lower the requests or replicas, relax nodeSelector or add tolerations, or plan for bigger or more nodes.
    "schedule/unschedulable", Error, Set(check)
}

/// A workload with pods, as the scheduler sees it.
struct Demand<'a> {
    index: usize,
    member: &'a Member<'a>,
    pods: &'a PodFacts,
}

/// Places every workload's pods on the cluster's nodes with the scheduler's own framework
/// (`scheduling::Framework`: node name, taints, node affinity and nodeSelector, ports,
/// room; then its scores), as the scheduler would, one pod after another.
fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    // Without a cluster shape there is nothing to schedule on.
    let Some(cluster) = context.cluster else { return };
    let demands: Vec<Demand> =
        context.pod_members().map(|(index, member, pods)| Demand { index, member, pods }).collect();
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
            let help = "check spec.nodeSelector and node affinity against the nodes' labels, and add tolerations for their taints";
            let message = match pod.unmatched_selection(&empty) {
                Some(selection) => format!("no node of the cluster accepts pods of {name}: {selection}"),
                None => format!("no node of the cluster accepts pods of {name}"),
            };
            out.push((
                demand.index,
                Finding::new(&RULE, demand.member.info.kind_span, message)
                    .label("nodeSelector, node affinity or taints rule out every node")
                    .help(match why {
                        Some(why) => format!("the scheduler would say \"{why}\": {help}"),
                        None => help.to_string(),
                    }),
            ));
            continue;
        }
        if !accepting.iter().any(|&i| framework.filter(pod, &empty[i]).is_ok()) {
            let largest = &cluster.nodes[accepting[0]];
            out.push((
                demand.index,
                Finding::new(
                    &RULE,
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
                    &RULE,
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
