//! `--output github`: GitHub Actions workflow commands (`::error file=...,line=...::...`),
//! which the runner turns into annotations on the lines of a pull request's diff. One line
//! per diagnostic, then the summary as plain text for the log.

use super::Summary;
use kubeyard_compiler::{FileReport, Severity};

/// The command for a severity (GitHub has no `info`: `notice` is its word for it).
fn command(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "notice",
    }
}

/// A command's message: the runner reads `%`, CR and LF escaped.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A property's value: also `:` and `,`, which end the property.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

pub fn render(reports: &[FileReport], summary: &Summary) -> String {
    let mut out = String::new();
    for report in reports {
        let file = report.name.strip_prefix("./").unwrap_or(&report.name);
        for object in &report.objects {
            for d in &object.diagnostics {
                let mut properties = Vec::new();
                // Rendered text (a chart's template, a kustomization's build) is no file of
                // the pull request: its place goes in the message instead.
                let real = crate::discover::real_file(&report.name).is_some();
                if real {
                    properties.push(format!("file={}", escape_property(file)));
                }
                let mut place = String::new();
                if let Some(source) = &report.source
                    && !real
                    && report.name != "<stdin>"
                {
                    let at = source.line_col(d.span.start);
                    place = format!("{}:{}:{}: ", report.name, at.line, at.column);
                } else if let Some(source) = &report.source {
                    let (start, end) = (source.line_col(d.span.start), source.line_col(d.span.end));
                    properties.push(format!("line={}", start.line));
                    if end.line == start.line {
                        // Columns are GitHub's only on one line, and its end column is the
                        // last character's (kubeyard's spans end after it).
                        properties.push(format!("col={}", start.column));
                        properties.push(format!("endColumn={}", end.column.saturating_sub(1).max(start.column)));
                    } else {
                        properties.push(format!("endLine={}", end.line));
                    }
                }
                let title = match &object.object {
                    Some(info) => format!("{} ({})", d.code.as_str(), info.display_name()),
                    None => d.code.as_str().to_string(),
                };
                properties.push(format!("title={}", escape_property(&title)));
                let message = crate::report::message_with_help(d);
                out.push_str(&format!(
                    "::{} {}::{}{}\n",
                    command(d.severity),
                    properties.join(","),
                    escape_data(&place),
                    escape_data(&message)
                ));
            }
        }
    }
    out.push_str(&format!(
        "kubeyard lint: {} file(s), {} object(s): {} valid, {} invalid, {} skipped; {} error(s), {} warning(s)\n",
        summary.files,
        summary.objects,
        summary.valid,
        summary.invalid,
        summary.skipped,
        summary.errors,
        summary.warnings
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_escaped_as_the_runner_reads_them() {
        assert_eq!(escape_data("50% done\nnext\r"), "50%25 done%0Anext%0D");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }
}
