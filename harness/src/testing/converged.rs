//! `converged`: everything a test applied is realised, as a user of the cluster would
//! judge it: each Deployment Available with every replica updated and available, each
//! StatefulSet, DaemonSet, ReplicaSet and ReplicationController with every replica ready,
//! each Job complete, each Service that selects pods with ready endpoints, each Pod
//! running and ready (or done), and no pod in the applied namespaces left Pending.

use super::cluster::{Applied, Cluster, Error};
use super::expect::{Failure, Holds};
use serde_json::Value;
use std::collections::BTreeSet;

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition(object: &Value, kind: &str) -> Option<String> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Why the object is not realised yet; `None` when it is.
fn pending(applied: &Applied, object: &Value, endpoints: Option<&Value>) -> Option<String> {
    let generation = number(object, "/metadata/generation");
    let observed = number(object, "/status/observedGeneration");
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let stale = generation > 0 && observed < generation;
    match applied.kind.as_str() {
        "Deployment" => {
            let (updated, available) =
                (number(object, "/status/updatedReplicas"), number(object, "/status/availableReplicas"));
            let total = number(object, "/status/replicas");
            if stale {
                Some("its controller has not seen its latest spec".into())
            } else if condition(object, "Available").as_deref() != Some("True") {
                Some(format!("not Available: {available} of {replicas} replicas available"))
            } else if updated < replicas || available < replicas || total > replicas {
                Some(format!("rolling out: {updated} of {replicas} updated, {available} available, {total} in all"))
            } else {
                None
            }
        }
        "StatefulSet" | "ReplicaSet" | "ReplicationController" => {
            let ready = number(object, "/status/readyReplicas");
            if stale || ready < replicas { Some(format!("{ready} of {replicas} replicas ready")) } else { None }
        }
        "DaemonSet" => {
            let desired = number(object, "/status/desiredNumberScheduled");
            let ready = number(object, "/status/numberReady");
            let updated = number(object, "/status/updatedNumberScheduled");
            if stale || ready < desired || updated < desired {
                Some(format!("{ready} of {desired} daemon pods ready, {updated} updated"))
            } else {
                None
            }
        }
        "Job" => match (condition(object, "Complete").as_deref(), condition(object, "Failed").as_deref()) {
            (Some("True"), _) => None,
            (_, Some("True")) => Some("failed".into()),
            _ => Some(format!("{} of its completions succeeded", number(object, "/status/succeeded"))),
        },
        "Pod" => {
            let phase = object.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
            match phase {
                "Succeeded" => None,
                "Running" if condition(object, "Ready").as_deref() == Some("True") => None,
                phase => Some(format!("{phase}, not ready")),
            }
        }
        "Service" => {
            let selects = object.pointer("/spec/selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
            if !selects || object.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
                return None;
            }
            let ready: usize = endpoints
                .and_then(|e| e.get("subsets"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| s.get("addresses").and_then(Value::as_array).map_or(0, Vec::len))
                .sum();
            (ready == 0).then(|| "no ready endpoints".to_string())
        }
        _ => None,
    }
}

pub async fn check(cluster: &Cluster) -> Result<Holds, Error> {
    let mut reasons = Vec::new();
    let mut subjects = Vec::new();
    let mut namespaces = BTreeSet::new();
    for applied in cluster.applied() {
        let namespace = applied.namespace.as_deref();
        let Some(object) = cluster.get(&applied.api_version, &applied.kind, namespace, &applied.name).await? else {
            reasons.push(format!("{} {} is gone", applied.kind, applied.name));
            continue;
        };
        if let Some(namespace) = object.pointer("/metadata/namespace").and_then(Value::as_str) {
            namespaces.insert(namespace.to_string());
        }
        let endpoints = if applied.kind == "Service" {
            cluster.get("v1", "Endpoints", namespace, &applied.name).await?
        } else {
            None
        };
        if let Some(reason) = pending(&applied, &object, endpoints.as_ref()) {
            reasons.push(format!("{} {}: {reason}", applied.kind, applied.name));
            subjects.push(object);
        }
    }
    for namespace in &namespaces {
        for pod in cluster.list("v1", "Pod", Some(namespace), None).await? {
            if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Pending")
                && pod.pointer("/metadata/deletionTimestamp").is_none()
            {
                let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                reasons.push(format!("Pod {namespace}/{name} is Pending{}", why_pending(&pod)));
                subjects.push(pod);
            }
        }
    }
    if reasons.is_empty() {
        return Ok(Holds::Yes);
    }
    Ok(Holds::No(Failure {
        summary: format!("not converged: {} thing(s) not realised", reasons.len()),
        differences: reasons,
        subjects,
        ..Failure::default()
    }))
}

/// Why a pod is Pending, as `kubectl describe` would show it: not placed, the scheduler's
/// condition message; placed, its node and each container's waiting reason and message
/// (`ContainerCreating`, `ImagePullBackOff: ...`).
fn why_pending(pod: &Value) -> String {
    let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False"))
            .and_then(|c| c["message"].as_str())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
    };
    let mut waiting = Vec::new();
    for statuses in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for status in pod.pointer(statuses).and_then(Value::as_array).into_iter().flatten() {
            let Some(state) = status.pointer("/state/waiting") else { continue };
            let container = status["name"].as_str().unwrap_or_default();
            let reason = state["reason"].as_str().unwrap_or("Waiting");
            match state["message"].as_str().filter(|m| !m.is_empty()) {
                Some(message) => waiting.push(format!("container {container} {reason}: {message}")),
                None => waiting.push(format!("container {container} {reason}")),
            }
        }
    }
    match waiting.is_empty() {
        true => format!(" on {node}"),
        false => format!(" on {node}: {}", waiting.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pending_pod_says_why_placed_or_not() {
        let unplaced = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}});
        assert_eq!(why_pending(&unplaced), ": 0/3 nodes are available: 3 Insufficient cpu.");
        let placed = json!({"spec": {"nodeName": "node-2"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"web:9\""}}},
            {"name": "log", "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "up", "state": {"running": {}}}]}});
        assert_eq!(
            why_pending(&placed),
            " on node-2: container web ImagePullBackOff: Back-off pulling image \"web:9\"; container log ContainerCreating"
        );
        assert_eq!(why_pending(&json!({"spec": {"nodeName": "node-1"}})), " on node-1");
    }
}
