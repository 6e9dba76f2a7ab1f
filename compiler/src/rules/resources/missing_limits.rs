use crate::rules::{Finding, ObjectContext};

rule! {
    /// Container without CPU or memory limits
    ///
    /// Without a memory limit a leaking container takes memory from its neighbours until the node kills something;
    /// without a CPU limit it can starve them. Many teams set memory limits and leave CPU unlimited: turn this rule
    /// down in .kubeyard.yaml if that is your policy.
    ///
    /// Fix: Set resources.limits.memory (and resources.limits.cpu if your policy wants it).
    "resources/missing-limits", Warning, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(resources) = container.resources() else { continue };
        let missing: Vec<&str> = ["cpu", "memory"].into_iter().filter(|r| !resources.limits.contains_key(*r)).collect();
        let message = |name: &str, missing| format!("container \"{name}\" has no {missing} limit");
        let clause = format!("has no {} limit", missing.join(" or "));
        let finding = super::missing((&RULE, "no limits"), container, (&missing, &resources.path), message);
        // One finding per container: with resources/missing-requests on the same spot, this
        // continues its message.
        out.extend(finding.map(|f| f.joins(&super::missing_requests::RULE, clause)));
    }
}
