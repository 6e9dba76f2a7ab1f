//! OpenAPI v3 documents, so kubectl finds what it looks for before it writes: the kinds'
//! schemas (the same definitions admission validates with), and for each kind the
//! operations with the `fieldValidation` parameter. Seeing it, kubectl leaves validation
//! to the server (strict, through admission) instead of asking for `--validate=false`.

use super::resources::{RESOURCES, Resource, Served};
use kubeyard_compiler::object::GroupVersionKind;
use kubeyard_compiler::schema::Catalog;
use kubeyard_compiler::schema::descriptions::describe;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// `/openapi/v3` and each group version's document, made once per set of served kinds.
pub struct Documents {
    pub index: Value,
    /// `api/v1`, `apis/apps/v1`, ... to the document's JSON text.
    pub by_group_version: BTreeMap<String, String>,
}

fn group_version_path(resource: &Resource) -> String {
    if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    }
}

fn operation(resource: &Resource, definition: &str, action: &str) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{definition}")});
    let mut parameters = vec![json!({"name": "dryRun", "in": "query", "schema": {"type": "string"}})];
    if matches!(action, "post" | "put" | "patch") {
        parameters.push(json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}));
        parameters.push(json!({"name": "fieldManager", "in": "query", "schema": {"type": "string"}}));
    }
    json!({
        "operationId": format!("{action}{}", resource.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
    })
}

/// Rewrites the definitions (JSON Schema, as admission reads them) as OpenAPI 3.0
/// schemas: references into `components/schemas` (in `allOf` when described), and `type: [object, "null"]` as
/// `type: object` with `nullable`, which is what kubectl's `explain` can read.
fn rereference(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref")
                && let Some(name) = target.strip_prefix("#/$defs/")
            {
                *target = format!("#/components/schemas/{name}");
            }
            // OpenAPI 3.0 ignores a reference's siblings; kube-openapi wraps a reference
            // with its own description in `allOf`, and kubectl's explain then prints the
            // field's prose above the type's.
            // Only a schema's reference: a `properties` map may have a field named `$ref`
            // (a CRD schema's), whose value is a schema, not a string.
            if map.len() > 1
                && map.get("$ref").is_some_and(Value::is_string)
                && let Some(reference) = map.remove("$ref")
            {
                map.insert("allOf".into(), json!([{"$ref": reference}]));
            }
            if let Some(Value::Array(types)) = map.get("type") {
                let nullable = types.iter().any(|t| t == "null");
                let first = types.iter().find(|t| *t != "null").cloned();
                match first {
                    Some(first) => {
                        map.insert("type".into(), first);
                    }
                    None => {
                        map.remove("type");
                    }
                }
                if nullable {
                    map.insert("nullable".into(), Value::Bool(true));
                }
            }
            map.values_mut().for_each(rereference);
        }
        Value::Array(items) => items.iter_mut().for_each(rereference),
        _ => {}
    }
}

pub fn documents(catalog: &Catalog, served: &Served) -> Documents {
    let pod = GroupVersionKind::new("", "v1", "Pod");
    let definitions = catalog.builtin_definition(&pod).map(|(_, d)| d);
    let mut schemas = Map::new();
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    let version = catalog.version();
    for (name, definition) in definitions.into_iter().flatten() {
        let mut definition = definition.clone();
        describe(version, name, &mut definition);
        rereference(&mut definition);
        for gvk in definition.get("x-kubernetes-group-version-kind").and_then(Value::as_array).into_iter().flatten() {
            let group = gvk.get("group").and_then(Value::as_str).unwrap_or("").to_string();
            let kind = gvk.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
            let version = gvk.get("version").and_then(Value::as_str).unwrap_or("");
            if RESOURCES.iter().any(|r| r.group == group && r.kind == kind && r.version == version) {
                names.insert((group, kind), name.clone());
            }
        }
        schemas.insert(name.clone(), definition);
    }
    // Custom kinds: each served version's schema from its CRD, under Kubernetes' name
    // for it (the group reversed: `com.example.v1.Widget`).
    let mut custom_names: BTreeMap<(&str, &str, &str), String> = BTreeMap::new();
    for (resource, schema) in served.custom_schemas() {
        let name = custom_definition_name(resource);
        schemas.insert(name.clone(), custom_definition(resource, schema));
        custom_names.insert((resource.group, resource.version, resource.kind), name);
    }
    let mut paths_by_group_version: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let custom = served.custom_resources();
    for resource in RESOURCES.iter().chain(custom.iter().copied()) {
        let definition = match resource.crd {
            None => names.get(&(resource.group.to_string(), resource.kind.to_string())),
            Some(_) => custom_names.get(&(resource.group, resource.version, resource.kind)),
        };
        let Some(definition) = definition else { continue };
        let root = format!("/{}", group_version_path(resource));
        let collection = if resource.namespaced {
            format!("{root}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{root}/{}", resource.plural)
        };
        let paths = paths_by_group_version.entry(group_version_path(resource)).or_default();
        paths.insert(
            collection.clone(),
            json!({"get": operation(resource, definition, "list"), "post": operation(resource, definition, "post")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(resource, definition, "get"),
                "put": operation(resource, definition, "put"),
                "patch": operation(resource, definition, "patch"),
                "delete": operation(resource, definition, "delete"),
            }),
        );
    }
    let version = version.to_string();
    let mut index = Map::new();
    let mut by_group_version = BTreeMap::new();
    for (group_version, paths) in paths_by_group_version {
        // As kube-openapi publishes it: a group version's document holds the schemas its
        // operations reach, not every kind's.
        let schemas = reachable(&schemas, &paths);
        let document = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (kubeyard)", "version": format!("v{version}.0")},
            "paths": paths,
            "components": {"schemas": schemas},
        })
        .to_string();
        let hash = format!("{:08X}", crc32fast::hash(document.as_bytes()));
        index.insert(
            group_version.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{group_version}?hash={hash}")}),
        );
        by_group_version.insert(group_version, document);
    }
    Documents { index: json!({"paths": index}), by_group_version }
}

/// The schemas `paths` refer to, directly or through other schemas.
fn reachable(schemas: &Map<String, Value>, paths: &Map<String, Value>) -> Value {
    fn references<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if let Some(name) =
                    map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    found.push(name);
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    paths.values().for_each(|path| references(path, &mut pending));
    let mut kept = Map::new();
    while let Some(name) = pending.pop() {
        if kept.contains_key(name) {
            continue;
        }
        if let Some(schema) = schemas.get(name) {
            references(schema, &mut pending);
            kept.insert(name.to_string(), schema.clone());
        }
    }
    Value::Object(kept)
}

fn custom_definition_name(resource: &Resource) -> String {
    let reversed: Vec<&str> = resource.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), resource.version, resource.kind)
}

/// A CRD version's schema as Kubernetes publishes it: with `apiVersion`, `kind` and
/// `metadata` (ObjectMeta) put in, and the kind it describes.
fn custom_definition(resource: &Resource, schema: &Value) -> Value {
    let mut definition = schema.clone();
    if !definition.is_object() {
        definition = json!({"type": "object"});
    }
    let properties = definition
        .as_object_mut()
        .map(|map| map.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
        );
        properties.insert(
            "kind".into(),
            json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
        );
        properties.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}),
        );
    }
    definition["x-kubernetes-group-version-kind"] =
        json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]);
    definition
}

/// `/openapi/v2`: a document with no definitions, in protobuf (what kubectl asks for) or
/// JSON. kubectl reads it to validate, on the client, the kinds that
/// OpenAPI v3 does not describe (a custom resource whose CRD it is applying in the same
/// command); a kind a document does not describe it leaves to the server, which
/// validates everything (a 404 here would make kubectl refuse the object instead).
pub fn v2(accept: &str, version: &str) -> (&'static str, Vec<u8>) {
    const TITLE: &str = "Kubernetes (kubeyard)";
    let version = format!("v{version}.0");
    if accept.contains("protobuf") {
        // An empty gnostic `openapi_v2.Document`: the fields' zero values, as protobuf
        // encodes a message with nothing set. Served as kube-openapi serves protobuf (Go
        // cannot parse the media type kubectl asks for).
        return ("application/octet-stream", Vec::new());
    }
    let document =
        json!({"swagger": "2.0", "info": {"title": TITLE, "version": version}, "paths": {}, "definitions": {}});
    ("application/json", document.to_string().into_bytes())
}
