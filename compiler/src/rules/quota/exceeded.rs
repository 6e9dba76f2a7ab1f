use crate::quantity::{Format, Quantity};
use crate::rules::facts::PodFacts;
use crate::rules::{Finding, Member, SetContext};
use crate::workloads::Replicas;

rule! {
    /// Workloads ask for more than their namespace's ResourceQuota
    ///
    /// The API server refuses pods that would take a namespace past its ResourceQuota, and pods without a request for
    /// a resource the quota limits. The workload is created but its pods never are; the reason hides in the
    /// controller's events.
    ///
    /// Fix: Lower replicas or requests, raise the quota, or add the missing requests.
    "quota/exceeded", Error, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    // The members whose kinds make pods: what the quotas are asked for.
    let demands: Vec<(usize, &Member, &PodFacts)> = context.pod_members().collect();
    let nodes = context.cluster.map_or(1, |c| c.nodes.len());
    for (index, member) in context.members.iter().enumerate() {
        let Some(facts) = member.facts.filter(|f| !f.quota.is_empty()) else { continue };
        let namespace = member.namespace.as_deref();
        let in_namespace: Vec<&(usize, &Member, &PodFacts)> =
            demands.iter().filter(|(_, m, _)| m.namespace.as_deref() == namespace).collect();
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
            for &&(demand_index, demand, pods) in &in_namespace {
                let count = replica_count(pods.replicas, nodes);
                let each = if is_pods {
                    Some(Quantity::from_units(1, Format::DecimalSI))
                } else {
                    pods.requests.get(counted).copied()
                };
                match each {
                    Some(each) => {
                        total = each.checked_mul(count).and_then(|q| total.checked_add(&q)).unwrap_or(total);
                    }
                    // Only cpu and memory quotas refuse pods that do not state the request.
                    None if count > 0 && matches!(counted, "cpu" | "memory") => out.push((
                        demand_index,
                        Finding::new(
                            &RULE,
                            demand.info.kind_span,
                            format!(
                                "pods of {} request no {counted}, but the ResourceQuota \"{}\" limits {resource}: the API server will refuse them",
                                demand.info.display_name(),
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
                        &RULE,
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

fn replica_count(replicas: Replicas, nodes: usize) -> i64 {
    match replicas {
        Replicas::Fixed(n) => n.max(0),
        Replicas::PerNode => nodes.max(1) as i64,
    }
}
