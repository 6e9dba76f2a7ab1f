//! The disruption controller, as Kubernetes' (`pkg/controller/disruption`): each
//! PodDisruptionBudget's status says how many of its pods are healthy (ready, not being
//! deleted, not just evicted), how many must be (`desiredHealthy`), how many there should
//! be (`expectedPods`) and so how many may be disrupted now (`disruptionsAllowed`), which
//! the eviction subresource reads and decrements.
//!
//! - `minAvailable: N` wants N healthy of the pods the selector takes;
//! - `minAvailable: P%` and `maxUnavailable` count against the scale of the pods'
//!   controllers (a Deployment through its ReplicaSet, a ReplicaSet, a StatefulSet, a
//!   ReplicationController, or any kind with a `scale` subresource), rounding up; a pod
//!   without a controller is reported (`UnmanagedPods`), a pod whose controller has no
//!   scale fails the budget safe (nothing allowed, `SyncFailed`).
//! - A pod an eviction recorded in `disruptedPods` does not count as healthy for two
//!   minutes (`DeletionTimeout`); the budget is looked at again when that runs out, on the
//!   control plane's clock.
//!
//! `decide` is the pure part: from the budget, its pods, their controllers' scales and the
//! time, the status and the events. Stale `DisruptionTarget` conditions of pods no
//! deletion followed are reset by the controller's other loop (`stale_disruption.rs`).

use super::{Error, Wakeups, Wiring, label_selector, scaled};
use crate::clock::{self, Clock};
use crate::events::{self, Source, Type};
use crate::informers::{Informer, Informers};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const COMPONENT: &str = "controllermanager";
const DELETION_TIMEOUT: Duration =
    Duration::from_secs(crate::apiserver::eviction::DELETION_TIMEOUT_SECONDS.unsigned_abs());

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    replication_controllers: Informer<ReplicationController>,
}

/// The labels of a pod as a selector reads them.
fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether the budget's selector takes the pod (an empty selector takes every pod of the
/// namespace, as in `policy/v1`; a missing one none).
fn selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    let selector = budget.spec.as_ref().and_then(|s| s.selector.as_ref());
    selector.and_then(|s| label_selector(s).ok()).is_some_and(|s| s.matches(&labels(pod)))
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let budgets = informers.pod_disruption_budgets.clone();
    // A pod's change concerns the budgets that select it.
    let budgets_of = move |pod: Arc<Pod>| {
        let namespace = pod.namespace().unwrap_or_default();
        budgets
            .in_namespace(&namespace)
            .into_iter()
            .filter(|budget| selects(budget, &pod))
            .map(|budget| ObjectRef::from_obj(budget.as_ref()))
            .collect::<Vec<_>>()
    };
    let mut wiring = Wiring::of(&informers.pod_disruption_budgets)
        .watches(&informers.pods, budgets_of)
        .reads(&informers.replicasets)
        .reads(&informers.deployments)
        .reads(&informers.statefulsets)
        .reads(&informers.replication_controllers);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
        replicasets: informers.replicasets.clone(),
        deployments: informers.deployments.clone(),
        statefulsets: informers.statefulsets.clone(),
        replication_controllers: informers.replication_controllers.clone(),
    });
    wiring.run(reconcile, context).await;
}

/// What a pod's controller says of the budget's expected count.
#[derive(Clone, Debug, PartialEq)]
enum Controller {
    /// The controller (its uid: a Deployment stands for its ReplicaSets) and its scale.
    Scale(String, i32),
    /// Its kind has no scale subresource: the budget cannot be computed.
    NoScale(String),
    /// Not found (gone, or not yet in the caches).
    Missing,
}

/// What `decide` reads.
struct Snapshot<'a> {
    budget: &'a PodDisruptionBudget,
    pods: Vec<Arc<Pod>>,
    /// Each controller reference's uid → what it is.
    controllers: HashMap<String, Controller>,
    now: SystemTime,
}

/// What `decide` says to do.
#[derive(Debug, PartialEq)]
struct Decision {
    /// The budget's status, whole.
    status: Value,
    /// Events on the budget: (type, reason, message).
    events: Vec<(Type, &'static str, String)>,
    /// Pods an eviction recorded that are still not deleted past the timeout.
    not_deleted: Vec<String>,
    /// When to look again (the earliest recorded eviction's timeout).
    recheck: Option<Duration>,
}

fn is_controller(reference: &OwnerReference) -> bool {
    reference.controller == Some(true)
}

/// `getExpectedScale`: the sum of the scales of the pods' controllers, and the pods
/// without one.
fn expected_scale(snapshot: &Snapshot<'_>) -> Result<(i64, Vec<String>), String> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in &snapshot.pods {
        let Some(reference) = pod.owner_references().iter().find(|r| is_controller(r)) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        match snapshot.controllers.get(&reference.uid) {
            Some(Controller::Scale(uid, scale)) => {
                scales.insert(uid.clone(), *scale);
            }
            Some(Controller::NoScale(resource)) => {
                return Err(format!("{resource} does not implement the scale subresource"));
            }
            Some(Controller::Missing) | None => {
                return Err(format!("found no controllers for pod {:?}", pod.name_any()));
            }
        }
    }
    Ok((scales.values().map(|s| i64::from(*s)).sum(), unmanaged))
}

fn time_of(text: &str) -> Option<SystemTime> {
    clock::parse(text)
}

/// The status the budget should have, and what to say.
fn decide(snapshot: &Snapshot<'_>) -> Result<Decision, String> {
    let budget = snapshot.budget;
    let spec = budget.spec.clone().unwrap_or_default();
    let mut events = Vec::new();
    if snapshot.pods.is_empty() {
        events.push((Type::Normal, "NoPods", "No matching pods found".to_string()));
    }
    let pods = snapshot.pods.len() as i64;
    let (expected, desired, unmanaged) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max_unavailable), _) => {
            let (expected, unmanaged) = expected_scale(snapshot)?;
            let unavailable = scaled(max_unavailable, expected, true).map_err(|e| e.to_string())?;
            (expected, (expected - unavailable).max(0), unmanaged)
        }
        (None, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(count))) => {
            (pods, i64::from(*count), Vec::new())
        }
        (None, Some(min_available)) => {
            let (expected, unmanaged) = expected_scale(snapshot)?;
            (expected, scaled(min_available, expected, true).map_err(|e| e.to_string())?, unmanaged)
        }
        (None, None) => (0, 0, Vec::new()),
    };
    if !unmanaged.is_empty() {
        let selector = spec.selector.as_ref().and_then(|s| label_selector(s).ok()).map(|s| s.to_string());
        events.push((
            Type::Warning,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, \
                 the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To \
                 account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                selector.unwrap_or_default()
            ),
        ));
    }
    // `buildDisruptedPodMap`: recorded evictions still waiting for their pod's delete.
    let recorded = budget.status.as_ref().and_then(|s| s.disrupted_pods.clone()).unwrap_or_default();
    let mut disrupted: BTreeMap<String, String> = BTreeMap::new();
    let mut not_deleted = Vec::new();
    let mut recheck: Option<SystemTime> = None;
    for pod in &snapshot.pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(&pod.name_any()) else { continue };
        let at_text = at.0.to_string();
        let Some(when) = time_of(&at_text) else { continue };
        let expected_deletion = when + DELETION_TIMEOUT;
        if expected_deletion < snapshot.now {
            not_deleted.push(pod.name_any());
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            disrupted.insert(pod.name_any(), clock::format(when));
        }
    }
    // `countHealthyPods`.
    let healthy = snapshot
        .pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !disrupted.contains_key(&pod.name_any()))
        .filter(|pod| {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
            kubeyard_compiler::pod::ready(conditions.map(|c| (c.type_.as_str(), c.status.as_str())))
        })
        .count() as i64;
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = budget.metadata.generation.unwrap_or(0);
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": conditions_of(budget),
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = json!(disrupted);
    }
    let (condition, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    set_condition(&mut status, condition, reason, "", generation, snapshot.now);
    Ok(Decision {
        status,
        events,
        not_deleted,
        recheck: recheck.map(|at| at.duration_since(snapshot.now).unwrap_or_default()),
    })
}

fn conditions_of(budget: &PodDisruptionBudget) -> Value {
    let conditions = budget.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    serde_json::to_value(conditions).unwrap_or_else(|_| json!([]))
}

/// `meta.SetStatusCondition` of `DisruptionAllowed`: the transition time moves only when
/// the status does.
fn set_condition(status: &mut Value, condition: &str, reason: &str, message: &str, generation: i64, now: SystemTime) {
    let fresh = json!({
        "type": "DisruptionAllowed",
        "status": condition,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": clock::format(now),
    });
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return };
    match conditions.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(existing) => {
            let kept = (existing["status"] == condition).then(|| existing["lastTransitionTime"].clone());
            *existing = fresh;
            if let Some(kept) = kept {
                existing["lastTransitionTime"] = kept;
            }
        }
        None => conditions.push(fresh),
    }
}

/// `failSafe`: nothing allowed, and why.
fn fail_safe(budget: &PodDisruptionBudget, why: &str, now: SystemTime) -> Value {
    let mut status = serde_json::to_value(budget.status.clone().unwrap_or_default()).unwrap_or_else(|_| json!({}));
    status["disruptionsAllowed"] = json!(0);
    let generation = status["observedGeneration"].as_i64().unwrap_or(0);
    set_condition(&mut status, "False", "SyncFailed", why, generation, now);
    status
}

/// The controllers of the budget's pods, from the caches (and for kinds the caches do
/// not hold, from their `scale` subresource).
async fn controllers(context: &Context, namespace: &str, pods: &[Arc<Pod>]) -> HashMap<String, Controller> {
    let mut found = HashMap::new();
    for pod in pods {
        let Some(reference) = pod.owner_references().iter().find(|r| is_controller(r)) else { continue };
        if found.contains_key(&reference.uid) {
            continue;
        }
        let controller = controller_of(context, namespace, reference).await;
        found.insert(reference.uid.clone(), controller);
    }
    found
}

/// The finders, in Kubernetes' order: ReplicationController, Deployment (through its
/// ReplicaSet), ReplicaSet, StatefulSet, then any kind's `scale`.
async fn controller_of(context: &Context, namespace: &str, reference: &OwnerReference) -> Controller {
    let (name, uid) = (reference.name.as_str(), reference.uid.as_str());
    let same = |u: Option<String>| u.as_deref() == Some(uid);
    match (reference.api_version.as_str(), reference.kind.as_str()) {
        ("v1", "ReplicationController") => match context.replication_controllers.get(namespace, name) {
            Some(rc) if same(rc.uid()) => {
                Controller::Scale(uid.into(), rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
            }
            _ => Controller::Missing,
        },
        ("apps/v1", "ReplicaSet") => {
            let Some(set) = context.replicasets.get(namespace, name).filter(|s| same(s.uid())) else {
                return Controller::Missing;
            };
            if let Some(owner) = set.owner_references().iter().find(|r| is_controller(r) && r.kind == "Deployment") {
                return match context.deployments.get(namespace, &owner.name) {
                    Some(deployment) if deployment.uid().as_deref() == Some(owner.uid.as_str()) => Controller::Scale(
                        owner.uid.clone(),
                        deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ),
                    _ => Controller::Missing,
                };
            }
            Controller::Scale(uid.into(), set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
        }
        ("apps/v1", "StatefulSet") => match context.statefulsets.get(namespace, name) {
            Some(set) if same(set.uid()) => {
                Controller::Scale(uid.into(), set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
            }
            _ => Controller::Missing,
        },
        (api_version, kind) => scale_of(context, namespace, api_version, kind, reference).await,
    }
}

/// `getScaleController`: a kind's `scale` subresource, when discovery says it has one.
async fn scale_of(
    context: &Context,
    namespace: &str,
    api_version: &str,
    kind: &str,
    reference: &OwnerReference,
) -> Controller {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let Ok((resource, capabilities)) = kube::discovery::pinned_kind(&context.client, &gvk).await else {
        return Controller::Missing;
    };
    let qualified = if group.is_empty() { resource.plural.clone() } else { format!("{}.{group}", resource.plural) };
    if !capabilities.subresources.iter().any(|(sub, _)| sub.plural == format!("{}/scale", resource.plural)) {
        return Controller::NoScale(qualified);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), namespace, &resource);
    match api.get_subresource("scale", &reference.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
            let replicas = scale.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            Controller::Scale(reference.uid.clone(), i32::try_from(replicas).unwrap_or(0))
        }
        _ => Controller::Missing,
    }
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = budget.namespace().unwrap_or_default();
    let now = context.clock.now();
    let pods: Vec<Arc<Pod>> =
        context.pods.in_namespace(&namespace).into_iter().filter(|pod| selects(&budget, pod)).collect();
    let controllers = controllers(&context, &namespace, &pods).await;
    let snapshot = Snapshot { budget: &budget, pods, controllers, now };
    let api: Api<PodDisruptionBudget> = Api::namespaced(context.client.clone(), &namespace);
    let timestamp = clock::format(now);
    let source = Source { component: COMPONENT, host: None };
    let object = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": budget.metadata});
    let status = match decide(&snapshot) {
        Ok(decision) => {
            for (kind, reason, message) in &decision.events {
                events::record(&context.client, &object, source, *kind, reason, message, &timestamp).await;
            }
            for pod in &decision.not_deleted {
                let pod = json!({"metadata": {"name": pod, "namespace": namespace}});
                let message =
                    format!("Pod was expected by PDB {namespace}/{} to be deleted but it wasn't", budget.name_any());
                events::record(&context.client, &pod, source, Type::Warning, "NotDeleted", &message, &timestamp).await;
            }
            if let Some(after) = decision.recheck {
                context.wakeups.after(&budget, after);
            }
            decision.status
        }
        Err(why) => {
            let message = format!("Failed to calculate the number of expected pods: {why}");
            let (kind, reason) = (Type::Warning, "CalculateExpectedPodCountFailed");
            events::record(&context.client, &object, source, kind, reason, &message, &timestamp).await;
            fail_safe(&budget, &why, now)
        }
    };
    let current = serde_json::to_value(budget.status.clone().unwrap_or_default()).unwrap_or_default();
    if super::same_content(&current, &status) {
        return Ok(Action::await_change());
    }
    let mut next = budget.as_ref().clone();
    next.status = Some(serde_json::from_value(status).map_err(|e| Error::Invalid(e.to_string()))?);
    api.replace_status(&budget.name_any(), &PostParams::default(), &next).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn now() -> SystemTime {
        clock::parse(NOW).unwrap()
    }

    fn budget(mut spec: Value, status: Value) -> PodDisruptionBudget {
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool, owner: Option<(&str, &str)>) -> Arc<Pod> {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some((kind, uid)) = owner {
            pod["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": "web-abc", "uid": uid, "controller": true}]);
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    fn decide_for(
        budget: &PodDisruptionBudget,
        pods: Vec<Arc<Pod>>,
        controllers: &[(&str, Controller)],
    ) -> Result<Decision, String> {
        let controllers = controllers.iter().map(|(uid, c)| (uid.to_string(), c.clone())).collect();
        decide(&Snapshot { budget, pods, controllers, now: now() })
    }

    fn counts(decision: &Decision) -> [i64; 4] {
        let status = &decision.status;
        ["currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed"].map(|k| status[k].as_i64().unwrap())
    }

    #[test]
    fn min_available_as_a_count_wants_that_many_of_the_pods_selected() {
        let budget = budget(json!({"minAvailable": 2}), json!({}));
        let pods = vec![pod("a", true, None), pod("b", true, None), pod("c", false, None)];
        let decision = decide_for(&budget, pods, &[]).unwrap();
        assert_eq!(counts(&decision), [2, 2, 3, 0]);
        let condition = &decision.status["conditions"][0];
        assert_eq!((&condition["status"], &condition["reason"]), (&json!("False"), &json!("InsufficientPods")));
        assert_eq!(decision.status["observedGeneration"], 2);
        assert!(decision.events.is_empty(), "unmanaged pods only matter where scale counts");

        let pods = vec![pod("a", true, None), pod("b", true, None), pod("c", true, None)];
        let decision = decide_for(&budget, pods, &[]).unwrap();
        assert_eq!(counts(&decision), [3, 2, 3, 1]);
        assert_eq!(decision.status["conditions"][0]["reason"], "SufficientPods");
    }

    #[test]
    fn max_unavailable_and_percentages_count_the_controllers_scale_rounding_up() {
        let owned = |name| pod(name, true, Some(("ReplicaSet", "rs-1")));
        let scale = [("rs-1", Controller::Scale("deploy-1".into(), 5))];
        // Four of five pods exist: the Deployment's scale is what is expected.
        let pods = || vec![owned("a"), owned("b"), owned("c"), owned("d")];
        let decision = decide_for(&budget(json!({"maxUnavailable": "30%"}), json!({})), pods(), &scale).unwrap();
        assert_eq!(counts(&decision), [4, 3, 5, 1], "30% of 5 is 1.5, rounded up to 2 unavailable");
        let decision = decide_for(&budget(json!({"minAvailable": "50%"}), json!({})), pods(), &scale).unwrap();
        assert_eq!(counts(&decision), [4, 3, 5, 1], "50% of 5 rounds up to 3");
        let decision = decide_for(&budget(json!({"maxUnavailable": 9}), json!({})), pods(), &scale).unwrap();
        assert_eq!(counts(&decision), [4, 0, 5, 4]);
    }

    #[test]
    fn pods_without_a_scale_fail_safe_and_unmanaged_ones_are_reported() {
        let budget = budget(json!({"maxUnavailable": 1}), json!({}));
        let job_pod = pod("a", true, Some(("Job", "job-1")));
        let refused = decide_for(&budget, vec![job_pod], &[("job-1", Controller::NoScale("jobs.batch".into()))]);
        assert_eq!(refused.unwrap_err(), "jobs.batch does not implement the scale subresource");
        let missing = decide_for(&budget, vec![pod("a", true, Some(("ReplicaSet", "gone")))], &[]);
        assert_eq!(missing.unwrap_err(), "found no controllers for pod \"a\"");
        let failed = fail_safe(&budget, "found no controllers for pod \"a\"", now());
        assert_eq!(failed["disruptionsAllowed"], 0);
        assert_eq!(failed["conditions"][0]["reason"], "SyncFailed");

        let decision = decide_for(&budget, vec![pod("a", true, None)], &[]).unwrap();
        assert_eq!(decision.events[0].1, "UnmanagedPods");
        assert!(decision.events[0].2.contains("(selector: app=web)"), "{}", decision.events[0].2);
        assert_eq!(counts(&decision), [1, 0, 0, 0], "nothing expected allows nothing");
        let empty = decide_for(&budget, Vec::new(), &[]).unwrap();
        assert_eq!(empty.events, vec![(Type::Normal, "NoPods", "No matching pods found".to_string())]);
    }

    #[test]
    fn evicted_pods_do_not_count_until_deleted_or_timed_out() {
        let status = json!({"disruptedPods": {"a": "2026-01-01T00:09:00Z", "b": "2026-01-01T00:05:00Z"}});
        let budget = budget(json!({"minAvailable": 1}), status);
        let pods = vec![pod("a", true, None), pod("b", true, None), pod("c", true, None)];
        let decision = decide_for(&budget, pods, &[]).unwrap();
        // "a" was evicted a minute ago: not healthy, kept, looked at again when its two
        // minutes are up; "b" five minutes ago: reported, dropped, healthy again.
        assert_eq!(counts(&decision), [2, 1, 3, 1]);
        assert_eq!(decision.status["disruptedPods"], json!({"a": "2026-01-01T00:09:00Z"}));
        assert_eq!(decision.not_deleted, vec!["b".to_string()]);
        assert_eq!(decision.recheck, Some(Duration::from_secs(60)));
    }

    #[test]
    fn the_condition_keeps_its_transition_time_while_its_status_holds() {
        let before = json!({"conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let budget = budget(json!({"minAvailable": 0}), before);
        let decision = decide_for(&budget, vec![pod("a", true, None)], &[]).unwrap();
        assert_eq!(decision.status["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        let decision = decide_for(&budget, vec![pod("a", false, None)], &[]).unwrap();
        assert_eq!(decision.status["conditions"][0]["lastTransitionTime"], NOW);
    }
}
