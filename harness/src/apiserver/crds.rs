//! CustomResourceDefinitions, served as Kubernetes' apiextensions-apiserver serves them:
//! a CRD written is checked (`kubeyard_compiler::crd`, the same rules `lint` can run),
//! its names are accepted unless another CRD of its group holds them (the naming
//! controller), and its kinds are then served (discovery, OpenAPI, objects admitted
//! through the compiler against its schema) from the very next request. Deleted, it
//! stops taking new objects, its objects are deleted, and then it goes with its kinds
//! (the finalizer controller).
//!
//! The work the apiextensions controllers do asynchronously is done here right after
//! the write that calls for it (`sync`), so a test that creates a CRD and then its
//! objects never races discovery; and again for every CRD the store holds when a server
//! starts (`load`).

use super::ApiServer;
use super::Target;
use super::objects::{self, DeleteOptions};
use super::resources::{self, CustomKinds, PrinterColumn, Resource};
use super::status::{ApiError, Subject};
use kubeyard_compiler::crd;
use serde_json::{Value, json};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const GROUP: &str = "apiextensions.k8s.io";
pub const KIND: &str = "CustomResourceDefinition";
/// Holds a deleted CRD until its objects are gone (added when it is deleted).
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// How often a deleted CRD's objects are looked for again while some remain.
const CLEANUP_PERIOD: Duration = Duration::from_secs(5);

/// Whether a resource is the CRDs themselves.
pub fn is_crd(resource: &Resource) -> bool {
    resource.group == GROUP && resource.kind == KIND && resource.crd.is_none()
}

fn crds() -> &'static Resource {
    resources::by_kind(GROUP, KIND).unwrap_or(&resources::RESOURCES[0])
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// What the server sets on a CRD it creates: Kubernetes' defaults and a status with no
/// names accepted yet and the storage version stored.
pub fn prepare_create(object: &mut Value) {
    crd::set_defaults(object);
    let stored: Vec<Value> = crd::storage_version(object).map(|v| json!(v)).into_iter().collect();
    object["status"] = json!({
        "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": stored,
    });
}

/// What an update of a CRD keeps: its status (unless through `status`), defaults, and
/// the storage version added to the versions objects may be stored in.
pub fn prepare_update(sub: Option<&str>, next: &mut Value) {
    if sub != Some("status") {
        crd::set_defaults(next);
    }
    let Some(storage) = crd::storage_version(next).map(str::to_string) else { return };
    if !next.get("status").is_some_and(Value::is_object) {
        next["status"] = json!({});
    }
    if let Some(Value::Object(status)) = next.get_mut("status")
        && let Value::Array(stored) = status.entry("storedVersions").or_insert_with(|| json!([]))
        && !stored.iter().any(|v| v == storage.as_str())
    {
        stored.push(json!(storage));
    }
}

/// Kubernetes' checks of a CRD beyond its schema (names, versions, structural schemas),
/// and whether each version's schema compiles, as a 422.
pub fn validate(server: &ApiServer, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let name = text(object, "/metadata/name").unwrap_or_default();
    let mut causes: Vec<(String, String, String)> = crd::validate(object, old)
        .into_iter()
        .map(|cause| {
            let reason = cause.reason().to_string();
            (cause.field, cause.message, reason)
        })
        .collect();
    if causes.is_empty()
        && let Err(message) = server.admission.catalog().check_crd(object)
    {
        let (field, message) = message.split_once(": ").unwrap_or(("spec.versions", &message));
        causes.push((field.to_string(), format!("Invalid value: {message}"), "FieldValueInvalid".into()));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(Subject { group: GROUP, kind: KIND, name }, causes))
}

/// 405 for a create of a kind whose CRD is being deleted.
pub fn refuse_create_while_terminating(server: &ApiServer, resource: &Resource) -> Result<(), ApiError> {
    if server.resources.snapshot().terminating(resource) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        ));
    }
    Ok(())
}

/// A deleted CRD is held by the cleanup finalizer until its objects are gone.
pub fn on_delete(object: &Value, finalizers: &mut Vec<Value>) {
    if object.pointer("/metadata/deletionTimestamp").is_none() && !finalizers.contains(&json!(CLEANUP_FINALIZER)) {
        finalizers.push(json!(CLEANUP_FINALIZER));
    }
}

/// The condition a CRD gets when it is deleted, before its cleanup starts.
pub fn mark_terminating(object: &mut Value, now: &str) {
    set_condition(
        object,
        "Terminating",
        "True",
        "InstanceDeletionPending",
        "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        now,
    );
}

fn set_condition(object: &mut Value, kind: &str, status: &str, reason: &str, message: &str, now: &str) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let mut conditions: Vec<Value> =
        object.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    crd::set_condition(&mut conditions, crd::condition(kind, status, reason, message, now));
    object["status"]["conditions"] = Value::Array(conditions);
}

/// Serves what a CRD says now: after it was written, deleted or found at start. Its
/// names are accepted unless taken; accepted, its kinds are served and it is
/// Established; being deleted, its kinds stop taking new objects and its cleanup runs;
/// gone, its kinds go.
pub async fn sync(server: &ApiServer, name: &str) {
    for _ in 0..8 {
        match sync_once(server, name).await {
            Ok(()) => return,
            // Someone wrote the CRD meanwhile: look again.
            Err(Retry) => continue,
        }
    }
}

struct Retry;

async fn sync_once(server: &ApiServer, name: &str) -> Result<(), Retry> {
    let key = crds().key(None, name);
    let Ok(entry) = server.store.get(&key).await else { return Ok(()) };
    let Some(entry) = entry else {
        forget(server, name).await;
        return Ok(());
    };
    let Ok(current) = objects::from_entry(&entry) else { return Ok(()) };
    let mut next = current.clone();
    let now = server.options.clock.timestamp();
    if current.pointer("/metadata/deletionTimestamp").is_some() {
        let snapshot = server.resources.snapshot();
        if let Some(kinds) = snapshot.kinds(name) {
            server.resources.set(name, CustomKinds { terminating: true, ..kinds.clone() });
        }
        start_cleanup(server, name);
        return Ok(());
    }
    let others = other_crds(server, name).await;
    match crd::accept_names(&current, &others) {
        Ok(names) => {
            next["status"]["acceptedNames"] = names.to_json();
            set_condition(&mut next, "NamesAccepted", "True", "NoConflicts", "no conflicts found", &now);
            match server.admission.register_crd(&current) {
                Ok(_) => {
                    server.resources.set(name, kinds_of(&current, name));
                    let message = "the initial names have been accepted";
                    set_condition(&mut next, "Established", "True", "InitialNamesAccepted", message, &now);
                }
                Err(why) => {
                    // Validated when written: only a CRD stored by another server may get here.
                    set_condition(&mut next, "Established", "False", "Installing", &why, &now);
                }
            }
        }
        Err((reason, message)) => {
            set_condition(&mut next, "NamesAccepted", "False", reason, &message, &now);
            if server.resources.snapshot().kinds(name).is_none() {
                set_condition(&mut next, "Established", "False", "NotAccepted", "not all names are accepted", &now);
            }
        }
    }
    write_status(server, &key, entry.revision, &current, next).await
}

/// Writes a CRD's status the server computed, unless it is what is stored.
async fn write_status(
    server: &ApiServer,
    key: &str,
    revision: u64,
    current: &Value,
    mut next: Value,
) -> Result<(), Retry> {
    if next == *current {
        return Ok(());
    }
    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let bytes = bytes::Bytes::from(serde_json::to_vec(&next).unwrap_or_default());
    match server.store.update(key, bytes, Some(revision)).await {
        Ok(_) => Ok(()),
        Err(crate::store::StoreError::Conflict { .. }) => Err(Retry),
        Err(_) => Ok(()),
    }
}

/// Stops serving a CRD that is gone, and looks again at the CRDs of its group whose
/// names it may have held.
async fn forget(server: &ApiServer, name: &str) {
    let group = server.resources.snapshot().kinds(name).and_then(|k| k.rows.first().map(|r| r.group));
    server.resources.remove(name);
    server.admission.unregister_crd(name);
    let Some(group) = group else { return };
    for other in other_crds(server, name).await {
        let accepted = other
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "NamesAccepted" && c["status"] == "True"));
        if text(&other, "/spec/group") == Some(group)
            && !accepted
            && let Some(other_name) = text(&other, "/metadata/name")
        {
            Box::pin(sync(server, other_name)).await;
        }
    }
}

/// The CRDs stored but `name`.
async fn other_crds(server: &ApiServer, name: &str) -> Vec<Value> {
    let Ok(listing) = server.store.list(&crds().prefix(None), None, None).await else { return Vec::new() };
    listing
        .entries
        .iter()
        .filter_map(|entry| objects::from_entry(entry).ok())
        .filter(|crd| text(crd, "/metadata/name") != Some(name))
        .collect()
}

/// The rows a CRD serves: one per served version, preferred (Kubernetes' version order)
/// first, with each version's schema for OpenAPI.
fn kinds_of(object: &Value, name: &str) -> CustomKinds {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let names = crd::AcceptedNames::wanted(object);
    let group = resources::leak(spec.get("group").and_then(Value::as_str).unwrap_or_default());
    let kind = resources::leak(&names.kind);
    let plural = resources::leak(&names.plural);
    let singular = resources::leak(&names.singular);
    let short_names = resources::leak_list(&names.short_names);
    let categories = resources::leak_list(&names.categories);
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let crd_name = resources::leak(name);
    let mut versions: Vec<&Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served") != Some(&Value::Bool(false)))
        .collect();
    versions.sort_by_key(|v| {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        (std::cmp::Reverse(kubeyard_compiler::schema::removed::version_priority(name)), name.to_string())
    });
    let storage = crd::storage_version(object).unwrap_or_default();
    let mut kinds = CustomKinds {
        storage: resources::leak(&format!("{group}/{storage}")),
        conversion: conversion_of(&spec),
        ..CustomKinds::default()
    };
    for version in versions {
        let row = resources::intern(Resource {
            group,
            version: resources::leak(version.get("name").and_then(Value::as_str).unwrap_or_default()),
            kind,
            plural,
            singular,
            namespaced,
            short_names,
            status: version.pointer("/subresources/status").is_some(),
            scale: version.pointer("/subresources/scale").is_some(),
            scale_paths: scale_paths(version),
            generation: true,
            categories,
            crd: Some(crd_name),
            columns: resources::leak_columns(printer_columns(version)),
        });
        kinds.rows.push(row);
        kinds.schemas.push(version.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(json!({"type": "object"})));
    }
    kinds
}

/// A CRD's `spec.conversion`.
fn conversion_of(spec: &Value) -> resources::Conversion {
    if spec.pointer("/conversion/strategy").and_then(Value::as_str) != Some("Webhook") {
        return resources::Conversion::None;
    }
    let webhook = spec.pointer("/conversion/webhook").cloned().unwrap_or(Value::Null);
    let review_versions = kubeyard_compiler::object::json_strings(&webhook, "/conversionReviewVersions");
    let client_config = Arc::new(webhook.get("clientConfig").cloned().unwrap_or(Value::Null));
    resources::Conversion::Webhook { client_config, review_versions }
}

/// A version's `subresources.scale` paths.
fn scale_paths(version: &Value) -> Option<&'static resources::ScalePaths> {
    let scale = version.pointer("/subresources/scale")?;
    let path = |key: &str| scale.get(key).and_then(Value::as_str).map(str::to_string);
    Some(resources::leak_scale_paths(resources::ScalePaths {
        spec_replicas: path("specReplicasPath").unwrap_or_default(),
        status_replicas: path("statusReplicasPath").unwrap_or_default(),
        label_selector: path("labelSelectorPath").filter(|p| !p.is_empty()),
    }))
}

/// A version's `additionalPrinterColumns`, with Kubernetes' description when it gives none.
fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    let columns = version.get("additionalPrinterColumns").and_then(Value::as_array);
    columns
        .into_iter()
        .flatten()
        .map(|column| {
            let text = |key: &str| column.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            let json_path = text("jsonPath");
            let description = match text("description") {
                given if !given.is_empty() => given,
                _ => format!("Custom resource definition column (in JSONPath format): {json_path}"),
            };
            PrinterColumn {
                name: text("name"),
                kind: text("type"),
                format: text("format"),
                description,
                priority: column.get("priority").and_then(Value::as_i64).unwrap_or(0),
                json_path,
            }
        })
        .collect()
}

/// Serves every CRD the store holds: at a server's start, before it takes requests.
pub async fn load(server: &ApiServer) {
    let Ok(listing) = server.store.list(&crds().prefix(None), None, None).await else { return };
    let mut names: Vec<String> = listing
        .entries
        .iter()
        .filter_map(|entry| objects::from_entry(entry).ok())
        .filter_map(|crd| text(&crd, "/metadata/name").map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        sync(server, &name).await;
    }
}

/// Starts deleting a CRD's objects, unless that runs already.
fn start_cleanup(server: &ApiServer, name: &str) {
    let Some(server) = server.me.upgrade() else { return };
    {
        let mut running = server.crd_cleanups.lock().unwrap_or_else(|e| e.into_inner());
        if !running.insert(name.to_string()) {
            return;
        }
    }
    let weak = Arc::downgrade(&server);
    let name = name.to_string();
    drop(server);
    tokio::spawn(async move {
        cleanup(&weak, &name).await;
        if let Some(server) = weak.upgrade() {
            server.crd_cleanups.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
        }
    });
}

/// The finalizer controller: deletes every object of the CRD's kinds (their own
/// finalizers honoured), looking again every 5 s until none is left, then lets the CRD
/// go. Ends when the server does.
async fn cleanup(weak: &Weak<ApiServer>, name: &str) {
    let key = crds().key(None, name);
    let mut said_in_progress = false;
    loop {
        let Some(server) = weak.upgrade() else { return };
        let Some(resource) = server.resources.snapshot().kinds(name).and_then(|k| k.rows.first().copied()) else {
            // Never served: nothing of its kinds can exist.
            release(&server, &key, "NeverEstablished", "resource was never established").await;
            return;
        };
        if !said_in_progress {
            update_condition(
                &server,
                &key,
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
                "True",
            )
            .await;
            said_in_progress = true;
        }
        let remaining = delete_all(&server, resource).await;
        if remaining == Some(0) {
            release(&server, &key, "InstanceDeletionCompleted", "removed all instances").await;
            return;
        }
        let clock = server.options.clock.clone();
        drop(server);
        clock.sleep(CLEANUP_PERIOD).await;
    }
}

/// Deletes the objects of a custom kind (all versions share one store prefix); how many
/// are left after, `None` when they cannot be listed.
async fn delete_all(server: &ApiServer, resource: &'static Resource) -> Option<usize> {
    let listing = server.store.list(&resource.prefix(None), None, None).await.ok()?;
    let options =
        DeleteOptions { propagation: Some("Background".into()), without_admission: true, ..DeleteOptions::default() };
    for entry in &listing.entries {
        let Ok(object) = objects::from_entry(entry) else { continue };
        let target = Target {
            resource,
            namespace: text(&object, "/metadata/namespace").map(str::to_string),
            name: text(&object, "/metadata/name").map(str::to_string),
            subresource: None,
        };
        if let Err(error) = objects::delete_one(server, &target, &options).await
            && error.code != 404
        {
            continue;
        }
    }
    let after = server.store.list(&resource.prefix(None), None, None).await.ok()?;
    Some(after.entries.len())
}

async fn update_condition(server: &ApiServer, key: &str, reason: &str, message: &str, status: &str) {
    for _ in 0..8 {
        let Ok(Some(entry)) = server.store.get(key).await else { return };
        let Ok(current) = objects::from_entry(&entry) else { return };
        let mut next = current.clone();
        set_condition(&mut next, "Terminating", status, reason, message, &server.options.clock.timestamp());
        if write_status(server, key, entry.revision, &current, next).await.is_ok() {
            return;
        }
    }
}

/// The CRD's objects are gone: it says so and its cleanup finalizer comes off; with no
/// other finalizer it is deleted, and its kinds stop being served.
async fn release(server: &ApiServer, key: &str, reason: &str, message: &str) {
    let name = key.rsplit('/').next().unwrap_or_default().to_string();
    for _ in 0..8 {
        let Ok(Some(entry)) = server.store.get(key).await else { break };
        let Ok(current) = objects::from_entry(&entry) else { break };
        let mut next = current.clone();
        set_condition(&mut next, "Terminating", "False", reason, message, &server.options.clock.timestamp());
        let finalizers: Vec<Value> = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter(|f| *f != CLEANUP_FINALIZER).cloned().collect())
            .unwrap_or_default();
        let written = if finalizers.is_empty() {
            server.store.delete(key, Some(entry.revision)).await.map(drop)
        } else {
            next["metadata"]["finalizers"] = Value::Array(finalizers);
            if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            let bytes = bytes::Bytes::from(serde_json::to_vec(&next).unwrap_or_default());
            server.store.update(key, bytes, Some(entry.revision)).await.map(drop)
        };
        match written {
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            _ => break,
        }
    }
    sync(server, &name).await;
}
