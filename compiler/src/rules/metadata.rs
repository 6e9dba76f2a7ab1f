//! Names, labels and annotations: the syntax the API server enforces on every object.

use super::{Finding, ObjectContext, Rule};
use crate::diagnostic::Severity;
use crate::names;
use crate::yaml::Node;

pub static INVALID_NAME: Rule = Rule {
    id: "metadata/invalid-name",
    name: "Object name the API server rejects",
    severity: Severity::Error,
    rationale: "Each kind has a name syntax: most must be DNS subdomains (lower case, digits, '-' and '.'), Namespaces DNS labels, Services DNS-1035 labels that start with a letter. An object with a bad name, or none, is refused when applied, usually after everything before it in the pipeline has run.",
    fix: "Rename the object to lower-case letters, digits and '-' (and '.' where the kind allows it), at most 253 characters (63 for Namespaces and Services).",
    needs_set: false,
};

pub static INVALID_LABEL: Rule = Rule {
    id: "metadata/invalid-label",
    name: "Label key or value the API server rejects",
    severity: Severity::Error,
    rationale: "Label keys are qualified names (an optional DNS-subdomain prefix and a name of at most 63 characters) and values are at most 63 characters of letters, digits, '-', '_' and '.'. Selectors and tools depend on labels, and an invalid one fails the whole object.",
    fix: "Shorten or rewrite the label; put free-form text in an annotation instead.",
    needs_set: false,
};

pub static INVALID_ANNOTATION: Rule = Rule {
    id: "metadata/invalid-annotation",
    name: "Annotation key the API server rejects, or annotations over 256 KiB",
    severity: Severity::Error,
    rationale: "Annotation keys follow the label key syntax, and all annotations of an object together may hold at most 256 KiB. Tools that stuff large data into annotations (including kubectl's last-applied-configuration) hit this limit.",
    fix: "Fix the key; move large data into a ConfigMap, or use server-side apply, which keeps no last-applied annotation.",
    needs_set: false,
};

const ANNOTATIONS_LIMIT: usize = 256 * 1024;

pub(super) fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    let metadata = context.node.get("metadata");
    match metadata.and_then(|m| m.entry("name")) {
        Some(entry) => {
            if let Some(name) = entry.value.as_str() {
                let (rule_name, problems) =
                    name_problems(&gvk.group, &gvk.kind, name, context.info.gvk.is_builtin_group());
                if let Some(problem) = problems.first() {
                    out.push(
                        Finding::new(
                            &INVALID_NAME,
                            entry.value.span,
                            format!("{} name \"{name}\": {problem}", gvk.kind),
                        )
                        .label(format!("not a valid {rule_name}"))
                        .path("metadata.name"),
                    );
                }
            }
        }
        None if metadata.and_then(|m| m.get("generateName")).is_none() => {
            out.push(
                Finding::new(&INVALID_NAME, context.info.kind_span, format!("{} has no metadata.name", gvk.kind))
                    .label("object without a name")
                    .help("add `metadata.name` (or `metadata.generateName` for objects created with `kubectl create`)")
                    .path("metadata.name"),
            );
        }
        None => {}
    }
    labels(metadata.and_then(|m| m.get("labels")), "metadata.labels", out);
    if let Some(template) = &context.template
        && template.labels_path != "metadata.labels"
    {
        labels(template.labels, template.labels_path, out);
    }
    annotations(metadata.and_then(|m| m.get("annotations")), out);
}

/// The name syntax of a kind, and what is wrong with `name` under it.
fn name_problems(group: &str, kind: &str, name: &str, builtin: bool) -> (&'static str, Vec<String>) {
    match (group, kind) {
        ("", "Namespace") => ("DNS-1123 label", names::dns1123_label(name)),
        ("", "Service") => ("DNS-1035 label", names::dns1035_label(name)),
        ("rbac.authorization.k8s.io", _) => ("path segment", names::path_segment(name)),
        _ if !builtin => ("path segment", names::path_segment(name)),
        _ => ("DNS-1123 subdomain", names::dns1123_subdomain(name)),
    }
}

fn labels(labels: Option<&Node>, path: &str, out: &mut Vec<Finding>) {
    for entry in labels.and_then(Node::as_map).unwrap_or_default() {
        let key = &entry.key.name;
        let field = format!("{path}[{key}]");
        if let Some(problem) = names::qualified_name(key).first() {
            out.push(
                Finding::new(&INVALID_LABEL, entry.key.span, format!("label key \"{key}\": {problem}"))
                    .label("invalid label key")
                    .path(field.clone()),
            );
        }
        if let Some(value) = entry.value.as_str()
            && let Some(problem) = names::label_value(value).first()
        {
            out.push(
                Finding::new(&INVALID_LABEL, entry.value.span, format!("label value \"{value}\": {problem}"))
                    .label("invalid label value")
                    .path(field),
            );
        }
    }
}

fn annotations(annotations: Option<&Node>, out: &mut Vec<Finding>) {
    let Some(annotations) = annotations else { return };
    let entries = annotations.as_map().unwrap_or_default();
    let mut total = 0;
    for entry in entries {
        let key = &entry.key.name;
        total += key.len() + entry.value.as_str().map_or(0, str::len);
        if let Some(problem) = names::qualified_name(key).first() {
            out.push(
                Finding::new(&INVALID_ANNOTATION, entry.key.span, format!("annotation key \"{key}\": {problem}"))
                    .label("invalid annotation key")
                    .path(format!("metadata.annotations[{key}]")),
            );
        }
    }
    if total > ANNOTATIONS_LIMIT {
        out.push(
            Finding::new(
                &INVALID_ANNOTATION,
                annotations.span,
                format!("annotations hold {total} bytes; the API server allows {ANNOTATIONS_LIMIT}"),
            )
            .label("too large")
            .path("metadata.annotations"),
        );
    }
}
