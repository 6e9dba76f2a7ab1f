use crate::rules::{Finding, ObjectContext, join};

rule! {
    /// Missing or malformed image reference
    ///
    /// The API server requires an image for every container, and the container runtime refuses references that do not
    /// parse (capitals, spaces, empty tags), which leaves pods in InvalidImageName.
    ///
    /// Fix: Write the image as [registry[:port]/]name[:tag][@digest] with a lower-case name.
    "image/invalid-reference", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let node = container.node;
        let Some(entry) = node.entry("image") else {
            let span = node.as_map().and_then(|m| m.first()).map_or(node.span, |e| e.key.span);
            out.push(
                Finding::new(&RULE, span, "container has no image")
                    .label("no image")
                    .help("add `image:` with the image to run")
                    .path(join(&container.path, "image")),
            );
            continue;
        };
        if let Some(Err(error)) = container.image() {
            out.push(
                Finding::new(&RULE, entry.value.span, error.to_string())
                    .label("not an image reference")
                    .path(join(&container.path, "image")),
            );
        }
    }
}
