use crate::names;
use crate::rules::{Finding, ObjectContext};

rule! {
    /// Object name the API server rejects
    ///
    /// Each kind has a name syntax: most must be DNS subdomains (lower case, digits, '-' and '.'), Namespaces DNS
    /// labels, Services DNS-1035 labels that start with a letter. An object with a bad name, or none, is refused when
    /// applied, usually after everything before it in the pipeline has run.
    ///
    /// Fix: Rename the object to lower-case letters, digits and '-' (and '.' where the kind allows it), at most 253
    /// characters (63 for Namespaces and Services).
    "metadata/invalid-name", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    let metadata = context.node.get("metadata");
    match metadata.and_then(|m| m.entry("name")) {
        Some(entry) => {
            if let Some(name) = entry.value.as_str() {
                let (rule_name, problems) = name_problems(&gvk.group, &gvk.kind, name, gvk.is_builtin_group());
                if let Some(problem) = problems.first() {
                    out.push(
                        Finding::new(&RULE, entry.value.span, format!("{} name \"{name}\": {problem}", gvk.kind))
                            .label(format!("not a valid {rule_name}"))
                            .path("metadata.name"),
                    );
                }
            }
        }
        None if metadata.and_then(|m| m.get("generateName")).is_none() => {
            out.push(
                Finding::new(&RULE, context.info.kind_span, format!("{} has no metadata.name", gvk.kind))
                    .label("object without a name")
                    .help("add `metadata.name` (or `metadata.generateName` for objects created with `kubectl create`)")
                    .path("metadata.name"),
            );
        }
        None => {}
    }
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
