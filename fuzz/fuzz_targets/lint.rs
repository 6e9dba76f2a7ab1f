//! Any bytes through the whole lint path (text check, YAML, templates, objects, schemas,
//! diagnostics): nothing may panic, and every span must lie inside the text, on
//! character boundaries.

#![no_main]

use kubeyard_compiler::template::Values;
use kubeyard_compiler::{LintOptions, Linter, SourceFile};
use std::sync::Arc;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn linter() -> &'static Linter {
    static LINTER: OnceLock<Linter> = OnceLock::new();
    LINTER.get_or_init(|| {
        // Templates on, with a few values, so `${ }` in the input is parsed and filled.
        let mut values = Values::default();
        let file = SourceFile::new("values.yaml", "name: web\nreplicas: 3\nimage: {tag: v1}\nlist: [a, b]\n")
            .expect("values are text");
        values.merge_file(&file).expect("values parse");
        Linter::new(LintOptions { values: Some(Arc::new(values)), ..LintOptions::default() })
            .expect("embedded schemas load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = SourceFile::from_bytes("fuzz.yaml", data.to_vec()) else {
        return;
    };
    for report in linter().lint(&source) {
        for diagnostic in &report.diagnostics {
            assert!(diagnostic.span.start <= diagnostic.span.end);
            assert!(diagnostic.span.end as usize <= source.text().len());
            assert!(source.text().is_char_boundary(diagnostic.span.start as usize));
            assert!(source.text().is_char_boundary(diagnostic.span.end as usize));
            let _ = source.line_col(diagnostic.span.start);
        }
    }
});
