//! Shared by the integration tests: where things are, and how to lint one file the way
//! `kubeyard lint` does.

#![allow(dead_code)]

use kubeyard_compiler::{FileReport, LintOptions, Linter, SourceFile};
use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ sits in the workspace").to_path_buf()
}

/// The shared corpus of real manifests, beside the project root.
pub fn corpus() -> PathBuf {
    let corpus = workspace().join("../shared/corpus");
    assert!(
        corpus.is_dir(),
        "{} is missing: the corpus tests need ../shared/corpus beside the project root",
        corpus.display()
    );
    corpus
}

/// Lints one file, its own CRDs registered first, and names it relative to `base`.
pub fn lint_file(linter: &mut Linter, path: &Path, base: &Path) -> FileReport {
    let name = path.strip_prefix(base).unwrap_or(path).display().to_string();
    let bytes = std::fs::read(path).expect("fixture is readable");
    match SourceFile::from_bytes(name.clone(), bytes.clone()) {
        Ok(source) => {
            linter.register_crds(&source);
            linter.lint_source(source)
        }
        Err(_) => linter.lint_bytes(&name, bytes),
    }
}

pub fn linter() -> Linter {
    Linter::new(LintOptions::default()).expect("the embedded schemas load")
}
