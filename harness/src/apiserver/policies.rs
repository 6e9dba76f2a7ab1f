//! ValidatingAdmissionPolicies and their bindings, enforced on creates, updates and deletes after
//! the object's own validation, as Kubernetes' admission chain does: each binding whose
//! policy and `matchResources` take the request runs the policy's CEL (see
//! `kubeyard_compiler::admission_policy`) and acts on what fails per its
//! `validationActions`: `Deny` refuses the request (the first denial, with Kubernetes'
//! message and the code of the validation's `reason`), `Warn` adds a `Warning` header.
//! The policies and bindings are read once per change to them, not per request.

use super::objects::{self, warn};
use super::resources::Resource;
use super::{ApiError, ApiServer, webhooks};
use kubeyard_compiler::admission_policy::{self, Failure, Kind, Request};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};

const GROUP: &str = "admissionregistration.k8s.io";

/// A binding with the policy it names.
struct Bound {
    policy: Value,
    binding: Value,
}

/// What the server enforces: every binding whose policy exists.
#[derive(Default)]
pub struct Policies {
    bound: RwLock<Arc<Vec<Bound>>>,
    /// One reload at a time: the set published last is from the latest listing.
    reloading: tokio::sync::Mutex<()>,
}

/// Whether a write to this resource changes what is enforced.
pub fn is_policy_kind(resource: &Resource) -> bool {
    resource.group == GROUP
        && matches!(resource.kind, "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding")
        && resource.crd.is_none()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Reads the policies and bindings again (after a write to one, and at start).
/// A listing that fails (the store away for a moment) keeps what is enforced: admission
/// never fails open for want of a read.
pub async fn reload(server: &ApiServer) {
    let _one_at_a_time = server.policies.reloading.lock().await;
    let list = |kind: &'static str| async move {
        let Some(resource) = super::resources::by_kind(GROUP, kind) else { return Some(Vec::new()) };
        let listing = server.store.list(&resource.prefix(None), None, None).await.ok()?;
        Some(listing.entries.iter().filter_map(|e| objects::from_entry(e).ok()).collect::<Vec<Value>>())
    };
    let (Some(policies), Some(bindings)) =
        (list("ValidatingAdmissionPolicy").await, list("ValidatingAdmissionPolicyBinding").await)
    else {
        return;
    };
    let bound: Vec<Bound> = bindings
        .into_iter()
        .filter_map(|binding| {
            let name = text(&binding, "/spec/policyName");
            let policy = policies.iter().find(|p| text(p, "/metadata/name") == name)?.clone();
            Some(Bound { policy, binding })
        })
        .collect();
    *server.policies.bound.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(bound);
}

/// Runs the policies that take a create or update (`old` set) of `object`.
pub async fn admit(
    server: &ApiServer,
    resource: &Resource,
    subresource: Option<&str>,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    let kind = webhooks::resource_kind(resource);
    admit_request(server, resource, (subresource, kind), operation, Some(object), old, dry_run).await
}

/// Runs the policies that take a write through a subresource whose objects are of their
/// own `kind` (`pods/binding` a Binding, `pods/eviction` an Eviction, `scale` a Scale):
/// a create of `object`, or with `old` an update.
pub async fn admit_as(
    server: &ApiServer,
    resource: &Resource,
    (subresource, kind): (&str, Kind<'_>),
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    admit_request(server, resource, (Some(subresource), kind), operation, Some(object), old, dry_run).await
}

/// Runs the policies that take the deletion of `old` (`object` is null to them).
pub async fn admit_delete(server: &ApiServer, resource: &Resource, old: &Value, dry_run: bool) -> Result<(), ApiError> {
    let kind = webhooks::resource_kind(resource);
    admit_request(server, resource, (None, kind), "DELETE", None, Some(old), dry_run).await
}

async fn admit_request(
    server: &ApiServer,
    resource: &Resource,
    (subresource, kind): (Option<&str>, Kind<'_>),
    operation: &'static str,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    let bound = Arc::clone(&server.policies.bound.read().unwrap_or_else(|e| e.into_inner()));
    if bound.is_empty() || is_policy_kind(resource) {
        return Ok(());
    }
    let Some(subject) = object.or(old) else { return Ok(()) };
    let name = text(subject, "/metadata/name").to_string();
    let namespace = if resource.namespaced { text(subject, "/metadata/namespace").to_string() } else { String::new() };
    let mut request = Request {
        operation,
        group: resource.group,
        version: resource.version,
        kind,
        resource: resource.plural,
        subresource: subresource.unwrap_or_default(),
        name: &name,
        namespace: &namespace,
        object,
        old_object: old,
        namespace_object: None,
        username: super::webhooks::USERNAME,
        dry_run,
    };
    // The resource rules first: the namespace is read only when some binding may apply.
    let candidates: Vec<&Bound> = bound
        .iter()
        .filter(|b| {
            admission_policy::matches_resource(b.policy.pointer("/spec/matchConstraints"), &request)
                && admission_policy::matches_resource(b.binding.pointer("/spec/matchResources"), &request)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let namespace_object = namespace_object(server, &namespace).await;
    request.namespace_object = namespace_object.as_ref();
    // Every binding's warnings are said; the first denial refuses, after them all.
    let mut denial: Option<Result<(), ApiError>> = None;
    for Bound { policy, binding } in candidates {
        if !admission_policy::matches(policy.pointer("/spec/matchConstraints"), &request)
            || !admission_policy::matches(binding.pointer("/spec/matchResources"), &request)
        {
            continue;
        }
        let policy_name = text(policy, "/metadata/name");
        let binding_name = text(binding, "/metadata/name");
        let params = match params(server, policy, binding, &namespace).await {
            Ok(Params::Given(params)) => Some(params),
            Ok(Params::None) => None,
            // A missing parameter object the binding allows: the policy does not apply.
            Ok(Params::Missing) => continue,
            Err(message) => {
                // A binding that cannot be configured follows the policy's failurePolicy.
                if text(policy, "/spec/failurePolicy") != "Ignore" && denial.is_none() {
                    let failure = Failure { message, reason: "Invalid".into(), error: true };
                    denial = Some(deny(resource, &name, policy_name, binding_name, &failure));
                }
                continue;
            }
        };
        let ignore_errors = text(policy, "/spec/failurePolicy") == "Ignore";
        let actions: Vec<&str> = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for failure in admission_policy::evaluate(policy, &request, params.as_ref()) {
            if failure.error && ignore_errors {
                continue;
            }
            if actions.contains(&"Warn") {
                warn(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                    failure.message
                ));
            }
            if actions.contains(&"Deny") && denial.is_none() {
                denial = Some(deny(resource, &name, policy_name, binding_name, &failure));
            }
        }
    }
    denial.unwrap_or(Ok(()))
}

/// The request's namespace, for `namespaceSelector` and `namespaceObject`; `None` for
/// cluster-scoped requests.
pub(super) async fn namespace_object(server: &ApiServer, namespace: &str) -> Option<Value> {
    let namespaces = super::resources::by_kind("", "Namespace")?;
    if namespace.is_empty() {
        return None;
    }
    let entry = server.store.get(&namespaces.key(None, namespace)).await.ok().flatten();
    entry.and_then(|e| objects::from_entry(&e).ok())
}

/// The refusal of a denied request, in Kubernetes' words, with the code of its reason.
fn deny(resource: &Resource, name: &str, policy: &str, binding: &str, failure: &Failure) -> Result<(), ApiError> {
    let target = if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    };
    let cause =
        format!("ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}", failure.message);
    let message = format!("{target} \"{name}\" is forbidden: {cause}");
    let (code, reason) = match failure.reason.as_str() {
        "Forbidden" => (403, "Forbidden"),
        "Unauthorized" => (401, "Unauthorized"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    let mut error = ApiError::new(code, reason, message);
    error.details = Some(json!({
        "name": name, "group": resource.group, "kind": resource.plural,
        "causes": [{"message": cause}],
    }));
    Err(error)
}

/// The binding's parameter object, when the policy takes one (`paramKind`, `paramRef`):
/// by name, in the binding's namespace or the request's. Why not, when it is missing and
/// the binding says `Deny` (its default).
enum Params {
    None,
    Given(Value),
    Missing,
}

async fn params(server: &ApiServer, policy: &Value, binding: &Value, namespace: &str) -> Result<Params, String> {
    let Some(kind) = policy.pointer("/spec/paramKind") else { return Ok(Params::None) };
    let Some(reference) = binding.pointer("/spec/paramRef") else {
        return Err("failed to configure binding: paramRef is required when paramKind is set".into());
    };
    let api_version = text(kind, "/apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let served = server.resources.snapshot();
    let found = match served.by_kind(group, text(kind, "/kind")) {
        Some(resource) => {
            let at = match text(reference, "/namespace") {
                "" if resource.namespaced => Some(namespace),
                "" => None,
                given => Some(given),
            };
            let key = resource.key(at, text(reference, "/name"));
            server.store.get(&key).await.ok().flatten().and_then(|e| objects::from_entry(&e).ok())
        }
        None => None,
    };
    match (found, text(reference, "/parameterNotFoundAction")) {
        (Some(params), _) => Ok(Params::Given(params)),
        (None, "Allow") => Ok(Params::Missing),
        (None, _) => Err("failed to configure binding: no params found for policy binding with `Deny` \
                          parameterNotFoundAction"
            .into()),
    }
}
