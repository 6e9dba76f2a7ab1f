//! The ReplicaSet controller: as many pods as `spec.replicas`, made from the template
//! and owned by the ReplicaSet; orphans that match the selector adopted, owned pods that
//! no longer match released; surplus pods deleted in Kubernetes' order (unscheduled
//! before scheduled, pending before running, not ready before ready, newest first); status
//! counted from the pods.
//!
//! Pods are read from the shared informer's cache (the set's own, and the namespace's
//! orphans), once it holds the pods the last reconcile made or deleted, so a pod made a
//! moment ago is never made twice.

use super::Error;
use crate::events;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, controller_of, key_of_object};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Pods made or deleted in one pass at most (Kubernetes' `burstReplicas`).
const BURST: usize = 500;

struct Context {
    client: kube::Client,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    pods_expected: Expectations<Pod>,
    sets_expected: Expectations<ReplicaSet>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers) {
    let context = Context {
        client,
        sets: informers.replicasets.clone(),
        pods: informers.pods.clone(),
        pods_expected: Expectations::new(&informers.pods),
        sets_expected: Expectations::new(&informers.replicasets),
    };
    context.pods.synced().await;
    Controller::for_shared_stream(context.sets.subscribe(), context.sets.store())
        .owns_shared_stream(context.pods.subscribe())
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), Arc::new(context))
        .for_each(|_| async {})
        .await;
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
    (scheduled, phase, ready(pod), std::cmp::Reverse(created))
}

async fn reconcile(set: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(set.as_ref());
    if !context.pods_expected.met(&key) || !context.sets_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let (pods_written, set_written) = (Written::default(), Written::default());
    let result = sync(&set, &context, &pods_written, &set_written).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, &pods_written);
    context.sets_expected.expect(&key, &set_written);
    result
}

async fn sync(
    set: &ReplicaSet,
    context: &Context,
    pods_written: &Written,
    set_written: &Written,
) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let uid = set.uid().ok_or_else(|| Error::Invalid("a ReplicaSet without a uid".into()))?;
    let spec = set.spec.as_ref().ok_or_else(|| Error::Invalid("a ReplicaSet without a spec".into()))?;
    let selector_json = serde_json::to_value(&spec.selector).unwrap_or(Value::Null);
    let selector = Selector::from_label_selector(Some(&selector_json)).map_err(|e| Error::Invalid(e.to_string()))?;
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

    let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let mut failed = None;
    if active.len() < wanted {
        let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
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
                    let object = serde_json::to_value(set).unwrap_or(Value::Null);
                    let mut object = object;
                    object["apiVersion"] = json!("apps/v1");
                    object["kind"] = json!("ReplicaSet");
                    let source = events::Source { component: "replicaset-controller", host: None };
                    events::record(
                        &context.client,
                        &object,
                        source,
                        events::Type::Warning,
                        "FailedCreate",
                        &message,
                        &crate::clock::now(),
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
    let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
    let replicas = active.len() as i32;
    let ready_count = active.iter().filter(|p| ready(p)).count() as i32;
    let status = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready_count,
        "availableReplicas": ready_count,
        "observedGeneration": set.meta().generation,
    });
    let current = serde_json::to_value(&set.status).unwrap_or(Value::Null);
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
