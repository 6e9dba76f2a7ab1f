use crate::rules::{Finding, ObjectContext};

rule! {
    /// Container without CPU or memory requests
    ///
    /// The scheduler places pods by their requests. A container without them is packed onto nodes as if it used
    /// nothing, is the first evicted under pressure (BestEffort), and makes capacity planning guesswork.
    ///
    /// Fix: Set resources.requests.cpu and resources.requests.memory to what the container needs at steady state.
    "resources/missing-requests", Warning, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(resources) = container.resources() else { continue };
        // A limit without a request makes the request equal to it (API server default).
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|r| !resources.requests.contains_key(*r) && !resources.limits.contains_key(*r))
            .collect();
        let message = |name: &str, missing| format!("container \"{name}\" requests no {missing}");
        out.extend(super::missing((&RULE, "no requests"), container, (&missing, &resources.path), message));
    }
}
