use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, Rule, SetContext};

pub static RULE: Rule = Rule {
    id: "reference/missing-serviceaccount",
    name: "Pod runs as a ServiceAccount the input does not define",
    severity: Severity::Warning,
    rationale: "The API server refuses to create pods whose ServiceAccount does not exist, so the workload's controller fails silently in events while the workload shows zero ready replicas.",
    fix: "Add the ServiceAccount to the input or fix serviceAccountName.",
    check: Check::Set(check),
};

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "ServiceAccount", out);
}
