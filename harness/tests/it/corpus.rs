//! The real-world corpus in `../shared/corpus`: every object's verdict is a snapshot, so
//! a change of verdict on anyone's manifests shows in review.

use crate::support;

use kubeyard_compiler::Verdict;
use kubeyard_harness::cli::lint::lint_paths;

#[test]
#[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
fn corpus_verdicts() {
    let corpus = support::corpus();
    let mut linter = support::linter();
    let reports = lint_paths(&mut linter, &[corpus.display().to_string()]);
    let prefix = format!("{}/", corpus.display());
    let mut lines = Vec::new();
    let mut invalid = 0;
    for report in &reports {
        let file = report.name.strip_prefix(&prefix).unwrap_or(&report.name);
        for object in &report.objects {
            let line = report.source.as_ref().map_or(0, |s| s.line_col(object.span.start).line);
            let what =
                object.object.as_ref().map_or_else(|| "-".to_string(), |o| format!("{} {}", o.gvk, o.display_name()));
            let verdict = match object.verdict {
                Verdict::Valid => "valid",
                Verdict::Invalid => "INVALID",
                Verdict::Skipped => "skipped",
            };
            invalid += usize::from(object.verdict == Verdict::Invalid);
            let codes: Vec<&str> = object.diagnostics.iter().map(|d| d.code.as_str()).collect();
            lines.push(format!("{file}:{line} {what} {verdict} {}", codes.join(" ")).trim_end().to_string());
        }
    }
    // The misspelt field a strict validator must find (kubeconform -strict does).
    let scaleio = reports
        .iter()
        .find(|r| r.name.ends_with("_archived/volumes/scaleio/pod.yaml"))
        .expect("the scaleio example is in the corpus");
    assert!(
        scaleio.objects[0]
            .diagnostics
            .iter()
            .any(|d| d.message == "unknown field \"spec.volumes[0].scaleIO.protectionDoamin\""
                && d.help.as_deref() == Some("did you mean \"protectionDomain\"?")),
        "{:?}",
        scaleio.objects[0].diagnostics
    );
    assert!(invalid > 0 && lines.len() > 300, "{invalid} invalid of {}", lines.len());
    insta::with_settings!({snapshot_path => "../../../snapshots/lint", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("corpus-verdicts", lines.join("\n"));
    });
}

/// Online Boutique is a real application and must lint clean.
#[test]
#[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
fn online_boutique_is_valid() {
    let path = support::corpus().join("online-boutique/kubernetes-manifests.yaml");
    let mut linter = support::linter();
    let report = support::lint_file(&mut linter, &path, &support::corpus());
    assert!(report.objects.len() >= 30, "{} objects", report.objects.len());
    for object in &report.objects {
        assert_eq!(object.verdict, Verdict::Valid, "{:?}", object.diagnostics);
    }
}
