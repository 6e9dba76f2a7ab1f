//! `resources/*`: CPU, memory and other amounts, what containers request and what they
//! are limited to. Each container's requests and limits are parsed once
//! (`Container::resources`) for all four rules.

mod invalid_quantity;
mod missing_limits;
mod missing_requests;
mod requests_above_limits;

use super::{Container, Finding, Rule, join};
use crate::quantity::Quantity;
use crate::source::Span;
use crate::yaml::{Entry, Node, Value};
use std::collections::BTreeMap;

pub(super) const RULES: &[&Rule] =
    &[&invalid_quantity::RULE, &requests_above_limits::RULE, &missing_requests::RULE, &missing_limits::RULE];

/// A quantity that does not parse, for `resources/invalid-quantity`.
pub(crate) struct InvalidQuantity {
    span: Span,
    message: String,
    path: String,
}

/// Parsed quantities by resource name, each with the node it was read from.
type Quantities<'a> = BTreeMap<String, (Quantity, &'a Node)>;

/// A container's `resources`, parsed.
pub(crate) struct ContainerResources<'a> {
    /// `<container path>.resources`
    path: String,
    /// What parsed; a quantity that did not parse is in `invalid` and counts as unset.
    requests: Quantities<'a>,
    limits: Quantities<'a>,
    invalid: Vec<InvalidQuantity>,
}

impl<'a> ContainerResources<'a> {
    pub(super) fn new(container: &'a Node, container_path: &str) -> ContainerResources<'a> {
        let resources = container.get("resources");
        let path = join(container_path, "resources");
        let mut invalid = Vec::new();
        let requests = quantity_map(resources.and_then(|r| r.get("requests")), &join(&path, "requests"), &mut invalid);
        let limits = quantity_map(resources.and_then(|r| r.get("limits")), &join(&path, "limits"), &mut invalid);
        ContainerResources { path, requests, limits, invalid }
    }
}

/// Parses one quantity field at `path` (the map it is in); what does not parse goes to
/// `invalid`.
fn quantity(entry: &Entry, path: &str, invalid: &mut Vec<InvalidQuantity>) -> Option<Quantity> {
    let text = match &entry.value.value {
        Value::String(s) => s.clone(),
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => entry.value.to_json().to_string(),
        _ => return None,
    };
    match text.parse::<Quantity>() {
        Ok(q) => Some(q),
        Err(error) => {
            invalid.push(InvalidQuantity {
                span: entry.value.span,
                message: error.to_string(),
                path: format!("{path}.{}", entry.key.name),
            });
            None
        }
    }
}

/// Parses a map of quantities (`requests`, `limits`, `hard`, ...) at `path`.
fn quantity_map<'a>(map: Option<&'a Node>, path: &str, invalid: &mut Vec<InvalidQuantity>) -> Quantities<'a> {
    let mut parsed = BTreeMap::new();
    for entry in map.and_then(Node::as_map).unwrap_or_default() {
        if let Some(q) = quantity(entry, path, invalid) {
            parsed.insert(entry.key.name.clone(), (q, &entry.value));
        }
    }
    parsed
}

/// The finding on the resources (`cpu`, `memory`) a container lacks, if any: `message`
/// says it from the container's name and the list (`cpu or memory`). It points at the
/// container's `resources` key, else its name, else the container.
fn missing(
    (rule, label): (&'static Rule, &'static str),
    container: &Container<'_>,
    (missing, path): (&[&str], &str),
    message: impl FnOnce(&str, String) -> String,
) -> Option<Finding> {
    if missing.is_empty() {
        return None;
    }
    let node = container.node;
    let anchor =
        node.entry("resources").map_or_else(|| node.entry("name").map_or(node.span, |e| e.value.span), |e| e.key.span);
    let name = node.get("name").and_then(Node::as_str).unwrap_or("?");
    Some(Finding::new(rule, anchor, message(name, missing.join(" or "))).label(label).path(path))
}
