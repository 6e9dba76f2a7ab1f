//! `kubeyard lint`: read every input in parallel, register the CRDs among them, lint
//! every file in parallel, print the reports in input order.

use super::Exit;
use crate::discover::{Input, discover};
use crate::report::{self, Summary};
use clap::{Args, ValueEnum};
use kubeyard_compiler::diagnostic::{Code, Diagnostic};
use kubeyard_compiler::lint::source_diagnostic;
use kubeyard_compiler::schema::{CatalogOptions, KubernetesVersion};
use kubeyard_compiler::{FileReport, LintOptions, Linter, ObjectReport, SourceFile, Span, Verdict};
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

    /// The Kubernetes version whose schemas to validate against (e.g. 1.32).
    #[arg(long, short = 'k', value_name = "1.NN", default_value_t = KubernetesVersion::latest().to_string())]
    kubernetes_version: String,

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
}

pub fn run(args: LintArgs) -> Exit {
    let started = Instant::now();
    let version: KubernetesVersion = match args.kubernetes_version.parse() {
        Ok(version) => version,
        Err(error) => return usage_error(&error.to_string()),
    };
    let options = LintOptions {
        catalog: CatalogOptions { version, strict: !args.no_strict, schema_dirs: args.schema_dir.clone() },
        ignore_missing_schemas: args.ignore_missing_schemas,
    };
    let mut linter = match Linter::new(options) {
        Ok(linter) => linter,
        Err(error) => return usage_error(&error.to_string()),
    };

    // Standard input only when asked for: CI runners hand commands a stdin that is not a
    // terminal, and linting that instead of the checkout would pass vacuously.
    let paths = if args.paths.is_empty() { vec![".".to_string()] } else { args.paths.clone() };
    let reports = lint_paths(&mut linter, &paths);
    let summary = Summary::of(&reports, started.elapsed());
    let rendered = match args.output {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            report::text::render(&reports, &summary, &report::text::TextOptions { color, verbose: args.verbose })
        }
        Format::Json => report::json::render(&reports, &summary, &version.to_string(), !args.no_strict),
        Format::Junit => report::junit::render(&reports),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`kubeyard lint | head`) is not worth a panic.
    let _ = stdout.write_all(rendered.as_bytes()).and_then(|()| stdout.flush());

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
    reports
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
    ObjectReport {
        document: None,
        item: None,
        span: Span::default(),
        object: None,
        verdict: Verdict::Invalid,
        reason: None,
        diagnostics: vec![diagnostic],
    }
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
