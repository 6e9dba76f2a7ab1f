//! Semantic rules: what the schemas cannot see. A rule is one unit, declared in one file
//! `rules/<prefix>/<name>.rs` (`image/latest-tag` is `rules/image/latest_tag.rs`): its
//! stable id (its diagnostic code), a default severity, a rationale, a fix and the
//! function that checks it. Each prefix's `mod.rs` holds what its rules share and lists
//! them; `RULES`, the prefixes' lists one after the other, is the one list that the
//! engine, `kubeyard rules` and `docs/rules.md` read. The folders mirror
//! `fixtures/rules/<prefix>/<name>/`.
//!
//! Object rules look at one schema-valid object; set rules look at every object of a run
//! together (selectors, references, namespaces, capacity). Only the rules the settings
//! leave on run (`ActiveRules`). Both kinds produce `Finding`s, which become diagnostics
//! once the user's severities and `kubeyard.dev/ignore` annotations have had their say.

/// Declares a rule file's `RULE`: its docs as doc comments (name; rationale; `Fix: ...`,
/// paragraphs apart), then its id, default severity and check, so that a rule is read
/// top to bottom as its documentation page.
/// A rule that ends in `, off` is off unless the settings turn it on (an opinion many
/// teams do not share, as kube-linter leaves such checks off by default).
macro_rules! rule {
    ($(#[doc = $doc:literal])+ $id:literal, $severity:ident, $kind:ident($check:path) $(,)?) => {
        rule!(@ [$($doc)+] $id, $severity, $kind($check), true);
    };
    ($(#[doc = $doc:literal])+ $id:literal, $severity:ident, $kind:ident($check:path), off $(,)?) => {
        rule!(@ [$($doc)+] $id, $severity, $kind($check), false);
    };
    (@ [$($doc:literal)+] $id:literal, $severity:ident, $kind:ident($check:path), $on:literal) => {
        $(#[doc = $doc])+
        pub static RULE: $crate::rules::Rule = $crate::rules::Rule {
            id: $id,
            docs: concat!($($doc, "\n"),+),
            severity: $crate::diagnostic::Severity::$severity,
            on_by_default: $on,
            check: $crate::rules::Check::$kind($check),
            sections: std::sync::OnceLock::new(),
        };
    };
}

mod admission;
mod api;
mod context;
pub mod facts;
mod image;
mod metadata;
mod namespace;
mod object;
mod pod;
mod quota;
mod reference;
mod resources;
mod schedule;
mod service;
mod workload;

pub use context::{Container, Member, ObjectContext, SetContext};
pub use schedule::{ClusterShape, NodeShape};

use crate::diagnostic::{Code, Diagnostic, Severity, did_you_mean};
use crate::source::Span;
use crate::yaml::Node;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A rule: its identity, its documentation and its check, declared together (with
/// [`rule!`]).
#[derive(Debug)]
pub struct Rule {
    /// Stable id, `prefix/what` (also the diagnostic code); the prefix is the rule's folder.
    pub id: &'static str,
    /// The rule's doc comment, one line a line: its name (one line: what the rule finds),
    /// then after a blank line why it matters, then a last paragraph `Fix: ...`.
    pub docs: &'static str,
    pub severity: Severity,
    /// Off unless the settings turn it on (at `severity`, or the one they give).
    pub on_by_default: bool,
    /// What the rule looks at, and the function that looks.
    pub check: Check,
    /// The rationale and the fix, read from `docs` once (a fix is every finding's help).
    sections: OnceLock<(String, String)>,
}

/// An object rule's check: findings about the object in `ObjectContext`.
pub type ObjectCheck = fn(&ObjectContext<'_>, &mut Vec<Finding>);

/// A set rule's check: findings with the index (in `SetContext::members`) of the member
/// they are about.
pub type SetCheck = fn(&SetContext<'_>, &mut Vec<(usize, Finding)>);

/// How a rule looks: at one object, or at all objects of a run.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// One schema-valid object at a time.
    Object(ObjectCheck),
    /// Every object of a run together (and so the whole input).
    Set(SetCheck),
}

impl Rule {
    /// Whether the rule needs the whole set of objects (and so the whole input) to decide.
    pub fn needs_set(&self) -> bool {
        matches!(self.check, Check::Set(_))
    }

    /// The severity it reports at unless the settings say otherwise, `off` for a rule off
    /// by default.
    pub fn default_severity(&self) -> &'static str {
        if self.on_by_default { self.severity.as_str() } else { "off" }
    }

    /// One line: what the rule finds.
    pub fn name(&self) -> &'static str {
        self.docs.lines().next().unwrap_or_default().trim()
    }

    /// Why it matters: the paragraphs between the name and the fix.
    pub fn rationale(&self) -> &str {
        &self.sections().0
    }

    /// How to fix what it finds: the last paragraph, less its `Fix:`.
    pub fn fix(&self) -> &str {
        &self.sections().1
    }

    fn sections(&self) -> &(String, String) {
        self.sections.get_or_init(|| {
            let mut paragraphs = self.paragraphs();
            let last = paragraphs.pop().unwrap_or_default();
            let fix = last.strip_prefix("Fix:").map(str::trim_start).unwrap_or_default().to_string();
            (paragraphs.get(1..).unwrap_or_default().join("\n\n"), fix)
        })
    }

    /// The docs' paragraphs, each one line.
    fn paragraphs(&self) -> Vec<String> {
        let mut paragraphs: Vec<String> = vec![String::new()];
        for line in self.docs.lines().map(str::trim) {
            let current = paragraphs.last_mut().expect("never empty");
            match (line.is_empty(), current.is_empty()) {
                (true, true) => {}
                (true, false) => paragraphs.push(String::new()),
                (false, true) => current.push_str(line),
                (false, false) => {
                    current.push(' ');
                    current.push_str(line);
                }
            }
        }
        paragraphs.retain(|p| !p.is_empty());
        paragraphs
    }
}

/// Each prefix (a folder of `rules/`, and of `fixtures/rules/`) with its rules, in
/// documentation order. A new prefix is a module listed here.
const PREFIXES: &[(&str, &[&Rule])] = &[
    ("metadata", metadata::RULES),
    ("api", api::RULES),
    ("workload", workload::RULES),
    ("pod", pod::RULES),
    ("image", image::RULES),
    ("resources", resources::RULES),
    ("service", service::RULES),
    ("reference", reference::RULES),
    ("object", object::RULES),
    ("admission", admission::RULES),
    ("namespace", namespace::RULES),
    ("quota", quota::RULES),
    ("schedule", schedule::RULES),
];

const COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < PREFIXES.len() {
        count += PREFIXES[i].1.len();
        i += 1;
    }
    count
};

// The prefixes' lists joined at compile time, so that `RULES` stays a plain slice and a
// new rule is listed in one place only (its prefix's list).
static ALL: [&Rule; COUNT] = {
    let mut all = [PREFIXES[0].1[0]; COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < PREFIXES.len() {
        let mut j = 0;
        while j < PREFIXES[i].1.len() {
            all[n] = PREFIXES[i].1[j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    all
};

/// Every rule, in documentation order.
pub static RULES: &[&Rule] = &ALL;

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
    /// Another rule whose finding on the same spot this one continues (see [`Finding::joins`]).
    pub joins: Option<Joins>,
}

/// How a finding folds into another rule's finding on the same spot.
#[derive(Clone, Debug)]
pub struct Joins {
    pub rule: &'static Rule,
    /// Continues the other finding's message after "and".
    pub clause: String,
}

impl Finding {
    pub fn new(rule: &'static Rule, span: Span, message: impl Into<String>) -> Finding {
        Finding {
            rule,
            severity: None,
            span,
            message: message.into(),
            label: None,
            help: None,
            path: None,
            joins: None,
        }
    }

    /// When `rule` reports on the same spot too (and is on there), the two are one
    /// finding under its id: its message goes on with "and `clause`". Two rules about one
    /// thing (a container's requests and its limits) then say it once, while each can
    /// still be turned off alone.
    pub fn joins(mut self, rule: &'static Rule, clause: impl Into<String>) -> Finding {
        self.joins = Some(Joins { rule, clause: clause.into() });
        self
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

/// The rules a run checks: those its settings leave on, split by what they look at, in
/// `RULES` order. Worked out once (`RuleSettings::active`, when a linter is built) so
/// that each object runs the checks that are on and nothing else.
#[derive(Clone, Debug)]
pub struct ActiveRules {
    object: Vec<(&'static Rule, ObjectCheck)>,
    set: Vec<(&'static Rule, SetCheck)>,
}

impl ActiveRules {
    pub fn any_object_rule(&self) -> bool {
        !self.object.is_empty()
    }

    pub fn any_set_rule(&self) -> bool {
        !self.set.is_empty()
    }

    /// The rules that run, object rules first.
    pub fn rules(&self) -> impl Iterator<Item = &'static Rule> + '_ {
        self.object.iter().map(|(rule, _)| *rule).chain(self.set.iter().map(|(rule, _)| *rule))
    }
}

/// Runs the active object rules on one schema-valid object.
pub fn check_object(context: &ObjectContext<'_>, active: &ActiveRules) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (_, check) in &active.object {
        check(context, &mut findings);
    }
    findings
}

/// Runs the active set rules; each finding comes with the index of the member it is about,
/// in member order and, for one member, in the order of the text.
pub fn check_set(context: &SetContext<'_>, active: &ActiveRules) -> Vec<(usize, Finding)> {
    // The set rules are independent of each other: run them side by side. What several
    // of them read is worked out once, by the first that asks (`SetContext`).
    let mut findings: Vec<(usize, Finding)> = active
        .set
        .par_iter()
        .map(|(_, check)| {
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

    /// `None` turns the rule off.
    pub fn set(&mut self, rule: &'static Rule, severity: Option<Severity>) {
        self.overrides.insert(rule.id, severity);
    }

    /// The severity to report a finding at, or `None` when its rule is off.
    pub fn severity(&self, finding: &Finding) -> Option<Severity> {
        let rule = finding.rule;
        self.overrides
            .get(rule.id)
            .copied()
            .unwrap_or_else(|| rule.on_by_default.then(|| finding.severity.unwrap_or(rule.severity)))
    }

    pub fn is_off(&self, rule: &Rule) -> bool {
        match self.overrides.get(rule.id) {
            Some(severity) => severity.is_none(),
            None => !rule.on_by_default,
        }
    }

    /// The rules that are on, in `RULES` order, each with its severity: the user's choice,
    /// or else the rule's default (which one finding may raise or lower).
    pub fn enabled(&self) -> impl Iterator<Item = (&'static Rule, Severity)> + '_ {
        RULES.iter().filter_map(|rule| match self.overrides.get(rule.id) {
            Some(None) => None,
            Some(Some(severity)) => Some((*rule, *severity)),
            None => rule.on_by_default.then_some((*rule, rule.severity)),
        })
    }

    /// The rules to run.
    pub fn active(&self) -> ActiveRules {
        let mut active = ActiveRules { object: Vec::new(), set: Vec::new() };
        for (rule, _) in self.enabled() {
            match rule.check {
                Check::Object(check) => active.object.push((rule, check)),
                Check::Set(check) => active.set.push((rule, check)),
            }
        }
        active
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

/// Findings to diagnostics, after the object's ignore list and the settings' severities.
/// Rules that are off never ran (`ActiveRules`); a finding of one is still dropped here,
/// so that a caller running more rules than its settings allow cannot leak them.
pub fn to_diagnostics(findings: Vec<Finding>, settings: &RuleSettings, ignored: &[&str]) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::with_capacity(findings.len());
    let mut joining = Vec::new();
    for finding in findings.into_iter().filter(|f| !ignored.contains(&f.rule.id)) {
        let Some(severity) = settings.severity(&finding) else { continue };
        let help = finding.help.unwrap_or_else(|| finding.rule.fix().to_string());
        let diagnostic = Diagnostic {
            code: Code::Rule(finding.rule.id),
            severity,
            message: finding.message,
            span: finding.span,
            label: finding.label,
            help: Some(help),
            path: finding.path,
            related: Vec::new(),
        };
        match finding.joins {
            Some(joins) => joining.push((joins, diagnostic)),
            None => diagnostics.push(diagnostic),
        }
    }
    for (joins, diagnostic) in joining {
        let host = diagnostics.iter_mut().find(|d| d.code == Code::Rule(joins.rule.id) && d.span == diagnostic.span);
        let Some(host) = host else {
            diagnostics.push(diagnostic);
            continue;
        };
        host.message = format!("{} and {}", host.message, joins.clause);
        host.severity = host.severity.min(diagnostic.severity);
        host.label = match (host.label.take(), diagnostic.label) {
            (Some(own), Some(joined)) => Some(format!("{own}, {joined}")),
            (own, joined) => own.or(joined),
        };
        host.help = match (host.help.take(), diagnostic.help) {
            (Some(own), Some(joined)) => Some(format!("{own} {joined}")),
            (own, joined) => own.or(joined),
        };
    }
    diagnostics
}

/// The rule reference, as `docs/rules.md` and `kubeyard rules --output markdown` print it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Rules\n\n<!-- Generated from `compiler/src/rules/` by `UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs`. -->\n\n\
         `kubeyard lint` runs these rules on every object that passes its schema. Each finding is a\n\
         diagnostic whose code is the rule id. Change a rule's severity or turn it off in\n\
         `.kubeyard.yaml` (`rules: {image/latest-tag: off}`) or with `--rule ID=SEVERITY`; a rule off\n\
         by default is turned on the same way (`rules: {pod/missing-probe: info}`); silence\n\
         rules on one object with the annotation `kubeyard.dev/ignore: \"<rule-id>,...\"` (`*` for all).\n\n\
         | id | severity | finds |\n|---|---|---|\n",
    );
    for rule in RULES {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            rule.id,
            anchor(rule.id),
            rule.default_severity(),
            rule.name()
        ));
    }
    for rule in RULES {
        out.push_str(&format!(
            "\n## `{}`\n\n{} (default severity: {}{}).\n\n{}\n\n**Fix:** {}\n",
            rule.id,
            rule.name(),
            if rule.on_by_default {
                rule.severity.as_str().to_string()
            } else {
                format!("off; {} when on", rule.severity.as_str())
            },
            if rule.needs_set() { "; looks at all objects of a run together" } else { "" },
            rule.rationale(),
            rule.fix()
        ));
    }
    out
}

/// The anchor of a rule's section in `docs/rules.md`, as GitHub makes it from the heading.
pub fn anchor(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

/// A field path joined kubectl style.
pub(crate) fn join(base: &str, field: &str) -> String {
    if base.is_empty() { field.to_string() } else { format!("{base}.{field}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rule_ids_are_unique_namespaced_and_documented() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        let count = ids.len();
        ids.dedup();
        assert_eq!(count, ids.len(), "duplicate rule ids");
        for rule in RULES {
            assert!(rule.id.contains('/') && rule.id == rule.id.to_lowercase(), "{}", rule.id);
            assert!(!rule.rationale().is_empty() && !rule.fix().is_empty() && !rule.name().is_empty(), "{}", rule.id);
            assert!(Code::ALL.iter().all(|c| c.as_str() != rule.id), "{} collides with a diagnostic code", rule.id);
        }
    }

    // This test reads the source and fixture folders: the no-I/O rule is for the library.
    #[allow(clippy::disallowed_methods)]
    fn names_in(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a readable directory entry").path())
            .filter(|path| keep(path))
            .filter_map(|path| path.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The layout that makes a rule one unit: `rules/<prefix>/<name>.rs` holds the rule
    /// `<prefix>/<name>` and nothing else does (beside each prefix's `mod.rs`), its
    /// prefix's list names it, and its fixtures are `fixtures/rules/<prefix>/<name>/`.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn each_rule_is_one_file_in_its_prefix_folder_and_has_fixtures() {
        let crate_root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let rules_dir = crate_root.join("src/rules");
        let fixtures_dir = crate_root.join("../fixtures/rules");
        let mut prefixes: Vec<String> = PREFIXES.iter().map(|(prefix, _)| prefix.to_string()).collect();
        prefixes.sort();
        assert_eq!(names_in(&rules_dir, |p| p.is_dir()), prefixes, "every folder of rules/ is a prefix in PREFIXES");
        assert_eq!(names_in(&fixtures_dir, |p| p.is_dir()), prefixes, "fixtures/rules/ has a folder per prefix");
        for (prefix, rules) in PREFIXES {
            let mut files = Vec::new();
            let mut fixtures = Vec::new();
            for rule in *rules {
                let Some((rule_prefix, name)) = rule.id.split_once('/') else { panic!("{}: no prefix", rule.id) };
                assert_eq!(rule_prefix, *prefix, "{} is listed under {prefix}", rule.id);
                files.push(format!("{}.rs", name.replace('-', "_")));
                fixtures.push(name.to_string());
                for fixture in ["bad.yaml", "good.yaml"] {
                    let path = fixtures_dir.join(rule.id).join(fixture);
                    assert!(path.is_file(), "{} is missing", path.display());
                }
            }
            files.sort();
            fixtures.sort();
            let folder = rules_dir.join(prefix);
            assert_eq!(names_in(&folder, |p| p.is_file() && !p.ends_with("mod.rs")), files, "rules/{prefix}/");
            assert_eq!(names_in(&fixtures_dir.join(prefix), |p| p.is_dir()), fixtures, "fixtures/rules/{prefix}/");
        }
    }

    #[test]
    fn rules_that_are_off_do_not_run() {
        let mut settings = RuleSettings::all_off();
        assert!(!settings.active().any_object_rule() && !settings.active().any_set_rule());
        let latest = find("image/latest-tag").expect("a rule");
        settings.set(latest, Some(Severity::Info));
        let active = settings.active();
        assert_eq!(active.rules().map(|r| r.id).collect::<Vec<_>>(), ["image/latest-tag"]);
        assert!(!active.any_set_rule());
        assert_eq!(settings.enabled().map(|(r, s)| (r.id, s)).collect::<Vec<_>>(), [(latest.id, Severity::Info)]);
        // By default every rule runs but those off by default, which settings turn on.
        let defaults = RuleSettings::default();
        assert_eq!(defaults.active().rules().count(), RULES.iter().filter(|r| r.on_by_default).count());
        let probes = find("pod/missing-probe").expect("a rule off by default");
        assert!(!probes.on_by_default && defaults.is_off(probes) && probes.default_severity() == "off");
        let mut on = RuleSettings::default();
        on.set(probes, Some(Severity::Info));
        assert!(!on.is_off(probes) && on.active().rules().any(|r| r.id == probes.id));
    }
}
