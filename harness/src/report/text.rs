//! The human format: each diagnostic rendered by miette with the file, line and column,
//! a source snippet, its code and its help; then one summary line.

use super::Summary;
use kubeyard_compiler::{Diagnostic, FileReport, ObjectReport, Severity, SourceFile, Verdict};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, SourceCode, SourceSpan, SpanContents};
use rayon::prelude::*;
use std::fmt;

pub struct TextOptions {
    pub color: bool,
    /// One line per object, valid ones included.
    pub verbose: bool,
    /// Diagnostics shown per file at most (`None`: all); the rest are counted. A file
    /// with 100,000 misspelt fields would otherwise print tens of megabytes nobody reads.
    pub max_per_file: Option<usize>,
}

/// What `kubeyard lint` shows of one file unless told otherwise.
pub const DEFAULT_MAX_PER_FILE: usize = 100;

fn handler(color: bool) -> GraphicalReportHandler {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false).with_wrap_lines(false)
}

pub fn render(reports: &[FileReport], summary: &Summary, options: &TextOptions) -> String {
    render_chunks(reports, summary, options).concat()
}

/// The text output in pieces, one per file and the summary last, in input order: files
/// render independently (miette's layout is not cheap), and the pieces can be written
/// out without being joined first.
pub fn render_chunks(reports: &[FileReport], summary: &Summary, options: &TextOptions) -> Vec<String> {
    let mut rendered: Vec<String> = reports
        .par_iter()
        .map_init(
            || handler(options.color),
            |handler, report| {
                let mut out = String::new();
                let mut budget = Budget::new(options.max_per_file);
                for object in &report.objects {
                    if options.verbose {
                        out.push_str(&object_line(report, object));
                        out.push('\n');
                    }
                    render_object(handler, report, object, &mut budget, &mut out);
                }
                budget.say_what_was_left_out(report, &mut out);
                out
            },
        )
        .collect();
    rendered.push(format!("{}\n", summary_line(summary)));
    rendered
}

/// Only the diagnostics of one report, without colour (configuration problems, and
/// what `normalize` and `plan` could not take), at most [`DEFAULT_MAX_PER_FILE`].
pub fn render_diagnostics(report: &FileReport) -> String {
    let handler = handler(false);
    let mut out = String::new();
    let mut budget = Budget::new(Some(DEFAULT_MAX_PER_FILE));
    for object in &report.objects {
        render_object(&handler, report, object, &mut budget, &mut out);
    }
    budget.say_what_was_left_out(report, &mut out);
    out
}

/// How many more diagnostics a file may show, and how many it could not.
struct Budget {
    left: Option<usize>,
    skipped: usize,
}

impl Budget {
    fn new(max: Option<usize>) -> Budget {
        Budget { left: max, skipped: 0 }
    }

    /// Whether one more may be shown (and counts it either way).
    fn take(&mut self) -> bool {
        match &mut self.left {
            None => true,
            Some(0) => {
                self.skipped += 1;
                false
            }
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    fn say_what_was_left_out(&self, report: &FileReport, out: &mut String) {
        if self.skipped > 0 {
            let (n, word) = (self.skipped, if self.skipped == 1 { "diagnostic" } else { "diagnostics" });
            out.push_str(&format!(
                "... and {n} more {word} in {} not shown (`--max-diagnostics 0` shows every one; `--output json` lists them all)\n\n",
                report.name
            ));
        }
    }
}

fn render_object(
    handler: &GraphicalReportHandler,
    report: &FileReport,
    object: &ObjectReport,
    budget: &mut Budget,
    out: &mut String,
) {
    for diagnostic in &object.diagnostics {
        if !budget.take() {
            continue;
        }
        match &report.source {
            Some(source) => {
                let pretty = Pretty { diagnostic, source };
                let mut rendered = String::new();
                match handler.render_report(&mut rendered, &pretty) {
                    Ok(()) => out.push_str(&rendered),
                    Err(_) => out.push_str(&format!("{}: {diagnostic}\n", report.name)),
                }
            }
            None => {
                out.push_str(&format!(
                    "{}[{}]: {}: {}\n",
                    diagnostic.severity.as_str(),
                    diagnostic.code.as_str(),
                    report.name,
                    diagnostic.message
                ));
                if let Some(help) = &diagnostic.help {
                    out.push_str(&format!("  help: {help}\n"));
                }
            }
        }
        out.push('\n');
    }
}

fn object_line(report: &FileReport, object: &ObjectReport) -> String {
    let line = report.source.as_ref().map_or(0, |s| s.line_col(object.span.start).line);
    let what = object.object.as_ref().map_or_else(|| "document".to_string(), |o| o.display_name());
    let mark = match object.verdict {
        Verdict::Valid => "ok",
        Verdict::Invalid => "invalid",
        Verdict::Skipped => "skipped",
    };
    match &object.reason {
        Some(reason) => format!("{mark:>7} {}:{line} {what} ({reason})", report.name),
        None => format!("{mark:>7} {}:{line} {what}", report.name),
    }
}

pub fn summary_line(summary: &Summary) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
    };
    let mut line = format!(
        "{} in {}: {} valid, {} invalid, {} skipped",
        plural(summary.objects, "object"),
        plural(summary.files, "file"),
        summary.valid,
        summary.invalid,
        summary.skipped
    );
    if summary.errors + summary.warnings > 0 {
        line.push_str(&format!(" ({}, {})", plural(summary.errors, "error"), plural(summary.warnings, "warning")));
    }
    if summary.unreadable > 0 {
        line.push_str(&format!("; {} could not be read", plural(summary.unreadable, "path")));
    }
    line.push_str(&format!(" [{:.2}s]", summary.elapsed.as_secs_f64()));
    line
}

/// A compiler diagnostic seen through miette's eyes.
struct Pretty<'a> {
    diagnostic: &'a Diagnostic,
    source: &'a SourceFile,
}

impl fmt::Debug for Pretty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diagnostic, f)
    }
}

impl fmt::Display for Pretty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Pretty<'_> {}

impl miette::Diagnostic for Pretty<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Info => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = |s: kubeyard_compiler::Span| SourceSpan::new((s.start as usize).into(), s.len() as usize);
        let primary = LabeledSpan::new_primary_with_span(self.diagnostic.label.clone(), span(self.diagnostic.span));
        let related = self
            .diagnostic
            .related
            .iter()
            .map(move |(s, label)| LabeledSpan::new_with_span(Some(label.clone()), span(*s)));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

impl SourceCode for Pretty<'_> {
    /// Cut from the file's line index, not by scanning from its start as miette's `str`
    /// source does: a large file with many findings stays linear.
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let source = self.source;
        let text = source.text();
        let start = span.offset();
        let end = start + span.len();
        if end > text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first_line = source.line_col(start as u32).line;
        // A span that ends right after a line break belongs to the line before it.
        let last_line = source.line_col(end.saturating_sub(usize::from(!span.is_empty())) as u32).line.max(first_line);
        let from = first_line.saturating_sub(context_lines_before as u32).max(1);
        let to = (last_line + context_lines_after as u32).min(source.line_count());
        // Without context, miette expects the data to start at the span itself (the header's
        // line:column comes from it); with context, at the start of the first line shown.
        let (data_start, column) = if context_lines_before == 0 {
            (start, source.line_col(start as u32).column as usize - 1)
        } else {
            (source.line_span(from).start as usize, 0)
        };
        let mut data_end = (source.line_span(to).end as usize).max(end);
        // Keep the line break, as miette's own sources do, so the last line renders whole.
        if text[data_end..].starts_with("\r\n") {
            data_end += 2;
        } else if text[data_end..].starts_with('\n') {
            data_end += 1;
        }
        Ok(Box::new(miette::MietteSpanContents::new_named(
            source.name().to_string(),
            &text.as_bytes()[data_start..data_end],
            SourceSpan::new(data_start.into(), data_end - data_start),
            from as usize - 1,
            column,
            // miette counts the lines from the top of the file to the end of the data (it
            // decides from this whether two labels share one snippet).
            to as usize,
        )))
    }
}
