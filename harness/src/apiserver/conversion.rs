//! Custom objects between versions, as apiextensions-apiserver converts them: a CRD
//! with several versions stores its objects in one (the storage version) and serves
//! them in every served version. Objects are converted on the way in (to the storage
//! version) and on the way out (to the version the client asked for). With
//! `conversion.strategy: None` only `apiVersion` changes; with `Webhook` the CRD's
//! conversion webhook is sent a `ConversionReview` holding the objects whose version
//! differs, and of what it answers only the body, labels and annotations are kept.
//!
//! Built-in kinds are served in one version each, but HorizontalPodAutoscalers (v1 and
//! v2, stored in v2) and Events (core/v1 and events.k8s.io/v1, stored as core's),
//! converted without a webhook.

use super::ApiServer;
use super::resources::{Conversion, Resource};
use super::status::ApiError;
use super::webhook_client::{self, CallError};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a conversion webhook may take (Kubernetes' webhook client default).
const TIMEOUT: Duration = Duration::from_secs(30);

/// The `ConversionReview` versions kubeyard speaks, preferred first.
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// A 500 as Kubernetes' `NewInternalError` words it.
fn internal(why: String) -> ApiError {
    ApiError::internal(format!("Internal error occurred: {why}"))
}

fn api_version(object: &Value) -> &str {
    object.get("apiVersion").and_then(Value::as_str).unwrap_or_default()
}

/// Objects read from the store, into the version the request is for.
pub(super) async fn to_request(server: &ApiServer, resource: &Resource, objects: &mut [Value]) -> Result<(), ApiError> {
    convert(server, resource, objects, &resource.api_version()).await
}

/// Built-in kinds served in several versions: the version they are stored in.
/// HorizontalPodAutoscalers are served in `autoscaling/v1` (what `kubectl autoscale`
/// writes) and `autoscaling/v2`, stored in v2, converted by `kubeyard_compiler::autoscaling`.
fn builtin_storage(resource: &Resource) -> Option<&'static str> {
    match (resource.crd, resource.group, resource.kind) {
        (None, "autoscaling", "HorizontalPodAutoscaler") => Some("autoscaling/v2"),
        // One Event, seen through core/v1 and events.k8s.io/v1; stored as core's.
        (None, "" | "events.k8s.io", "Event") => Some("v1"),
        _ => None,
    }
}

/// A built-in kind's object into version `to`.
fn convert_builtin(object: &mut Value, to: &str) {
    use kubeyard_compiler::autoscaling;
    match (api_version(object), to) {
        (from, to) if from == to => {}
        (_, "autoscaling/v1") => *object = autoscaling::to_v1(object),
        (_, "autoscaling/v2") => *object = autoscaling::to_v2(object),
        ("v1", "events.k8s.io/v1") => *object = kubeyard_compiler::events::to_events_v1(object),
        ("events.k8s.io/v1", "v1") => *object = kubeyard_compiler::events::to_core_v1(object),
        _ => {}
    }
}

/// Whether a resource's objects are served exactly as stored (a built-in kind in one
/// version): a list can send the stored bytes.
pub(super) fn served_as_stored(resource: &Resource) -> bool {
    resource.crd.is_none() && builtin_storage(resource).is_none()
}

/// An object admitted in the request's version, into the version it is stored in.
pub(super) async fn to_storage(server: &ApiServer, resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if let Some(storage) = builtin_storage(resource) {
        convert_builtin(object, storage);
        return Ok(());
    }
    let Some((storage, _)) = server.resources.snapshot().storage_of(resource) else { return Ok(()) };
    convert(server, resource, std::slice::from_mut(object), storage).await
}

/// Whether reading this resource's objects may call a webhook (and so cannot be done
/// without waiting).
pub(super) fn needs_webhook(server: &ApiServer, resource: &Resource) -> bool {
    server.resources.snapshot().storage_of(resource).is_some_and(|(_, c)| matches!(c, Conversion::Webhook { .. }))
}

/// Converts without a webhook: `apiVersion` set to the resource's. What watches of
/// `None`-strategy kinds do for every event.
pub(super) fn rename(resource: &Resource, object: &mut Value) {
    if builtin_storage(resource).is_some() {
        convert_builtin(object, &resource.api_version());
        return;
    }
    if resource.crd.is_some()
        && let Some(map) = object.as_object_mut()
        && map.get("apiVersion").and_then(Value::as_str) != Some(resource.api_version().as_str())
    {
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
}

/// Converts every object not yet in `to`.
pub(super) async fn convert(
    server: &ApiServer,
    resource: &Resource,
    objects: &mut [Value],
    to: &str,
) -> Result<(), ApiError> {
    if builtin_storage(resource).is_some() {
        objects.iter_mut().for_each(|object| convert_builtin(object, to));
        return Ok(());
    }
    if resource.crd.is_none() || objects.iter().all(|o| api_version(o) == to) {
        return Ok(());
    }
    let conversion = server.resources.snapshot().storage_of(resource).map(|(_, c)| c.clone()).unwrap_or_default();
    match conversion {
        Conversion::None => {
            for object in objects.iter_mut() {
                if let Some(map) = object.as_object_mut() {
                    map.insert("apiVersion".into(), json!(to));
                }
            }
            Ok(())
        }
        Conversion::Webhook { client_config, review_versions } => {
            let pending: Vec<usize> = (0..objects.len()).filter(|&i| api_version(&objects[i]) != to).collect();
            let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
            let gvk = format!("{}, Kind={}", api_version(&sent[0]), resource.kind);
            let failed = |why: String| internal(format!("conversion webhook for {gvk} failed: {why}"));
            let Some(review_version) =
                REVIEW_VERSIONS.iter().find(|known| review_versions.iter().any(|v| v == *known)).copied()
            else {
                return Err(failed(format!(
                    "no supported conversionReviewVersions: kubeyard speaks {}, the CRD lists {}",
                    REVIEW_VERSIONS.join(", "),
                    review_versions.join(", ")
                )));
            };
            let endpoint = webhook_client::endpoint(&client_config, None).map_err(|e| failed(e.0))?;
            let uid = super::objects::uid();
            let review = json!({
                "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
                "kind": "ConversionReview",
                "request": {"uid": uid, "desiredAPIVersion": to, "objects": sent},
            });
            let answer =
                webhook_client::post(server, &endpoint, &review, TIMEOUT).await.map_err(|CallError(e)| failed(e))?;
            let converted = read_review(&answer, &uid, sent.len(), &gvk)?;
            for ((index, original), converted) in pending.iter().zip(&sent).zip(converted) {
                objects[*index] = restore_metadata(original, converted, to, resource.kind, *index).map_err(&failed)?;
            }
            Ok(())
        }
    }
}

/// The converted objects of a `ConversionReview` answer, checked as Kubernetes checks it.
fn read_review(answer: &Value, uid: &str, expected: usize, gvk: &str) -> Result<Vec<Value>, ApiError> {
    let failed = |why: String| internal(format!("conversion webhook for {gvk} failed: {why}"));
    let response =
        answer.get("response").filter(|r| r.is_object()).ok_or_else(|| failed("no response provided".into()))?;
    let got = response.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got != uid {
        return Err(failed(format!("expected response.uid={uid:?}, got {got:?}")));
    }
    let status = response.pointer("/result/status").and_then(Value::as_str).unwrap_or_default();
    if status != "Success" {
        let message = response.pointer("/result/message").and_then(Value::as_str).unwrap_or_default();
        return Err(failed(if message.is_empty() {
            format!("response.result.status was '{status}', not 'Success'")
        } else {
            message.to_string()
        }));
    }
    let converted = response.get("convertedObjects").and_then(Value::as_array).cloned().unwrap_or_default();
    if converted.len() != expected {
        return Err(internal(format!(
            "conversion webhook for {gvk} returned {} objects, expected {expected}",
            converted.len()
        )));
    }
    Ok(converted)
}

/// The webhook's object with the original's metadata but for labels and annotations,
/// which are all a conversion may change there.
fn restore_metadata(
    original: &Value,
    mut converted: Value,
    to: &str,
    kind: &str,
    index: usize,
) -> Result<Value, String> {
    let invalid = |why: String| format!("invalid converted object at index {index}: {why}");
    let got = api_version(&converted).to_string();
    if got != to {
        return Err(invalid(format!("invalid apiVersion {got:?}, expected {to:?}")));
    }
    let got_kind = converted.get("kind").and_then(Value::as_str).unwrap_or_default();
    if got_kind != kind {
        return Err(invalid(format!("invalid kind {got_kind:?}, expected {kind:?}")));
    }
    let Some(map) = converted.as_object_mut() else { return Err(invalid("not an object".into())) };
    let mut metadata = original.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let given = map.get("metadata").cloned().unwrap_or(Value::Null);
    for field in ["labels", "annotations"] {
        match given.get(field) {
            Some(value) if !value.is_null() => metadata[field] = value.clone(),
            _ => {
                if let Some(meta) = metadata.as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    map.insert("metadata".into(), metadata);
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversion_keeps_the_original_metadata_but_labels_and_annotations() {
        let original = json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "a", "uid": "u", "labels": {"a": "1"}}, "spec": {"size": 1}});
        let converted = json!({"apiVersion": "x.io/v2", "kind": "W", "metadata": {"name": "b", "uid": "v", "annotations": {"n": "2"}}, "spec": {"count": 1}});
        let kept = restore_metadata(&original, converted, "x.io/v2", "W", 0).unwrap();
        assert_eq!(
            kept,
            json!({"apiVersion": "x.io/v2", "kind": "W", "metadata": {"name": "a", "uid": "u", "annotations": {"n": "2"}}, "spec": {"count": 1}})
        );
        let wrong = json!({"apiVersion": "x.io/v1", "kind": "W"});
        assert_eq!(
            restore_metadata(&original, wrong, "x.io/v2", "W", 3).unwrap_err(),
            r#"invalid converted object at index 3: invalid apiVersion "x.io/v1", expected "x.io/v2""#
        );
    }

    #[test]
    fn review_answers_are_checked_as_kubernetes_checks_them() {
        let gvk = "x.io/v1, Kind=W";
        let ok = json!({"response": {"uid": "1", "result": {"status": "Success"}, "convertedObjects": [{}]}});
        assert_eq!(read_review(&ok, "1", 1, gvk).unwrap().len(), 1);
        let message = |answer: Value, n| read_review(&answer, "1", n, gvk).unwrap_err().message;
        assert_eq!(
            message(ok.clone(), 2),
            "Internal error occurred: conversion webhook for x.io/v1, Kind=W returned 1 objects, expected 2"
        );
        assert_eq!(
            message(json!({"response": {"uid": "2"}}), 1),
            r#"Internal error occurred: conversion webhook for x.io/v1, Kind=W failed: expected response.uid="1", got "2""#
        );
        assert_eq!(
            message(json!({"response": {"uid": "1", "result": {"status": "Failure"}}}), 1),
            "Internal error occurred: conversion webhook for x.io/v1, Kind=W failed: response.result.status was 'Failure', not 'Success'"
        );
        assert_eq!(
            message(json!({"response": {"uid": "1", "result": {"status": "Failure", "message": "no"}}}), 1),
            "Internal error occurred: conversion webhook for x.io/v1, Kind=W failed: no"
        );
    }
}
