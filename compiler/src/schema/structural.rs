//! A custom object checked against its CRD version's schema as the apiextensions server
//! checks it, after pruning and defaulting: kube-openapi's validators (type, value
//! validations, `anyOf`/`allOf`/`oneOf`/`not`, `required`), then the embedded resources'
//! `apiVersion` and `kind`, then the uniqueness `x-kubernetes-list-type` set and map
//! lists promise. Same paths (`spec.items[0].name`), same messages (`spec.size in body
//! should be greater than or equal to 1`), same field error types, so a client reads what
//! a real API server says. Go iterates maps in random order; the findings here come in
//! field-name order, so they read the same every time.
//!
//! `schema` is the CRD version's `openAPIV3Schema` as written (not the catalog's
//! JSON-Schema translation, which `lint` validates with).

use crate::admission::Cause;
use crate::field_error::{self, go_float, go_quote};
use serde_json::{Map, Value, json};

/// Every finding, in the order the API server reports them.
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, object, "", &mut causes);
    embedded_resources(schema, object, "", &mut causes);
    list_sets_and_maps(schema, object, "", &mut causes);
    causes
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// The types a value may have: `type`, or integer and string for
/// `x-kubernetes-int-or-string`.
fn types(schema: &Map<String, Value>) -> Vec<&str> {
    if flag(schema, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match schema.get("type").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => vec![kind],
        _ => Vec::new(),
    }
}

/// The JSON type of a value as kube-openapi names the Go value it decodes to.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(types: &[&str], value: &Value) -> bool {
    let actual = type_of(value);
    types.iter().any(|t| {
        *t == actual
            || (*t == "number" && actual == "integer")
            // A float64 that holds a whole number passes as an integer.
            || (*t == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
    })
}

/// `<path> in body <what>`, kube-openapi's way of naming the field in a message.
fn in_body(path: &str, what: &str) -> String {
    format!("{path} in body {what}")
}

/// A bound as `%v` prints it (an integer bound of an integer value prints as one).
fn bound(value: &Value) -> String {
    match value {
        Value::Number(n) => field_error::go_number(n),
        other => other.to_string(),
    }
}

fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(schema) = schema.as_object() else { return };
    let types = types(schema);
    if value.is_null() {
        if !types.is_empty() && !flag(schema, "nullable") {
            let detail = in_body(path, &format!("must be of type {}: \"null\"", types.join(",")));
            causes.push(field_error::type_invalid(path, &json!("null"), &detail));
        }
        return;
    }
    if !types.is_empty() && !type_matches(&types, value) {
        let actual = type_of(value);
        let detail = in_body(path, &format!("must be of type {}: \"{actual}\"", types.join(",")));
        causes.push(field_error::type_invalid(path, &json!(actual), &detail));
    }
    combinators(schema, value, path, causes);
    match value {
        Value::String(text) => string(schema, text, value, path, causes),
        Value::Number(_) => number(schema, value, path, causes),
        Value::Array(items) => array(schema, items, path, causes),
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.iter().any(|a| same(a, value))
    {
        let supported: Vec<String> =
            allowed.iter().map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string)).collect();
        causes.push(field_error::not_supported(path, value, &supported));
    }
    if let Value::Object(map) = value {
        object(schema, map, path, causes);
    }
}

/// JSON equality with numbers compared by value (`1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn subschema_causes(schema: &Value, value: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, value, path, &mut causes);
    causes
}

/// `anyOf`, `oneOf`, `allOf` and `not`. Their own messages have no field (`<nil>`), as
/// kube-openapi reports them as plain errors. Where several alternatives fail, the one
/// with the fewest findings explains the failure (kube-openapi picks the one with the
/// most passing checks, which is the same for the shapes structural schemas allow).
fn combinators(schema: &Map<String, Value>, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let whole = |message: String| field_error::invalid("<nil>", &json!(""), &message);
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.is_empty()
    {
        let results: Vec<Vec<Cause>> = any.iter().map(|s| subschema_causes(s, value, path)).collect();
        if !results.iter().any(Vec::is_empty) {
            causes.push(whole(format!("{} must validate at least one schema (anyOf)", go_quote(path))));
            causes.extend(results.into_iter().min_by_key(Vec::len).unwrap_or_default());
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && !one.is_empty()
    {
        let results: Vec<Vec<Cause>> = one.iter().map(|s| subschema_causes(s, value, path)).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let found =
                if valid == 0 { "Found none valid".to_string() } else { format!("Found {valid} valid alternatives") };
            causes.push(whole(format!("{} must validate one and only one schema (oneOf). {found}", go_quote(path))));
            if valid == 0 {
                causes.extend(results.into_iter().min_by_key(Vec::len).unwrap_or_default());
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array)
        && !all.is_empty()
    {
        let mut validated = 0;
        for sub in all {
            let found = subschema_causes(sub, value, path);
            if found.is_empty() {
                validated += 1;
            }
            causes.extend(found);
        }
        if validated != all.len() {
            let none = if validated == 0 { ". None validated" } else { "" };
            causes.push(whole(format!("{} must validate all the schemas (allOf){none}", go_quote(path))));
        }
    }
    if let Some(not) = schema.get("not")
        && subschema_causes(not, value, path).is_empty()
    {
        causes.push(whole(format!("{} must not validate the schema (not)", go_quote(path))));
    }
}

fn string(schema: &Map<String, Value>, text: &str, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count() as i64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_i64)
        && length > max
    {
        causes.push(field_error::too_long(path, max));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_i64)
        && length < min
    {
        causes.push(field_error::invalid(path, value, &in_body(path, &format!("should be at least {min} chars long"))));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && matches_pattern(pattern, text) == Some(false)
    {
        causes.push(field_error::invalid(path, value, &in_body(path, &format!("should match '{pattern}'"))));
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str)
        && !format_holds(format, text)
    {
        let detail = in_body(path, &format!("must be of type {format}: {}", go_quote(text)));
        causes.push(field_error::type_invalid(path, value, &detail));
    }
}

/// Whether `text` matches a schema's `pattern` (`None` for a pattern that does not
/// compile, which the CRD's own check refuses). Each pattern is compiled once per thread.
fn matches_pattern(pattern: &str, text: &str) -> Option<bool> {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    COMPILED.with(|compiled| {
        let mut compiled = compiled.borrow_mut();
        // Patterns come from CRDs; a bound keeps a server that sees many from growing.
        if compiled.len() > 4096 {
            compiled.clear();
        }
        let regex = compiled.entry(pattern.to_string()).or_insert_with(|| regex::Regex::new(pattern).ok());
        regex.as_ref().map(|regex| regex.is_match(text))
    })
}

/// The string formats the apiextensions server checks; others (`int32`, `int64`, ...)
/// it ignores, and so does this.
fn format_holds(format: &str, text: &str) -> bool {
    match format {
        "uuid" | "uuid3" | "uuid4" | "uuid5" => is_uuid(text),
        "date-time" | "datetime" => is_date_time(text),
        "date" => is_date(text),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(text).is_ok()
        }
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text.split_once('/').is_some_and(|(ip, bits)| {
            let bits: Option<u8> = bits.parse().ok();
            match (ip.parse::<std::net::IpAddr>(), bits) {
                (Ok(std::net::IpAddr::V4(_)), Some(b)) => b <= 32,
                (Ok(std::net::IpAddr::V6(_)), Some(b)) => b <= 128,
                _ => false,
            }
        }),
        "hostname" => is_hostname(text),
        "duration" => text.parse::<crate::duration::Duration>().is_ok(),
        _ => true,
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && [0..4, 5..7, 8..10].into_iter().all(|r| bytes[r].iter().all(u8::is_ascii_digit))
}

/// RFC 3339 (`2006-01-02T15:04:05Z`, fractions and offsets allowed).
fn is_date_time(text: &str) -> bool {
    // Byte offsets below are ASCII positions; anything else there is no date-time.
    let (Some(date), Some(rest)) = (text.get(..10), text.get(10..)) else { return false };
    if text.len() < 19 || !is_date(date) {
        return false;
    }
    let Some(time) = rest.strip_prefix(['T', 't', ' ']) else { return false };
    let clock = time.as_bytes();
    if clock.len() < 8 || clock[2] != b':' || clock[5] != b':' {
        return false;
    }
    if ![0..2, 3..5, 6..8].into_iter().all(|r| clock[r].iter().all(u8::is_ascii_digit)) {
        return false;
    }
    let Some(mut tail) = time.get(8..) else { return false };
    if let Some(fraction) = tail.strip_prefix('.') {
        let digits = fraction.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        tail = &fraction[digits..];
    }
    match tail {
        "" | "Z" | "z" => true,
        offset => {
            let o = offset.as_bytes();
            o.len() == 6
                && matches!(o[0], b'+' | b'-')
                && o[3] == b':'
                && o[1..3].iter().chain(&o[4..6]).all(u8::is_ascii_digit)
        }
    }
}

fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn number(schema: &Map<String, Value>, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(factor) = schema.get("multipleOf").and_then(Value::as_f64)
        && factor > 0.0
        && (n / factor).fract() != 0.0
    {
        let detail = in_body(path, &format!("should be a multiple of {}", go_float(factor)));
        causes.push(field_error::invalid(path, value, &detail));
    }
    if let Some(max) = schema.get("maximum") {
        let exclusive = flag(schema, "exclusiveMaximum");
        let limit = max.as_f64().unwrap_or(f64::INFINITY);
        if (exclusive && n >= limit) || n > limit {
            let what = if exclusive { "less than" } else { "less than or equal to" };
            causes.push(field_error::invalid(path, value, &in_body(path, &format!("should be {what} {}", bound(max)))));
        }
    }
    if let Some(min) = schema.get("minimum") {
        let exclusive = flag(schema, "exclusiveMinimum");
        let limit = min.as_f64().unwrap_or(f64::NEG_INFINITY);
        if (exclusive && n <= limit) || n < limit {
            let what = if exclusive { "greater than" } else { "greater than or equal to" };
            causes.push(field_error::invalid(path, value, &in_body(path, &format!("should be {what} {}", bound(min)))));
        }
    }
}

fn array(schema: &Map<String, Value>, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{index}]"), causes);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_i64)
        && size < min
    {
        let detail = in_body(path, &format!("should have at least {min} items"));
        causes.push(field_error::invalid(path, &json!(size), &detail));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_i64)
        && size > max
    {
        causes.push(field_error::too_many(path, size, max));
    }
}

fn object(schema: &Map<String, Value>, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    let keys = map.len() as i64;
    // kube-openapi stops at a property count out of bounds.
    if let Some(min) = schema.get("minProperties").and_then(Value::as_i64)
        && keys < min
    {
        let detail = in_body(path, &format!("should have at least {min} properties"));
        causes.push(field_error::invalid(path, &json!(keys), &detail));
        return;
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_i64)
        && keys > max
    {
        causes.push(field_error::too_many(path, keys, max));
        return;
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (key, value) in map {
            if !properties.is_some_and(|p| p.contains_key(key)) {
                check(additional, value, &child(path, key), causes);
            }
        }
    }
    for (name, property) in properties.into_iter().flatten() {
        if let Some(value) = map.get(name) {
            check(property, value, &child(path, name), causes);
        }
    }
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(name) {
            causes.push(field_error::required(child(path, name), ""));
        }
    }
}

/// The schema of a map's key, or of a list's items, where the walk goes next.
fn sub_schema<'a>(schema: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Embedded resources (`x-kubernetes-embedded-resource`) name their `apiVersion` and
/// `kind`, as the apiextensions server's object-meta check requires.
fn embedded_resources(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(schema) = schema.as_object() else { return };
    match value {
        Value::Object(map) => {
            if !path.is_empty() && flag(schema, "x-kubernetes-embedded-resource") {
                for field in ["apiVersion", "kind"] {
                    match map.get(field) {
                        None => causes.push(field_error::required(child(path, field), "must not be empty")),
                        Some(Value::String(s)) if s.is_empty() => {
                            causes.push(field_error::invalid(child(path, field), &json!(""), "must not be empty"));
                        }
                        Some(Value::String(_)) => {}
                        Some(other) => causes.push(field_error::invalid(child(path, field), other, "must be a string")),
                    }
                }
            }
            for (key, value) in map {
                if let Some(sub) = sub_schema(schema, key) {
                    embedded_resources(sub, value, &child(path, key), causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    embedded_resources(item_schema, item, &format!("{path}[{index}]"), causes);
                }
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: set` items are unique, and `map` items unique by their keys
/// (a `Duplicate value` for each later copy).
fn list_sets_and_maps(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(schema) = schema.as_object() else { return };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if let Some(sub) = sub_schema(schema, key) {
                    list_sets_and_maps(sub, value, &child(path, key), causes);
                }
            }
        }
        Value::Array(items) => {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    // Each repeated value once, at its first repeat (validateListSet).
                    for (index, item) in items.iter().enumerate() {
                        if items[..index].iter().filter(|earlier| same(earlier, item)).count() == 1 {
                            causes.push(field_error::duplicate(format!("{path}[{index}]"), item));
                        }
                    }
                }
                Some("map") => {
                    let key_names: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let item_schema = schema.get("items").and_then(Value::as_object);
                    let key_of = |item: &Value| -> Value {
                        let mut key = Map::new();
                        for name in &key_names {
                            // A key left out takes its default, as the server keys it.
                            let value = item.get(*name).cloned().or_else(|| {
                                item_schema.and_then(|s| s.get("properties")?.get(*name)?.get("default").cloned())
                            });
                            if let Some(value) = value {
                                key.insert((*name).to_string(), value);
                            }
                        }
                        Value::Object(key)
                    };
                    let keys: Vec<Value> = items.iter().map(key_of).collect();
                    for (index, key) in keys.iter().enumerate() {
                        if keys[..index].iter().any(|earlier| same(earlier, key)) {
                            causes.push(field_error::duplicate(format!("{path}[{index}]"), key));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    list_sets_and_maps(item_schema, item, &format!("{path}[{index}]"), causes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"]},
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1.5},
                        "port": {"x-kubernetes-int-or-string": true},
                        "id": {"type": "string", "format": "uuid"},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"},
                                 "x-kubernetes-list-type": "set"},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "required": ["name"],
                                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                        "choice": {"type": "string", "anyOf": [{"enum": ["a"]}, {"pattern": "^b"}]},
                    }
                }
            }
        })
    }

    fn messages(object: Value) -> Vec<String> {
        validate(&widget_schema(), &object).iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn a_valid_object_has_no_findings() {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 3, "color": "red", "name": "abc", "ratio": 1.0, "port": "http",
                     "id": "123e4567-e89b-12d3-a456-426614174000", "tags": ["a", "b"],
                     "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 1}],
                     "template": {"apiVersion": "v1", "kind": "Pod"}, "choice": "bee"}});
        assert_eq!(messages(object), Vec::<String>::new());
    }

    #[test]
    fn findings_are_worded_as_the_api_server_words_them() {
        let object = json!({"spec": {"size": 0, "color": "purple", "name": "ABCDEFG", "ratio": 1.5,
            "port": true, "id": "nope", "tags": ["a", "a", "b"],
            "ports": [{"name": "a"}, {"name": "a"}], "template": {"kind": "Pod"}, "choice": "c"}});
        assert_eq!(
            messages(object),
            [
                r#"<nil>: Invalid value: "": "spec.choice" must validate at least one schema (anyOf)"#,
                r#"spec.choice: Unsupported value: "c": supported values: "a""#,
                r#"spec.color: Unsupported value: "purple": supported values: "red", "blue""#,
                r#"spec.id: Invalid value: "nope": spec.id in body must be of type uuid: "nope""#,
                "spec.name: Too long: may not be more than 5 bytes",
                r#"spec.name: Invalid value: "ABCDEFG": spec.name in body should match '^[a-z]+$'"#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
                "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5",
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.template.apiVersion: Required value: must not be empty",
                r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}"#,
                r#"spec.tags[1]: Duplicate value: "a""#,
            ]
        );
    }

    #[test]
    fn types_and_required_fields() {
        assert_eq!(
            messages(json!({"spec": {"color": 3, "size": "big"}})),
            [
                r#"spec.color: Invalid value: "integer": spec.color in body must be of type string: "integer""#,
                r#"spec.color: Unsupported value: 3: supported values: "red", "blue""#,
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#,
            ]
        );
        assert_eq!(messages(json!({"spec": {}})), ["spec.size: Required value"]);
        // A whole float is an integer.
        assert_eq!(messages(json!({"spec": {"size": 2.0}})), Vec::<String>::new());
        // Formats read bytes: text that is not ASCII where a date's digits go is refused,
        // never a panic.
        let schema = json!({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}});
        let causes = validate(&schema, &json!({"at": "aaaaaaaaaé2020-01-01T00:00:00Z"}));
        assert_eq!(causes.len(), 1, "{causes:?}");
    }
}
