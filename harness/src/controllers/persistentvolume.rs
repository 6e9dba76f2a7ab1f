//! The PersistentVolume controller (`persistentvolume-binder`) and kubeyard's own
//! provisioner, which a kind cluster gets from local-path-provisioner: a claim is bound
//! to the smallest Available volume that satisfies it (class, access modes, size, mode),
//! or, when its class's provisioner is [`PROVISIONER`], to a volume made for it
//! (`pvc-<claim uid>`, as external provisioners name them); a volume whose claim is gone
//! is released and, under the `Delete` policy, deleted. Both sides of a binding carry
//! Kubernetes' annotations and phases.
//!
//! The volumes it makes name a host path, as local-path's do, but carry no node
//! affinity: on a container cluster a volume is an engine volume that every node can
//! mount, so a pod finds its data on whichever node it lands (`kubelet/docker.rs`).

use super::{Error, Wiring};
use crate::informers::{Informer, Informers};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::pod::quantity;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The provisioner of the default StorageClass of kubeyard's clusters.
pub const PROVISIONER: &str = "kubeyard.dev/local-path";
/// The default StorageClass's name (kind's).
pub const DEFAULT_CLASS: &str = "standard";
/// The annotation marking the default class.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The default StorageClass every kubeyard cluster starts with (as kind's `standard`).
pub fn default_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {IS_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate"
    })
}

struct Context {
    client: kube::Client,
    volumes: Informer<PersistentVolume>,
    claims: Informer<PersistentVolumeClaim>,
    classes: Informer<StorageClass>,
}

/// Runs until the task is dropped: claims are bound (and provisioned for), volumes
/// whose claims are gone reclaimed.
pub async fn run(client: kube::Client, informers: &Informers) {
    let context = Arc::new(Context {
        client,
        volumes: informers.persistent_volumes.clone(),
        claims: informers.persistent_volume_claims.clone(),
        classes: informers.storage_classes.clone(),
    });
    // A volume concerns the claim it is bound to; an unbound one, every claim still
    // waiting for a volume of its class (it may be the one they wait for), as Kubernetes'
    // controller looks at pending claims again when a volume appears.
    let waiting = informers.persistent_volume_claims.clone();
    let claims = Wiring::of(&informers.persistent_volume_claims)
        .watches(&informers.persistent_volumes, move |volume| match claim_of(&volume) {
            Some(bound) => vec![bound],
            None => pending_of_class(&waiting.all(), &volume),
        })
        .reads(&informers.storage_classes);
    let volumes = Wiring::of(&informers.persistent_volumes).watches(&informers.persistent_volume_claims, |claim| {
        claim.spec.as_ref().and_then(|s| s.volume_name.clone()).map(|name| ObjectRef::new(&name))
    });
    tokio::join!(claims.run(reconcile_claim, Arc::clone(&context)), volumes.run(reconcile_volume, context));
}

/// The claims not bound to a volume yet that ask for `volume`'s class.
fn pending_of_class(
    claims: &[Arc<PersistentVolumeClaim>],
    volume: &PersistentVolume,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let class = volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default();
    claims
        .iter()
        .filter(|claim| {
            let spec = claim.spec.as_ref();
            spec.and_then(|s| s.volume_name.as_deref()).is_none_or(str::is_empty)
                && spec.and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default() == class
        })
        .map(|claim| ObjectRef::from_obj(claim.as_ref()))
        .collect()
}

/// The claim a volume's `claimRef` names.
fn claim_of(volume: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let reference = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(reference.name.as_deref()?).within(reference.namespace.as_deref()?))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// What a claim needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimChange {
    /// Bind it to this volume (the volume's side first, then the claim's).
    Bind(Value),
    /// Make a volume for it, pre-bound to it; bound on the next pass.
    Provision(Value),
    /// Its volume is gone: `Lost`.
    Lost,
}

/// The claim's class: its own, else none (the DefaultStorageClass admission plugin has
/// already written the default into claims made without one).
fn class_of(claim: &Value) -> &str {
    text(claim, "/spec/storageClassName")
}

/// What the claim needs, from the volumes and classes there are; `None` when nothing.
pub fn decide_claim(claim: &Value, volumes: &[Value], classes: &[Value]) -> Option<ClaimChange> {
    if claim.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let uid = text(claim, "/metadata/uid");
    let bound_to = text(claim, "/spec/volumeName");
    let phase = text(claim, "/status/phase");
    if !bound_to.is_empty() {
        let volume = volumes.iter().find(|v| text(v, "/metadata/name") == bound_to);
        return match volume {
            None if phase == "Bound" => Some(ClaimChange::Lost),
            None => None,
            Some(volume) if phase != "Bound" || text(volume, "/status/phase") != "Bound" => {
                let claimed_by = text(volume, "/spec/claimRef/uid");
                (claimed_by.is_empty() || claimed_by == uid).then(|| ClaimChange::Bind(volume.clone()))
            }
            Some(_) => None,
        };
    }
    // A volume made for this claim (or pre-bound to it by its author).
    if let Some(volume) = volumes.iter().find(|v| !uid.is_empty() && text(v, "/spec/claimRef/uid") == uid) {
        return Some(ClaimChange::Bind(volume.clone()));
    }
    if let Some(volume) = best_match(claim, volumes) {
        return Some(ClaimChange::Bind(volume.clone()));
    }
    let class = classes.iter().find(|c| text(c, "/metadata/name") == class_of(claim))?;
    (text(class, "/provisioner") == PROVISIONER).then(|| ClaimChange::Provision(provisioned(claim, class)))
}

/// The smallest Available volume that satisfies the claim: the same class, every
/// access mode it asks for, at least its size, the same volume mode.
fn best_match<'a>(claim: &Value, volumes: &'a [Value]) -> Option<&'a Value> {
    let wanted = claim.pointer("/spec/resources/requests/storage").and_then(quantity);
    let modes = access_modes(claim);
    volumes
        .iter()
        .filter(|v| v.pointer("/spec/claimRef").is_none() && v.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|v| matches!(text(v, "/status/phase"), "" | "Available"))
        .filter(|v| text(v, "/spec/storageClassName") == class_of(claim))
        .filter(|v| volume_mode(v) == volume_mode(claim))
        .filter(|v| {
            let offered = access_modes(v);
            modes.iter().all(|m| offered.contains(m))
        })
        .filter_map(|v| {
            let size = v.pointer("/spec/capacity/storage").and_then(quantity)?;
            wanted.as_ref().is_none_or(|w| size >= *w).then_some((size, v))
        })
        .min_by(|(a, _), (b, _)| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(_, v)| v)
}

/// A claim's or a volume's `spec.accessModes`.
fn access_modes(object: &Value) -> Vec<&str> {
    object
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A claim's or a volume's `spec.volumeMode` (`Filesystem` unless set).
fn volume_mode(object: &Value) -> &str {
    Some(text(object, "/spec/volumeMode")).filter(|m| !m.is_empty()).unwrap_or("Filesystem")
}

/// The volume the provisioner makes for a claim, pre-bound to it.
fn provisioned(claim: &Value, class: &Value) -> Value {
    let uid = text(claim, "/metadata/uid");
    let (namespace, name) = (text(claim, "/metadata/namespace"), text(claim, "/metadata/name"));
    let size = claim.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"));
    let policy = Some(text(class, "/reclaimPolicy")).filter(|p| !p.is_empty()).unwrap_or("Delete");
    let modes = claim.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"]));
    let volume_mode = volume_mode(claim);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"), "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": policy,
            "storageClassName": text(class, "/metadata/name"),
            "volumeMode": volume_mode,
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": name,
                         "uid": uid, "resourceVersion": text(claim, "/metadata/resourceVersion")},
            "hostPath": {"path": format!("/var/local-path-provisioner/pvc-{uid}_{namespace}_{name}"),
                         "type": "DirectoryOrCreate"}
        }
    })
}

/// What a volume needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeChange {
    /// Its claim is gone and its policy is `Delete`.
    Delete,
    /// Its claim is gone and its policy keeps it: `Released`.
    Release,
    /// Unclaimed and not yet said so: `Available`.
    Available,
}

/// What the volume needs, from the claims there are (those of its claim's namespace).
pub fn decide_volume(volume: &Value, claims: &[Value]) -> Option<VolumeChange> {
    if volume.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let phase = text(volume, "/status/phase");
    let Some(reference) = volume.pointer("/spec/claimRef") else {
        return (phase != "Available").then_some(VolumeChange::Available);
    };
    let claim = claims.iter().find(|c| {
        text(c, "/metadata/namespace") == text(reference, "/namespace")
            && text(c, "/metadata/name") == text(reference, "/name")
    });
    let gone = match claim {
        None => true,
        Some(claim) => !text(reference, "/uid").is_empty() && text(claim, "/metadata/uid") != text(reference, "/uid"),
    };
    // A volume made for a claim not yet seen is not reclaimed: the claim's cache may lag.
    if !gone || phase != "Bound" && phase != "Released" {
        return None;
    }
    match text(volume, "/spec/persistentVolumeReclaimPolicy") {
        "Delete" => Some(VolumeChange::Delete),
        _ if phase != "Released" => Some(VolumeChange::Release),
        _ => None,
    }
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, context: Arc<Context>) -> Result<Action, Error> {
    let volumes: Vec<Value> = context.volumes.all().iter().map(|v| to_json(v.as_ref())).collect();
    let classes: Vec<Value> = context.classes.all().iter().map(|c| to_json(c.as_ref())).collect();
    let claim_json = to_json(claim.as_ref());
    let namespace = claim.namespace().unwrap_or_else(|| "default".into());
    let name = claim.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.client.clone(), &namespace);
    let volumes_api: Api<PersistentVolume> = Api::all(context.client.clone());
    let mut decided = decide_claim(&claim_json, &volumes, &classes);
    if matches!(decided, Some(ClaimChange::Bind(_))) {
        // A binding is for good: chosen over the volumes as the API server has them now,
        // not as a cache that may not show the smallest that fits yet.
        let listed = volumes_api.list(&kube::api::ListParams::default()).await?;
        let volumes: Vec<Value> = listed.items.iter().map(to_json).collect();
        decided = decide_claim(&claim_json, &volumes, &classes);
    }
    match decided {
        None => {}
        Some(ClaimChange::Provision(volume)) => {
            let volume: PersistentVolume = serde_json::from_value(volume).map_err(|e| Error::Invalid(e.to_string()))?;
            match volumes_api.create(&PostParams::default(), &volume).await {
                Ok(_) => {}
                // Made already, by a pass whose write the cache has not shown yet.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Some(ClaimChange::Bind(volume)) => {
            let volume_name = text(&volume, "/metadata/name").to_string();
            if text(&volume, "/spec/claimRef/uid").is_empty() {
                let claim_ref = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                                       "name": name, "uid": claim.meta().uid,
                                       "resourceVersion": claim.meta().resource_version});
                let patch = json!({"metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
                                   "spec": {"claimRef": claim_ref}});
                volumes_api.patch(&volume_name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            if text(&volume, "/status/phase") != "Bound" {
                let status = json!({"status": {"phase": "Bound"}});
                volumes_api.patch_status(&volume_name, &PatchParams::default(), &Patch::Merge(status)).await?;
            }
            let mut annotations =
                json!({"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"});
            if text(&volume, "/metadata/annotations/pv.kubernetes.io~1provisioned-by") == PROVISIONER {
                annotations["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
                annotations["volume.beta.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
            }
            if claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) != Some(volume_name.as_str()) {
                let patch = json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": volume_name}});
                claims.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            let status = json!({"status": {"phase": "Bound", "accessModes": volume.pointer("/spec/accessModes"),
                                           "capacity": volume.pointer("/spec/capacity")}});
            claims.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
        }
        Some(ClaimChange::Lost) => {
            let status = json!({"status": {"phase": "Lost"}});
            claims.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn reconcile_volume(volume: Arc<PersistentVolume>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.namespace.clone());
    let claims: Vec<Value> = match &namespace {
        Some(namespace) => context.claims.in_namespace(namespace).iter().map(|c| to_json(c.as_ref())).collect(),
        None => Vec::new(),
    };
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    let name = volume.name_any();
    match decide_volume(&to_json(volume.as_ref()), &claims) {
        None => {}
        Some(VolumeChange::Delete) => match volumes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        },
        Some(change) => {
            let phase = if change == VolumeChange::Release { "Released" } else { "Available" };
            let status = json!({"status": {"phase": phase}});
            volumes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_volume_concerns_the_waiting_claims_of_its_class() {
        let claim = |name: &str, class: &str, bound: Option<&str>| {
            Arc::new(
                serde_json::from_value::<PersistentVolumeClaim>(json!({
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"storageClassName": class, "volumeName": bound},
                }))
                .unwrap(),
            )
        };
        let claims =
            [claim("archive", "manual", None), claim("bound", "manual", Some("pv-1")), claim("fast", "ssd", None)];
        let volume: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "manual-small"}, "spec": {"storageClassName": "manual"}}),
        )
        .unwrap();
        let names: Vec<String> = pending_of_class(&claims, &volume).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["archive"]);
    }

    fn claim(extra: Value) -> Value {
        let mut claim = json!({"metadata": {"name": "data", "namespace": "shop", "uid": "c1", "resourceVersion": "5"},
                               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                                        "resources": {"requests": {"storage": "1Gi"}}}});
        kubeyard_compiler::patch::merge_patch(&mut claim, &extra);
        claim
    }

    fn volume(name: &str, size: &str, extra: Value) -> Value {
        let mut volume = json!({"metadata": {"name": name},
                                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                                         "storageClassName": "standard", "persistentVolumeReclaimPolicy": "Retain"},
                                "status": {"phase": "Available"}});
        kubeyard_compiler::patch::merge_patch(&mut volume, &extra);
        volume
    }

    fn bound_to(change: Option<ClaimChange>) -> Option<String> {
        match change {
            Some(ClaimChange::Bind(volume)) => Some(text(&volume, "/metadata/name").to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_claim_binds_the_smallest_volume_that_satisfies_it_or_has_one_made() {
        let classes = [default_class()];
        let volumes =
            [volume("big", "10Gi", json!({})), volume("small", "2Gi", json!({})), volume("tiny", "500Mi", json!({}))];
        assert_eq!(bound_to(decide_claim(&claim(json!({})), &volumes, &classes)), Some("small".into()));
        // Access modes and classes must agree.
        let many = claim(json!({"spec": {"accessModes": ["ReadWriteMany"]}}));
        let Some(ClaimChange::Provision(made)) = decide_claim(&many, &volumes, &classes) else { panic!() };
        assert_eq!(text(&made, "/metadata/name"), "pvc-c1");
        assert_eq!(made["spec"]["claimRef"]["uid"], "c1");
        assert_eq!(made["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(made["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        // A class with another provisioner: nothing to do but wait for a volume.
        let other = claim(json!({"spec": {"storageClassName": "fast", "accessModes": ["ReadWriteMany"]}}));
        let fast = json!({"metadata": {"name": "fast"}, "provisioner": "ebs.csi.aws.com"});
        assert_eq!(decide_claim(&other, &volumes, &[fast]), None);
        // The volume made for it is bound on the next pass; a bound pair is left alone.
        let made = volume("pvc-c1", "1Gi", json!({"spec": {"claimRef": {"uid": "c1"}}}));
        assert_eq!(bound_to(decide_claim(&many, std::slice::from_ref(&made), &classes)), Some("pvc-c1".into()));
        let done = claim(json!({"spec": {"volumeName": "pvc-c1"}, "status": {"phase": "Bound"}}));
        let bound = volume("pvc-c1", "1Gi", json!({"spec": {"claimRef": {"uid": "c1"}}, "status": {"phase": "Bound"}}));
        assert_eq!(decide_claim(&done, &[bound], &classes), None);
        // A bound claim whose volume is gone is Lost; one being deleted is left alone.
        assert_eq!(decide_claim(&done, &[], &classes), Some(ClaimChange::Lost));
        let deleting = claim(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert_eq!(decide_claim(&deleting, &volumes, &classes), None);
        // A volume claimed by another claim is not taken.
        let taken = volume("small", "2Gi", json!({"spec": {"claimRef": {"uid": "other"}}}));
        assert!(matches!(decide_claim(&claim(json!({})), &[taken], &classes), Some(ClaimChange::Provision(_))));
    }

    #[test]
    fn a_volume_whose_claim_is_gone_is_deleted_or_released_by_its_policy() {
        let reference = json!({"spec": {"claimRef": {"namespace": "shop", "name": "data", "uid": "c1"}},
                                "status": {"phase": "Bound"}});
        let deleting = volume("pvc-c1", "1Gi", json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}));
        let mut deleting_bound = deleting.clone();
        kubeyard_compiler::patch::merge_patch(&mut deleting_bound, &reference);
        assert_eq!(decide_volume(&deleting_bound, &[]), Some(VolumeChange::Delete));
        assert_eq!(decide_volume(&deleting_bound, &[claim(json!({}))]), None);
        // A claim of the same name made again (another uid) does not own it.
        let again = claim(json!({"metadata": {"uid": "c2"}}));
        assert_eq!(decide_volume(&deleting_bound, &[again]), Some(VolumeChange::Delete));
        let mut retained = volume("pv1", "1Gi", json!({}));
        kubeyard_compiler::patch::merge_patch(&mut retained, &reference);
        assert_eq!(decide_volume(&retained, &[]), Some(VolumeChange::Release));
        let unclaimed = volume("pv2", "1Gi", json!({"status": {"phase": "Pending"}}));
        assert_eq!(decide_volume(&unclaimed, &[]), Some(VolumeChange::Available));
        assert_eq!(decide_volume(&volume("pv3", "1Gi", json!({})), &[]), None);
    }
}
