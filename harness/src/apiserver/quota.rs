//! The ResourceQuota admission plugin: a create that would take its namespace past a
//! quota's `hard` limit is refused with 403 and Kubernetes' message (`exceeded quota:
//! compute, requested: pods=1, used: pods=2, limited: pods=2`), and a pod that does not
//! say a quota'd cpu or memory with `failed quota: compute: must specify requests.cpu for:
//! web`. What counts is `kubeyard_compiler::quota`'s, over the namespace's objects of the
//! kind at the moment of the write, for each quota those its scopes select; updates of
//! Services and claims are checked for what they add; writes checked in one namespace are
//! admitted one at a time.
//! The quota's `status` is the resource quota controller's.

use super::ApiServer;
use super::objects::from_entry;
use super::resources::{self, Resource};
use super::status::ApiError;
use kubeyard_compiler::quantity::Quantity;
use kubeyard_compiler::quota;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One lock per namespace with quotas, held from the check to the write.
#[derive(Default)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    fn of(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(namespace.to_string()).or_default())
    }
}

/// One limit an object would go past.
struct Exceeded {
    resource: String,
    asked: Quantity,
    current: Quantity,
    limit: Quantity,
}

/// Checks a new object (or, with `old`, an update of a kind whose updates count: see
/// `quota::checks_updates`) against the quotas of its namespace that count it (their
/// scopes select it): one that would take the namespace past a quota's `hard` (or a pod
/// that does not say a quota'd cpu or memory) is refused in Kubernetes' words. The guard,
/// held until the object is written, keeps other writes of the namespace waiting, so that
/// two racing creates cannot both take the last place.
pub(super) async fn admit(
    server: &ApiServer,
    resource: &Resource,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, ApiError> {
    if old.is_some() && !quota::checks_updates(resource.group, resource.kind) {
        return Ok(None);
    }
    let Some(quotas) = resources::by_kind("", "ResourceQuota") else { return Ok(None) };
    let listing = server
        .store
        .list(&quotas.prefix(Some(namespace)), None, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if listing.entries.is_empty() {
        return Ok(None);
    }
    let quotas: Vec<Value> = listing.entries.iter().map(from_entry).collect::<Result<_, _>>()?;
    let quotas: Vec<Value> =
        quotas.into_iter().filter(|q| quota::in_scope(q, resource.group, resource.kind, object)).collect();
    let mut requested = quota::usage(resource.group, resource.plural, resource.kind, object);
    if let Some(old) = old {
        requested = quota::increase(&requested, &quota::usage(resource.group, resource.plural, resource.kind, old));
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let plural = resource.plural;
    let is_pod = resource.group.is_empty() && resource.kind == "Pod";
    let hard_of = |quota: &Value| -> Vec<(String, Quantity)> {
        quota
            .pointer("/spec/hard")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse::<Quantity>().ok()?)))
            .collect()
    };
    if is_pod {
        for quota in &quotas {
            let hard = hard_of(quota);
            if let Some(why) = quota::missing_constraints(hard.iter().map(|(k, _)| k.as_str()), object) {
                let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                return Err(ApiError::forbidden(format!(
                    "{plural} \"{name}\" is forbidden: failed quota: {quota_name}: {why}"
                )));
            }
        }
    }
    let concerned = quotas.iter().any(|q| hard_of(q).iter().any(|(k, _)| requested.contains_key(k)));
    if !concerned {
        return Ok(None);
    }
    let guard = server.quota_locks.of(namespace).lock_owned().await;
    let existing = server
        .store
        .list(&resource.prefix(Some(namespace)), None, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let now = server.options.clock.timestamp();
    let others: Vec<Value> = existing.entries.iter().map(from_entry).collect::<Result<_, _>>()?;
    // Each object's usage once, whatever the number of quotas.
    let counted: Vec<(&Value, quota::Usage)> = others
        .iter()
        .filter(|other| quota::counts(resource.group, resource.kind, other, &now))
        .map(|other| (other, quota::usage(resource.group, resource.plural, resource.kind, other)))
        .collect();
    for quota in &quotas {
        let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        // What this quota counts: the objects its scopes select.
        let mut used = quota::Usage::new();
        for (_, usage) in
            counted.iter().filter(|(other, _)| quota::in_scope(quota, resource.group, resource.kind, other))
        {
            quota::add(&mut used, usage);
        }
        let mut exceeded = Vec::new();
        for (resource, limit) in hard_of(quota) {
            let Some(asked) = requested.get(&resource) else { continue };
            let current = used.get(&resource).copied().unwrap_or_else(Quantity::zero);
            let after = current.checked_add(asked).unwrap_or(current);
            if after > limit {
                exceeded.push(Exceeded { resource, asked: *asked, current, limit });
            }
        }
        if !exceeded.is_empty() {
            let list = |f: &dyn Fn(&Exceeded) -> String| exceeded.iter().map(f).collect::<Vec<_>>().join(",");
            return Err(ApiError::forbidden(format!(
                "{plural} \"{name}\" is forbidden: exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                list(&|e| format!("{}={}", e.resource, e.asked)),
                list(&|e| format!("{}={}", e.resource, e.current)),
                list(&|e| format!("{}={}", e.resource, e.limit)),
            )));
        }
    }
    Ok(Some(guard))
}
