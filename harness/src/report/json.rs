//! The machine format (`--output json`), documented in `docs/lint-output.md`. Fields are
//! only ever added; `formatVersion` changes if one is removed or changes meaning.

use super::Summary;
use kubeyard_compiler::{Diagnostic, FileReport, Severity, SourceFile, Verdict};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output<'a> {
    format_version: u32,
    kubernetes_version: String,
    strict: bool,
    objects: Vec<Object<'a>>,
    summary: JsonSummary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    file: &'a str,
    document: Option<usize>,
    item: Option<usize>,
    line: Option<u32>,
    api_version: Option<String>,
    kind: Option<&'a str>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    verdict: Verdict,
    reason: Option<&'a str>,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonDiagnostic<'a> {
    code: &'static str,
    severity: Severity,
    message: &'a str,
    path: Option<&'a str>,
    help: Option<&'a str>,
    file: &'a str,
    line: Option<u32>,
    column: Option<u32>,
    end_line: Option<u32>,
    end_column: Option<u32>,
    offset: Option<u32>,
    length: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSummary {
    files: usize,
    objects: usize,
    valid: usize,
    invalid: usize,
    skipped: usize,
    errors: usize,
    warnings: usize,
    unreadable: usize,
    seconds: f64,
}

pub fn render(reports: &[FileReport], summary: &Summary, kubernetes_version: &str, strict: bool) -> String {
    let mut objects = Vec::new();
    for report in reports {
        let source = report.source.as_ref();
        for object in &report.objects {
            let info = object.object.as_ref();
            objects.push(Object {
                file: &report.name,
                document: object.document,
                item: object.item,
                line: source.map(|s| s.line_col(object.span.start).line),
                api_version: info.map(|i| i.gvk.api_version()),
                kind: info.map(|i| i.gvk.kind.as_str()),
                namespace: info.and_then(|i| i.namespace.as_deref()),
                name: info.and_then(|i| i.name.as_deref()),
                verdict: object.verdict,
                reason: object.reason.as_deref(),
                diagnostics: object.diagnostics.iter().map(|d| diagnostic(&report.name, source, d)).collect(),
            });
        }
    }
    let output = Output {
        format_version: 1,
        kubernetes_version: kubernetes_version.to_string(),
        strict,
        objects,
        summary: JsonSummary {
            files: summary.files,
            objects: summary.objects,
            valid: summary.valid,
            invalid: summary.invalid,
            skipped: summary.skipped,
            errors: summary.errors,
            warnings: summary.warnings,
            unreadable: summary.unreadable,
            seconds: (summary.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        },
    };
    let mut text = serde_json::to_string_pretty(&output).expect("plain data always serializes");
    text.push('\n');
    text
}

fn diagnostic<'a>(file: &'a str, source: Option<&SourceFile>, d: &'a Diagnostic) -> JsonDiagnostic<'a> {
    let start = source.map(|s| s.line_col(d.span.start));
    let end = source.map(|s| s.line_col(d.span.end));
    JsonDiagnostic {
        code: d.code.as_str(),
        severity: d.severity,
        message: &d.message,
        path: d.path.as_deref(),
        help: d.help.as_deref(),
        file,
        line: start.map(|p| p.line),
        column: start.map(|p| p.column),
        end_line: end.map(|p| p.line),
        end_column: end.map(|p| p.column),
        offset: source.map(|_| d.span.start),
        length: source.map(|_| d.span.len()),
    }
}
