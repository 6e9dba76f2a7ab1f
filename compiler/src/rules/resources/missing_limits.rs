use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, ObjectContext, Rule};

pub static RULE: Rule = Rule {
    id: "resources/missing-limits",
    name: "Container without CPU or memory limits",
    severity: Severity::Warning,
    rationale: "Without a memory limit a leaking container takes memory from its neighbours until the node kills something; without a CPU limit it can starve them. Many teams set memory limits and leave CPU unlimited: turn this rule down in .kubeyard.yaml if that is your policy.",
    fix: "Set resources.limits.memory (and resources.limits.cpu if your policy wants it).",
    check: Check::Object(check),
};

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(resources) = container.resources() else { continue };
        let missing: Vec<&str> = ["cpu", "memory"].into_iter().filter(|r| !resources.limits.contains_key(*r)).collect();
        if !missing.is_empty() {
            out.push(
                Finding::new(
                    &RULE,
                    super::anchor(container),
                    format!("container \"{}\" has no {} limit", super::container_name(container), missing.join(" or ")),
                )
                .label("no resource limits")
                .path(resources.path.clone()),
            );
        }
    }
}
