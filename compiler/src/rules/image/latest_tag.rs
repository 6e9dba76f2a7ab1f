use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, ObjectContext, Rule, join};

pub static RULE: Rule = Rule {
    id: "image/latest-tag",
    name: "Image without a tag, or tagged latest",
    severity: Severity::Warning,
    rationale: "An image without a tag means `:latest`, which moves: two nodes can run different code under one spec, rollbacks do not roll back, and the pull policy defaults to Always.",
    fix: "Pin the image to a version tag or, better, a digest (`image: app:1.4.2` or `image: app@sha256:...`).",
    check: Check::Object(check),
};

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
