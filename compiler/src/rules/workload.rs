//! Workloads and the pods they make: selectors that do not select their own template.

use super::{Finding, ObjectContext, Rule};
use crate::diagnostic::Severity;
use crate::selector::Selector;
use crate::workloads::{self, SelectorForm};
use crate::yaml::{Node, Value};

pub static SELECTOR_MISMATCH: Rule = Rule {
    id: "workload/selector-mismatch",
    name: "Workload selector does not match its pod template's labels",
    severity: Severity::Error,
    rationale: "A Deployment, ReplicaSet, StatefulSet, DaemonSet or ReplicationController finds its pods by its selector. If the template's labels do not match it, the API server refuses the object; an empty selector is refused too. A selector that matches more than the template (too few keys) adopts other workloads' pods.",
    fix: "Make spec.selector name labels that spec.template.metadata.labels has, with the same values.",
    needs_set: false,
};

pub static JOB_SELECTOR: Rule = Rule {
    id: "workload/job-selector",
    name: "Job selector set without manualSelector",
    severity: Severity::Error,
    rationale: "The API server generates a Job's selector from a unique controller-uid label. A selector written by hand is refused unless spec.manualSelector is true, and then it risks selecting pods of other Jobs.",
    fix: "Remove spec.selector and let the API server generate it (or set spec.manualSelector: true if you really manage the labels).",
    needs_set: false,
};

pub static NEGATIVE_REPLICAS: Rule = Rule {
    id: "workload/negative-replicas",
    name: "Replica count below zero",
    severity: Severity::Error,
    rationale: "spec.replicas must be zero or more. The schemas only say it is an integer, so schema validators (kubeconform among them) pass -1, and the API server refuses it when the manifest is applied.",
    fix: "Set spec.replicas to 0 or more (0 scales the workload down without deleting it).",
    needs_set: false,
};

pub(super) fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    if let Some(entry) = context.node.get("spec").and_then(|s| s.entry("replicas"))
        && let Value::Int(replicas) = entry.value.value
        && replicas < 0
    {
        out.push(
            Finding::new(&NEGATIVE_REPLICAS, entry.value.span, format!("spec.replicas is {replicas}"))
                .label("must be 0 or more")
                .path("spec.replicas"),
        );
    }
    let Some(template) = &context.template else { return };
    let Some((selector_node, form)) = template.selector else { return };
    let labels = workloads::string_map(template.labels);
    let selector_path = if gvk.kind == "CronJob" { "spec.jobTemplate.spec.selector" } else { "spec.selector" };
    let selector_entry = if gvk.kind == "CronJob" {
        context
            .node
            .get("spec")
            .and_then(|s| s.get("jobTemplate"))
            .and_then(|j| j.get("spec"))
            .and_then(|s| s.entry("selector"))
    } else {
        context.node.get("spec").and_then(|s| s.entry("selector"))
    };
    let span = selector_entry.map_or(context.info.kind_span, |e| e.key.span);

    if matches!(gvk.kind.as_str(), "Job" | "CronJob") {
        let Some(selector_node) = selector_node.filter(|n| !n.is_null()) else { return };
        let job_spec = if gvk.kind == "CronJob" {
            context.node.get("spec").and_then(|s| s.get("jobTemplate")).and_then(|j| j.get("spec"))
        } else {
            context.node.get("spec")
        };
        let manual = job_spec.and_then(|s| s.get("manualSelector")).is_some_and(|m| m.value == Value::Bool(true));
        // A CronJob's jobs always get generated selectors: one written in its template is refused.
        if !manual || gvk.kind == "CronJob" {
            let message = if gvk.kind == "CronJob" {
                format!("CronJob sets {selector_path}, which the API server refuses")
            } else {
                format!("Job sets {selector_path} without manualSelector: true")
            };
            out.push(
                Finding::new(&JOB_SELECTOR, span, message)
                    .label("the API server generates this selector")
                    .path(selector_path),
            );
            return;
        }
        mismatch(selector_node, SelectorForm::LabelSelector, &labels, span, selector_path, template.labels_path, out);
        return;
    }
    // Without a selector (or with an empty one), a ReplicationController takes its
    // template's labels; the schema already requires one of the apps/v1 kinds.
    let unset = |n: &&Node| n.is_null() || (form == SelectorForm::Map && n.as_map().is_some_and(<[_]>::is_empty));
    if let Some(selector_node) = selector_node.filter(|n| !unset(n)) {
        mismatch(selector_node, form, &labels, span, selector_path, template.labels_path, out);
    }
}

fn mismatch(
    selector_node: &Node,
    form: SelectorForm,
    labels: &std::collections::BTreeMap<String, String>,
    span: crate::source::Span,
    selector_path: &str,
    labels_path: &str,
    out: &mut Vec<Finding>,
) {
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
                Finding::new(&SELECTOR_MISMATCH, span, format!("{selector_path} is empty"))
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
                &SELECTOR_MISMATCH,
                span,
                format!("{selector_path} ({selector}) does not match the pod template's labels ({shown_labels})"),
            )
            .label("selects no pod this workload makes")
            .help(format!("make the selector and {labels_path} agree"))
            .path(selector_path),
        );
    }
}
