//! What `kubectl explain` shows of a field: its type, its description in the chosen
//! Kubernetes version, the values it may take, and the fields under it. The editor's hover
//! and completion (`kubeyard lsp`) read it; it walks the same schemas validation uses: a
//! built-in kind's, with the prose `schema::descriptions` puts back and the enum values of
//! `schema::enums`, or a custom kind's as its CustomResourceDefinition writes it.

use crate::normalize::resolve;
use crate::object::GroupVersionKind;
use crate::schema::{Catalog, descriptions, enums};
use serde_json::Value;

/// One step of a field path: a key of a mapping, or an item of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Item,
}

/// A field, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    /// `string`, `integer`, `[]Container`, `map[string]string`, `PodSpec`...
    pub type_name: String,
    pub description: Option<String>,
    /// The values an enum allows, as the schema lists them.
    pub values: Vec<String>,
    /// The fields of an object, by name.
    pub fields: Vec<Field>,
}

/// A field of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub type_name: String,
    pub description: Option<String>,
    pub required: bool,
}

/// A schema's type: `"string"`, or the first that is not `"null"` of `["string", "null"]`
/// (how the schemas say a field may be null).
fn json_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(name) => Some(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).find(|n| *n != "null"),
        _ => None,
    }
}

/// A definition's short name: `io.k8s.api.core.v1.PodSpec` is `PodSpec`.
fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

struct Walker<'a> {
    catalog: &'a Catalog,
    definitions: &'a rustc_hash::FxHashMap<String, Value>,
}

impl<'a> Walker<'a> {
    /// A schema node's type, as kubectl explain names it.
    fn type_name(&self, node: &'a Value) -> String {
        let (resolved, name) = resolve(self.definitions, node);
        if let Some(name) = name.filter(|_| resolved.get("properties").is_some()) {
            return short(name).to_string();
        }
        match json_type(resolved) {
            Some("array") => {
                format!("[]{}", resolved.get("items").map_or_else(|| "Object".to_string(), |i| self.type_name(i)))
            }
            Some("object") => match resolved.get("additionalProperties").filter(|a| a.is_object()) {
                Some(values) => format!("map[string]{}", self.type_name(values)),
                None => "Object".to_string(),
            },
            Some(other) => other.to_string(),
            // IntOrString, Quantity: strings or numbers.
            None if resolved.get("oneOf").is_some() || resolved.get("anyOf").is_some() => "IntOrString".to_string(),
            None => name.map_or("Object", short).to_string(),
        }
    }

    /// The fields of an object node, in the schema's order, the required ones marked.
    fn fields(&self, node: &'a Value, definition: Option<&str>) -> Vec<Field> {
        let (resolved, name) = resolve(self.definitions, node);
        let definition = name.or(definition);
        let required = strings(resolved, "required");
        let Some(properties) = resolved.get("properties").and_then(Value::as_object) else { return Vec::new() };
        properties
            .iter()
            .map(|(key, child)| Field {
                name: key.clone(),
                type_name: self.type_name(child),
                description: definition
                    .and_then(|d| descriptions::description(self.catalog.version(), d, key))
                    .map(str::to_string),
                required: required.contains(&key.as_str()),
            })
            .collect()
    }
}

/// The field at `path` in an object of `gvk` (the object itself for an empty path);
/// `None` where the schema has no such field, or the kind has no schema.
pub fn explain(catalog: &Catalog, gvk: &GroupVersionKind, path: &[Segment]) -> Option<Explained> {
    if let Some(schema) = catalog.custom_schema(gvk) {
        return explain_custom(catalog, gvk, &schema, path);
    }
    let (root, definitions) = catalog.builtin_definition(gvk)?;
    let walker = Walker { catalog, definitions };
    let mut node = root;
    // The definition the current node is a field of, and the field's name.
    let mut owner: Option<&str> = catalog.builtin_name(gvk);
    let mut field: Option<&str> = None;
    let mut current: Option<&str> = owner;
    for segment in path {
        let (resolved, name) = resolve(definitions, node);
        if name.is_some() {
            current = name;
        }
        match segment {
            Segment::Key(key) => {
                let child = resolved
                    .get("properties")
                    .and_then(|p| p.get(key.as_str()))
                    .or_else(|| resolved.get("additionalProperties").filter(|a| a.is_object()))?;
                owner = current;
                field = resolved.get("properties").and_then(|p| p.get(key.as_str())).map(|_| key.as_str());
                node = child;
            }
            Segment::Item => node = resolved.get("items")?,
        }
    }
    let (resolved, name) = resolve(definitions, node);
    let description = match (owner, field) {
        (Some(owner), Some(field)) => descriptions::description(catalog.version(), owner, field),
        _ => None,
    }
    .or_else(|| name.or(current).and_then(|d| descriptions::description(catalog.version(), d, "")))
    .map(str::to_string);
    // The schema's own values (apiVersion, kind), else the `+enum` type's (of a list's
    // items too: `accessModes`, its items alike).
    let mut values: Vec<String> = enum_values(resolved);
    if values.is_empty()
        && let (Some(owner), Some(field)) = (owner, field)
        && !matches!(json_type(resolved), Some("object"))
    {
        values = enums::values(owner, field).iter().map(|v| v.to_string()).collect();
    }
    // The fields of a list's items, where the list is what was asked about.
    let fields_of = match json_type(resolved) {
        Some("array") => resolved.get("items").unwrap_or(resolved),
        _ => node,
    };
    // The kind's own definition is the node itself, not a reference to it.
    let type_name = match (path.is_empty(), catalog.builtin_name(gvk)) {
        (true, Some(name)) => short(name).to_string(),
        _ => walker.type_name(node),
    };
    Some(Explained { type_name, description, values, fields: walker.fields(fields_of, name.or(current)) })
}

/// The strings a schema lists under `key` (`required`, `enum`).
fn strings<'a>(schema: &'a Value, key: &str) -> Vec<&'a str> {
    schema.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

fn enum_values(schema: &Value) -> Vec<String> {
    strings(schema, "enum").into_iter().map(str::to_string).collect()
}

/// A custom kind's field, from its CRD's `openAPIV3Schema`: descriptions, types and enums
/// are written inline there. `metadata` is every kind's ObjectMeta, which CRDs leave out.
fn explain_custom(catalog: &Catalog, gvk: &GroupVersionKind, schema: &Value, path: &[Segment]) -> Option<Explained> {
    if let Some(Segment::Key(first)) = path.first()
        && first == "metadata"
    {
        return explain(catalog, &GroupVersionKind::new("", "v1", "ConfigMap"), path);
    }
    let mut node = schema;
    for segment in path {
        node = match segment {
            Segment::Key(key) => node
                .get("properties")
                .and_then(|p| p.get(key.as_str()))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            Segment::Item => node.get("items")?,
        };
    }
    let type_name = if path.is_empty() { gvk.kind.clone() } else { custom_type(node) };
    let fields_of = node.get("items").filter(|_| json_type(node) == Some("array")).unwrap_or(node);
    let required = strings(fields_of, "required");
    let mut fields: Vec<Field> = fields_of
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, child)| Field {
            name: name.clone(),
            type_name: custom_type(child),
            description: child.get("description").and_then(Value::as_str).map(str::to_string),
            required: required.contains(&name.as_str()),
        })
        .collect();
    // Every object has these, written in its CRD's schema or not.
    if path.is_empty() {
        for (name, type_name) in [("apiVersion", "string"), ("kind", "string"), ("metadata", "ObjectMeta")] {
            if !fields.iter().any(|f| f.name == name) {
                fields.push(Field {
                    name: name.into(),
                    type_name: type_name.into(),
                    description: None,
                    required: false,
                });
            }
        }
    }
    Some(Explained {
        type_name,
        description: node.get("description").and_then(Value::as_str).map(str::to_string),
        values: enum_values(node.get("items").unwrap_or(node)),
        fields,
    })
}

/// A CRD schema node's type, as kubectl explain names it.
fn custom_type(node: &Value) -> String {
    if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return "IntOrString".into();
    }
    match json_type(node) {
        Some("array") => format!("[]{}", node.get("items").map_or_else(|| "Object".to_string(), custom_type)),
        Some("object") => match node.get("additionalProperties").filter(|a| a.is_object()) {
            Some(values) => format!("map[string]{}", custom_type(values)),
            None => "Object".into(),
        },
        Some(other) => other.into(),
        None => "Object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CatalogOptions;

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    #[test]
    fn a_field_is_explained_as_kubectl_explain_does() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let deployment = GroupVersionKind::new("apps", "v1", "Deployment");
        let containers = [key("spec"), key("template"), key("spec"), key("containers")];
        let explained = explain(&catalog, &deployment, &containers).unwrap();
        assert_eq!(explained.type_name, "[]Container");
        assert!(explained.description.unwrap().starts_with("List of containers belonging to the pod."));
        assert!(explained.values.is_empty());
        let image = explained.fields.iter().find(|f| f.name == "image").unwrap();
        assert_eq!(image.type_name, "string");
        assert!(explained.fields.iter().any(|f| f.name == "name" && f.required));

        let mut policy = containers.to_vec();
        policy.extend([Segment::Item, key("imagePullPolicy")]);
        let explained = explain(&catalog, &deployment, &policy).unwrap();
        assert_eq!(explained.type_name, "string");
        assert!(explained.description.unwrap().starts_with("Image pull policy. One of Always, Never, IfNotPresent."));
        // The `+enum` type's values, which the published schemas leave out.
        assert_eq!(explained.values, ["Always", "IfNotPresent", "Never"]);
        let modes = [key("spec"), key("accessModes")];
        let pvc = GroupVersionKind::new("", "v1", "PersistentVolumeClaim");
        assert_eq!(explain(&catalog, &pvc, &modes).unwrap().values.len(), 4, "a list's items' values");
        // The values a schema lists (the built-in schemas list them for apiVersion and kind).
        assert_eq!(explain(&catalog, &deployment, &[key("kind")]).unwrap().values, ["Deployment"]);

        let labels = explain(&catalog, &deployment, &[key("metadata"), key("labels")]).unwrap();
        assert_eq!(labels.type_name, "map[string]string");
        let root = explain(&catalog, &deployment, &[]).unwrap();
        assert_eq!(root.type_name, "Deployment");
        assert!(root.fields.iter().any(|f| f.name == "spec" && f.type_name == "DeploymentSpec"));
        assert!(explain(&catalog, &deployment, &[key("spec"), key("nope")]).is_none());
    }

    #[test]
    fn a_custom_kind_is_explained_from_its_crd() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "description": "What the widget is.", "required": ["size"],
                        "properties": {
                            "size": {"type": "string", "enum": ["S", "M"], "description": "How big."},
                            "port": {"x-kubernetes-int-or-string": true},
                            "tags": {"type": "array", "items": {"type": "string"}}}}}}}}]}});
        let kinds = catalog.register_crd(&crd).unwrap();
        let widget = &kinds[0];
        let root = explain(&catalog, widget, &[]).unwrap();
        assert_eq!(root.type_name, "Widget");
        let names: Vec<&str> = root.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["spec", "apiVersion", "kind", "metadata"]);
        let spec = explain(&catalog, widget, &[key("spec")]).unwrap();
        assert_eq!(spec.description.as_deref(), Some("What the widget is."));
        let size = spec.fields.iter().find(|f| f.name == "size").unwrap();
        assert!(size.required && size.type_name == "string" && size.description.as_deref() == Some("How big."));
        assert!(spec.fields.iter().any(|f| f.name == "port" && f.type_name == "IntOrString"));
        assert!(spec.fields.iter().any(|f| f.name == "tags" && f.type_name == "[]string"));
        assert_eq!(explain(&catalog, widget, &[key("spec"), key("size")]).unwrap().values, ["S", "M"]);
        // metadata is ObjectMeta, as on every kind.
        let labels = explain(&catalog, widget, &[key("metadata"), key("labels")]).unwrap();
        assert_eq!(labels.type_name, "map[string]string");
        assert!(explain(&catalog, widget, &[key("spec"), key("colour")]).is_none());
    }
}
