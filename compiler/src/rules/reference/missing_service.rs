use crate::rules::{Finding, SetContext};

rule! {
    /// Ingress routes to a Service the input does not define
    ///
    /// An Ingress backend that names a missing Service answers 503 for its paths.
    ///
    /// Fix: Add the Service to the input or fix the backend's service name.
    "reference/missing-service", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "Service", out);
}
