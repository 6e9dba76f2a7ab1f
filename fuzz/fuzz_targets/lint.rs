//! Any bytes through the whole lint path (text check, YAML, objects, schemas,
//! diagnostics): nothing may panic, and every span must lie inside the text.

#![no_main]

use kubeyard_compiler::{LintOptions, Linter, SourceFile};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn linter() -> &'static Linter {
    static LINTER: OnceLock<Linter> = OnceLock::new();
    LINTER.get_or_init(|| Linter::new(LintOptions::default()).expect("embedded schemas load"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = SourceFile::from_bytes("fuzz.yaml", data.to_vec()) else {
        return;
    };
    for report in linter().lint(&source) {
        for diagnostic in &report.diagnostics {
            assert!(diagnostic.span.start <= diagnostic.span.end);
            assert!(diagnostic.span.end as usize <= source.text().len());
            let _ = source.line_col(diagnostic.span.start);
        }
    }
});
