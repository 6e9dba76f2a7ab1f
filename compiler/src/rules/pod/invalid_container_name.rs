use crate::names;
use crate::rules::{Finding, ObjectContext, join};
use std::collections::HashSet;

rule! {
    /// Container name that is invalid or used twice
    ///
    /// Container names must be DNS labels and unique within a pod (init containers included); the API server refuses
    /// the pod otherwise, and logs, exec and metrics address containers by name.
    ///
    /// Fix: Give each container a distinct lower-case name of letters, digits and '-'.
    "pod/invalid-container-name", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let mut seen: HashSet<&str> = HashSet::new();
    for container in context.containers() {
        let Some(entry) = container.node.entry("name") else { continue };
        let Some(name) = entry.value.as_str() else { continue };
        if let Some(problem) = names::dns1123_label(name).first() {
            out.push(
                Finding::new(&RULE, entry.value.span, format!("container name \"{name}\": {problem}"))
                    .label("invalid container name")
                    .path(join(&container.path, "name")),
            );
        }
        if !seen.insert(name) {
            out.push(
                Finding::new(&RULE, entry.value.span, format!("container name \"{name}\" is used twice in this pod"))
                    .label("duplicate container name")
                    .path(join(&container.path, "name")),
            );
        }
    }
}
