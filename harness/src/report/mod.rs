//! Lint results out: text for people (miette); JSON, JUnit, SARIF and GitHub workflow
//! commands for machines. Each format
//! is a pure function of the reports, so its output can be snapshot-tested.

pub mod github;
pub mod json;
pub mod junit;
pub mod sarif;
pub mod text;

use kubeyard_compiler::{Code, FileReport, Severity, Verdict};
use std::time::Duration;

/// A diagnostic's message with its help on the next line: what the one-string formats
/// (SARIF, GitHub annotations, the editor's diagnostics) show.
pub fn message_with_help(d: &kubeyard_compiler::Diagnostic) -> String {
    match &d.help {
        Some(help) => format!("{}\nhelp: {help}", d.message),
        None => d.message.clone(),
    }
}

/// Counts over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub valid: usize,
    pub invalid: usize,
    pub skipped: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Inputs that could not be read (an I/O problem, or no helm or kubectl to read them
    /// with), not a finding about manifests.
    pub unreadable: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn of(reports: &[FileReport], elapsed: Duration) -> Summary {
        let mut summary = Summary { files: reports.len(), elapsed, ..Summary::default() };
        for object in reports.iter().flat_map(|r| &r.objects) {
            // An input not read at all, for want of the file or of the program that reads
            // it, is no verdict on manifests: it is the run's failure (exit code 2).
            if object.diagnostics.iter().any(|d| matches!(d.code, Code::Unreadable | Code::MissingTool)) {
                summary.unreadable += 1;
                continue;
            }
            summary.objects += 1;
            match object.verdict {
                Verdict::Valid => summary.valid += 1,
                Verdict::Invalid => summary.invalid += 1,
                Verdict::Skipped => summary.skipped += 1,
            }
            for diagnostic in &object.diagnostics {
                match diagnostic.severity {
                    Severity::Error => summary.errors += 1,
                    Severity::Warning => summary.warnings += 1,
                    Severity::Info => {}
                }
            }
        }
        summary
    }
}
