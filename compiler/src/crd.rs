//! A CustomResourceDefinition as Kubernetes' apiextensions server takes it: its defaults
//! (`set_defaults`), the checks a CRD must pass to be stored (`validate`: names, versions,
//! structural schemas, with Kubernetes' messages), and the names it may serve beside the
//! CRDs of its group (`accept_names`, the naming controller). The API server runs these
//! on every CRD written; they are pure, so `lint` can run them too.

use crate::admission::Cause;
use crate::field_error::{forbidden, invalid, not_supported as unsupported, required};
use crate::names;
use serde_json::{Map, Value, json};

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

use crate::object::json_strings as strings;

/// Kubernetes' defaults for a CRD's spec (apiextensions v1 `SetDefaults_*`): the singular
/// name and list kind from the kind, no conversion, port 443 for a conversion webhook
/// Service. Its status is the server's (`set_stored_versions`).
pub fn set_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if !kind.is_empty() {
            if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
    }
    match spec.get_mut("conversion").and_then(Value::as_object_mut) {
        None => {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        Some(conversion) => {
            if let Some(service) = conversion
                .get_mut("webhook")
                .and_then(|w| w.pointer_mut("/clientConfig/service"))
                .and_then(Value::as_object_mut)
            {
                service.entry("port").or_insert(json!(443));
            }
        }
    }
}

/// The versions objects have been stored in, on a CRD the server stores: the storage
/// version when it names none (`status.storedVersions`).
pub fn set_stored_versions(crd: &mut Value) {
    let storage = storage_version(crd).map(str::to_string);
    if let Some(storage) = storage {
        if !crd.get("status").is_some_and(Value::is_object) {
            crd["status"] = json!({});
        }
        let stored = crd.pointer("/status/storedVersions").and_then(Value::as_array).is_some_and(|v| !v.is_empty());
        if !stored {
            crd["status"]["storedVersions"] = json!([storage]);
        }
    }
}

/// The one version objects are stored in; `None` unless exactly one says `storage: true`.
pub fn storage_version(crd: &Value) -> Option<&str> {
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array)?;
    let mut storage = versions.iter().filter(|v| v.get("storage") == Some(&Value::Bool(true)));
    let first = storage.next()?;
    if storage.next().is_some() {
        return None;
    }
    first.get("name").and_then(Value::as_str)
}

/// Why a CRD cannot be stored, as Kubernetes' validation says it (field paths as kubectl
/// shows them). `old` is the stored CRD on an update. The completeness rule of structural
/// schemas (a field named in a value validation must be declared outside it too) is not
/// checked.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = text(crd, "/spec/group").unwrap_or_default();
    let plural = text(crd, "/spec/names/plural").unwrap_or_default();
    let name = text(crd, "/metadata/name").unwrap_or_default();
    if name != format!("{plural}.{group}") {
        causes.push(invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    validate_group(crd, group, &mut causes);
    match crd.pointer("/spec/scope") {
        None => causes.push(required("spec.scope", "")),
        Some(scope) if scope != "Cluster" && scope != "Namespaced" => {
            causes.push(unsupported("spec.scope", scope, &["Cluster", "Namespaced"]));
        }
        Some(_) => {}
    }
    validate_names(crd, &mut causes);
    validate_versions(crd, &mut causes);
    let was_preserving = old.is_some_and(|old| old.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true)));
    if crd.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true)) && !was_preserving {
        causes.push(invalid(
            "spec.preserveUnknownFields",
            &json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    validate_conversion(crd, &mut causes);
    validate_stored_versions(crd, &mut causes);
    causes
}

fn validate_group(crd: &Value, group: &str, causes: &mut Vec<Cause>) {
    if group.is_empty() {
        causes.push(required("spec.group", ""));
        return;
    }
    for problem in names::dns1123_subdomain(group) {
        causes.push(invalid("spec.group", &json!(group), &problem));
    }
    if !group.contains('.') {
        causes.push(invalid("spec.group", &json!(group), "should be a domain with at least one dot"));
    }
    let protected = |domain: &str| group == domain || group.ends_with(&format!(".{domain}"));
    if (protected("k8s.io") || protected("kubernetes.io"))
        && crd.pointer("/metadata/annotations/api-approved.kubernetes.io").is_none()
    {
        causes.push(required(
            "metadata.annotations[api-approved.kubernetes.io]",
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        ));
    }
}

fn validate_names(crd: &Value, causes: &mut Vec<Cause>) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    for (key, lower) in [("plural", true), ("singular", true), ("kind", false), ("listKind", false)] {
        let field = format!("spec.names.{key}");
        match names.get(key).and_then(Value::as_str) {
            None | Some("") if key != "singular" => causes.push(required(field, "")),
            None | Some("") => {}
            Some(value) if lower => {
                for problem in names::dns1035_label(value) {
                    causes.push(invalid(field.clone(), &json!(value), &problem));
                }
            }
            Some(value) => {
                for problem in names::dns1035_label(&value.to_lowercase()) {
                    let detail = format!("may have mixed case, but should otherwise match: {problem}");
                    causes.push(invalid(field.clone(), &json!(value), &detail));
                }
            }
        }
    }
    if names.get("kind").is_some() && names.get("kind") == names.get("listKind") {
        causes.push(invalid("spec.names.listKind", &names["listKind"], "kind and listKind may not be the same"));
    }
    for key in ["shortNames", "categories"] {
        for (index, value) in strings(&names, &format!("/{key}")).iter().enumerate() {
            for problem in names::dns1123_label(value) {
                causes.push(invalid(format!("spec.names.{key}[{index}]"), &json!(value), &problem));
            }
        }
    }
}

fn validate_versions(crd: &Value, causes: &mut Vec<Cause>) {
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(invalid("spec.versions", &json!([]), "must have exactly one version marked as storage version"));
        return;
    }
    let mut seen = Vec::new();
    for (index, version) in versions.iter().enumerate() {
        let field = format!("spec.versions[{index}]");
        let name = version.get("name").and_then(Value::as_str).unwrap_or_default();
        for problem in names::dns1035_label(name) {
            causes.push(invalid(format!("{field}.name"), &json!(name), &problem));
        }
        if seen.contains(&name) {
            causes.push(invalid("spec.versions", &json!(versions), "must contain unique version names"));
        }
        seen.push(name);
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            causes.push(required(format!("{field}.schema.openAPIV3Schema"), "schemas are required"));
            continue;
        };
        let path = format!("{field}.schema.openAPIV3Schema");
        let status = version.pointer("/subresources/status").is_some();
        validate_root(schema, &path, status, causes);
        crate::schema::cel::check_rules_compile(schema, &path, causes);
        crate::schema::cel_cost::check_rules_cost(schema, &path, causes);
        validate_columns(version, &field, causes);
        validate_scale(version, &field, causes);
    }
    let storage = versions.iter().filter(|v| v.get("storage") == Some(&Value::Bool(true))).count();
    if storage != 1 {
        causes.push(invalid(
            "spec.versions",
            &json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
}

fn validate_root(schema: &Value, path: &str, status: bool, causes: &mut Vec<Cause>) {
    match schema.get("type").and_then(Value::as_str) {
        None => causes.push(required(format!("{path}.type"), "must not be empty at the root")),
        Some("object") => {}
        Some(other) => causes.push(invalid(format!("{path}.type"), &json!(other), "must be object at the root")),
    }
    if schema.get("nullable") == Some(&Value::Bool(true)) && status {
        causes.push(invalid(format!("{path}.nullable"), &json!(true), "nullable cannot be true at the root"));
    }
    if schema.get("additionalProperties").is_some() {
        causes.push(forbidden(format!("{path}.additionalProperties"), "must not be used at the root"));
    }
    if let Some(metadata) = schema.pointer("/properties/metadata") {
        let allowed = ["type", "properties", "description"];
        let names_only = metadata
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
        if !names_only || metadata.as_object().is_some_and(|m| m.keys().any(|k| !allowed.contains(&k.as_str()))) {
            causes.push(forbidden(
                format!("{path}.properties[metadata]"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    walk(schema, path, Context::Root, causes);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Root,
    Property,
    Items,
    /// Inside `allOf`, `anyOf`, `oneOf` or `not`: value validations only.
    Validation,
}

/// Keywords a CRD schema may never use.
const FORBIDDEN_KEYWORDS: &[&str] = &[
    "definitions",
    "dependencies",
    "deprecated",
    "discriminator",
    "id",
    "patternProperties",
    "readOnly",
    "writeOnly",
    "xml",
    "$ref",
    "additionalItems",
];

/// The structural-schema rules and the forbidden keywords, on every node.
fn walk(schema: &Value, path: &str, context: Context, causes: &mut Vec<Cause>) {
    let Some(node) = schema.as_object() else { return };
    for keyword in FORBIDDEN_KEYWORDS {
        if node.contains_key(*keyword) {
            causes.push(forbidden(format!("{path}.{keyword}"), "must not be used"));
        }
    }
    if node.get("uniqueItems") == Some(&Value::Bool(true)) {
        causes.push(forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if node.get("additionalProperties") == Some(&Value::Bool(false)) {
        causes.push(forbidden(format!("{path}.additionalProperties"), "additionalProperties cannot be set to false"));
    }
    if node.get("type").and_then(Value::as_str) == Some("null") {
        causes.push(invalid(
            format!("{path}.type"),
            &json!("null"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let embedded = node.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
    if context == Context::Validation {
        validation_only(node, path, causes);
    } else if node.get("type").is_none() && !int_or_string && !preserve && context != Context::Root {
        let detail = match context {
            Context::Items => "must not be empty for specified array items",
            _ => "must not be empty for specified object fields",
        };
        causes.push(required(format!("{path}.type"), detail));
    }
    if node.get("type").and_then(Value::as_str) == Some("array") && !node.contains_key("items") {
        causes.push(required(format!("{path}.items"), "must be specified"));
    }
    if int_or_string {
        for key in ["x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource"] {
            if node.get(key) == Some(&Value::Bool(true)) {
                causes.push(invalid(
                    format!("{path}.{key}"),
                    &json!(true),
                    "must be false if x-kubernetes-int-or-string is true",
                ));
            }
        }
    }
    if embedded {
        if node.get("type").and_then(Value::as_str) != Some("object") {
            causes.push(invalid(
                format!("{path}.type"),
                &node.get("type").cloned().unwrap_or(json!("")),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else if !node.contains_key("properties") && !preserve {
            causes.push(required(format!("{path}.properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
        }
    }
    list_markers(node, path, causes);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        let inner = if context == Context::Validation { Context::Validation } else { Context::Property };
        for (name, property) in properties {
            walk(property, &format!("{path}.properties[{name}]"), inner, causes);
        }
    }
    if let Some(items) = node.get("items") {
        match items {
            Value::Array(_) => {
                causes.push(forbidden(format!("{path}.items"), "items must be a schema object and not an array"))
            }
            items => {
                let inner = if context == Context::Validation { Context::Validation } else { Context::Items };
                walk(items, &format!("{path}.items"), inner, causes);
            }
        }
    }
    if let Some(Value::Object(_)) = node.get("additionalProperties") {
        let inner = if context == Context::Validation { Context::Validation } else { Context::Property };
        walk(&node["additionalProperties"], &format!("{path}.additionalProperties"), inner, causes);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (index, branch) in node.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            walk(branch, &format!("{path}.{key}[{index}]"), Context::Validation, causes);
        }
    }
    if let Some(not) = node.get("not") {
        walk(not, &format!("{path}.not"), Context::Validation, causes);
    }
}

/// Inside a value validation a schema may only validate, never shape: rule 3 of
/// structural schemas.
fn validation_only(node: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if node.contains_key("type") {
        causes.push(forbidden(format!("{path}.type"), "must be empty to be structural"));
    }
    for key in ["additionalProperties", "default", "nullable"] {
        if node.contains_key(key) {
            causes.push(forbidden(format!("{path}.{key}"), "must be undefined to be structural"));
        }
    }
    for key in ["title", "description"] {
        if node.contains_key(key) {
            causes.push(forbidden(format!("{path}.{key}"), "must be empty to be structural"));
        }
    }
    for key in node.keys().filter(|k| k.starts_with("x-kubernetes-")) {
        causes.push(forbidden(format!("{path}.{key}"), "must be false to be structural"));
    }
}

/// `x-kubernetes-list-type` and `x-kubernetes-map-type`, checked when the CRD is written.
fn list_markers(node: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    let kind = node.get("type").and_then(Value::as_str);
    if let Some(list_type) = node.get("x-kubernetes-list-type") {
        let field = format!("{path}.x-kubernetes-list-type");
        if kind != Some("array") {
            causes.push(invalid(field.clone(), list_type, "must be array if x-kubernetes-list-type is specified"));
        }
        match list_type.as_str() {
            Some("atomic") | Some("set") => {}
            Some("map") => {
                let keys = node.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
                if keys.is_none_or(Vec::is_empty) {
                    causes.push(required(
                        format!("{path}.x-kubernetes-list-map-keys"),
                        "must not be empty if x-kubernetes-list-type is map",
                    ));
                }
                if node.get("items").and_then(|i| i.get("type")).and_then(Value::as_str) != Some("object") {
                    causes.push(invalid(
                        format!("{path}.items.type"),
                        &node.get("items").and_then(|i| i.get("type")).cloned().unwrap_or(json!("")),
                        "must be object if parent array's x-kubernetes-list-type is map",
                    ));
                }
            }
            _ => causes.push(unsupported(field, list_type, &["atomic", "set", "map"])),
        }
    } else if node.contains_key("x-kubernetes-list-map-keys") {
        causes.push(forbidden(
            format!("{path}.x-kubernetes-list-map-keys"),
            "must not be specified if x-kubernetes-list-type is not map",
        ));
    }
    if let Some(map_type) = node.get("x-kubernetes-map-type") {
        let field = format!("{path}.x-kubernetes-map-type");
        if !matches!(map_type.as_str(), Some("atomic" | "granular")) {
            causes.push(unsupported(field.clone(), map_type, &["atomic", "granular"]));
        }
        if kind != Some("object") {
            causes.push(invalid(field, map_type, "must be object if x-kubernetes-map-type is specified"));
        }
    }
}

fn validate_columns(version: &Value, field: &str, causes: &mut Vec<Cause>) {
    const TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
    const FORMATS: &[&str] = &["int32", "int64", "float", "double", "byte", "date", "date-time", "password"];
    for (index, column) in
        version.get("additionalPrinterColumns").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let path = format!("{field}.additionalPrinterColumns[{index}]");
        if column.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push(required(format!("{path}.name"), ""));
        }
        match column.get("type") {
            None => causes.push(required(format!("{path}.type"), "")),
            Some(kind) if !kind.as_str().is_some_and(|k| TYPES.contains(&k)) => {
                causes.push(unsupported(format!("{path}.type"), kind, TYPES));
            }
            Some(_) => {}
        }
        if let Some(format) = column.get("format")
            && !format.as_str().is_some_and(|f| f.is_empty() || FORMATS.contains(&f))
        {
            causes.push(unsupported(format!("{path}.format"), format, FORMATS));
        }
        match column.get("jsonPath").and_then(Value::as_str) {
            None | Some("") => causes.push(required(format!("{path}.JSONPath"), "")),
            Some(path_text) if !path_text.starts_with('.') => {
                causes.push(invalid(
                    format!("{path}.JSONPath"),
                    &json!(path_text),
                    "must be a simple json path starting with .",
                ));
            }
            Some(_) => {}
        }
    }
}

fn validate_scale(version: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(scale) = version.pointer("/subresources/scale") else { return };
    let path = format!("{field}.subresources.scale");
    for (key, under) in [("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")] {
        match scale.get(key).and_then(Value::as_str) {
            None | Some("") => causes.push(required(format!("{path}.{key}"), "")),
            Some(value) if !value.starts_with(under) => {
                let detail = format!("should be a json path under {}", under.trim_end_matches('.'));
                causes.push(invalid(format!("{path}.{key}"), &json!(value), &detail));
            }
            Some(_) => {}
        }
    }
    if let Some(selector) = scale.get("labelSelectorPath").and_then(Value::as_str)
        && !selector.starts_with(".spec.")
        && !selector.starts_with(".status.")
    {
        causes.push(invalid(
            format!("{path}.labelSelectorPath"),
            &json!(selector),
            "should be a json path under either .spec or .status",
        ));
    }
}

fn validate_conversion(crd: &Value, causes: &mut Vec<Cause>) {
    let Some(conversion) = crd.pointer("/spec/conversion") else { return };
    let webhook = conversion.get("webhook");
    match conversion.get("strategy").and_then(Value::as_str) {
        Some("None") if webhook.is_some() => {
            causes.push(forbidden("spec.conversion.webhook", "should not be set when strategy is not set to Webhook"))
        }
        Some("None") => {}
        Some("Webhook") => {
            let Some(webhook) = webhook else {
                causes.push(required("spec.conversion.webhook", "required when strategy is set to Webhook"));
                return;
            };
            let config = webhook.get("clientConfig");
            let (url, service) = (config.and_then(|c| c.get("url")), config.and_then(|c| c.get("service")));
            if url.is_some() == service.is_some() {
                causes.push(required(
                    "spec.conversion.webhook.clientConfig",
                    "exactly one of url or service is required",
                ));
            }
            let versions = strings(webhook, "/conversionReviewVersions");
            if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
                causes.push(invalid(
                    "spec.conversion.webhook.conversionReviewVersions",
                    &json!(versions),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
        Some(other) => causes.push(unsupported("spec.conversion.strategy", &json!(other), &["None", "Webhook"])),
        None => causes.push(required("spec.conversion.strategy", "")),
    }
}

fn validate_stored_versions(crd: &Value, causes: &mut Vec<Cause>) {
    let stored = strings(crd, "/status/storedVersions");
    if stored.is_empty() {
        if crd.pointer("/status/storedVersions").is_some() {
            causes.push(invalid("status.storedVersions", &json!([]), "must have at least one stored version"));
        }
        return;
    }
    let versions: Vec<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    for (index, version) in stored.iter().enumerate() {
        if !versions.contains(version) {
            causes.push(invalid(
                format!("status.storedVersions[{index}]"),
                &json!(version),
                "must appear in spec.versions",
            ));
        }
    }
    if let Some(storage) = storage_version(crd)
        && !stored.iter().any(|v| v == storage)
    {
        causes.push(invalid(
            "status.storedVersions",
            &json!(stored),
            &format!("must have the storage version {storage}"),
        ));
    }
}

/// The names a CRD serves, as `status.acceptedNames` says them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptedNames {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl AcceptedNames {
    /// The names a CRD asks for (`spec.names`).
    pub fn wanted(crd: &Value) -> AcceptedNames {
        AcceptedNames::of(crd, "/spec/names")
    }

    fn of(crd: &Value, pointer: &str) -> AcceptedNames {
        let name = |key: &str| text(crd, &format!("{pointer}/{key}")).unwrap_or_default().to_string();
        AcceptedNames {
            plural: name("plural"),
            singular: name("singular"),
            kind: name("kind"),
            list_kind: name("listKind"),
            short_names: strings(crd, &format!("{pointer}/shortNames")),
            categories: strings(crd, &format!("{pointer}/categories")),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut names =
            json!({"plural": self.plural, "singular": self.singular, "kind": self.kind, "listKind": self.list_kind});
        if !self.short_names.is_empty() {
            names["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            names["categories"] = json!(self.categories);
        }
        names
    }
}

/// The names a CRD may serve beside `others` (the other CRDs stored): Kubernetes' naming
/// controller compares them with what each other CRD of the same group has been given
/// (`status.acceptedNames`). `Err` is the condition's reason and message.
pub fn accept_names(crd: &Value, others: &[Value]) -> Result<AcceptedNames, (&'static str, String)> {
    let wanted = AcceptedNames::wanted(crd);
    let group = text(crd, "/spec/group").unwrap_or_default();
    let name = text(crd, "/metadata/name").unwrap_or_default();
    let taken: Vec<AcceptedNames> = others
        .iter()
        .filter(|other| text(other, "/spec/group") == Some(group) && text(other, "/metadata/name") != Some(name))
        .map(|other| AcceptedNames::of(other, "/status/acceptedNames"))
        .collect();
    let in_use = |what: &str| format!("\"{what}\" is already in use");
    for other in &taken {
        if !wanted.plural.is_empty() && (other.plural == wanted.plural || other.singular == wanted.plural) {
            return Err(("PluralConflict", in_use(&wanted.plural)));
        }
    }
    for other in &taken {
        if !wanted.singular.is_empty() && (other.plural == wanted.singular || other.singular == wanted.singular) {
            return Err(("SingularConflict", in_use(&wanted.singular)));
        }
    }
    for short in &wanted.short_names {
        if taken
            .iter()
            .any(|other| other.short_names.contains(short) || other.plural == *short || other.singular == *short)
        {
            return Err(("ShortNamesConflict", in_use(short)));
        }
    }
    for other in &taken {
        if !wanted.kind.is_empty() && (other.kind == wanted.kind || other.list_kind == wanted.kind) {
            return Err(("KindConflict", in_use(&wanted.kind)));
        }
    }
    for other in &taken {
        if !wanted.list_kind.is_empty() && (other.kind == wanted.list_kind || other.list_kind == wanted.list_kind) {
            return Err(("ListKindConflict", in_use(&wanted.list_kind)));
        }
    }
    Ok(wanted)
}

/// A CRD condition as Kubernetes writes it.
pub fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "lastTransitionTime": now, "reason": reason, "message": message})
}

/// Sets a condition as Kubernetes' `SetCRDCondition` does: its transition time changes
/// only when its status does; a new type goes last.
pub fn set_condition(conditions: &mut Vec<Value>, new: Value) {
    match conditions.iter_mut().find(|c| c.get("type") == new.get("type")) {
        Some(existing) => {
            let mut new = new;
            if existing.get("status") == new.get("status")
                && let Some(time) = existing.get("lastTransitionTime").cloned()
            {
                new["lastTransitionTime"] = time;
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widgets() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                    }}}
                }]
            }
        })
    }

    fn messages(crd: &Value) -> Vec<String> {
        validate(crd, None).into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn defaults_fill_names_conversion_and_stored_versions() {
        let mut crd = widgets();
        set_defaults(&mut crd);
        set_stored_versions(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(messages(&crd), Vec::<String>::new());
    }

    #[test]
    fn a_crd_is_refused_in_kubernetes_words() {
        let mut crd = widgets();
        set_defaults(&mut crd);
        crd["metadata"]["name"] = json!("gadgets.example.com");
        crd["spec"]["versions"][0]["storage"] = json!(false);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["color"] =
            json!({});
        assert_eq!(
            messages(&crd),
            [
                "metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[color].type: Required value: must not be empty for specified object fields",
                // Go prints the versions with `%#v`; as the decoded JSON here.
                r#"spec.versions: Invalid value: []interface {}{map[string]interface {}{"name":"v1", "schema":map[string]interface {}{"openAPIV3Schema":map[string]interface {}{"properties":map[string]interface {}{"spec":map[string]interface {}{"properties":map[string]interface {}{"color":map[string]interface {}{}, "size":map[string]interface {}{"type":"integer"}}, "type":"object"}}, "type":"object"}}, "served":true, "storage":false}}: must have exactly one version marked as storage version"#,
            ]
        );
        let mut protected = widgets();
        set_defaults(&mut protected);
        protected["spec"]["group"] = json!("gateway.networking.k8s.io");
        protected["metadata"]["name"] = json!("widgets.gateway.networking.k8s.io");
        assert_eq!(
            messages(&protected),
            [
                "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"
            ]
        );
        let mut no_dot = widgets();
        set_defaults(&mut no_dot);
        no_dot["spec"]["group"] = json!("example");
        no_dot["metadata"]["name"] = json!("widgets.example");
        no_dot["spec"]["scope"] = json!("Global");
        assert_eq!(
            messages(&no_dot),
            [
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
                "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
            ]
        );
    }

    #[test]
    fn value_validations_may_not_shape_the_object() {
        let mut crd = widgets();
        set_defaults(&mut crd);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["anyOf"] =
            json!([{"type": "object", "required": ["size"]}]);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"]["x-kubernetes-list-type"] =
            json!("set");
        assert_eq!(
            messages(&crd),
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].x-kubernetes-list-type: Invalid value: \"set\": must be array if x-kubernetes-list-type is specified",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural",
            ]
        );
    }

    #[test]
    fn names_another_crd_of_the_group_holds_are_refused() {
        let mut held = widgets();
        set_defaults(&mut held);
        held["metadata"]["name"] = json!("gizmos.example.com");
        held["status"]["acceptedNames"] = json!({"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList", "shortNames": ["wd"]});
        let mut crd = widgets();
        set_defaults(&mut crd);
        assert_eq!(accept_names(&crd, &[held.clone()]), Err(("ShortNamesConflict", "\"wd\" is already in use".into())));
        held["status"]["acceptedNames"]["shortNames"] = json!([]);
        held["status"]["acceptedNames"]["kind"] = json!("Widget");
        assert_eq!(accept_names(&crd, &[held.clone()]), Err(("KindConflict", "\"Widget\" is already in use".into())));
        held["status"]["acceptedNames"]["plural"] = json!("widgets");
        assert_eq!(
            accept_names(&crd, &[held.clone()]),
            Err(("PluralConflict", "\"widgets\" is already in use".into()))
        );
        // Another group's names are its own.
        held["spec"]["group"] = json!("example.org");
        let names = accept_names(&crd, &[held]).expect("accepted");
        assert_eq!(
            names.to_json(),
            json!({"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]})
        );
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_flips() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, condition("Established", "False", "Installing", "installing", "t1"));
        set_condition(&mut conditions, condition("NamesAccepted", "True", "NoConflicts", "no conflicts found", "t1"));
        set_condition(&mut conditions, condition("Established", "False", "NotAccepted", "not yet", "t2"));
        assert_eq!(conditions[0]["lastTransitionTime"], "t1");
        assert_eq!(conditions[0]["reason"], "NotAccepted");
        set_condition(&mut conditions, condition("Established", "True", "InitialNamesAccepted", "accepted", "t3"));
        assert_eq!(conditions[0]["lastTransitionTime"], "t3");
        assert_eq!(conditions[1]["type"], "NamesAccepted");
    }
}
