//! The compiler's front half for the commands that work on whole object sets (`graph`,
//! `plan`, `apply`, `up`, `test`): lint every file with the schemas and the rules the API
//! server enforces (`enforced_rule_settings`: a nameless object is refused here as `lint`
//! and the server refuse it), normalize the valid objects, and keep where each came from
//! so later stages can report on it.

use super::Exit;
use super::inputs::Inputs;
use super::lint::{lint_paths_then, usage_error};
use crate::report::{self, Summary};
use kubeyard_compiler::admission::enforced_rule_settings;
use kubeyard_compiler::diagnostic::{Code, Diagnostic};
use kubeyard_compiler::graph::{self, Graph, ObjectId};
use kubeyard_compiler::normalize::normalize;
use kubeyard_compiler::object::ObjectInfo;
use kubeyard_compiler::plan::state::State;
use kubeyard_compiler::plan::{self, Plan};
use kubeyard_compiler::{FileReport, LintOptions, Linter, Verdict};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

/// One valid object, normalized, as written, and where it was written.
pub struct Desired {
    pub value: Value,
    pub written: Value,
    pub info: ObjectInfo,
    pub file: usize,
    pub object: usize,
}

pub struct Compiled {
    /// The linter, for its catalog of schemas.
    pub linter: Linter,
    pub reports: Vec<FileReport>,
    pub objects: Vec<Desired>,
    pub started: Instant,
}

/// Lints and normalizes what `inputs` names. Bad flags and unreadable configuration end
/// the run here (exit 2); problems with manifests are in the reports.
pub fn compile(inputs: &Inputs) -> Result<Compiled, Exit> {
    let started = Instant::now();
    let paths = inputs.paths();
    let config = inputs.load_config(&paths)?;
    let catalog = inputs.catalog_options(&config).map_err(|message| usage_error(&message))?;
    let templating = inputs.templating(&paths)?;
    let options = LintOptions {
        catalog,
        ignore_missing_schemas: inputs.ignore_missing_schemas || config.ignore_missing_schemas.unwrap_or(false),
        rules: enforced_rule_settings(),
        cluster: None,
        keep_trees: true,
        values: templating.values,
    };
    let mut linter = Linter::new(options).map_err(|error| usage_error(&error.to_string()))?;
    // Each object is normalized as soon as it is linted and its tree dropped there.
    let results = lint_paths_then(&mut linter, &paths, templating.values_dir.as_deref(), |linter, object| {
        let tree = object.tree.take()?;
        let info = object.object.as_ref().filter(|_| object.verdict == Verdict::Valid)?;
        Some((normalize(info, &tree, linter.catalog()), tree.to_json(), info.clone()))
    });
    let mut reports = Vec::with_capacity(results.len());
    let mut objects = Vec::new();
    for (file, (report, values)) in results.into_iter().enumerate() {
        reports.push(report);
        objects.extend(values.into_iter().map(|(object, (value, written, info))| Desired {
            value,
            written,
            info,
            file,
            object,
        }));
    }
    Ok(Compiled { linter, reports, objects, started })
}

impl Compiled {
    /// The dependency graph of the valid objects. Two documents with one identity, and
    /// cycles, become diagnostics on the objects involved.
    pub fn graph(&mut self) -> Graph {
        let mut first: HashMap<ObjectId, usize> = HashMap::new();
        let mut duplicates = Vec::new();
        for (i, desired) in self.objects.iter().enumerate() {
            let Some(id) = ObjectId::of(&desired.value) else { continue };
            match first.get(&id) {
                Some(&earlier) => duplicates.push((i, earlier, id)),
                None => {
                    first.insert(id, i);
                }
            }
        }
        for (i, earlier, id) in duplicates {
            let where_ = self.place(earlier);
            self.add(
                i,
                Diagnostic::error(Code::GraphDuplicate, self.span(i), format!("{id} is defined twice"))
                    .with_label("defined again here")
                    .with_help(format!("it is first defined at {where_}: keep one of the two, or rename one")),
            );
        }
        let values: Vec<&Value> = self.objects.iter().map(|d| &d.value).collect();
        let graph = graph::build(&values);
        for problem in &graph.problems {
            let diagnostic = match problem {
                graph::Problem::MalformedDependsOn { object, reference } => (
                    *object,
                    Diagnostic::error(
                        Code::DependsOn,
                        self.span(*object),
                        format!("config.kubernetes.io/depends-on: \"{reference}\" is not an object reference"),
                    )
                    .with_label("on this object")
                    .with_help("write <group>/namespaces/<namespace>/<kind>/<name>, or <group>/<kind>/<name> for a cluster-scoped object; the core group is empty: /namespaces/default/ConfigMap/settings"),
                ),
                graph::Problem::MissingDependency { object, reference } => (
                    *object,
                    Diagnostic::warning(
                        Code::DependsOn,
                        self.span(*object),
                        format!("config.kubernetes.io/depends-on: {reference} is not in the input"),
                    )
                    .with_label("on this object")
                    .with_help("it is not ordered before this object; if it should be created with it, add it to the manifests"),
                ),
            };
            self.add(diagnostic.0, diagnostic.1);
        }
        for cycle in &graph.cycles {
            let names: Vec<String> = cycle.iter().map(|i| graph.ids[*i].to_string()).collect();
            let first = cycle[0];
            let message = format!("dependency cycle: {} → {}", names.join(" → "), names[0]);
            let places: Vec<String> = cycle.iter().map(|i| format!("{} ({})", graph.ids[*i], self.place(*i))).collect();
            self.add(
                first,
                Diagnostic::error(Code::GraphCycle, self.span(first), message)
                    .with_label("this object is on a cycle")
                    .with_help(format!(
                        "remove one of the edges (an ownerReference or a config.kubernetes.io/depends-on annotation) among: {}",
                        places.join(", ")
                    )),
            );
        }
        graph
    }

    /// The plan of the valid objects (`graph` is theirs) against `state`.
    pub fn plan(&self, graph: &Graph, state: &State, prune: bool) -> Plan {
        let desired: Vec<plan::Desired<'_>> = self
            .objects
            .iter()
            .map(|d| plan::Desired { written: &d.written, normalized: &d.value, info: &d.info })
            .collect();
        plan::plan(&desired, graph, state, self.linter.catalog(), prune)
    }

    fn span(&self, i: usize) -> kubeyard_compiler::Span {
        let desired = &self.objects[i];
        let object = &self.reports[desired.file].objects[desired.object];
        // The `kind` value anchors diagnostics about a whole object.
        object.object.as_ref().map_or(object.span, |info| info.kind_span)
    }

    /// `file:line` of object `i`.
    pub fn place(&self, i: usize) -> String {
        let desired = &self.objects[i];
        let report = &self.reports[desired.file];
        match &report.source {
            Some(source) => {
                let at = source.line_col(report.objects[desired.object].span.start);
                format!("{}:{}", report.name, at.line)
            }
            None => report.name.clone(),
        }
    }

    fn add(&mut self, i: usize, diagnostic: Diagnostic) {
        let desired = &self.objects[i];
        self.reports[desired.file].objects[desired.object].add(diagnostic);
    }

    /// Every problem found so far, rendered as `kubeyard lint` renders them; `None` when
    /// there is none.
    pub fn problems_text(&self) -> Option<String> {
        let summary = Summary::of(&self.reports, self.started.elapsed());
        let problems: Vec<&FileReport> =
            self.reports.iter().filter(|r| r.objects.iter().any(|o| !o.diagnostics.is_empty())).collect();
        if problems.is_empty() {
            return None;
        }
        let mut err = String::new();
        for report in problems {
            err.push_str(&report::text::render_diagnostics(report));
        }
        err.push_str(&report::text::summary_line(&summary));
        Some(err)
    }

    /// Prints every problem found so far on standard error, as `kubeyard lint` would, and
    /// says whether there was an error.
    pub fn report_problems(&self) -> Result<(), Exit> {
        let summary = Summary::of(&self.reports, self.started.elapsed());
        if let Some(err) = self.problems_text() {
            eprintln!("{err}");
        }
        if summary.unreadable > 0 {
            Err(Exit::Usage)
        } else if summary.invalid > 0 {
            Err(Exit::Findings)
        } else {
            Ok(())
        }
    }
}
