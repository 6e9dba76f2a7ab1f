//! Structural pruning and defaulting, as the API server decodes a custom resource: fields
//! its schema does not declare are dropped (and reported, so the server can refuse them
//! under `fieldValidation=Strict` or warn about them), `default:`s fill what is missing,
//! top-down, and a `null` where the schema does not allow one takes the default or goes.
//! `apiVersion`, `kind` and `metadata` of the object (and of embedded resources) are the
//! server's to check, not pruned here.

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

/// Prunes and defaults `object` along `schema` (a CRD version's schema as the catalog
/// holds it); the paths of the fields dropped, as Kubernetes names them (`spec.foo`,
/// `spec.items[0].bar`), in the order met.
pub fn prune_and_default(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    walk(schema, object, "", true, &mut unknown);
    unknown
}

fn is(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// Whether `null` is a value the schema takes (`nullable: true`, which the catalog
/// writes as a `"null"` type).
fn nullable(schema: &Value) -> bool {
    is(schema, "nullable")
        || match schema.get("type") {
            Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
            Some(Value::String(kind)) => kind == "null",
            _ => false,
        }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => walk_object(schema, map, path, root, unknown),
        Value::Array(items) => {
            if let Some(items_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    walk(items_schema, item, &format!("{path}[{index}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(schema: &Value, map: &mut Map<String, Value>, path: &str, root: bool, unknown: &mut Vec<String>) {
    let resource = root || is(schema, "x-kubernetes-embedded-resource");
    let preserve = is(schema, "x-kubernetes-preserve-unknown-fields");
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = match schema.get("additionalProperties") {
        Some(Value::Object(additional)) => Some(Value::Object(additional.clone())),
        Some(Value::Bool(true)) => Some(Value::Object(Map::new())),
        _ => None,
    };
    // Defaults first, so that a defaulted object gets its own fields' defaults below.
    for (name, property) in properties.into_iter().flatten() {
        if !map.contains_key(name)
            && let Some(default) = property.get("default")
        {
            map.insert(name.clone(), default.clone());
        }
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if resource && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let field = join(path, &key);
        let declared = properties.and_then(|p| p.get(&key)).or(additional.as_ref());
        let Some(child) = declared else {
            if !preserve {
                map.remove(&key);
                unknown.push(field);
            }
            continue;
        };
        if map.get(&key).is_some_and(Value::is_null) && !nullable(child) {
            match child.get("default") {
                Some(default) => {
                    map.insert(key.clone(), default.clone());
                }
                None => {
                    map.remove(&key);
                    continue;
                }
            }
        }
        if let Some(value) = map.get_mut(&key) {
            walk(child, value, &field, false, unknown);
        }
    }
}

/// Drops the fields a built-in kind's definition does not declare, as the API server's
/// decoder into its Go types does, and names them (`spec.template.spec.containers[0].x`),
/// in the order met. `definitions` resolves the `$ref`s.
pub fn drop_unknown(definition: &Value, definitions: &FxHashMap<String, Value>, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    // One path buffer, grown and cut back as the walk goes: every write of a built-in
    // kind comes through here, and almost none has an unknown field.
    let mut path = String::new();
    drop_walk(definition, definitions, object, &mut path, &mut unknown);
    unknown
}

fn resolve<'a>(schema: &'a Value, definitions: &'a FxHashMap<String, Value>) -> &'a Value {
    let mut here = schema;
    // References chain only a few deep; the bound keeps a cycle from looping.
    for _ in 0..8 {
        let target = here
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.split_once("$defs/"))
            .and_then(|(_, name)| definitions.get(name));
        match target {
            Some(target) => here = target,
            None => break,
        }
    }
    here
}

fn drop_walk(
    schema: &Value,
    definitions: &FxHashMap<String, Value>,
    value: &mut Value,
    path: &mut String,
    unknown: &mut Vec<String>,
) {
    let schema = resolve(schema, definitions);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            // A free-form object (`RawExtension`, `FieldsV1`) keeps what it holds.
            if properties.is_none() && additional.is_none() {
                return;
            }
            let declared = |key: &str| properties.and_then(|p| p.get(key)).or(additional);
            if map.keys().any(|key| declared(key).is_none()) {
                map.retain(|key, _| {
                    let known = declared(key).is_some();
                    if !known {
                        unknown.push(if path.is_empty() { key.clone() } else { format!("{path}.{key}") });
                    }
                    known
                });
            }
            for (key, child) in map.iter_mut() {
                let Some(child_schema) = declared(key) else { continue };
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                drop_walk(child_schema, definitions, child, path, unknown);
                path.truncate(length);
            }
        }
        Value::Array(items) => {
            if let Some(items_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    let length = path.len();
                    path.push('[');
                    path.push_str(&index.to_string());
                    path.push(']');
                    drop_walk(items_schema, definitions, item, path, unknown);
                    path.truncate(length);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"$ref": "meta"},
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "default": 1},
                    "color": {"type": ["string", "null"]},
                    "parts": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                              "properties": {"known": {"type": "object", "properties": {}}}},
                    "limits": {"type": "object", "default": {}, "properties": {"cpu": {"type": "string", "default": "1"}}},
                    "opaque": {"type": "object"}
                }}
            }
        })
    }

    #[test]
    fn unknown_fields_go_and_are_named() {
        let mut object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "odd": 1},
            "spec": {
                "size": 2, "colour": "red",
                "parts": [{"name": "a", "weight": 3}],
                "labels": {"any": "thing"},
                "extra": {"free": true, "known": {"nested": 1}},
                "opaque": {"everything": "goes"}
            },
            "status": {}
        });
        let mut unknown = prune_and_default(&schema(), &mut object);
        unknown.sort();
        assert_eq!(
            unknown,
            ["spec.colour", "spec.extra.known.nested", "spec.opaque.everything", "spec.parts[0].weight", "status"]
        );
        assert_eq!(object["spec"]["extra"], json!({"free": true, "known": {}}));
        assert_eq!(object["spec"]["labels"], json!({"any": "thing"}));
        assert_eq!(object["metadata"], json!({"name": "w", "odd": 1}), "metadata is the server's to check");
    }

    #[test]
    fn a_built_in_kind_drops_what_its_go_types_do_not_have() {
        let catalog = crate::schema::Catalog::new(crate::schema::CatalogOptions::default()).unwrap();
        let gvk = crate::object::GroupVersionKind::new("apps", "v1", "Deployment");
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labels": {"a": "b"}, "odd": 1},
            "spec": {"replicas": 1, "replica": 2, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "imagePullPolicyx": "Always", "resources": {"limits": {"cpu": "1"}}}
            ]}}}
        });
        let unknown = catalog.prune_builtin(&gvk, &mut object).expect("a built-in kind");
        assert_eq!(unknown, ["metadata.odd", "spec.replica", "spec.template.spec.containers[0].imagePullPolicyx"]);
        assert_eq!(object["metadata"], json!({"name": "w", "labels": {"a": "b"}}));
        assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "1"}}));
    }

    #[test]
    fn defaults_fill_top_down_and_nulls_take_them_or_go() {
        let mut object = json!({"spec": {"size": null, "color": null}});
        assert_eq!(prune_and_default(&schema(), &mut object), Vec::<String>::new());
        assert_eq!(object["spec"], json!({"size": 1, "color": null, "limits": {"cpu": "1"}}));
        let mut object = json!({"spec": {"parts": null}});
        prune_and_default(&schema(), &mut object);
        assert_eq!(object["spec"].get("parts"), None);
    }
}
