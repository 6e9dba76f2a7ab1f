use crate::names;
use crate::rules::{Finding, ObjectContext};

rule! {
    /// Container port name that is not an IANA service name
    ///
    /// Port names must be at most 15 lower-case letters, digits and '-', with at least one letter; the API server
    /// refuses others.
    ///
    /// Fix: Rename the port, e.g. `http`, `metrics`, `grpc-api`.
    "pod/invalid-port-name", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        for (i, port) in super::ports(container.node) {
            let Some(entry) = port.entry("name") else { continue };
            let Some(name) = entry.value.as_str() else { continue };
            if let Some(problem) = names::port_name(name).first() {
                out.push(
                    Finding::new(&RULE, entry.value.span, format!("port name \"{name}\": {problem}"))
                        .label("invalid port name")
                        .path(format!("{}.ports[{i}].name", container.path)),
                );
            }
        }
    }
}
