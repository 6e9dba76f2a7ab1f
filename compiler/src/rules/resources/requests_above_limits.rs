use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, ObjectContext, Rule};

pub static RULE: Rule = Rule {
    id: "resources/requests-above-limits",
    name: "Resource request above its limit",
    severity: Severity::Error,
    rationale: "A container's request for a resource may not exceed its limit; the API server refuses the pod.",
    fix: "Lower the request or raise the limit.",
    check: Check::Object(check),
};

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for resources in context.containers().iter().filter_map(|c| c.resources()) {
        for (name, (request, node)) in &resources.requests {
            if let Some((limit, _)) = resources.limits.get(name)
                && request > limit
            {
                out.push(
                    Finding::new(&RULE, node.span, format!("{name} request {request} is above its limit {limit}"))
                        .label("above the limit")
                        .path(format!("{}.requests.{name}", resources.path)),
                );
            }
        }
    }
}
