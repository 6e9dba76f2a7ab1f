use crate::rules::{Finding, ObjectContext};
use crate::selector::Selector;
use crate::source::Span;
use crate::workloads::{self, SelectorForm};
use crate::yaml::Node;
use std::collections::BTreeMap;

rule! {
    /// Workload selector does not match its pod template's labels
    ///
    /// A Deployment, ReplicaSet, StatefulSet, DaemonSet or ReplicationController finds its pods by its selector. If
    /// the template's labels do not match it, the API server refuses the object; an empty selector is refused too. A
    /// selector that matches more than the template (too few keys) adopts other workloads' pods.
    ///
    /// Fix: Make spec.selector name labels that spec.template.metadata.labels has, with the same values.
    "workload/selector-mismatch", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let Some(template) = &context.template else { return };
    let Some((selector_node, form)) = template.selector else { return };
    if matches!(context.info.gvk.kind.as_str(), "Job" | "CronJob") {
        // Only a Job's selector written with manualSelector: true is the workload's own;
        // any other written by hand is `workload/job-selector`'s to report.
        if let Some((selector_node, true)) = super::written_job_selector(context)
            && context.info.gvk.kind == "Job"
        {
            let (selector_path, span) = super::selector_place(context);
            let labels = workloads::string_map(template.labels);
            let place = Place { span, selector_path, labels_path: template.labels_path };
            mismatch(selector_node, SelectorForm::LabelSelector, &labels, &place, out);
        }
        return;
    }
    // Without a selector (or with an empty one), a ReplicationController takes its
    // template's labels; the schema already requires one of the apps/v1 kinds.
    let unset = |n: &&Node| n.is_null() || (form == SelectorForm::Map && n.as_map().is_some_and(<[_]>::is_empty));
    if let Some(selector_node) = selector_node.filter(|n| !unset(n)) {
        let (selector_path, span) = super::selector_place(context);
        let labels = workloads::string_map(template.labels);
        let place = Place { span, selector_path, labels_path: template.labels_path };
        mismatch(selector_node, form, &labels, &place, out);
    }
}

/// Where a finding about the selector points, and the paths it names.
struct Place<'a> {
    span: Span,
    selector_path: &'a str,
    labels_path: &'a str,
}

fn mismatch(
    selector_node: &Node,
    form: SelectorForm,
    labels: &BTreeMap<String, String>,
    place: &Place<'_>,
    out: &mut Vec<Finding>,
) {
    let Place { span, selector_path, labels_path } = *place;
    let json = selector_node.to_json();
    let selector = match form {
        SelectorForm::Map => Selector::from_map(Some(&json)),
        SelectorForm::LabelSelector => Selector::from_label_selector(Some(&json)),
    };
    let Ok(selector) = selector else {
        // A malformed selector is the schema's or the selector syntax's to report.
        return;
    };
    let shown_labels = if labels.is_empty() {
        "none".to_string()
    } else {
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    };
    if selector.is_everything() {
        if form == SelectorForm::LabelSelector {
            out.push(
                Finding::new(&RULE, span, format!("{selector_path} is empty"))
                    .label("an empty selector is refused")
                    .help(format!("select the template's labels, e.g. matchLabels from {labels_path} ({shown_labels})"))
                    .path(selector_path),
            );
        }
        return;
    }
    if !selector.matches(labels) {
        out.push(
            Finding::new(
                &RULE,
                span,
                format!("{selector_path} ({selector}) does not match the pod template's labels ({shown_labels})"),
            )
            .label("selects no pod this workload makes")
            .help(format!("make the selector and {labels_path} agree"))
            .path(selector_path),
        );
    }
}
