use crate::rules::{Finding, SetContext};

rule! {
    /// Reference to a ConfigMap the input does not define
    ///
    /// A pod that mounts or reads a missing ConfigMap (not marked optional) does not start: it stays in
    /// ContainerCreating or CreateContainerConfigError until the ConfigMap appears.
    ///
    /// Fix: Add the ConfigMap to the input, fix the name, or mark the reference `optional: true` if the pod can run
    /// without it.
    "reference/missing-configmap", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    super::check_missing(context, &RULE, "ConfigMap", out);
}
