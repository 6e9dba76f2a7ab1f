//! `reference/*`: references between objects, what a pod mounts and reads, what an
//! Ingress routes to. A reference to an object the input does not define, and that is
//! not optional, fails at run time (pods stuck in ContainerCreating, Ingress without
//! backends). What each object refers to is gathered while it is linted
//! (`pod_references`, `ingress_references`, called by `facts::extract`); each rule is
//! about one kind of object referred to.

mod missing_configmap;
mod missing_pvc;
mod missing_secret;
mod missing_service;
mod missing_serviceaccount;

use super::{Finding, Member, Rule, SetContext};
use crate::source::Span;
use crate::workloads;
use crate::yaml::{Node, Value};
use rustc_hash::FxHashSet as HashSet;

pub(super) const RULES: &[&Rule] = &[
    &missing_configmap::RULE,
    &missing_secret::RULE,
    &missing_serviceaccount::RULE,
    &missing_pvc::RULE,
    &missing_service::RULE,
];

/// One reference found in an object.
#[derive(Debug)]
pub struct Reference {
    /// The kind of the object referred to (all in the core group); it decides the rule.
    kind: &'static str,
    name: String,
    span: Span,
    path: String,
}

fn name_at(node: &Node, key: &str) -> Option<(String, Span)> {
    let entry = node.entry(key)?;
    entry.value.as_str().filter(|s| !s.is_empty()).map(|s| (s.to_string(), entry.value.span))
}

fn optional(node: &Node) -> bool {
    node.get("optional").is_some_and(|o| o.value == Value::Bool(true))
}

pub(crate) fn pod_references(spec: &Node, spec_path: &str, out: &mut Vec<Reference>) {
    let mut add = |kind: &'static str, found: Option<(String, Span)>, path: String| {
        if let Some((name, span)) = found {
            out.push(Reference { kind, name, span, path });
        }
    };
    for field in ["serviceAccountName", "serviceAccount"] {
        if let Some((name, span)) = name_at(spec, field)
            && name != "default"
        {
            add("ServiceAccount", Some((name, span)), format!("{spec_path}.{field}"));
            break;
        }
    }
    for (i, secret) in spec.get("imagePullSecrets").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        add("Secret", name_at(secret, "name"), format!("{spec_path}.imagePullSecrets[{i}].name"));
    }
    for (i, volume) in spec.get("volumes").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let base = format!("{spec_path}.volumes[{i}]");
        if let Some(source) = volume.get("configMap").filter(|s| !optional(s)) {
            add("ConfigMap", name_at(source, "name"), format!("{base}.configMap.name"));
        }
        if let Some(source) = volume.get("secret").filter(|s| !optional(s)) {
            add("Secret", name_at(source, "secretName"), format!("{base}.secret.secretName"));
        }
        if let Some(source) = volume.get("persistentVolumeClaim") {
            add(
                "PersistentVolumeClaim",
                name_at(source, "claimName"),
                format!("{base}.persistentVolumeClaim.claimName"),
            );
        }
        let projected =
            volume.get("projected").and_then(|p| p.get("sources")).and_then(Node::as_seq).unwrap_or_default();
        for (j, source) in projected.iter().enumerate() {
            if let Some(config_map) = source.get("configMap").filter(|s| !optional(s)) {
                add("ConfigMap", name_at(config_map, "name"), format!("{base}.projected.sources[{j}].configMap.name"));
            }
            if let Some(secret) = source.get("secret").filter(|s| !optional(s)) {
                add("Secret", name_at(secret, "name"), format!("{base}.projected.sources[{j}].secret.name"));
            }
        }
    }
    for (field, container) in workloads::containers(spec) {
        let base = format!("{spec_path}.{field}");
        for (i, env) in container.get("env").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            let Some(from) = env.get("valueFrom") else { continue };
            if let Some(key) = from.get("configMapKeyRef").filter(|k| !optional(k)) {
                add("ConfigMap", name_at(key, "name"), format!("{base}.env[{i}].valueFrom.configMapKeyRef.name"));
            }
            if let Some(key) = from.get("secretKeyRef").filter(|k| !optional(k)) {
                add("Secret", name_at(key, "name"), format!("{base}.env[{i}].valueFrom.secretKeyRef.name"));
            }
        }
        for (i, env_from) in container.get("envFrom").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            if let Some(source) = env_from.get("configMapRef").filter(|s| !optional(s)) {
                add("ConfigMap", name_at(source, "name"), format!("{base}.envFrom[{i}].configMapRef.name"));
            }
            if let Some(source) = env_from.get("secretRef").filter(|s| !optional(s)) {
                add("Secret", name_at(source, "name"), format!("{base}.envFrom[{i}].secretRef.name"));
            }
        }
    }
}

pub(crate) fn ingress_references(ingress: &Node, out: &mut Vec<Reference>) {
    let Some(spec) = ingress.get("spec") else { return };
    let mut backend = |backend: &Node, path: String| {
        if let Some(service) = backend.get("service")
            && let Some((name, span)) = name_at(service, "name")
        {
            out.push(Reference { kind: "Service", name, span, path: format!("{path}.service.name") });
        }
    };
    if let Some(default) = spec.get("defaultBackend") {
        backend(default, "spec.defaultBackend".into());
    }
    for (i, rule) in spec.get("rules").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let paths = rule.get("http").and_then(|h| h.get("paths")).and_then(Node::as_seq).unwrap_or_default();
        for (j, path) in paths.iter().enumerate() {
            if let Some(b) = path.get("backend") {
                backend(b, format!("spec.rules[{i}].http.paths[{j}].backend"));
            }
        }
    }
}

/// Objects every namespace has without anyone writing them.
fn always_there(reference: &Reference) -> bool {
    // The cluster CA bundle, published into every namespace by the root CA publisher.
    reference.kind == "ConfigMap" && reference.name == "kube-root-ca.crt"
}

/// The core-group objects of a run, by kind, namespace and name.
pub(crate) struct Defined<'a>(HashSet<(&'a str, Option<&'a str>, &'a str)>);

impl<'a> Defined<'a> {
    pub(super) fn new(members: &'a [Member<'a>]) -> Defined<'a> {
        Defined(
            members
                .iter()
                .filter(|m| m.info.gvk.group.is_empty())
                .filter_map(|m| Some((m.info.gvk.kind.as_str(), m.namespace.as_deref(), m.info.name.as_deref()?)))
                .collect(),
        )
    }
}

/// A `reference/missing-*` rule: the references to objects of `kind` that the input does
/// not define.
fn check_missing(context: &SetContext<'_>, rule: &'static Rule, kind: &str, out: &mut Vec<(usize, Finding)>) {
    let defined = context.defined();
    for (index, member) in context.members.iter().enumerate() {
        let Some(facts) = member.facts else { continue };
        let namespace = member.namespace.as_deref();
        for reference in facts.references.iter().filter(|r| r.kind == kind) {
            if defined.0.contains(&(reference.kind, namespace, reference.name.as_str())) || always_there(reference) {
                continue;
            }
            let place = namespace.map_or(String::new(), |ns| format!(" in namespace {ns}"));
            out.push((
                index,
                Finding::new(
                    rule,
                    reference.span,
                    format!("{} \"{}\" is not defined in the input{place}", reference.kind, reference.name),
                )
                .label(format!("no such {}", reference.kind))
                .path(reference.path.clone()),
            ));
        }
    }
}
