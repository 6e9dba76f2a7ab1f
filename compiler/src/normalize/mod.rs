//! Normalization: every object as the API server would store it. Defaults are applied
//! (`defaults`), quantities are written in canonical form, nulls and empty lists and maps
//! are dropped (Kubernetes' `omitempty`), and keys come out sorted. Normalizing twice
//! gives what normalizing once gives.
//!
//! This is the one implementation: `kubeyard normalize` prints it, and the later stages
//! (graph, plan, the API server's admission) consume it.

pub mod defaults;

use crate::object::{GroupVersionKind, ObjectInfo};
use crate::quantity::Quantity;
use crate::schema::Catalog;
use crate::yaml::Node;
use serde_json::Value;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The normalized form of a schema-valid object.
pub fn normalize(info: &ObjectInfo, object: &Node, catalog: &Catalog) -> Value {
    let mut value = object.to_json();
    normalize_value(info, &mut value, catalog);
    value
}

/// Normalizes a JSON object in place (for objects that did not come from YAML text).
pub fn normalize_value(info: &ObjectInfo, value: &mut Value, catalog: &Catalog) {
    normalize_kind(&info.gvk, value, catalog);
}

/// Normalizes a JSON object of the kind `gvk` in place. It holds for objects not (yet)
/// checked too: nothing here assumes a field has the type its schema says.
pub fn normalize_kind(gvk: &GroupVersionKind, value: &mut Value, catalog: &Catalog) {
    let namespaced = catalog.is_namespaced(gvk);
    if let Some(Value::Object(metadata)) = value.get_mut("metadata") {
        if !namespaced {
            // The API server clears the namespace of cluster-scoped objects.
            metadata.remove("namespace");
        } else if metadata.get("namespace").is_none_or(|n| n.is_null() || n == "") {
            metadata.insert("namespace".into(), Value::String("default".into()));
        }
    }
    defaults::apply(&gvk.group, &gvk.kind, value);
    match catalog.builtin_definition(gvk) {
        Some((schema, definitions)) => Canonical { definitions }.walk(schema, value),
        None => drop_nulls(value),
    }
}

/// Follows `$ref`s to the schema itself, with the definition's name if it had one.
pub fn resolve<'a>(
    definitions: &'a rustc_hash::FxHashMap<String, Value>,
    mut schema: &'a Value,
) -> (&'a Value, Option<&'a str>) {
    let mut name = None;
    for _ in 0..8 {
        let Some(target) = schema.get("$ref").and_then(Value::as_str) else { break };
        let Some(definition) = target.rsplit('/').next() else { break };
        match definitions.get(definition) {
            Some(next) => {
                schema = next;
                name = Some(definition);
            }
            None => break,
        }
    }
    (schema, name)
}

/// Walks a value alongside its schema.
struct Canonical<'a> {
    definitions: &'a rustc_hash::FxHashMap<String, Value>,
}

impl<'a> Canonical<'a> {
    fn resolve(&self, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
        resolve(self.definitions, schema)
    }

    fn walk(&self, schema: &'a Value, value: &mut Value) {
        let (schema, name) = self.resolve(schema);
        if name == Some(QUANTITY) {
            canonical_quantity(value, false);
            return;
        }
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                // A map of quantities is a resource list: the API server rounds its amounts up
                // to milli-units.
                let resource_list =
                    properties.is_none() && additional.is_some_and(|a| self.resolve(a).1 == Some(QUANTITY));
                for (key, child) in map.iter_mut() {
                    let child_schema = properties.and_then(|p| p.get(key)).or(additional);
                    match child_schema {
                        Some(_) if resource_list => canonical_quantity(child, true),
                        Some(child_schema) => self.walk(child_schema, child),
                        None => drop_nulls(child),
                    }
                }
                // `omitempty`: an empty list or map disappears; an empty struct (`emptyDir:
                // {}`, `securityContext: {}`) means something and stays.
                map.retain(|key, child| match child {
                    Value::Array(items) => !items.is_empty(),
                    Value::Object(fields) if fields.is_empty() => {
                        let child_schema = properties.and_then(|p| p.get(key)).or(additional);
                        !child_schema.is_some_and(|s| self.is_map(s))
                    }
                    _ => true,
                });
            }
            Value::Array(items) => {
                let item_schema = schema.get("items");
                for item in items.iter_mut() {
                    match item_schema {
                        Some(item_schema) => self.walk(item_schema, item),
                        None => drop_nulls(item),
                    }
                }
            }
            _ => {}
        }
    }

    /// A map type (`labels`, `data`): keys are data, not fields.
    fn is_map(&self, schema: &'a Value) -> bool {
        let (schema, _) = self.resolve(schema);
        schema.get("properties").is_none() && schema.get("additionalProperties").is_some_and(Value::is_object)
    }
}

fn canonical_quantity(value: &mut Value, in_resource_list: bool) {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return,
    };
    if let Ok(quantity) = text.parse::<Quantity>() {
        let quantity = if in_resource_list { quantity.rounded_to_milli() } else { quantity };
        *value = Value::String(quantity.canonical());
    }
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The defaults reference, as `docs/normalize.md` prints it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Normalization\n\n<!-- Generated from `compiler/src/normalize/defaults.rs` by `UPDATE_DOCS=1 cargo test -p kubeyard-compiler --test docs`. -->\n\n\
         `kubeyard normalize` prints every object as the API server would store it:\n\n\
         - the defaults below, where the object does not set the field;\n\
         - quantities in canonical form (`1.5Gi` → `1536Mi`, `0.5` → `500m`, `1000` → `1k`), as strings;\n\
         - no nulls, no empty lists, no empty maps (Kubernetes omits them); empty structs such as `emptyDir: {}` stay;\n\
         - keys in alphabetical order, YAML quoted so that YAML 1.1 readers (kubectl) read back the same values.\n\n\
         Normalizing twice gives the same result as normalizing once. Admission plugins (service\n\
         account token volumes, default tolerations, priority) and allocations by the API server\n\
         (cluster IPs, node ports, UIDs, timestamps, generated Job selectors) are not mirrored:\n\
         they are random or belong to a particular cluster. \"set by\" names the Kubernetes\n\
         function; `core/v1` is `pkg/apis/core/v1/defaults.go` in the Kubernetes source, and so on.\n\n\
         | applies to | field | value | set by | when |\n|---|---|---|---|---|\n",
    );
    for default in defaults::DEFAULTS {
        let scope = match default.scope {
            defaults::Scope::Object("*", _) => "every object".to_string(),
            defaults::Scope::Object(group, kind) => {
                if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind} ({group})")
                }
            }
            defaults::Scope::PodSpec => "pod specs (Pods and every template)".into(),
            defaults::Scope::Container => "containers".into(),
            defaults::Scope::ContainerPort => "container ports".into(),
            defaults::Scope::Probe => "probes".into(),
            defaults::Scope::ServicePort => "Service ports".into(),
        };
        let value = match default.fill {
            defaults::Fill::Fixed(json) => format!("`{json}`"),
            defaults::Fill::Computed(text) => text.to_string(),
        };
        out.push_str(&format!(
            "| {scope} | `{}` | {} | {} | {} |\n",
            default.field,
            value.replace('|', "\\|"),
            default.source,
            default.when.unwrap_or("unset")
        ));
    }
    out
}
