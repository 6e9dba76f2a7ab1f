use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, Rule, SetContext};

pub static RULE: Rule = Rule {
    id: "reference/missing-service",
    name: "Ingress routes to a Service the input does not define",
    severity: Severity::Warning,
    rationale: "An Ingress backend that names a missing Service answers 503 for its paths.",
    fix: "Add the Service to the input or fix the backend's service name.",
    check: Check::Set(check),
};

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "Service", out);
}
