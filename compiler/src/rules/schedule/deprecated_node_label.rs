use crate::rules::{Finding, ObjectContext};
use crate::yaml::Node;

rule! {
    /// Pod selects nodes by a deprecated beta label
    ///
    /// `beta.kubernetes.io/os`, `beta.kubernetes.io/arch`, `beta.kubernetes.io/instance-type` and the
    /// `failure-domain.beta.kubernetes.io/*` labels were replaced by their GA forms in Kubernetes 1.14 to 1.17. Kubelets
    /// still set the `beta.` os and arch labels, but cloud providers and newer node images are dropping the others, and
    /// a pod that selects by a label no node has is never scheduled.
    ///
    /// Fix: Select by the GA label (kubernetes.io/os, kubernetes.io/arch, node.kubernetes.io/instance-type, topology.kubernetes.io/zone, topology.kubernetes.io/region).
    "schedule/deprecated-node-label", Warning, Object(check)
}

/// Each deprecated node label and its replacement.
pub(crate) const DEPRECATED: [(&str, &str); 5] = [
    ("beta.kubernetes.io/os", "kubernetes.io/os"),
    ("beta.kubernetes.io/arch", "kubernetes.io/arch"),
    ("beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type"),
    ("failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone"),
    ("failure-domain.beta.kubernetes.io/region", "topology.kubernetes.io/region"),
];

fn report(out: &mut Vec<Finding>, key: &str, span: crate::source::Span, path: String) {
    let Some((_, replacement)) = DEPRECATED.iter().find(|(old, _)| *old == key) else { return };
    out.push(
        Finding::new(&RULE, span, format!("{key} is a deprecated node label, replaced by {replacement}"))
            .label("deprecated node label")
            .help(format!("select by {replacement}"))
            .path(path),
    );
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let Some(template) = &context.template else { return };
    let spec = template.spec;
    let base = template.spec_path;
    for entry in spec.get("nodeSelector").and_then(Node::as_map).unwrap_or_default() {
        report(out, &entry.key.name, entry.key.span, format!("{base}.nodeSelector.{}", entry.key.name));
    }
    let affinity = spec.get("affinity").and_then(|a| a.get("nodeAffinity"));
    let required = affinity
        .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let preferred = affinity
        .and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution"))
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let terms = required
        .iter()
        .enumerate()
        .map(|(i, term)| {
            (
                term,
                format!(
                    "{base}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
                ),
            )
        })
        .chain(preferred.iter().enumerate().filter_map(|(i, p)| {
            Some((
                p.get("preference")?,
                format!("{base}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"),
            ))
        }));
    for (term, path) in terms {
        for (j, expression) in
            term.get("matchExpressions").and_then(Node::as_seq).unwrap_or_default().iter().enumerate()
        {
            let Some(key) = expression.entry("key") else { continue };
            let Some(name) = key.value.as_str() else { continue };
            report(out, name, key.value.span, format!("{path}.matchExpressions[{j}].key"));
        }
    }
}
