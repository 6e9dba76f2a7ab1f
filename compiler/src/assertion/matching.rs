//! Partial object matching, as a test asserts an object: what the expected object says
//! must hold in the actual one, and nothing else matters. Maps match as subsets; a `null`
//! expects the field absent. Lists match without regard to order: every expected item
//! must match an item of its own in the actual list (extra actual items are fine), paired
//! by the schema's merge key where the list has one (containers by `name`, conditions by
//! `type`), otherwise by trying every pairing, so the order a controller happens to write
//! a list in never fails a test (the lengths-must-match trap of kuttl and chainsaw).
//! `ordered` asks for item-by-item matching of lists of the same length instead.
//! Numbers compare by value and quantities by amount (`1Gi` matches `1024Mi`).

use crate::list_merge::Schema;
use crate::quantity::Quantity;
use serde_json::Value;

/// One field where the actual object differs from the expected one.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// kubectl-style: `spec.template.spec.containers[name=web].image`.
    pub path: String,
    pub expected: Value,
    /// `None`: the field is not there.
    pub actual: Option<Value>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.actual, &self.expected) {
            (None, expected) => write!(f, "{}: expected {expected}, but it is not there", self.path),
            (Some(actual), Value::Null) => write!(f, "{}: expected no value, found {actual}", self.path),
            (Some(actual), expected) => write!(f, "{}: expected {expected}, found {actual}", self.path),
        }
    }
}

/// How the lists of an assertion are matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub ordered: bool,
}

/// Every mismatch of `actual` against `expected`; empty when it matches.
pub fn mismatches(expected: &Value, actual: &Value, schema: Schema<'_>, options: Options) -> Vec<Mismatch> {
    let mut out = Vec::new();
    compare(expected, Some(actual), schema, options, &mut String::new(), &mut out);
    out
}

pub fn matches(expected: &Value, actual: &Value, schema: Schema<'_>, options: Options) -> bool {
    mismatches(expected, actual, schema, options).is_empty()
}

fn scalar_equal(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) if a != b => {
            // Quantities by amount: `500m` is `0.5`, `1Gi` is `1024Mi`.
            match (a.parse::<Quantity>(), b.parse::<Quantity>()) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        // A quantity written as a number in a test (`cpu: 2`) against the stored text.
        (Value::Number(n), Value::String(text)) | (Value::String(text), Value::Number(n)) => {
            match (n.to_string().parse::<Quantity>(), text.parse::<Quantity>()) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        _ => expected == actual,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn compare(
    expected: &Value,
    actual: Option<&Value>,
    schema: Schema<'_>,
    options: Options,
    path: &mut String,
    out: &mut Vec<Mismatch>,
) {
    let here = || if path.is_empty() { "(the object)".to_string() } else { path.clone() };
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Null, Some(actual)) => {
            out.push(Mismatch { path: here(), expected: Value::Null, actual: Some(actual.clone()) })
        }
        (expected, None | Some(Value::Null)) => {
            out.push(Mismatch { path: here(), expected: expected.clone(), actual: None })
        }
        (Value::Object(wanted), Some(Value::Object(found))) => {
            for (key, value) in wanted {
                let mut inner = child(path, key);
                compare(value, found.get(key), schema.property(key), options, &mut inner, out);
            }
        }
        (Value::Array(wanted), Some(Value::Array(found))) => list(wanted, found, schema, options, path, out),
        (expected, Some(actual)) if !expected.is_object() && !expected.is_array() && scalar_equal(expected, actual) => {
        }
        (expected, Some(actual)) => {
            out.push(Mismatch { path: here(), expected: expected.clone(), actual: Some(actual.clone()) })
        }
    }
}

fn list(
    wanted: &[Value],
    found: &[Value],
    schema: Schema<'_>,
    options: Options,
    path: &mut String,
    out: &mut Vec<Mismatch>,
) {
    let items = schema.items();
    if options.ordered {
        if wanted.len() != found.len() {
            out.push(Mismatch {
                path: format!("{path} (length)"),
                expected: Value::from(wanted.len()),
                actual: Some(Value::from(found.len())),
            });
        }
        for (i, (w, f)) in wanted.iter().zip(found).enumerate() {
            let mut inner = format!("{path}[{i}]");
            compare(w, Some(f), items, options, &mut inner, out);
        }
        return;
    }
    let key = schema.item_key().filter(|key| wanted.iter().all(|w| w.get(*key).is_some()));
    if let Some(key) = key {
        for w in wanted {
            let id = &w[key];
            let shown = id.as_str().map_or_else(|| id.to_string(), str::to_string);
            let mut inner = format!("{path}[{key}={shown}]");
            match found.iter().find(|f| f.get(key) == Some(id)) {
                Some(f) => compare(w, Some(f), items, options, &mut inner, out),
                None => out.push(Mismatch { path: inner, expected: w.clone(), actual: None }),
            }
        }
        return;
    }
    // Every pairing tried (Kuhn's augmenting paths): lists in tests are short.
    let fits: Vec<Vec<bool>> =
        wanted.iter().map(|w| found.iter().map(|f| matches(w, f, items, options)).collect()).collect();
    let mut owner: Vec<Option<usize>> = vec![None; found.len()];
    fn augment(w: usize, fits: &[Vec<bool>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
        for f in 0..owner.len() {
            if fits[w][f] && !seen[f] {
                seen[f] = true;
                if owner[f].is_none_or(|other| augment(other, fits, owner, seen)) {
                    owner[f] = Some(w);
                    return true;
                }
            }
        }
        false
    }
    for (w, item) in wanted.iter().enumerate() {
        let mut seen = vec![false; found.len()];
        if !augment(w, &fits, &mut owner, &mut seen) {
            // Reported against the closest item no other expected item took, if any.
            let taken: Vec<bool> = owner.iter().map(Option::is_some).collect();
            let closest = (0..found.len())
                .filter(|f| !taken[*f])
                .map(|f| (f, mismatches(item, &found[f], items, options)))
                // Nearest: fewest differences, a field there with another value nearer
                // than a field missing.
                .min_by_key(|(_, m)| m.iter().map(|m| if m.actual.is_none() { 2 } else { 1 }).sum::<usize>());
            match closest {
                Some((f, _)) => {
                    let mut inner = format!("{path}[{f}]");
                    compare(item, Some(&found[f]), items, options, &mut inner, out);
                }
                None => out.push(Mismatch { path: format!("{path}[?]"), expected: item.clone(), actual: None }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::GroupVersionKind;
    use crate::schema::{Catalog, CatalogOptions};
    use serde_json::json;

    fn check(expected: Value, actual: Value) -> Vec<String> {
        mismatches(&expected, &actual, Schema::NONE, Options::default()).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn maps_are_subsets_and_null_means_absent() {
        let actual = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 3}});
        assert!(check(json!({"spec": {"replicas": 3}}), actual.clone()).is_empty());
        assert!(check(json!({"spec": {"replicas": 3.0}, "status": null}), actual.clone()).is_empty());
        assert_eq!(check(json!({"spec": {"replicas": 2}}), actual.clone()), ["spec.replicas: expected 2, found 3"]);
        assert_eq!(
            check(json!({"metadata": {"labels": {"tier": "front"}}}), actual.clone()),
            ["metadata.labels.tier: expected \"front\", but it is not there"]
        );
        assert_eq!(check(json!({"spec": null}), actual), ["spec: expected no value, found {\"replicas\":3}"]);
    }

    #[test]
    fn lists_match_in_any_order_with_extra_items_allowed() {
        let actual = json!({"items": [{"a": 1, "b": 2}, {"a": 1}, {"c": 3}]});
        // Greedy pairing would give {"a": 1} the first item and leave nothing for the second.
        assert!(check(json!({"items": [{"a": 1}, {"a": 1, "b": 2}]}), actual.clone()).is_empty());
        assert_eq!(check(json!({"items": [{"c": 4}]}), actual.clone()), ["items[2].c: expected 4, found 3"]);
        let ordered = Options { ordered: true };
        let found = mismatches(&json!({"items": [{"c": 3}]}), &actual, Schema::NONE, ordered);
        assert_eq!(found[0].path, "items (length)");
    }

    #[test]
    fn quantities_compare_by_amount() {
        assert!(check(json!({"memory": "1Gi", "cpu": 2}), json!({"memory": "1024Mi", "cpu": "2000m"})).is_empty());
        assert!(!check(json!({"cpu": "1"}), json!({"cpu": "2"})).is_empty());
    }

    #[test]
    fn lists_with_a_merge_key_pair_items_by_it() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let gvk = GroupVersionKind { group: "".into(), version: "v1".into(), kind: "Pod".into() };
        let (node, definitions) = catalog.builtin_definition(&gvk).unwrap();
        let schema = Schema { node: Some(node), definitions: Some(definitions) };
        let pod = json!({"spec": {"containers": [{"name": "sidecar", "image": "envoy"}, {"name": "web", "image": "nginx:1.25"}]}});
        let expected = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}});
        let found = mismatches(&expected, &pod, schema, Options::default());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "spec.containers[name=web].image: expected \"nginx:1.26\", found \"nginx:1.25\""
        );
        let missing = json!({"spec": {"containers": [{"name": "db"}]}});
        assert_eq!(mismatches(&missing, &pod, schema, Options::default())[0].path, "spec.containers[name=db]");
    }
}
