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

use super::pods::{is_available, next_available};
use super::{Error, Wakeups, Wiring};
use crate::clock::Clock;
use crate::events;
use crate::informers::{Expectations, Informer, Informers, Kind, UNMET_RETRY, Written, controller_of, key_of_object};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

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
    let mut wiring = Wiring::of(sets).owns(&informers.pods);
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

/// Which surplus pod goes first: unscheduled, then pending, then not ready, then newest.
fn deletion_rank(pod: &Pod) -> (bool, u8, bool, std::cmp::Reverse<String>) {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| format!("{:?}", t.0)).unwrap_or_default();
    (scheduled, phase, super::pods::is_ready(pod), std::cmp::Reverse(created))
}

async fn reconcile<K: Replicated>(set: Arc<K>, context: Arc<Context<K>>) -> Result<Action, Error> {
    let key = key_of_object(set.as_ref());
    if !context.pods_expected.met(&key) || !context.sets_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let (pods_written, set_written) = (Written::default(), Written::default());
    let result = sync(set.as_ref(), context.as_ref(), &pods_written, &set_written).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, &pods_written);
    context.sets_expected.expect(&key, &set_written);
    result
}

async fn sync<K: Replicated>(
    set: &K,
    context: &Context<K>,
    pods_written: &Written,
    set_written: &Written,
) -> Result<Action, Error> {
    if set.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let uid = set.uid().ok_or_else(|| Error::Invalid(format!("a {} without a uid", K::kind(&()))))?;
    let selector = set.selector()?;
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let mut owner = set.controller_owner_ref(&()).ok_or_else(|| Error::Invalid("no owner reference".into()))?;
    // As Kubernetes writes it: a foreground deletion of the set waits for its pods.
    owner.block_owner_deletion = Some(true);
    let owner = serde_json::to_value(&owner).unwrap_or(Value::Null);

    let mut active = Vec::new();
    let owned = context.pods.controlled_by(&namespace, &uid);
    let orphans = context.pods.controlled_by(&namespace, "");
    for pod in owned.into_iter().chain(orphans) {
        let labels = pod.labels();
        let matches = !selector.is_nothing() && selector.matches(labels);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let name = pod.name_any();
        match controller_of(pod.as_ref()) {
            Some(controller) if controller == uid => {
                if !matches {
                    // Released: it no longer carries the labels this set selects.
                    let kept: Vec<Value> = pod
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|r| r.uid != uid)
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .collect();
                    let patch =
                        json!({"metadata": {"ownerReferences": kept, "resourceVersion": pod.resource_version()}});
                    pods_written.note(&pods.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
                    continue;
                }
            }
            None if matches && !deleting => {
                // Adopted: an orphan this set selects.
                let mut references: Vec<Value> = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                references.push(owner.clone());
                let patch =
                    json!({"metadata": {"ownerReferences": references, "resourceVersion": pod.resource_version()}});
                pods_written.note(&pods.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
            }
            _ => continue,
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if !deleting && phase != "Succeeded" && phase != "Failed" {
            active.push(pod);
        }
    }

    let wanted = usize::try_from(set.replicas().unwrap_or(1)).unwrap_or(0);
    let mut failed = None;
    if active.len() < wanted {
        let template = set.template();
        for _ in 0..(wanted - active.len()).min(BURST) {
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": format!("{}-", set.name_any()),
                    "namespace": namespace,
                    "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                    "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                    "ownerReferences": [owner.clone()],
                },
                "spec": template.get("spec").cloned().unwrap_or(json!({})),
            });
            let pod: Pod = serde_json::from_value(pod).map_err(|e| Error::Invalid(e.to_string()))?;
            match pods.create(&PostParams::default(), &pod).await {
                Ok(created) => pods_written.note(&created),
                Err(error) => {
                    // As Kubernetes reports it, on the ReplicaSet (a quota, a namespace going away).
                    let message = match &error {
                        kube::Error::Api(status) => format!("Error creating: {}", status.message),
                        other => format!("Error creating: {other}"),
                    };
                    let mut object = serde_json::to_value(set).unwrap_or(Value::Null);
                    object["apiVersion"] = json!(K::api_version(&()));
                    object["kind"] = json!(K::kind(&()));
                    let source = events::Source { component: K::COMPONENT, host: None };
                    events::record(
                        &context.client,
                        &object,
                        source,
                        events::Type::Warning,
                        "FailedCreate",
                        &message,
                        &context.clock.timestamp(),
                    )
                    .await;
                    // The status is still written (what exists is counted), as Kubernetes does.
                    failed = Some(error);
                    break;
                }
            }
        }
    } else if active.len() > wanted {
        active.sort_by_key(|pod| deletion_rank(pod));
        let surplus = active.len() - wanted;
        for pod in active.drain(..surplus.min(BURST)) {
            match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(deleted) => {
                    if let Some(pod) = deleted.left() {
                        pods_written.note(&pod);
                    }
                }
                // Gone already: that is what was wanted.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    // Status from the pods as they are now (made or deleted ones are seen next pass).
    let sets: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let replicas = active.len() as i32;
    let ready_count = active.iter().filter(|p| super::pods::is_ready(p)).count() as i32;
    // Available: ready for `minReadySeconds` of the control plane's clock; the set is
    // looked at again when the next ready pod becomes available.
    let (min_ready, now) = (set.min_ready_seconds(), context.clock.now());
    let available = active.iter().filter(|p| is_available(p, min_ready, now)).count() as i32;
    if let Some(next) = next_available(active.iter().map(AsRef::as_ref), min_ready, now) {
        context.wakeups.after(set, next);
    }
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
    if changed {
        let patch = json!({"status": status});
        set_written.note(&sets.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    if let Some(error) = failed {
        return Err(error.into());
    }
    // Requeued now and then: orphans that appear are not events of this set.
    Ok(Action::requeue(Duration::from_secs(5)))
}
