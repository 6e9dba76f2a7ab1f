//! The StatefulSet controller, as Kubernetes' (pkg/controller/statefulset): pods with
//! stable names `<set>-<ordinal>` (from `spec.ordinals.start`), each with the
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index` labels,
//! `hostname` its name and `subdomain` the governing `serviceName`, and a
//! PersistentVolumeClaim `<claim>-<set>-<ordinal>` per `volumeClaimTemplates` entry,
//! made before the pod and mounted in place of the template's volume of that name.
//!
//! `OrderedReady` makes pod N only once pods 0..N-1 are Running and Ready (and
//! available for `minReadySeconds`), and removes surplus pods one at a time from the
//! highest ordinal, each only once the others are healthy; `Parallel` makes and removes
//! them all at once. A failed or succeeded pod is deleted and made again.
//!
//! Each pod's `controller-revision-hash` names the revision of the template it was
//! made from, `<set>-<hash>`. `RollingUpdate` deletes (and so remakes) pods of another
//! revision from the highest ordinal down to the `partition`, one at a time, each once
//! those above are healthy again; `OnDelete` leaves them. `currentRevision` becomes the
//! update revision once every pod has it and is ready. Each revision is kept as a
//! ControllerRevision (`history.rs`: `kubectl rollout history|undo statefulset`), but a pod
//! below the partition that is lost is remade from the current template rather than its
//! old one, and `persistentVolumeClaimRetentionPolicy.whenScaled: Delete` is not
//! acted on (`whenDeleted: Delete` is: the claims are owned by the set).

use super::daemonset::HASH_LABEL;
use super::pods::{
    Naming, Pods, Reporter, deleting, from_template, is_available, is_ready, is_terminal, next_available, phase,
    template_metadata,
};
use super::{Error, Wakeups, Wiring, history, label_selector, owner_reference, patch_status};
use crate::clock::Clock;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const RESYNC: Duration = Duration::from_secs(10);

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<StatefulSet>,
    pods: Informer<Pod>,
    pods_expected: Expectations<Pod>,
    sets_expected: Expectations<StatefulSet>,
    revisions: Informer<ControllerRevision>,
    revisions_expected: Expectations<ControllerRevision>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let mut wiring = Wiring::of(&informers.statefulsets).owns(&informers.pods).owns(&informers.controller_revisions);
    let context = Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
        pods_expected: Expectations::new(&informers.pods),
        sets_expected: Expectations::new(&informers.statefulsets),
        revisions: informers.controller_revisions.clone(),
        revisions_expected: Expectations::new(&informers.controller_revisions),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

/// `getParentNameAndOrdinal`: `web-2` is ordinal 2 of `web`.
fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

fn ordinal_of(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, ordinal)| ordinal)
}

fn revision_of(pod: &Pod) -> Option<&String> {
    pod.labels().get(HASH_LABEL)
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// `isHealthy`: running, ready and not on its way out.
fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !deleting(pod)
}

/// What the StatefulSet's spec asks for, with the API server's defaults.
struct Stateful {
    set: StatefulSet,
    name: String,
    namespace: String,
    selector: Selector,
    template: Value,
    replicas: i32,
    start: i32,
    /// `OrderedReady`: one pod at a time, in order.
    monotonic: bool,
    /// The `partition` of `RollingUpdate`; `None` for `OnDelete`.
    partition: Option<i32>,
    min_ready_seconds: i32,
    /// When this pass looks, on the control plane's clock.
    now: SystemTime,
    claims: Vec<Value>,
    service_name: String,
    /// `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete`.
    claims_owned: bool,
    update_revision: String,
    current_revision: String,
}

impl Stateful {
    fn of(set: StatefulSet, now: SystemTime) -> Result<Stateful, Error> {
        let spec = set.spec.as_ref().ok_or_else(|| Error::Invalid("a StatefulSet without a spec".into()))?;
        let name = set.name_any();
        // Always salted, with 0 until a collision: the name must not change when the
        // status first records the count.
        let collisions = Some(set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0));
        let update_revision = format!("{name}-{}", super::deployment::pod_template_hash(&spec.template, collisions));
        let current_revision = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| update_revision.clone());
        let strategy = spec.update_strategy.as_ref();
        let partition = match strategy.and_then(|s| s.type_.as_deref()) {
            Some("OnDelete") => None,
            _ => Some(strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0)),
        };
        let policy = spec.persistent_volume_claim_retention_policy.as_ref();
        Ok(Stateful {
            namespace: set.namespace().unwrap_or_else(|| "default".into()),
            selector: label_selector(&spec.selector)?,
            template: serde_json::to_value(&spec.template).map_err(|e| Error::Invalid(e.to_string()))?,
            replicas: spec.replicas.unwrap_or(1).max(0),
            start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            partition,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            now,
            claims: spec.volume_claim_templates.iter().flatten().filter_map(|c| serde_json::to_value(c).ok()).collect(),
            service_name: spec.service_name.clone().unwrap_or_default(),
            claims_owned: policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete"),
            update_revision,
            current_revision,
            name,
            set,
        })
    }

    fn available(&self, pod: &Pod) -> bool {
        running_and_ready(pod) && is_available(pod, self.min_ready_seconds, self.now)
    }

    fn member(&self, pod: &Pod) -> bool {
        pod.metadata.name.as_deref().and_then(parent_and_ordinal).is_some_and(|(parent, _)| parent == self.name)
    }

    fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    fn claim_name(&self, claim: &Value, ordinal: i32) -> String {
        let template = claim.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        format!("{template}-{}-{ordinal}", self.name)
    }

    /// `newStatefulSetPod`: the template with the pod's identity and storage.
    fn new_pod(&self, ordinal: i32) -> Result<Pod, Error> {
        let name = self.pod_name(ordinal);
        let (mut labels, annotations) = template_metadata(&self.template);
        labels[POD_NAME_LABEL] = json!(name);
        labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
        labels[HASH_LABEL] = json!(self.update_revision);
        let mut spec = self.template.get("spec").cloned().unwrap_or_else(|| json!({}));
        spec["hostname"] = json!(name);
        if !self.service_name.is_empty() {
            spec["subdomain"] = json!(self.service_name);
        }
        self.mount_claims(&mut spec, ordinal);
        let owner = serde_json::to_value(owner_reference(&self.set)?).map_err(|e| Error::Invalid(e.to_string()))?;
        from_template(Naming::Named(name), &self.namespace, (labels, annotations), spec, owner, &[])
    }

    /// `updateStorage`: a volume per claim template, named as it, in place of any
    /// template volume of that name.
    fn mount_claims(&self, spec: &mut Value, ordinal: i32) {
        if self.claims.is_empty() {
            return;
        }
        let mut volumes: Vec<Value> = Vec::new();
        let mut names = Vec::new();
        for claim in &self.claims {
            let name = claim.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            volumes
                .push(json!({"name": name, "persistentVolumeClaim": {"claimName": self.claim_name(claim, ordinal)}}));
            names.push(name);
        }
        let others = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
        volumes.extend(others.into_iter().filter(|v| !names.contains(&v["name"])));
        spec["volumes"] = json!(volumes);
    }

    /// `getPersistentVolumeClaims`: the claim from its template, labelled with the set's
    /// selector so the set finds it.
    fn new_claim(&self, claim: &Value, ordinal: i32) -> Result<PersistentVolumeClaim, Error> {
        let mut labels = claim.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}));
        let selector = self.set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        for (key, value) in selector {
            labels[key] = json!(value);
        }
        let mut metadata = json!({
            "name": self.claim_name(claim, ordinal),
            "namespace": self.namespace,
            "labels": labels,
            "annotations": claim.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
        });
        if self.claims_owned {
            let reference = self.set.owner_ref(&()).ok_or_else(|| Error::Invalid("no uid".into()))?;
            metadata["ownerReferences"] = json!([reference]);
        }
        let claim = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata,
            "spec": claim.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        serde_json::from_value(claim).map_err(|e| Error::Invalid(e.to_string()))
    }
}

async fn reconcile(set: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(set.as_ref());
    if !context.pods_expected.met(&key) || !context.sets_expected.met(&key) || !context.revisions_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let pods = Pods::new(&context.client, &context.pods, &namespace).reporting(Reporter::of(
        (&context.client, &context.clock),
        set.as_ref(),
        ("apps/v1", "StatefulSet"),
        "statefulset-controller",
    ));
    let written = Written::default();
    let revisions_written = Written::default();
    let result = match keep_history(&set, &context, &revisions_written).await {
        Ok(()) => manage(set.as_ref().clone(), &context, &pods, &written).await,
        Err(error) => Err(error),
    };
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, pods.written());
    context.sets_expected.expect(&key, &written);
    context.revisions_expected.expect(&key, &revisions_written);
    result
}

/// The update revision's ControllerRevision (`kubectl rollout history|undo statefulset`),
/// as `history.rs` keeps them; the current revision and those pods run are never deleted.
async fn keep_history(set: &StatefulSet, context: &Context, written: &Written) -> Result<(), Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let stateful = Stateful::of(set.clone(), context.clock.now())?;
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let uid = set.uid().unwrap_or_default();
    let revisions = history::owned(&context.revisions, &namespace, &uid);
    let template =
        serde_json::to_value(set.spec.as_ref().map(|s| &s.template)).map_err(|e| Error::Invalid(e.to_string()))?;
    let data = history::data(&template);
    let mut in_use: std::collections::HashSet<String> =
        context.pods.controlled_by(&namespace, &uid).iter().filter_map(|p| revision_of(p).cloned()).collect();
    in_use.insert(stateful.current_revision.clone());
    let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_LIMIT);
    let plan = history::decide(&revisions, &stateful.update_revision, &data, &in_use, limit);
    let hash = stateful.update_revision.rsplit('-').next().unwrap_or_default().to_string();
    let labels = set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone());
    history::apply(&context.client, set, &plan, &data, &labels.unwrap_or_default(), &hash, written).await
}

async fn manage(set: StatefulSet, context: &Context, pods: &Pods, written: &Written) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let sets: Api<StatefulSet> = Api::namespaced(context.client.clone(), &namespace);
    let stateful = Stateful::of(set, context.clock.now())?;
    let owner = owner_reference(&stateful.set)?;
    let claimed = pods.claim(&stateful.selector, &owner, |p| stateful.member(p), true).await?;
    // Looked at again when a ready pod has been ready for `minReadySeconds`.
    if let Some(next) = next_available(&claimed, stateful.min_ready_seconds, stateful.now) {
        context.wakeups.after(&stateful.set, next);
    }
    let status = stateful.status(&claimed);
    let changes = decide(&stateful, claimed);
    let writer = Writer { stateful: &stateful, pods, claims: Api::namespaced(context.client.clone(), &namespace) };
    writer.apply(&changes).await?;
    if let Some(set) = patch_status(&sets, &stateful.set, status).await? {
        written.note(&set);
    }
    Ok(Action::requeue(RESYNC))
}

/// One write a pass decided on.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// The ordinal's pod made, its missing claims first (`createPersistentVolumeClaims`).
    Create(i32),
    /// A pending pod's missing claims made again (one deleted under it).
    Claims(i32),
    /// A pod deleted: finished (to be made again), surplus, or of another revision.
    Delete(String),
}

/// Whether a step may go on to the next pod, or must wait (`OrderedReady`).
#[derive(PartialEq)]
enum Step {
    Next,
    Wait,
}

/// `updateStatefulSet` over the claimed pods: live replicas first, then surplus pods, then
/// the rollout, each stage ending the pass where it must wait. The writes, in order.
fn decide(stateful: &Stateful, claimed: Vec<Pod>) -> Vec<Change> {
    let end = stateful.start + stateful.replicas;
    let mut slots: Vec<Option<Pod>> = vec![None; usize::try_from(stateful.replicas).unwrap_or(0)];
    let mut condemned = Vec::new();
    for pod in claimed {
        let Some(ordinal) = ordinal_of(&pod) else { continue };
        if (stateful.start..end).contains(&ordinal) {
            slots[usize::try_from(ordinal - stateful.start).unwrap_or(0)] = Some(pod);
        } else {
            condemned.push(pod);
        }
    }
    // Surplus pods go from the highest ordinal down.
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));

    let mut changes = Vec::new();
    for (index, slot) in slots.iter().enumerate() {
        let ordinal = stateful.start + i32::try_from(index).unwrap_or(0);
        if replica(stateful, slot.as_ref(), ordinal, &mut changes) == Step::Wait {
            return changes;
        }
    }
    // The first unhealthy pod may be removed even though it is not healthy.
    let first_unhealthy = slots.iter().flatten().chain(&condemned).find(|p| !healthy(p)).map(|p| p.name_any());
    for pod in &condemned {
        if self::condemned(stateful, pod, first_unhealthy.as_deref(), &mut changes) == Step::Wait {
            return changes;
        }
    }
    changes.extend(roll(stateful, &slots));
    changes
}

/// `processReplica`: a missing pod made, a finished one replaced; in order, a pod not yet
/// healthy holds back the ones after it.
fn replica(stateful: &Stateful, pod: Option<&Pod>, ordinal: i32, changes: &mut Vec<Change>) -> Step {
    let pod = match pod {
        Some(pod) if is_terminal(pod) && !deleting(pod) => {
            // A pod that ran to its end is made again, under the same name.
            changes.push(Change::Delete(pod.name_any()));
            None
        }
        other => other,
    };
    let Some(pod) = pod else {
        changes.push(Change::Create(ordinal));
        return if stateful.monotonic { Step::Wait } else { Step::Next };
    };
    if phase(pod) == "Pending" && !stateful.claims.is_empty() {
        changes.push(Change::Claims(ordinal));
    }
    let blocked = deleting(pod) || !running_and_ready(pod) || !stateful.available(pod);
    if blocked && stateful.monotonic { Step::Wait } else { Step::Next }
}

/// `processCondemned`: a surplus pod deleted; in order, only once the pods before it are
/// healthy (or it is the first unhealthy one) and one at a time.
fn condemned(stateful: &Stateful, pod: &Pod, first_unhealthy: Option<&str>, changes: &mut Vec<Change>) -> Step {
    let monotonic = stateful.monotonic;
    if deleting(pod) {
        return if monotonic { Step::Wait } else { Step::Next };
    }
    let first = first_unhealthy == Some(pod.name_any().as_str());
    if monotonic && !first && !stateful.available(pod) {
        return Step::Wait;
    }
    changes.push(Change::Delete(pod.name_any()));
    if monotonic { Step::Wait } else { Step::Next }
}

/// `RollingUpdate`: from the highest ordinal down to the partition, the first pod of
/// another revision is deleted (and made again next pass); an unhealthy pod holds the
/// rollout.
fn roll(stateful: &Stateful, slots: &[Option<Pod>]) -> Option<Change> {
    let partition = stateful.partition?;
    let floor = usize::try_from(partition).unwrap_or(0);
    for pod in slots.iter().skip(floor).rev().flatten() {
        if revision_of(pod) != Some(&stateful.update_revision) && !deleting(pod) {
            return Some(Change::Delete(pod.name_any()));
        }
        if !healthy(pod) {
            return None;
        }
    }
    None
}

/// Makes a pass's changes through the API.
struct Writer<'a> {
    stateful: &'a Stateful,
    pods: &'a Pods,
    claims: Api<PersistentVolumeClaim>,
}

impl Writer<'_> {
    async fn apply(&self, changes: &[Change]) -> Result<(), Error> {
        for change in changes {
            match change {
                Change::Create(ordinal) => self.create(*ordinal).await?,
                Change::Claims(ordinal) => self.ensure_claims(*ordinal).await?,
                Change::Delete(name) => self.pods.delete(name).await?,
            }
        }
        Ok(())
    }

    /// The pod's claims first, then the pod.
    async fn create(&self, ordinal: i32) -> Result<(), Error> {
        self.ensure_claims(ordinal).await?;
        match self.pods.create(&self.stateful.new_pod(ordinal)?).await {
            Ok(_) => Ok(()),
            // Made meanwhile (a pass racing this one): what was wanted.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// `createPersistentVolumeClaims`: each missing claim of the ordinal made.
    async fn ensure_claims(&self, ordinal: i32) -> Result<(), Error> {
        for template in &self.stateful.claims {
            let name = self.stateful.claim_name(template, ordinal);
            if self.claims.get_opt(&name).await?.is_some() {
                continue;
            }
            let claim = self.stateful.new_claim(template, ordinal)?;
            match self.claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

impl Stateful {
    /// `computeReplicaStatus` and `completeRollingUpdate`, from the pods as listed.
    fn status(&self, pods: &[Pod]) -> Value {
        let created: Vec<&Pod> = pods.iter().filter(|p| !phase(p).is_empty()).collect();
        let live = || created.iter().filter(|p| !deleting(p));
        let ready = pods.iter().filter(|p| running_and_ready(p)).count();
        let available = pods.iter().filter(|p| self.available(p)).count();
        let mut current = live().filter(|p| revision_of(p) == Some(&self.current_revision)).count();
        let updated = live().filter(|p| revision_of(p) == Some(&self.update_revision)).count();
        let mut current_revision = self.current_revision.clone();
        if self.partition.is_some() && updated == created.len() && ready == created.len() {
            current = updated;
            current_revision = self.update_revision.clone();
        }
        json!({
            "replicas": created.len(),
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": self.update_revision,
            "observedGeneration": self.set.metadata.generation,
            "collisionCount": self.set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: Value) -> Stateful {
        let mut set = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": {
            "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "a"}],
                         "volumes": [{"name": "data", "emptyDir": {}}, {"name": "config", "emptyDir": {}}]}}}});
        if let (Some(base), Some(extra)) = (set["spec"].as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        Stateful::of(serde_json::from_value(set).unwrap(), SystemTime::now()).unwrap()
    }

    #[test]
    fn names_parse_into_parent_and_ordinal() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-db-12"), Some(("my-db", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
    }

    #[test]
    fn pods_get_identity_and_storage() {
        let stateful = set(json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}));
        let pod = serde_json::to_value(stateful.new_pod(2).unwrap()).unwrap();
        assert_eq!(pod["metadata"]["name"], "web-2");
        assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert!(pod["metadata"]["labels"][HASH_LABEL].as_str().unwrap().starts_with("web-"));
        assert_eq!((pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()), (Some("web-2"), Some("web")));
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2, "the claim replaces the template's volume of its name: {volumes:?}");
        assert_eq!(volumes[0]["persistentVolumeClaim"]["claimName"], "data-web-2");
        assert_eq!(volumes[1]["name"], "config");
        let claim = serde_json::to_value(stateful.new_claim(&stateful.claims[0], 2).unwrap()).unwrap();
        assert_eq!(claim["metadata"]["name"], "data-web-2");
        assert_eq!(claim["metadata"]["labels"]["app"], "web");
        assert!(claim["metadata"].get("ownerReferences").is_none(), "retained by default");
    }

    #[test]
    fn the_template_names_the_revision() {
        let a = set(json!({}));
        let b = set(json!({"template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "a", "image": "b"}]}}}));
        assert_ne!(a.update_revision, b.update_revision);
        assert_eq!(a.update_revision, set(json!({})).update_revision);
        assert_eq!(a.current_revision, a.update_revision, "a new set's current revision is its update revision");
        assert!(a.monotonic && a.partition == Some(0));
    }

    /// A pod of the set, at the update revision unless `old`.
    fn pod(stateful: &Stateful, ordinal: i32, phase: &str, ready: bool, old: bool) -> Pod {
        let revision = if old { "web-old".to_string() } else { stateful.update_revision.clone() };
        let status = if ready { "True" } else { "False" };
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{ordinal}"), "namespace": "default",
                         "labels": {"app": "web", HASH_LABEL: revision}},
            "spec": {"containers": [{"name": "a", "image": "a"}], "nodeName": "node-1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": status,
                                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .unwrap()
    }

    fn gone(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        pod
    }

    fn delete(name: &str) -> Change {
        Change::Delete(name.into())
    }

    #[test]
    fn ordered_ready_makes_one_pod_at_a_time_and_parallel_all_at_once() {
        let ordered = set(json!({"replicas": 3}));
        let up = |ordinal| pod(&ordered, ordinal, "Running", true, false);
        let table: Vec<(Vec<Pod>, Vec<Change>)> = vec![
            (vec![], vec![Change::Create(0)]),
            (vec![up(0)], vec![Change::Create(1)]),
            (vec![up(0), pod(&ordered, 1, "Pending", false, false)], vec![]),
            (vec![up(0), pod(&ordered, 1, "Running", false, false)], vec![]),
            (vec![up(0), gone(up(1))], vec![]),
            (vec![up(0), up(1), up(2)], vec![]),
            // A gap below is filled first; the pods above it wait.
            (vec![up(1), up(2)], vec![Change::Create(0)]),
        ];
        for (pods, changes) in table {
            let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
            assert_eq!(decide(&ordered, pods), changes, "ordered, with {names:?}");
        }
        let parallel = set(json!({"replicas": 3, "podManagementPolicy": "Parallel"}));
        assert_eq!(decide(&parallel, vec![]), vec![Change::Create(0), Change::Create(1), Change::Create(2)]);
        let pending = pod(&parallel, 0, "Pending", false, false);
        assert_eq!(decide(&parallel, vec![pending]), vec![Change::Create(1), Change::Create(2)]);
        let started = set(json!({"replicas": 2, "ordinals": {"start": 5}}));
        assert_eq!(decide(&started, vec![]), vec![Change::Create(5)], "ordinals start at spec.ordinals.start");
    }

    #[test]
    fn a_finished_pod_is_made_again_under_its_name() {
        let stateful = set(json!({"replicas": 2}));
        let failed = pod(&stateful, 0, "Failed", false, false);
        assert_eq!(decide(&stateful, vec![failed.clone()]), vec![delete("web-0"), Change::Create(0)]);
        let succeeded = pod(&stateful, 1, "Succeeded", false, false);
        let up = pod(&stateful, 0, "Running", true, false);
        assert_eq!(decide(&stateful, vec![up, succeeded]), vec![delete("web-1"), Change::Create(1)]);
        // One already going is waited for, not deleted twice.
        assert_eq!(decide(&stateful, vec![gone(failed)]), vec![]);
    }

    #[test]
    fn surplus_pods_go_from_the_highest_ordinal_one_at_a_time() {
        let ordered = set(json!({"replicas": 1}));
        let up = |ordinal| pod(&ordered, ordinal, "Running", true, false);
        let table: Vec<(Vec<Pod>, Vec<Change>)> = vec![
            (vec![up(0), up(1), up(2)], vec![delete("web-2")]),
            // The next only once the last is gone.
            (vec![up(0), up(1), gone(up(2))], vec![]),
            (vec![up(0), up(1)], vec![delete("web-1")]),
            // The first unhealthy pod may go though it is not healthy.
            (vec![up(0), up(1), pod(&ordered, 2, "Running", false, false)], vec![delete("web-2")]),
            // A replica that is not healthy holds the scale-down.
            (vec![pod(&ordered, 0, "Pending", false, false), up(1)], vec![]),
        ];
        for (pods, changes) in table {
            let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
            assert_eq!(decide(&ordered, pods), changes, "ordered, with {names:?}");
        }
        let parallel = set(json!({"replicas": 1, "podManagementPolicy": "Parallel"}));
        let up = |ordinal| pod(&parallel, ordinal, "Running", true, false);
        assert_eq!(decide(&parallel, vec![up(0), up(1), up(2)]), vec![delete("web-2"), delete("web-1")]);
    }

    #[test]
    fn a_rolling_update_replaces_pods_from_the_top_down_to_the_partition() {
        let rolling = set(json!({"replicas": 3}));
        let old = |ordinal| pod(&rolling, ordinal, "Running", true, true);
        let new = |ordinal| pod(&rolling, ordinal, "Running", true, false);
        let table: Vec<(Vec<Pod>, Vec<Change>)> = vec![
            (vec![old(0), old(1), old(2)], vec![delete("web-2")]),
            (vec![old(0), old(1), new(2)], vec![delete("web-1")]),
            // An updated pod not yet healthy holds the rollout.
            (vec![old(0), old(1), pod(&rolling, 2, "Running", false, false)], vec![]),
            (vec![new(0), new(1), new(2)], vec![]),
        ];
        for (pods, changes) in table {
            let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
            assert_eq!(decide(&rolling, pods), changes, "rolling, with {names:?}");
        }
        let partitioned = set(json!({"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}}));
        let old = |ordinal| pod(&partitioned, ordinal, "Running", true, true);
        let new = |ordinal| pod(&partitioned, ordinal, "Running", true, false);
        assert_eq!(decide(&partitioned, vec![old(0), old(1), old(2)]), vec![delete("web-2")]);
        assert_eq!(decide(&partitioned, vec![old(0), old(1), new(2)]), vec![], "below the partition pods stay");
        let on_delete = set(json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}}));
        let old = |ordinal| pod(&on_delete, ordinal, "Running", true, true);
        assert_eq!(decide(&on_delete, vec![old(0), old(1), old(2)]), vec![]);
    }

    #[test]
    fn a_pending_pod_gets_its_missing_claims() {
        let stateful = set(json!({"replicas": 2, "volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}));
        let pending = pod(&stateful, 0, "Pending", false, false);
        assert_eq!(decide(&stateful, vec![pending]), vec![Change::Claims(0)]);
        let up = pod(&stateful, 0, "Running", true, false);
        assert_eq!(decide(&stateful, vec![up]), vec![Change::Create(1)]);
    }

    #[test]
    fn status_counts_pods_and_completes_the_rollout_once_all_are_updated_and_ready() {
        let mut stateful = set(json!({"replicas": 2}));
        stateful.current_revision = "web-old".into();
        let rolling = [pod(&stateful, 0, "Running", true, true), pod(&stateful, 1, "Running", false, false)];
        let status = stateful.status(&rolling);
        assert_eq!(
            (&status["replicas"], &status["readyReplicas"], &status["currentReplicas"], &status["updatedReplicas"]),
            (&json!(2), &json!(1), &json!(1), &json!(1))
        );
        assert_eq!(status["currentRevision"], "web-old");
        let done = [pod(&stateful, 0, "Running", true, false), pod(&stateful, 1, "Running", true, false)];
        let status = stateful.status(&done);
        assert_eq!(status["currentRevision"], json!(stateful.update_revision));
        assert_eq!((&status["currentReplicas"], &status["availableReplicas"]), (&json!(2), &json!(2)));
    }
}
