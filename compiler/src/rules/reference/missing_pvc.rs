use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, Rule, SetContext};

pub static RULE: Rule = Rule {
    id: "reference/missing-pvc",
    name: "Pod mounts a PersistentVolumeClaim the input does not define",
    severity: Severity::Warning,
    rationale: "A pod whose claim does not exist stays Pending: the scheduler will not place it.",
    fix: "Add the PersistentVolumeClaim to the input, fix claimName, or use a StatefulSet volumeClaimTemplate.",
    check: Check::Set(check),
};

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "PersistentVolumeClaim", out);
}
