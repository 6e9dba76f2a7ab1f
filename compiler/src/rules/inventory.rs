//! The set of objects itself: duplicates, and namespaces nobody creates.

use super::{Finding, Rule, SetContext};
use crate::diagnostic::Severity;
use crate::scope::BUILTIN_NAMESPACES;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub static DUPLICATE: Rule = Rule {
    id: "object/duplicate",
    name: "The same object defined twice",
    severity: Severity::Error,
    rationale: "Two documents with the same group, kind, namespace and name are one object: the second apply silently overwrites the first, so the result depends on file order. Namespace-less objects of namespaced kinds land in `default`, so they collide with objects written for it.",
    fix: "Remove one of them, or give them different names or namespaces.",
    needs_set: true,
};

pub static UNDECLARED_NAMESPACE: Rule = Rule {
    id: "namespace/undeclared",
    name: "Object in a namespace the input does not create",
    severity: Severity::Warning,
    rationale: "Applying an object into a namespace that does not exist fails. Unless the namespace is made elsewhere, the manifests need its Namespace object (and it must be applied first, which kubeyard's plan orders for you).",
    fix: "Add a Namespace object to the input, or fix the object's metadata.namespace.",
    needs_set: true,
};

pub(super) fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let mut first: HashMap<(&str, &str, Option<&str>, &str), usize> = HashMap::default();
    for (index, member) in context.members.iter().enumerate() {
        let Some(name) = member.info.name.as_deref() else { continue };
        let key = (member.info.gvk.group.as_str(), member.info.gvk.kind.as_str(), member.namespace.as_deref(), name);
        match first.get(&key) {
            None => {
                first.insert(key, index);
            }
            Some(&earlier) => {
                let other = &context.members[earlier];
                let at = other.source.line_col(other.span.start);
                let place = key.2.map_or(String::new(), |ns| format!(" in namespace {ns}"));
                out.push((
                    index,
                    Finding::new(
                        &DUPLICATE,
                        member.info.kind_span,
                        format!("{} \"{name}\"{place} is defined twice", member.info.gvk.kind),
                    )
                    .label("defined again here")
                    .help(format!(
                        "the first is at {}:{}:{}",
                        other.source.name(),
                        at.line,
                        at.column
                    )),
                ));
            }
        }
    }
    let declared: HashSet<&str> = context
        .members
        .iter()
        .filter(|m| m.info.gvk.group.is_empty() && m.info.gvk.kind == "Namespace")
        .filter_map(|m| m.info.name.as_deref())
        .collect();
    for (index, member) in context.members.iter().enumerate() {
        let Some(namespace) = member.info.namespace.as_deref() else { continue };
        if !context.catalog.is_namespaced(&member.info.gvk)
            || declared.contains(namespace)
            || BUILTIN_NAMESPACES.contains(&namespace)
        {
            continue;
        }
        let span = member.info.namespace_span.unwrap_or(member.info.kind_span);
        out.push((
            index,
            Finding::new(&UNDECLARED_NAMESPACE, span, format!("namespace \"{namespace}\" is not created by the input"))
                .label("no Namespace object with this name")
                .help(format!("add `apiVersion: v1`, `kind: Namespace`, `metadata: {{name: {namespace}}}` to the input, or fix the namespace"))
                .path("metadata.namespace"),
        ));
    }
}
