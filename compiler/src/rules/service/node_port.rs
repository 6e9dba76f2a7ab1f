use crate::rules::{Finding, ObjectContext};
use crate::yaml::{Node, Value};

rule! {
    /// NodePort outside 30000-32767, or on a Service that cannot have one
    ///
    /// The API server allocates NodePorts from 30000-32767 by default and refuses a nodePort outside that range, or
    /// on a Service of type ClusterIP.
    ///
    /// Fix: Pick a nodePort in 30000-32767, leave it out to have one allocated, or make the Service type NodePort or
    /// LoadBalancer. (A cluster started with another --service-node-port-range: turn this rule off in
    /// .kubeyard.yaml.)
    "service/node-port", Error, Object(check)
}

const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if !context.info.gvk.group.is_empty() || context.info.gvk.kind != "Service" {
        return;
    }
    let Some(spec) = context.node.get("spec") else { return };
    let service_type = spec.get("type").and_then(Node::as_str).unwrap_or("ClusterIP");
    for (i, port) in spec.get("ports").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let Some(entry) = port.entry("nodePort") else { continue };
        let Value::Int(number) = entry.value.value else { continue };
        let path = format!("spec.ports[{i}].nodePort");
        if !matches!(service_type, "NodePort" | "LoadBalancer") && number != 0 {
            out.push(
                Finding::new(&RULE, entry.key.span, format!("nodePort on a Service of type {service_type}"))
                    .label("only NodePort and LoadBalancer Services have node ports")
                    .path(path),
            );
        } else if number != 0 && !NODE_PORTS.contains(&number) {
            out.push(
                Finding::new(&RULE, entry.value.span, format!("nodePort {number} is outside 30000-32767"))
                    .label("outside the NodePort range")
                    .path(path),
            );
        }
    }
}
