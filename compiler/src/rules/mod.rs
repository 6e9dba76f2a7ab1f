//! Semantic rules: what the schemas cannot see. Each rule has a stable id (its
//! diagnostic code), a default severity, a rationale and a fix; `RULES` is the one list
//! that the engine, `kubeyard rules` and `docs/rules.md` read.
//!
//! Object rules look at one schema-valid object; set rules look at every object of a run
//! together (selectors, references, namespaces, capacity). Both produce `Finding`s, which
//! become diagnostics once the user's settings and `kubeyard.dev/ignore` annotations
//! have had their say.

mod api;
mod capacity;
pub mod facts;
mod inventory;
mod metadata;
mod pod;
mod references;
mod service;
mod workload;

pub use capacity::{ClusterShape, NodeShape};

use crate::diagnostic::{Code, Diagnostic, Severity, did_you_mean};
use crate::object::ObjectInfo;
use crate::schema::Catalog;
use crate::source::{SourceFile, Span};
use crate::yaml::Node;
use rayon::prelude::*;
use std::collections::HashMap;

/// A rule's identity and documentation.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, `area/what` (also the diagnostic code).
    pub id: &'static str,
    /// One line: what the rule finds.
    pub name: &'static str,
    pub severity: Severity,
    /// Why it matters, in a paragraph.
    pub rationale: &'static str,
    /// How to fix what it finds.
    pub fix: &'static str,
    /// Whether it needs the whole set of objects (and so the whole input) to decide.
    pub needs_set: bool,
}

/// Every rule, in documentation order.
pub static RULES: &[&Rule] = &[
    &metadata::INVALID_NAME,
    &metadata::INVALID_LABEL,
    &metadata::INVALID_ANNOTATION,
    &api::DEPRECATED,
    &workload::SELECTOR_MISMATCH,
    &workload::JOB_SELECTOR,
    &workload::NEGATIVE_REPLICAS,
    &pod::INVALID_CONTAINER_NAME,
    &pod::DUPLICATE_PORT_NAME,
    &pod::INVALID_PORT_NAME,
    &pod::HOST_PORT,
    &pod::PROBE_PORT,
    &pod::IMAGE_LATEST,
    &pod::IMAGE_INVALID,
    &pod::INVALID_QUANTITY,
    &pod::REQUESTS_ABOVE_LIMITS,
    &pod::MISSING_REQUESTS,
    &pod::MISSING_LIMITS,
    &service::NODE_PORT_RANGE,
    &service::NO_MATCHING_PODS,
    &service::TARGET_PORT,
    &references::MISSING_CONFIG_MAP,
    &references::MISSING_SECRET,
    &references::MISSING_SERVICE_ACCOUNT,
    &references::MISSING_PVC,
    &references::MISSING_SERVICE,
    &inventory::DUPLICATE,
    &inventory::UNDECLARED_NAMESPACE,
    &capacity::QUOTA_EXCEEDED,
    &capacity::UNSCHEDULABLE,
];

pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|rule| rule.id == id)
}

/// What a rule found, before settings decide whether and how loudly to say it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub rule: &'static Rule,
    /// Overrides the rule's default severity for this finding (settings still win).
    pub severity: Option<Severity>,
    pub span: Span,
    pub message: String,
    pub label: Option<String>,
    pub help: Option<String>,
    pub path: Option<String>,
}

impl Finding {
    pub fn new(rule: &'static Rule, span: Span, message: impl Into<String>) -> Finding {
        Finding { rule, severity: None, span, message: message.into(), label: None, help: None, path: None }
    }

    pub fn severity(mut self, severity: Severity) -> Finding {
        self.severity = Some(severity);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Finding {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Finding {
        self.help = Some(help.into());
        self
    }

    pub fn path(mut self, path: impl Into<String>) -> Finding {
        self.path = Some(path.into());
        self
    }
}

/// What an object rule is given.
pub struct ObjectContext<'a> {
    pub info: &'a ObjectInfo,
    pub node: &'a Node,
    pub source: &'a SourceFile,
    pub catalog: &'a Catalog,
    /// The object's pod template, if its kind makes pods (found once, read by many rules).
    pub template: Option<crate::workloads::PodTemplate<'a>>,
}

impl<'a> ObjectContext<'a> {
    pub fn new(
        info: &'a ObjectInfo,
        node: &'a Node,
        source: &'a SourceFile,
        catalog: &'a Catalog,
    ) -> ObjectContext<'a> {
        ObjectContext { info, node, source, catalog, template: crate::workloads::pod_template(&info.gvk, node) }
    }
}

/// Runs every object rule on one schema-valid object.
pub fn check_object(context: &ObjectContext<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    metadata::check(context, &mut findings);
    api::check(context, &mut findings);
    workload::check(context, &mut findings);
    pod::check(context, &mut findings);
    service::check(context, &mut findings);
    findings
}

/// One object of a run, as the set rules see it.
pub struct Member<'a> {
    pub info: &'a ObjectInfo,
    /// The namespace the object lands in (its own, or `default`); `None` when its kind is
    /// cluster-scoped.
    pub namespace: Option<String>,
    /// What the set rules need to know about the object; `None` when it did not pass its
    /// schema (its fields cannot be trusted).
    pub facts: Option<&'a facts::Facts>,
    /// Where the object is in its file.
    pub span: Span,
    pub source: &'a SourceFile,
}

/// What the set rules are given.
pub struct SetContext<'a> {
    pub members: &'a [Member<'a>],
    pub catalog: &'a Catalog,
    pub cluster: Option<&'a ClusterShape>,
}

/// A set rule module's entry point: findings with the index of the member they are about.
type SetCheck = fn(&SetContext<'_>, &mut Vec<(usize, Finding)>);

/// Runs every set rule; each finding comes with the index of the member it is about.
pub fn check_set(context: &SetContext<'_>) -> Vec<(usize, Finding)> {
    // The set rules are independent of each other: run them side by side.
    let checks: [SetCheck; 4] = [inventory::check, references::check, service::check_set, capacity::check];
    let mut findings: Vec<(usize, Finding)> = checks
        .into_par_iter()
        .map(|check| {
            let mut out = Vec::new();
            check(context, &mut out);
            out
        })
        .flatten()
        .collect();
    findings.sort_by_key(|(member, finding)| (*member, finding.span.start));
    findings
}

/// The user's choices: a severity per rule, or off.
#[derive(Clone, Debug, Default)]
pub struct RuleSettings {
    overrides: HashMap<&'static str, Option<Severity>>,
}

impl RuleSettings {
    /// Every rule off: schema validation only.
    pub fn all_off() -> RuleSettings {
        RuleSettings { overrides: RULES.iter().map(|r| (r.id, None)).collect() }
    }

    /// Whether any rule of the kind asked for (set rules or object rules) is on.
    pub fn any_on(&self, needs_set: bool) -> bool {
        RULES.iter().any(|r| r.needs_set == needs_set && !self.is_off(r))
    }

    /// `None` turns the rule off.
    pub fn set(&mut self, rule: &'static Rule, severity: Option<Severity>) {
        self.overrides.insert(rule.id, severity);
    }

    /// The severity to report a finding at, or `None` when its rule is off.
    pub fn severity(&self, finding: &Finding) -> Option<Severity> {
        self.overrides.get(finding.rule.id).copied().unwrap_or(Some(finding.severity.unwrap_or(finding.rule.severity)))
    }

    pub fn is_off(&self, rule: &Rule) -> bool {
        self.overrides.get(rule.id) == Some(&None)
    }
}

/// The annotation that silences rules on one object.
pub const IGNORE_ANNOTATION: &str = "kubeyard.dev/ignore";

/// The rules an object's `kubeyard.dev/ignore` annotation silences, and warnings for the
/// ids in it that name no rule.
pub fn ignored_rules(object: &Node) -> (Vec<&'static str>, Vec<Diagnostic>) {
    let Some(entry) =
        object.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.entry(IGNORE_ANNOTATION))
    else {
        return (Vec::new(), Vec::new());
    };
    let Some(text) = entry.value.as_str() else {
        return (Vec::new(), Vec::new());
    };
    let mut ignored = Vec::new();
    let mut problems = Vec::new();
    for id in text.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        if id == "*" {
            ignored.extend(RULES.iter().map(|r| r.id));
            continue;
        }
        match find(id) {
            Some(rule) => ignored.push(rule.id),
            None => {
                let mut d = Diagnostic::warning(
                    Code::BadConfig,
                    entry.value.span,
                    format!("{IGNORE_ANNOTATION} names \"{id}\", which is not a rule"),
                )
                .with_label("unknown rule id");
                d = match did_you_mean(id, RULES.iter().map(|r| r.id)) {
                    Some(suggestion) => d.with_help(format!("did you mean \"{suggestion}\"?")),
                    None => d.with_help("`kubeyard rules` lists the rule ids; `*` silences every rule"),
                };
                problems.push(d);
            }
        }
    }
    (ignored, problems)
}

/// Findings to diagnostics, after settings and the object's ignore list.
pub fn to_diagnostics(findings: Vec<Finding>, settings: &RuleSettings, ignored: &[&str]) -> Vec<Diagnostic> {
    findings
        .into_iter()
        .filter(|f| !ignored.contains(&f.rule.id))
        .filter_map(|f| {
            let severity = settings.severity(&f)?;
            Some(Diagnostic {
                code: Code::Rule(f.rule.id),
                severity,
                message: f.message,
                span: f.span,
                label: f.label,
                help: f.help.or_else(|| Some(f.rule.fix.to_string())),
                path: f.path,
                related: Vec::new(),
            })
        })
        .collect()
}

/// The rule reference, as `docs/rules.md` and `kubeyard rules --output markdown` print it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Rules\n\n<!-- Generated from `compiler/src/rules/` by `UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs`. -->\n\n\
         `kubeyard lint` runs these rules on every object that passes its schema. Each finding is a\n\
         diagnostic whose code is the rule id. Change a rule's severity or turn it off in\n\
         `.kubeyard.yaml` (`rules: {image/latest-tag: off}`) or with `--rule ID=SEVERITY`; silence\n\
         rules on one object with the annotation `kubeyard.dev/ignore: \"<rule-id>,...\"` (`*` for all).\n\n\
         | id | severity | finds |\n|---|---|---|\n",
    );
    for rule in RULES {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            rule.id,
            anchor(rule.id),
            rule.severity.as_str(),
            rule.name
        ));
    }
    for rule in RULES {
        out.push_str(&format!(
            "\n## `{}`\n\n{} (default severity: {}{}).\n\n{}\n\n**Fix:** {}\n",
            rule.id,
            rule.name,
            rule.severity.as_str(),
            if rule.needs_set { "; looks at all objects of a run together" } else { "" },
            rule.rationale,
            rule.fix
        ));
    }
    out
}

fn anchor(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

/// A field path joined kubectl style.
pub(crate) fn join(base: &str, field: &str) -> String {
    if base.is_empty() { field.to_string() } else { format!("{base}.{field}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_namespaced_and_documented() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        let count = ids.len();
        ids.dedup();
        assert_eq!(count, ids.len(), "duplicate rule ids");
        for rule in RULES {
            assert!(rule.id.contains('/') && rule.id == rule.id.to_lowercase(), "{}", rule.id);
            assert!(!rule.rationale.is_empty() && !rule.fix.is_empty() && !rule.name.is_empty(), "{}", rule.id);
            assert!(Code::ALL.iter().all(|c| c.as_str() != rule.id), "{} collides with a diagnostic code", rule.id);
        }
    }
}
