//! Services: their ports, and whether they select any pod the input makes.

use super::pod::DeclaredPorts;
use super::{Finding, Member, ObjectContext, Rule, SetContext};
use crate::diagnostic::Severity;
use crate::selector::Selector;
use crate::workloads;
use crate::yaml::{Node, Value};
use std::collections::BTreeMap;

pub static NODE_PORT_RANGE: Rule = Rule {
    id: "service/node-port",
    name: "NodePort outside 30000-32767, or on a Service that cannot have one",
    severity: Severity::Error,
    rationale: "The API server allocates NodePorts from 30000-32767 by default and refuses a nodePort outside that range, or on a Service of type ClusterIP.",
    fix: "Pick a nodePort in 30000-32767, leave it out to have one allocated, or make the Service type NodePort or LoadBalancer.",
    needs_set: false,
};

pub static NO_MATCHING_PODS: Rule = Rule {
    id: "service/no-matching-pods",
    name: "Service selects no pod in the input",
    severity: Severity::Warning,
    rationale: "A Service whose selector matches no pod template has no endpoints: connections to it are refused. The usual cause is a label typo on one side, which no schema can see.",
    fix: "Make the Service's spec.selector match the labels of the pod template it should route to (the help names the closest one).",
    needs_set: true,
};

pub static TARGET_PORT: Rule = Rule {
    id: "service/target-port",
    name: "Service targetPort that the selected containers do not expose",
    severity: Severity::Warning,
    rationale: "A named targetPort resolves against the selected pods' container port names: if none has it, the Service has no endpoints for that port. A numbered one that no container declares often means the Service and the container disagree on the port.",
    fix: "Point targetPort at a port the selected containers declare, by name or number.",
    needs_set: true,
};

const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

pub(super) fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if !context.info.gvk.group.is_empty() || context.info.gvk.kind != "Service" {
        return;
    }
    let Some(spec) = context.node.get("spec") else { return };
    let service_type = spec.get("type").and_then(Node::as_str).unwrap_or("ClusterIP");
    for (i, port) in spec.get("ports").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let Some(entry) = port.entry("nodePort") else { continue };
        let Value::Int(number) = entry.value.value else { continue };
        let path = format!("spec.ports[{i}].nodePort");
        if !matches!(service_type, "NodePort" | "LoadBalancer") && number != 0 {
            out.push(
                Finding::new(&NODE_PORT_RANGE, entry.key.span, format!("nodePort on a Service of type {service_type}"))
                    .label("only NodePort and LoadBalancer Services have node ports")
                    .path(path),
            );
        } else if number != 0 && !NODE_PORTS.contains(&number) {
            out.push(
                Finding::new(&NODE_PORT_RANGE, entry.value.span, format!("nodePort {number} is outside 30000-32767"))
                    .label("outside the NodePort range")
                    .path(path),
            );
        }
    }
}

/// A pod template of the input, as Services see it.
struct PodSource<'a> {
    member: &'a Member<'a>,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    ports: DeclaredPorts,
}

fn pod_sources<'a>(context: &'a SetContext<'a>) -> Vec<PodSource<'a>> {
    let mut sources = Vec::new();
    for member in context.members.iter().filter(|m| m.valid) {
        let Some(template) = workloads::pod_template(&member.info.gvk, member.node) else { continue };
        let mut ports = DeclaredPorts::default();
        for (_, container) in workloads::containers(template.spec) {
            for port in container.get("ports").and_then(Node::as_seq).unwrap_or_default() {
                let number = match port.get("containerPort").map(|n| &n.value) {
                    Some(Value::Int(n)) => Some(*n),
                    _ => None,
                };
                ports.numbers.extend(number);
                if let Some(name) = port.get("name").and_then(Node::as_str) {
                    ports.named.insert(name.to_string(), number.unwrap_or(0));
                }
            }
        }
        sources.push(PodSource {
            member,
            namespace: context.namespace_of(member),
            labels: workloads::string_map(template.labels),
            ports,
        });
    }
    sources
}

pub(super) fn check_set(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let sources = pod_sources(context);
    for (index, member) in context.members.iter().enumerate() {
        if !member.valid || !member.info.gvk.group.is_empty() || member.info.gvk.kind != "Service" {
            continue;
        }
        let Some(spec) = member.node.get("spec") else { continue };
        if spec.get("type").and_then(Node::as_str) == Some("ExternalName") {
            continue;
        }
        let Some(selector_entry) = spec.entry("selector") else { continue };
        let Ok(selector) = Selector::from_map(Some(&selector_entry.value.to_json())) else { continue };
        if selector.is_nothing() {
            continue;
        }
        let namespace = context.namespace_of(member);
        let in_namespace: Vec<&PodSource> = sources.iter().filter(|s| s.namespace == namespace).collect();
        let selected: Vec<&PodSource> = in_namespace.iter().copied().filter(|s| selector.matches(&s.labels)).collect();
        if selected.is_empty() {
            let mut finding = Finding::new(
                &NO_MATCHING_PODS,
                selector_entry.key.span,
                format!(
                    "Service \"{}\" selects no pod in the input ({selector})",
                    member.info.name.as_deref().unwrap_or("?")
                ),
            )
            .label("matches no pod template")
            .path("spec.selector");
            finding = finding.help(closest(&selector, &in_namespace).unwrap_or_else(|| {
                format!("the input has no pod templates in namespace {}", namespace.as_deref().unwrap_or("default"))
            }));
            out.push((index, finding));
            continue;
        }
        for (i, port) in spec.get("ports").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            let (target, span) = match port.entry("targetPort") {
                Some(entry) => (entry.value.value.clone(), entry.value.span),
                None => match port.entry("port") {
                    Some(entry) => (entry.value.value.clone(), entry.value.span),
                    None => continue,
                },
            };
            let path = format!("spec.ports[{i}].targetPort");
            match target {
                Value::String(name)
                    if name.parse::<i64>().is_err() && !selected.iter().any(|s| s.ports.named.contains_key(&name)) =>
                {
                    let names: Vec<&str> =
                        selected.iter().flat_map(|s| s.ports.named.keys().map(String::as_str)).collect();
                    out.push((
                        index,
                        Finding::new(
                            &TARGET_PORT,
                            span,
                            format!("targetPort \"{name}\" is not a port name of the selected containers"),
                        )
                        .severity(Severity::Error)
                        .label("no selected container has this port name")
                        .help(if names.is_empty() {
                            "the selected containers name no ports: name the port in the container, or use its number"
                                .to_string()
                        } else {
                            format!("the selected containers name their ports {}", names.join(", "))
                        })
                        .path(path),
                    ));
                }
                Value::Int(number) if !selected.iter().any(|s| s.ports.numbers.contains(&number)) => {
                    out.push((
                        index,
                        Finding::new(
                            &TARGET_PORT,
                            span,
                            format!("targetPort {number} is not declared by the selected containers"),
                        )
                        .label("no selected container declares this port")
                        .path(path),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// The pod templates whose labels come closest to the selector, for the help line.
fn closest(selector: &Selector, sources: &[&PodSource<'_>]) -> Option<String> {
    let score =
        |labels: &BTreeMap<String, String>| selector.requirements().iter().filter(|r| r.matches(labels)).count();
    let best = sources.iter().map(|s| score(&s.labels)).max()?;
    let mut nearest: Vec<String> = sources
        .iter()
        .filter(|s| score(&s.labels) == best)
        .take(3)
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{} has labels {}",
                s.member.info.display_name(),
                if labels.is_empty() { "none".into() } else { labels.join(",") }
            )
        })
        .collect();
    nearest.dedup();
    Some(format!("closest: {}", nearest.join("; ")))
}
