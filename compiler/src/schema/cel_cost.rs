//! The static cost of CRD validation rules, as the API server estimates it before it
//! accepts a CRD: each rule's worst case over the largest objects its schema allows
//! (`maxItems`, `maxLength`, `maxProperties`, or what fits in a 3 MiB request when they
//! are missing), refused over 10,000,000 per rule or 100,000,000 for a whole schema, with
//! Kubernetes' messages. This is what keeps rules' run time bounded: a rule that passes
//! cannot loop over a million items a million times.
//!
//! The model follows cel-go's cost estimator with apiextensions' size estimates: an
//! identifier or a field selection costs 1; a comprehension (`all`, `exists`, `map`,
//! `filter`, `exists_one`) its range plus, per element, its condition and step; string
//! functions a tenth of the string's length (`contains` and `matches` the product of
//! both sizes); `in` over a list its length; comparing strings or lists their size. It
//! is an estimate of an estimate: cel-go's exact constants for every library function
//! are not reproduced, so a rule near the limit may be judged on the other side of it
//! than Kubernetes would judge it. Far from it (the rules people write, and the unbounded
//! nested loops the limit exists for) the verdict is the same.

use crate::admission::Cause;
use crate::field_error;
use kube_cel::cel::common::ast::{Expr, IdedExpr, LiteralValue};
use serde_json::Value;

/// `StaticEstimatedCostLimit`: one rule's estimated cost at most.
pub const RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: every rule of a schema, each times how often it runs.
pub const SCHEMA_LIMIT: u64 = 100_000_000;
/// The largest request the API server takes, from which unbounded sizes are estimated.
const MAX_REQUEST: u64 = 3 * 1024 * 1024;
/// cel-go's `StringTraversalCostFactor`.
const TRAVERSAL: f64 = 0.1;

const HINT: &str = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, \
                    and strings are declared)";

/// What a sub-expression evaluates to, as far as size goes.
#[derive(Clone, Debug)]
enum Shape<'s> {
    /// A value of a schema node.
    Node(&'s Value),
    /// A string of at most this many bytes.
    Text(u64),
    /// A list of at most `.1` items shaped `.0`.
    List(Box<Shape<'s>>, u64),
    /// Anything else: sized 1.
    Small,
}

fn node_type(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn bound(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_u64)
}

/// The smallest JSON a value of the node can be written as (apiextensions' `estimateMinSizeJSON`).
fn min_size(schema: &Value) -> u64 {
    match node_type(schema) {
        "string" => bound(schema, "minLength").unwrap_or(0).saturating_add(2),
        "boolean" => 4,
        "integer" | "number" => 1,
        // `{}` or `[]`.
        _ => 2,
    }
}

/// How many items a list node holds at most.
fn max_items(schema: &Value) -> u64 {
    bound(schema, "maxItems").unwrap_or_else(|| {
        let item = schema.get("items").map_or(1, min_size);
        (MAX_REQUEST - 2) / item.saturating_add(1).max(1)
    })
}

/// How many entries a map node (`additionalProperties`) holds at most.
fn max_properties(schema: &Value) -> u64 {
    bound(schema, "maxProperties").unwrap_or_else(|| {
        let value = schema.get("additionalProperties").filter(|v| v.is_object()).map_or(1, min_size);
        // A key is at least `""` and a colon, an entry a comma.
        (MAX_REQUEST - 2) / value.saturating_add(4).max(1)
    })
}

/// The size of a value of a shape: a string's length, a list's items, a map's entries.
fn size(shape: &Shape<'_>) -> u64 {
    match shape {
        Shape::Text(length) => *length,
        Shape::List(_, items) => *items,
        Shape::Small => 1,
        Shape::Node(schema) => match node_type(schema) {
            "string" => bound(schema, "maxLength").unwrap_or(MAX_REQUEST - 2),
            "array" => max_items(schema),
            "object" if schema.get("additionalProperties").is_some_and(Value::is_object) => max_properties(schema),
            _ => 1,
        },
    }
}

/// The shape of an element when iterating a value.
fn element<'s>(shape: &Shape<'s>) -> Shape<'s> {
    match shape {
        Shape::List(item, _) => (**item).clone(),
        Shape::Node(schema) => match (schema.get("items"), node_type(schema)) {
            (Some(items), _) => Shape::Node(items),
            // Iterating a map goes over its keys.
            (None, "object") => Shape::Text(MAX_REQUEST - 2),
            _ => Shape::Small,
        },
        _ => Shape::Small,
    }
}

fn field<'s>(shape: &Shape<'s>, name: &str) -> Shape<'s> {
    let Shape::Node(schema) = shape else { return Shape::Small };
    match schema.pointer(&format!("/properties/{}", name.replace('~', "~0").replace('/', "~1"))) {
        Some(child) => Shape::Node(child),
        None => match schema.get("additionalProperties") {
            Some(child) if child.is_object() => Shape::Node(child),
            _ => Shape::Small,
        },
    }
}

fn traversal(length: u64) -> u64 {
    (length as f64 * TRAVERSAL).ceil() as u64
}

/// Variables in scope: `self`, `oldSelf` and comprehension variables.
struct Scope<'a, 's> {
    name: &'a str,
    shape: Shape<'s>,
    outer: Option<&'a Scope<'a, 's>>,
}

impl<'s> Scope<'_, 's> {
    fn lookup(&self, name: &str) -> Option<Shape<'s>> {
        if self.name == name {
            return Some(self.shape.clone());
        }
        self.outer.and_then(|outer| outer.lookup(name))
    }
}

/// The estimated cost of an expression, and the shape of its value.
fn estimate<'s>(expr: &IdedExpr, scope: &Scope<'_, 's>) -> (u64, Shape<'s>) {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(text)) => (0, Shape::Text(text.len() as u64)),
        Expr::Literal(_) => (0, Shape::Small),
        Expr::Ident(name) => (1, scope.lookup(name).unwrap_or(Shape::Small)),
        Expr::Select(select) => {
            let (cost, operand) = estimate(&select.operand, scope);
            (cost.saturating_add(1), field(&operand, &select.field))
        }
        Expr::List(list) => {
            let mut cost = 10u64;
            let mut item = Shape::Small;
            for element in &list.elements {
                let (c, shape) = estimate(element, scope);
                cost = cost.saturating_add(c);
                item = shape;
            }
            (cost, Shape::List(Box::new(item), list.elements.len() as u64))
        }
        Expr::Map(map) => (30u64.saturating_add(map.entries.len() as u64), Shape::Small),
        Expr::Struct(_) | Expr::Unspecified => (1, Shape::Small),
        Expr::Comprehension(comprehension) => {
            let (range_cost, range) = estimate(&comprehension.iter_range, scope);
            let items = size(&range);
            let iterated = Scope { name: &comprehension.iter_var, shape: element(&range), outer: Some(scope) };
            let second;
            let inner = match &comprehension.iter_var2 {
                Some(name) => {
                    second = Scope { name, shape: element(&range), outer: Some(&iterated) };
                    &second
                }
                None => &iterated,
            };
            let (init_cost, _) = estimate(&comprehension.accu_init, scope);
            let (condition, _) = estimate(&comprehension.loop_cond, inner);
            let (step, stepped) = estimate(&comprehension.loop_step, inner);
            let (result_cost, _) = estimate(&comprehension.result, scope);
            let per_item = condition.saturating_add(step);
            let cost = range_cost
                .saturating_add(init_cost)
                .saturating_add(items.saturating_mul(per_item))
                .saturating_add(result_cost);
            // `map` and `filter` make a list of at most as many items.
            let shape = match stepped {
                Shape::List(item, _) => Shape::List(item, items),
                _ => Shape::Small,
            };
            (cost, shape)
        }
        Expr::Call(call) => {
            let mut cost = 0u64;
            let target = call.target.as_ref().map(|target| {
                let (c, shape) = estimate(target, scope);
                cost = cost.saturating_add(c);
                shape
            });
            let args: Vec<Shape<'s>> = call
                .args
                .iter()
                .map(|arg| {
                    let (c, shape) = estimate(arg, scope);
                    cost = cost.saturating_add(c);
                    shape
                })
                .collect();
            let (own, shape) = call_cost(&call.func_name, target.as_ref(), &args);
            (cost.saturating_add(own), shape)
        }
    }
}

/// A function's own cost, given its receiver's and arguments' shapes.
fn call_cost<'s>(name: &str, target: Option<&Shape<'s>>, args: &[Shape<'s>]) -> (u64, Shape<'s>) {
    let subject = target.or(args.first());
    let subject_size = subject.map_or(1, size);
    let argument_size = |index: usize| args.get(index).map_or(1, size);
    let is_text = |shape: Option<&Shape<'_>>| match shape {
        Some(Shape::Text(_)) => true,
        Some(Shape::Node(schema)) => node_type(schema) == "string",
        _ => false,
    };
    match name {
        "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" => {
            let smaller = argument_size(0).min(argument_size(1));
            let cost = if is_text(args.first()) || is_text(args.get(1)) { traversal(smaller) } else { 1 };
            (cost.max(1), Shape::Small)
        }
        "@in" => {
            let collection = args.get(1);
            let cost = match collection {
                Some(Shape::List(..)) => argument_size(1),
                Some(Shape::Node(schema)) if node_type(schema) == "array" => argument_size(1),
                _ => 1,
            };
            (cost.max(1), Shape::Small)
        }
        "_+_" if is_text(args.first()) => {
            let length = argument_size(0).saturating_add(argument_size(1));
            (traversal(length).max(1), Shape::Text(length))
        }
        // cel-go's: the string's traversal times the substring's, and for a regular
        // expression its length at a quarter per character.
        "contains" => (traversal(subject_size).saturating_mul(traversal(argument_size(0))).max(1), Shape::Small),
        "matches" | "find" | "findAll" => {
            let pattern = (argument_size(0) as f64 * 0.25).ceil() as u64;
            (traversal(subject_size.saturating_add(1)).saturating_mul(pattern).max(1), Shape::Small)
        }
        "startsWith" | "endsWith" => (traversal(argument_size(0)).max(1), Shape::Small),
        "lowerAscii" | "upperAscii" | "trim" | "replace" | "split" | "substring" | "charAt" | "indexOf"
        | "lastIndexOf" | "join" | "reverse" | "quantity" | "isQuantity" | "url" | "isURL" | "ip" | "isIP" | "cidr"
        | "isCIDR" | "base64.decode" | "base64.encode" => {
            (traversal(subject_size).max(1), subject.cloned().unwrap_or(Shape::Small))
        }
        "isSorted" | "sum" | "min" | "max" => (subject_size.max(1), Shape::Small),
        _ => (1, Shape::Small),
    }
}

/// One rule's estimated cost on a node of `schema`.
pub fn rule_cost(rule: &str, schema: &Value) -> Option<u64> {
    let program = kube_cel::cel::Program::compile(rule).ok()?;
    let this = Scope { name: "self", shape: Shape::Node(schema), outer: None };
    let old = Scope { name: "oldSelf", shape: Shape::Node(schema), outer: Some(&this) };
    Some(estimate(program.expression(), &old).0)
}

/// How much a cost exceeds a limit, as Kubernetes says it.
fn factor(cost: u64, limit: u64) -> String {
    let exceeded = cost as f64 / limit as f64;
    if exceeded > 100.0 {
        "more than 100x".to_string()
    } else if exceeded < 1.5 {
        format!("{exceeded:.6}x")
    } else {
        format!("{exceeded:.1}x")
    }
}

/// Refuses rules of a CRD version's schema (at `path`) whose estimated cost exceeds the
/// limits, as the API server refuses the CRD.
pub fn check_rules_cost(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut contributions = Vec::new();
    walk(schema, path, Some(1), &mut contributions, causes);
    let total = contributions.iter().fold(0u64, |sum, (_, cost)| sum.saturating_add(*cost));
    if total > SCHEMA_LIMIT {
        // The most expensive rules are named, as Kubernetes names its four costliest.
        contributions.sort_by_key(|(_, cost)| std::cmp::Reverse(*cost));
        for (rule, _) in contributions.iter().take(MOST_EXPENSIVE) {
            causes.push(field_error::forbidden(
                rule.as_str(),
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        causes.push(field_error::forbidden(
            path,
            &format!(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of {} {HINT}",
                factor(total, SCHEMA_LIMIT)
            ),
        ));
    }
}

/// How many of the costliest rules a refused schema names.
const MOST_EXPENSIVE: usize = 4;

/// How many times a node can occur in one object when some list or map above it is
/// unbounded: as many of its smallest self as fit in a request (apiextensions'
/// `unboundedCardinality`).
fn unbounded_occurrences(schema: &Value) -> u64 {
    (MAX_REQUEST - 2) / min_size(schema).saturating_add(1).max(1)
}

/// Each node's rules, with how many times a node there can occur in one object (the
/// product of the bounds above it; `None` once one is unbounded): a rule's cost times that
/// is judged against the limit, and goes with its path into `contributions`, as
/// Kubernetes' `getExpressionCost` has it.
fn walk(
    schema: &Value,
    path: &str,
    occurrences: Option<u64>,
    contributions: &mut Vec<(String, u64)>,
    causes: &mut Vec<Cause>,
) {
    let Some(map) = schema.as_object() else { return };
    for (index, rule) in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let Some(cost) = rule.get("rule").and_then(Value::as_str).and_then(|text| rule_cost(text, schema)) else {
            continue;
        };
        let at = format!("{path}.x-kubernetes-validations[{index}].rule");
        let cost = cost.saturating_mul(occurrences.unwrap_or_else(|| unbounded_occurrences(schema)));
        if cost > RULE_LIMIT {
            causes.push(field_error::forbidden(
                at.as_str(),
                &format!("estimated rule cost exceeds budget by factor of {} {HINT}", factor(cost, RULE_LIMIT)),
            ));
        }
        contributions.push((at, cost));
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, child) in properties {
            walk(child, &format!("{path}.properties[{name}]"), occurrences, contributions, causes);
        }
    }
    if let Some(items) = map.get("items") {
        let repeated = occurrences.zip(bound(schema, "maxItems")).map(|(n, items)| n.saturating_mul(items));
        walk(items, &format!("{path}.items"), repeated, contributions, causes);
    }
    if let Some(additional) = map.get("additionalProperties").filter(|v| v.is_object()) {
        let repeated = occurrences.zip(bound(schema, "maxProperties")).map(|(n, entries)| n.saturating_mul(entries));
        walk(additional, &format!("{path}.additionalProperties"), repeated, contributions, causes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(schema: Value) -> Vec<String> {
        let mut causes = Vec::new();
        check_rules_cost(&schema, "spec.versions[0].schema.openAPIV3Schema", &mut causes);
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn bounded_rules_pass_and_unbounded_loops_are_refused_as_kubernetes_refuses_them() {
        // Kubernetes' documentation's example: a list of strings checked item by item.
        let unbounded = json!({"type": "object", "properties": {"foo": {
            "type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(x, x.contains('a string'))"}]}}});
        // The rule is too costly, and so is the schema it makes up all of.
        let rule = "spec.versions[0].schema.openAPIV3Schema.properties[foo].x-kubernetes-validations[0].rule";
        assert_eq!(
            messages(unbounded),
            [
                format!(
                    "{rule}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try \
                     simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and \
                     strings are declared)"
                ),
                format!(
                    "{rule}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire \
                     OpenAPIv3 schema"
                ),
                "spec.versions[0].schema.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost \
                 total for entire OpenAPIv3 schema exceeds budget by factor of more than 100x (try simplifying the \
                 rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
                    .to_string(),
            ]
        );
        // Bounded, the same rule is cheap.
        let bounded = json!({"type": "object", "properties": {"foo": {
            "type": "array", "maxItems": 25, "items": {"type": "string", "maxLength": 10},
            "x-kubernetes-validations": [{"rule": "self.all(x, x.contains('a string'))"}]}}});
        assert!(messages(bounded).is_empty());
        // The rules people write on objects cost little.
        let cheap = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.min <= self.max"}, {"rule": "self.name.startsWith('g')"},
                                         {"rule": "self.max == oldSelf.max"}]}}});
        assert!(messages(cheap.clone()).is_empty());
        assert!(rule_cost("self.min <= self.max", &cheap["properties"]["spec"]).unwrap() < 10);
    }

    #[test]
    fn a_rule_is_priced_by_how_often_its_node_can_occur() {
        // A cheap rule on every item of unbounded lists is priced at as many items as
        // fit in a request, not the product of the unbounded levels: Kubernetes takes it.
        let nested = json!({"type": "object", "properties": {"rows": {"type": "array", "items": {
            "type": "array", "items": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self != ''"}, {"rule": "self.startsWith('a')"}]}}}}});
        assert!(messages(nested).is_empty());
        // A string function over unbounded strings, on every item, is too costly alone.
        let scanning = json!({"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self.contains('a')"}]}}}});
        assert!(
            messages(scanning)[0]
                .contains("x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget")
        );
        // A common pattern check on an unbounded string is accepted, as by Kubernetes.
        let pattern = json!({"type": "object", "properties": {"name": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"}]}}});
        assert!(messages(pattern).is_empty());
        // Each rule within its limit, all of them together over the schema's.
        let rules: Vec<Value> = (0..25).map(|i| json!({"rule": format!("self.contains('{i}')")})).collect();
        let many = json!({"type": "object", "properties": {"hosts": {"type": "array", "maxItems": 5000,
            "items": {"type": "string", "maxLength": 10000, "x-kubernetes-validations": rules}}}});
        let found = messages(many);
        assert_eq!(found.len(), 5, "the four costliest rules and the total: {found:?}");
        assert!(found[0].ends_with("].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema"), "{found:?}");
        assert!(
            found[4].starts_with(
                "spec.versions[0].schema.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost \
                 total for entire OpenAPIv3 schema exceeds budget by factor of 1.2"
            ),
            "{found:?}"
        );
        // Bad bounds do not overflow.
        let absurd = json!({"type": "array", "items": {"type": "string", "minLength": u64::MAX - 1},
            "x-kubernetes-validations": [{"rule": "self.all(x, x.contains('a'))"}]});
        let _ = messages(absurd);
    }

    #[test]
    fn factors_are_printed_as_kubernetes_prints_them() {
        assert_eq!(factor(12_000_000, RULE_LIMIT), "1.200000x");
        assert_eq!(factor(25_000_000, RULE_LIMIT), "2.5x");
        assert_eq!(factor(u64::MAX, RULE_LIMIT), "more than 100x");
    }
}
