use crate::rules::{Finding, SetContext};

rule! {
    /// Pod runs as a ServiceAccount the input does not define
    ///
    /// The API server refuses to create pods whose ServiceAccount does not exist, so the workload's controller fails
    /// silently in events while the workload shows zero ready replicas.
    ///
    /// Fix: Add the ServiceAccount to the input or fix serviceAccountName.
    "reference/missing-serviceaccount", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "ServiceAccount", out);
}
