//! A plan for people (text in the manner of `terraform plan`) and for programs (JSON and
//! YAML of one stable structure, `kind: Plan`, documented in docs/plan.md).

use super::merge::Op;
use super::{Action, Plan};
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
    let mut out = String::new();
    if !plan.has_changes() {
        out.push_str("No changes: the cluster matches the manifests.\n\n");
    } else {
        out.push_str("kubeyard will perform the following actions, in this order:\n\n");
    }
    for entry in &plan.objects {
        let (sign, color, verb) = match entry.action {
            Action::Create => ("+", GREEN, "created"),
            Action::Update => ("~", YELLOW, "updated in place"),
            Action::Delete => ("-", RED, "deleted"),
            Action::Unchanged => continue,
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
    }
    let s = &plan.summary;
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
    out.push_str(&style.paint(BOLD, &line));
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
    let mut text = serde_json::to_string_pretty(plan).expect("a plan serializes");
    text.push('\n');
    text
}

pub fn yaml(plan: &Plan) -> String {
    print::to_yaml(&serde_json::to_value(plan).expect("a plan serializes"))
}
