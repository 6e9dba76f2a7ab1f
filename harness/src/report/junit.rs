//! `--output junit`: one test suite per file, one test case per object, so CI systems
//! show each invalid manifest as a failed test with its diagnostics.

use kubeyard_compiler::{FileReport, Verdict};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

pub fn render(reports: &[FileReport]) -> String {
    let mut junit = Report::new("kubeyard lint");
    for report in reports {
        let mut suite = TestSuite::new(report.name.as_str());
        for object in &report.objects {
            let line = report.source.as_ref().map_or(0, |s| s.line_col(object.span.start).line);
            let what = object.object.as_ref().map_or_else(|| "document".to_string(), |o| o.display_name());
            let name = match (object.document, object.item) {
                (Some(d), Some(i)) => format!("{what} (document {}, item {i}, line {line})", d + 1),
                (Some(d), None) => format!("{what} (document {}, line {line})", d + 1),
                _ => what,
            };
            let status = match object.verdict {
                Verdict::Valid => TestCaseStatus::success(),
                Verdict::Skipped => {
                    let mut status = TestCaseStatus::skipped();
                    if let Some(reason) = &object.reason {
                        status.set_message(reason.as_str());
                    }
                    status
                }
                Verdict::Invalid => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let errors: Vec<_> = object.diagnostics.iter().filter(|d| d.is_error()).collect();
                    if let Some(first) = errors.first() {
                        status.set_message(first.message.as_str());
                        status.set_type(first.code.as_str());
                    }
                    let description: Vec<String> = object
                        .diagnostics
                        .iter()
                        .map(|d| {
                            let at = report.source.as_ref().map(|s| s.line_col(d.span.start));
                            let place = at.map_or_else(
                                || report.name.clone(),
                                |p| format!("{}:{}:{}", report.name, p.line, p.column),
                            );
                            let help = d.help.as_deref().map(|h| format!("\n  help: {h}")).unwrap_or_default();
                            format!("{place}: {}[{}]: {}{help}", d.severity.as_str(), d.code.as_str(), d.message)
                        })
                        .collect();
                    status.set_description(description.join("\n"));
                    status
                }
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(report.name.as_str());
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().expect("an in-memory JUnit report always serializes")
}
