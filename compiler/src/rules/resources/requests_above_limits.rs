use crate::rules::{Finding, ObjectContext};

rule! {
    /// Resource request above its limit
    ///
    /// A container's request for a resource may not exceed its limit; the API server refuses the pod.
    ///
    /// Fix: Lower the request or raise the limit.
    "resources/requests-above-limits", Error, Object(check)
}

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
