//! `kubeyard lint`: read every input in parallel, register the CRDs among them, lint
//! every file in parallel, print the reports in input order.

use super::Exit;
use super::inputs::Inputs;
use crate::discover::{Input, discover_manifests};
use crate::helm;
use crate::kustomize::{self, Origins};
use crate::report::{self, Summary};
use clap::{Args, ValueEnum};
use kubeyard_compiler::config::{self, Config};
use kubeyard_compiler::diagnostic::{Code, Diagnostic};
use kubeyard_compiler::lint::source_diagnostic;
use kubeyard_compiler::rules::{self, ClusterShape};
use kubeyard_compiler::source::MAX_INPUT_BYTES;
use kubeyard_compiler::template::Values;
use kubeyard_compiler::yaml::{Node, Value};
use kubeyard_compiler::{FileReport, LintOptions, Linter, ObjectReport, SourceError, SourceFile, Span};
use rayon::prelude::*;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LintArgs {
    #[command(flatten)]
    inputs: Inputs,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,

    /// List every object with its verdict, valid ones too (text output).
    #[arg(long, short = 'v')]
    verbose: bool,

    /// The cluster the workloads must fit, e.g. `nodes=3,cpu=4,memory=8Gi[,pods=110]`
    /// (or put a kubeyard.dev/v1alpha1 Cluster document in the input).
    #[arg(long, value_name = "SHAPE")]
    cluster: Option<String>,

    /// Set a rule's severity, or turn it off: `--rule image/latest-tag=off`. Repeatable;
    /// wins over .kubeyard.yaml.
    #[arg(long, value_name = "ID=SEVERITY")]
    rule: Vec<String>,

    /// Schema validation only: run no rules (what kubeconform checks).
    #[arg(long, conflicts_with = "rule")]
    no_rules: bool,

    /// Diagnostics shown per file at most in text output, the rest counted (0: all).
    #[arg(long, value_name = "N", default_value_t = report::text::DEFAULT_MAX_PER_FILE)]
    max_diagnostics: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people: each finding with its source lines.
    Text,
    /// kubeyard's own machine format (docs/lint-output.md).
    Json,
    /// A test case per object, for CI test reports.
    Junit,
    /// SARIF 2.1.0, for code-scanning dashboards (GitHub, GitLab, Azure DevOps).
    Sarif,
    /// GitHub Actions workflow commands: annotations on the pull request's lines.
    Github,
}

pub fn run(args: LintArgs) -> Exit {
    let started = Instant::now();
    let paths = args.inputs.paths();
    let config = match args.inputs.load_config(&paths) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let templating = match args.inputs.templating(&paths) {
        Ok(templating) => templating,
        Err(exit) => return exit,
    };
    let options = match options(&args, config, templating.values.clone()) {
        Ok(options) => options,
        Err(message) => return usage_error(&message),
    };
    let version = options.catalog.version;
    let strict = options.catalog.strict;
    let helm = args.inputs.helm(&options.catalog);
    let mut linter = match Linter::new(options) {
        Ok(linter) => linter,
        Err(error) => return usage_error(&error.to_string()),
    };

    // Standard input only when asked for (`-`): CI runners hand commands a stdin that is
    // not a terminal, and linting that instead of the checkout would pass vacuously.
    let setup = started.elapsed();
    let reports = lint_paths_then(&mut linter, &paths, templating.values_dir.as_deref(), &helm, |_, _| None::<()>)
        .into_iter()
        .map(|(r, _)| r)
        .collect::<Vec<_>>();
    let summary = Summary::of(&reports, started.elapsed());
    let linted = started.elapsed();
    let rendered: Vec<String> = match args.output {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            report::text::render_chunks(
                &reports,
                &summary,
                &report::text::TextOptions {
                    color,
                    verbose: args.verbose,
                    max_per_file: (args.max_diagnostics > 0).then_some(args.max_diagnostics),
                },
            )
        }
        Format::Json => vec![report::json::render(&reports, &summary, &version.to_string(), strict)],
        Format::Junit => vec![report::junit::render(&reports)],
        Format::Sarif => vec![report::sarif::render(&reports, &summary, &version.to_string(), strict)],
        Format::Github => vec![report::github::render(&reports, &summary)],
    };
    // KUBEYARD_TIMINGS=1 prints where the time went, for performance work.
    if std::env::var_os("KUBEYARD_TIMINGS").is_some() {
        eprintln!("timings: setup {:?}, lint {:?}, render {:?}", setup, linted - setup, started.elapsed() - linted);
    }
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    // A closed pipe (`kubeyard lint | head`) is not worth a panic.
    let _ = rendered.iter().try_for_each(|chunk| stdout.write_all(chunk.as_bytes())).and_then(|()| stdout.flush());
    drop(stdout);
    // The process ends next: freeing every tree one by one would only cost time (a tenth
    // of a large run), so the memory goes back to the OS in one piece instead.
    std::mem::forget(reports);
    std::mem::forget(linter);

    if summary.unreadable > 0 {
        Exit::Usage
    } else if summary.invalid > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    }
}

/// Lints every file the paths name: read in parallel, register the CRDs among them,
/// lint in parallel. Reports come back in input order, unreadable paths first.
pub fn lint_paths(linter: &mut Linter, paths: &[String]) -> Vec<FileReport> {
    lint_paths_then(linter, paths, None, &helm::Options::default(), |_, _| None::<()>)
        .into_iter()
        .map(|(report, _)| report)
        .collect()
}

/// `lint_paths`, with `each` run on every object's report as soon as its document is
/// linted, on the thread that linted it; what it returns is kept with the object's
/// index in its file. Normalization works here, in parallel, and takes each tree as soon
/// as it is built, so a 100 MB file never holds all its trees at once.
pub fn lint_paths_then<T: Send>(
    linter: &mut Linter,
    paths: &[String],
    skip: Option<&Path>,
    helm: &helm::Options,
    each: impl Fn(&Linter, &mut ObjectReport) -> Option<T> + Sync,
) -> Vec<(FileReport, Vec<(usize, T)>)> {
    let (inputs, unreadable) = discover_manifests(paths, skip);
    let loaded: Vec<Loaded> = inputs.par_iter().flat_map_iter(|input| load(input, helm)).collect();

    // CRDs first, so custom resources anywhere in the input validate against them. Only
    // files that mention one (found while loading, in parallel) are looked at here.
    for loaded in &loaded {
        if let Loaded::Text(source) | Loaded::Built { source, .. } = loaded
            && Linter::may_define_crds(source)
        {
            linter.register_crds(source);
        }
    }

    let linter = &*linter;
    type Linted<T> = (FileReport, Vec<(usize, T)>, Option<(Origins, std::path::PathBuf)>);
    let mut results: Vec<Linted<T>> = unreadable
        .into_iter()
        .map(|problem| (unreadable_report(problem.path, problem.reason), Vec::new(), None))
        .collect();
    let lint = |source: SourceFile| {
        let mut products = Vec::new();
        let mut index = 0;
        let report = linter.lint_source_each(source, &mut |object| {
            if let Some(product) = each(linter, object) {
                products.push((index, product));
            }
            index += 1;
        });
        (report, products)
    };
    results.par_extend(loaded.into_par_iter().map(|loaded| match loaded {
        Loaded::Text(source) => {
            let (report, products) = lint(source);
            (report, products, None)
        }
        Loaded::Built { source, origins, kustomization } => {
            let (report, products) = lint(source);
            (report, products, Some((origins, kustomization)))
        }
        Loaded::NotText { name, diagnostic } => {
            (FileReport { name, source: None, objects: vec![file_level(diagnostic)] }, Vec::new(), None)
        }
        Loaded::Unreadable { name, reason } => (unreadable_report(name, reason), Vec::new(), None),
    }));
    let set_started = std::time::Instant::now();
    let mut reports: Vec<FileReport> = Vec::new();
    let mut extras: Vec<Vec<(usize, T)>> = Vec::new();
    let mut built = Vec::new();
    for (report, extra, origins) in results {
        reports.push(report);
        extras.push(extra);
        built.push(origins);
    }
    // The set rules look at what is applied: a kustomization's objects as built.
    linter.check_set(&mut reports);
    if std::env::var_os("KUBEYARD_TIMINGS").is_some() {
        eprintln!("timings: set rules {:?}", set_started.elapsed());
    }
    let mut out = Vec::with_capacity(reports.len());
    for ((report, extra), built) in reports.into_iter().zip(extras).zip(built) {
        let Some((origins, kustomization)) = built else {
            out.push((report, extra));
            continue;
        };
        // Each finding goes back to the file its object came from; what an object made
        // goes with it, under its new position.
        let mut products: std::collections::HashMap<usize, T> = extra.into_iter().collect();
        for (report, positions) in kustomize::remap(report, &origins, &kustomization) {
            let moved =
                positions.iter().enumerate().filter_map(|(at, from)| Some((at, products.remove(from)?))).collect();
            out.push((report, moved));
        }
    }
    out
}

/// Flags over the configuration file over the defaults.
fn options(args: &LintArgs, config: Config, values: Option<Arc<Values>>) -> Result<LintOptions, String> {
    let catalog = args.inputs.catalog_options(&config)?;
    let cluster = match &args.cluster {
        Some(text) => Some(text.parse::<ClusterShape>().map_err(|e| format!("--cluster {text}: {e}"))?),
        None => config.cluster,
    };
    let mut settings = if args.no_rules { rules::RuleSettings::all_off() } else { config.rules };
    for setting in &args.rule {
        let (id, severity) = setting.split_once('=').ok_or_else(|| format!("--rule {setting}: write ID=SEVERITY"))?;
        let rule = rules::find(id)
            .ok_or_else(|| format!("--rule {setting}: no rule \"{id}\" (`kubeyard rules` lists them)"))?;
        let value = Node { value: Value::String(severity.to_string()), span: Span::default() };
        let severity = config::parse_severity(&value)
            .map_err(|_| format!("--rule {setting}: \"{severity}\" is not error, warning, info or off"))?;
        settings.set(rule, severity);
    }
    Ok(LintOptions {
        catalog,
        ignore_missing_schemas: args.inputs.ignore_missing_schemas || config.ignore_missing_schemas.unwrap_or(false),
        rules: settings,
        cluster,
        keep_trees: false,
        values,
    })
}

enum Loaded {
    Text(SourceFile),
    /// A kustomization's build, with where each document came from.
    Built {
        source: SourceFile,
        origins: Origins,
        kustomization: std::path::PathBuf,
    },
    NotText {
        name: String,
        diagnostic: Diagnostic,
    },
    Unreadable {
        name: String,
        reason: String,
    },
}

/// An input's text: one file, or a chart's templates rendered, each a file of its own.
fn load(input: &Input, helm: &helm::Options) -> Vec<Loaded> {
    let name = input.display_name();
    match input {
        Input::HelmChart(dir) => match helm::render(dir, helm) {
            Ok(templates) => templates
                .into_iter()
                .map(|template| match SourceFile::new(template.name.clone(), template.text) {
                    Ok(source) => {
                        source.may_define_crds();
                        Loaded::Text(source)
                    }
                    Err(error) => Loaded::NotText { name: template.name, diagnostic: source_diagnostic(&error) },
                })
                .collect(),
            Err(error) => vec![Loaded::NotText {
                name,
                diagnostic: Diagnostic::error(error.code(), Span::default(), error.to_string()).with_help(error.help()),
            }],
        },
        _ => vec![load_one(input, name)],
    }
}

fn load_one(input: &Input, name: String) -> Loaded {
    if let Input::Kustomization(dir) = input {
        return match kustomize::build(dir) {
            Ok(built) => match SourceFile::new(name.clone(), built.text) {
                Ok(source) => {
                    source.may_define_crds();
                    let kustomization = kustomize::file_of(dir).unwrap_or_else(|| dir.clone());
                    Loaded::Built { source, origins: built.origins, kustomization }
                }
                Err(error) => Loaded::NotText { name, diagnostic: source_diagnostic(&error) },
            },
            Err(error) => Loaded::NotText {
                name,
                diagnostic: Diagnostic::error(error.code(), Span::default(), error.to_string()).with_help(error.help()),
            },
        };
    }
    let bytes = match input {
        Input::Stdin => read_bounded(std::io::stdin().lock(), MAX_INPUT_BYTES),
        Input::Kustomization(_) | Input::HelmChart(_) => unreachable!("built or rendered above"),
        Input::File(path) => std::fs::File::open(path).and_then(|file| {
            // A file's size is known before reading it: refuse without reading a byte.
            let size = file.metadata()?.len();
            if size > MAX_INPUT_BYTES as u64 {
                return Ok(Err(size));
            }
            read_bounded(file, MAX_INPUT_BYTES)
        }),
    };
    match bytes {
        Err(error) => Loaded::Unreadable { name, reason: error.to_string() },
        Ok(Err(size)) => Loaded::NotText { name, diagnostic: source_diagnostic(&SourceError::OverLimit { size }) },
        Ok(Ok(bytes)) => match SourceFile::from_bytes(name.clone(), bytes) {
            Ok(source) => {
                source.may_define_crds();
                Loaded::Text(source)
            }
            Err(error) => Loaded::NotText { name, diagnostic: source_diagnostic(&error) },
        },
    }
}

/// Reads at most `limit` bytes; `Err(read)` when there is more, having read no more than
/// one byte past the limit (standard input may be endless).
fn read_bounded(reader: impl Read, limit: usize) -> std::io::Result<Result<Vec<u8>, u64>> {
    let mut bytes = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit { Ok(Err(bytes.len() as u64)) } else { Ok(Ok(bytes)) }
}

fn file_level(diagnostic: Diagnostic) -> ObjectReport {
    ObjectReport::whole_file(vec![diagnostic])
}

fn unreadable_report(name: String, reason: String) -> FileReport {
    let diagnostic = Diagnostic::error(Code::Unreadable, Span::default(), format!("cannot read: {reason}"))
        .with_help("check the path and its permissions");
    FileReport { name, source: None, objects: vec![file_level(diagnostic)] }
}

pub(super) fn usage_error(message: &str) -> Exit {
    eprintln!("error: {message}");
    Exit::Usage
}
