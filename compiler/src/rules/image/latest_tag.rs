use crate::rules::{Finding, ObjectContext, join};

rule! {
    /// Image without a tag, or tagged latest
    ///
    /// An image without a tag means `:latest`, which moves: two nodes can run different code under one spec,
    /// rollbacks do not roll back, and the pull policy defaults to Always.
    ///
    /// Fix: Pin the image to a version tag or, better, a digest (`image: app:1.4.2` or `image: app@sha256:...`).
    "image/latest-tag", Warning, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(Ok(reference)) = container.image() else { continue };
        if !reference.is_latest() {
            continue;
        }
        let Some(entry) = container.node.entry("image") else { continue };
        let text = entry.value.as_str().unwrap_or_default();
        let message = if reference.is_untagged() {
            format!("image \"{text}\" has no tag, so it means :latest")
        } else {
            format!("image \"{text}\" uses the moving :latest tag")
        };
        out.push(
            Finding::new(&RULE, entry.value.span, message).label("unpinned image").path(join(&container.path, "image")),
        );
    }
}
