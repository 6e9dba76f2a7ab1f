use super::{closest, label_hash};
use crate::rules::facts::PodFacts;
use crate::rules::{Finding, Member, SetContext};

rule! {
    /// Service selects no pod in the input
    ///
    /// A Service whose selector matches no pod template has no endpoints: connections to it are refused. The usual
    /// cause is a label typo on one side, which no schema can see.
    ///
    /// Fix: Make the Service's spec.selector match the labels of the pod template it should route to (the help names
    /// the closest one).
    "service/no-matching-pods", Warning, Set(check)
}

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let selections = context.selections();
    for selection in selections.services.iter().filter(|s| selections.matches[s.matched].is_empty()) {
        let selector = &selection.service.selector;
        let namespace = selection.member.namespace.as_deref();
        // Only templates sharing a label with the selector can be close to it.
        let mut sharing: Vec<usize> = selector
            .requirements()
            .iter()
            .flat_map(|r| {
                let value = r.values.first().map_or("", String::as_str);
                selections.index.by_label.get(&label_hash(namespace, &r.key, value)).map_or(&[][..], Vec::as_slice)
            })
            .copied()
            .collect();
        sharing.sort_unstable();
        sharing.dedup();
        let in_namespace: Vec<(&Member, &PodFacts)> =
            sharing.iter().map(|&i| (selections.sources[i].1, selections.sources[i].2)).collect();
        let help = closest(selector, &in_namespace).unwrap_or_else(|| {
            if selections.index.by_namespace.contains_key(&namespace) {
                format!("no pod template in namespace {} has any of these labels", namespace.unwrap_or("default"))
            } else {
                format!("the input has no pod templates in namespace {}", namespace.unwrap_or("default"))
            }
        });
        out.push((
            selection.index,
            Finding::new(
                &RULE,
                selection.service.selector_span,
                format!(
                    "Service \"{}\" selects no pod in the input ({selector})",
                    selection.member.info.name.as_deref().unwrap_or("?")
                ),
            )
            .label("matches no pod template")
            .help(help)
            .path("spec.selector"),
        ));
    }
}
