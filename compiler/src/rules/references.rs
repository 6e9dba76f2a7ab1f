//! References between objects: what a pod mounts and reads, what an Ingress routes to.
//! A reference to an object the input does not define, and that is not optional, fails
//! at run time (pods stuck in ContainerCreating, Ingress without backends).

use super::{Finding, Rule, SetContext};
use crate::diagnostic::Severity;
use crate::source::Span;
use crate::workloads;
use crate::yaml::{Node, Value};
use rustc_hash::FxHashSet as HashSet;

pub static MISSING_CONFIG_MAP: Rule = Rule {
    id: "reference/missing-configmap",
    name: "Reference to a ConfigMap the input does not define",
    severity: Severity::Warning,
    rationale: "A pod that mounts or reads a missing ConfigMap (not marked optional) does not start: it stays in ContainerCreating or CreateContainerConfigError until the ConfigMap appears.",
    fix: "Add the ConfigMap to the input, fix the name, or mark the reference `optional: true` if the pod can run without it.",
    needs_set: true,
};

pub static MISSING_SECRET: Rule = Rule {
    id: "reference/missing-secret",
    name: "Reference to a Secret the input does not define",
    severity: Severity::Warning,
    rationale: "A pod that mounts or reads a missing Secret (not marked optional), or pulls images with a missing pull secret, does not start. Secrets made outside the manifests (sealed, external) are a common reason to turn this rule down.",
    fix: "Add the Secret to the input, fix the name, or mark the reference `optional: true`.",
    needs_set: true,
};

pub static MISSING_SERVICE_ACCOUNT: Rule = Rule {
    id: "reference/missing-serviceaccount",
    name: "Pod runs as a ServiceAccount the input does not define",
    severity: Severity::Warning,
    rationale: "The API server refuses to create pods whose ServiceAccount does not exist, so the workload's controller fails silently in events while the workload shows zero ready replicas.",
    fix: "Add the ServiceAccount to the input or fix serviceAccountName.",
    needs_set: true,
};

pub static MISSING_PVC: Rule = Rule {
    id: "reference/missing-pvc",
    name: "Pod mounts a PersistentVolumeClaim the input does not define",
    severity: Severity::Warning,
    rationale: "A pod whose claim does not exist stays Pending: the scheduler will not place it.",
    fix: "Add the PersistentVolumeClaim to the input, fix claimName, or use a StatefulSet volumeClaimTemplate.",
    needs_set: true,
};

pub static MISSING_SERVICE: Rule = Rule {
    id: "reference/missing-service",
    name: "Ingress routes to a Service the input does not define",
    severity: Severity::Warning,
    rationale: "An Ingress backend that names a missing Service answers 503 for its paths.",
    fix: "Add the Service to the input or fix the backend's service name.",
    needs_set: true,
};

/// One reference found in an object.
#[derive(Debug)]
pub struct Reference {
    rule: &'static Rule,
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

pub(super) fn pod_references(spec: &Node, spec_path: &str, out: &mut Vec<Reference>) {
    let mut add = |rule: &'static Rule, kind: &'static str, found: Option<(String, Span)>, path: String| {
        if let Some((name, span)) = found {
            out.push(Reference { rule, kind, name, span, path });
        }
    };
    for field in ["serviceAccountName", "serviceAccount"] {
        if let Some((name, span)) = name_at(spec, field)
            && name != "default"
        {
            add(&MISSING_SERVICE_ACCOUNT, "ServiceAccount", Some((name, span)), format!("{spec_path}.{field}"));
            break;
        }
    }
    for (i, secret) in spec.get("imagePullSecrets").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        add(&MISSING_SECRET, "Secret", name_at(secret, "name"), format!("{spec_path}.imagePullSecrets[{i}].name"));
    }
    for (i, volume) in spec.get("volumes").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let base = format!("{spec_path}.volumes[{i}]");
        if let Some(source) = volume.get("configMap").filter(|s| !optional(s)) {
            add(&MISSING_CONFIG_MAP, "ConfigMap", name_at(source, "name"), format!("{base}.configMap.name"));
        }
        if let Some(source) = volume.get("secret").filter(|s| !optional(s)) {
            add(&MISSING_SECRET, "Secret", name_at(source, "secretName"), format!("{base}.secret.secretName"));
        }
        if let Some(source) = volume.get("persistentVolumeClaim") {
            add(
                &MISSING_PVC,
                "PersistentVolumeClaim",
                name_at(source, "claimName"),
                format!("{base}.persistentVolumeClaim.claimName"),
            );
        }
        let projected =
            volume.get("projected").and_then(|p| p.get("sources")).and_then(Node::as_seq).unwrap_or_default();
        for (j, source) in projected.iter().enumerate() {
            if let Some(config_map) = source.get("configMap").filter(|s| !optional(s)) {
                add(
                    &MISSING_CONFIG_MAP,
                    "ConfigMap",
                    name_at(config_map, "name"),
                    format!("{base}.projected.sources[{j}].configMap.name"),
                );
            }
            if let Some(secret) = source.get("secret").filter(|s| !optional(s)) {
                add(
                    &MISSING_SECRET,
                    "Secret",
                    name_at(secret, "name"),
                    format!("{base}.projected.sources[{j}].secret.name"),
                );
            }
        }
    }
    for (field, container) in workloads::containers(spec) {
        let base = format!("{spec_path}.{field}");
        for (i, env) in container.get("env").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            let Some(from) = env.get("valueFrom") else { continue };
            if let Some(key) = from.get("configMapKeyRef").filter(|k| !optional(k)) {
                add(
                    &MISSING_CONFIG_MAP,
                    "ConfigMap",
                    name_at(key, "name"),
                    format!("{base}.env[{i}].valueFrom.configMapKeyRef.name"),
                );
            }
            if let Some(key) = from.get("secretKeyRef").filter(|k| !optional(k)) {
                add(
                    &MISSING_SECRET,
                    "Secret",
                    name_at(key, "name"),
                    format!("{base}.env[{i}].valueFrom.secretKeyRef.name"),
                );
            }
        }
        for (i, env_from) in container.get("envFrom").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            if let Some(source) = env_from.get("configMapRef").filter(|s| !optional(s)) {
                add(
                    &MISSING_CONFIG_MAP,
                    "ConfigMap",
                    name_at(source, "name"),
                    format!("{base}.envFrom[{i}].configMapRef.name"),
                );
            }
            if let Some(source) = env_from.get("secretRef").filter(|s| !optional(s)) {
                add(&MISSING_SECRET, "Secret", name_at(source, "name"), format!("{base}.envFrom[{i}].secretRef.name"));
            }
        }
    }
}

pub(super) fn ingress_references(ingress: &Node, out: &mut Vec<Reference>) {
    let Some(spec) = ingress.get("spec") else { return };
    let mut backend = |backend: &Node, path: String| {
        if let Some(service) = backend.get("service")
            && let Some((name, span)) = name_at(service, "name")
        {
            out.push(Reference {
                rule: &MISSING_SERVICE,
                kind: "Service",
                name,
                span,
                path: format!("{path}.service.name"),
            });
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

pub(super) fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let defined: HashSet<(&str, Option<&str>, &str)> = context
        .members
        .iter()
        .filter(|m| m.info.gvk.group.is_empty())
        .filter_map(|m| Some((m.info.gvk.kind.as_str(), m.namespace.as_deref(), m.info.name.as_deref()?)))
        .collect();
    for (index, member) in context.members.iter().enumerate() {
        let Some(facts) = member.facts else { continue };
        let namespace = member.namespace.as_deref();
        for reference in &facts.references {
            if defined.contains(&(reference.kind, namespace, reference.name.as_str())) || always_there(reference) {
                continue;
            }
            let place = namespace.map_or(String::new(), |ns| format!(" in namespace {ns}"));
            out.push((
                index,
                Finding::new(
                    reference.rule,
                    reference.span,
                    format!("{} \"{}\" is not defined in the input{place}", reference.kind, reference.name),
                )
                .label(format!("no such {}", reference.kind))
                .path(reference.path.clone()),
            ));
        }
    }
}
