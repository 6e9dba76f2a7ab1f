use crate::diagnostic::Severity;
use crate::rules::facts::DeclaredPorts;
use crate::rules::{Finding, ObjectContext};
use crate::yaml::Value;

rule! {
    /// Probe on a port the container does not declare
    ///
    /// A probe on a named port that the container does not declare can never succeed, so the container is restarted
    /// (liveness) or never ready (readiness). A numbered port that is not declared often means the probe and the
    /// server disagree.
    ///
    /// Fix: Point the probe at a port listed in the container's ports, by name or number.
    "pod/probe-port", Warning, Object(check)
}

const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        // Most containers have no probe: their ports are only gathered for those that do.
        if PROBES.iter().all(|probe| container.node.get(probe).is_none()) {
            continue;
        }
        let mut declared = DeclaredPorts::default();
        declared.add_container(container.node);
        for probe_field in PROBES {
            let Some(probe) = container.node.get(probe_field) else { continue };
            for handler in ["httpGet", "tcpSocket", "grpc"] {
                let Some(entry) = probe.get(handler).and_then(|h| h.entry("port")) else { continue };
                let field = format!("{}.{probe_field}.{handler}.port", container.path);
                match &entry.value.value {
                    Value::String(name) if name.parse::<i64>().is_err() && !declared.named.contains_key(name) => {
                        out.push(
                            Finding::new(
                                &RULE,
                                entry.value.span,
                                format!("{probe_field} uses port \"{name}\", which the container does not declare"),
                            )
                            .severity(Severity::Error)
                            .label("no container port has this name")
                            .help(known_ports(&declared))
                            .path(field),
                        );
                    }
                    Value::String(digits) if digits.parse::<i64>().is_ok() => {
                        out.push(
                            Finding::new(
                                &RULE,
                                entry.value.span,
                                format!(
                                    "{probe_field} port \"{digits}\" is a string of digits, which the API server refuses"
                                ),
                            )
                            .severity(Severity::Error)
                            .label("neither a number nor a port name")
                            .help(format!("write the number without quotes: {digits}"))
                            .path(field),
                        );
                    }
                    Value::Int(number) if !declared.numbers.contains(number) => {
                        out.push(
                            Finding::new(
                                &RULE,
                                entry.value.span,
                                format!("{probe_field} uses port {number}, which the container does not declare"),
                            )
                            .label("port not in the container's ports")
                            .help(known_ports(&declared))
                            .path(field),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

fn known_ports(declared: &DeclaredPorts) -> String {
    if declared.numbers.is_empty() {
        return "the container declares no ports: add the probed port to its ports".into();
    }
    let numbers: Vec<String> = declared.numbers.iter().map(i64::to_string).collect();
    if declared.named.is_empty() {
        return format!("the container declares ports {}", numbers.join(", "));
    }
    let named: Vec<String> = declared.named.iter().map(|(name, number)| format!("{name} ({number})")).collect();
    format!("the container declares ports {} (named: {})", numbers.join(", "), named.join(", "))
}
