//! The disruption controller's other loop (`syncStalePodDisruption` in
//! `pkg/controller/disruption`): a pod marked with the `DisruptionTarget` condition (by an
//! eviction, the taint manager, pod GC) that is still not being deleted two minutes after
//! the condition was set (`stalePodDisruptionTimeout`: the deletion that should have
//! followed failed) gets the condition back to `False`, so that it no longer reads as about
//! to go. Kubernetes queues each such pod for its moment; here the pod cache is looked
//! over every 15 s of the control plane's clock, which a 2-minute timeout leaves ample room
//! for, and which costs nothing per pod change (a cluster of 30,000 pods changes often).
//!
//! `decide` is the pure part: from the pods and the time, which to reset.

use super::Error;
use crate::clock::{self, Clock};
use crate::informers::Informers;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `stalePodDisruptionTimeout`.
pub const TIMEOUT: Duration = Duration::from_secs(120);
const PERIOD: Duration = Duration::from_secs(15);
const FIELD_MANAGER: &str = "DisruptionController";

/// When a pod's `DisruptionTarget` condition turned `True`, if it did and the pod is not
/// being deleted (`nonTerminatingPodHasStaleDisruptionCondition`).
fn disrupted_since(pod: &Pod) -> Option<SystemTime> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let condition = conditions.iter().find(|c| c.type_ == "DisruptionTarget")?;
    if condition.status != "True" {
        return None;
    }
    let since = condition.last_transition_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(since).unwrap_or(0)))
}

/// The pods whose condition has been stale for the timeout.
fn decide(pods: &[Arc<Pod>], now: SystemTime) -> Vec<Arc<Pod>> {
    pods.iter().filter(|pod| disrupted_since(pod).is_some_and(|since| since + TIMEOUT <= now)).cloned().collect()
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let pods = informers.pods.clone();
    pods.synced().await;
    loop {
        clock.sleep(PERIOD).await;
        let now = clock.now();
        for pod in decide(&pods.all(), now) {
            let _ = reset(&client, &pod, now).await;
        }
    }
}

/// The condition back to `False`, applied as the controller's own field manager (its
/// reason and message stay the evictor's, as in Kubernetes).
async fn reset(client: &kube::Client, pod: &Pod, now: SystemTime) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let condition = json!({"type": "DisruptionTarget", "status": "False", "lastTransitionTime": clock::format(now)});
    let apply = json!({"apiVersion": "v1", "kind": "Pod", "status": {"conditions": [condition]}});
    match api.patch_status(&pod.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(apply)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, condition: Option<(&str, &str)>, deleting: bool) -> Arc<Pod> {
        let mut pod = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": []}});
        if let Some((status, since)) = condition {
            pod["status"] = json!({"conditions": [{"type": "DisruptionTarget", "status": status,
                                                   "reason": "EvictionByEvictionAPI", "lastTransitionTime": since}]});
        }
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    #[test]
    fn a_disruption_no_deletion_followed_is_reset_after_two_minutes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_780); // 2026-01-01T00:03:00Z
        let pods = vec![
            pod("stale", Some(("True", "2026-01-01T00:00:00Z")), false),
            pod("recent", Some(("True", "2026-01-01T00:02:00Z")), false),
            pod("going", Some(("True", "2026-01-01T00:00:00Z")), true),
            pod("reset", Some(("False", "2026-01-01T00:00:00Z")), false),
            pod("plain", None, false),
        ];
        let reset: Vec<String> = decide(&pods, now).iter().map(|p| p.name_any()).collect();
        assert_eq!(reset, ["stale"]);
    }
}
