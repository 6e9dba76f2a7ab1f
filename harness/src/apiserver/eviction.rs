//! `POST pods/{name}/eviction`: a pod deleted only when its PodDisruptionBudget allows
//! it, as Kubernetes' eviction registry (`pkg/registry/core/pod/storage/eviction.go`)
//! decides.
//!
//! A pod that is finished, pending or already being deleted goes at once. Otherwise the
//! one budget whose selector takes the pod (an empty selector takes every pod of the
//! namespace, as in `policy/v1`; two are a 500) must allow a disruption: its status, kept
//! by the disruption controller, is read and, when it allows one, decremented with the pod
//! recorded in `disruptedPods`, in one compare-and-swap before the pod is deleted. A pod
//! that is not ready costs nothing when the budget is met (`IfHealthyBudget`) or under
//! `AlwaysAllow`. Refusals are Kubernetes' own: 429 `Cannot evict pod as it would violate
//! the pod's disruption budget.` with the budget's cause, which `kubectl drain` retries.
//! Before the delete, the pod gets the `DisruptionTarget` condition.

use super::objects::{self, DeleteOptions, Written};
use super::resources::{self, Resource};
use super::status::ApiError;
use super::{ApiServer, Query, Target, policies, webhooks};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `DeletionTimeout`: how long a pod may stay in `disruptedPods` waiting to be deleted.
pub const DELETION_TIMEOUT_SECONDS: i64 = 120;
/// `MaxDisruptedPodSize`.
const MAX_DISRUPTED: usize = 2000;
const VIOLATES: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn pods() -> Result<&'static Resource, ApiError> {
    resources::by_kind("", "Pod").ok_or_else(|| ApiError::internal("pods are not served"))
}

fn budgets() -> Result<&'static Resource, ApiError> {
    resources::by_kind("policy", "PodDisruptionBudget")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The 429 every refusal by a budget is, with the budget's word in a cause.
fn too_many_requests(cause: Option<String>, retry_after: i64) -> ApiError {
    let mut details = json!({});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    if let Some(cause) = cause {
        details["causes"] = json!([{"reason": "DisruptionBudget", "message": cause}]);
    }
    ApiError { details: Some(details), ..ApiError::new(429, "TooManyRequests", VIOLATES) }
}

fn forbidden(budget: &str, why: &str) -> ApiError {
    ApiError {
        details: Some(json!({"name": budget, "group": "policy", "kind": "poddisruptionbudget"})),
        ..ApiError::forbidden(format!("poddisruptionbudget.policy \"{budget}\" is forbidden: {why}"))
    }
}

/// What the budget says of evicting a ready pod (`checkAndDecrement`): refused, or the
/// budget's status with one disruption fewer and the pod recorded at `now`.
pub fn decrement(budget: &Value, pod: &str, now: &str) -> Result<Value, ApiError> {
    let name = text(budget, "/metadata/name");
    let status = budget.get("status").cloned().unwrap_or_else(|| json!({}));
    if number(budget, "/status/observedGeneration") < number(budget, "/metadata/generation") {
        return Err(too_many_requests(
            Some(format!("The disruption budget {name} is still being processed by the server.")),
            10,
        ));
    }
    let allowed = number(budget, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = status.get("disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED {
        return Err(forbidden(name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        let (desired, current) = (number(budget, "/status/desiredHealthy"), number(budget, "/status/currentHealthy"));
        return Err(too_many_requests(
            Some(format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently")),
            0,
        ));
    }
    let mut status = status;
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        // None left: the condition says so at once, as `checkAndDecrement` sets it.
        let generation = number(budget, "/status/observedGeneration");
        let conditions = status.as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(conditions)) = conditions {
            conditions.retain(|c| c["type"] != "DisruptionAllowed");
            conditions.push(json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                                   "message": "", "observedGeneration": generation, "lastTransitionTime": now}));
        }
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    Ok(status)
}

/// How a pod that is not ready is evicted: without touching the budget (`true`) when the
/// budget lets unhealthy pods go, else through the budget like a ready one.
fn unhealthy_goes_freely(budget: &Value) -> bool {
    if text(budget, "/spec/unhealthyPodEvictionPolicy") == "AlwaysAllow" {
        return true;
    }
    let (desired, current) = (number(budget, "/status/desiredHealthy"), number(budget, "/status/currentHealthy"));
    current >= desired && desired > 0
}

/// The budgets of the pod's namespace whose selector takes it.
async fn budgets_of(server: &ApiServer, pod: &Value) -> Result<Vec<Value>, ApiError> {
    let namespace = text(pod, "/metadata/namespace");
    let listing = server
        .store
        .list(&budgets()?.prefix(Some(namespace)), None, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let labels: BTreeMap<String, String> = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let mut found = Vec::new();
    for entry in &listing.entries {
        let budget = objects::from_entry(entry)?;
        // A selector that does not parse takes nothing, as the registry skips it.
        let selector =
            Selector::from_label_selector(budget.pointer("/spec/selector")).unwrap_or_else(|_| Selector::nothing());
        if selector.matches(&labels) {
            found.push(budget);
        }
    }
    Ok(found)
}

/// The eviction of `target` (a pod), from the request body.
pub(super) async fn evict(
    server: &ApiServer,
    target: &Target,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pods = pods()?;
    let mut eviction = objects::decode(headers, body)?;
    let api_version = text(&eviction, "/apiVersion").to_string();
    let version = if api_version == "policy/v1beta1" { "policy/v1beta1" } else { "policy/v1" };
    objects::check_type(pods, &mut eviction, version, "Eviction")?;
    let name = target.name.clone().unwrap_or_default();
    let namespace = target.namespace.clone().unwrap_or_default();
    objects::check_namespace(target, &mut eviction)?;
    // Admission sees a CREATE of `pods/eviction` with the Eviction (as sent, then as the
    // mutating webhooks left it); the condition and the delete that follow are the
    // registry's own, which no admission plugin sees (`ValidateAllObjectFunc`). The
    // subresource's kind is `policy/v1 Eviction` whatever version was sent (its
    // `GroupVersionKind`), and a `v1beta1` one, the same fields, is converted to it.
    eviction["apiVersion"] = json!("policy/v1");
    let kind = resources::EVICTION;
    let call = webhooks::Call {
        resource: pods,
        subresource: Some("eviction"),
        operation: "CREATE",
        name: &name,
        namespace: &namespace,
        old: None,
        dry_run: objects::dry_run(query)?,
        kind: Some(kind),
    };
    webhooks::mutate(server, &call, &mut eviction).await?;
    if text(&eviction, "/metadata/name") != name {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let in_body = eviction.get("deleteOptions").cloned().unwrap_or_else(|| json!({}));
    // `propagateDryRun`: the body's dry run, or the request's when the body says none;
    // only two different lists are refused (with a plain error, which the API answers
    // as a 500 with no reason).
    let asked = objects::dry_run(query)?;
    let body_dry_run: Vec<&str> =
        in_body.get("dryRun").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let in_body_dry = !body_dry_run.is_empty() && body_dry_run.iter().all(|v| *v == "All");
    if asked && !body_dry_run.is_empty() && !in_body_dry {
        return Err(ApiError::new(
            500,
            "",
            format!("Non-matching dry-run options in request and content: [All] and [{}]", body_dry_run.join(" ")),
        ));
    }
    let mut options = objects::delete_options_of(&in_body, &Query::new())?;
    options.dry_run = asked || in_body_dry;
    options.without_admission = true;
    // Admission's dry run is the request's (`CreateOptions`); the body's `deleteOptions`
    // are the delete's.
    policies::admit_as(server, pods, ("eviction", kind), &eviction, None, call.dry_run).await?;
    webhooks::validate(server, &call, Some(&eviction)).await?;
    let pod = objects::stored(server, ("", "Pod"), Some(&namespace), &name)
        .await?
        .ok_or_else(|| objects::not_found(pods, &name))?;
    let target = Target { resource: pods, namespace: Some(namespace), name: Some(name), subresource: None };
    if can_ignore_budgets(&pod) {
        // A pending pod is deleted as read (`shouldEnforceResourceVersion`): had it become
        // ready meanwhile, it would count against its budget.
        let pinned = text(&pod, "/status/phase") == "Pending" && options.revision.is_none();
        if pinned {
            options.revision = text(&pod, "/metadata/resourceVersion").parse().ok();
        }
        return match delete(server, &target, options).await {
            Err(error) if pinned && error.code == 409 => Err(too_many_requests(None, 10)),
            other => other,
        };
    }
    let mut found = budgets_of(server, &pod).await?;
    if found.len() > 1 {
        let why = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
        return Err(ApiError {
            details: Some(json!({"causes": [{"message": why}]})),
            ..ApiError::internal(format!("Internal error occurred: {why}"))
        });
    }
    let Some(budget) = found.pop() else { return delete(server, &target, options).await };
    if !kubeyard_compiler::pod::is_ready(&pod) && unhealthy_goes_freely(&budget) {
        // The pod as read must be the one deleted: had it become ready meanwhile, it
        // would count against the budget.
        if options.revision.is_none() {
            options.revision = text(&pod, "/metadata/resourceVersion").parse().ok();
        }
        return match delete(server, &target, options).await {
            Err(error) if error.code == 409 => Err(too_many_requests(None, 0)),
            other => other,
        };
    }
    take_from_budget(server, &budget, &target, options.dry_run).await?;
    delete(server, &target, options).await
}

/// `canIgnorePDB`: a pod that is done, not started or already going disrupts nothing.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(text(pod, "/status/phase"), "Succeeded" | "Failed" | "Pending")
        || pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// Decrements the budget's allowance, against the budget as last read (the registry
/// retries lost races itself; so does `write`).
async fn take_from_budget(server: &ApiServer, budget: &Value, pod: &Target, dry_run: bool) -> Result<(), ApiError> {
    let resource = budgets()?;
    let name = text(budget, "/metadata/name").to_string();
    let target = Target {
        resource,
        namespace: pod.namespace.clone(),
        name: Some(name.clone()),
        subresource: Some("status".into()),
    };
    let now = server.options.clock.timestamp();
    let pod_name = pod.name.clone().unwrap_or_default();
    let mut query = Query::new();
    if dry_run {
        query.insert("dryRun".into(), "All".into());
    }
    let written = objects::write(server, &target, (None, objects::Admission::Plugins), &query, None, |current| {
        let mut next = current.clone();
        next["status"] = decrement(current, &pod_name, &now)?;
        Ok(next)
    })
    .await;
    match written {
        Ok(Written::Stored(_) | Written::Deleted(_)) => Ok(()),
        Err(error) if error.code == 409 => Err(ApiError::new(
            504,
            "Timeout",
            format!("couldn't update PodDisruptionBudget \"{name}\" due to conflicts"),
        )),
        Err(error) => Err(error),
    }
}

/// `addConditionAndDeletePod`: the pod marked a disruption target, then deleted with the
/// eviction's options; answered with a Success Status, 201.
async fn delete(server: &ApiServer, target: &Target, mut options: DeleteOptions) -> Result<Response, ApiError> {
    if !options.dry_run {
        let status_target = Target {
            resource: target.resource,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            subresource: Some("status".into()),
        };
        let (uid, revision) = (options.uid.clone(), options.revision);
        let now = server.options.clock.timestamp();
        let registry = (None, objects::Admission::Registry);
        let written = objects::write(server, &status_target, registry, &Query::new(), None, |current| {
            if let Some(uid) = &uid
                && text(current, "/metadata/uid") != uid
            {
                return Err(precondition_failed(current, "UID", uid, text(current, "/metadata/uid")));
            }
            let stored = text(current, "/metadata/resourceVersion");
            if let Some(revision) = revision
                && stored != revision.to_string()
            {
                return Err(precondition_failed(current, "ResourceVersion", &revision.to_string(), stored));
            }
            let mut next = current.clone();
            disruption_target(&mut next, &now);
            Ok(next)
        })
        .await?;
        // The condition's write moved the revision the client pinned: the delete pins
        // the pod as it is now.
        if options.revision.is_some() {
            let written = written.into_value();
            options.revision = text(&written, "/metadata/resourceVersion").parse().ok();
        }
    }
    objects::delete_one(server, target, &options).await?;
    objects::respond(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn precondition_failed(pod: &Value, what: &str, wanted: &str, actual: &str) -> ApiError {
    let name = text(pod, "/metadata/name");
    ApiError::conflict(
        super::status::Subject { group: "", kind: "pods", name },
        &format!("Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}"),
    )
}

/// `UpdatePodCondition` with `DisruptionTarget`: set, its transition time moved only when
/// its status changes.
fn disruption_target(pod: &mut Value, now: &str) {
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
        "lastTransitionTime": now,
    });
    kubeyard_compiler::pod::update_condition(pod, condition);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 1}, "status": status})
    }

    #[test]
    fn a_budget_allows_refuses_or_asks_to_wait() {
        let allowing =
            budget(json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2}));
        let status = decrement(&allowing, "web-0", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["disruptedPods"], json!({"web-0": "2026-01-01T00:00:00Z"}));

        let spent =
            budget(json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2}));
        let refused = decrement(&spent, "web-0", "t").unwrap_err();
        assert_eq!((refused.code, refused.reason, refused.message.as_str()), (429, "TooManyRequests", VIOLATES));
        assert_eq!(
            refused.details.unwrap()["causes"],
            json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
        );

        let unseen = json!({"metadata": {"name": "web", "generation": 2}, "status": {"observedGeneration": 1, "disruptionsAllowed": 5}});
        let wait = decrement(&unseen, "web-0", "t").unwrap_err();
        let details = wait.details.unwrap();
        assert_eq!((wait.code, details["retryAfterSeconds"].as_i64()), (429, Some(10)));
        assert_eq!(
            details["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );

        let negative = budget(json!({"observedGeneration": 1, "disruptionsAllowed": -1}));
        let forbidden = decrement(&negative, "web-0", "t").unwrap_err();
        assert_eq!(forbidden.code, 403);
        assert_eq!(
            forbidden.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn unready_pods_go_freely_only_where_the_budget_lets_them() {
        let met = json!({"spec": {}, "status": {"currentHealthy": 2, "desiredHealthy": 2}});
        let short = json!({"spec": {}, "status": {"currentHealthy": 1, "desiredHealthy": 2}});
        let nothing_desired = json!({"spec": {}, "status": {"currentHealthy": 0, "desiredHealthy": 0}});
        let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}, "status": {"currentHealthy": 0, "desiredHealthy": 2}});
        assert!(unhealthy_goes_freely(&met));
        assert!(!unhealthy_goes_freely(&short));
        assert!(!unhealthy_goes_freely(&nothing_desired));
        assert!(unhealthy_goes_freely(&always));
        assert!(can_ignore_budgets(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budgets(&json!({"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Running"}})));
        assert!(!can_ignore_budgets(&json!({"status": {"phase": "Running"}})));
    }

    #[test]
    fn the_disruption_target_condition_keeps_its_first_time() {
        let mut pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        disruption_target(&mut pod, "t1");
        disruption_target(&mut pod, "t2");
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conditions[1]["lastTransitionTime"], "t1");
    }
}
