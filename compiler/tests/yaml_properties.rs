//! Properties of the YAML front end that must hold for any input.
// Tests read files: the no-I/O rule is for the library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use kubeyard_compiler::SourceFile;
use kubeyard_compiler::yaml::Documents;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
        prop_oneof![Just("yes"), Just("on"), Just("0777"), Just("1e3"), Just("~"), Just("<<"), Just("{{x}}")]
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_./-]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// JSON is YAML: any JSON document parses back to the same value, so `--output json`
    /// of any tool and `*.json` manifests lint exactly as the API server reads them.
    #[test]
    fn json_text_parses_to_the_same_value(value in json_value()) {
        for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let source = SourceFile::new("p.json", text.clone()).unwrap();
            let documents: Vec<_> = Documents::new(&source).collect();
            prop_assert_eq!(documents.len(), 1, "{}", text);
            let document = documents.into_iter().next().unwrap().unwrap();
            prop_assert!(document.diagnostics.is_empty(), "{:?}", document.diagnostics);
            prop_assert_eq!(document.root.unwrap().to_json(), value.clone(), "{}", text);
        }
    }

    /// No input panics the parser, and every span it reports lies inside the text on
    /// character boundaries.
    #[test]
    fn arbitrary_text_never_panics(text in "(\\PC|[\\n\\t :\\-\\[\\]{}&*!|>'\"#%@`,?])*") {
        let source = SourceFile::new("p.yaml", text.clone()).unwrap();
        for document in Documents::new(&source) {
            let diagnostics = match document {
                Ok(document) => document.diagnostics,
                Err(diagnostic) => vec![*diagnostic],
            };
            for diagnostic in diagnostics {
                prop_assert!(diagnostic.span.end as usize <= text.len());
                prop_assert!(text.is_char_boundary(diagnostic.span.start as usize));
            }
        }
    }
}
