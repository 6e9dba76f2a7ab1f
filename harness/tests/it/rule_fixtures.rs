//! Every rule has a fixture that trips it (`bad.yaml`) and one that does not (`good.yaml`)
//! under `fixtures/rules/<rule id>/`. Each is linted on its own, as one run; what the bad
//! one prints is a snapshot under `snapshots/rules/`.

use crate::support;

use kubeyard_compiler::Code;
use kubeyard_compiler::rules::RULES;
use kubeyard_harness::cli::lint::lint_paths;
use kubeyard_harness::report::{self, Summary};
use std::time::Duration;

#[test]
fn every_rule_trips_on_its_bad_fixture_and_not_on_its_good_one() {
    let root = support::workspace();
    std::env::set_current_dir(&root).expect("the workspace is a directory");
    for rule in RULES {
        let dir = format!("fixtures/rules/{}", rule.id);
        for (file, should_trip) in [("bad.yaml", true), ("good.yaml", false)] {
            let path = format!("{dir}/{file}");
            assert!(root.join(&path).is_file(), "{path} is missing: every rule needs both fixtures");
            // A rule off by default is checked as a user who turned it on has it.
            let mut options = kubeyard_compiler::lint::LintOptions::default();
            if !rule.on_by_default {
                options.rules.set(rule, Some(rule.severity));
            }
            let mut linter = kubeyard_compiler::lint::Linter::new(options).expect("the embedded schemas load");
            let reports = lint_paths(&mut linter, std::slice::from_ref(&path));
            let diagnostics: Vec<_> = reports.iter().flat_map(|r| &r.objects).flat_map(|o| &o.diagnostics).collect();
            let tripped = diagnostics.iter().filter(|d| d.code.as_str() == rule.id).count();
            // A fixture must be a well-formed manifest: only rules may object to it.
            let malformed: Vec<_> = diagnostics.iter().filter(|d| !matches!(d.code, Code::Rule(_))).collect();
            assert!(malformed.is_empty(), "{path} should be a valid manifest: {malformed:?}");
            if should_trip {
                assert!(tripped > 0, "{path} should trip {}: {diagnostics:#?}", rule.id);
                let text = report::text::render(
                    &reports,
                    &Summary::of(&reports, Duration::ZERO),
                    &report::text::TextOptions { color: false, verbose: false, max_per_file: None },
                );
                let name = rule.id.replace('/', "__");
                insta::with_settings!({
                    snapshot_path => "../../../snapshots/rules",
                    prepend_module_to_snapshot => false,
                    omit_expression => true,
                    description => format!("kubeyard lint {path}"),
                }, {
                    insta::assert_snapshot!(name, text);
                });
            } else {
                assert_eq!(tripped, 0, "{path} should not trip {}: {diagnostics:#?}", rule.id);
            }
        }
    }
}
