//! The controllers of the controller manager: each its own module with a reconcile loop
//! over watched state (kube-runtime's `Controller`, fed by the shared informers), a
//! client of the API server like any other component. What several of them share is
//! here and in `pods.rs` (claiming, writing and reading pods).

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod pods;
pub mod replicaset;
pub mod statefulset;
pub mod taint_eviction;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::time::Duration;

/// Why a reconcile failed: the API said no. The controller retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How a reconcile that failed is retried: a write that lost a race at once, anything
/// else after a pause.
pub(crate) fn retry(error: &Error) -> Action {
    match error {
        Error::Api(kube::Error::Api(status)) if status.code == 409 => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

/// Merges `fields` into the object's status, against the version it was read at, unless
/// they are there already; the written object, if anything was written.
pub(crate) async fn patch_status<K>(api: &Api<K>, object: &K, fields: Value) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let before = serde_json::to_value(object).ok().and_then(|o| o.get("status").cloned()).unwrap_or(json!({}));
    let mut after = before.clone();
    match (after.as_object_mut(), fields.as_object()) {
        (Some(after), Some(fields)) => after.extend(fields.clone()),
        _ => after = fields.clone(),
    }
    if same_content(&before, &after) {
        return Ok(None);
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"resourceVersion": object.meta().resource_version}, "status": fields});
    Ok(Some(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?))
}

/// Whether two values say the same, reading absent, `null`, `false`, zero, empty text,
/// lists and maps as one: the API server drops what `omitempty` drops, and what it
/// stored must not look changed and be written again for ever.
pub(crate) fn same_content<T: serde::Serialize>(a: &T, b: &T) -> bool {
    fn prune(value: Value) -> Value {
        let pruned = match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, prune(v))).filter(|(_, v)| !v.is_null()).collect())
            }
            Value::Array(list) => Value::Array(list.into_iter().map(prune).collect()),
            other => other,
        };
        let empty = match &pruned {
            Value::Object(map) => map.is_empty(),
            Value::Array(list) => list.is_empty(),
            Value::String(text) => text.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Bool(on) => !on,
            Value::Null => true,
        };
        if empty { Value::Null } else { pruned }
    }
    let json = |v: &T| prune(serde_json::to_value(v).unwrap_or(Value::Null));
    json(a) == json(b)
}

/// The controller reference an owner puts on what it makes.
pub(crate) fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Result<OwnerReference, Error> {
    let reference = owner.controller_owner_ref(&()).ok_or_else(|| Error::Invalid("an owner without a uid".into()))?;
    Ok(OwnerReference { block_owner_deletion: Some(true), ..reference })
}

pub(crate) fn label_selector<T: serde::Serialize>(selector: &T) -> Result<Selector, Error> {
    let json = serde_json::to_value(selector).map_err(|e| Error::Invalid(e.to_string()))?;
    Selector::from_label_selector(Some(&json)).map_err(|e| Error::Invalid(e.to_string()))
}
