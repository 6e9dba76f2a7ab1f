//! Where pods come from: for each kind that makes pods, where its pod template, labels,
//! selector and replica count are. Rules and normalization read
//! workloads through this one table.

use crate::object::GroupVersionKind;
use crate::yaml::{Node, Value};

/// How many pods a workload asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicas {
    Fixed(i64),
    /// A DaemonSet: one per eligible node.
    PerNode,
}

/// How a workload's selector is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorForm {
    /// `matchLabels` and `matchExpressions` (apps/v1, batch/v1).
    LabelSelector,
    /// A plain map of equalities, defaulting to the template's labels (ReplicationController).
    Map,
}

/// A pod template inside an object.
pub struct PodTemplate<'a> {
    /// The template's (or pod's) `metadata.labels`.
    pub labels: Option<&'a Node>,
    /// The pod spec.
    pub spec: &'a Node,
    /// The field path of the pod spec, kubectl style (`spec.template.spec`).
    pub spec_path: &'static str,
    /// The field path of the labels.
    pub labels_path: &'static str,
    /// The workload's own `spec.selector`, and how it is written; `None` for bare pods.
    pub selector: Option<(Option<&'a Node>, SelectorForm)>,
    pub replicas: Replicas,
}

fn at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(node, |node, key| node.get(key))
}

fn integer(node: Option<&Node>) -> Option<i64> {
    match node?.value {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// The pod template of an object, if its kind makes pods.
pub fn pod_template<'a>(gvk: &GroupVersionKind, object: &'a Node) -> Option<PodTemplate<'a>> {
    let kind = gvk.kind.as_str();
    let group = gvk.group.as_str();
    match (group, kind) {
        ("", "Pod") => Some(PodTemplate {
            labels: at(object, &["metadata", "labels"]),
            spec: at(object, &["spec"])?,
            spec_path: "spec",
            labels_path: "metadata.labels",
            selector: None,
            replicas: Replicas::Fixed(1),
        }),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => {
            let spec = object.get("spec")?;
            let replicas = match kind {
                "DaemonSet" => Replicas::PerNode,
                // A Job runs `parallelism` pods at once, never more than it needs to complete.
                "Job" => {
                    let parallelism = integer(spec.get("parallelism")).unwrap_or(1);
                    let completions = integer(spec.get("completions")).unwrap_or(parallelism);
                    Replicas::Fixed(parallelism.min(completions.max(1)))
                }
                _ => Replicas::Fixed(integer(spec.get("replicas")).unwrap_or(1)),
            };
            let form = if kind == "ReplicationController" { SelectorForm::Map } else { SelectorForm::LabelSelector };
            Some(PodTemplate {
                labels: at(spec, &["template", "metadata", "labels"]),
                spec: at(spec, &["template", "spec"])?,
                spec_path: "spec.template.spec",
                labels_path: "spec.template.metadata.labels",
                selector: Some((spec.get("selector"), form)),
                replicas,
            })
        }
        ("batch", "CronJob") => {
            let job = at(object, &["spec", "jobTemplate", "spec"])?;
            Some(PodTemplate {
                labels: at(job, &["template", "metadata", "labels"]),
                spec: at(job, &["template", "spec"])?,
                spec_path: "spec.jobTemplate.spec.template.spec",
                labels_path: "spec.jobTemplate.spec.template.metadata.labels",
                selector: Some((job.get("selector"), SelectorForm::LabelSelector)),
                replicas: Replicas::Fixed(integer(job.get("parallelism")).unwrap_or(1)),
            })
        }
        _ => None,
    }
}

/// A mapping node's string entries (labels, selectors), as the API server reads them.
pub fn string_map(node: Option<&Node>) -> std::collections::BTreeMap<String, String> {
    node.and_then(Node::as_map)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let value = match &e.value.value {
                        Value::String(s) => s.clone(),
                        _ => e.value.to_json().to_string(),
                    };
                    (e.key.name.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The containers of a pod spec, init containers first, each with its field path.
pub fn containers(spec: &Node) -> Vec<(String, &Node)> {
    let mut all = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(list) = spec.get(field).and_then(Node::as_seq) {
            for (i, container) in list.iter().enumerate() {
                all.push((format!("{field}[{i}]"), container));
            }
        }
    }
    all
}
