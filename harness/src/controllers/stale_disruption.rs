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
use crate::clock::Clock;
use crate::informers::Informers;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::PodCondition;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
#[cfg(test)]
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `stalePodDisruptionTimeout`.
pub const TIMEOUT: Duration = Duration::from_secs(120);
const PERIOD: Duration = Duration::from_secs(15);

/// When a pod's `DisruptionTarget` condition turned `True`, if it did and the pod is
/// neither being deleted nor finished, and the condition is not the kubelet's (which may
/// take any time before the pod terminates): `nonTerminatingPodHasStaleDisruptionCondition`.
fn disrupted_since(pod: &Pod) -> Option<SystemTime> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let condition = status.conditions.as_ref()?.iter().find(|c| c.type_ == "DisruptionTarget")?;
    if condition.status != "True" || condition.reason.as_deref() == Some("TerminationByKubelet") {
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

/// The condition replaced by a `False` one with no reason or message (`UpdatePodCondition`,
/// then `UpdateStatus`), on the pod as the cache has it: a stale cache is a conflict, and
/// the next look tries again.
async fn reset(client: &kube::Client, pod: &Pod, now: SystemTime) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut next = pod.clone();
    let Some(conditions) = next.status.as_mut().and_then(|s| s.conditions.as_mut()) else { return Ok(()) };
    for condition in conditions.iter_mut().filter(|c| c.type_ == "DisruptionTarget") {
        *condition = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "False".into(),
            last_transition_time: Some(super::time_at(now)),
            ..PodCondition::default()
        };
    }
    match api.replace_status(&pod.name_any(), &PostParams::default(), &next).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
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
        let mut finished = (*pod("finished", Some(("True", "2026-01-01T00:00:00Z")), false)).clone();
        finished.status.as_mut().unwrap().phase = Some("Failed".into());
        let mut by_kubelet = (*pod("kubelet", Some(("True", "2026-01-01T00:00:00Z")), false)).clone();
        by_kubelet.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].reason =
            Some("TerminationByKubelet".into());
        let pods: Vec<Arc<Pod>> = pods.into_iter().chain([Arc::new(finished), Arc::new(by_kubelet)]).collect();
        let reset: Vec<String> = decide(&pods, now).iter().map(|p| p.name_any()).collect();
        assert_eq!(reset, ["stale"]);
    }
}
