//! The three patch formats of the Kubernetes API, applied to a JSON object: JSON patch
//! (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch, which merges lists
//! by the schemas' `x-kubernetes-patch-merge-key` and understands kubectl's directives
//! (`$patch`, `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`).

use crate::plan::merge::Schema;
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not valid: {0}")]
    Malformed(String),
    #[error("the patch's test at {0} failed")]
    TestFailed(String),
    #[error("the path {0} does not exist in the object")]
    NoPath(String),
}

fn malformed(message: impl Into<String>) -> PatchError {
    PatchError::Malformed(message.into())
}

/// RFC 7386: maps merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902, every operation or none.
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), PatchError> {
    let Value::Array(operations) = operations else {
        return Err(malformed("a JSON patch is a list of operations"));
    };
    let mut result = target.clone();
    for operation in operations {
        let field = |name: &str| operation.get(name).and_then(Value::as_str);
        let op = field("op").ok_or_else(|| malformed("an operation has no \"op\""))?;
        let path = field("path").ok_or_else(|| malformed(format!("the {op} operation has no \"path\"")))?;
        let value =
            || operation.get("value").cloned().ok_or_else(|| malformed(format!("the {op} at {path} has no \"value\"")));
        match op {
            "add" => add(&mut result, path, value()?)?,
            "remove" => {
                remove(&mut result, path)?;
            }
            "replace" => {
                let slot = pointer_mut(&mut result, path)?;
                *slot = value()?;
            }
            "move" | "copy" => {
                let from = field("from").ok_or_else(|| malformed(format!("the {op} at {path} has no \"from\"")))?;
                let moved = if op == "move" {
                    remove(&mut result, from)?
                } else {
                    result.pointer(from).cloned().ok_or_else(|| PatchError::NoPath(from.into()))?
                };
                add(&mut result, path, moved)?;
            }
            "test" => {
                if result.pointer(path) != Some(&value()?) {
                    return Err(PatchError::TestFailed(path.into()));
                }
            }
            other => return Err(malformed(format!("unknown operation \"{other}\""))),
        }
    }
    *target = result;
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn pointer_mut<'a>(target: &'a mut Value, path: &str) -> Result<&'a mut Value, PatchError> {
    target.pointer_mut(path).ok_or_else(|| PatchError::NoPath(path.into()))
}

fn split(path: &str) -> Result<(&str, String), PatchError> {
    let at = path.rfind('/').ok_or_else(|| malformed(format!("\"{path}\" is not a JSON pointer")))?;
    Ok((&path[..at], unescape(&path[at + 1..])))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match pointer_mut(target, parent)? {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|&i| i <= items.len())
                    .ok_or_else(|| PatchError::NoPath(path.into()))?
            };
            items.insert(at, value);
        }
        _ => return Err(PatchError::NoPath(path.into())),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split(path)?;
    let removed = match pointer_mut(target, parent)? {
        Value::Object(map) => map.remove(&last),
        Value::Array(items) => last.parse::<usize>().ok().filter(|&i| i < items.len()).map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| PatchError::NoPath(path.into()))
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// A strategic merge patch, as the API server applies one to a built-in object.
pub fn strategic_merge_patch(target: &Value, patch: &Value, schema: Schema<'_>) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(malformed("a strategic merge patch is a JSON object"));
    };
    let mut result = target.clone();
    merge_map(&mut result, patch, schema)?;
    Ok(result)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>, schema: Schema<'_>) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = Map::new();
            for (key, value) in patch {
                if !key.starts_with('$') {
                    replaced.insert(key.clone(), value.clone());
                }
            }
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => return Err(malformed(format!("unknown $patch directive \"{other}\""))),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return Ok(()) };
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| malformed("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        map.retain(|key, _| keep.contains(&key.as_str()));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVES) {
            let gone = value.as_array().ok_or_else(|| malformed(format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = map.get_mut(field) {
                items.retain(|item| !gone.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let child = schema.property(key);
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(inner) => {
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") {
                    map.remove(key);
                } else {
                    merge_map(slot, inner, child)?;
                }
            }
            Value::Array(items) => {
                let slot = map.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(slot, items, child)?;
            }
            scalar => {
                map.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER)
            && let (Some(Value::Array(items)), Some(order)) = (map.get_mut(field), order.as_array())
        {
            reorder(items, order, schema.property(field).patch_merge_key());
        }
    }
    Ok(())
}

fn merge_list(target: &mut Value, patch: &[Value], schema: Schema<'_>) -> Result<(), PatchError> {
    // `[{"$patch": "replace"}, items...]` replaces the list whole.
    let replace = patch.iter().any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    let plain: Vec<Value> =
        patch.iter().filter(|item| item.get("$patch").and_then(Value::as_str) != Some("replace")).cloned().collect();
    if replace {
        *target = Value::Array(plain);
        return Ok(());
    }
    let Value::Array(items) = target else {
        *target = Value::Array(plain);
        return Ok(());
    };
    if let Some(key) = schema.patch_merge_key() {
        for item in patch {
            let Some(map) = item.as_object() else {
                return Err(malformed(format!("list items merged by \"{key}\" must be objects")));
            };
            let Some(id) = map.get(key) else {
                return Err(malformed(format!("a list item has no \"{key}\", the key its list merges by")));
            };
            let id = Some(id);
            let found = items.iter().position(|existing| id.is_some() && existing.get(key) == id);
            let delete = map.get("$patch").and_then(Value::as_str) == Some("delete");
            match (found, delete) {
                (Some(at), true) => {
                    items.remove(at);
                }
                (None, true) => {}
                (Some(at), false) => merge_map(&mut items[at], map, schema.items())?,
                (None, false) => {
                    let mut fresh = Value::Object(Map::new());
                    merge_map(&mut fresh, map, schema.items())?;
                    items.push(fresh);
                }
            }
        }
    } else if schema.patch_is_set() {
        for item in plain {
            if !items.contains(&item) {
                items.push(item);
            }
        }
    } else {
        *items = plain;
    }
    Ok(())
}

/// Puts the items `order` names first, in its order; the others keep theirs after them.
fn reorder(items: &mut [Value], order: &[Value], key: Option<&str>) {
    let identity = |item: &Value| match key {
        Some(key) => item.get(key).cloned(),
        None => Some(item.clone()),
    };
    let wanted: Vec<Option<Value>> = order.iter().map(identity).collect();
    let rank = |item: &Value| wanted.iter().position(|w| w.is_some() && *w == identity(item)).unwrap_or(usize::MAX);
    items.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::GroupVersionKind;
    use crate::schema::{Catalog, CatalogOptions};
    use proptest::prelude::*;
    use serde_json::json;

    /// Small JSON documents: maps of maps, lists and scalars, with few distinct keys so
    /// that patches and targets overlap.
    fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(|n| json!(n)),
            "[ab]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[abc]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A document that is an object at the top (generated as one, not filtered: most
    /// random documents are not, and rejecting them starves the test).
    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[abc]", document(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        /// RFC 7386: applying a merge patch twice gives what applying it once gives, and
        /// the result has no nulls the patch put there.
        #[test]
        fn merge_patches_are_idempotent(target in document(), patch in document()) {
            let mut once = target.clone();
            merge_patch(&mut once, &patch);
            let mut twice = once.clone();
            merge_patch(&mut twice, &patch);
            prop_assert_eq!(&once, &twice);
        }

        /// A strategic merge patch with no directives and no schema is a merge patch on
        /// objects (lists are replaced whole, nulls delete).
        #[test]
        fn strategic_without_a_schema_merges_like_a_merge_patch(target in object(), patch in object()) {
            let mut merged = target.clone();
            merge_patch(&mut merged, &patch);
            let strategic = strategic_merge_patch(&target, &patch, Schema::NONE).unwrap();
            prop_assert_eq!(strategic, merged);
        }

        /// A JSON patch that fails leaves its target as it was.
        #[test]
        fn failed_json_patches_change_nothing(target in document(), value in document(), key in "[abc]") {
            let before = target.clone();
            let mut patched = target;
            let operations = json!([
                {"op": "add", "path": format!("/{key}"), "value": value},
                {"op": "test", "path": "/no/such/place", "value": 1}
            ]);
            prop_assert!(json_patch(&mut patched, &operations).is_err());
            prop_assert_eq!(patched, before);
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_applies_all_or_nothing() {
        let mut target = json!({"spec": {"replicas": 1, "list": ["a"]}});
        json_patch(
            &mut target,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/list/-", "value": "b"},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
                {"op": "test", "path": "/spec/copy", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(target, json!({"spec": {"replicas": 3, "list": ["a", "b"], "copy": 3}}));
        let before = target.clone();
        let failed = json_patch(
            &mut target,
            &json!([{"op": "remove", "path": "/spec/replicas"}, {"op": "test", "path": "/spec/copy", "value": 4}]),
        );
        assert_eq!(failed, Err(PatchError::TestFailed("/spec/copy".into())));
        assert_eq!(target, before);
        assert!(json_patch(&mut target, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn strategic_merge_patch_merges_containers_by_name() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let (node, definitions) =
            catalog.builtin_definition(&GroupVersionKind::new("apps", "v1", "Deployment")).unwrap();
        let schema = Schema { node: Some(node), definitions: Some(definitions) };
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]}}}, "metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}}});
        let patch = json!({
            "metadata": {"finalizers": ["b"], "labels": {"y": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [
                    {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                    {"name": "sidecar", "$patch": "delete"}
                ]
            }}}
        });
        let patched = strategic_merge_patch(&live, &patch, schema).unwrap();
        assert_eq!(
            patched,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}}}, "metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}})
        );
    }
}
