use crate::names;
use crate::rules::{Finding, ObjectContext};
use crate::yaml::Node;

rule! {
    /// Label key or value the API server rejects
    ///
    /// Label keys are qualified names (an optional DNS-subdomain prefix and a name of at most 63 characters) and
    /// values are at most 63 characters of letters, digits, '-', '_' and '.'. Selectors and tools depend on labels,
    /// and an invalid one fails the whole object.
    ///
    /// Fix: Shorten or rewrite the label; put free-form text in an annotation instead.
    "metadata/invalid-label", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    labels(context.node.get("metadata").and_then(|m| m.get("labels")), "metadata.labels", out);
    // A pod's own labels are its template's: checked once, above.
    if let Some(template) = &context.template
        && template.labels_path != "metadata.labels"
    {
        labels(template.labels, template.labels_path, out);
    }
}

fn labels(labels: Option<&Node>, path: &str, out: &mut Vec<Finding>) {
    for entry in labels.and_then(Node::as_map).unwrap_or_default() {
        let key = &entry.key.name;
        let field = format!("{path}[{key}]");
        if let Some(problem) = names::qualified_name(key).first() {
            out.push(
                Finding::new(&RULE, entry.key.span, format!("label key \"{key}\": {problem}"))
                    .label("invalid label key")
                    .path(field.clone()),
            );
        }
        if let Some(value) = entry.value.as_str()
            && let Some(problem) = names::label_value(value).first()
        {
            out.push(
                Finding::new(&RULE, entry.value.span, format!("label value \"{value}\": {problem}"))
                    .label("invalid label value")
                    .path(field),
            );
        }
    }
}
