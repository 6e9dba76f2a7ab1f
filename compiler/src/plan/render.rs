//! A plan for people (text in the manner of `terraform plan`) and for programs (JSON and
//! YAML of one stable structure, `kind: Plan`, documented in docs/plan.md).

use super::merge::Op;
use super::state::STATE_API_VERSION;
use super::{Action, Entry, Plan, Summary};
use crate::print;
use serde_json::Value;
use std::fmt::Write;

/// Text colours, when the output is a terminal and `NO_COLOR` is not set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
}

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const BOLD: &str = "1";

pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = text_head(&plan.summary).to_string();
    for entry in &plan.objects {
        out.push_str(&text_entry(entry, style));
    }
    out.push_str(&text_tail(&plan.summary, style));
    out
}

/// What the text starts with.
pub fn text_head(summary: &Summary) -> &'static str {
    if summary.conflict > 0 {
        "kubeyard cannot apply these manifests as they are: other field managers own fields they change.\n\n"
    } else if summary.has_changes() {
        "kubeyard will perform the following actions, in this order:\n\n"
    } else {
        "No changes: the cluster matches the manifests.\n\n"
    }
}

/// One entry's part of the text (nothing for an object left unchanged).
pub fn text_entry(entry: &Entry, style: Style) -> String {
    let mut out = String::new();
    let (sign, color, verb) = match entry.action {
        Action::Create => ("+", GREEN, "created"),
        Action::Update => ("~", YELLOW, "updated in place"),
        Action::Delete => ("-", RED, "deleted"),
        Action::Unchanged => return out,
        Action::Conflict => {
            let id = &entry.object.id;
            let _ = writeln!(out, "  # {id} cannot be applied: other field managers own fields it changes");
            let _ = writeln!(out, "  {} {}", style.paint(RED, "!"), style.paint(BOLD, &id.to_string()));
            for conflict in &entry.conflicts {
                let _ =
                    writeln!(out, "      {} {}: owned by {}", style.paint(RED, "!"), conflict.field, conflict.manager);
            }
            out.push('\n');
            return out;
        }
    };
    let _ = writeln!(out, "  # {} will be {verb}", entry.object.id);
    let _ = writeln!(out, "  {} {}", style.paint(color, sign), style.paint(BOLD, &entry.object.id.to_string()));
    for change in &entry.changes {
        let (sign, color) = match change.op {
            Op::Add => ("+", GREEN),
            Op::Remove => ("-", RED),
            Op::Change => ("~", YELLOW),
        };
        let value = match change.op {
            Op::Add => inline_or_block(change.after.as_ref(), 10),
            Op::Remove => inline_or_block(change.before.as_ref(), 10),
            Op::Change => format!(" {} → {}", one_line(change.before.as_ref()), one_line(change.after.as_ref())),
        };
        let _ = writeln!(out, "      {} {}:{value}", style.paint(color, sign), change.path);
    }
    out.push('\n');
    out
}

/// The summary line that ends the text.
pub fn text_tail(s: &Summary, style: Style) -> String {
    let mut line = format!(
        "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
        s.create, s.update, s.delete, s.unchanged
    );
    if s.not_managed > 0 {
        let _ = write!(
            line,
            " {} object{} in the state {} not in the manifests: left alone (--prune deletes those kubeyard or kubectl applied).",
            s.not_managed,
            if s.not_managed == 1 { "" } else { "s" },
            if s.not_managed == 1 { "is" } else { "are" },
        );
    }
    if s.conflict > 0 {
        let _ = write!(
            line,
            " {} object{} in conflict: leave the fields out, or take them with --force-conflicts.",
            s.conflict,
            if s.conflict == 1 { "" } else { "s" },
        );
    }
    let mut out = style.paint(BOLD, &line);
    out.push('\n');
    out
}

/// A scalar on the line (` 3`); a structure as indented YAML below it.
fn inline_or_block(value: Option<&Value>, indent: usize) -> String {
    match value {
        Some(v @ Value::Object(m)) if !m.is_empty() => block(v, indent),
        Some(v @ Value::Array(a)) if !a.is_empty() => block(v, indent),
        other => format!(" {}", one_line(other)),
    }
}

fn block(value: &Value, indent: usize) -> String {
    let yaml = print::to_yaml(value);
    let mut out = String::new();
    for line in yaml.lines() {
        out.push('\n');
        out.push_str(&" ".repeat(indent));
        out.push_str(line);
    }
    out
}

/// A value on one line, as YAML flow would write it (JSON is valid YAML flow).
fn one_line(value: Option<&Value>) -> String {
    match value {
        None => "(none)".into(),
        Some(Value::String(s)) if !s.contains('\n') && print::to_yaml(&Value::String(s.clone())).trim_end() == s => {
            s.clone()
        }
        Some(other) => other.to_string(),
    }
}

pub fn json(plan: &Plan) -> String {
    let entries: Vec<String> = plan.objects.iter().map(json_entry).collect();
    json_document(&plan.summary, &entries)
}

/// One entry as an item of the JSON document's `objects` (see `json_open`).
pub fn json_entry(entry: &Entry) -> String {
    // An item of a list in a member of the document: four spaces in.
    print::pretty_json_indented(entry, "    ")
}

/// The JSON document of a plan made a piece at a time, without holding the plan: this,
/// then each entry's `json_entry` (after `JSON_BETWEEN` from the second on), then
/// `json_close`. Together they are what `serde_json::to_string_pretty` makes of the
/// whole plan; `summary` says how many entries follow.
pub fn json_open(summary: &Summary) -> String {
    let empty = Plan { api_version: STATE_API_VERSION, kind: "Plan", summary: summary.clone(), objects: Vec::new() };
    let mut text = serde_json::to_string_pretty(&empty).expect("a plan serializes");
    // serde writes the members in order: the empty list of objects ends the document.
    if summary.entries() > 0
        && let Some(head) = text.strip_suffix("]\n}")
    {
        text = format!("{head}\n");
    } else {
        text.push('\n');
    }
    text
}

/// What comes between two entries of the JSON document.
pub const JSON_BETWEEN: &str = ",\n";

/// What ends the JSON document (see `json_open`).
pub fn json_close(summary: &Summary) -> &'static str {
    if summary.entries() > 0 { "\n  ]\n}\n" } else { "" }
}

/// The JSON document of a plan whose entries, rendered by `json_entry`, are `entries`.
pub fn json_document(summary: &Summary, entries: &[String]) -> String {
    let mut out = json_open(summary);
    out.push_str(&entries.join(JSON_BETWEEN));
    out.push_str(json_close(summary));
    out
}

pub fn yaml(plan: &Plan) -> String {
    let entries: Vec<String> = plan.objects.iter().map(yaml_entry).collect();
    yaml_document(&plan.summary, &entries)
}

/// One entry as an item of the YAML document's `objects` (see `yaml_open`).
pub fn yaml_entry(entry: &Entry) -> String {
    let value = serde_json::to_value(entry).expect("a plan entry serializes");
    print::to_yaml(&Value::Array(vec![value]))
}

/// The YAML document of a plan made a piece at a time: this, each entry's `yaml_entry`,
/// then `yaml_close`. Together they are what `print::to_yaml` makes of the whole plan
/// (its keys in order, the list's items at the key's indentation).
pub fn yaml_open(summary: &Summary) -> String {
    let mut out = print::to_yaml(&serde_json::json!({"apiVersion": STATE_API_VERSION, "kind": "Plan"}));
    out.push_str(if summary.entries() > 0 { "objects:\n" } else { "objects: []\n" });
    out
}

/// What ends the YAML document (see `yaml_open`).
pub fn yaml_close(summary: &Summary) -> String {
    print::to_yaml(&serde_json::json!({ "summary": summary }))
}

/// The YAML document of a plan whose entries, rendered by `yaml_entry`, are `entries`.
pub fn yaml_document(summary: &Summary, entries: &[String]) -> String {
    let mut out = yaml_open(summary);
    for entry in entries {
        out.push_str(entry);
    }
    out.push_str(&yaml_close(summary));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ObjectId;
    use crate::plan::merge::Change;
    use crate::plan::{Entry, Identity};
    use serde_json::json;

    fn entry(action: Action, name: &str, changes: Vec<Change>) -> Entry {
        let id = ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        };
        Entry {
            object: Identity {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("shop".into()),
                name: name.into(),
                id,
            },
            action,
            wave: (action != Action::Delete).then_some(1),
            changes,
            conflicts: Vec::new(),
            result: None,
        }
    }

    /// The documents made entry by entry are the whole plan serialized at once.
    #[test]
    fn documents_made_entry_by_entry_are_the_whole_plan_serialized() {
        let add = Change {
            path: "data".into(),
            op: Op::Add,
            before: None,
            after: Some(json!({"a": "x\ny", "b": [1, {"c": null}]})),
        };
        let change =
            Change { path: "data.a".into(), op: Op::Change, before: Some(json!("1")), after: Some(json!("2")) };
        let objects = vec![
            entry(Action::Create, "a", vec![add]),
            entry(Action::Update, "b", vec![change]),
            entry(Action::Unchanged, "c", Vec::new()),
            entry(Action::Delete, "d", Vec::new()),
        ];
        for objects in [objects, Vec::new()] {
            let summary = Summary::of(objects.iter().map(|e| e.action), 2);
            let plan = Plan { api_version: STATE_API_VERSION, kind: "Plan", summary, objects };
            let mut whole = serde_json::to_string_pretty(&plan).unwrap();
            whole.push('\n');
            assert_eq!(json(&plan), whole);
            assert_eq!(yaml(&plan), print::to_yaml(&serde_json::to_value(&plan).unwrap()));
        }
    }
}
