//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed commands send (`kubectl create namespace|configmap|deployment`,
//! `kubectl expose`, `kubectl create job`): the `k8s\0` envelope, a `runtime.Unknown`
//! naming the kind, and the object's message, read by reflection over the API's
//! descriptors (`k8s-api.fds`, made by `scripts/k8s-descriptors.py`) into the JSON the
//! rest of the server takes. Replies stay JSON: every client that sends protobuf also
//! accepts JSON.

use super::status::ApiError;
use base64::Engine;
use protobuf::Message;
use protobuf::descriptor::FileDescriptorSet;
use protobuf::reflect::{FileDescriptor, MessageDescriptor, ReflectValueRef, RuntimeFieldType};
use serde_json::{Map, Number, Value, json};
use std::sync::OnceLock;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// The compiled `generated.proto` files of the Kubernetes API (v1.33).
static DESCRIPTORS: &[u8] = include_bytes!("k8s-api.fds");

fn files() -> Result<&'static [FileDescriptor], ApiError> {
    static FILES: OnceLock<Result<Vec<FileDescriptor>, String>> = OnceLock::new();
    let built = FILES.get_or_init(|| {
        let set = FileDescriptorSet::parse_from_bytes(DESCRIPTORS).map_err(|e| e.to_string())?;
        FileDescriptor::new_dynamic_fds(set.file, &[]).map_err(|e| e.to_string())
    });
    built.as_deref().map_err(|e| ApiError::internal(format!("the protobuf descriptors do not load: {e}")))
}

/// The message of a kind: in the file of its group's short name and version
/// (`apps/v1` → `api.apps.v1`, `rbac.authorization.k8s.io/v1` → `api.rbac.v1`, `v1` →
/// `api.core.v1`).
fn message_descriptor(api_version: &str, kind: &str) -> Result<Option<MessageDescriptor>, ApiError> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("core", api_version));
    let short = group.split('.').next().unwrap_or(group);
    let package = format!(".{short}.{version}");
    let find = |package: &str| {
        Ok::<_, ApiError>(
            files()?
                .iter()
                .filter(|file| format!(".{}", file.package()).ends_with(package))
                .find_map(|file| file.message_by_package_relative_name(kind)),
        )
    };
    // The options kinds (`DeleteOptions`, ...) are meta.k8s.io's, registered in every
    // group version: client-go sends them typed with the resource's own (`v1`, `apps/v1`).
    match find(&package)? {
        None if META_KINDS.contains(&kind) => find(".meta.v1"),
        found => Ok(found),
    }
}

/// The kinds of meta.k8s.io/v1 every group version carries.
const META_KINDS: &[&str] =
    &["DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions", "GetOptions", "ListOptions"];

/// The `runtime.Unknown` envelope's message.
fn unknown_descriptor() -> Result<MessageDescriptor, ApiError> {
    files()?
        .iter()
        .filter(|file| file.package().ends_with("pkg.runtime"))
        .find_map(|file| file.message_by_package_relative_name("Unknown"))
        .ok_or_else(|| ApiError::internal("the protobuf descriptors have no runtime.Unknown"))
}

/// The object a protobuf request body holds, as JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |why: String| ApiError::bad_request(format!("the protobuf request body is not valid: {why}"));
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| bad("it does not begin with k8s\\0".into()))?;
    let unknown = unknown_descriptor()?.parse_from_bytes(envelope).map_err(|e| bad(e.to_string()))?;
    let type_meta = match singular(&*unknown, "typeMeta") {
        Some(ReflectValueRef::Message(meta)) => Some(meta),
        _ => None,
    };
    let encoding = string(&*unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(bad(format!("content encoding {encoding} is not supported")));
    }
    let field = |name: &str| type_meta.as_ref().map(|meta| string(&**meta, name)).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let descriptor = message_descriptor(&api_version, &kind)?.ok_or_else(|| {
        ApiError::unsupported_media_type(&format!(
            "{MEDIA_TYPE} for {kind} in {api_version} (send it as application/json)"
        ))
    })?;
    let raw = match singular(&*unknown, "raw") {
        Some(ReflectValueRef::Bytes(raw)) => raw,
        _ => &[],
    };
    let message = descriptor.parse_from_bytes(raw).map_err(|e| bad(e.to_string()))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = message_json(&*message) {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

/// A field of a message, when it is set.
fn singular<'a>(message: &'a dyn protobuf::MessageDyn, field: &str) -> Option<ReflectValueRef<'a>> {
    message.descriptor_dyn().field_by_name(field)?.get_singular(message)
}

/// A string field of a message, empty when unset.
fn string(message: &dyn protobuf::MessageDyn, field: &str) -> String {
    match singular(message, field) {
        Some(ReflectValueRef::String(text)) => text.to_string(),
        _ => String::new(),
    }
}

/// A message as Kubernetes writes it in JSON: the field names are the JSON names
/// already (go-to-protobuf names fields after their JSON tags), unset fields are left
/// out, and a few apimachinery types have a JSON form of their own.
fn message_json(message: &dyn protobuf::MessageDyn) -> Value {
    let descriptor = message.descriptor_dyn();
    if let Some(special) = special_json(&descriptor, message) {
        return special;
    }
    let schema_props = descriptor.full_name().ends_with("apiextensions.v1.JSONSchemaProps");
    let mut object = Map::new();
    for field in descriptor.fields() {
        if is_inline(&descriptor, field.name()) {
            // A Go struct embedded with `json:",inline"`: its fields are the parent's.
            if let Some(ReflectValueRef::Message(inner)) = field.get_singular(message)
                && let Value::Object(fields) = message_json(&*inner)
            {
                object.extend(fields);
            }
            continue;
        }
        let value = match field.runtime_field_type() {
            // Go writes every field that is not a pointer, empty or not: the empty string
            // and the zero time stand for "not set", as their JSON would leave them out
            // (`omitempty`); so do the zero ports that mean "none" or "fill it in".
            RuntimeFieldType::Singular(_) => match field.get_singular(message).map(value_json) {
                None | Some(Value::Null) => continue,
                Some(Value::String(text)) if text.is_empty() => continue,
                Some(Value::Number(n)) if ZERO_IS_UNSET.contains(&field.name()) && n.as_i64() == Some(0) => continue,
                Some(value) => value,
            },
            RuntimeFieldType::Repeated(_) => {
                let repeated = field.get_repeated(message);
                if repeated.is_empty() {
                    continue;
                }
                Value::Array(repeated.into_iter().map(value_json).collect())
            }
            RuntimeFieldType::Map(..) => {
                let map = field.get_map(message);
                if map.is_empty() {
                    continue;
                }
                let mut entries = Map::new();
                for (key, value) in &map {
                    let key = match key {
                        ReflectValueRef::String(key) => key.to_string(),
                        other => other.to_string(),
                    };
                    entries.insert(key, value_json(value));
                }
                Value::Object(entries)
            }
        };
        let name = field.name();
        let name = if schema_props { schema_props_name(name) } else { name.to_string() };
        object.insert(name, value);
    }
    Value::Object(object)
}

/// Non-pointer numbers whose zero Kubernetes reads as unset.
const ZERO_IS_UNSET: &[&str] = &["targetPort", "hostPort", "nodePort", "generation"];

/// The fields that are Go structs embedded inline: in protobuf a field of their own, in
/// JSON their fields sit in the parent (a Probe's `httpGet`, a Volume's `configMap`).
const INLINE: &[(&str, &str)] = &[
    ("core.v1.Probe", "handler"),
    ("core.v1.Volume", "volumeSource"),
    ("core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("networking.v1.IngressRule", "ingressRuleValue"),
    // `LocalObjectReference` (`name`) embedded in every reference to a ConfigMap or Secret.
    ("core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("core.v1.SecretKeySelector", "localObjectReference"),
    ("core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("core.v1.SecretEnvSource", "localObjectReference"),
    ("core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("core.v1.ConfigMapProjection", "localObjectReference"),
    ("core.v1.SecretProjection", "localObjectReference"),
];

fn is_inline(descriptor: &MessageDescriptor, field: &str) -> bool {
    INLINE.iter().any(|(message, name)| *name == field && descriptor.full_name().ends_with(message))
}

/// JSONSchemaProps' fields whose JSON names are not identifiers.
fn schema_props_name(name: &str) -> String {
    match name {
        "ref" => "$ref".into(),
        "schema" => "$schema".into(),
        _ => match name.strip_prefix("xKubernetes") {
            // xKubernetesPreserveUnknownFields → x-kubernetes-preserve-unknown-fields
            Some(rest) => {
                let mut kebab = String::from("x-kubernetes");
                for c in rest.chars() {
                    if c.is_ascii_uppercase() {
                        kebab.push('-');
                        kebab.push(c.to_ascii_lowercase());
                    } else {
                        kebab.push(c);
                    }
                }
                kebab
            }
            None => name.to_string(),
        },
    }
}

fn value_json(value: ReflectValueRef) -> Value {
    match value {
        ReflectValueRef::U32(n) => json!(n),
        ReflectValueRef::U64(n) => json!(n),
        ReflectValueRef::I32(n) => json!(n),
        ReflectValueRef::I64(n) => json!(n),
        ReflectValueRef::F32(n) => Number::from_f64(f64::from(n)).map_or(Value::Null, Value::Number),
        ReflectValueRef::F64(n) => Number::from_f64(n).map_or(Value::Null, Value::Number),
        ReflectValueRef::Bool(b) => json!(b),
        ReflectValueRef::String(s) => json!(s),
        // []byte is base64 in JSON (a Secret's data).
        ReflectValueRef::Bytes(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ReflectValueRef::Enum(descriptor, number) => {
            descriptor.value_by_number(number).map_or_else(|| json!(number), |v| json!(v.name()))
        }
        ReflectValueRef::Message(message) => message_json(&*message),
    }
}

/// The apimachinery types whose JSON is not their message's: times, quantities,
/// int-or-strings and embedded raw JSON.
fn special_json(descriptor: &MessageDescriptor, message: &dyn protobuf::MessageDyn) -> Option<Value> {
    let name = descriptor.full_name();
    let field = |field: &str| singular(message, field);
    let int = |name: &str| match field(name) {
        Some(ReflectValueRef::I64(n)) => n,
        Some(ReflectValueRef::I32(n)) => i64::from(n),
        _ => 0,
    };
    let raw_json = |name: &str| match field(name) {
        Some(ReflectValueRef::Bytes(bytes)) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    // The zero time is JSON's null: a creationTimestamp client-go leaves unset.
    if name.ends_with("meta.v1.Time") {
        return Some(if int("seconds") == 0 { Value::Null } else { timestamp(int("seconds"), 0) });
    }
    if name.ends_with("meta.v1.MicroTime") {
        let (seconds, nanos) = (int("seconds"), int("nanos"));
        return Some(if seconds == 0 && nanos == 0 { Value::Null } else { timestamp(seconds, nanos) });
    }
    if name.ends_with("meta.v1.Duration") {
        return Some(json!(go_duration(int("duration"))));
    }
    if name.ends_with("resource.Quantity") {
        return Some(match field("string") {
            Some(ReflectValueRef::String(s)) => json!(s),
            _ => json!("0"),
        });
    }
    if name.ends_with("intstr.IntOrString") {
        return Some(match (int("type"), field("strVal")) {
            (1, Some(ReflectValueRef::String(s))) => json!(s),
            (1, _) => json!(""),
            _ => json!(int("intVal")),
        });
    }
    if name.ends_with("runtime.RawExtension") || name.ends_with("apiextensions.v1.JSON") {
        return Some(raw_json("raw"));
    }
    if name.ends_with("meta.v1.FieldsV1") {
        return Some(raw_json("Raw"));
    }
    None
}

/// RFC 3339 in UTC, with microseconds when there are any (`MicroTime`).
fn timestamp(seconds: i64, nanos: i64) -> Value {
    let Some(time) = chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0)) else {
        return Value::Null;
    };
    if nanos == 0 {
        json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    } else {
        json!(time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    }
}

/// Go's `time.Duration.String()` of whole units, as metav1.Duration is written in JSON.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let (hours, rest) = (nanos / 3_600_000_000_000, nanos % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = rest as f64 / 1e9;
    let seconds = format!("{seconds}");
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests;
