//! What the set rules need to know about one object, read while its tree is at hand (in
//! parallel, file by file), so that the set phase joins small records instead of keeping
//! and walking every tree of the run.

use super::ObjectContext;
use super::reference::{self, Reference};
use super::schedule::ClusterShape;
use crate::quantity::Quantity;
use crate::scheduling::{PodInfo, Resources};
use crate::schema::KUBEYARD_GROUP;
use crate::selector::Selector;
use crate::source::Span;
use crate::workloads::{self, Replicas};
use crate::yaml::{Node, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Facts {
    /// For kinds that make pods.
    pub pods: Option<PodFacts>,
    /// For Services that select pods.
    pub service: Option<ServiceFacts>,
    /// The objects this one names (ConfigMaps, Secrets, ...).
    pub references: Vec<Reference>,
    /// For ResourceQuotas: their `spec.hard`.
    pub quota: Vec<QuotaEntry>,
    /// For a `kubeyard.dev/v1alpha1` Cluster.
    pub cluster: Option<ClusterShape>,
}

/// A container's ports (or a pod's), by name and by number.
#[derive(Debug, Default)]
pub struct DeclaredPorts {
    pub named: BTreeMap<String, i64>,
    pub numbers: BTreeSet<i64>,
}

impl DeclaredPorts {
    /// Adds the ports of one container; a name used twice keeps its last port.
    pub fn add_container(&mut self, container: &Node) {
        for port in container.get("ports").and_then(Node::as_seq).unwrap_or_default() {
            let number = match port.get("containerPort").map(|n| &n.value) {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            };
            self.numbers.extend(number);
            if let Some(name) = port.get("name").and_then(Node::as_str) {
                self.named.insert(name.to_string(), number.unwrap_or(0));
            }
        }
    }
}

#[derive(Debug)]
pub struct PodFacts {
    pub labels: BTreeMap<String, String>,
    /// Every port of every container of the pod.
    pub ports: DeclaredPorts,
    /// What one pod asks for, per resource.
    pub requests: BTreeMap<String, Quantity>,
    /// `cpu` and `memory` when some container requests (and limits) none: a quota on
    /// them refuses the pod.
    pub unrequested: Vec<String>,
    pub replicas: Replicas,
    /// One pod as the scheduler reads it (its requests as the API server would default
    /// them), for `schedule/unschedulable` to run the scheduler's own framework.
    pub scheduling: PodInfo,
    /// A CronJob: its pods come and go.
    pub recurring: bool,
}

#[derive(Debug)]
pub struct ServicePort {
    pub index: usize,
    /// The `targetPort` (or the `port` it defaults to): a number or a name.
    pub target: Value,
    pub span: Span,
}

#[derive(Debug)]
pub struct ServiceFacts {
    pub selector: Selector,
    pub selector_span: Span,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug)]
pub struct QuotaEntry {
    pub resource: String,
    pub limit: Quantity,
    pub span: Span,
}

pub fn extract(context: &ObjectContext<'_>) -> Facts {
    let mut facts = Facts::default();
    let (gvk, node) = (&context.info.gvk, context.node);
    if let Some(template) = &context.template {
        reference::pod_references(template.spec, template.spec_path, &mut facts.references);
        let requests = pod_requests(template.spec);
        let mut scheduling = PodInfo::new(&serde_json::json!({"spec": template.spec.to_json()}));
        scheduling.requests = Resources::of_pod(&requests);
        // Replicas of one workload spread as one controller's pods do.
        scheduling.controller = Some(context.info.display_name());
        facts.pods = Some(PodFacts {
            labels: workloads::string_map(template.labels),
            ports: pod_ports(template.spec),
            requests,
            unrequested: unrequested(template.spec),
            replicas: template.replicas,
            scheduling,
            recurring: gvk.kind == "CronJob",
        });
    }
    match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("", "Service") => facts.service = service(node),
        ("", "ResourceQuota") => facts.quota = quota(node),
        ("networking.k8s.io", "Ingress") => reference::ingress_references(node, &mut facts.references),
        (KUBEYARD_GROUP, "Cluster") => facts.cluster = ClusterShape::from_document(node).ok(),
        _ => {}
    }
    facts
}

fn pod_ports(spec: &Node) -> DeclaredPorts {
    let mut ports = DeclaredPorts::default();
    for (_, container) in workloads::containers(spec) {
        ports.add_container(container);
    }
    ports
}

fn quantity_text(node: &Node) -> Option<Quantity> {
    crate::pod::quantity(&node.to_json())
}

/// What one pod asks for, as the scheduler and the quota count it (`crate::pod::requests`);
/// limits stand in for requests that are not written, as the API server defaults them.
pub(crate) fn pod_requests(spec: &Node) -> BTreeMap<String, Quantity> {
    crate::pod::requests(&spec.to_json(), crate::pod::Amounts::RequestsAsWritten)
}

fn unrequested(spec: &Node) -> Vec<String> {
    let containers: Vec<&Node> = ["initContainers", "containers"]
        .iter()
        .flat_map(|field| spec.get(field).and_then(Node::as_seq).unwrap_or_default())
        .collect();
    ["cpu", "memory"]
        .into_iter()
        .filter(|resource| {
            containers.iter().any(|c| {
                let has =
                    |field: &str| c.get("resources").and_then(|r| r.get(field)).and_then(|m| m.get(resource)).is_some();
                !has("requests") && !has("limits")
            })
        })
        .map(str::to_string)
        .collect()
}

fn service(node: &Node) -> Option<ServiceFacts> {
    let spec = node.get("spec")?;
    if spec.get("type").and_then(Node::as_str) == Some("ExternalName") {
        return None;
    }
    let selector_entry = spec.entry("selector")?;
    let selector = Selector::from_map(Some(&selector_entry.value.to_json())).ok()?;
    if selector.is_nothing() {
        return None;
    }
    let ports = spec
        .get("ports")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(index, port)| {
            let entry = port.entry("targetPort").or_else(|| port.entry("port"))?;
            Some(ServicePort { index, target: entry.value.value.clone(), span: entry.value.span })
        })
        .collect();
    Some(ServiceFacts { selector, selector_span: selector_entry.key.span, ports })
}

fn quota(node: &Node) -> Vec<QuotaEntry> {
    let hard = node.get("spec").and_then(|s| s.get("hard")).and_then(Node::as_map).unwrap_or_default();
    hard.iter()
        .filter_map(|entry| {
            Some(QuotaEntry {
                resource: entry.key.name.clone(),
                limit: quantity_text(&entry.value)?,
                span: entry.value.span,
            })
        })
        .collect()
}
