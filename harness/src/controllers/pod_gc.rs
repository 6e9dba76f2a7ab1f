//! The pod garbage collector, as Kubernetes' (`pkg/controller/podgc`): every 20 s of the
//! control plane's clock it force-deletes
//!
//! - pods bound to a node that no longer exists, once the node has been gone for the
//!   40 s quarantine and the API server confirms it (marked `Failed` with the
//!   `DisruptionTarget` condition, reason `DeletionByPodGC`, first: no kubelet is left to
//!   say they stopped);
//! - pods being deleted that were never scheduled (no kubelet will finish them);
//! - the oldest finished pods past `--terminated-pod-gc-threshold` (12,500), evicted ones
//!   first.
//!
//! Before this, a pod on a deleted node stayed `Running` and counted available for ever.
//! `decide` is the pure part: from the pods, the nodes and how long each missing node has
//! been missing, what to delete. Left out: terminating pods on out-of-service nodes.

use super::Error;
use crate::clock::Clock;
use crate::informers::{Informer, Informers};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `gcCheckPeriod`.
pub const PERIOD: Duration = Duration::from_secs(20);
/// `quarantineTime`: how long a node must have been gone before its pods are.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// `--terminated-pod-gc-threshold`'s default.
pub const TERMINATED_THRESHOLD: usize = 12_500;
const FIELD_MANAGER: &str = "PodGC";

/// Why a pod is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Why {
    /// Its node is gone: marked failed with the condition first.
    Orphaned,
    /// Being deleted, never scheduled: marked failed first.
    Unscheduled,
    /// Finished, past the threshold.
    Terminated,
}

/// What `decide` reads.
struct Snapshot<'a> {
    pods: &'a [Arc<Pod>],
    nodes: &'a BTreeSet<String>,
    /// Nodes pods are bound to that are missing, and since when.
    missing_since: &'a HashMap<String, SystemTime>,
    now: SystemTime,
    threshold: usize,
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// `eviction.PodIsEvicted`.
fn evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed" && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The pods to delete, each with why, in order; and the missing nodes to confirm gone
/// with the API server before their pods go.
fn decide(snapshot: &Snapshot<'_>) -> Vec<(Arc<Pod>, Why)> {
    let mut delete = Vec::new();
    // `gcTerminated`.
    let mut finished: Vec<&Arc<Pod>> = snapshot.pods.iter().filter(|p| terminated(p)).collect();
    if snapshot.threshold > 0 && finished.len() > snapshot.threshold {
        finished.sort_by_key(|pod| {
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second());
            (!evicted(pod), created, pod.name_any())
        });
        let excess = finished.len() - snapshot.threshold;
        delete.extend(finished.into_iter().take(excess).map(|pod| (Arc::clone(pod), Why::Terminated)));
    }
    for pod in snapshot.pods {
        if delete.iter().any(|(d, _)| Arc::ptr_eq(d, pod)) {
            continue;
        }
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            // `gcOrphaned`: quarantined long enough.
            Some(node) if !snapshot.nodes.contains(node) => {
                let gone_long = snapshot
                    .missing_since
                    .get(node)
                    .is_some_and(|since| snapshot.now.duration_since(*since).unwrap_or_default() >= QUARANTINE);
                if gone_long {
                    delete.push((Arc::clone(pod), Why::Orphaned));
                }
            }
            Some(_) => {}
            // `gcUnscheduledTerminating`.
            None if pod.metadata.deletion_timestamp.is_some() => delete.push((Arc::clone(pod), Why::Unscheduled)),
            None => {}
        }
    }
    delete
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    run_with(client, &informers.pods, &informers.nodes, clock, TERMINATED_THRESHOLD).await;
}

async fn run_with(client: kube::Client, pods: &Informer<Pod>, nodes: &Informer<Node>, clock: &Clock, threshold: usize) {
    pods.synced().await;
    nodes.synced().await;
    let mut missing_since: HashMap<String, SystemTime> = HashMap::new();
    loop {
        clock.sleep(PERIOD).await;
        let all = pods.all();
        let present: BTreeSet<String> = nodes.all().iter().map(|n| n.name_any()).collect();
        let now = clock.now();
        // Nodes pods name that the cache lacks: quarantined from when first seen missing.
        let named: BTreeSet<&str> = all.iter().filter_map(|p| p.spec.as_ref()?.node_name.as_deref()).collect();
        missing_since.retain(|node, _| named.contains(node.as_str()) && !present.contains(node));
        for node in named.iter().filter(|n| !present.contains(**n)) {
            missing_since.entry((*node).to_string()).or_insert(now);
        }
        let snapshot = Snapshot { pods: &all, nodes: &present, missing_since: &missing_since, now, threshold };
        let mut confirmed: HashMap<String, bool> = HashMap::new();
        for (pod, why) in decide(&snapshot) {
            if why == Why::Orphaned {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                // The cache may lag a node that came back: the API server has the last word.
                let gone = match confirmed.get(&node) {
                    Some(gone) => *gone,
                    None => {
                        let api: Api<Node> = Api::all(client.clone());
                        let gone = matches!(api.get_opt(&node).await, Ok(None));
                        confirmed.insert(node, gone);
                        gone
                    }
                };
                if !gone {
                    continue;
                }
            }
            let _ = remove(&client, &pod, &why).await;
        }
    }
}

/// `markFailedAndDeletePodWithCondition`, then a delete with no grace.
async fn remove(client: &kube::Client, pod: &Pod, why: &Why) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    if !terminated(pod) && *why != Why::Terminated {
        let mut status = json!({"phase": "Failed"});
        if *why == Why::Orphaned {
            status["conditions"] = json!([{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
            }]);
        }
        let apply = json!({"apiVersion": "v1", "kind": "Pod", "status": status});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(&name, &params, &Patch::Apply(apply)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
    // This pod, not a namesake made since (a StatefulSet's).
    let preconditions = kube::api::Preconditions { uid: pod.metadata.uid.clone(), resource_version: None };
    let params =
        DeleteParams { grace_period_seconds: Some(0), preconditions: Some(preconditions), ..DeleteParams::default() };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: &str) -> Arc<Pod> {
        let mut pod = json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
                             "spec": {"containers": []}, "status": {"phase": phase}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn names(decided: &[(Arc<Pod>, Why)]) -> Vec<(String, Why)> {
        decided.iter().map(|(p, w)| (p.name_any(), w.clone())).collect()
    }

    #[test]
    fn pods_of_a_node_gone_past_the_quarantine_are_removed() {
        let pods = [
            pod("a", Some("node-1"), "Running", "2026-01-01T00:00:00Z"),
            pod("b", Some("node-2"), "Running", "2026-01-01T00:00:00Z"),
        ];
        let nodes: BTreeSet<String> = ["node-1".to_string()].into();
        let missing = HashMap::from([("node-2".to_string(), at(1_000))]);
        let early = Snapshot { pods: &pods, nodes: &nodes, missing_since: &missing, now: at(1_039), threshold: 10 };
        assert!(decide(&early).is_empty(), "still in quarantine");
        let late = Snapshot { now: at(1_040), ..early };
        assert_eq!(names(&decide(&late)), [("b".to_string(), Why::Orphaned)]);
    }

    #[test]
    fn unscheduled_terminating_pods_and_finished_ones_past_the_threshold_go() {
        let mut deleting = (*pod("pending", None, "Pending", "2026-01-01T00:00:00Z")).clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        let mut evicted = (*pod("evicted", Some("node-1"), "Failed", "2026-01-01T00:05:00Z")).clone();
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = [
            Arc::new(deleting),
            pod("waiting", None, "Pending", "2026-01-01T00:00:00Z"),
            pod("old", Some("node-1"), "Succeeded", "2026-01-01T00:01:00Z"),
            pod("new", Some("node-1"), "Succeeded", "2026-01-01T00:02:00Z"),
            Arc::new(evicted),
            pod("running", Some("node-1"), "Running", "2026-01-01T00:00:00Z"),
        ];
        let nodes: BTreeSet<String> = ["node-1".to_string()].into();
        let missing = HashMap::new();
        let snapshot = Snapshot { pods: &pods, nodes: &nodes, missing_since: &missing, now: at(0), threshold: 1 };
        assert_eq!(
            names(&decide(&snapshot)),
            [
                ("evicted".to_string(), Why::Terminated),
                ("old".to_string(), Why::Terminated),
                ("pending".to_string(), Why::Unscheduled),
            ]
        );
        let unlimited = Snapshot { threshold: 0, ..snapshot };
        assert_eq!(names(&decide(&unlimited)), [("pending".to_string(), Why::Unscheduled)]);
    }
}
