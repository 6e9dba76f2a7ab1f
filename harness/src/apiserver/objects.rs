//! The verbs on objects: get, list, create, update, patch, delete, and the `status`,
//! `scale`, `binding` and `finalize` subresources. Every write reads the current
//! object, computes the next one, admits it and writes it back with compare-and-swap
//! on the revision it read (retrying when another writer got there first, unless the
//! client named a `resourceVersion`), as the Kubernetes registry's GuaranteedUpdate does.

use super::fields::FieldSelector;
use super::resources::{BINDING, BINDINGS, Resource, SCALE};
use super::status::{ApiError, Subject};
use super::{
    ApiServer, Query, Representation, Target, allocate, conversion, crds, json_response, policies, table, watch,
    webhooks,
};
use crate::clock;
use crate::store::{Entry, StoreError};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use kubeyard_compiler::list_merge::Schema;
use kubeyard_compiler::object::GroupVersionKind;
use kubeyard_compiler::patch::{self, PatchError};
use kubeyard_compiler::selector::Selector;
use kubeyard_compiler::source::SourceFile;
use kubeyard_compiler::yaml::Documents;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writers that lose a compare-and-swap retry this many times before giving up.
const RETRIES: usize = 64;
/// A create whose generated name was taken tries this many other names (Kubernetes'
/// `maxNameGenerationCreateAttempts` is 8 attempts in all).
const GENERATE_NAME_RETRIES: usize = 7;

pub(super) async fn handle(
    server: &Arc<ApiServer>,
    method: &Method,
    target: Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    representation: Representation,
) -> Result<Response, ApiError> {
    // A watch lasts as long as its client: it is not a request's work to time.
    let counted = match &server.options.profile {
        Some(profile) if !flag(query, "watch") => {
            Some((profile.component(&request_name(method, &target, headers)), Instant::now()))
        }
        _ => None,
    };
    let served = serve(server, method, target, query, headers, body, representation);
    let manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(manager) => manager.clone(),
        None => kubeyard_compiler::managed_fields::manager_from_user_agent(
            headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default(),
        ),
    };
    let (result, warnings) = WARNINGS
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let result = FIELD_MANAGER.scope(manager, served).await;
            (result, WARNINGS.with(|warnings| warnings.take()))
        })
        .await;
    if let Some((component, started)) = counted {
        component.record(started.elapsed(), result.is_err());
    }
    let mut response = match result {
        Ok(response) => response,
        Err(error) if warnings.is_empty() => return Err(error),
        Err(error) => axum::response::IntoResponse::into_response(error),
    };
    for warning in warnings {
        // RFC 7234's warn-code 299 with no agent, as the API server writes it.
        let text = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append(axum::http::header::WARNING, value);
        }
    }
    Ok(response)
}

/// A request as the profile names it: `apiserver/` and the verb Kubernetes' request
/// metrics use (`apiserver_request_total`'s `verb`), then the resource and subresource.
fn request_name(method: &Method, target: &Target, headers: &HeaderMap) -> String {
    use crate::profile::API_SERVER;
    let named = target.name.is_some();
    let verb = match method.as_str() {
        "GET" if named => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" if super::apply::is_apply(headers) => "apply",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        _ => "other",
    };
    match target.subresource.as_deref() {
        Some(sub) => format!("{API_SERVER}{verb} {}/{sub}", target.resource.plural),
        None => format!("{API_SERVER}{verb} {}", target.resource.plural),
    }
}

async fn serve(
    server: &Arc<ApiServer>,
    method: &Method,
    target: Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    representation: Representation,
) -> Result<Response, ApiError> {
    if target.resource.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    let sub = target.subresource.as_deref();
    match (method.as_str(), target.name.is_some(), sub) {
        ("GET", false, None) if flag(query, "watch") => watch::serve(server, &target, query, representation).await,
        ("GET", false, None) => list(server, &target, query, representation).await,
        ("POST", false, None) => create(server, &target, query, headers, body).await,
        // Kubernetes serves only list and watch across namespaces.
        ("DELETE", false, None) if target.resource.namespaced && target.namespace.is_none() => {
            Err(ApiError::method_not_allowed())
        }
        ("DELETE", false, None) => delete_collection(server, &target, query, headers, body).await,
        ("GET", true, None | Some("status")) => get(server, &target, query, representation).await,
        ("PUT", true, None | Some("status") | Some("finalize")) => update(server, &target, query, headers, body).await,
        ("PATCH", true, None | Some("status")) if super::apply::is_apply(headers) => {
            super::apply::apply(server, &target, query, body).await
        }
        ("PATCH", true, None | Some("status")) => patch_object(server, &target, query, headers, body).await,
        ("DELETE", true, None) => delete(server, &target, query, headers, body).await,
        ("GET", true, Some("ephemeralcontainers")) => {
            let plain = Target { subresource: None, ..target };
            get(server, &plain, query, representation).await
        }
        ("PUT" | "PATCH", true, Some("ephemeralcontainers")) => Err(no_ephemeral_containers(server, &target).await),
        ("GET", true, Some("scale")) => get_scale(server, &target).await,
        ("PUT" | "PATCH", true, Some("scale")) => write_scale(server, &target, method, query, headers, body).await,
        ("POST", true, Some("binding")) => {
            let namespace = target.namespace.as_deref().unwrap_or("default");
            bind(server, namespace, target.name.as_deref(), headers, query, body).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `kubectl debug`'s ephemeral container: a simulated pod has no containers to join, and
/// no node agent of kubeyard's starts one in a running pod yet; both say so (kubectl then
/// stops with the message instead of waiting for a container that never starts).
async fn no_ephemeral_containers(server: &ApiServer, target: &Target) -> ApiError {
    let name = target.name.as_deref().unwrap_or_default();
    let pod = match stored(server, ("", "Pod"), target.namespace.as_deref(), name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => return not_found(target.resource, name),
        Err(error) => return error,
    };
    let node = text(&pod, "/spec/nodeName").unwrap_or_default().to_string();
    let simulated = match stored(server, ("", "Node"), None, &node).await {
        Ok(Some(node)) => text(&node, "/metadata/annotations/kubeyard.dev~1runtime") != Some("process"),
        _ => true,
    };
    if simulated {
        return ApiError::simulated(name, &node, "room for an ephemeral container to debug with");
    }
    ApiError {
        details: Some(json!({"name": name, "kind": "pods"})),
        ..ApiError::bad_request(format!(
            "pod {name}: kubeyard's node agents do not run ephemeral containers yet \
             (kubectl debug --copy-to makes a copy of the pod to debug instead)"
        ))
    }
}

pub(super) fn flag(query: &Query, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true" || v == "1")
}

pub(super) fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("dryRun: unsupported value \"{other}\" (only \"All\")"))),
    }
}

fn subject<'a>(resource: &'a Resource, qualified: &'a str, name: &'a str) -> Subject<'a> {
    Subject { group: resource.group, kind: qualified, name }
}

/// Whether the object a target names is stored.
pub(super) async fn exists(server: &ApiServer, target: &Target) -> Result<bool, ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    let key = target.resource.key(target.namespace.as_deref(), name);
    Ok(server.store.get(&key).await.map_err(|e| store_error(target.resource, name, e))?.is_some())
}

pub(super) fn not_found(resource: &Resource, name: &str) -> ApiError {
    ApiError::not_found(subject(resource, &resource.qualified(), name))
}

pub(super) fn store_error(resource: &Resource, name: &str, error: StoreError) -> ApiError {
    let qualified = resource.qualified();
    match error {
        StoreError::Exists(_) => ApiError::already_exists(subject(resource, &qualified, name)),
        StoreError::NotFound(_) => ApiError::not_found(subject(resource, &qualified, name)),
        StoreError::Conflict { .. } => ApiError::stale(subject(resource, &qualified, name)),
        StoreError::Compacted { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        // Storage failing is the server's fault, and said as such.
        StoreError::Io(message) => ApiError::internal(message),
    }
}

/// The object `name` of a kind the server serves, as stored (`None`: there is none).
pub(super) async fn stored(
    server: &ApiServer,
    (group, kind): (&str, &str),
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let resource =
        super::resources::by_kind(group, kind).ok_or_else(|| ApiError::internal(format!("{kind} is not served")))?;
    let entry = server.store.get(&resource.key(namespace, name)).await.map_err(|e| store_error(resource, name, e))?;
    entry.map(|entry| from_entry(&entry)).transpose()
}

/// An object read from the store, with its revision as `resourceVersion`.
pub(super) fn from_entry(entry: &Entry) -> Result<Value, ApiError> {
    from_bytes(&entry.value, entry.revision)
}

pub(super) fn from_bytes(bytes: &[u8], revision: u64) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("a stored object does not decode: {e}")))?;
    set_revision(&mut object, revision);
    Ok(object)
}

fn set_revision(object: &mut Value, revision: u64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// The stored form: the revision is the store's to say, not the object's. Written
/// straight from the object, leaving `metadata.resourceVersion` out as it goes: a copy of
/// the object to remove it from was a tenth of a write's time.
///
/// Written into a buffer the thread keeps, then copied out at its exact size: the store
/// and its watch history keep these bytes, and a `Vec` grown by doubling as it was
/// written kept up to twice its length (a 4.2 KB pod in 8 KB, which mimalloc does not
/// shrink in place), a third of what a 30,000-pod run's heap held at its peak.
fn to_bytes(object: &Value) -> Bytes {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// A buffer grown past this for one large object is not kept.
    const KEEP: usize = 1 << 20;
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        // Writing a `Value` into a `Vec` cannot fail: its keys are strings, its numbers finite.
        let _ = serde_json::to_writer(&mut *buffer, &Unrevised(object));
        let bytes = Bytes::copy_from_slice(buffer);
        if buffer.capacity() > KEEP {
            *buffer = Vec::new();
        }
        bytes
    })
}

/// An object serialized without its `metadata.resourceVersion`.
struct Unrevised<'a>(&'a Value);

impl serde::Serialize for Unrevised<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(fields) = self.0.as_object() else { return self.0.serialize(serializer) };
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (key, value) in fields {
            match (key.as_str(), value.as_object()) {
                ("metadata", Some(metadata)) => map.serialize_entry(key, &Metadata(metadata))?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

/// Metadata without its `resourceVersion`.
struct Metadata<'a>(&'a Map<String, Value>);

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(field, _)| field.as_str() != "resourceVersion"))
    }
}

fn metadata(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("metadata was just made a map")
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn parse_revision(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("resourceVersion \"{text}\" is not a valid resource version")))
}

/// A request body: JSON, or YAML or protobuf when the client says so.
pub(super) fn decode(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(body)?,
        super::protobuf::MEDIA_TYPE => super::protobuf::decode(body)?,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

pub(super) fn decode_yaml(body: &Bytes) -> Result<Value, ApiError> {
    let source =
        SourceFile::from_bytes("request body", body.to_vec()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut documents = Documents::new(&source);
    match documents.next() {
        Some(Ok(document)) => match (document.root, document.diagnostics.first()) {
            (_, Some(problem)) => {
                Err(ApiError::bad_request(format!("the request body is not valid YAML: {}", problem.message)))
            }
            (Some(root), None) => Ok(root.to_json()),
            (None, None) => Err(ApiError::bad_request("the request body is empty")),
        },
        Some(Err(problem)) => {
            Err(ApiError::bad_request(format!("the request body is not valid YAML: {}", problem.message)))
        }
        None => Err(ApiError::bad_request("the request body is empty")),
    }
}

/// The body must be the endpoint's kind (apiVersion and kind may be left out).
pub(super) fn check_type(
    resource: &Resource,
    object: &mut Value,
    expected_version: &str,
    expected_kind: &str,
) -> Result<(), ApiError> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or(expected_version).to_string();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or(expected_kind).to_string();
    if api_version != expected_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected_version})"
        )));
    }
    if kind != expected_kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the kind of {} ({expected_kind})",
            resource.qualified()
        )));
    }
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(())
}

/// The namespace in the body must be the path's; an empty one takes the path's.
pub(super) fn check_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    if !target.resource.namespaced {
        return Ok(());
    }
    let path = target.namespace.as_deref().unwrap_or("default");
    match text(object, "/metadata/namespace") {
        Some(given) if given != path => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata(object).insert("namespace".into(), json!(path));
            Ok(())
        }
    }
}

tokio::task_local! {
    /// The warnings a request earns (`Warning` headers), gathered while it is served.
    static WARNINGS: std::cell::RefCell<Vec<String>>;
    /// The request's field manager: its `fieldManager`, else its User-Agent's product.
    pub(super) static FIELD_MANAGER: String;
}

/// Adds a warning to the answer of the request being served.
pub(super) fn warn(text: String) {
    // A write retried after a conflict says its warnings again; Kubernetes' recorder
    // keeps one of each.
    let _ = WARNINGS.try_with(|warnings| {
        let mut warnings = warnings.borrow_mut();
        if !warnings.contains(&text) {
            warnings.push(text);
        }
    });
}

/// The fields an object's kind does not have (a custom resource's CRD schema does not
/// declare; a built-in kind's Go types lack), and a custom resource's `default:`s, as the
/// API server decodes a body: the fields are dropped, refused under
/// `fieldValidation=Strict` (kubectl's default), warned about under `Warn` (the server's
/// default) and dropped silently under `Ignore`.
fn prune(server: &ApiServer, resource: &Resource, query: &Query, object: &mut Value) -> Result<(), ApiError> {
    let gvk = GroupVersionKind::new(resource.group, resource.version, resource.kind);
    let catalog = server.admission.catalog();
    let unknown = match resource.crd {
        Some(_) => catalog.prune_custom(&gvk, object),
        None => catalog.prune_builtin(&gvk, object),
    };
    let unknown = unknown.unwrap_or_default();
    if unknown.is_empty() {
        return Ok(());
    }
    match query.get("fieldValidation").map(String::as_str) {
        Some("Strict") => {
            let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                fields.join(", "),
                kind = resource.kind,
                version = resource.version,
            )))
        }
        Some("Ignore") => Ok(()),
        None | Some("Warn") => {
            for field in unknown {
                warn(format!("unknown field \"{field}\""));
            }
            Ok(())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

/// Admits an object, new or (with `old`) replacing one.
/// Drops the unknown fields a mutating webhook's patch added, without a word: Kubernetes
/// decodes a patched object without strictness.
fn prune_silently(server: &ApiServer, resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let mut ignore = Query::new();
    ignore.insert("fieldValidation".into(), "Ignore".into());
    prune(server, resource, &ignore, object)
}

fn admit(server: &ApiServer, resource: &Resource, object: Value, old: Option<&Value>) -> Result<Value, ApiError> {
    let name = text(&object, "/metadata/name").unwrap_or("").to_string();
    server.admission.admit_change(&object, old).map(|admitted| admitted.object).map_err(|causes| {
        let causes = causes
            .into_iter()
            .map(|cause| {
                let reason = cause.reason().to_string();
                (cause.field, cause.message, reason)
            })
            .collect();
        ApiError::invalid(Subject { group: resource.group, kind: resource.kind, name: &name }, causes)
    })
}

pub(super) fn respond(code: StatusCode, object: &Value) -> Result<Response, ApiError> {
    Ok(json_response(code, object))
}

async fn get(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    representation: Representation,
) -> Result<Response, ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    let key = target.resource.key(target.namespace.as_deref(), name);
    let entry = server.store.get(&key).await.map_err(|e| store_error(target.resource, name, e))?;
    let entry = entry.ok_or_else(|| not_found(target.resource, name))?;
    let mut object = from_entry(&entry)?;
    conversion::to_request(server, target.resource, std::slice::from_mut(&mut object)).await?;
    match representation {
        Representation::Json => respond(StatusCode::OK, &object),
        Representation::Metadata => respond(StatusCode::OK, &super::partial(&object)),
        Representation::Table => respond(
            StatusCode::OK,
            &table::table(target.resource, &[object], None, None, table::Include::from_query(query)),
        ),
    }
}

/// Label and field selectors of a list or watch.
pub(super) struct Filter {
    labels: Selector,
    fields: FieldSelector,
    kind: &'static str,
    /// What the selectors read of an object (decoded alone, the rest skipped).
    wanted: super::stored::Wanted,
}

impl Filter {
    pub(super) fn from_query(resource: &Resource, query: &Query) -> Result<Filter, ApiError> {
        let labels = query
            .get("labelSelector")
            .map(|text| text.parse::<Selector>())
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?
            .unwrap_or_else(Selector::everything);
        let fields =
            FieldSelector::parse(resource.builtin_kind(), query.get("fieldSelector").map_or("", String::as_str))?;
        let kind = resource.builtin_kind();
        // Built only where a selector will read it: most lists and watches have none.
        let wanted = if labels.is_everything() && fields.is_empty() {
            super::stored::Wanted::default()
        } else {
            super::stored::Wanted::pointers(std::iter::once("/metadata/labels").chain(super::fields::pointers(kind)))
        };
        Ok(Filter { labels, fields, kind, wanted })
    }

    /// Whether it lets every object through.
    pub(super) fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_empty()
    }

    /// Whether the stored object in `bytes` passes: only what the selectors compare is
    /// decoded.
    pub(super) fn matches_stored(&self, bytes: &[u8]) -> Result<bool, ApiError> {
        if self.is_everything() {
            return Ok(true);
        }
        Ok(self.matches(&self.peek(bytes)?))
    }

    /// What the selectors read of the stored object in `bytes`, decoded alone (for a
    /// filter that lets everything through, the whole object: ask `is_everything` first).
    pub(super) fn peek(&self, bytes: &[u8]) -> Result<Value, ApiError> {
        super::stored::peek(bytes, &self.wanted)
            .map_err(|e| ApiError::internal(format!("a stored object does not decode: {e}")))
    }

    /// The kind whose selectable fields it reads.
    pub(super) fn kind(&self) -> &'static str {
        self.kind
    }

    /// What this filter's selectors read of an object (labels, the kind's fields).
    pub(super) fn attributes(&self, object: &Value) -> crate::store::Attributes {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        crate::store::Attributes { labels, fields: super::fields::attributes(self.kind, object) }
    }

    /// The same answer as [`Filter::matches`], from the object's attributes.
    pub(super) fn matches_attributes(&self, attributes: &crate::store::Attributes) -> bool {
        (self.labels.is_everything() || self.labels.matches(&attributes.labels))
            && (self.fields.is_empty() || self.fields.matches_attributes(&attributes.fields))
    }

    pub(super) fn matches(&self, object: &Value) -> bool {
        if !self.labels.is_everything() {
            let labels = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            if !self.labels.matches(&labels) {
                return false;
            }
        }
        self.fields.is_empty() || self.fields.matches(self.kind, object)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    start: String,
}

async fn list(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    representation: Representation,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let filter = Filter::from_query(resource, query)?;
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(ApiError::bad_request("limit must be a whole number")),
    };
    let prefix = resource.prefix(target.namespace.as_deref());
    let (mut after, first_revision) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Continue>(&bytes).ok())
                .filter(|c| c.start.starts_with(&prefix))
                .ok_or_else(|| ApiError::bad_request("the continue token is not valid"))?;
            (Some(token.start), Some(token.rv))
        }
        None => (None, None),
    };
    let mut kept = Vec::new();
    let mut revision = first_revision;
    let mut more;
    // Filters drop items after the store's limit applies: read on until the page is full.
    loop {
        let want = limit.map(|l| (l - kept.len()).max(1));
        let listing =
            server.store.list(&prefix, after.as_deref(), want).await.map_err(|e| store_error(resource, "", e))?;
        revision.get_or_insert(listing.revision);
        for entry in listing.entries {
            if filter.matches_stored(&entry.value)? {
                kept.push((entry.value, entry.revision));
            }
            after = Some(entry.key);
        }
        more = listing.more;
        if !more || limit.is_some_and(|l| kept.len() >= l) {
            break;
        }
    }
    let revision = revision.unwrap_or_default();
    let token = match (more, after) {
        (true, Some(start)) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&Continue { rv: revision, start }).unwrap_or_default()),
        ),
        _ => None,
    };
    if representation == Representation::Json && conversion::served_as_stored(resource) {
        return stored_list(resource, &kept, revision, token.as_deref());
    }
    let mut items = kept
        .iter()
        .map(|(bytes, revision)| from_bytes(bytes, *revision).map(|o| with_type(resource, o)))
        .collect::<Result<Vec<_>, _>>()?;
    conversion::to_request(server, resource, &mut items).await?;
    match representation {
        Representation::Table => respond(
            StatusCode::OK,
            &table::table(resource, &items, Some(revision), token, table::Include::from_query(query)),
        ),
        Representation::Metadata | Representation::Json => {
            let mut metadata = json!({"resourceVersion": revision.to_string()});
            if let Some(token) = token {
                metadata["continue"] = json!(token);
            }
            let (kind, api_version, items) = if representation == Representation::Metadata {
                let partial = items.iter().map(super::partial).collect();
                ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string(), partial)
            } else {
                (format!("{}List", resource.kind), resource.api_version(), items)
            };
            let list = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items});
            respond(StatusCode::OK, &list)
        }
    }
}

/// A list written from the stored bytes, each item's revision spliced in: the same JSON
/// as decoding each item and encoding the list, without either.
fn stored_list(
    resource: &Resource,
    items: &[(Bytes, u64)],
    revision: u64,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(items.iter().map(|(bytes, _)| bytes.len() + 40).sum::<usize>() + 256);
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        metadata["continue"] = json!(token);
    }
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(
        &mut body,
        &json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata}),
    );
    body.pop(); // the closing brace: the items follow
    body.extend_from_slice(b",\"items\":[");
    for (at, (bytes, revision)) in items.iter().enumerate() {
        if at > 0 {
            body.push(b',');
        }
        if !super::stored::revised(bytes, *revision, &mut body) {
            // Not the form the server writes (no type, say): the long way, for this one.
            let _ = serde_json::to_writer(&mut body, &with_type(resource, from_bytes(bytes, *revision)?));
        }
    }
    body.extend_from_slice(b"]}");
    Ok(super::json_bytes_response(StatusCode::OK, body))
}

/// Items of a list carry their type, so every client decodes them alone.
pub(super) fn with_type(resource: &Resource, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| json!(resource.api_version()));
        map.entry("kind").or_insert_with(|| json!(resource.kind));
    }
    object
}

pub(super) fn uid() -> String {
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        *byte = fastrand::u8(..);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// What the server sets on an object it is creating, per kind.
fn prepare_create(resource: &Resource, object: &mut Value, uid: &str, now: &str) {
    let meta = metadata(object);
    for field in
        ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"]
    {
        meta.remove(field);
    }
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now));
    if resource.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    match resource.builtin_kind() {
        "Namespace" => {
            object["status"] = json!({"phase": "Active"});
            let mut list: Vec<Value> =
                object.pointer("/spec/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            if !list.contains(&json!("kubernetes")) {
                list.push(json!("kubernetes"));
            }
            if !object.get("spec").is_some_and(Value::is_object) {
                object["spec"] = json!({});
            }
            object["spec"]["finalizers"] = Value::Array(list);
        }
        "Pod" => {
            let qos = kubeyard_compiler::pod::qos_class(object);
            object["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Job" => label_job(object, uid),
        // A node registers itself with its capacity.
        "Node" => {}
        _ if crds::is_crd(resource) => crds::prepare_create(object),
        _ if resource.status => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        _ => {}
    }
}

/// The DefaultTolerationSeconds admission plugin: a pod stays `seconds` (300 s unless the
/// server is told otherwise) on a node that is not ready or unreachable before it is
/// evicted, unless it says otherwise.
fn default_tolerations(pod: &mut Value, seconds: super::DefaultTolerations) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for (key, seconds) in
        [("node.kubernetes.io/not-ready", seconds.not_ready), ("node.kubernetes.io/unreachable", seconds.unreachable)]
    {
        // The plugin's own test, not toleration matching: any toleration naming the key
        // (or none) for NoExecute (or every effect) counts, whatever its operator and value.
        let covered = list.iter().any(|t| {
            let field = |name: &str| t.get(name).and_then(Value::as_str).unwrap_or("");
            (field("key") == key || field("key").is_empty()) && matches!(field("effect"), "" | "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// A Job's pods are selected by its uid unless the user chose `manualSelector`.
fn label_job(object: &mut Value, uid: &str) {
    if object.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let name = text(object, "/metadata/name").unwrap_or("").to_string();
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
        let template = spec.entry("template").or_insert_with(|| json!({}));
        if !template.get("metadata").is_some_and(Value::is_object) {
            template["metadata"] = json!({});
        }
        let meta = template["metadata"].as_object_mut().expect("made a map above");
        let existing = meta.entry("labels").or_insert_with(|| json!({}));
        if let (Some(existing), Some(labels)) = (existing.as_object_mut(), labels.as_object()) {
            for (key, value) in labels {
                existing.insert(key.clone(), value.clone());
            }
        }
    }
}

async fn namespace_usable(server: &ApiServer, namespace: &str) -> Result<(), ApiError> {
    let namespaces = super::resources::by_kind("", "Namespace").expect("namespaces are served");
    let entry =
        server.store.get(&namespaces.key(None, namespace)).await.map_err(|e| store_error(namespaces, namespace, e))?;
    let Some(entry) = entry else {
        return Err(not_found(namespaces, namespace));
    };
    let object: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

async fn create(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let object = decode(headers, body)?;
    create_object(server, target, query, object, None).await
}

/// Creates `object` (decoded from a request), with `managed` as its managedFields when an
/// apply made it.
pub(super) async fn create_object(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    object: Value,
    managed: Option<Value>,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    if resource.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    if resource.crd.is_some() {
        crds::refuse_create_while_terminating(server, resource)?;
    }
    let mut object = object;
    check_type(resource, &mut object, &resource.api_version(), resource.kind)?;
    check_namespace(target, &mut object)?;
    if text(&object, "/metadata/resourceVersion").is_some() {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    // Unknown fields go (and custom objects take their defaults) as the object is decoded,
    // before the field manager and admission see it.
    prune(server, resource, query, &mut object)?;
    let managed = match managed {
        Some(managed) => Some(managed),
        None => super::apply::track_create(server, resource, &object),
    };
    // Pods run as a service account that must exist (the ServiceAccount admission
    // plugin), in a namespace that must exist first (NamespaceLifecycle, before it).
    if resource.builtin_kind() == "Pod" {
        let namespace = target.namespace.as_deref().unwrap_or("default");
        namespace_usable(server, namespace).await?;
        let shown = text(&object, "/metadata/name").or_else(|| text(&object, "/metadata/generateName"));
        let shown = shown.unwrap_or_default().to_string();
        super::serviceaccount::admit(server, namespace, &shown, &mut object).await?;
    }
    let generated = text(&object, "/metadata/name").is_none();
    if generated {
        match text(&object, "/metadata/generateName").map(str::to_string) {
            Some(prefix) => {
                // A seeded generator starts again with the server: skip names in use
                // (Kubernetes retries a taken generated name too).
                let scope = target.namespace.as_deref().unwrap_or_default();
                let mut name = format!("{prefix}{}", server.options.names.suffix(scope, &prefix));
                for _ in 0..8 {
                    let key = resource.key(target.namespace.as_deref(), &name);
                    if !matches!(server.store.get(&key).await, Ok(Some(_))) {
                        break;
                    }
                    name = format!("{prefix}{}", server.options.names.suffix(scope, &prefix));
                }
                metadata(&mut object).insert("name".into(), json!(name));
            }
            None => {
                return Err(ApiError::invalid(
                    Subject { group: resource.group, kind: resource.kind, name: "" },
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                        "FieldValueRequired".into(),
                    )],
                ));
            }
        }
    }
    let name = text(&object, "/metadata/name").unwrap_or("").to_string();
    let namespace = if resource.namespaced { target.namespace.clone().unwrap_or_default() } else { String::new() };
    let call = webhooks::Call {
        resource,
        subresource: None,
        operation: "CREATE",
        name: &name,
        namespace: &namespace,
        old: None,
        dry_run: dry_run(query)?,
        kind: None,
    };
    if webhooks::mutate(server, &call, &mut object).await? {
        prune_silently(server, resource, &mut object)?;
    }
    let id = uid();
    prepare_create(resource, &mut object, &id, &server.options.clock.timestamp());
    if resource.builtin_kind() == "Pod" {
        default_tolerations(&mut object, server.options.default_toleration_seconds);
    }
    if resource.builtin_kind() == "PersistentVolumeClaim" {
        default_storage_class(server, &mut object).await?;
    }
    let mut object = admit(server, resource, object, None)?;
    // The field manager's entries are its own (checked as they were decoded): admission
    // neither validates nor normalizes them.
    if let Some(managed) = managed {
        metadata(&mut object).insert("managedFields".into(), managed);
    }
    if crds::is_crd(resource) {
        crds::validate(server, &object, None)?;
    }
    super::authorization::confirm_no_escalation(server, resource, &object, None).await?;
    policies::admit(server, resource, None, &object, None, dry_run(query)?).await?;
    webhooks::validate(server, &call, Some(&object)).await?;
    if webhooks::is_webhook_kind(resource) {
        webhooks::warn_unsupported(&object);
    }
    if resource.namespaced {
        namespace_usable(server, target.namespace.as_deref().unwrap_or("default")).await?;
    }
    let key = resource.key(target.namespace.as_deref(), &name);
    // Quotas: held from the check until the pod is written.
    let _quota = match target.namespace.as_deref() {
        Some(namespace) if resource.namespaced => {
            super::quota::admit(server, resource, namespace, &object, None).await?
        }
        _ => None,
    };
    // A Service's cluster IP and node ports, held until the write is settled.
    let claim = allocate::create(server, target, &key, &mut object).await?;
    if dry_run(query)? {
        return match server.store.get(&key).await.map_err(|e| store_error(resource, &name, e))? {
            Some(_) => Err(store_error(resource, &name, StoreError::Exists(key))),
            None => respond(StatusCode::CREATED, &object),
        };
    }
    let mut stored = object.clone();
    conversion::to_storage(server, resource, &mut stored).await?;
    let mut created = server.store.create(&key, to_bytes(&stored)).await;
    claim.settle(&key, created.as_ref().map(|_| Some(&object)));
    let mut name = name;
    // A generated name someone took meanwhile: another one, up to 7 times, as Kubernetes
    // 1.32 retries (RetryGenerateName). The claims (a Service's addresses) were settled
    // for the first key; only kinds without them are retried.
    let prefix = text(&object, "/metadata/generateName").map(str::to_string);
    let scope = target.namespace.clone().unwrap_or_default();
    for _ in 0..GENERATE_NAME_RETRIES {
        let (true, Some(prefix), Err(StoreError::Exists(_))) = (generated, prefix.as_deref(), &created) else { break };
        if resource.builtin_kind() == "Service" {
            break;
        }
        name = format!("{prefix}{}", server.options.names.suffix(&scope, prefix));
        metadata(&mut object).insert("name".into(), json!(name));
        metadata(&mut stored).insert("name".into(), json!(name));
        let key = resource.key(target.namespace.as_deref(), &name);
        created = server.store.create(&key, to_bytes(&stored)).await;
    }
    let revision = created.map_err(|e| store_error(resource, &name, e))?;
    set_revision(&mut object, revision);
    if crds::is_crd(resource) {
        // Served from the next request on (Kubernetes does this a moment later).
        crds::sync(server, &name).await;
    }
    reload_admission(server, resource).await;
    respond(StatusCode::CREATED, &object)
}

/// The outcome of a guaranteed update.
pub(super) enum Written {
    Stored(Value),
    Deleted(Value),
}

impl Written {
    pub(super) fn into_value(self) -> Value {
        match self {
            Written::Stored(v) | Written::Deleted(v) => v,
        }
    }
}

/// Who sees a write besides the registry's own validation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// The request's own write: mutating and validating webhooks, admission policies and
    /// the field manager see it.
    Plugins,
    /// A write the registry makes for a request that the plugins saw as another object:
    /// a binding's pod (they saw the Binding), an eviction's condition (they saw the
    /// Eviction). Kubernetes' registry makes these with `ValidateAllObjectFunc`.
    Registry,
}

/// Reads the object, makes the next one with `next`, admits it and writes it with
/// compare-and-swap; `precondition` is the revision the client insists on.
/// `through` names the subresource a write came in by when `target` is the main resource
/// it changes (`scale`, `binding`): the field manager records it, and admission sees a
/// write through `scale` as one; `admission` says whether the admission plugins see the
/// write at all (a binding's is the registry's own).
pub(super) async fn write(
    server: &ApiServer,
    target: &Target,
    (through, admission): (Option<&str>, Admission),
    query: &Query,
    precondition: Option<u64>,
    mut next: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Written, ApiError> {
    let plugins = admission == Admission::Plugins;
    let resource = target.resource;
    let name = target.name.as_deref().unwrap_or("");
    let key = resource.key(target.namespace.as_deref(), name);
    let dry_run = dry_run(query)?;
    for _ in 0..RETRIES {
        let entry = server.store.get(&key).await.map_err(|e| store_error(resource, name, e))?;
        let entry = entry.ok_or_else(|| not_found(resource, name))?;
        let mut current = from_entry(&entry)?;
        conversion::to_request(server, resource, std::slice::from_mut(&mut current)).await?;
        // What `next` refuses comes first: an update's uid precondition is checked by
        // storage before the resourceVersion it carries.
        let mut wanted = next(&current)?;
        if precondition.is_some_and(|p| p != entry.revision) {
            return Err(store_error(resource, name, StoreError::Conflict { key, expected: 0, current: 0 }));
        }
        // A binding is made by the server from the stored pod: nothing to prune.
        let binding = through == Some("binding");
        if !binding {
            prune(server, resource, query, &mut wanted)?;
        }
        let subresource = through.or(target.subresource.as_deref());
        let namespace = if resource.namespaced { target.namespace.as_deref().unwrap_or_default() } else { "" };
        // Made at each use with the stored object: the field manager takes its entries out
        // of it in between.
        let call = webhooks::Call {
            resource,
            subresource,
            operation: "UPDATE",
            name,
            namespace,
            old: None,
            dry_run,
            kind: None,
        };
        // Through `scale`, admission sees Scales, the stored one as old (Kubernetes'
        // `scaleUpdatedObjectInfo`), not the workload.
        let old_scale = (through == Some("scale")).then(|| scale_of(resource, &current));
        let scale_call = old_scale.as_ref().map(|old| webhooks::Call { old: Some(old), kind: Some(SCALE), ..call });
        // Mutating admission sees the object as sent; what the endpoint does not change
        // (status through the main resource, system metadata) is put back after it, as
        // the registry's PrepareForUpdate does.
        if let (true, Some(scale_call)) = (plugins, &scale_call) {
            let mut scale = scale_of(resource, &wanted);
            if webhooks::mutate(server, scale_call, &mut scale).await? {
                set_replicas(resource, &mut wanted, scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0)));
            }
        } else if plugins
            && webhooks::mutate(server, &webhooks::Call { old: Some(&current), ..call }, &mut wanted).await?
        {
            prune_silently(server, resource, &mut wanted)?;
        }
        // A uid changed is refused with the object's validation, after mutating admission
        // (which may have put the stored one back).
        changed_uid(resource, name, &current, &wanted)?;
        // `ValidateScale`, on the Scale as mutating admission left it.
        if scale_call.is_some() {
            scale_replicas(&scale_of(resource, &wanted), name)?;
        }
        let mut prepared = prepare_update(resource, target.subresource.as_deref(), &current, wanted);
        if crds::is_crd(resource) {
            crds::prepare_update(target.subresource.as_deref(), &mut prepared);
        }
        // The field manager's entries are its own (checked as they were decoded): admission
        // neither validates nor normalizes them. A binding sets the node and a condition on
        // the stored pod, and Kubernetes' registry stores that without validating the pod
        // again (`assignPod`): the pod was admitted when it was written, and what the
        // binding adds is in the stored form already (`bind`).
        let mut admitted = if binding {
            prepared
        } else {
            let managed = metadata(&mut prepared).remove("managedFields");
            let mut admitted = admit(server, resource, prepared, Some(&current))?;
            if let Some(managed) = managed {
                metadata(&mut admitted).insert("managedFields".into(), managed);
            }
            admitted
        };
        // Ownership is judged on the objects as stored: defaults filled on both sides. The
        // field manager is the request handlers', as Kubernetes' is: a write the registry
        // makes itself (a binding's node) is not tracked.
        if plugins {
            super::apply::track_update(server, resource, subresource, &mut current, &mut admitted);
        }
        if crds::is_crd(resource) {
            crds::validate(server, &admitted, Some(&current))?;
        }
        super::authorization::confirm_no_escalation(server, resource, &admitted, Some(&current)).await?;
        match (plugins, &scale_call) {
            (false, _) => {}
            (true, Some(scale_call)) => {
                let scale = scale_of(resource, &admitted);
                let as_scale = (subresource.unwrap_or_default(), SCALE);
                policies::admit_as(server, resource, as_scale, &scale, scale_call.old, dry_run).await?;
                webhooks::validate(server, scale_call, Some(&scale)).await?;
            }
            (true, None) => {
                policies::admit(server, resource, subresource, &admitted, Some(&current), dry_run).await?;
                webhooks::validate(server, &webhooks::Call { old: Some(&current), ..call }, Some(&admitted)).await?;
            }
        }
        if webhooks::is_webhook_kind(resource) {
            webhooks::warn_unsupported(&admitted);
        }
        // Quotas, for the kinds whose updates count (a Service's type, a claim's size):
        // held from the check until the write is settled.
        let _quota = match target.namespace.as_deref() {
            Some(namespace) if resource.namespaced && through.is_none() && target.subresource.is_none() => {
                super::quota::admit(server, resource, namespace, &admitted, Some(&current)).await?
            }
            _ => None,
        };
        // A Service keeps or gets its cluster IP and node ports, held until the write is settled.
        let claim = allocate::update(server, target, &key, &current, &mut admitted).await?;
        if resource.generation && generation_changes(resource, &current, &admitted) {
            let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            metadata(&mut admitted).insert("generation".into(), json!(generation + 1));
        }
        set_revision(&mut admitted, entry.revision);
        if admitted == current {
            return Ok(Written::Stored(current));
        }
        let finished = finishes_deletion(&current, &admitted);
        if dry_run {
            return Ok(if finished { Written::Deleted(admitted) } else { Written::Stored(admitted) });
        }
        let result = if finished {
            server.store.delete(&key, Some(entry.revision)).await.map(|deleted| {
                set_revision(&mut admitted, deleted.revision);
                Written::Deleted(admitted)
            })
        } else {
            // Kinds served in several versions convert (custom kinds, HorizontalPodAutoscalers,
            // Events), and their writes hold no allocation claim; the others are stored as
            // admitted, without a copy.
            let bytes = if conversion::served_as_stored(resource) {
                to_bytes(&admitted)
            } else {
                let mut stored = admitted.clone();
                conversion::to_storage(server, resource, &mut stored).await?;
                to_bytes(&stored)
            };
            server.store.update(&key, bytes, Some(entry.revision)).await.map(|revision| {
                set_revision(&mut admitted, revision);
                Written::Stored(admitted)
            })
        };
        let outcome = match &result {
            Ok(Written::Stored(object)) => Ok(Some(object)),
            Ok(Written::Deleted(_)) => Ok(None),
            Err(error) => Err(error),
        };
        claim.settle(&key, outcome);
        match result {
            Ok(written) => {
                if crds::is_crd(resource) {
                    crds::sync(server, name).await;
                }
                reload_admission(server, resource).await;
                return Ok(written);
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) if precondition.is_none() => continue,
            Err(error) => return Err(store_error(resource, name, error)),
        }
    }
    Err(ApiError::conflict(subject(resource, &resource.qualified(), name), "too many concurrent writers; try again"))
}

/// Whether a write moves `metadata.generation`: a change to the spec; for a custom
/// resource, to anything but metadata (and status, when it has the status subresource),
/// as Kubernetes counts it.
fn generation_changes(resource: &Resource, current: &Value, next: &Value) -> bool {
    if resource.crd.is_none() {
        // Webhook configurations have no spec: their webhooks count.
        let counted = if resource.kind.ends_with("WebhookConfiguration") { "webhooks" } else { "spec" };
        return current.get(counted) != next.get(counted);
    }
    let counted = |object: &Value| -> Map<String, Value> {
        let mut map = object.as_object().cloned().unwrap_or_default();
        map.remove("metadata");
        if resource.status {
            map.remove("status");
        }
        map
    };
    counted(current) != counted(next)
}

fn finalizers(object: &Value, pointer: &str) -> usize {
    object.pointer(pointer).and_then(Value::as_array).map_or(0, Vec::len)
}

/// An update removes a deleting object when it takes away the last finalizer (for a
/// namespace, of both lists), or when the object's grace period was already zero, as the
/// registry decides it. A pod in its grace period stays through status updates.
fn finishes_deletion(current: &Value, next: &Value) -> bool {
    if next.pointer("/metadata/deletionTimestamp").is_none() {
        return false;
    }
    let held = |o: &Value| {
        finalizers(o, "/metadata/finalizers")
            + finalizers(o, "/spec/finalizers") * usize::from(o.get("kind") == Some(&json!("Namespace")))
    };
    let released = held(current) > 0 && held(next) == 0;
    let no_grace =
        current.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64) == Some(0) && held(next) == 0;
    released || no_grace
}

/// Gives `into` the status of `from` (none, if it has none).
fn copy_status(from: &Value, into: &mut Value) {
    match (from.get("status"), into.as_object_mut()) {
        (Some(status), Some(map)) => {
            map.insert("status".into(), status.clone());
        }
        (None, Some(map)) => {
            map.remove("status");
        }
        _ => {}
    }
}

/// The next object from what the client sent: fields only the server sets are kept
/// from the current object, and each endpoint changes only its part (the main
/// resource leaves status alone; `status` changes only status).
fn prepare_update(resource: &Resource, sub: Option<&str>, current: &Value, wanted: Value) -> Value {
    let sent_managed = wanted.pointer("/metadata/managedFields").cloned();
    let mut next = match sub {
        Some("status") => {
            let mut next = current.clone();
            copy_status(&wanted, &mut next);
            next
        }
        Some("binding") => wanted,
        Some("finalize") => {
            let mut next = current.clone();
            next["spec"] = json!({"finalizers": wanted.pointer("/spec/finalizers").cloned().unwrap_or(json!([]))});
            next
        }
        _ => {
            let mut next = wanted;
            if resource.builtin_kind() == "Namespace" {
                // Only `finalize` changes a namespace's finalizers.
                next["spec"] = current.get("spec").cloned().unwrap_or(json!({}));
            }
            if resource.status {
                copy_status(current, &mut next);
            }
            next
        }
    };
    if resource.builtin_kind() == "Service" && sub.is_none() {
        allocate::drop_type_dependent_fields(current, &mut next);
    }
    let kept = [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ];
    // The request's managedFields if it sends them (an apply's, or a client resetting
    // them), else the live ones: ownership is the field manager's to change.
    let live = current.pointer("/metadata/managedFields").cloned();
    let managed = super::apply::managed_fields_to_keep(sub, sent_managed.as_ref(), live);
    let meta = metadata(&mut next);
    match managed {
        Some(managed) => meta.insert("managedFields".into(), managed),
        None => meta.remove("managedFields"),
    };
    meta.remove("selfLink");
    for field in kept {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
    next
}

async fn update(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let mut object = decode(headers, body)?;
    check_type(resource, &mut object, &resource.api_version(), resource.kind)?;
    check_namespace(target, &mut object)?;
    let name = target.name.as_deref().unwrap_or("");
    if let Some(given) = text(&object, "/metadata/name")
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let precondition = text(&object, "/metadata/resourceVersion").map(parse_revision).transpose()?;
    let written = write(server, target, (None, Admission::Plugins), query, precondition, |current| {
        // An update's uid is a precondition (the registry's `defaultUpdatedObjectInfo`),
        // failed as the storage layer fails one: a 409, before any validation.
        let sent = text(&object, "/metadata/uid").filter(|uid| !uid.is_empty());
        if let Some(sent) = sent.filter(|sent| Some(*sent) != text(current, "/metadata/uid")) {
            return Err(uid_precondition_failed(resource, target.namespace.as_deref(), current, sent));
        }
        Ok(object.clone())
    })
    .await?;
    respond(StatusCode::OK, &written.into_value())
}

/// A uid precondition the stored object fails, as Kubernetes' storage fails it
/// (`Preconditions.Check`, an invalid-object `StorageError` naming the etcd key) and its
/// registry answers it: a 409 on the resource.
fn uid_precondition_failed(resource: &Resource, namespace: Option<&str>, current: &Value, sent: &str) -> ApiError {
    precondition_failed(resource, namespace, current, ("UID", sent, "/metadata/uid"))
}

/// A precondition (`UID` or `ResourceVersion`, as sent, and where the stored object keeps
/// it) the stored object fails, in storage's words.
fn precondition_failed(
    resource: &Resource,
    namespace: Option<&str>,
    current: &Value,
    (what, sent, pointer): (&str, &str, &str),
) -> ApiError {
    let name = text(current, "/metadata/name").unwrap_or_default();
    let stored = text(current, pointer).unwrap_or_default();
    let key = resource.etcd_key(namespace, name);
    ApiError::conflict(
        subject(resource, &resource.qualified(), name),
        &format!(
            "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: \
             Precondition failed: {what} in precondition: {sent}, {what} in object meta: {stored}"
        ),
    )
}

/// A uid a write sets that is not the stored object's: Kubernetes' `ValidateObjectMetaUpdate`
/// refuses it as an immutable field (a 422). A kubelet's status patch carries its pod's
/// uid so that it never lands on a pod recreated under the same name. An empty or
/// missing uid keeps the stored one.
fn changed_uid(resource: &Resource, name: &str, current: &Value, wanted: &Value) -> Result<(), ApiError> {
    let stored = text(current, "/metadata/uid").unwrap_or_default();
    match text(wanted, "/metadata/uid") {
        Some(sent) if !sent.is_empty() && sent != stored => Err(ApiError::invalid(
            Subject { group: resource.group, kind: resource.kind, name },
            vec![(
                "metadata.uid".into(),
                format!("Invalid value: \"{sent}\": field is immutable"),
                "FieldValueInvalid".into(),
            )],
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum PatchType {
    Json,
    Merge,
    Strategic,
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        _ => Err(ApiError::unsupported_media_type(content_type)),
    }
}

fn apply_patch(
    server: &ApiServer,
    kind: PatchType,
    gvk: &GroupVersionKind,
    base: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    // A patch that decodes but cannot be applied (a failed test, a missing path) is 422.
    let invalid = |error: PatchError| ApiError::new(422, "Invalid", error.to_string());
    match kind {
        PatchType::Json => {
            let mut patched = base.clone();
            patch::json_patch(&mut patched, patch).map_err(invalid)?;
            Ok(patched)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut patched = base.clone();
            patch::merge_patch(&mut patched, patch);
            Ok(patched)
        }
        PatchType::Strategic => {
            let schema =
                server.admission.catalog().builtin_definition(gvk).map_or(Schema::NONE, |(node, definitions)| Schema {
                    node: Some(node),
                    definitions: Some(definitions),
                });
            patch::strategic_merge_patch(base, patch, schema).map_err(invalid)
        }
    }
}

fn read_patch(headers: &HeaderMap, body: &Bytes) -> Result<(PatchType, Value), ApiError> {
    let kind = patch_type(headers)?;
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    Ok((kind, patch))
}

/// A `resourceVersion` written in a patch is a precondition.
pub(super) fn patched_precondition(
    current: &Value,
    patched: &Value,
    resource: &Resource,
    name: &str,
) -> Result<(), ApiError> {
    let given = text(patched, "/metadata/resourceVersion");
    if given.is_some() && given != text(current, "/metadata/resourceVersion") {
        return Err(ApiError::stale(subject(resource, &resource.qualified(), name)));
    }
    Ok(())
}

async fn patch_object(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    if query.contains_key("force") {
        return Err(ApiError::invalid(
            Subject { group: "meta.k8s.io", kind: "PatchOptions", name: "" },
            vec![(
                "force".into(),
                "Forbidden: may not be specified for non-apply patch".into(),
                "FieldValueForbidden".into(),
            )],
        ));
    }
    let (kind, patch) = read_patch(headers, body)?;
    let gvk = GroupVersionKind::new(resource.group, resource.version, resource.kind);
    let name = target.name.as_deref().unwrap_or("");
    let written = write(server, target, (None, Admission::Plugins), query, None, |current| {
        let patched = apply_patch(server, kind, &gvk, current, &patch)?;
        if !patched.is_object() {
            return Err(ApiError::new(422, "Invalid", "the patched object is not a JSON object"));
        }
        patched_precondition(current, &patched, resource, name)?;
        let mut patched = patched;
        check_type(resource, &mut patched, &resource.api_version(), resource.kind)?;
        Ok(patched)
    })
    .await?;
    respond(StatusCode::OK, &written.into_value())
}

/// A scale path (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
fn scale_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Sets the value at a scale path, making the objects on the way.
fn set_at_scale_path(object: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some((last, parents)) = keys.split_last() else { return };
    let mut here = object;
    for key in parents {
        if !here.get(*key).is_some_and(Value::is_object) {
            here[*key] = json!({});
        }
        here = &mut here[*key];
    }
    here[*last] = value;
}

fn scale_of(resource: &Resource, object: &Value) -> Value {
    let (spec_replicas, status_replicas, selector) = match resource.scale_paths {
        // A custom kind's own paths; replicas it does not have read as 0 (Kubernetes'
        // scaleFromCustomResource).
        Some(paths) => (
            object.pointer(&scale_pointer(&paths.spec_replicas)).cloned(),
            object.pointer(&scale_pointer(&paths.status_replicas)).cloned(),
            paths
                .label_selector
                .as_deref()
                .and_then(|p| object.pointer(&scale_pointer(p)))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        None => (
            object.pointer("/spec/replicas").cloned(),
            object.pointer("/status/replicas").cloned(),
            workload_selector(resource, object),
        ),
    };
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let metadata: Map<String, Value> = metadata
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec_replicas.unwrap_or(json!(0))},
        "status": {
            "replicas": status_replicas.unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A built-in workload's selector, serialized (`app=web`).
fn workload_selector(resource: &Resource, object: &Value) -> String {
    object
        .pointer("/spec/selector")
        .map(|s| {
            if resource.builtin_kind() == "ReplicationController" {
                Selector::from_map(Some(s)).map(|s| s.to_string()).unwrap_or_default()
            } else {
                Selector::from_label_selector(Some(s)).map(|s| s.to_string()).unwrap_or_default()
            }
        })
        .unwrap_or_default()
}

/// A Scale's replicas, checked as Kubernetes' `ValidateScale` checks them.
fn scale_replicas(scale: &Value, name: &str) -> Result<Value, ApiError> {
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    if !replicas.as_i64().is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) {
        return Err(ApiError::invalid(
            Subject { group: "autoscaling", kind: "Scale", name },
            vec![(
                "spec.replicas".into(),
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "FieldValueInvalid".into(),
            )],
        ));
    }
    Ok(replicas)
}

/// Sets a workload's desired replicas, where its kind keeps them.
fn set_replicas(resource: &Resource, workload: &mut Value, replicas: Value) {
    match resource.scale_paths {
        Some(paths) => set_at_scale_path(workload, &paths.spec_replicas, replicas),
        None => workload["spec"]["replicas"] = replicas,
    }
}

async fn get_scale(server: &ApiServer, target: &Target) -> Result<Response, ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    let key = target.resource.key(target.namespace.as_deref(), name);
    let entry = server.store.get(&key).await.map_err(|e| store_error(target.resource, name, e))?;
    let entry = entry.ok_or_else(|| not_found(target.resource, name))?;
    let mut object = from_entry(&entry)?;
    conversion::to_request(server, target.resource, std::slice::from_mut(&mut object)).await?;
    respond(StatusCode::OK, &scale_of(target.resource, &object))
}

async fn write_scale(
    server: &ApiServer,
    target: &Target,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let scale_gvk = GroupVersionKind::new("autoscaling", "v1", "Scale");
    let (patch, given) = if method == Method::PATCH {
        (Some(read_patch(headers, body)?), None)
    } else {
        let mut scale = decode(headers, body)?;
        check_type(resource, &mut scale, "autoscaling/v1", "Scale")?;
        (None, Some(scale))
    };
    let precondition =
        given.as_ref().and_then(|s| text(s, "/metadata/resourceVersion")).map(parse_revision).transpose()?;
    let main = Target { subresource: None, namespace: target.namespace.clone(), name: target.name.clone(), resource };
    let name = target.name.as_deref().unwrap_or("");
    let written = write(server, &main, (Some("scale"), Admission::Plugins), query, precondition, |current| {
        let scale = match (&patch, &given) {
            (Some((kind, patch)), _) => {
                let current_scale = scale_of(resource, current);
                let patched = apply_patch(server, *kind, &scale_gvk, &current_scale, patch)?;
                patched_precondition(&current_scale, &patched, resource, name)?;
                patched
            }
            (None, Some(scale)) => scale.clone(),
            (None, None) => unreachable!("a scale write has a body or a patch"),
        };
        // The Scale's uid is the workload's precondition (`scaleUpdatedObjectInfo`).
        let sent = text(&scale, "/metadata/uid").filter(|uid| !uid.is_empty());
        if let Some(sent) = sent.filter(|sent| Some(*sent) != text(current, "/metadata/uid")) {
            return Err(uid_precondition_failed(resource, target.namespace.as_deref(), current, sent));
        }
        // Checked once mutating admission has seen it (`write`).
        let mut next = current.clone();
        set_replicas(resource, &mut next, scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0)));
        Ok(next)
    })
    .await?;
    respond(StatusCode::OK, &scale_of(resource, &written.into_value()))
}

/// Kubernetes' registry checks a binding's target with `ValidatePodBinding` and returns
/// its field errors as they are (an aggregate, not a `Status`), which the API answers as
/// any error it cannot classify: a 500 with no reason, the errors as the message.
fn check_binding_target(kind: &str, node: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if !kind.is_empty() && kind != "Node" {
        let quoted = serde_json::to_string(kind).unwrap_or_default();
        errors.push(format!("target.kind: Unsupported value: {quoted}: supported values: \"Node\", \"<empty>\""));
    }
    if node.is_empty() {
        errors.push("target.name: Required value".to_string());
    }
    match errors.as_slice() {
        [] => Ok(()),
        [one] => Err(ApiError::new(500, "", one.clone())),
        many => Err(ApiError::new(500, "", format!("[{}]", many.join(", ")))),
    }
}

/// A Binding's annotations, which a typed decoding lets through only as strings.
fn string_annotations(binding: &Value) -> Result<Map<String, Value>, ApiError> {
    match binding.pointer("/metadata/annotations") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(annotations)) if annotations.values().all(Value::is_string) => Ok(annotations.clone()),
        Some(_) => Err(ApiError::bad_request(
            "Binding in version \"v1\" cannot be handled as a Binding: metadata.annotations: \
             expected a map of strings",
        )),
    }
}

/// `POST pods/{name}/binding` (or `bindings`): assigns a pod to a node, once.
pub(super) async fn bind(
    server: &ApiServer,
    namespace: &str,
    name: Option<&str>,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pods = super::resources::by_kind("", "Pod").expect("pods are served");
    let mut binding = decode(headers, body)?;
    check_type(pods, &mut binding, "v1", "Binding")?;
    string_annotations(&binding)?;
    // Binding writes spec and status (the PodScheduled condition) at once.
    let subresource = Some("binding".to_string());
    let mut target = Target { resource: pods, namespace: Some(namespace.to_string()), name: None, subresource };
    check_namespace(&target, &mut binding)?;
    // Admission sees a CREATE of `pods/binding` (or of `bindings`, below) with the
    // Binding (as sent, then as the mutating webhooks left it); the pod it writes is the
    // registry's own (`assignPod`).
    let dry_run = dry_run(query)?;
    let named = name.map_or_else(|| text(&binding, "/metadata/name").unwrap_or("").to_string(), str::to_string);
    // The legacy `POST namespaces/{ns}/bindings` is admitted as its own resource,
    // `bindings`, with no subresource (its storage is `LegacyBindingREST`).
    let (admitted_as, through) = if name.is_some() { (pods, "binding") } else { (&BINDINGS, "") };
    let call = webhooks::Call {
        resource: admitted_as,
        subresource: Some(through).filter(|through| !through.is_empty()),
        operation: "CREATE",
        name: &named,
        namespace,
        old: None,
        dry_run,
        kind: Some(BINDING),
    };
    webhooks::mutate(server, &call, &mut binding).await?;
    let named = text(&binding, "/metadata/name").unwrap_or("");
    if name.is_some_and(|name| name != named) {
        return Err(ApiError::bad_request("name in URL does not match name in Binding object"));
    }
    let pod = name.unwrap_or(named).to_string();
    // The pod is stored without admission: what the binding puts on it must be what a
    // typed decoding of the Binding would have let through (annotations are strings).
    let annotations = string_annotations(&binding)?;
    // The pod's uid and revision the binding names, if any, must still be the pod's (the
    // registry binds with them as preconditions: a pod deleted and made again under the
    // same name is not bound to the node chosen for its predecessor).
    let uid = text(&binding, "/metadata/uid").filter(|u| !u.is_empty()).map(str::to_string);
    let revision =
        text(&binding, "/metadata/resourceVersion").filter(|v| !v.is_empty()).map(parse_revision).transpose()?;
    let node = text(&binding, "/target/name").unwrap_or_default().to_string();
    check_binding_target(text(&binding, "/target/kind").unwrap_or_default(), &node)?;
    policies::admit_as(server, admitted_as, (through, BINDING), &binding, None, dry_run).await?;
    webhooks::validate(server, &webhooks::Call { name: &pod, ..call }, Some(&binding)).await?;
    target.name = Some(pod.clone());
    // Kubernetes' registry words a refused binding as a conflict on `pods/binding`.
    let qualified = format!("{}/binding", pods.qualified());
    write(server, &target, (Some("binding"), Admission::Registry), query, None, |current| {
        if let Some(uid) = &uid
            && text(current, "/metadata/uid") != Some(uid.as_str())
        {
            // Storage fails it, and the registry's `InterpretUpdateError` makes it a
            // conflict on `pods`.
            return Err(uid_precondition_failed(pods, Some(namespace), current, uid));
        }
        // Then the resourceVersion, also a storage precondition, before what the
        // registry's update refuses.
        if let Some(revision) = revision
            && text(current, "/metadata/resourceVersion") != Some(revision.to_string().as_str())
        {
            let sent = revision.to_string();
            return Err(precondition_failed(
                pods,
                Some(namespace),
                current,
                ("ResourceVersion", &sent, "/metadata/resourceVersion"),
            ));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                subject(pods, &qualified, &pod),
                &format!("pod {pod} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(bound) = text(current, "/spec/nodeName") {
            return Err(ApiError::conflict(
                subject(pods, &qualified, &pod),
                &format!("pod {pod} is already assigned to node \"{bound}\""),
            ));
        }
        if current.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            return Err(ApiError::conflict(
                subject(pods, &qualified, &pod),
                &format!("pod {pod} has non-empty .spec.schedulingGates"),
            ));
        }
        let mut next = current.clone();
        next["spec"]["nodeName"] = json!(node);
        // The binding's annotations go onto the pod, as the registry's
        // `setPodNodeAndMetadata` copies them.
        if !annotations.is_empty() {
            let meta = metadata(&mut next);
            let onto = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(onto) = onto.as_object_mut() {
                onto.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        // As the registry sets it: True, no reason or message, in the stored form (admission
        // leaves out an unset `lastProbeTime`, and nothing admits a binding's pod again).
        let now = server.options.clock.timestamp();
        kubeyard_compiler::pod::update_condition(
            &mut next,
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}),
        );
        Ok(next)
    })
    .await?;
    respond(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// `DeleteOptions` from the body and the query.
#[derive(Default)]
pub(super) struct DeleteOptions {
    pub grace: Option<i64>,
    pub dry_run: bool,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub revision: Option<u64>,
    /// Deletes the registry or the storage layer makes itself, which no admission sees
    /// (the `Admission::Registry` of deletes): an eviction's (`ValidateAllObjectFunc`), a
    /// deleted CRD's objects (Kubernetes' CRD finalizer deletes through storage).
    pub without_admission: bool,
}

fn delete_options(headers: &HeaderMap, query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { decode(headers, body)? };
    delete_options_of(&from_body, query)
}

/// `DeleteOptions` as a body holds them (an Eviction's `deleteOptions` too), the query's
/// parameters before them.
pub(super) fn delete_options_of(from_body: &Value, query: &Query) -> Result<DeleteOptions, ApiError> {
    let grace = query
        .get("gracePeriodSeconds")
        .map(|g| g.parse::<i64>().map_err(|_| ApiError::bad_request("gracePeriodSeconds must be a whole number")))
        .transpose()?
        .or_else(|| from_body.get("gracePeriodSeconds").and_then(Value::as_i64));
    let mut propagation = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| from_body.get("propagationPolicy").and_then(Value::as_str).map(str::to_string));
    let orphan = query
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| from_body.get("orphanDependents").and_then(Value::as_bool));
    if propagation.is_none() && orphan == Some(true) {
        propagation = Some("Orphan".into());
    }
    if let Some(policy) = &propagation
        && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    let revision = text(from_body, "/preconditions/resourceVersion").map(parse_revision).transpose()?;
    // Typed clients (client-go, kube-rs) say `dryRun: ["All"]` in the body.
    let dry_run = match from_body.get("dryRun") {
        None | Some(Value::Null) => dry_run(query)?,
        Some(Value::Array(values)) if values.is_empty() => dry_run(query)?,
        Some(Value::Array(values)) if values.iter().all(|v| v == "All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("dryRun: unsupported value {other} (only [\"All\"])")));
        }
    };
    // A grace period beyond ten years is as good as forever, and keeps time arithmetic sane.
    let grace = grace.map(|g| g.clamp(0, 315_360_000));
    Ok(DeleteOptions {
        grace,
        dry_run,
        propagation,
        uid: text(from_body, "/preconditions/uid").map(str::to_string),
        revision,
        without_admission: false,
    })
}

async fn delete(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let options = delete_options(headers, query, body)?;
    match delete_one(server, target, &options).await? {
        // Pods and namespaces come back as they were; other kinds, once gone, as a Status
        // (the registry's ReturnDeletedObject), which clients tell from "still deleting".
        Deletion::Gone(object) if !matches!(target.resource.builtin_kind(), "Pod" | "Namespace") => {
            let status = json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": text(&object, "/metadata/name").unwrap_or(""),
                    "group": target.resource.group,
                    "kind": target.resource.plural,
                    "uid": text(&object, "/metadata/uid").unwrap_or(""),
                },
            });
            respond(StatusCode::OK, &status)
        }
        Deletion::Gone(mut object) | Deletion::Pending(mut object) => {
            conversion::to_request(server, target.resource, std::slice::from_mut(&mut object)).await?;
            respond(StatusCode::OK, &object)
        }
    }
}

/// What a delete did: the object is gone, or waits for finalizers or its grace period.
pub(super) enum Deletion {
    Gone(Value),
    Pending(Value),
}

pub(super) async fn delete_one(
    server: &ApiServer,
    target: &Target,
    options: &DeleteOptions,
) -> Result<Deletion, ApiError> {
    let resource = target.resource;
    let name = target.name.as_deref().unwrap_or("");
    let key = resource.key(target.namespace.as_deref(), name);
    let dry_run = options.dry_run;
    let qualified = resource.qualified();
    let kind_qualified = if resource.group.is_empty() {
        resource.kind.to_string()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    };
    for _ in 0..RETRIES {
        let entry = server.store.get(&key).await.map_err(|e| store_error(resource, name, e))?;
        let entry = entry.ok_or_else(|| not_found(resource, name))?;
        let current = from_entry(&entry)?;
        if let Some(uid) = &options.uid
            && text(&current, "/metadata/uid") != Some(uid.as_str())
        {
            // `rest.BeforeDelete` checks first, on the group and *kind* (`Pod "web"`,
            // `Deployment.apps "web"`).
            let actual = text(&current, "/metadata/uid").unwrap_or("");
            return Err(ApiError::conflict(
                subject(resource, &kind_qualified, name),
                &format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({actual}). \
                     The object might have been deleted and then recreated"
                ),
            ));
        }
        if options.revision.is_some_and(|r| r != entry.revision) {
            return Err(ApiError::conflict(
                subject(resource, &kind_qualified, name),
                &format!(
                    "the ResourceVersion in the precondition ({}) does not match the ResourceVersion in record \
                     ({}). The object might have been modified",
                    options.revision.unwrap_or_default(),
                    entry.revision
                ),
            ));
        }
        if !options.without_admission {
            // Admission sees the object in the version the request is for.
            let mut seen = current.clone();
            conversion::to_request(server, resource, std::slice::from_mut(&mut seen)).await?;
            let namespace = if resource.namespaced { target.namespace.as_deref().unwrap_or_default() } else { "" };
            let call = webhooks::Call {
                resource,
                subresource: None,
                operation: "DELETE",
                name,
                namespace,
                old: Some(&seen),
                dry_run,
                kind: None,
            };
            webhooks::mutate_delete(server, &call).await?;
            policies::admit_delete(server, resource, &seen, dry_run).await?;
            webhooks::validate(server, &call, None).await?;
        }
        let deleting = current.pointer("/metadata/deletionTimestamp").is_some();
        // A running pod on a node gets time to stop: its node agent deletes it when it has.
        let finished_pod = matches!(text(&current, "/status/phase"), Some("Succeeded" | "Failed"));
        let grace = if resource.builtin_kind() == "Pod" && text(&current, "/spec/nodeName").is_some() && !finished_pod {
            options
                .grace
                .or_else(|| current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30)
                .clamp(0, 315_360_000)
        } else {
            0
        };
        let mut finalizers: Vec<Value> =
            current.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        if !deleting {
            let extra = match options.propagation.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(extra) = extra
                && !finalizers.contains(&json!(extra))
            {
                finalizers.push(json!(extra));
            }
            if crds::is_crd(resource) {
                crds::on_delete(&current, &mut finalizers);
            }
        }
        let namespace_finalizers = resource.builtin_kind() == "Namespace"
            && current.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        let now_or_never = finalizers.is_empty() && !namespace_finalizers && grace == 0;
        if now_or_never {
            if dry_run {
                return Ok(Deletion::Gone(current));
            }
            // A Service's cluster IP and node ports are free once it is gone.
            let claim = allocate::delete(server, target).await?;
            let deleted = server.store.delete(&key, Some(entry.revision)).await;
            claim.settle(&key, deleted.as_ref().map(|_| None));
            match deleted {
                Ok(deleted) => {
                    let mut object = current;
                    set_revision(&mut object, deleted.revision);
                    reload_admission(server, resource).await;
                    return Ok(Deletion::Gone(object));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(store_error(resource, name, error)),
            }
        }
        let shorter = deleting
            && current
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| grace < g);
        if deleting && !shorter {
            // Already on its way out: deleting again changes nothing.
            return Ok(Deletion::Pending(current));
        }
        let mut next = current.clone();
        let when = server.options.clock.now() + Duration::from_secs(grace.max(0) as u64);
        let meta = metadata(&mut next);
        meta.insert("deletionTimestamp".into(), json!(clock::format(when)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), Value::Array(finalizers));
        }
        if resource.builtin_kind() == "Namespace" {
            next["status"]["phase"] = json!("Terminating");
        }
        if crds::is_crd(resource) {
            crds::mark_terminating(&mut next, &server.options.clock.timestamp());
        }
        if dry_run {
            return Ok(Deletion::Pending(next));
        }
        match server.store.update(&key, to_bytes(&next), Some(entry.revision)).await {
            Ok(revision) => {
                set_revision(&mut next, revision);
                if crds::is_crd(resource) {
                    // Its kinds stop taking objects now; its cleanup starts.
                    crds::sync(server, name).await;
                }
                return Ok(Deletion::Pending(next));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(store_error(resource, name, error)),
        }
    }
    Err(ApiError::conflict(subject(resource, &qualified, name), "too many concurrent writers; try again"))
}

async fn delete_collection(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let options = delete_options(headers, query, body)?;
    let filter = Filter::from_query(resource, query)?;
    let listing = server
        .store
        .list(&resource.prefix(target.namespace.as_deref()), None, None)
        .await
        .map_err(|e| store_error(resource, "", e))?;
    let mut deleted = Vec::new();
    for entry in &listing.entries {
        let object = from_entry(entry)?;
        if !filter.matches(&object) {
            continue;
        }
        let one = Target {
            resource,
            namespace: text(&object, "/metadata/namespace").map(str::to_string),
            name: text(&object, "/metadata/name").map(str::to_string),
            subresource: None,
        };
        match delete_one(server, &one, &options).await {
            Ok(Deletion::Gone(object) | Deletion::Pending(object)) => deleted.push(with_type(resource, object)),
            // Gone in the meantime: that is what was asked.
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    conversion::to_request(server, resource, &mut deleted).await?;
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": listing.revision.to_string()},
        "items": deleted,
    });
    respond(StatusCode::OK, &list)
}

/// Creates a namespace through admission unless it exists (the server's own
/// `default`, `kube-system`, `kube-public` and `kube-node-lease`).
/// What every cluster starts with, made unless there: its namespaces, Kubernetes'
/// bootstrap roles and bindings, and, as kind has, a default StorageClass whose claims
/// kubeyard's provisioner serves.
pub async fn bootstrap(server: &ApiServer) -> Result<(), ApiError> {
    for namespace in ["default", "kube-system", "kube-public", crate::kubelet::LEASE_NAMESPACE] {
        ensure_namespace(server, namespace).await?;
    }
    ensure(server, crate::controllers::persistentvolume::default_class()).await?;
    let rbac = kubeyard_compiler::rbac::bootstrap::cluster_roles();
    for object in rbac.into_iter().chain(kubeyard_compiler::rbac::bootstrap::cluster_role_bindings()) {
        ensure(server, object).await?;
    }
    // The kinds of the CRDs it holds, served before any request.
    crds::load(server).await;
    policies::reload(server).await;
    webhooks::reload(server).await;
    Ok(())
}

/// After a write to an admission configuration (policies, bindings, webhooks), the
/// server enforces what it says from the next request on.
async fn reload_admission(server: &ApiServer, resource: &Resource) {
    // The authorizer reads roles and bindings again after any of them changed.
    if resource.group == "rbac.authorization.k8s.io" {
        server.policy_cache.forget();
    }
    if policies::is_policy_kind(resource) {
        policies::reload(server).await;
    }
    if webhooks::is_webhook_kind(resource) {
        webhooks::reload(server).await;
    }
}

/// A namespace as a cluster starts with it: with its `default` ServiceAccount, which the
/// controller manager would make a moment later (so pods can be created in it on an API
/// server that runs without one).
pub async fn ensure_namespace(server: &ApiServer, name: &str) -> Result<(), ApiError> {
    ensure(server, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await?;
    let account = crate::controllers::serviceaccount::DEFAULT;
    ensure(
        server,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": name}}),
    )
    .await
}

/// Creates an object a cluster starts with (its namespaces and their service accounts,
/// its default StorageClass), unless it is there already.
pub async fn ensure(server: &ApiServer, mut object: Value) -> Result<(), ApiError> {
    let api_version = text(&object, "/apiVersion").unwrap_or_default().to_string();
    let (group, _) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let kind = text(&object, "/kind").unwrap_or_default().to_string();
    let resource =
        super::resources::by_kind(group, &kind).ok_or_else(|| ApiError::internal(format!("{kind} is not served")))?;
    let name = text(&object, "/metadata/name").unwrap_or_default().to_string();
    let namespace = text(&object, "/metadata/namespace").map(str::to_string);
    prepare_create(resource, &mut object, &uid(), &server.options.clock.timestamp());
    let object = admit(server, resource, object, None)?;
    match server.store.create(&resource.key(namespace.as_deref(), &name), to_bytes(&object)).await {
        Ok(_) | Err(StoreError::Exists(_)) => Ok(()),
        Err(error) => Err(store_error(resource, &name, error)),
    }
}

/// The `DefaultStorageClass` admission plugin: a claim made without a class gets the
/// default one (the newest, if several are marked), as it is stored. A claim that names
/// the class `""` asks for none, and keeps it.
async fn default_storage_class(server: &ApiServer, claim: &mut Value) -> Result<(), ApiError> {
    if claim.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null()) {
        return Ok(());
    }
    let classes = super::resources::by_kind("storage.k8s.io", "StorageClass")
        .ok_or_else(|| ApiError::internal("storage classes are not served"))?;
    let listing =
        server.store.list(&classes.prefix(None), None, None).await.map_err(|e| store_error(classes, "", e))?;
    let annotation =
        format!("/metadata/annotations/{}", crate::controllers::persistentvolume::IS_DEFAULT_CLASS.replace('/', "~1"));
    let default = listing
        .entries
        .iter()
        .filter_map(|entry| from_entry(entry).ok())
        .filter(|class| text(class, &annotation) == Some("true"))
        .max_by(|a, b| {
            let created = |c: &Value| text(c, "/metadata/creationTimestamp").unwrap_or_default().to_string();
            created(a).cmp(&created(b)).then_with(|| text(b, "/metadata/name").cmp(&text(a, "/metadata/name")))
        });
    if let (Some(class), Some(spec)) = (default, claim.get_mut("spec").and_then(Value::as_object_mut)) {
        spec.insert("storageClassName".into(), json!(text(&class, "/metadata/name").unwrap_or_default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_have_kubernetes_shape() {
        let id = uid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn the_stored_form_is_the_object_without_its_revision() {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "12", "labels": {"x": "y"}, "uid": "u"},
            "data": {"k": "v \"quoted\" \u{e9}"},
        });
        let stored: Value = serde_json::from_slice(&to_bytes(&object)).expect("JSON");
        let mut expected = object.clone();
        expected["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        assert_eq!(stored, expected);
        assert_eq!(to_bytes(&expected), Bytes::from(expected.to_string()), "byte for byte the compact form");
        for odd in [json!([1, 2]), json!({"metadata": "not a map"}), json!({"metadata": {}})] {
            assert_eq!(to_bytes(&odd), Bytes::from(odd.to_string()));
        }
    }
}
