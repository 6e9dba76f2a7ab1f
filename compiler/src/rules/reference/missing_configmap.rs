use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, Rule, SetContext};

pub static RULE: Rule = Rule {
    id: "reference/missing-configmap",
    name: "Reference to a ConfigMap the input does not define",
    severity: Severity::Warning,
    rationale: "A pod that mounts or reads a missing ConfigMap (not marked optional) does not start: it stays in ContainerCreating or CreateContainerConfigError until the ConfigMap appears.",
    fix: "Add the ConfigMap to the input, fix the name, or mark the reference `optional: true` if the pod can run without it.",
    check: Check::Set(check),
};

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "ConfigMap", out);
}
