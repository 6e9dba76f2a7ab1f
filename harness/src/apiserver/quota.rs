//! The ResourceQuota admission plugin, for pods: a pod that would take its namespace
//! past a quota's `hard` limit is refused with 403 and Kubernetes' message
//! (`exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2`). Usage
//! is counted from the namespace's pods that are neither finished nor being deleted, at
//! the moment of the create; creates in one namespace are admitted one at a time, so two
//! racing pods cannot both take the last place. The quota's `status` is not kept (the
//! resource quota controller's work in Kubernetes).

use super::ApiServer;
use super::objects::from_entry;
use super::resources;
use super::status::ApiError;
use kubeyard_compiler::quantity::Quantity;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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

/// Adds an amount to a total; the first amount gives the total its format (`64Mi` stays
/// binary), as the quota's messages show them.
fn sum_into(totals: &mut BTreeMap<&'static str, Quantity>, name: &'static str, amount: &Quantity) {
    match totals.get_mut(name) {
        Some(total) => *total = total.checked_add(amount).unwrap_or(*total),
        None => {
            totals.insert(name, *amount);
        }
    }
}

/// What a pod counts against each resource a quota may name: its effective requests
/// and limits (`kubeyard_compiler::pod`, the scheduler's arithmetic: init containers,
/// sidecars and overhead included), as Kubernetes' pod evaluator counts them.
fn usage(pod: &Value) -> BTreeMap<&'static str, Quantity> {
    let mut totals: BTreeMap<&'static str, Quantity> = BTreeMap::new();
    let one = Quantity::from_units(1, kubeyard_compiler::quantity::Format::DecimalSI);
    totals.insert("pods", one);
    totals.insert("count/pods", one);
    let empty = Value::Null;
    let spec = pod.get("spec").unwrap_or(&empty);
    let requests = kubeyard_compiler::pod::requests(spec, kubeyard_compiler::pod::Amounts::Requests);
    let limits = kubeyard_compiler::pod::limits(spec);
    for (resource, requested, limited) in
        [("cpu", "requests.cpu", "limits.cpu"), ("memory", "requests.memory", "limits.memory")]
    {
        if let Some(amount) = requests.get(resource) {
            // `cpu` and `memory` in a quota mean requests.
            totals.insert(requested, *amount);
            totals.insert(resource, *amount);
        }
        if let Some(amount) = limits.get(resource) {
            totals.insert(limited, *amount);
        }
    }
    totals
}

/// One limit a pod would go past.
struct Exceeded {
    resource: String,
    asked: Quantity,
    current: Quantity,
    limit: Quantity,
}

fn counts(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    !matches!(phase, "Succeeded" | "Failed") && pod.pointer("/metadata/deletionTimestamp").is_none()
}

/// Checks the new pod against the namespace's quotas; the guard, held until the pod is
/// written, keeps other creates in the namespace waiting.
pub(super) async fn admit_pod(
    server: &ApiServer,
    namespace: &str,
    pod: &Value,
) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, ApiError> {
    let Some(quotas) = resources::by_kind("", "ResourceQuota") else { return Ok(None) };
    let listing = server
        .store
        .list(&quotas.prefix(Some(namespace)), None, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if listing.entries.is_empty() {
        return Ok(None);
    }
    let guard = server.quota_locks.of(namespace).lock_owned().await;
    let Some(pods) = resources::by_kind("", "Pod") else { return Ok(Some(guard)) };
    let mut used: BTreeMap<&'static str, Quantity> = BTreeMap::new();
    let existing = server
        .store
        .list(&pods.prefix(Some(namespace)), None, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for entry in &existing.entries {
        let other = from_entry(entry)?;
        if counts(&other) {
            for (name, amount) in usage(&other) {
                sum_into(&mut used, name, &amount);
            }
        }
    }
    let requested = usage(pod);
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    for entry in &listing.entries {
        let quota = from_entry(entry)?;
        let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let Some(hard) = quota.pointer("/spec/hard").and_then(Value::as_object) else { continue };
        let mut exceeded = Vec::new();
        for (resource, limit) in hard {
            let Some(limit) = limit.as_str().and_then(|l| l.parse::<Quantity>().ok()) else { continue };
            let Some(asked) = requested.get(resource.as_str()) else { continue };
            let current = used.get(resource.as_str()).cloned().unwrap_or_else(Quantity::zero);
            let after = current.checked_add(asked).unwrap_or(current);
            if after > limit {
                exceeded.push(Exceeded { resource: resource.clone(), asked: *asked, current, limit });
            }
        }
        if !exceeded.is_empty() {
            let list = |f: &dyn Fn(&Exceeded) -> String| exceeded.iter().map(f).collect::<Vec<_>>().join(",");
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                list(&|e| format!("{}={}", e.resource, e.asked)),
                list(&|e| format!("{}={}", e.resource, e.current)),
                list(&|e| format!("{}={}", e.resource, e.limit)),
            )));
        }
    }
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_counts_its_requests_and_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m"}}}]}});
        let usage = usage(&pod);
        assert_eq!(usage["pods"].to_string(), "1");
        assert_eq!(usage["requests.cpu"].to_string(), "500m");
        assert_eq!(usage["cpu"].to_string(), "500m");
        assert_eq!(usage["requests.memory"].to_string(), "64Mi");
        assert_eq!(usage["limits.cpu"].to_string(), "1");
        // Init containers, sidecars and the overhead count as the scheduler counts them
        // (quota once counted the regular containers alone).
        let pod = json!({"spec": {
            "containers": [{"resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}],
            "initContainers": [
                {"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "32Mi"}}},
                {"resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"memory": "1Mi"}}});
        let counted = super::usage(&pod);
        assert_eq!(counted["requests.cpu"].to_string(), "1100m");
        assert_eq!(counted["requests.memory"].to_string(), "65Mi");
        assert_eq!(counted["limits.memory"].to_string(), "33Mi");
        assert!(!counted.contains_key("limits.cpu"));
        assert!(!counts(&json!({"status": {"phase": "Succeeded"}})));
        assert!(counts(&json!({"status": {"phase": "Running"}})));
    }
}
