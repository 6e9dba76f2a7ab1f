//! The ReplicaSet controller, which also runs ReplicationControllers (as Kubernetes does,
//! through an adapter: `Replicated`): as many pods as `spec.replicas`, made from the
//! template and owned by the set; orphans that match the selector adopted, owned pods that
//! no longer match released; surplus pods deleted in Kubernetes' order (unscheduled
//! before scheduled, pending before running, not ready before ready, newest first); status
//! counted from the pods.
//!
//! Pods are read from the shared informer's cache (the set's own, and the namespace's
//! orphans), once it holds the pods the last reconcile made or deleted, so a pod made a
//! moment ago is never made twice.

use super::pods::{Naming, from_template, is_available, next_available, template_metadata};
use super::{Error, FormerOwners, Wakeups, Wiring};
use crate::clock::Clock;
use crate::events;
use crate::informers::{Expectations, Informer, Informers, Kind, UNMET_RETRY, Written, controller_of, key_of_object};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Pods made or deleted in one pass at most (Kubernetes' `burstReplicas`).
const BURST: usize = 500;

/// What the controller reads of a ReplicaSet or a ReplicationController: they differ
/// only in their selector's form and their API group.
pub trait Replicated: Kind + serde::Serialize + Resource<Scope = k8s_openapi::NamespaceResourceScope> {
    /// Who reports its events: `replicaset-controller`, `replication-controller`.
    const COMPONENT: &'static str;
    fn informer(informers: &Informers) -> &Informer<Self>;
    fn selector(&self) -> Result<Selector, Error>;
    fn replicas(&self) -> Option<i32>;
    fn min_ready_seconds(&self) -> i32;
    /// The pod template as JSON (`metadata`, `spec`); `null` when there is none.
    fn template(&self) -> Value;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn informer(informers: &Informers) -> &Informer<Self> {
        &informers.replicasets
    }
    fn selector(&self) -> Result<Selector, Error> {
        let spec = self.spec.as_ref().ok_or_else(|| Error::Invalid("a ReplicaSet without a spec".into()))?;
        super::label_selector(&spec.selector)
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Value {
        self.spec.as_ref().and_then(|s| serde_json::to_value(&s.template).ok()).unwrap_or(Value::Null)
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn informer(informers: &Informers) -> &Informer<Self> {
        &informers.replication_controllers
    }
    /// A map of equalities; none at all selects nothing (the API server defaults it to
    /// the template's labels).
    fn selector(&self) -> Result<Selector, Error> {
        let selector = self.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty());
        let Some(selector) = selector else { return Ok(Selector::nothing()) };
        let json = serde_json::to_value(selector).map_err(|e| Error::Invalid(e.to_string()))?;
        Selector::from_map(Some(&json)).map_err(|e| Error::Invalid(e.to_string()))
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Value {
        self.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or(Value::Null)
    }
}

struct Context<K: Replicated> {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<K>,
    pods: Informer<Pod>,
    pods_expected: Expectations<Pod>,
    sets_expected: Expectations<K>,
}

/// Runs the ReplicaSet controller until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    run_for::<ReplicaSet>(client, informers, clock).await
}

/// Runs the ReplicationController controller until the task is dropped.
pub async fn run_replication_controllers(client: kube::Client, informers: &Informers, clock: &Clock) {
    run_for::<ReplicationController>(client, informers, clock).await
}

async fn run_for<K: Replicated>(client: kube::Client, informers: &Informers, clock: &Clock) {
    let sets = K::informer(informers);
    // An orphan concerns every set of its namespace that selects it (Kubernetes'
    // `getPodReplicaSets` on a pod's add and update): one may adopt it.
    // And a pod whose controller changed concerns the set it left.
    let (selecting, former) = (sets.clone(), FormerOwners::<Pod, K>::new(&informers.pods));
    let orphan_of = move |pod: Arc<Pod>| former.concerned(&pod, &selecting, adopters);
    let mut wiring = Wiring::of(sets).owns(&informers.pods).watches(&informers.pods, orphan_of).named_by_kind();
    let context = Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
        pods_expected: Expectations::new(&informers.pods),
        sets_expected: Expectations::new(sets),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

/// The sets, of those given, whose selector selects the pod.
fn adopters<K: Replicated>(pod: &Pod, sets: Vec<Arc<K>>) -> Vec<ObjectRef<K>> {
    sets.into_iter()
        .filter(|set| set.selector().is_ok_and(|s| !s.is_nothing() && s.matches(pod.labels())))
        .map(|set| ObjectRef::from_obj(set.as_ref()))
        .collect()
}

async fn reconcile<K: Replicated>(set: Arc<K>, context: Arc<Context<K>>) -> Result<Action, Error> {
    let key = key_of_object(set.as_ref());
    if !context.pods_expected.met(&key) || !context.sets_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    // Its own pods, then the namespace's orphans it may adopt.
    let pods = match set.uid() {
        Some(uid) => context.pods.controlled_by(&namespace, &uid),
        None => Vec::new(),
    };
    let pods = pods.into_iter().chain(context.pods.controlled_by(&namespace, "")).collect();
    let Some(plan) = decide(set.as_ref(), pods, context.clock.now())? else {
        return Ok(Action::await_change());
    };
    let (pods_written, set_written) = (Written::default(), Written::default());
    let result = apply(set.as_ref(), &context, &plan, &pods_written, &set_written).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, &pods_written);
    context.sets_expected.expect(&key, &set_written);
    // Looked at again when a pod becomes available, even after a failed write (a retry
    // comes sooner; the wake-up keeps the earliest).
    if let Some(next) = plan.wake_after {
        context.wakeups.after(set.as_ref(), next);
    }
    result?;
    // Orphans that appear come as pod events (above); nothing else to look again for. A
    // requeue every 5 s was most of this controller's work at 10,000 sets.
    Ok(Action::await_change())
}

/// What one pass decided for one set: the writes, in the order they are made, and when
/// to look again.
#[derive(Debug, Default)]
struct Plan {
    /// Owner references rewritten: orphans adopted, pods no longer selected released.
    owners: Vec<Owners>,
    /// Pods to make (at most [`BURST`]).
    create: Vec<Pod>,
    /// Surplus pods to delete, in Kubernetes' order (at most [`BURST`]).
    delete: Vec<String>,
    /// The status, when it changed.
    status: Option<Value>,
    /// When the next ready pod becomes available, on the control plane's clock.
    wake_after: Option<Duration>,
}

/// A pod's owner references, written against the version they were decided on.
#[derive(Debug)]
struct Owners {
    pod: String,
    references: Vec<Value>,
    version: Option<String>,
}

/// The pass over `set` and the pods of its namespace it controls or no one does: what to
/// claim, make, delete and report (`None`: a set being deleted is left alone).
fn decide<K: Replicated>(set: &K, pods: Vec<Arc<Pod>>, now: SystemTime) -> Result<Option<Plan>, Error> {
    if set.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let uid = set.uid().ok_or_else(|| Error::Invalid(format!("a {} without a uid", K::kind(&()))))?;
    let selector = set.selector()?;
    let mut owner = set.controller_owner_ref(&()).ok_or_else(|| Error::Invalid("no owner reference".into()))?;
    // As Kubernetes writes it: a foreground deletion of the set waits for its pods.
    owner.block_owner_deletion = Some(true);
    let owner = serde_json::to_value(&owner).unwrap_or(Value::Null);
    let mut plan = Plan::default();

    let mut active = Vec::new();
    for pod in pods {
        let matches = !selector.is_nothing() && selector.matches(pod.labels());
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let references = pod.metadata.owner_references.iter().flatten();
        match controller_of(pod.as_ref()) {
            Some(controller) if controller == uid => {
                if !matches {
                    // Released: it no longer carries the labels this set selects.
                    let kept = references.filter(|r| r.uid != uid).filter_map(|r| serde_json::to_value(r).ok());
                    plan.owners.push(Owners {
                        pod: pod.name_any(),
                        references: kept.collect(),
                        version: pod.resource_version(),
                    });
                    continue;
                }
            }
            None if matches && !deleting => {
                // Adopted: an orphan this set selects.
                let mut all: Vec<Value> = references.filter_map(|r| serde_json::to_value(r).ok()).collect();
                all.push(owner.clone());
                plan.owners.push(Owners { pod: pod.name_any(), references: all, version: pod.resource_version() });
            }
            _ => continue,
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if !deleting && phase != "Succeeded" && phase != "Failed" {
            active.push(pod);
        }
    }

    let wanted = usize::try_from(set.replicas().unwrap_or(1)).unwrap_or(0);
    if active.len() < wanted {
        let pod = new_pod(set, &namespace, &owner)?;
        plan.create = vec![pod; (wanted - active.len()).min(BURST)];
    } else if active.len() > wanted {
        active.sort_by_key(|pod| super::pods::removal_rank(pod));
        let surplus = active.len() - wanted;
        plan.delete = active.drain(..surplus.min(BURST)).map(|pod| pod.name_any()).collect();
    }

    // Status from the pods as they are now (made or deleted ones are seen next pass).
    let replicas = active.len() as i32;
    let ready_count = active.iter().filter(|p| super::pods::is_ready(p)).count() as i32;
    // Available: ready for `minReadySeconds` of the control plane's clock; the set is
    // looked at again when the next ready pod becomes available.
    let min_ready = set.min_ready_seconds();
    let available = active.iter().filter(|p| is_available(p, min_ready, now)).count() as i32;
    plan.wake_after = next_available(active.iter().map(AsRef::as_ref), min_ready, now);
    let status = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready_count,
        "availableReplicas": available,
        "observedGeneration": set.meta().generation,
    });
    let current = serde_json::to_value(set).ok().and_then(|s| s.get("status").cloned()).unwrap_or(Value::Null);
    let field = |value: &Value, key: &str| value.get(key).and_then(Value::as_i64).unwrap_or(0);
    let changed = ["replicas", "readyReplicas", "availableReplicas", "observedGeneration"]
        .iter()
        .any(|key| field(&current, key) != field(&status, key));
    plan.status = changed.then_some(status);
    Ok(Some(plan))
}

/// A pod of the set's template, owned by it.
fn new_pod<K: Replicated>(set: &K, namespace: &str, owner: &Value) -> Result<Pod, Error> {
    let template = set.template();
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let naming = Naming::Generated(format!("{}-", set.name_any()));
    from_template(naming, namespace, template_metadata(&template), spec, owner.clone(), &[])
}

/// Makes the plan's writes: claims, then creations (the first refused one reported as
/// an event and ending them) or deletions, then the status (written even after a refused
/// creation, as Kubernetes does: what exists is counted).
async fn apply<K: Replicated>(
    set: &K,
    context: &Context<K>,
    plan: &Plan,
    pods_written: &Written,
    set_written: &Written,
) -> Result<(), Error> {
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    for owners in &plan.owners {
        let patch = json!({"metadata": {"ownerReferences": owners.references, "resourceVersion": owners.version}});
        pods_written.note(&pods.patch(&owners.pod, &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    let mut failed = None;
    for pod in &plan.create {
        match pods.create(&PostParams::default(), pod).await {
            Ok(created) => {
                pods_written.note(&created);
                let message = format!("Created pod: {}", created.name_any());
                say(set, context, events::Type::Normal, "SuccessfulCreate", &message).await;
            }
            Err(error) => {
                failed_create(set, context, &error).await;
                failed = Some(error);
                break;
            }
        }
    }
    for name in &plan.delete {
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(deleted) => {
                if let Some(pod) = deleted.left() {
                    pods_written.note(&pod);
                }
                say(set, context, events::Type::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
            }
            // Gone already: that is what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(status) = &plan.status {
        let sets: Api<K> = Api::namespaced(context.client.clone(), &namespace);
        let patch = json!({"status": status});
        set_written.note(&sets.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    match failed {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// A refused creation (a quota, a namespace going away), reported as Kubernetes reports
/// it: a `FailedCreate` event on the set.
async fn failed_create<K: Replicated>(set: &K, context: &Context<K>, error: &kube::Error) {
    let message = match error {
        kube::Error::Api(status) => format!("Error creating: {}", status.message),
        other => format!("Error creating: {other}"),
    };
    say(set, context, events::Type::Warning, "FailedCreate", &message).await;
}

/// An event on the set, as Kubernetes' ReplicaSet controller records them.
async fn say<K: Replicated>(set: &K, context: &Context<K>, kind: events::Type, reason: &str, message: &str) {
    let mut object = serde_json::to_value(set).unwrap_or(Value::Null);
    object["apiVersion"] = json!(K::api_version(&()));
    object["kind"] = json!(K::kind(&()));
    let source = events::Source { component: K::COMPONENT, host: None };
    let now = context.clock.timestamp();
    events::record(&context.client, &object, source, kind, reason, message, &now).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn an_orphan_concerns_the_sets_that_select_it() {
        let web = Arc::new(set(1, 0, json!({})));
        let mut other = set(1, 0, json!({}));
        other.metadata.name = Some("other".into());
        other.spec.as_mut().unwrap().selector.match_labels = Some([("app".to_string(), "db".to_string())].into());
        let sets = vec![web, Arc::new(other)];
        let names = |refs: Vec<ObjectRef<ReplicaSet>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(adopters(&pod("p", "web", None, "", "Pending", None, 0), sets.clone())), ["web"]);
        assert!(adopters(&pod("p", "cache", None, "", "Pending", None, 0), sets).is_empty(), "selected by none");
    }

    /// A ReplicaSet `web` of `replicas` selecting `app: web`, with this status.
    fn set(replicas: i32, min_ready_seconds: i32, status: Value) -> ReplicaSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "web-uid", "generation": 2},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready_seconds, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"note": "kept"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
            "status": status,
        }))
        .unwrap()
    }

    /// A pod `name` labelled `app`, controlled by `owner` (a uid), on `node` (empty: not
    /// scheduled), in `phase`, ready since `ready_since` (seconds), made at `created`.
    fn pod(
        name: &str,
        app: &str,
        owner: Option<&str>,
        node: &str,
        phase: &str,
        ready_since: Option<u64>,
        created: u64,
    ) -> Arc<Pod> {
        let stamp = |s: u64| crate::clock::format(UNIX_EPOCH + Duration::from_secs(s));
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}, "resourceVersion": "3",
                         "creationTimestamp": stamp(created)},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": phase},
        });
        if let Some(uid) = owner {
            pod["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true}]);
        }
        if !node.is_empty() {
            pod["spec"]["nodeName"] = json!(node);
        }
        if let Some(since) = ready_since {
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": stamp(since)}]);
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    fn running(name: &str, created: u64) -> Arc<Pod> {
        pod(name, "web", Some("web-uid"), "node-1", "Running", Some(created), created)
    }

    fn at(second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(second)
    }

    fn plan(set: &ReplicaSet, pods: Vec<Arc<Pod>>, now: u64) -> Plan {
        decide(set, pods, at(now)).unwrap().unwrap()
    }

    #[test]
    fn the_difference_between_wanted_and_active_pods_is_made_or_deleted() {
        let mut deleting = running("deleting", 1).as_ref().clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let finished = pod("finished", "web", Some("web-uid"), "node-1", "Succeeded", None, 1);
        // (wanted, pods, made, deleted): deleting and finished pods are not active.
        let cases = vec![
            (3, vec![running("a", 1), Arc::new(deleting), finished.clone()], 2, vec![]),
            (1, vec![running("a", 1), running("b", 2), running("c", 3)], 0, vec!["c", "b"]),
            (2, vec![running("a", 1), running("b", 2), finished], 0, vec![]),
            (0, vec![], 0, vec![]),
        ];
        for (wanted, pods, made, deleted) in cases {
            let plan = plan(&set(wanted, 0, json!({})), pods, 10);
            assert_eq!(plan.create.len(), made, "wanted {wanted}");
            assert_eq!(plan.delete, deleted, "wanted {wanted}");
        }
        let made = &plan(&set(1, 0, json!({})), vec![], 10).create[0];
        let made = serde_json::to_value(made).unwrap();
        assert_eq!(made["metadata"]["generateName"], "web-");
        assert_eq!(made["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(made["metadata"]["annotations"], json!({"note": "kept"}));
        assert_eq!(made["metadata"]["ownerReferences"][0]["uid"], "web-uid");
        assert_eq!(made["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(made["spec"]["containers"][0]["image"], "nginx");
    }

    #[test]
    fn surplus_pods_go_in_kubernetes_order() {
        // Unscheduled, then pending, then unknown, then not ready, then ready newest first.
        let pods = vec![
            running("ready-old", 1),
            running("ready-new", 5),
            pod("not-ready", "web", Some("web-uid"), "node-1", "Running", None, 1),
            pod("unknown", "web", Some("web-uid"), "node-1", "Unknown", None, 1),
            pod("pending", "web", Some("web-uid"), "node-1", "Pending", None, 1),
            pod("unscheduled", "web", Some("web-uid"), "", "Pending", None, 1),
        ];
        let order = ["unscheduled", "pending", "unknown", "not-ready", "ready-new", "ready-old"];
        for keep in 0..pods.len() {
            let plan = plan(&set(keep as i32, 0, json!({})), pods.clone(), 10);
            assert_eq!(plan.delete, order[..pods.len() - keep], "keeping {keep}");
        }
    }

    #[test]
    fn orphans_are_adopted_and_unselected_pods_released() {
        let pods = vec![
            pod("mine", "web", Some("web-uid"), "node-1", "Running", Some(1), 1),
            pod("relabelled", "db", Some("web-uid"), "node-1", "Running", Some(1), 1),
            pod("orphan", "web", None, "node-1", "Running", Some(1), 1),
            pod("stranger", "db", None, "node-1", "Running", Some(1), 1),
            pod("theirs", "web", Some("other-uid"), "node-1", "Running", Some(1), 1),
        ];
        let plan = plan(&set(2, 0, json!({})), pods, 10);
        let claims: Vec<(&str, Vec<&str>)> = plan
            .owners
            .iter()
            .map(|o| (o.pod.as_str(), o.references.iter().filter_map(|r| r["uid"].as_str()).collect()))
            .collect();
        assert_eq!(claims, [("relabelled", vec![]), ("orphan", vec!["web-uid"])]);
        assert_eq!(plan.owners[1].version.as_deref(), Some("3"), "against the version read");
        assert!(plan.create.is_empty() && plan.delete.is_empty(), "the adopted orphan counts");
    }

    #[test]
    fn status_counts_ready_and_available_pods_and_is_written_when_it_changes() {
        // Ready at 0 and at 8; available after 5 s: at 10 one is, the other in 3 s.
        let pods = || vec![running("a", 0), running("b", 8)];
        let plan = plan(&set(2, 5, json!({})), pods(), 10);
        let status = plan.status.unwrap();
        assert_eq!(
            status,
            json!({"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1,
                   "observedGeneration": 2})
        );
        assert_eq!(plan.wake_after, Some(Duration::from_secs(3)));
        let written = set(2, 5, status);
        assert_eq!(self::plan(&written, pods(), 10).status, None, "unchanged: not written again");
        let mut gone = written;
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(decide(&gone, pods(), at(10)).unwrap().is_none(), "a set being deleted is left alone");
    }
}
