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
use kubeyard_compiler::graph::edges::Facts;
use kubeyard_compiler::graph::{self, Graph, ObjectId};
use kubeyard_compiler::normalize::normalize;
use kubeyard_compiler::object::ObjectInfo;
use kubeyard_compiler::plan::state::{STATE_API_VERSION, State};
use kubeyard_compiler::plan::{self, Action, Plan};
use kubeyard_compiler::schema::KUBEYARD_GROUP;
use kubeyard_compiler::{FileReport, LintOptions, Linter, Verdict};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

/// What `Compiled::plan_each` hands on: the plan's summary first, then each entry as
/// it was made.
pub enum PlanPiece<T> {
    Summary(plan::Summary),
    Entry(T),
}

/// One valid object, normalized, as written, and where it was written. Both forms are
/// kept as compact JSON and read back when needed: as `serde_json::Value`s a hundred
/// thousand objects take ten times their text (every map is a B-tree node), and the
/// commands that take many objects (`plan`) handle them one at a time.
pub struct Desired {
    normalized: Box<str>,
    written: Box<str>,
    pub info: ObjectInfo,
    pub file: usize,
    pub object: usize,
}

impl Desired {
    /// The object normalized, as the API server would store it.
    pub fn value(&self) -> Value {
        read_back(&self.normalized)
    }

    /// The object as written (after templates): what kubectl would send.
    pub fn written(&self) -> Value {
        read_back(&self.written)
    }

    /// Changes both forms of the object alike.
    pub fn edit(&mut self, change: impl Fn(&mut Value)) {
        for form in [&mut self.normalized, &mut self.written] {
            let mut value = read_back(form);
            change(&mut value);
            *form = compact(&value);
        }
    }
}

fn compact(value: &Value) -> Box<str> {
    value.to_string().into_boxed_str()
}

/// JSON that `compact` wrote always reads back (serde_json writes every number and
/// string it reads), so failing here is a bug in kubeyard, not in the input.
fn read_back(text: &str) -> Value {
    serde_json::from_str(text).expect("kubeyard reads back the JSON it wrote")
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
    let helm = inputs.helm(&catalog);
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
    let results = lint_paths_then(&mut linter, &paths, templating.values_dir.as_deref(), &helm, |linter, object| {
        let tree = object.tree.take()?;
        let info = object.object.as_ref().filter(|_| object.verdict == Verdict::Valid)?;
        let desired = normalize(info, &tree, linter.catalog());
        Some((compact(&desired), compact(&tree.to_json()), info.clone()))
    });
    let mut reports = Vec::with_capacity(results.len());
    let mut objects = Vec::new();
    let mut own = Vec::new();
    for (file, (report, values)) in results.into_iter().enumerate() {
        for (object, (normalized, written, info)) in values {
            // kubeyard's own documents (Tests, Cluster shapes) lie beside the manifests
            // they are about; they are read by `test` and `lint`, never applied.
            if info.gvk.group == KUBEYARD_GROUP {
                own.push(format!("{} ({})", info.display_name(), report.name));
                continue;
            }
            objects.push(Desired { normalized, written, info, file, object });
        }
        reports.push(report);
    }
    if !own.is_empty() {
        eprintln!(
            "note: left out {} kubeyard.dev document(s), which `kubeyard test` and `lint` read and nothing applies: {}",
            own.len(),
            own.join(", ")
        );
    }
    Ok(Compiled { linter, reports, objects, started })
}

impl Compiled {
    /// The dependency graph of the valid objects. Two documents with one identity, and
    /// cycles, become diagnostics on the objects involved.
    pub fn graph(&mut self) -> Graph {
        use rayon::prelude::*;
        // Each object read back once, for its identity and what ordering needs of it.
        let read: Vec<(Option<ObjectId>, Facts)> = self
            .objects
            .par_iter()
            .map(|desired| {
                let value = desired.value();
                let id = ObjectId::of(&value);
                let facts = Facts::of(id.as_ref().unwrap_or(&ObjectId::default()), &value);
                (id, facts)
            })
            .collect();
        let (ids, facts): (Vec<Option<ObjectId>>, Vec<Facts>) = read.into_iter().unzip();
        let mut first: HashMap<&ObjectId, usize> = HashMap::new();
        let mut duplicates = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(id) = id else { continue };
            match first.get(id) {
                Some(&earlier) => duplicates.push((i, earlier, id.clone())),
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
        drop(first);
        let graph = graph::build_from(ids.into_iter().map(Option::unwrap_or_default).collect(), &facts);
        drop(facts);
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
    pub fn plan(&self, graph: &Graph, state: &State, prune: bool, applier: &plan::Applier) -> Plan {
        let mut objects = Vec::with_capacity(graph.order.len());
        let summary = self.plan_each(
            graph,
            state,
            prune,
            applier,
            |entry| entry,
            |piece| {
                if let PlanPiece::Entry(entry) = piece {
                    objects.push(entry);
                }
            },
        );
        Plan { api_version: STATE_API_VERSION, kind: "Plan", summary, objects }
    }

    /// Plans the valid objects (`graph` is theirs) against `state` without holding the
    /// plan: `make` turns each entry into what is kept of it (its text, say) as soon as
    /// it is planned, side by side, and `take` is given the summary, then what `make`
    /// made of each entry in the plan's order (apply order, then the deletions).
    ///
    /// The summary comes first because documents begin with it. Objects the state holds
    /// are compared first and what `make` makes of them kept until their turn (what
    /// changes on an object that exists is little); an object the state lacks is created,
    /// which takes no comparison to count, and is planned a batch at a time when its turn
    /// comes. So every object is planned once, and a plan of a hundred thousand objects
    /// to create holds one batch of them.
    pub fn plan_each<T: Send>(
        &self,
        graph: &Graph,
        state: &State,
        prune: bool,
        applier: &plan::Applier,
        make: impl Fn(plan::Entry) -> T + Sync,
        mut take: impl FnMut(PlanPiece<T>),
    ) -> plan::Summary {
        use rayon::prelude::*;
        // Enough to keep both cores busy, few enough that a batch's trees are small.
        const BATCH: usize = 1024;
        let mut compared: HashMap<usize, (Action, T)> = graph
            .order
            .par_iter()
            .filter(|&&i| plan::known_action(graph, i, state).is_none())
            .map(|&i| {
                let entry = self.plan_at(graph, state, i, applier);
                (i, (entry.action, make(entry)))
            })
            .collect();
        let (deleted, not_managed) = plan::deletions(graph, state, prune);
        let creates = graph.order.len() - compared.len();
        let actions = std::iter::repeat_n(Action::Create, creates)
            .chain(compared.values().map(|(action, _)| *action))
            .chain(deleted.iter().map(|entry| entry.action));
        let summary = plan::Summary::of(actions, not_managed);
        take(PlanPiece::Summary(summary.clone()));
        let mut to_create = vec![false; self.objects.len()];
        for &i in &graph.order {
            to_create[i] = !compared.contains_key(&i);
        }
        for batch in graph.order.chunks(BATCH) {
            let created: Vec<T> = batch
                .par_iter()
                .filter(|&&i| to_create[i])
                .map(|&i| make(self.plan_at(graph, state, i, applier)))
                .collect();
            let mut created = created.into_iter();
            for i in batch {
                match compared.remove(i) {
                    Some((_, made)) => take(PlanPiece::Entry(made)),
                    None => take(PlanPiece::Entry(created.next().expect("one made per object created"))),
                }
            }
        }
        for entry in deleted {
            take(PlanPiece::Entry(make(entry)));
        }
        summary
    }

    /// Object `i`'s entry, its two forms read back for the while.
    fn plan_at(&self, graph: &Graph, state: &State, i: usize, applier: &plan::Applier) -> plan::Entry {
        let desired = &self.objects[i];
        let (normalized, written) = (desired.value(), desired.written());
        let object = plan::Desired { written: &written, normalized: &normalized, info: &desired.info };
        plan::plan_one(object, graph, i, state, self.linter.catalog(), applier)
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
