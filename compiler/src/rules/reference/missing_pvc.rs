use crate::rules::{Finding, SetContext};

rule! {
    /// Pod mounts a PersistentVolumeClaim the input does not define
    ///
    /// A pod whose claim does not exist stays Pending: the scheduler will not place it.
    ///
    /// Fix: Add the PersistentVolumeClaim to the input, fix claimName, or use a StatefulSet volumeClaimTemplate.
    "reference/missing-pvc", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "PersistentVolumeClaim", out);
}
