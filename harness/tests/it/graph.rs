//! `kubeyard graph` over every folder of `fixtures/graph/`: the apply order in text, DOT
//! and Mermaid, and the diagnostics for cycles and duplicates, snapshotted.

use crate::support;

#[test]
fn fixtures_graph_in_every_format() {
    let dirs = support::case_dirs("graph");
    assert!(!dirs.is_empty());
    support::snapshots_in("graph").bind(|| {
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let path = format!("fixtures/graph/{name}");
            for format in ["text", "dot", "mermaid"] {
                let output = support::kubeyard(&["graph", "-o", format, &path], None);
                let text = format!(
                    "exit: {}\n--- stdout\n{}--- stderr\n{}",
                    output.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&output.stdout),
                    support::without_timing(&String::from_utf8_lossy(&output.stderr))
                );
                insta::assert_snapshot!(
                    format!("{name}.{format}"),
                    text,
                    &format!("kubeyard graph -o {format} {path}")
                );
            }
        }
    });
}

#[test]
fn the_order_does_not_depend_on_file_or_document_order() {
    // The same objects, documents reversed, in one stream on standard input.
    let mut documents = Vec::new();
    for file in ["fixtures/graph/app/platform.yaml", "fixtures/graph/app/workloads.yaml"] {
        let text = std::fs::read_to_string(support::workspace().join(file)).unwrap();
        documents.extend(text.split("\n---\n").map(|d| d.trim().to_string()));
    }
    documents.reverse();
    let stream = documents.join("\n---\n");
    let reversed = support::kubeyard(&["graph", "-"], Some(stream.as_bytes()));
    let straight = support::kubeyard(&["graph", "fixtures/graph/app"], None);
    assert_eq!(reversed.status.code(), Some(0), "{}", String::from_utf8_lossy(&reversed.stderr));
    assert_eq!(String::from_utf8_lossy(&reversed.stdout), String::from_utf8_lossy(&straight.stdout));
}
