//! `kubeyard normalize`: each fixture under `fixtures/normalize/` (and every valid lint
//! fixture) printed in normal form is a snapshot under `snapshots/normalize/`; and
//! normalizing is idempotent over every fixture and the whole real-world corpus, through
//! the printed YAML (normalize ∘ parse ∘ print ∘ normalize = normalize).

use crate::support;

use kubeyard_compiler::normalize::normalize;
use kubeyard_compiler::object::{Classified, classify};
use kubeyard_compiler::print::{to_yaml, to_yaml_stream};
use kubeyard_compiler::rules::RuleSettings;
use kubeyard_compiler::yaml::Documents;
use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
use kubeyard_harness::cli::lint::lint_paths;
use kubeyard_harness::cli::normalize::normalized;
use std::path::Path;

fn linter() -> Linter {
    Linter::new(LintOptions { rules: RuleSettings::all_off(), keep_trees: true, ..LintOptions::default() })
        .expect("the embedded schemas load")
}

fn fixture_files() -> Vec<String> {
    let root = support::workspace();
    let mut files = Vec::new();
    for dir in ["fixtures/normalize", "fixtures/lint/valid"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("fixture folder")
            .map(|e| format!("{dir}/{}", e.expect("entry").file_name().to_string_lossy()))
            .collect();
        names.sort();
        files.extend(names);
    }
    files
}

#[test]
fn fixtures_in_normal_form() {
    std::env::set_current_dir(support::workspace()).expect("workspace");
    for file in fixture_files() {
        let mut linter = linter();
        let reports = lint_paths(&mut linter, std::slice::from_ref(&file));
        let invalid: Vec<_> =
            reports.iter().flat_map(|r| &r.objects).filter(|o| o.verdict == Verdict::Invalid).collect();
        assert!(invalid.is_empty(), "{file}: {invalid:?}");
        let objects = normalized(&linter, &reports);
        assert!(!objects.is_empty(), "{file} has no objects");
        let name = file.replace('/', "__");
        insta::with_settings!({
            snapshot_path => "../../../snapshots/normalize",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("kubeyard normalize {file}"),
        }, {
            insta::assert_snapshot!(name, to_yaml_stream(&objects));
        });
    }
}

/// Normalizes every schema-valid object under `paths`, prints it, reads it back and
/// normalizes again: the two must be equal. Returns how many objects were checked.
fn assert_idempotent(paths: &[String]) -> usize {
    let mut linter = linter();
    let reports = lint_paths(&mut linter, paths);
    let mut checked = 0;
    for report in &reports {
        for object in report.objects.iter().filter(|o| o.schema_valid) {
            let (Some(info), Some(tree)) = (&object.object, &object.tree) else { continue };
            let once = normalize(info, tree, linter.catalog());
            let text = to_yaml(&once);
            let source = SourceFile::new("normalized.yaml", text.clone()).expect("printed YAML is text");
            let document = Documents::new(&source).next().expect("one document").expect("printed YAML parses");
            assert!(document.diagnostics.is_empty(), "{}: {:?}\n{text}", report.name, document.diagnostics);
            let root = document.root.expect("a root");
            let Classified::Object(again_info) = classify(&root) else {
                panic!("{}: not an object after printing:\n{text}", report.name)
            };
            let twice = normalize(&again_info, &root, linter.catalog());
            assert_eq!(once, twice, "{}: normalizing twice differs from once\n{text}", report.name);
            checked += 1;
        }
    }
    checked
}

#[test]
fn normalizing_twice_equals_once_over_the_fixtures() {
    std::env::set_current_dir(support::workspace()).expect("workspace");
    let checked = assert_idempotent(&fixture_files());
    assert!(checked >= 25, "only {checked} objects checked");
}

#[test]
#[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
fn normalizing_twice_equals_once_over_the_corpus() {
    let corpus = support::corpus();
    let checked = assert_idempotent(&[corpus.display().to_string()]);
    assert!(checked > 200, "only {checked} corpus objects checked");
    assert!(Path::new(&corpus).is_dir());
}

/// `kubeyard normalize` prints each object as soon as it is normalized; what it prints is
/// exactly the library's normal form of the whole input, in YAML and as one JSON list.
#[test]
fn the_command_prints_what_the_library_normalizes() {
    let paths = ["fixtures/normalize".to_string(), "fixtures/lint/valid".to_string()];
    let mut linter = linter();
    std::env::set_current_dir(support::workspace()).expect("workspace");
    let reports = lint_paths(&mut linter, &paths);
    let values = normalized(&linter, &reports);
    assert!(values.len() > 20, "{} objects", values.len());
    let yaml = support::kubeyard(&["normalize", &paths[0], &paths[1]], None);
    assert_eq!(String::from_utf8_lossy(&yaml.stdout), to_yaml_stream(&values));
    let json = support::kubeyard(&["normalize", "-o", "json", &paths[0], &paths[1]], None);
    let expected = format!("{}\n", serde_json::to_string_pretty(&values).unwrap());
    assert_eq!(String::from_utf8_lossy(&json.stdout), expected);
    let none = support::kubeyard(&["normalize", "-o", "json", "fixtures/lint/invalid/unknown-fields.yaml"], None);
    assert_eq!(String::from_utf8_lossy(&none.stdout), "[]\n");
}
