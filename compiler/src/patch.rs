//! The three patch formats of the Kubernetes API, applied to a JSON object: JSON patch
//! (RFC 6902) and JSON merge patch (RFC 7386), by the `json-patch` crate, and strategic
//! merge patch, which merges lists as `list_merge` reads the schemas' patch markers
//! (`x-kubernetes-patch-merge-key`) and understands kubectl's directives
//! (`$patch`, `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`).

use crate::list_merge::{ListKind, Schema, Writer, key_values};
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
    ::json_patch::merge(target, patch);
}

/// RFC 6902, every operation or none.
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), PatchError> {
    if !operations.is_array() {
        return Err(malformed("a JSON patch is a list of operations"));
    }
    let operations: ::json_patch::Patch =
        serde_json::from_value(operations.clone()).map_err(|e| malformed(e.to_string()))?;
    // The crate undoes what it applied when an operation fails.
    ::json_patch::patch(target, &operations).map_err(|error| {
        let path = error.path.to_string();
        match error.kind {
            ::json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed(path),
            ::json_patch::PatchErrorKind::InvalidPointer | ::json_patch::PatchErrorKind::InvalidFromPointer => {
                PatchError::NoPath(path)
            }
            other => malformed(format!("operation {} at {path}: {other}", error.operation)),
        }
    })
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
            reorder(items, order, &schema.property(field).list_kind(Writer::Strategic));
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
    match schema.list_kind(Writer::Strategic) {
        ListKind::Map(keys) => {
            for item in patch {
                let Some(map) = item.as_object() else {
                    return Err(malformed(format!("list items merged by \"{}\" must be objects", keys.join(", "))));
                };
                let Some(id) = key_values(item, &keys) else {
                    return Err(malformed(format!(
                        "a list item has no \"{}\", the key its list merges by",
                        keys.join(", ")
                    )));
                };
                let found = items.iter().position(|existing| key_values(existing, &keys).as_ref() == Some(&id));
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
        }
        ListKind::Set => {
            for item in plain {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        ListKind::Atomic => *items = plain,
    }
    Ok(())
}

/// Puts the items `order` names first, in its order; the others keep theirs after them.
fn reorder(items: &mut [Value], order: &[Value], kind: &ListKind<'_>) {
    let identity = |item: &Value| match kind {
        ListKind::Map(keys) => key_values(item, keys),
        _ => Some(item.to_string()),
    };
    let wanted: Vec<Option<String>> = order.iter().map(identity).collect();
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
