//! `service/*`: Services, their ports, and whether they select any pod the input makes.
//! Which templates each Service selects is worked out once (`SetContext::selections`) for
//! both set rules.

mod no_matching_pods;
mod node_port;
mod target_port;

use super::facts::{PodFacts, ServiceFacts};
use super::{Member, Rule, SetContext};
use crate::selector::Selector;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

pub(super) const RULES: &[&Rule] = &[&node_port::RULE, &no_matching_pods::RULE, &target_port::RULE];

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

/// What the Service rules share: the pod templates of the run, indexed, and what each
/// Service's selector picks out of them.
pub(crate) struct Selections<'a> {
    /// Every member with a pod template: its index, itself and its pods.
    sources: Vec<(usize, &'a Member<'a>, &'a PodFacts)>,
    index: PodIndex<'a>,
    /// The Services that are judged, in member order.
    services: Vec<Selection<'a>>,
    /// The templates (indices into `sources`) of each distinct namespace and selector.
    matches: Vec<Vec<usize>>,
}

/// One Service that is judged.
struct Selection<'a> {
    index: usize,
    member: &'a Member<'a>,
    service: &'a ServiceFacts,
    /// Its position in `Selections::matches`.
    matched: usize,
}

impl<'a> Selections<'a> {
    pub(crate) fn new(context: &SetContext<'a>) -> Selections<'a> {
        let sources: Vec<(usize, &Member, &PodFacts)> = context.pod_members().collect();
        let index = PodIndex::new(&sources);
        let mut services = Vec::new();
        let mut matches = Vec::new();
        let mut distinct: HashMap<(Option<&str>, Selector), usize> = HashMap::default();
        let members: &'a [Member<'a>] = context.members;
        for (i, member) in members.iter().enumerate() {
            let Some(service) = member.facts.and_then(|f| f.service.as_ref()) else { continue };
            let namespace = member.namespace.as_deref();
            // Labels the controllers add to the pods they make (pod-template-hash,
            // statefulset.kubernetes.io/pod-name, job-name, ...) are in no template: a
            // selector on them is judged by its other requirements alone.
            let judged = Selector::new(
                service
                    .selector
                    .requirements()
                    .iter()
                    .filter(|r| !CONTROLLER_LABELS.contains(&r.key.as_str()))
                    .cloned()
                    .collect(),
            );
            if judged.is_everything() || !index.by_namespace.contains_key(&namespace) {
                // Nothing left to judge, or no pod templates in this namespace at all: the
                // pods come from elsewhere (another chart, a custom controller).
                continue;
            }
            // Many Services share a selector (a Service per port, copies per environment):
            // each distinct one is matched once.
            let matched = *distinct.entry((namespace, judged)).or_insert_with_key(|(namespace, judged)| {
                let found: Vec<usize> = index
                    .candidates(*namespace, judged)
                    .iter()
                    .copied()
                    .filter(|&i| judged.matches(&sources[i].2.labels))
                    .collect();
                matches.push(found);
                matches.len() - 1
            });
            services.push(Selection { index: i, member, service, matched });
        }
        Selections { sources, index, services, matches }
    }

    /// The pods of the templates a judged Service selects.
    fn pods(&self, selection: &Selection<'a>) -> Vec<&'a PodFacts> {
        self.matches[selection.matched].iter().map(|&i| self.sources[i].2).collect()
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
