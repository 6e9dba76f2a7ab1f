//! `kubeyard normalize`: every object as the API server would store it (defaults
//! applied, quantities canonical, keys sorted), as one YAML stream or a JSON list.
//! Objects that fail their schema are reported on standard error and left out.

use super::Exit;
use super::inputs::Inputs;
use super::lint::{lint_paths_then, usage_error};
use crate::report::{self, Summary};
use clap::{Args, ValueEnum};
use kubeyard_compiler::admission::enforced_rule_settings;
use kubeyard_compiler::normalize::normalize;
use kubeyard_compiler::print::to_yaml_stream;
use kubeyard_compiler::{FileReport, LintOptions, Linter, Verdict};
use std::io::Write;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct NormalizeArgs {
    #[command(flatten)]
    inputs: Inputs,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Yaml)]
    output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

pub fn run(args: NormalizeArgs) -> Exit {
    let started = Instant::now();
    let paths = args.inputs.paths();
    let config = match args.inputs.load_config(&paths) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let catalog = match args.inputs.catalog_options(&config) {
        Ok(catalog) => catalog,
        Err(message) => return usage_error(&message),
    };
    let helm = args.inputs.helm(&catalog);
    let templating = match args.inputs.templating(&paths) {
        Ok(templating) => templating,
        Err(exit) => return exit,
    };
    let options = LintOptions {
        catalog,
        ignore_missing_schemas: args.inputs.ignore_missing_schemas || config.ignore_missing_schemas.unwrap_or(false),
        rules: enforced_rule_settings(),
        cluster: None,
        keep_trees: true,
        values: templating.values,
    };
    let mut linter = match Linter::new(options) {
        Ok(linter) => linter,
        Err(error) => return usage_error(&error.to_string()),
    };
    // Each object is normalized and printed on the thread that linted it, as soon as it
    // is linted, and its tree dropped there: what is held is text, never every tree or
    // every value of a large input at once.
    let format = args.output;
    let results = lint_paths_then(&mut linter, &paths, templating.values_dir.as_deref(), &helm, |linter, object| {
        let tree = object.tree.take()?;
        let info = object.object.as_ref().filter(|_| object.verdict == Verdict::Valid)?;
        let value = normalize(info, &tree, linter.catalog());
        drop(tree);
        Some(match format {
            Format::Yaml => to_yaml_stream([&value]),
            Format::Json => json_item(&value),
        })
    });
    let mut reports = Vec::with_capacity(results.len());
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    // A closed pipe (`kubeyard normalize | head`) ends the output, not the run.
    let mut writing = Ok(());
    let mut first = true;
    for (report, printed) in results {
        reports.push(report);
        for (_, text) in printed {
            if format == Format::Json {
                // `serde_json::to_string_pretty` of the whole list, one item at a time.
                let lead = if first { "[\n" } else { ",\n" };
                writing = writing.and_then(|()| stdout.write_all(lead.as_bytes()));
            }
            first = false;
            writing = writing.and_then(|()| stdout.write_all(text.as_bytes()));
        }
    }
    if format == Format::Json {
        let end = if first { "[]\n" } else { "\n]\n" };
        writing = writing.and_then(|()| stdout.write_all(end.as_bytes()));
    }
    let _ = writing.and_then(|()| stdout.flush());
    drop(stdout);

    // What could not be normalized is said on standard error, as `kubeyard lint` says it.
    let summary = Summary::of(&reports, started.elapsed());
    let problems: Vec<&FileReport> =
        reports.iter().filter(|r| r.objects.iter().any(|o| !o.diagnostics.is_empty())).collect();
    if !problems.is_empty() {
        let mut err = String::new();
        for report in problems {
            err.push_str(&report::text::render_diagnostics(report));
        }
        err.push_str(&report::text::summary_line(&summary));
        eprintln!("{err}");
    }
    if summary.unreadable > 0 {
        Exit::Usage
    } else if summary.invalid > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    }
}

/// One item of the pretty-printed JSON list: the value printed as
/// `serde_json::to_string_pretty` prints it inside a list (each line indented by two
/// spaces; JSON strings hold no raw line breaks, so lines split safely).
fn json_item(value: &serde_json::Value) -> String {
    kubeyard_compiler::print::pretty_json_indented(value, "  ")
}

/// The normalized form of every valid object, in input order.
pub fn normalized(linter: &Linter, reports: &[FileReport]) -> Vec<serde_json::Value> {
    reports
        .iter()
        .flat_map(|report| &report.objects)
        .filter(|object| object.verdict == Verdict::Valid)
        .filter_map(|object| Some(normalize(object.object.as_ref()?, object.tree.as_deref()?, linter.catalog())))
        .collect()
}
