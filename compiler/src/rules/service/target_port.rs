use crate::diagnostic::Severity;
use crate::rules::{Finding, SetContext};
use crate::yaml::Value;

rule! {
    /// Service targetPort that the selected containers do not expose
    ///
    /// A named targetPort resolves against the selected pods' container port names: if none has it, the Service has
    /// no endpoints for that port. A numbered one that no container declares often means the Service and the
    /// container disagree on the port.
    ///
    /// Fix: Point targetPort at a port the selected containers declare, by name or number.
    "service/target-port", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let selections = context.selections();
    for selection in &selections.services {
        let selected = selections.pods(selection);
        // A Service that selects nothing is `service/no-matching-pods`'s to report.
        if selected.is_empty() {
            continue;
        }
        for port in &selection.service.ports {
            let path = format!("spec.ports[{}].targetPort", port.index);
            match &port.target {
                Value::String(name)
                    if name.parse::<i64>().is_err() && !selected.iter().any(|s| s.ports.named.contains_key(name)) =>
                {
                    let names: Vec<&str> =
                        selected.iter().flat_map(|s| s.ports.named.keys().map(String::as_str)).collect();
                    out.push((
                        selection.index,
                        Finding::new(
                            &RULE,
                            port.span,
                            format!("targetPort \"{name}\" is not a port name of the selected containers"),
                        )
                        .severity(Severity::Error)
                        .label("no selected container has this port name")
                        .help(if names.is_empty() {
                            "the selected containers name no ports: name the port in the container, or use its number"
                                .to_string()
                        } else {
                            format!("the selected containers name their ports {}", names.join(", "))
                        })
                        .path(path),
                    ));
                }
                Value::Int(number) if !selected.iter().any(|s| s.ports.numbers.contains(number)) => {
                    out.push((
                        selection.index,
                        Finding::new(
                            &RULE,
                            port.span,
                            format!("targetPort {number} is not declared by the selected containers"),
                        )
                        .label("no selected container declares this port")
                        .path(path),
                    ));
                }
                _ => {}
            }
        }
    }
}
