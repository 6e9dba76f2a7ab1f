//! docs/apiserver.md lists the served resources from the table the server serves; this
//! test keeps them the same (`UPDATE_DOCS=1` rewrites the list).

use crate::support;

use kubeyard_harness::apiserver::resources;

#[test]
fn the_served_resources_are_documented() {
    let path = support::workspace().join("docs/apiserver.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let header = "|---|---|---|---|---|---|\n";
    let start = text.find("<!-- resources:").and_then(|at| text[at..].find(header).map(|h| at + h + header.len()));
    let end = text.find("<!-- /resources -->");
    let (Some(start), Some(end)) = (start, end) else { panic!("docs/apiserver.md lost its resource markers") };
    let expected = resources::markdown_rows();
    if text[start..end] != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{expected}{}", &text[..start], &text[end..])).unwrap();
        } else {
            panic!(
                "docs/apiserver.md is out of date: run UPDATE_DOCS=1 cargo test -p kubeyard-harness --test it -- docs::"
            );
        }
    }
}
