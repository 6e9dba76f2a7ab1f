//! Every fixture under `fixtures/lint/`, linted on its own: its text and JSON output are
//! snapshots under `snapshots/lint/`. Valid fixtures must stay valid, invalid ones must
//! keep failing, and any change of wording shows up in review.

use crate::support;

use kubeyard_compiler::Verdict;
use kubeyard_harness::report::{self, Summary};
use std::time::Duration;

#[test]
fn fixtures() {
    let root = support::workspace();
    let mut fixtures = Vec::new();
    for group in ["valid", "invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join("fixtures/lint").join(group))
            .expect("fixtures/lint/{valid,invalid} exist")
            .map(|entry| entry.expect("fixture directory is readable").path())
            .collect();
        files.sort();
        fixtures.extend(files);
    }
    assert!(fixtures.len() >= 20, "only {} fixtures found", fixtures.len());
    for path in &fixtures {
        let path = path.as_path();
        let mut linter = support::linter();
        let report = support::lint_file(&mut linter, path, &root);
        let reports = vec![report];
        let summary = Summary::of(&reports, Duration::ZERO);
        let valid_fixture = path.parent().is_some_and(|p| p.ends_with("valid"));
        let verdicts: Vec<Verdict> = reports[0].objects.iter().map(|o| o.verdict).collect();
        if valid_fixture {
            assert!(!verdicts.contains(&Verdict::Invalid), "{} should be valid", path.display());
        } else {
            assert!(verdicts.contains(&Verdict::Invalid), "{} should be invalid", path.display());
        }
        let text = report::text::render(
            &reports,
            &summary,
            &report::text::TextOptions { color: false, verbose: true, max_per_file: None },
        );
        let json = report::json::render(&reports, &summary, "1.37", true);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let group = if valid_fixture { "valid" } else { "invalid" };
        insta::with_settings!({
            snapshot_path => "../../../snapshots/lint",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("kubeyard lint fixtures/lint/{group}/{name}"),
        }, {
            insta::assert_snapshot!(format!("{group}__{name}.text"), text);
            insta::assert_snapshot!(format!("{group}__{name}.json"), json);
        });
    }
}
