//! `kubeyard lint`: read every input in parallel, register the CRDs among them, lint
//! every file in parallel, print the reports in input order.

use super::Exit;
use crate::discover::{Input, discover};
use crate::report::{self, Summary};
use clap::{Args, ValueEnum};
use kubeyard_compiler::config::{self, Config};
use kubeyard_compiler::diagnostic::{Code, Diagnostic};
use kubeyard_compiler::lint::source_diagnostic;
use kubeyard_compiler::rules::{self, ClusterShape};
use kubeyard_compiler::schema::{CatalogOptions, KubernetesVersion};
use kubeyard_compiler::yaml::{Node, Value};
use kubeyard_compiler::{FileReport, LintOptions, Linter, ObjectReport, SourceFile, Span};
use rayon::prelude::*;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LintArgs {
    /// Files or directories to lint (default: the current directory); `-` reads standard
    /// input. Directories are searched for *.yaml, *.yml and *.json, skipping hidden
    /// files and folders.
    #[arg(value_name = "PATHS")]
    paths: Vec<String>,

    /// The Kubernetes version whose schemas to validate against (e.g. 1.32) [default: the
    /// newest kubeyard ships, or kubernetesVersion in .kubeyard.yaml].
    #[arg(long, short = 'k', value_name = "1.NN")]
    kubernetes_version: Option<String>,

    /// A folder of extra JSON schemas (kubeconform's names, e.g. `widget-example-v1.json`),
    /// searched before the built-in ones. Repeatable.
    #[arg(long, value_name = "DIR")]
    schema_dir: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,

    /// Allow fields the schema does not define, and duplicate keys (as warnings).
    #[arg(long)]
    no_strict: bool,

    /// Skip custom resources that have no schema instead of reporting them.
    #[arg(long)]
    ignore_missing_schemas: bool,

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

    /// The configuration file [default: the nearest .kubeyard.yaml in or above the first
    /// path].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Ignore any .kubeyard.yaml.
    #[arg(long, conflicts_with = "config")]
    no_config: bool,

    /// Schema validation only: run no rules (what kubeconform checks).
    #[arg(long, conflicts_with = "rule")]
    no_rules: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
}

pub fn run(args: LintArgs) -> Exit {
    let started = Instant::now();
    let paths = if args.paths.is_empty() { vec![".".to_string()] } else { args.paths.clone() };
    let config = match load_config(&args, &paths) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let options = match options(&args, config) {
        Ok(options) => options,
        Err(message) => return usage_error(&message),
    };
    let version = options.catalog.version;
    let strict = options.catalog.strict;
    let mut linter = match Linter::new(options) {
        Ok(linter) => linter,
        Err(error) => return usage_error(&error.to_string()),
    };

    // Standard input only when asked for (`-`): CI runners hand commands a stdin that is
    // not a terminal, and linting that instead of the checkout would pass vacuously.
    let setup = started.elapsed();
    let reports = lint_paths(&mut linter, &paths);
    let summary = Summary::of(&reports, started.elapsed());
    let linted = started.elapsed();
    let rendered = match args.output {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            report::text::render(&reports, &summary, &report::text::TextOptions { color, verbose: args.verbose })
        }
        Format::Json => report::json::render(&reports, &summary, &version.to_string(), strict),
        Format::Junit => report::junit::render(&reports),
    };
    // KUBEYARD_TIMINGS=1 prints where the time went, for performance work.
    if std::env::var_os("KUBEYARD_TIMINGS").is_some() {
        eprintln!("timings: setup {:?}, lint {:?}, render {:?}", setup, linted - setup, started.elapsed() - linted);
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`kubeyard lint | head`) is not worth a panic.
    let _ = stdout.write_all(rendered.as_bytes()).and_then(|()| stdout.flush());
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
    let (inputs, unreadable) = discover(paths);
    let loaded: Vec<Loaded> = inputs.par_iter().map(load).collect();

    // CRDs first, so custom resources anywhere in the input validate against them.
    for loaded in &loaded {
        if let Loaded::Text(source) = loaded {
            linter.register_crds(source);
        }
    }

    let linter = &*linter;
    let mut reports: Vec<FileReport> =
        unreadable.into_iter().map(|problem| unreadable_report(problem.path, problem.reason)).collect();
    reports.par_extend(loaded.into_par_iter().map(|loaded| match loaded {
        Loaded::Text(source) => linter.lint_source(source),
        Loaded::NotText { name, diagnostic } => {
            FileReport { name, source: None, objects: vec![file_level(diagnostic)] }
        }
        Loaded::Unreadable { name, reason } => unreadable_report(name, reason),
    }));
    let set_started = std::time::Instant::now();
    linter.check_set(&mut reports);
    if std::env::var_os("KUBEYARD_TIMINGS").is_some() {
        eprintln!("timings: set rules {:?}", set_started.elapsed());
    }
    reports
}

/// The configuration: `--config`, else the nearest `.kubeyard.yaml`, else none. Its
/// problems are printed; errors in it stop the run (exit 2).
fn load_config(args: &LintArgs, paths: &[String]) -> Result<Config, Exit> {
    if args.no_config {
        return Ok(Config::default());
    }
    let path = match &args.config {
        Some(path) => path.clone(),
        None => {
            let start = paths.iter().find(|p| *p != "-").map_or_else(|| PathBuf::from("."), PathBuf::from);
            match config::find(&start) {
                Some(path) => path,
                None => return Ok(Config::default()),
            }
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| usage_error(&format!("cannot read {}: {e}", path.display())))?;
    let source = SourceFile::from_bytes(path.display().to_string(), bytes)
        .map_err(|e| usage_error(&format!("{}: {e}", path.display())))?;
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let (config, problems) = config::parse(&source, &base);
    if !problems.is_empty() {
        let failed = problems.iter().any(Diagnostic::is_error);
        let report = FileReport {
            name: source.name().to_string(),
            source: Some(source),
            objects: vec![ObjectReport {
                diagnostics: problems,
                ..file_level(Diagnostic::error(Code::BadConfig, Span::default(), ""))
            }],
        };
        let rendered = report::text::render_diagnostics(&report);
        eprint!("{rendered}");
        if failed {
            return Err(Exit::Usage);
        }
    }
    Ok(config)
}

/// Flags over the configuration file over the defaults.
fn options(args: &LintArgs, config: Config) -> Result<LintOptions, String> {
    let version = match &args.kubernetes_version {
        Some(text) => text.parse::<KubernetesVersion>().map_err(|e| e.to_string())?,
        None => config.kubernetes_version.unwrap_or_else(KubernetesVersion::latest),
    };
    let mut schema_dirs = config.schema_dirs;
    schema_dirs.extend(args.schema_dir.iter().cloned());
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
        catalog: CatalogOptions { version, strict: !args.no_strict && config.strict.unwrap_or(true), schema_dirs },
        ignore_missing_schemas: args.ignore_missing_schemas || config.ignore_missing_schemas.unwrap_or(false),
        rules: settings,
        cluster,
    })
}

enum Loaded {
    Text(SourceFile),
    NotText { name: String, diagnostic: Diagnostic },
    Unreadable { name: String, reason: String },
}

fn load(input: &Input) -> Loaded {
    let name = input.display_name();
    let bytes = match input {
        Input::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
        }
        Input::File(path) => std::fs::read(path),
    };
    match bytes {
        Err(error) => Loaded::Unreadable { name, reason: error.to_string() },
        Ok(bytes) => match SourceFile::from_bytes(name.clone(), bytes) {
            Ok(source) => Loaded::Text(source),
            Err(error) => Loaded::NotText { name, diagnostic: source_diagnostic(&error) },
        },
    }
}

fn file_level(diagnostic: Diagnostic) -> ObjectReport {
    ObjectReport::whole_file(vec![diagnostic])
}

fn unreadable_report(name: String, reason: String) -> FileReport {
    let diagnostic = Diagnostic::error(Code::Unreadable, Span::default(), format!("cannot read: {reason}"))
        .with_help("check the path and its permissions");
    FileReport { name, source: None, objects: vec![file_level(diagnostic)] }
}

fn usage_error(message: &str) -> Exit {
    eprintln!("error: {message}");
    Exit::Usage
}
