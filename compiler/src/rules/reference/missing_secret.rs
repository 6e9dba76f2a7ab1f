use crate::rules::{Finding, SetContext};

rule! {
    /// Reference to a Secret the input does not define
    ///
    /// A pod that mounts or reads a missing Secret (not marked optional), or pulls images with a missing pull secret,
    /// does not start. Secrets made outside the manifests (sealed, external) are a common reason to turn this rule
    /// down.
    ///
    /// Fix: Add the Secret to the input, fix the name, or mark the reference `optional: true`.
    "reference/missing-secret", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "Secret", out);
}
