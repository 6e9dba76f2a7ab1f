use crate::rules::{Finding, ObjectContext};
use crate::yaml::Value;

rule! {
    /// Container binds a host port
    ///
    /// A hostPort ties each pod to a port on its node: two replicas cannot share a node, scheduling gets harder, and
    /// the port bypasses network policy.
    ///
    /// Fix: Remove hostPort and expose the pod through a Service (NodePort or LoadBalancer if it must be reachable
    /// from outside).
    "pod/host-port", Warning, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        for (i, port) in super::ports(container.node) {
            if let Some(entry) = port.entry("hostPort")
                && matches!(entry.value.value, Value::Int(n) if n > 0)
            {
                out.push(
                    Finding::new(&RULE, entry.key.span, "container binds a port on its node (hostPort)")
                        .label("hostPort")
                        .path(format!("{}.ports[{i}].hostPort", container.path)),
                );
            }
        }
    }
}
