use crate::names;
use crate::rules::{Finding, ObjectContext};

rule! {
    /// Annotation key the API server rejects, or annotations over 256 KiB
    ///
    /// Annotation keys follow the label key syntax, and all annotations of an object together may hold at most 256
    /// KiB. Tools that stuff large data into annotations (including kubectl's last-applied-configuration) hit this
    /// limit.
    ///
    /// Fix: Fix the key; move large data into a ConfigMap, or use server-side apply, which keeps no last-applied
    /// annotation.
    "metadata/invalid-annotation", Error, Object(check)
}

const ANNOTATIONS_LIMIT: usize = 256 * 1024;

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let Some(annotations) = context.node.get("metadata").and_then(|m| m.get("annotations")) else { return };
    let entries = annotations.as_map().unwrap_or_default();
    let mut total = 0;
    for entry in entries {
        let key = &entry.key.name;
        total += key.len() + entry.value.as_str().map_or(0, str::len);
        if let Some(problem) = names::qualified_name(key).first() {
            out.push(
                Finding::new(&RULE, entry.key.span, format!("annotation key \"{key}\": {problem}"))
                    .label("invalid annotation key")
                    .path(format!("metadata.annotations[{key}]")),
            );
        }
    }
    if total > ANNOTATIONS_LIMIT {
        out.push(
            Finding::new(
                &RULE,
                annotations.span,
                format!("annotations hold {total} bytes; the API server allows {ANNOTATIONS_LIMIT}"),
            )
            .label("too large")
            .path("metadata.annotations"),
        );
    }
}
