//! The lint driver: one source file in, a verdict and diagnostics per object out.
//!
//! Linting runs in two phases so that custom resources validate in the same run as the
//! CustomResourceDefinitions that describe them: `Linter::register_crds` over every
//! input first (cheap: only files that mention a CRD are parsed), then `Linter::lint`
//! over each file, in any order and on any thread.

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::object::{Classified, GroupVersionKind, NotAnObject, ObjectInfo, classify};
use crate::rules::{self, ActiveRules, ClusterShape, Member, ObjectContext, RuleSettings, SetContext};
use crate::schema::{Catalog, CatalogOptions, Lookup, SchemaError};
use crate::source::{SourceError, SourceFile, Span};
use crate::template::{self, Values};
use crate::validate::validate_object;
use crate::yaml::{Document, Documents, Node};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct LintOptions {
    pub catalog: CatalogOptions,
    /// Custom resources with no schema are skipped instead of reported.
    pub ignore_missing_schemas: bool,
    /// Which rules run, and how loudly.
    pub rules: RuleSettings,
    /// The cluster workloads must fit; a `kubeyard.dev/v1alpha1 Cluster` document in the
    /// input is used when this is not given.
    pub cluster: Option<ClusterShape>,
    /// Keep each schema-valid object's tree in its report, for the stages after linting
    /// (normalization, plans).
    pub keep_trees: bool,
    /// Values for `${ }` templates; `None` leaves `${` as plain text.
    pub values: Option<std::sync::Arc<crate::template::Values>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Skipped,
}

/// The verdict on one object: a document, or one item of a `kind: List` document.
#[derive(Clone, Debug)]
pub struct ObjectReport {
    /// The document's position in its file (0-based); `None` for a problem with the
    /// whole file (unreadable, not text).
    pub document: Option<usize>,
    /// The item's position in a `kind: List`.
    pub item: Option<usize>,
    pub span: Span,
    pub object: Option<ObjectInfo>,
    pub verdict: Verdict,
    /// Why a skipped object was skipped.
    pub reason: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// What the rules that look across objects need to know about this one.
    pub facts: Option<Arc<rules::facts::Facts>>,
    /// The object passed its schema, so rules may trust its fields.
    pub schema_valid: bool,
    /// The rules its `kubeyard.dev/ignore` annotation silences.
    pub ignored_rules: Vec<&'static str>,
    /// The object's tree, when `LintOptions::keep_trees` asked for it and it passed its schema.
    pub tree: Option<Arc<Node>>,
}

impl ObjectReport {
    fn new(document: Option<usize>, span: Span, diagnostics: Vec<Diagnostic>) -> ObjectReport {
        let mut report = ObjectReport {
            document,
            item: None,
            span,
            object: None,
            verdict: Verdict::Valid,
            reason: None,
            diagnostics,
            facts: None,
            schema_valid: false,
            ignored_rules: Vec::new(),
            tree: None,
        };
        report.settle();
        report
    }

    /// A report about a whole file rather than one of its objects (unreadable, not text).
    pub fn whole_file(diagnostics: Vec<Diagnostic>) -> ObjectReport {
        ObjectReport::new(None, Span::default(), diagnostics)
    }

    fn skipped(document: usize, span: Span, reason: impl Into<String>) -> ObjectReport {
        ObjectReport {
            verdict: Verdict::Skipped,
            reason: Some(reason.into()),
            ..ObjectReport::new(Some(document), span, Vec::new())
        }
    }

    /// Adds a finding of a later stage (the graph, the plan) and updates the verdict.
    pub fn add(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
        self.settle();
    }

    fn settle(&mut self) {
        // A template placeholder is reported once; the schema's complaint about the same
        // characters (a string where a number belongs) adds nothing.
        let placeholders: Vec<Span> =
            self.diagnostics.iter().filter(|d| d.code.is_template()).map(|d| d.span).collect();
        if !placeholders.is_empty() {
            self.diagnostics.retain(|d| {
                d.code.is_template()
                    || !placeholders
                        .iter()
                        .any(|p| d.span.start < p.end.max(p.start + 1) && p.start < d.span.end.max(d.span.start + 1))
            });
        }
        self.diagnostics.sort_by_key(|d| (d.span.start, d.code));
        // Errors win over a skip: a custom resource without a schema can still be broken YAML.
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            self.verdict = Verdict::Invalid;
        } else if self.verdict == Verdict::Invalid {
            self.verdict = Verdict::Valid;
        }
    }
}

/// A file and the verdicts on everything in it. `source` is `None` when the bytes
/// never became text; its single report then says why.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub name: String,
    pub source: Option<SourceFile>,
    pub objects: Vec<ObjectReport>,
}

pub struct Linter {
    catalog: Catalog,
    ignore_missing_schemas: bool,
    settings: RuleSettings,
    /// The rules the settings leave on: the only ones that run.
    active: ActiveRules,
    cluster: Option<ClusterShape>,
    keep_trees: bool,
    values: Option<Arc<Values>>,
}

impl Linter {
    pub fn new(options: LintOptions) -> Result<Linter, SchemaError> {
        Ok(Linter {
            catalog: Catalog::new(options.catalog)?,
            ignore_missing_schemas: options.ignore_missing_schemas,
            keep_trees: options.keep_trees,
            values: options.values,
            active: options.rules.active(),
            settings: options.rules,
            cluster: options.cluster,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Which rules run, and how loudly.
    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// The rules that run.
    pub fn active_rules(&self) -> &ActiveRules {
        &self.active
    }

    /// Whether a file can hold a CustomResourceDefinition at all (a cheap text search,
    /// so phase one parses only the files that matter).
    pub fn may_define_crds(source: &SourceFile) -> bool {
        source.may_define_crds()
    }

    /// Phase one: registers the schemas of the CustomResourceDefinitions in `source`.
    /// Problems with a CRD are reported when it is linted, not here.
    pub fn register_crds(&mut self, source: &SourceFile) -> Vec<GroupVersionKind> {
        let mut registered = Vec::new();
        if !Linter::may_define_crds(source) {
            return registered;
        }
        for document in Documents::new(source).flatten() {
            let mut root = document.root;
            if let (Some(root), Some(values)) = (&mut root, &self.values) {
                template::render(root, source, values, &mut Vec::new());
            }
            let Some(root) = &root else { continue };
            let objects: Vec<&Node> = match classify(root) {
                Classified::Object(_) => vec![root],
                Classified::List { items, .. } => items.iter().collect(),
                Classified::Invalid(_) => Vec::new(),
            };
            for object in objects {
                if let Classified::Object(info) = classify(object)
                    && info.gvk.group == "apiextensions.k8s.io"
                    && info.gvk.kind == "CustomResourceDefinition"
                    && let Ok(kinds) = self.catalog.register_crd(&object.to_json())
                {
                    registered.extend(kinds);
                }
            }
        }
        registered
    }

    /// Phase two for bytes read from disk or stdin.
    pub fn lint_bytes(&self, name: &str, bytes: Vec<u8>) -> FileReport {
        match SourceFile::from_bytes(name, bytes) {
            Ok(source) => self.lint_source(source),
            Err(error) => FileReport {
                name: name.to_string(),
                source: None,
                objects: vec![ObjectReport::new(None, Span::default(), vec![source_diagnostic(&error)])],
            },
        }
    }

    pub fn lint_source(&self, source: SourceFile) -> FileReport {
        self.lint_source_each(source, &mut |_| {})
    }

    /// `lint_source`, with `each` called on every object's report as soon as it is
    /// complete (see [`Linter::lint_each`]).
    pub fn lint_source_each(&self, source: SourceFile, each: &mut dyn FnMut(&mut ObjectReport)) -> FileReport {
        let objects = self.lint_each(&source, each);
        FileReport { name: source.name().to_string(), source: Some(source), objects }
    }

    /// Phase two: every object in one file.
    pub fn lint(&self, source: &SourceFile) -> Vec<ObjectReport> {
        self.lint_each(source, &mut |_| {})
    }

    /// Phase two, with `each` called on every object's report, in order, as soon as its
    /// document is linted: with `keep_trees` its tree is still in it, so a caller that
    /// takes the tree there (normalization) holds one document's tree at a time instead
    /// of a whole file's. The set rules have not run yet.
    pub fn lint_each(&self, source: &SourceFile, each: &mut dyn FnMut(&mut ObjectReport)) -> Vec<ObjectReport> {
        let mut reports = Vec::new();
        let mut documents = 0;
        for document in Documents::new(source) {
            let before = reports.len();
            match document {
                Ok(document) => {
                    documents += 1;
                    self.lint_document(source, document, &mut reports);
                }
                Err(diagnostic) => {
                    reports.push(ObjectReport::new(Some(documents), diagnostic.span, vec![*diagnostic]));
                    each(&mut reports[before]);
                    break;
                }
            }
            for report in &mut reports[before..] {
                each(report);
            }
        }
        if reports.is_empty() {
            reports.push(ObjectReport::skipped(0, Span::default(), "the file holds no YAML documents"));
            each(&mut reports[0]);
        }
        reports
    }

    fn lint_document(&self, source: &SourceFile, document: Document, reports: &mut Vec<ObjectReport>) {
        let index = document.index;
        let mut own = document.diagnostics;
        let mut document_root = document.root;
        if let (Some(root), Some(values)) = (&mut document_root, &self.values)
            && template::may_hold_templates(source.slice(root.span))
        {
            template::render(root, source, values, &mut own);
        }
        if !self.catalog.strict() {
            for diagnostic in &mut own {
                if diagnostic.code == Code::DuplicateKey {
                    diagnostic.severity = Severity::Warning;
                }
            }
        }
        let root = match document_root {
            Some(root) if !(own.is_empty() && root.is_null()) => Arc::new(root),
            _ => {
                if own.is_empty() {
                    reports.push(ObjectReport::skipped(index, document.span, "empty document"));
                } else {
                    reports.push(ObjectReport::new(Some(index), document.span, own));
                }
                return;
            }
        };
        match classify(&root) {
            Classified::Object(info) => {
                let mut report = self.lint_object(source, info, Arc::clone(&root), index);
                own.append(&mut report.diagnostics);
                report.diagnostics = own;
                report.settle();
                reports.push(report);
            }
            Classified::List { items, .. } => {
                if items.is_empty() {
                    let mut report = ObjectReport::skipped(index, root.span, "empty List");
                    report.diagnostics = own;
                    report.settle();
                    reports.push(report);
                    return;
                }
                // Problems found while reading the document go to the item they are in.
                let mut by_item: Vec<Vec<Diagnostic>> = vec![Vec::new(); items.len()];
                for diagnostic in std::mem::take(&mut own) {
                    let at = items
                        .iter()
                        .position(|item| {
                            item.span.start <= diagnostic.span.start && diagnostic.span.start < item.span.end
                        })
                        .unwrap_or(0);
                    by_item[at].push(diagnostic);
                }
                for (i, item) in items.iter().enumerate() {
                    let mut report = match classify(item) {
                        Classified::Object(info) | Classified::List { info, .. } => {
                            self.lint_object(source, info, Arc::new(item.clone()), index)
                        }
                        Classified::Invalid(problem) => {
                            ObjectReport::new(Some(index), item.span, vec![self.not_an_object(source, problem)])
                        }
                    };
                    report.item = Some(i);
                    report.diagnostics.append(&mut by_item[i]);
                    report.settle();
                    reports.push(report);
                }
            }
            Classified::Invalid(problem) => {
                own.push(self.not_an_object(source, problem));
                reports.push(ObjectReport::new(Some(index), document.span, own));
            }
        }
    }

    fn lint_object(&self, source: &SourceFile, info: ObjectInfo, node: Arc<Node>, document: usize) -> ObjectReport {
        let mut schema_valid = false;
        let mut facts = None;
        let (ignored_rules, ignore_problems) = rules::ignored_rules(&node);
        let (diagnostics, skipped) = match self.catalog.lookup(&info.gvk) {
            Lookup::Found(schema) => {
                let mut diagnostics = validate_object(&self.catalog, &schema, &node, source);
                schema_valid = !diagnostics.iter().any(Diagnostic::is_error);
                // A custom kind's CEL rules, as the API server checks them: same verdict,
                // same message.
                if schema_valid && matches!(schema.origin, crate::schema::Origin::CustomResourceDefinition { .. }) {
                    for cause in self.catalog.check_custom_rules(&info.gvk, || node.to_json()) {
                        diagnostics.push(crate::validate::rule_diagnostic(&node, &cause));
                    }
                    schema_valid = !diagnostics.iter().any(Diagnostic::is_error);
                }
                let object_rules = self.active.any_object_rule();
                let set_rules = self.active.any_set_rule();
                if schema_valid && (object_rules || set_rules) {
                    let context = ObjectContext::new(&info, &node, source, &self.catalog);
                    if object_rules {
                        let findings = rules::check_object(&context, &self.active);
                        diagnostics.extend(rules::to_diagnostics(findings, &self.settings, &ignored_rules));
                        diagnostics.extend(ignore_problems);
                    }
                    // The set rules get what they need now, while the tree is at hand and
                    // this file has a thread of its own; the tree goes with the document.
                    if set_rules {
                        facts = Some(Arc::new(rules::facts::extract(&context)));
                    }
                }
                (diagnostics, None)
            }
            Lookup::Missing => {
                let missing = self.catalog.explain_missing(&info.gvk);
                if missing.custom && self.ignore_missing_schemas {
                    (Vec::new(), Some(missing.message))
                } else {
                    let span = if missing.blames_kind { info.kind_span } else { info.api_version_span };
                    let label = match (missing.code, missing.blames_kind) {
                        (_, true) => "unknown kind",
                        (Code::RemovedApi, _) => "removed API version",
                        _ if missing.custom => "no schema for this custom resource",
                        _ => "not served by this Kubernetes version",
                    };
                    let diagnostic = Diagnostic::error(missing.code, span, missing.message)
                        .with_label(label)
                        .with_help(missing.help);
                    (vec![diagnostic], None)
                }
            }
            Lookup::Broken { origin, message } => {
                let diagnostic = Diagnostic::error(
                    Code::BadSchema,
                    info.kind_span,
                    format!("the schema for {} cannot be used", info.gvk),
                )
                .with_label("no usable schema")
                .with_help(format!("{origin:?}: {message}"));
                (vec![diagnostic], None)
            }
        };
        let mut report = ObjectReport::new(Some(document), node.span, diagnostics);
        if let Some(reason) = skipped {
            report.verdict = Verdict::Skipped;
            report.reason = Some(reason);
        }
        report.facts = facts;
        if self.keep_trees && schema_valid {
            report.tree = Some(node);
        }
        report.object = Some(info);
        report.schema_valid = schema_valid;
        report.ignored_rules = ignored_rules;
        report
    }

    /// Phase three: the rules that need every object of the run at once (selectors,
    /// references, namespaces, duplicates, capacity). Their findings join the reports of
    /// the objects they are about.
    pub fn check_set(&self, reports: &mut [FileReport]) {
        if !self.active.any_set_rule() {
            return;
        }
        let mut places = Vec::new();
        let mut members = Vec::new();
        for (f, report) in reports.iter().enumerate() {
            let Some(source) = &report.source else { continue };
            for (o, object) in report.objects.iter().enumerate() {
                if let Some(info) = &object.object {
                    places.push((f, o));
                    let namespace = self
                        .catalog
                        .is_namespaced(&info.gvk)
                        .then(|| info.namespace.clone().unwrap_or_else(|| "default".to_string()));
                    members.push(Member { info, namespace, facts: object.facts.as_deref(), span: object.span, source });
                }
            }
        }
        let found_cluster = members.iter().find_map(|m| m.facts?.cluster.as_ref());
        let cluster = self.cluster.as_ref().or(found_cluster);
        let findings = rules::check_set(&SetContext::new(&members, &self.catalog, cluster), &self.active);
        let mut diagnostics: Vec<(usize, Diagnostic)> = Vec::new();
        for (member, finding) in findings {
            let (f, o) = places[member];
            let ignored = &reports[f].objects[o].ignored_rules;
            diagnostics
                .extend(rules::to_diagnostics(vec![finding], &self.settings, ignored).into_iter().map(|d| (member, d)));
        }
        drop(members);
        let mut touched = Vec::new();
        for (member, diagnostic) in diagnostics {
            let (f, o) = places[member];
            reports[f].objects[o].diagnostics.push(diagnostic);
            touched.push((f, o));
        }
        touched.dedup();
        for (f, o) in touched {
            reports[f].objects[o].settle();
        }
    }

    fn not_an_object(&self, source: &SourceFile, problem: NotAnObject) -> Diagnostic {
        match problem {
            NotAnObject::NotAMapping { found, span } => Diagnostic::error(
                Code::NotAnObject,
                source.first_char(span),
                format!("document is {} {found}, not a Kubernetes object", if found == "array" || found == "object" { "an" } else { "a" }),
            )
            .with_label(format!("this document is {} {found}", if found == "array" || found == "object" { "an" } else { "a" }))
            .with_help("a manifest document is a mapping with apiVersion, kind and metadata; to lint several objects in one document use `kind: List` with `items:`"),
            NotAnObject::NoTypeMeta { span } => Diagnostic::error(
                Code::NotAnObject,
                span,
                "document is not a Kubernetes object: it has no apiVersion and no kind",
            )
            .with_label("no apiVersion or kind in this document")
            .with_help("if this file is not a manifest (an application config, a values file), leave it out of the paths you lint"),
            NotAnObject::MissingApiVersion { kind, span } => {
                let kind = kind.unwrap_or_default();
                let served = self.catalog.api_versions_for(&kind);
                let help = match served.first() {
                    Some(api_version) => format!("add `apiVersion: {api_version}`"),
                    None => "add the apiVersion of this kind, like `apiVersion: apps/v1`".into(),
                };
                Diagnostic::error(Code::MissingApiVersion, span, format!("{kind} has no apiVersion"))
                    .with_label("kind without an apiVersion")
                    .with_help(help)
            }
            NotAnObject::MissingKind { api_version, span } => Diagnostic::error(
                Code::MissingKind,
                span,
                format!("{} object has no kind", api_version.unwrap_or_default()),
            )
            .with_label("apiVersion without a kind")
            .with_help("add `kind:`, for example `kind: Deployment`"),
            NotAnObject::Malformed { field, problem, span } => {
                Diagnostic::error(Code::InvalidTypeMeta, span, format!("{field} {problem}"))
                    .with_label(format!("invalid {field}"))
                    .with_help(if field == "apiVersion" {
                        "write apiVersion as `group/version` (apps/v1) or, for the core group, `version` (v1)"
                    } else {
                        "write kind as a name in CamelCase, like Deployment"
                    })
            }
        }
    }
}

/// A diagnostic for bytes that are not text.
pub fn source_diagnostic(error: &SourceError) -> Diagnostic {
    let code = match error {
        SourceError::NotUtf8 { .. } | SourceError::Utf16 => Code::NotUtf8,
        SourceError::Binary { .. } => Code::Binary,
        SourceError::TooLarge { .. } | SourceError::OverLimit { .. } => Code::TooLarge,
    };
    let help = match error {
        SourceError::Binary { .. } => "leave binary files out of the paths you lint",
        SourceError::NotUtf8 { .. } => "save the file as UTF-8",
        SourceError::Utf16 => "re-encode the file as UTF-8",
        SourceError::TooLarge { .. } | SourceError::OverLimit { .. } => "split the input into smaller files",
    };
    Diagnostic::error(code, Span::default(), error.to_string()).with_help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(text: &str) -> Vec<ObjectReport> {
        let linter = Linter::new(LintOptions::default()).unwrap();
        linter.lint(&SourceFile::new("t.yaml", text).unwrap())
    }

    fn codes(report: &ObjectReport) -> Vec<&'static str> {
        report.diagnostics.iter().map(|d| d.code.as_str()).collect()
    }

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";

    /// Found by fuzzing: a document that is a string starting with a multi-byte character
    /// was anchored on half of it.
    #[test]
    fn spans_never_split_a_character() {
        for text in ["\u{342}}\n", "é: [\n", "- ü\n", "€"] {
            for report in lint(text) {
                for d in &report.diagnostics {
                    assert!(
                        text.is_char_boundary(d.span.start as usize) && text.is_char_boundary(d.span.end as usize),
                        "{d:?} in {text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_valid_deployment_is_valid() {
        let reports = lint(DEPLOYMENT);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].verdict, Verdict::Valid, "{:?}", reports[0].diagnostics);
        assert_eq!(reports[0].object.as_ref().unwrap().display_name(), "Deployment/web");
    }

    #[test]
    fn finds_typos_with_suggestions() {
        let text = DEPLOYMENT.replace("containers:", "contianers:").replace("matchLabels", "matchLabel");
        let reports = lint(&text);
        let report = &reports[0];
        assert_eq!(report.verdict, Verdict::Invalid);
        let helps: Vec<_> = report.diagnostics.iter().filter_map(|d| d.help.as_deref()).collect();
        assert!(helps.contains(&"did you mean \"containers\"?"), "{helps:?}");
        assert!(helps.contains(&"did you mean \"matchLabels\"?"), "{helps:?}");
        assert!(codes(report).contains(&"schema/required"));
    }

    #[test]
    fn classifies_every_document() {
        let text = format!(
            "{DEPLOYMENT}---\n---\n# comment only\n---\nfoo: bar\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: a}}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: b}}\n  dat: {{}}\n"
        );
        let reports = lint(&text);
        let verdicts: Vec<_> = reports.iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Valid,
                Verdict::Skipped,
                Verdict::Skipped,
                Verdict::Invalid,
                Verdict::Valid,
                Verdict::Invalid
            ]
        );
        assert_eq!(codes(&reports[3]), vec!["object/not-kubernetes"]);
        assert_eq!(reports[5].item, Some(1));
    }

    #[test]
    fn names_removed_apis() {
        let reports = lint("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: x}\n");
        let d = &reports[0].diagnostics[0];
        assert_eq!(d.code, Code::RemovedApi);
        assert_eq!(d.help.as_deref(), Some("use apiVersion: apps/v1 (check the migration guide for field changes)"));
    }

    #[test]
    fn validates_custom_resources_against_crds_in_the_input() {
        let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              size: {type: integer}\n";
        let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: big}\n";
        let mut linter = Linter::new(LintOptions::default()).unwrap();
        let crd_source = SourceFile::new("crd.yaml", crd).unwrap();
        assert_eq!(linter.register_crds(&crd_source).len(), 1);
        assert_eq!(
            linter.lint(&crd_source)[0].verdict,
            Verdict::Valid,
            "{:?}",
            linter.lint(&crd_source)[0].diagnostics
        );
        let reports = linter.lint(&SourceFile::new("w.yaml", widget).unwrap());
        assert_eq!(codes(&reports[0]), vec!["schema/type"]);
    }

    #[test]
    fn yaml_one_one_booleans_get_a_hint() {
        let reports = lint("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  enabled: yes\n");
        let d = &reports[0].diagnostics[0];
        assert_eq!(d.code, Code::WrongType);
        assert_eq!(d.path.as_deref(), Some("data.enabled"));
        assert!(d.help.as_deref().unwrap().contains("quote it"), "{d:?}");
    }
}
