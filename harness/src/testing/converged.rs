//! `converged`: everything a test applied is realised, as a user of the cluster would
//! judge it: each Deployment Available with every replica updated and available, each
//! StatefulSet, DaemonSet, ReplicaSet and ReplicationController with every replica ready,
//! each Job complete, each Service that selects pods with ready endpoints, each Pod
//! running and ready (or done), and no pod in the applied namespaces left Pending.

use super::cluster::{Applied, Cluster, Error};
use super::expect::{Failure, Holds};
use kube::api::ListParams;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

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

/// From this many applied objects of one kind in one namespace, one list reads them all
/// instead of a GET each: a test of 10,000 Deployments re-checks while they roll out.
const LIST_FROM: usize = 8;

/// How many things not realised a failure lists, and how many of their objects it keeps
/// (their events and logs go into the report).
const SHOWN: usize = 100;
const SHOWN_SUBJECTS: usize = 20;

type Group = (String, String, Option<String>);

pub async fn check(cluster: &Cluster) -> Result<Holds, Error> {
    let applied = cluster.applied();
    let mut sizes: HashMap<Group, usize> = HashMap::new();
    for object in &applied {
        *sizes.entry((object.api_version.clone(), object.kind.clone(), object.namespace.clone())).or_default() += 1;
    }
    let mut listed: HashMap<Group, HashMap<String, Value>> = HashMap::new();
    for ((api_version, kind, namespace), size) in sizes {
        if size < LIST_FROM {
            continue;
        }
        let mut lists = vec![(api_version, kind.clone())];
        if kind == "Service" {
            lists.push(("v1".into(), "Endpoints".into()));
        }
        for (api_version, kind) in lists {
            let items = cluster.list(&api_version, &kind, namespace.as_deref(), None).await?;
            let by_name = items
                .into_iter()
                .filter_map(|o| Some((o.pointer("/metadata/name")?.as_str()?.to_string(), o)))
                .collect();
            listed.insert((api_version, kind, namespace.clone()), by_name);
        }
    }
    let mut reasons = Vec::new();
    let mut subjects = Vec::new();
    let mut namespaces = BTreeSet::new();
    for applied in &applied {
        let Some(object) = read(cluster, &listed, applied, &applied.api_version, &applied.kind).await? else {
            reasons.push(format!("{} {} is gone", applied.kind, applied.name));
            continue;
        };
        if let Some(namespace) = object.pointer("/metadata/namespace").and_then(Value::as_str) {
            namespaces.insert(namespace.to_string());
        }
        let endpoints =
            if applied.kind == "Service" { read(cluster, &listed, applied, "v1", "Endpoints").await? } else { None };
        if let Some(reason) = pending(applied, &object, endpoints.as_deref()) {
            reasons.push(format!("{} {}: {reason}", applied.kind, applied.name));
            subjects.push(object.into_owned());
        }
    }
    for namespace in &namespaces {
        // Only the pending pods are sent: the server filters by phase, as it does for
        // `kubectl get pods --field-selector status.phase=Pending`.
        // Past the first page, the rest are counted as "more" rather than each fetched.
        let params = ListParams::default().fields("status.phase=Pending").limit(SHOWN as u32);
        let (mut pending, mut more) = cluster.list_where("v1", "Pod", Some(namespace), &params).await?;
        let deleting = |pod: &Value| pod.pointer("/metadata/deletionTimestamp").is_some();
        if more && pending.iter().all(deleting) {
            // A first page of pods on their way out says nothing of the rest: read them all.
            let every = ListParams::default().fields("status.phase=Pending");
            (pending, more) = cluster.list_where("v1", "Pod", Some(namespace), &every).await?;
        }
        for pod in pending {
            if !deleting(&pod) {
                let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                reasons.push(format!("Pod {namespace}/{name} is Pending{}", why_pending(&pod)));
                subjects.push(pod);
            }
        }
        if more {
            reasons.push(format!("more pods in {namespace} are Pending"));
        }
    }
    if reasons.is_empty() {
        return Ok(Holds::Yes);
    }
    let summary = format!("not converged: {} thing(s) not realised", reasons.len());
    // A report of 100,000 pending pods says how many, and shows the first of them (with
    // their events and logs): a line and a log fetch for each would bury the cause.
    if reasons.len() > SHOWN {
        let more = reasons.len() - SHOWN;
        reasons.truncate(SHOWN);
        reasons.push(format!("... and {more} more"));
    }
    subjects.truncate(SHOWN_SUBJECTS);
    Ok(Holds::No(Failure { summary, differences: reasons, subjects, ..Failure::default() }))
}

/// The object of `kind` named as `applied` is, from the lists read when its group was
/// listed, else by a GET.
async fn read<'a>(
    cluster: &Cluster,
    listed: &'a HashMap<Group, HashMap<String, Value>>,
    applied: &Applied,
    api_version: &str,
    kind: &str,
) -> Result<Option<Cow<'a, Value>>, Error> {
    let group = (api_version.to_string(), kind.to_string(), applied.namespace.clone());
    match listed.get(&group) {
        Some(items) => Ok(items.get(&applied.name).map(Cow::Borrowed)),
        None => Ok(cluster.get(api_version, kind, applied.namespace.as_deref(), &applied.name).await?.map(Cow::Owned)),
    }
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
