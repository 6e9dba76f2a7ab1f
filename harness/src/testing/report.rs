//! Test results for people and for CI: text (each test, each step, and for a failure the
//! expected object, the closest actual one projected onto the expected fields, the
//! differences and the recent events), JUnit and JSON.

use super::expect::{Failure, show};
use super::runner::{StepResult, TestResult};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::{Value, json};
use std::fmt::Write;

/// How text is written: `stable` leaves out timings and masks generated names, for
/// snapshots of reports; `verbose` shows each step's output and detail.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub stable: bool,
    pub verbose: bool,
    /// The closest object as a diff against the expected one (JUnit), instead of each
    /// shown whole.
    pub diff: bool,
}

/// `web-7d4b9c` stays; `web-7d4b9c-x2k8p` (a generated name's five random characters)
/// becomes `web-7d4b9c-*****`.
pub fn mask_generated(text: &str) -> String {
    const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = |j: usize| j >= chars.len() || !(chars[j].is_ascii_alphanumeric() || chars[j] == '-');
        if chars[i] == '-'
            && i + 6 <= chars.len()
            && chars[i + 1..i + 6].iter().all(|c| ALPHABET.contains(*c))
            && boundary(i + 6)
            && i > 0
            && chars[i - 1].is_ascii_alphanumeric()
        {
            out.push_str("-*****");
            i += 6;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The actual object cut down to the fields the expected one names.
fn project(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(wanted), Value::Object(found)) => {
            Value::Object(wanted.iter().filter_map(|(k, w)| found.get(k).map(|f| (k.clone(), project(w, f)))).collect())
        }
        (Value::Array(wanted), Value::Array(found)) => match wanted.first() {
            Some(shape) if shape.is_object() => Value::Array(found.iter().map(|f| project(shape, f)).collect()),
            _ => actual.clone(),
        },
        _ => actual.clone(),
    }
}

fn yaml(value: &Value, indent: &str) -> String {
    let text = kubeyard_compiler::print::to_yaml(value);
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

pub fn failure_text(failure: &Failure, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "      {}", failure.summary);
    if let (Some(expected), Some(closest)) = (&failure.expected, &failure.closest)
        && style.diff
    {
        // One block a CI page shows whole: what differs, marked as a review marks it.
        let name = closest.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let kind = closest.get("kind").and_then(Value::as_str).unwrap_or("object");
        let (wanted, found) = (yaml(expected, ""), yaml(&project(expected, closest), ""));
        let diff = similar::TextDiff::from_lines(&wanted, &found);
        let _ = writeln!(out, "      --- expected");
        let _ = writeln!(out, "      +++ closest: {kind} {name}");
        for change in diff.iter_all_changes() {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            let _ = write!(out, "      {sign}{}", change.value());
            if change.missing_newline() {
                out.push('\n');
            }
        }
        return finish(out, failure, style);
    }
    if let Some(expected) = &failure.expected {
        out.push_str("      expected:\n");
        out.push_str(&yaml(expected, "        "));
    }
    if let Some(closest) = &failure.closest {
        let name = closest.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let kind = closest.get("kind").and_then(Value::as_str).unwrap_or("object");
        let _ = writeln!(out, "      closest: {kind} {name}");
        let shown = match &failure.expected {
            Some(expected) => project(expected, closest),
            None => closest.clone(),
        };
        out.push_str(&yaml(&shown, "        "));
    }
    finish(out, failure, style)
}

/// A failure's differences and events, after the objects.
fn finish(mut out: String, failure: &Failure, style: Style) -> String {
    if !failure.differences.is_empty() {
        out.push_str("      differences:\n");
        for difference in &failure.differences {
            let _ = writeln!(out, "        {difference}");
        }
    }
    if !failure.events.is_empty() {
        out.push_str("      events:\n");
        for event in &failure.events {
            let _ = writeln!(out, "        {event}");
        }
    }
    if style.stable { mask_generated(&out) } else { out }
}

pub fn step_line(step: &StepResult, style: Style) -> String {
    let mark = if step.passed { "✓" } else { "✗" };
    let mut line = format!("  {mark} {}", step.title);
    if !style.stable {
        let _ = write!(line, " ({:.2?}", step.elapsed);
        if step.cluster_time > step.elapsed + std::time::Duration::from_millis(500) {
            let _ =
                write!(line, "; {} in the cluster", show(std::time::Duration::from_secs(step.cluster_time.as_secs())));
        }
        line.push(')');
    }
    line.push('\n');
    if let Some(failure) = &step.failure {
        line.push_str(&failure_text(failure, style));
    }
    if style.verbose {
        let mut more = String::new();
        for shown in step.output.iter().chain(&step.detail) {
            let _ = writeln!(more, "      {shown}");
        }
        line.push_str(&if style.stable { mask_generated(&more) } else { more });
    }
    line
}

/// A test's whole block: its steps, why it could not run, its cleanup, its verdict.
pub fn test_text(result: &TestResult, style: Style) -> String {
    let mut out = String::new();
    for step in &result.steps {
        out.push_str(&step_line(step, style));
    }
    out.push_str(&verdict_text(result, style));
    out
}

pub fn verdict_text(result: &TestResult, style: Style) -> String {
    let mut out = String::new();
    if let Some(error) = &result.error {
        for line in error.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    if let Some(cleanup) = &result.cleanup {
        let _ = writeln!(out, "  ✗ cleanup: {cleanup}");
    }
    let verdict = if result.passed() { "PASS" } else { "FAIL" };
    let _ = write!(out, "{verdict} {} ({})", result.name, result.file.display());
    if !style.stable {
        let _ = write!(out, " in {:.2?}", result.elapsed);
    }
    out.push('\n');
    out
}

/// The last line: how many passed and failed, and which failed; `elapsed` unless stable.
pub fn summary(results: &[TestResult], elapsed: Option<std::time::Duration>) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let plural = if results.len() == 1 { "" } else { "s" };
    let mut line = format!("{} test{plural}: {} passed, {failed} failed", results.len(), results.len() - failed);
    if let Some(elapsed) = elapsed {
        let _ = write!(line, " ({elapsed:.2?})");
    }
    if failed > 0 {
        let names: Vec<&str> = results.iter().filter(|r| !r.passed()).map(|r| r.name.as_str()).collect();
        let _ = write!(line, "\nfailed: {}", names.join(", "));
    }
    line
}

/// JUnit XML: a suite per test (its file as the cases' class name) and a case per step
/// that ran, with its time, its output in `system-out` and, when it failed, the report;
/// a test that could not run or clean up has a case saying so.
pub fn junit(results: &[TestResult]) -> String {
    let mut report = Report::new("kubeyard test");
    for result in results {
        let mut suite = TestSuite::new(result.name.as_str());
        suite.set_time(result.elapsed);
        let classname = result.file.display().to_string();
        let failed = |message: &str, description: String| {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(message.lines().next().unwrap_or_default());
            status.set_description(description);
            status
        };
        if let Some(error) = &result.error {
            let mut case = TestCase::new("run", failed(error, error.clone()));
            case.set_classname(classname.clone());
            suite.add_test_case(case);
        }
        for step in &result.steps {
            let status = match &step.failure {
                None if step.passed => TestCaseStatus::success(),
                failure => failed(
                    failure.as_ref().map_or("failed", |f| f.summary.as_str()),
                    failure
                        .as_ref()
                        .map(|f| failure_text(f, Style { diff: true, ..Style::default() }))
                        .unwrap_or_default(),
                ),
            };
            let mut case = TestCase::new(step.title.as_str(), status);
            case.set_classname(classname.clone());
            case.set_time(step.elapsed);
            if !step.output.is_empty() {
                case.set_system_out(step.output.join("\n"));
            }
            suite.add_test_case(case);
        }
        if let Some(cleanup) = &result.cleanup {
            let mut case = TestCase::new("cleanup", failed(cleanup, cleanup.clone()));
            case.set_classname(classname.clone());
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}

pub fn json(results: &[TestResult]) -> Value {
    let failure = |f: &Failure| json!({"summary": f.summary, "expected": f.expected, "closest": f.closest, "differences": f.differences, "events": f.events});
    let tests: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "file": r.file.display().to_string(),
                "passed": r.passed(),
                "seconds": r.elapsed.as_secs_f64(),
                "error": r.error,
                "cleanup": r.cleanup,
                "steps": r.steps.iter().map(|s| json!({
                    "title": s.title, "passed": s.passed, "seconds": s.elapsed.as_secs_f64(),
                    "clusterSeconds": s.cluster_time.as_secs_f64(), "output": s.output,
                    "detail": s.detail, "failure": s.failure.as_ref().map(failure),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let failed = results.iter().filter(|r| !r.passed()).count();
    json!({"tests": tests, "summary": {"total": results.len(), "passed": results.len() - failed, "failed": failed}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_suffixes_are_masked_and_hashes_kept() {
        assert_eq!(mask_generated("Pod/web-7d4b9c6f8-x2k8p: Started"), "Pod/web-7d4b9c6f8-*****: Started");
        assert_eq!(mask_generated("ReplicaSet/web-7d4b9c6f8 scaled"), "ReplicaSet/web-7d4b9c6f8 scaled");
        assert_eq!(mask_generated("node-1 and web-12345-abcde"), "node-1 and web-12345-abcde");
    }

    #[test]
    fn junit_shows_the_closest_object_as_a_diff_of_the_expected() {
        let failure = Failure {
            summary: "Deployment web does not match".into(),
            expected: Some(
                json!({"kind": "Deployment", "metadata": {"name": "web"}, "status": {"availableReplicas": 2}}),
            ),
            closest: Some(json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "u"},
                                 "status": {"availableReplicas": 1, "replicas": 2}})),
            differences: vec!["status.availableReplicas: expected 2, found 1".into()],
            ..Failure::default()
        };
        let text = failure_text(&failure, Style { diff: true, ..Style::default() });
        assert_eq!(
            text,
            "      Deployment web does not match\n\
             \x20     --- expected\n\
             \x20     +++ closest: Deployment web\n\
             \x20      kind: Deployment\n\
             \x20      metadata:\n\
             \x20        name: web\n\
             \x20      status:\n\
             \x20     -  availableReplicas: 2\n\
             \x20     +  availableReplicas: 1\n\
             \x20     differences:\n\
             \x20       status.availableReplicas: expected 2, found 1\n"
        );
        let report = junit(&[TestResult {
            name: "t".into(),
            file: "t/test.yaml".into(),
            steps: vec![StepResult {
                title: "2 assert Deployment/web".into(),
                passed: false,
                failure: Some(failure),
                ..StepResult::default()
            }],
            ..TestResult::default()
        }]);
        assert!(report.contains("-  availableReplicas: 2\n      +  availableReplicas: 1"), "{report}");
    }

    #[test]
    fn the_closest_object_is_shown_on_the_expected_fields() {
        let expected =
            json!({"status": {"readyReplicas": 3}, "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let actual = json!({"status": {"readyReplicas": 2, "replicas": 3}, "metadata": {"uid": "u"},
                            "spec": {"template": {"spec": {"containers": [{"image": "y", "name": "web"}]}}}});
        assert_eq!(
            project(&expected, &actual),
            json!({"status": {"readyReplicas": 2}, "spec": {"template": {"spec": {"containers": [{"image": "y"}]}}}})
        );
    }
}
