//! Admission webhooks (`MutatingWebhookConfiguration`, `ValidatingWebhookConfiguration`,
//! admissionregistration.k8s.io/v1), called as Kubernetes' admission chain calls them:
//! mutating webhooks one after another (configurations by name, webhooks in order) on the
//! object after the built-in mutations and defaults, each `JSONPatch` applied before the
//! next is asked; then, after the object's own validation and the
//! ValidatingAdmissionPolicies, the validating webhooks, all at once. A webhook is asked
//! only when its `rules`, `namespaceSelector`, `objectSelector` and `matchConditions`
//! take the request (the same matching as the policies', `kubeyard_compiler::
//! admission_policy`). It gets an `AdmissionReview` v1 over HTTPS (`webhook_client`).
//!
//! Denials, call failures under `failurePolicy: Fail`, invalid answers and dry runs to
//! webhooks with side effects are refused with Kubernetes' codes and words; answers'
//! `warnings` reach the client as `Warning` headers. Requests to the admission
//! configuration kinds themselves are never sent to webhooks, as in Kubernetes.
//!
//! Not done: `reinvocationPolicy: IfNeeded` (asked once), `matchPolicy: Equivalent`
//! across versions of a kind (each kind is matched in the version requested),
//! `CONNECT`, and audit annotations.

use super::objects::{self, warn};
use super::resources::{self, Resource};
use super::webhook_client::{self, CallError};
use super::{ApiError, ApiServer};
use base64::Engine;
use kubeyard_compiler::admission_policy::{self, Kind, Request};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const GROUP: &str = "admissionregistration.k8s.io";
/// Who every request is from, to webhooks and policies alike (kubeyard has one user).
pub const USERNAME: &str = "kubeyard";

/// One webhook of a configuration.
struct Hook {
    webhook: Value,
    name: String,
}

/// The webhooks in force, read once per change to a configuration.
#[derive(Default)]
pub struct Webhooks {
    configured: RwLock<Arc<Configured>>,
    /// One reload at a time: the set published last is from the latest listing.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Configured {
    mutating: Vec<Hook>,
    validating: Vec<Hook>,
}

/// Whether a write to this resource changes the webhooks in force.
pub fn is_webhook_kind(resource: &Resource) -> bool {
    resource.group == GROUP
        && matches!(resource.kind, "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration")
        && resource.crd.is_none()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Says what kubeyard does not honour in a configuration written: a `Warning` header, so
/// the difference is not silent.
pub fn warn_unsupported(configuration: &Value) {
    for webhook in configuration.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
        if text(webhook, "/reinvocationPolicy") == "IfNeeded" {
            warn(format!(
                "webhook {:?}: kubeyard asks each mutating webhook once; reinvocationPolicy IfNeeded is not honoured",
                text(webhook, "/name")
            ));
        }
    }
}

/// Reads the configurations again (after a write to one, and at start).
/// A listing that fails (the store away for a moment) keeps the webhooks in force:
/// admission never fails open for want of a read.
pub async fn reload(server: &ApiServer) {
    let _one_at_a_time = server.webhooks.reloading.lock().await;
    let hooks = |kind: &'static str| async move {
        let Some(resource) = resources::by_kind(GROUP, kind) else { return Some(Vec::new()) };
        let listing = server.store.list(&resource.prefix(None), None, None).await.ok()?;
        // The store lists by key, so configurations come in name order.
        let configurations = listing.entries.iter().filter_map(|e| objects::from_entry(e).ok());
        let hooks = configurations
            .flat_map(|configuration| {
                let webhooks = configuration.get("webhooks").and_then(Value::as_array).cloned().unwrap_or_default();
                webhooks.into_iter().map(|webhook| Hook { name: text(&webhook, "/name").to_string(), webhook })
            })
            .collect::<Vec<Hook>>();
        Some(hooks)
    };
    let (Some(mutating), Some(validating)) =
        (hooks("MutatingWebhookConfiguration").await, hooks("ValidatingWebhookConfiguration").await)
    else {
        return;
    };
    let configured = Configured { mutating, validating };
    *server.webhooks.configured.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(configured);
}

/// One request through admission, as webhooks see it.
pub struct Call<'a> {
    pub resource: &'a Resource,
    pub subresource: Option<&'a str>,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    /// The object's kind where a subresource takes another than the resource's
    /// (`pods/binding`: a Binding); `None`: the resource's own.
    pub kind: Option<Kind<'a>>,
}

impl Call<'_> {
    /// The kind of the object sent.
    pub fn kind(&self) -> Kind<'_> {
        self.kind.unwrap_or_else(|| resource_kind(self.resource))
    }

    fn request<'b>(&'b self, object: Option<&'b Value>, namespace_object: Option<&'b Value>) -> Request<'b> {
        Request {
            operation: self.operation,
            group: self.resource.group,
            version: self.resource.version,
            kind: self.kind(),
            resource: self.resource.plural,
            subresource: self.subresource.unwrap_or_default(),
            name: self.name,
            namespace: self.namespace,
            object,
            old_object: self.old,
            namespace_object,
            username: USERNAME,
            dry_run: self.dry_run,
        }
    }
}

/// A resource's own kind, as a request for it carries it.
pub fn resource_kind(resource: &Resource) -> Kind<'_> {
    Kind { group: resource.group, version: resource.version, kind: resource.kind }
}

/// A webhook's matching criteria as a policy's `matchResources` section.
fn section(hook: &Hook) -> Value {
    json!({
        "resourceRules": hook.webhook.get("rules").cloned().unwrap_or(json!([])),
        "objectSelector": hook.webhook.get("objectSelector").cloned().unwrap_or(json!({})),
        "namespaceSelector": hook.webhook.get("namespaceSelector").cloned().unwrap_or(json!({})),
    })
}

/// The webhooks of `hooks` whose rules take the request, with their sections: what can
/// be decided before the object's labels and the namespace are looked at.
fn by_rules<'h>(hooks: &'h [Hook], call: &Call<'_>) -> Vec<(&'h Hook, Value)> {
    if hooks.is_empty() || call.resource.group == GROUP {
        return Vec::new();
    }
    let bare = call.request(None, None);
    hooks
        .iter()
        .map(|hook| (hook, section(hook)))
        .filter(|(_, section)| admission_policy::matches_resource(Some(section), &bare))
        .collect()
}

/// Whether one webhook takes the request with `object` as it is now: its selectors and
/// `matchConditions` (one that cannot be evaluated follows the failure policy).
fn takes(
    hook: &Hook,
    section: &Value,
    call: &Call<'_>,
    object: Option<&Value>,
    namespace: Option<&Value>,
) -> Result<bool, ApiError> {
    let request = call.request(object, namespace);
    if !admission_policy::matches(Some(section), &request) {
        return Ok(false);
    }
    match admission_policy::match_conditions(hook.webhook.get("matchConditions"), &request) {
        Ok(taken) => Ok(taken),
        Err(why) => fail(hook, format!("failed to evaluate match condition: {why}")).map(|()| false),
    }
}

/// The webhooks of `hooks` that take the request, with the request's namespace read only
/// when one may.
async fn matching<'h>(
    server: &ApiServer,
    hooks: &'h [Hook],
    call: &Call<'_>,
    object: Option<&Value>,
) -> Result<Vec<&'h Hook>, ApiError> {
    let candidates = by_rules(hooks, call);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let namespace_object = super::policies::namespace_object(server, call.namespace).await;
    let mut taken = Vec::new();
    for (hook, section) in candidates {
        if takes(hook, &section, call, object, namespace_object.as_ref())? {
            taken.push(hook);
        }
    }
    Ok(taken)
}

/// A failed call, per the webhook's `failurePolicy`: `Ignore` lets the request on.
fn fail(hook: &Hook, why: String) -> Result<(), ApiError> {
    if text(&hook.webhook, "/failurePolicy") == "Ignore" {
        return Ok(());
    }
    Err(ApiError::internal(format!("Internal error occurred: failed calling webhook \"{}\": {why}", hook.name)))
}

/// Runs the mutating webhooks that take the request on `object`, in order, each matched
/// against the object as the ones before it left it; whether any changed it.
pub async fn mutate(server: &ApiServer, call: &Call<'_>, object: &mut Value) -> Result<bool, ApiError> {
    let configured = Arc::clone(&server.webhooks.configured.read().unwrap_or_else(|e| e.into_inner()));
    let candidates = by_rules(&configured.mutating, call);
    if candidates.is_empty() {
        return Ok(false);
    }
    // Webhooks see the object as the API server would store it: defaults filled (a
    // subresource's own kind, a Binding or an Eviction, has none).
    let mut defaulted = object.clone();
    if call.kind.is_none() {
        kubeyard_compiler::normalize::defaults::apply(
            call.resource.group,
            call.resource.builtin_kind(),
            &mut defaulted,
        );
    }
    let namespace_object = super::policies::namespace_object(server, call.namespace).await;
    let mut changed = false;
    for (hook, section) in candidates {
        let current = if changed { &*object } else { &defaulted };
        if !takes(hook, &section, call, Some(current), namespace_object.as_ref())? {
            continue;
        }
        if !changed {
            *object = defaulted.clone();
            changed = true;
        }
        let Some(answer) = ask(server, hook, call, Some(object)).await? else { continue };
        if let Some(patch) = answer.patch {
            let mut patched = object.clone();
            match kubeyard_compiler::patch::json_patch(&mut patched, &patch) {
                Ok(()) => *object = patched,
                Err(error) => {
                    return Err(ApiError::internal(format!(
                        "Internal error occurred: failed calling webhook \"{}\": the JSON patch does not apply: {error}",
                        hook.name
                    )));
                }
            }
        }
    }
    Ok(changed)
}

/// Runs the mutating webhooks that take a delete: there is no object to change, but
/// they are asked, and may refuse it.
pub async fn mutate_delete(server: &ApiServer, call: &Call<'_>) -> Result<(), ApiError> {
    let configured = Arc::clone(&server.webhooks.configured.read().unwrap_or_else(|e| e.into_inner()));
    for hook in matching(server, &configured.mutating, call, None).await? {
        ask(server, hook, call, None).await?;
    }
    Ok(())
}

/// Runs the validating webhooks that take the request, all at once; the first denial
/// (in configuration order) refuses it.
pub async fn validate(server: &ApiServer, call: &Call<'_>, object: Option<&Value>) -> Result<(), ApiError> {
    let configured = Arc::clone(&server.webhooks.configured.read().unwrap_or_else(|e| e.into_inner()));
    let hooks = matching(server, &configured.validating, call, object).await?;
    if hooks.is_empty() {
        return Ok(());
    }
    let asked = hooks.iter().map(|hook| ask(server, hook, call, object));
    let answers = futures_util::future::join_all(asked).await;
    for (hook, answer) in hooks.iter().zip(answers) {
        if let Some(Answer { patch: Some(_), .. }) = answer? {
            fail(hook, "received invalid webhook response: validating webhook may not return response.patch".into())?;
        }
    }
    Ok(())
}

/// What a webhook that allowed the request said.
struct Answer {
    patch: Option<Value>,
}

/// Asks one webhook; `None` when its failure is ignored.
async fn ask(
    server: &ApiServer,
    hook: &Hook,
    call: &Call<'_>,
    object: Option<&Value>,
) -> Result<Option<Answer>, ApiError> {
    let side_effects = text(&hook.webhook, "/sideEffects");
    if call.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!("admission webhook \"{}\" does not support dry run", hook.name)));
    }
    let versions = kubeyard_compiler::object::json_strings(&hook.webhook, "/admissionReviewVersions");
    let Some(version) = ["v1", "v1beta1"].into_iter().find(|v| versions.iter().any(|given| given == v)) else {
        fail(hook, "webhook does not accept known AdmissionReview versions (v1, v1beta1)".into())?;
        return Ok(None);
    };
    let seconds = hook.webhook.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10).clamp(1, 30);
    let config = hook.webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let endpoint = match webhook_client::endpoint(&config, Some(&format!("timeout={seconds}s"))) {
        Ok(endpoint) => endpoint,
        Err(CallError(why)) => {
            fail(hook, format!("failed to call webhook: {why}"))?;
            return Ok(None);
        }
    };
    let uid = objects::uid();
    let review = review(call, version, &uid, object);
    let answer = match webhook_client::post(server, &endpoint, &review, Duration::from_secs(seconds)).await {
        Ok(answer) => answer,
        Err(CallError(why)) => {
            fail(hook, format!("failed to call webhook: {why}"))?;
            return Ok(None);
        }
    };
    match read_answer(&answer, version, &uid, &hook.name) {
        Ok(Verdict::Allowed { patch, warnings }) => {
            for warning in warnings {
                warn(warning);
            }
            Ok(Some(Answer { patch }))
        }
        Ok(Verdict::Denied(error)) => Err(error),
        Err(why) => {
            fail(hook, format!("received invalid webhook response: {why}"))?;
            Ok(None)
        }
    }
}

/// The `AdmissionReview` sent, as `pkg/admission/plugin/webhook/request` makes it.
fn review(call: &Call<'_>, version: &str, uid: &str, object: Option<&Value>) -> Value {
    let resource = call.resource;
    let Kind { group, version: kind_version, kind } = call.kind();
    let kind = json!({"group": group, "version": kind_version, "kind": kind});
    let gvr = json!({"group": resource.group, "version": resource.version, "resource": resource.plural});
    let options = match call.operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": gvr,
        "requestKind": kind,
        "requestResource": gvr,
        "name": call.name,
        "operation": call.operation,
        "userInfo": {"username": USERNAME, "groups": ["system:masters", "system:authenticated"]},
        "object": object,
        "oldObject": call.old,
        "dryRun": call.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    if !call.namespace.is_empty() {
        request["namespace"] = json!(call.namespace);
    }
    if let Some(sub) = call.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview", "request": request})
}

enum Verdict {
    Allowed { patch: Option<Value>, warnings: Vec<String> },
    Denied(ApiError),
}

/// A webhook's answer, checked as Kubernetes checks it; `Err` is an invalid answer.
fn read_answer(answer: &Value, version: &str, uid: &str, name: &str) -> Result<Verdict, String> {
    let api_version = text(answer, "/apiVersion");
    let kind = text(answer, "/kind");
    if api_version != format!("admission.k8s.io/{version}") || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/{version}, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let response = answer.get("response").filter(|r| r.is_object()).ok_or("webhook response was absent")?;
    let got = text(response, "/uid");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let warnings = kubeyard_compiler::object::json_strings(response, "/warnings");
    if response.get("allowed") != Some(&Value::Bool(true)) {
        for warning in &warnings {
            warn(warning.clone());
        }
        return Ok(Verdict::Denied(denial(response.get("status").unwrap_or(&Value::Null), name)));
    }
    let patch = match (text(response, "/patch"), text(response, "/patchType")) {
        ("", "") => None,
        (_, "") => return Err("webhook returned response.patch but not response.patchType".into()),
        ("", _) => return Err("webhook returned response.patchType but not response.patch".into()),
        (patch, "JSONPatch") => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .map_err(|e| format!("response.patch is not base64: {e}"))?;
            Some(serde_json::from_slice(&bytes).map_err(|e| format!("response.patch is not JSON: {e}"))?)
        }
        (_, other) => return Err(format!("webhook returned invalid response.patchType of {other:?}")),
    };
    Ok(Verdict::Allowed { patch, warnings })
}

/// A denial as Kubernetes' `ToStatusErr` makes it: the webhook's code if it is an error
/// code (else 400), its reason, and the message naming the webhook.
fn denial(status: &Value, name: &str) -> ApiError {
    let message = text(status, "/message");
    let reason = text(status, "/reason");
    let message = match (message, reason) {
        ("", "") => format!("admission webhook \"{name}\" denied the request without explanation"),
        ("", reason) => format!("admission webhook \"{name}\" denied the request: {reason}"),
        (message, _) => format!("admission webhook \"{name}\" denied the request: {message}"),
    };
    let code = status.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).filter(|c| *c >= 400);
    let mut error = ApiError::new(code.unwrap_or(400), resources::leak(reason), message);
    error.details = status.get("details").filter(|d| d.is_object()).cloned();
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(extra: Value) -> Value {
        let mut response = json!({"uid": "u", "allowed": true});
        if let (Some(map), Some(extra)) = (response.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    #[test]
    fn answers_are_read_as_kubernetes_reads_them() {
        let patch = base64::engine::general_purpose::STANDARD.encode(r#"[{"op":"add","path":"/a","value":1}]"#);
        match read_answer(&allowed(json!({"patch": patch, "patchType": "JSONPatch"})), "v1", "u", "m") {
            Ok(Verdict::Allowed { patch: Some(patch), .. }) => assert_eq!(patch[0]["op"], "add"),
            _ => panic!("a patch"),
        }
        let invalid = |answer: Value| match read_answer(&answer, "v1", "u", "m") {
            Err(why) => why,
            Ok(_) => panic!("invalid"),
        };
        assert_eq!(invalid(allowed(json!({"uid": "x"}))), r#"expected response.uid="u", got "x""#);
        assert_eq!(
            invalid(allowed(json!({"patch": "e30="}))),
            "webhook returned response.patch but not response.patchType"
        );
        assert_eq!(
            invalid(allowed(json!({"patch": "e30=", "patchType": "Merge"}))),
            r#"webhook returned invalid response.patchType of "Merge""#
        );
        assert_eq!(
            invalid(json!({"apiVersion": "v1", "kind": "Status"})),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got v1, Kind=Status"
        );
        assert_eq!(
            invalid(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
            "webhook response was absent"
        );
    }

    #[test]
    fn denials_carry_the_webhooks_code_and_words() {
        let forbidden =
            denial(&json!({"code": 403, "reason": "Forbidden", "message": "no latest tags"}), "v.example.com");
        assert_eq!((forbidden.code, forbidden.reason), (403, "Forbidden"));
        assert_eq!(forbidden.message, r#"admission webhook "v.example.com" denied the request: no latest tags"#);
        let bare = denial(&Value::Null, "v.example.com");
        assert_eq!((bare.code, bare.reason), (400, ""));
        assert_eq!(bare.message, r#"admission webhook "v.example.com" denied the request without explanation"#);
        let low = denial(&json!({"code": 200, "reason": "NotAllowed"}), "v");
        assert_eq!((low.code, low.message.as_str()), (400, r#"admission webhook "v" denied the request: NotAllowed"#));
    }
}
