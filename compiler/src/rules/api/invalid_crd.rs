use crate::rules::{Finding, ObjectContext};

rule! {
    /// CustomResourceDefinition the API server refuses
    ///
    /// The API server checks a CustomResourceDefinition before it serves it: its name is
    /// `<plural>.<group>`, exactly one version is stored, every schema is structural, every
    /// CEL rule compiles, and no rule may cost more than Kubernetes' budget over the largest
    /// objects the schema allows (a rule that loops over a list without `maxItems`, or reads
    /// strings without `maxLength`, usually does). Refused, the CRD is not installed and no
    /// object of its kinds can be created.
    ///
    /// Fix: Correct the field the message names; for a rule over budget, bound the lists,
    /// maps and strings it reads with `maxItems`, `maxProperties` and `maxLength`.
    "api/invalid-crd", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    if gvk.group != "apiextensions.k8s.io" || gvk.kind != "CustomResourceDefinition" {
        return;
    }
    // Checked as the API server checks it: with Kubernetes' defaults filled first.
    let mut crd = context.node.to_json();
    crate::crd::set_defaults(&mut crd);
    for cause in crate::crd::validate(&crd, None) {
        let span = crate::validate::span_of_field(context.node, &cause.field);
        let message =
            if cause.field.is_empty() { cause.message } else { format!("{}: {}", cause.field, cause.message) };
        out.push(Finding::new(&RULE, span, message).path(cause.field));
    }
}
