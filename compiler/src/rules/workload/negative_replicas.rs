use crate::rules::{Finding, ObjectContext};
use crate::yaml::Value;

rule! {
    /// Replica count below zero
    ///
    /// spec.replicas must be zero or more. The schemas only say it is an integer, so schema validators (kubeconform
    /// among them) pass -1, and the API server refuses it when the manifest is applied.
    ///
    /// Fix: Set spec.replicas to 0 or more (0 scales the workload down without deleting it).
    "workload/negative-replicas", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if let Some(entry) = context.node.get("spec").and_then(|s| s.entry("replicas"))
        && let Value::Int(replicas) = entry.value.value
        && replicas < 0
    {
        out.push(
            Finding::new(&RULE, entry.value.span, format!("spec.replicas is {replicas}"))
                .label("must be 0 or more")
                .path("spec.replicas"),
        );
    }
}
