use crate::rules::{Finding, ObjectContext};
use std::collections::HashSet;

rule! {
    /// Container port name used twice
    ///
    /// A Service's named targetPort and a probe's named port resolve through container port names; the API server
    /// refuses a container that names two ports the same.
    ///
    /// Fix: Give each port of the container its own name.
    "pod/duplicate-port-name", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, port) in super::ports(container.node) {
            let Some(entry) = port.entry("name") else { continue };
            let Some(name) = entry.value.as_str() else { continue };
            if !seen.insert(name) {
                out.push(
                    Finding::new(
                        &RULE,
                        entry.value.span,
                        format!("port name \"{name}\" is used twice in this container"),
                    )
                    .label("duplicate port name")
                    .path(format!("{}.ports[{i}].name", container.path)),
                );
            }
        }
    }
}
