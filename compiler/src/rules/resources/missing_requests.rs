use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, ObjectContext, Rule};

pub static RULE: Rule = Rule {
    id: "resources/missing-requests",
    name: "Container without CPU or memory requests",
    severity: Severity::Warning,
    rationale: "The scheduler places pods by their requests. A container without them is packed onto nodes as if it used nothing, is the first evicted under pressure (BestEffort), and makes capacity planning guesswork.",
    fix: "Set resources.requests.cpu and resources.requests.memory to what the container needs at steady state.",
    check: Check::Object(check),
};

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(resources) = container.resources() else { continue };
        // A limit without a request makes the request equal to it (API server default).
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|r| !resources.requests.contains_key(*r) && !resources.limits.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            out.push(
                Finding::new(
                    &RULE,
                    super::anchor(container),
                    format!("container \"{}\" requests no {}", super::container_name(container), missing.join(" or ")),
                )
                .label("no resource requests")
                .path(resources.path.clone()),
            );
        }
    }
}
