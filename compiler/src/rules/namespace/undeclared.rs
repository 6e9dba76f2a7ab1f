use crate::rules::{Finding, SetContext};
use crate::scope::BUILTIN_NAMESPACES;
use rustc_hash::FxHashSet as HashSet;

rule! {
    /// Object in a namespace the input does not create
    ///
    /// Applying an object into a namespace that does not exist fails. Unless the namespace is made elsewhere, the
    /// manifests need its Namespace object (and it must be applied first, which kubeyard's plan orders for you).
    ///
    /// Fix: Add a Namespace object to the input, or fix the object's metadata.namespace.
    "namespace/undeclared", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
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
            Finding::new(&RULE, span, format!("namespace \"{namespace}\" is not created by the input"))
                .label("no Namespace object with this name")
                .help(format!("add `apiVersion: v1`, `kind: Namespace`, `metadata: {{name: {namespace}}}` to the input, or fix the namespace"))
                .path("metadata.namespace"),
        ));
    }
}
