//! Server-side apply: `PATCH` with `application/apply-patch+yaml`, and the field
//! manager's bookkeeping of `metadata.managedFields` on other writes. The merge and the
//! ownership rules are the compiler's (`kubeyard_compiler::structured_merge`); this is the
//! request's side: its options checked in Kubernetes' words, the object created when it
//! does not exist (an apply is an upsert, 201), the 409 listing each conflicting field
//! and manager, and `dryRun`.
//!
//! Every create records its creator's `Update` entry (Kubernetes tracks creates with
//! probability 1), and updates are tracked on objects that have managedFields (or whose
//! write sends some), so an object whose tracking a client reset stays untracked until
//! it is applied.

use super::objects::{self, Written};
use super::resources::Resource;
use super::status::{ApiError, Subject};
use super::{ApiServer, Query, Target};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use kubeyard_compiler::field_set::{FieldSet, PathElement};
use kubeyard_compiler::list_merge::Schema;
use kubeyard_compiler::managed_fields::{self, Entry};
use kubeyard_compiler::object::GroupVersionKind;
use kubeyard_compiler::structured_merge::{self, Write};
use serde_json::{Value, json};

tokio::task_local! {
    /// Set while an apply writes: its ownership is already worked out.
    static APPLYING: ();
}

/// Whether a PATCH is an apply.
pub(super) fn is_apply(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    content_type.split(';').next().unwrap_or("").trim() == "application/apply-patch+yaml"
}

fn options_invalid(field: &str, message: &str, reason: &str) -> ApiError {
    ApiError::invalid(
        Subject { group: "meta.k8s.io", kind: "PatchOptions", name: "" },
        vec![(field.to_string(), message.to_string(), reason.to_string())],
    )
}

/// The kind's merge topology.
fn with_schema<T>(server: &ApiServer, resource: &Resource, f: impl FnOnce(Schema<'_>) -> T) -> T {
    let gvk = GroupVersionKind::new(resource.group, resource.version, resource.kind);
    server.admission.catalog().with_merge_schema(&gvk, f)
}

/// What an endpoint resets, which no manager there owns: `status` through the main
/// resource of a kind with a status subresource, everything but `status` through it.
fn ignored(resource: &Resource, subresource: Option<&str>) -> FieldSet {
    let mut set = FieldSet::new();
    let field = |name: &str| PathElement::Field(name.into());
    match subresource {
        Some("status") => {
            for name in ["spec", "metadata"] {
                set.insert(&[field(name)]);
            }
        }
        None if resource.status => set.insert(&[field("status")]),
        _ => {}
    }
    set
}

/// Whether an apply is writing (its managedFields are worked out already).
pub(super) fn applying() -> bool {
    APPLYING.try_with(|_| ()).is_ok()
}

/// The managedFields a write stores: an apply's own; else those the request sends, when
/// they read (`[]` or `[{}]` resets them), on the main resource; else the live ones.
pub(super) fn managed_fields_to_keep(
    subresource: Option<&str>,
    sent: Option<&Value>,
    live: Option<Value>,
) -> Option<Value> {
    let sent = sent.filter(|s| !s.is_null());
    if applying() {
        return sent.cloned().or(live);
    }
    match sent {
        Some(sent) if subresource.is_none() => {
            let reset = sent.as_array().is_some_and(|entries| entries.is_empty() || entries == &[json!({})]);
            if reset {
                None
            } else if managed_fields::decode(sent).is_ok() {
                Some(sent.clone())
            } else {
                live
            }
        }
        _ => live,
    }
}

fn now(server: &ApiServer) -> String {
    server.options.clock.timestamp()
}

/// An object without the metadata the field manager keeps to itself.
fn without_managed(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

fn encode(entries: &[Entry]) -> Value {
    Value::Array(entries.iter().map(Entry::to_json).collect())
}

/// The 409 of an apply that would change fields other managers own.
fn conflict(resource: &Resource, name: &str, conflicts: &structured_merge::Conflicts) -> ApiError {
    let (message, causes) = managed_fields::conflict_status(conflicts);
    let mut error = ApiError::new(409, "Conflict", message);
    error.details = Some(json!({
        "name": name, "group": resource.group, "kind": resource.plural,
        "causes": causes.iter().map(|(field, message)| json!({"reason": "FieldManagerConflict", "message": message, "field": field})).collect::<Vec<_>>(),
    }));
    error
}

/// `PATCH` with an applied configuration.
pub(super) async fn apply(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    if manager.is_empty() {
        return Err(options_invalid(
            "fieldManager",
            "Required value: is required for apply patch",
            "FieldValueRequired",
        ));
    }
    if manager.len() > 128 {
        return Err(options_invalid("fieldManager", "Too long: may not be more than 128 bytes", "FieldValueTooLong"));
    }
    let force = objects::flag(query, "force");
    let mut config = objects::decode_yaml(body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request("error decoding YAML: the applied configuration is not an object"));
    }
    let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    if api_version != resource.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
            resource.api_version()
        )));
    }
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!("invalid object type: {api_version}, Kind={kind}")));
    }
    if config.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    // The typed patch object is made (and refused) before its name and namespace are
    // checked against the URL's.
    let duplicates = with_schema(server, resource, |schema| structured_merge::duplicate_entries(&config, schema));
    if !duplicates.is_empty() {
        // Kubernetes' words, with its status: a 500 without a reason; the namespace and
        // name are the configuration's own.
        let group_version =
            if resource.group.is_empty() { format!("/{}", resource.version) } else { resource.api_version() };
        let own = |field: &str| config.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("");
        let errors = match duplicates.as_slice() {
            [one] => one.clone(),
            many => format!("errors:\n  {}", many.join("\n  ")),
        };
        return Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({}/{}; {group_version}, Kind={}): {errors}",
                own("namespace"),
                own("name"),
                resource.kind
            ),
        ));
    }
    let name = target.name.clone().unwrap_or_default();
    match config.pointer("/metadata/name").and_then(Value::as_str) {
        Some(given) if given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            if !config.get("metadata").is_some_and(Value::is_object) {
                config["metadata"] = json!({});
            }
            config["metadata"]["name"] = json!(name);
        }
    }
    objects::check_namespace(target, &mut config)?;
    let now = now(server);
    let version = resource.api_version();
    let writer =
        Write { manager: &manager, api_version: &version, subresource: target.subresource.as_deref(), now: &now };
    let exists = objects::exists(server, target).await?;
    if !exists {
        if target.subresource.is_some() {
            return Err(objects::not_found(resource, &name));
        }
        // An apply is an upsert: the object is made from the configuration.
        let made = with_schema(server, resource, |schema| {
            structured_merge::apply(&json!({}), &config, &[], &writer, force, &ignored(resource, None), schema)
        })
        .map_err(|conflicts| conflict(resource, &name, &conflicts))?;
        let (object, entries) = made;
        return objects::create_object(server, target, query, object, Some(encode(&entries))).await;
    }
    let written = APPLYING
        .scope(
            (),
            objects::write(server, target, (None, objects::Admission::Plugins), query, None, |current| {
                // A resourceVersion in the configuration is a precondition.
                objects::patched_precondition(current, &config, resource, &name)?;
                let entries =
                    managed_fields::decode(current.pointer("/metadata/managedFields").unwrap_or(&Value::Null))
                        .map_err(|e| ApiError::internal(e.0))?;
                let live = without_managed(current);
                let (mut next, entries) = with_schema(server, resource, |schema| {
                    let ignored = ignored(resource, target.subresource.as_deref());
                    structured_merge::apply(&live, &config, &entries, &writer, force, &ignored, schema)
                })
                .map_err(|conflicts| conflict(resource, &name, &conflicts))?;
                if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("managedFields".into(), encode(&entries));
                    // The live metadata the merge kept (uid, resourceVersion) stays as it was.
                }
                Ok(next)
            }),
        )
        .await?;
    let object = match written {
        Written::Stored(object) | Written::Deleted(object) => object,
    };
    objects::respond(StatusCode::OK, &object)
}

/// The managedFields a create (not an apply) stores: its creator owns every field of the
/// object as decoded, defaults included, before admission mutates it (`object`, with the
/// managedFields the request sent, which Kubernetes starts from when they read).
pub(super) fn track_create(server: &ApiServer, resource: &Resource, object: &Value) -> Option<Value> {
    let sent = object.pointer("/metadata/managedFields").filter(|m| !m.is_null());
    let entries = sent.and_then(|sent| managed_fields::decode(sent).ok()).unwrap_or_default();
    let mut decoded = without_managed(object);
    if resource.crd.is_none() {
        let gvk = GroupVersionKind::new(resource.group, resource.version, resource.kind);
        server.admission.decode(&gvk, &mut decoded);
    }
    let manager = objects::FIELD_MANAGER.try_with(Clone::clone).unwrap_or_else(|_| "unknown".into());
    let now = now(server);
    let api_version = resource.api_version();
    let writer = Write { manager: &manager, api_version: &api_version, subresource: None, now: &now };
    let entries = with_schema(server, resource, |schema| {
        structured_merge::update(&json!({}), &decoded, &entries, &writer, &ignored(resource, None), schema)
    });
    (!entries.is_empty()).then(|| encode(&entries))
}

/// The field manager's part in an update (not an apply) of a tracked object: the fields
/// the write changed move to its manager (`fieldManager`, else the User-Agent's product).
pub(super) fn track_update(
    server: &ApiServer,
    resource: &Resource,
    subresource: Option<&str>,
    current: &mut Value,
    next: &mut Value,
) {
    if applying() {
        return;
    }
    let Some(sent) = next.pointer("/metadata/managedFields") else { return };
    let Ok(entries) = managed_fields::decode(sent) else { return };
    // Untracked objects stay so (`[]` or `[{}]` sent resets them), unless the write sends
    // entries of its own: Kubernetes tracks from those.
    if entries.is_empty() {
        return;
    }
    let manager = objects::FIELD_MANAGER.try_with(Clone::clone).unwrap_or_else(|_| "unknown".into());
    let now = now(server);
    let api_version = resource.api_version();
    let writer = Write { manager: &manager, api_version: &api_version, subresource, now: &now };
    // Both objects are compared without their entries, which are taken out for it rather
    // than each object copied whole (two copies of every object on every write).
    let live_entries = take_managed(current);
    take_managed(next);
    let entries = with_schema(server, resource, |schema| {
        structured_merge::update(current, next, &entries, &writer, &ignored(resource, subresource), schema)
    });
    if let Some(live_entries) = live_entries
        && let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), live_entries);
    }
    if !entries.is_empty()
        && let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), encode(&entries));
    }
}

fn take_managed(object: &mut Value) -> Option<Value> {
    object.get_mut("metadata").and_then(Value::as_object_mut)?.remove("managedFields")
}
