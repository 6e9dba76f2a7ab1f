//! Rewrites of schemas before they are compiled: strictness (unknown fields are errors)
//! and the translation of a CustomResourceDefinition's OpenAPI v3 schema into the JSON
//! Schema the validator speaks.

use super::DEFINITIONS_URI;
use serde_json::{Map, Value, json};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Where strictness applies: every schema of a built-in definition, or only the
/// structural skeleton of a custom resource schema (value validations under `allOf`,
/// `anyOf`, `oneOf` and `not` may list properties without owning them).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Everywhere,
    Structural,
}

/// Makes unknown fields errors: an object schema that lists its `properties` and says
/// nothing about others gets `additionalProperties: false`, unless it keeps unknown
/// fields on purpose (`x-kubernetes-preserve-unknown-fields`). For the built-in
/// definitions this reproduces upstream's `-strict` schemas exactly.
pub fn make_strict(schema: &mut Value, reach: Reach) {
    let Value::Object(map) = schema else {
        return;
    };
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (keyword, child) in map.iter_mut() {
        match keyword.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Value::Object(children) = child {
                    for sub in children.values_mut() {
                        make_strict(sub, reach);
                    }
                }
            }
            "items" | "additionalProperties" | "additionalItems" => make_strict(child, reach),
            "allOf" | "anyOf" | "oneOf" if reach == Reach::Everywhere => {
                if let Value::Array(alternatives) = child {
                    for sub in alternatives {
                        make_strict(sub, reach);
                    }
                }
            }
            "not" if reach == Reach::Everywhere => make_strict(child, reach),
            _ => {}
        }
    }
}

/// Translates a CRD's `openAPIV3Schema` into JSON Schema 2020-12 for one custom kind.
///
/// OpenAPI's `nullable` becomes a `null` type, `x-kubernetes-int-or-string` an
/// integer-or-string choice, `x-kubernetes-embedded-resource` an object with its own
/// type and metadata. The root's `metadata` is validated as the API server does it:
/// as an `ObjectMeta`, whatever the CRD says.
pub fn custom_resource_schema(open_api: Option<&Value>, api_version: &str, kind: &str, strict: bool) -> Value {
    let mut root =
        open_api.cloned().unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    translate(&mut root);
    if let Value::Object(map) = &mut root {
        map.insert("type".into(), json!("object"));
        let properties = map.entry("properties").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            properties.insert("apiVersion".into(), json!({"type": "string", "enum": [api_version]}));
            properties.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
            properties.insert("metadata".into(), json!({"$ref": format!("{DEFINITIONS_URI}#/$defs/{OBJECT_META}")}));
        }
        // A CRD without a structural schema keeps every field, so strictness stops here.
        if !map.contains_key("additionalProperties")
            && !map.contains_key("x-kubernetes-preserve-unknown-fields")
            && open_api.is_none()
        {
            map.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
        }
    }
    if strict {
        make_strict(&mut root, Reach::Structural);
    }
    root
}

fn translate(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let nullable = map.get("nullable") == Some(&Value::Bool(true));
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        map.remove("type");
        if !map.contains_key("anyOf") && !map.contains_key("oneOf") {
            let mut choices = vec![json!({"type": "integer"}), json!({"type": "string"})];
            if nullable {
                choices.push(json!({"type": "null"}));
            }
            map.insert("anyOf".into(), Value::Array(choices));
        }
    }
    // OpenAPI 3.0 writes exclusive bounds as booleans beside minimum/maximum; JSON Schema
    // 2020-12 wants the bound itself.
    for (exclusive, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if let Some(Value::Bool(flag)) = map.get(exclusive) {
            let flag = *flag;
            map.remove(exclusive);
            if flag && let Some(limit) = map.remove(bound) {
                map.insert(exclusive.into(), limit);
            }
        }
    }
    if nullable {
        match map.get_mut("type") {
            Some(Value::String(t)) => {
                let t = std::mem::take(t);
                map.insert("type".into(), json!([t, "null"]));
            }
            Some(_) => {}
            None => {}
        }
        if let Some(Value::Array(values)) = map.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
    }
    if map.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
        let properties = map.entry("properties").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            properties.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
            properties.entry("kind").or_insert_with(|| json!({"type": "string"}));
            properties
                .entry("metadata")
                .or_insert_with(|| json!({"$ref": format!("{DEFINITIONS_URI}#/$defs/{OBJECT_META}")}));
        }
    }
    for (keyword, child) in map.iter_mut() {
        match keyword.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(translate);
                }
            }
            "items" | "additionalProperties" | "not" => translate(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(alternatives) = child {
                    alternatives.iter_mut().for_each(translate);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness_skips_objects_that_keep_unknown_fields() {
        let mut schema = json!({
            "properties": {
                "a": {"properties": {"x": {}}},
                "b": {"properties": {"y": {}}, "x-kubernetes-preserve-unknown-fields": true},
                "c": {"additionalProperties": {"type": "string"}},
            },
            "allOf": [{"properties": {"a": {}}}],
        });
        make_strict(&mut schema, Reach::Structural);
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(schema["properties"]["a"]["additionalProperties"], json!(false));
        assert!(schema["properties"]["b"].get("additionalProperties").is_none());
        assert_eq!(schema["properties"]["c"]["additionalProperties"], json!({"type": "string"}));
        assert!(schema["allOf"][0].get("additionalProperties").is_none());
    }

    #[test]
    fn translates_openapi_extensions() {
        let open_api = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 9, "exclusiveMaximum": false},
                    "either": {"x-kubernetes-int-or-string": true, "nullable": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                }},
            },
        });
        let root = custom_resource_schema(Some(&open_api), "example.com/v1", "Widget", true);
        let spec = &root["properties"]["spec"]["properties"];
        assert_eq!(spec["port"]["anyOf"], json!([{"type": "integer"}, {"type": "string"}]));
        assert_eq!(spec["note"]["type"], json!(["string", "null"]));
        assert_eq!(spec["count"], json!({"type": "integer", "exclusiveMinimum": 0, "maximum": 9}));
        assert_eq!(spec["either"]["anyOf"][2], json!({"type": "null"}));
        assert!(spec["template"]["properties"]["metadata"]["$ref"].as_str().unwrap().ends_with(OBJECT_META));
        assert_eq!(root["properties"]["kind"]["enum"], json!(["Widget"]));
        assert_eq!(root["additionalProperties"], json!(false));
    }
}
