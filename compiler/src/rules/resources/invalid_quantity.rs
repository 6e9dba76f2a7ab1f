use super::{InvalidQuantity, quantity, quantity_map};
use crate::rules::{Finding, ObjectContext, join};
use crate::yaml::Node;

rule! {
    /// Resource quantity that does not parse
    ///
    /// CPU, memory and storage amounts are quantities (`250m`, `1.5Gi`, `2`). The API server refuses anything else,
    /// including common slips like `1GB` or `500 Mi`.
    ///
    /// Fix: Write a number with an optional suffix: m (milli), k, M, G, T (decimal) or Ki, Mi, Gi, Ti (binary).
    "resources/invalid-quantity", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        for invalid in container.resources().map_or(&[][..], |r| &r.invalid) {
            out.push(finding(invalid.span, invalid.message.clone(), invalid.path.clone()));
        }
    }
    let mut invalid = Vec::new();
    other_quantities(context, &mut invalid);
    out.extend(invalid.into_iter().map(|i| finding(i.span, i.message, i.path)));
}

fn finding(span: crate::source::Span, message: String, path: String) -> Finding {
    Finding::new(&RULE, span, message).label("not a quantity").path(path)
}

/// Quantities outside containers: volumes, claims, quotas and limit ranges.
fn other_quantities(context: &ObjectContext<'_>, invalid: &mut Vec<InvalidQuantity>) {
    let spec = context.node.get("spec");
    match (context.info.gvk.group.as_str(), context.info.gvk.kind.as_str()) {
        ("", "PersistentVolumeClaim") => {
            let resources = spec.and_then(|s| s.get("resources"));
            quantity_map(resources.and_then(|r| r.get("requests")), "spec.resources.requests", invalid);
            quantity_map(resources.and_then(|r| r.get("limits")), "spec.resources.limits", invalid);
        }
        ("", "PersistentVolume") => {
            quantity_map(spec.and_then(|s| s.get("capacity")), "spec.capacity", invalid);
        }
        ("", "ResourceQuota") => {
            quantity_map(spec.and_then(|s| s.get("hard")), "spec.hard", invalid);
        }
        ("", "LimitRange") => {
            for (i, limit) in
                spec.and_then(|s| s.get("limits")).and_then(Node::as_seq).unwrap_or_default().iter().enumerate()
            {
                for field in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
                    quantity_map(limit.get(field), &format!("spec.limits[{i}].{field}"), invalid);
                }
            }
        }
        _ => {}
    }
    if let Some(template) = &context.template {
        for (i, volume) in template.spec.get("volumes").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            if let Some(size) = volume.get("emptyDir").and_then(|e| e.entry("sizeLimit")) {
                quantity(size, &format!("{}.volumes[{i}].emptyDir", template.spec_path), invalid);
            }
        }
        quantity_map(template.spec.get("overhead"), &join(template.spec_path, "overhead"), invalid);
    }
}
