//! Services: their ports, and whether they select any pod the input makes.

use super::facts::PodFacts;
use super::{Finding, Member, ObjectContext, Rule, SetContext};
use crate::diagnostic::Severity;
use crate::selector::Selector;
use crate::yaml::{Node, Value};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

pub static NODE_PORT_RANGE: Rule = Rule {
    id: "service/node-port",
    name: "NodePort outside 30000-32767, or on a Service that cannot have one",
    severity: Severity::Error,
    rationale: "The API server allocates NodePorts from 30000-32767 by default and refuses a nodePort outside that range, or on a Service of type ClusterIP.",
    fix: "Pick a nodePort in 30000-32767, leave it out to have one allocated, or make the Service type NodePort or LoadBalancer. (A cluster started with another --service-node-port-range: turn this rule off in .kubeyard.yaml.)",
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

/// Labels controllers put on the pods they make, which no template holds.
const CONTROLLER_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-completion-index",
];

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

/// Pod templates by namespace and by label: a Service's equality selector only looks
/// at the templates that have its rarest label, not at every template of the run.
#[derive(Default)]
struct PodIndex<'a> {
    by_namespace: HashMap<Option<&'a str>, Vec<usize>>,
    /// By a hash of (namespace, key, value): a collision only adds candidates, which the
    /// selector then rules out.
    by_label: HashMap<u64, Vec<usize>>,
}

fn label_hash(namespace: Option<&str>, key: &str, value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    (namespace, key, value).hash(&mut hasher);
    hasher.finish()
}

impl<'a> PodIndex<'a> {
    fn new(sources: &[(usize, &'a Member<'a>, &'a PodFacts)]) -> PodIndex<'a> {
        let mut index = PodIndex::default();
        for (i, (_, member, pods)) in sources.iter().enumerate() {
            let namespace = member.namespace.as_deref();
            index.by_namespace.entry(namespace).or_default().push(i);
            for (key, value) in &pods.labels {
                index.by_label.entry(label_hash(namespace, key, value)).or_default().push(i);
            }
        }
        index
    }

    /// Templates in `namespace` that might match `selector` (a superset of the matches).
    fn candidates(&self, namespace: Option<&'a str>, selector: &Selector) -> &[usize] {
        selector
            .requirements()
            .iter()
            .map(|r| {
                let value = r.values.first().map_or("", String::as_str);
                self.by_label.get(&label_hash(namespace, &r.key, value)).map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|list| list.len())
            .unwrap_or_else(|| self.by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice))
    }
}

pub(super) fn check_set(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let sources: Vec<(usize, &Member, &PodFacts)> =
        context.members.iter().enumerate().filter_map(|(i, m)| Some((i, m, m.facts?.pods.as_ref()?))).collect();
    let index_of = PodIndex::new(&sources);
    let mut selections: HashMap<(Option<&str>, Selector), Vec<usize>> = HashMap::default();
    for (index, member) in context.members.iter().enumerate() {
        let Some(service) = member.facts.and_then(|f| f.service.as_ref()) else { continue };
        let selector = &service.selector;
        let namespace = member.namespace.as_deref();
        // Labels the controllers add to the pods they make (pod-template-hash,
        // statefulset.kubernetes.io/pod-name, job-name, ...) are in no template: a selector
        // on them is judged by its other requirements alone.
        let judged = Selector::new(
            selector.requirements().iter().filter(|r| !CONTROLLER_LABELS.contains(&r.key.as_str())).cloned().collect(),
        );
        if judged.is_everything() || !index_of.by_namespace.contains_key(&namespace) {
            // Nothing left to judge, or no pod templates in this namespace at all: the pods
            // come from elsewhere (another chart, a custom controller).
            continue;
        }
        // Many Services share a selector (a Service per port, copies per environment):
        // each distinct one is matched once.
        let key = (namespace, judged);
        if !selections.contains_key(&key) {
            let matched: Vec<usize> = index_of
                .candidates(namespace, &key.1)
                .iter()
                .copied()
                .filter(|&i| key.1.matches(&sources[i].2.labels))
                .collect();
            selections.insert(key.clone(), matched);
        }
        let matched = &selections[&key];
        let selected: Vec<&PodFacts> = matched.iter().map(|&i| sources[i].2).collect();
        if selected.is_empty() {
            // Only templates sharing a label with the selector can be close to it.
            let mut sharing: Vec<usize> = selector
                .requirements()
                .iter()
                .flat_map(|r| {
                    let value = r.values.first().map_or("", String::as_str);
                    index_of.by_label.get(&label_hash(namespace, &r.key, value)).map_or(&[][..], Vec::as_slice)
                })
                .copied()
                .collect();
            sharing.sort_unstable();
            sharing.dedup();
            let in_namespace: Vec<(&Member, &PodFacts)> =
                sharing.iter().map(|&i| (sources[i].1, sources[i].2)).collect();
            let help = closest(selector, &in_namespace).unwrap_or_else(|| {
                if index_of.by_namespace.contains_key(&namespace) {
                    format!("no pod template in namespace {} has any of these labels", namespace.unwrap_or("default"))
                } else {
                    format!("the input has no pod templates in namespace {}", namespace.unwrap_or("default"))
                }
            });
            out.push((
                index,
                Finding::new(
                    &NO_MATCHING_PODS,
                    service.selector_span,
                    format!(
                        "Service \"{}\" selects no pod in the input ({selector})",
                        member.info.name.as_deref().unwrap_or("?")
                    ),
                )
                .label("matches no pod template")
                .help(help)
                .path("spec.selector"),
            ));
            continue;
        }
        for port in &service.ports {
            let path = format!("spec.ports[{}].targetPort", port.index);
            match &port.target {
                Value::String(name)
                    if name.parse::<i64>().is_err() && !selected.iter().any(|s| s.ports.named.contains_key(name)) =>
                {
                    let names: Vec<&str> =
                        selected.iter().flat_map(|s| s.ports.named.keys().map(String::as_str)).collect();
                    out.push((
                        index,
                        Finding::new(
                            &TARGET_PORT,
                            port.span,
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
                Value::Int(number) if !selected.iter().any(|s| s.ports.numbers.contains(number)) => {
                    out.push((
                        index,
                        Finding::new(
                            &TARGET_PORT,
                            port.span,
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
fn closest(selector: &Selector, sources: &[(&Member<'_>, &PodFacts)]) -> Option<String> {
    let score =
        |labels: &BTreeMap<String, String>| selector.requirements().iter().filter(|r| r.matches(labels)).count();
    let best = sources.iter().map(|(_, pods)| score(&pods.labels)).max()?;
    let mut nearest: Vec<String> = sources
        .iter()
        .filter(|(_, pods)| score(&pods.labels) == best)
        .take(3)
        .map(|(member, pods)| {
            let labels: Vec<String> = pods.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{} has labels {}",
                member.info.display_name(),
                if labels.is_empty() { "none".into() } else { labels.join(",") }
            )
        })
        .collect();
    nearest.dedup();
    Some(format!("closest: {}", nearest.join("; ")))
}
