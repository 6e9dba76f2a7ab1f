//! `docs/diagnostics.md` is generated from the codes themselves, so it cannot drift.
//! Regenerate with `UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs`.
// Tests read and write files: the no-I/O rule is for the library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use kubeyard_compiler::Code;
use std::path::Path;

fn render() -> String {
    let mut out = String::from(
        "# Diagnostic codes\n\n\
         <!-- Generated from `compiler/src/diagnostic.rs` by `UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs`. -->\n\n\
         Every diagnostic kubeyard prints carries one of these codes. A code keeps its meaning\n\
         once released; new codes are added, none is reused. In `--output json` the code is the\n\
         `code` field of each diagnostic. Findings of semantic rules carry the rule's id as\n\
         their code: see [rules.md](rules.md).\n\n\
         | code | meaning |\n|---|---|\n",
    );
    for code in Code::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.summary().replace('|', "\\|")));
    }
    out
}

fn check(file: &str, expected: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(file);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, expected).expect("docs/ is writable");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/{file} is out of date: run UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs"
    );
}

#[test]
fn diagnostics_reference_is_current() {
    check("diagnostics.md", &render());
}

#[test]
fn normalization_reference_is_current() {
    check("normalize.md", &kubeyard_compiler::normalize::markdown());
}

#[test]
fn rules_reference_is_current() {
    check("rules.md", &kubeyard_compiler::rules::markdown());
}
