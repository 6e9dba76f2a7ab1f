//! The Deployment controller, as Kubernetes' (pkg/controller/deployment): one ReplicaSet
//! per pod template, named `<deployment>-<pod-template-hash>`, owned by the Deployment
//! (orphans its selector matches adopted, owned ones it no longer matches released). The
//! new ReplicaSet is the one whose template, less the hash label, is the Deployment's; the
//! others are old. `RollingUpdate` scales the new one up and the old ones down within
//! `maxSurge` and `maxUnavailable`; `Recreate` scales the old ones to zero, waits for their
//! pods to be gone, then scales the new one up. Revisions (a template brought back, as by
//! `kubectl rollout undo`, takes the next one), history limits, pause, proportional scaling
//! of every active ReplicaSet, and status with the `Available` and `Progressing` conditions
//! and their messages follow Kubernetes.
//!
//! Each reconcile reads the Deployment, its ReplicaSets and their pods from the shared
//! informers' caches, once they hold this controller's own last writes, and every write
//! names the `resourceVersion` it was decided on: a decision is never written over state
//! that changed under it, and a conflict is retried at once.
//!
//! A pass is split in two: `decide`, pure, reads a `Snapshot` of those caches (and the
//! time) and returns the `Plan`: every write, in the order Kubernetes' `syncDeployment`
//! makes them, each decision reading the ones before it as written; `Writer::apply`
//! makes the writes. Only the creation of the new ReplicaSet can turn out otherwise than
//! decided (its name taken): the pass then decides again knowing it.
//!
//! One deliberate difference: where Kubernetes counts a ReplicaSet's pods by its spec alone
//! when it checks `maxSurge` and `maxUnavailable`, this controller also counts pods a
//! ReplicaSet has not removed yet (its status), and no more available pods than its spec
//! keeps. The bounds then hold at every moment, not only once the ReplicaSet controller has
//! caught up; a rollout takes the same steps, a little later.

use super::{Error, FormerOwners, Wakeups, Wiring};
use crate::clock::Clock;
use crate::events;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, controller_reference, key_of_object};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// The Deployment's own annotations; the rest are copied to its new ReplicaSet.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Kubernetes keeps at most this many characters of revision history on a ReplicaSet.
const HISTORY_CHARACTERS: usize = 2000;
/// `progressDeadlineSeconds` or `revisionHistoryLimit` at this value means none.
const UNLIMITED: i32 = i32::MAX;

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<Deployment>,
    deployments: Informer<Deployment>,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    sets_expected: Expectations<ReplicaSet>,
    deployments_expected: Expectations<Deployment>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    // An orphan ReplicaSet concerns every Deployment of its namespace that selects it
    // (`getDeploymentsForReplicaSet`): one may adopt it. A pod that is gone concerns the
    // Deployment of its set (`deletePod`): a Recreate rollout waits for the last old pod.
    // And a set whose controller changed concerns the Deployment it left.
    let (selecting, sets, pods) =
        (informers.deployments.clone(), informers.replicasets.clone(), informers.pods.clone());
    let former = FormerOwners::<ReplicaSet, Deployment>::new(&informers.replicasets);
    let orphan_of = move |set: Arc<ReplicaSet>| former.concerned(&set, &selecting, adopters);
    let deployments = informers.deployments.clone();
    let gone_pod = move |pod: Arc<Pod>| {
        let namespace = pod.namespace().unwrap_or_default();
        if pods.get(&namespace, &pod.name_any()).is_some() {
            return None;
        }
        let deployment = deployment_of(&pod, |name| sets.get(&namespace, name))?;
        // Only a Recreate rollout waits for pods to be gone, as in `deletePod`.
        let recreating = deployments.get(&namespace, &deployment.name).is_some_and(|d| {
            d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
        });
        recreating.then_some(deployment)
    };
    let mut wiring = Wiring::of(&informers.deployments)
        .owns(&informers.replicasets)
        .watches(&informers.replicasets, orphan_of)
        .watches(&informers.pods, gone_pod);
    let context = Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        deployments: informers.deployments.clone(),
        sets: informers.replicasets.clone(),
        pods: informers.pods.clone(),
        sets_expected: Expectations::new(&informers.replicasets),
        deployments_expected: Expectations::new(&informers.deployments),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

async fn reconcile(deployment: Arc<Deployment>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(deployment.as_ref());
    if !context.sets_expected.met(&key) || !context.deployments_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = deployment.namespace().unwrap_or_else(|| "default".into());
    // The copy that triggered this pass may be older than the cache now.
    let Some(current) = context.deployments.get(&namespace, &deployment.name_any()) else {
        return Ok(Action::await_change());
    };
    let snapshot = Snapshot::read(&context, &namespace, current.as_ref().clone());
    let mut writer = Writer {
        deployments: Api::namespaced(context.client.clone(), &namespace),
        sets: Api::namespaced(context.client.clone(), &namespace),
        deployment: snapshot.deployment.clone(),
        versions: HashMap::new(),
        sets_written: Written::default(),
        deployment_written: Written::default(),
        client: context.client.clone(),
        clock: context.clock.clone(),
    };
    let result = writer.apply(snapshot).await;
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.sets_expected.expect(&key, &writer.sets_written);
    context.deployments_expected.expect(&key, &writer.deployment_written);
    let plan = result?;
    if let Some(next) = plan.wake_after {
        context.wakeups.after(&writer.deployment, next);
    }
    Ok(Action::await_change())
}

/// The Deployments, of those given, that select the ReplicaSet.
fn adopters(set: &ReplicaSet, deployments: Vec<Arc<Deployment>>) -> Vec<ObjectRef<Deployment>> {
    deployments
        .into_iter()
        .filter(|deployment| selects_set(deployment, set))
        .map(|deployment| ObjectRef::from_obj(deployment.as_ref()))
        .collect()
}

/// The Deployment controlling the ReplicaSet that controls the pod (`set` finds a set of
/// the pod's namespace by name).
fn deployment_of(pod: &Pod, set: impl Fn(&str) -> Option<Arc<ReplicaSet>>) -> Option<ObjectRef<Deployment>> {
    let owner = controller_reference(pod).filter(|r| r.kind == "ReplicaSet")?;
    let set = set(&owner.name)?;
    let deployment = controller_reference(set.as_ref()).filter(|r| r.kind == "Deployment")?;
    Some(ObjectRef::new(&deployment.name).within(pod.metadata.namespace.as_deref().unwrap_or_default()))
}

/// Whether the Deployment's selector selects the ReplicaSet's labels (a selector that
/// selects everything or nothing selects no set, as Kubernetes will not adopt with one).
fn selects_set(deployment: &Deployment, set: &ReplicaSet) -> bool {
    let Some(selector) = deployment.spec.as_ref().map(|s| &s.selector) else { return false };
    if selects_everything(selector) {
        return false;
    }
    super::label_selector(selector).is_ok_and(|s| !s.is_nothing() && s.matches(set.labels()))
}

/// What one pass decides over: the Deployment and what the caches held of its
/// ReplicaSets and their pods when the pass began, and the time.
#[derive(Debug, Clone)]
struct Snapshot {
    deployment: Deployment,
    /// The namespace's ReplicaSets this Deployment controls, then those no one controls
    /// (orphans it may adopt), each by name.
    sets: Vec<ReplicaSet>,
    /// The pods those ReplicaSets control (`oldPodsRunning` looks at them).
    pods: Vec<Arc<Pod>>,
    /// Now, on the control plane's clock.
    now: Time,
    /// The new ReplicaSet's name was found taken, on creating it, by this Deployment's own
    /// set with this template (the cache did not hold it yet): that set is the new one.
    taken: Option<ReplicaSet>,
}

impl Snapshot {
    fn read(context: &Context, namespace: &str, deployment: Deployment) -> Snapshot {
        let owned = match deployment.uid() {
            Some(uid) => context.sets.controlled_by(namespace, &uid),
            None => Vec::new(),
        };
        let sets: Vec<ReplicaSet> =
            owned.into_iter().chain(context.sets.controlled_by(namespace, "")).map(|s| s.as_ref().clone()).collect();
        let pods = sets
            .iter()
            .filter_map(ResourceExt::uid)
            .flat_map(|uid| context.pods.controlled_by(namespace, &uid))
            .collect();
        Snapshot { deployment, sets, pods, now: super::time(&context.clock), taken: None }
    }
}

/// What one pass decided: the writes, in order, and when to look again.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    changes: Vec<Change>,
    /// A reconcile on the control plane's clock (the progress deadline).
    wake_after: Option<Duration>,
}

/// One write through the API. Each names the `resourceVersion` the decision read;
/// [`Writer::apply`] replaces it with the one its own last write to that object returned.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// An orphan ReplicaSet adopted: these owner references (this Deployment's added).
    Adopt { name: String, owners: Vec<OwnerReference>, version: Option<String> },
    /// An owned ReplicaSet the selector no longer matches released: the references kept.
    Release { name: String, owners: Vec<OwnerReference>, version: Option<String> },
    /// The new ReplicaSet made.
    Create(Box<ReplicaSet>),
    /// An existing new ReplicaSet brought up to date: annotations, `minReadySeconds`.
    Update { name: String, annotations: BTreeMap<String, String>, min_ready_seconds: i32, version: Option<String> },
    /// A ReplicaSet's size (from `from`), with the replicas annotations.
    Scale { name: String, from: i32, replicas: i32, annotations: BTreeMap<String, String>, version: Option<String> },
    /// An old ReplicaSet beyond the revision history deleted.
    Delete { name: String },
    /// The Deployment's revision annotation.
    Revision(String),
    /// The Deployment's whole status.
    Status(Box<DeploymentStatus>),
}

/// Makes one pass's changes through the API, in order, carrying each written object's
/// new `resourceVersion` into the next write to it.
struct Writer {
    deployments: Api<Deployment>,
    sets: Api<ReplicaSet>,
    /// As last read or written: every write goes on from the `resourceVersion` it returned.
    deployment: Deployment,
    /// ReplicaSets written this pass: the `resourceVersion` each write returned.
    versions: HashMap<String, Option<String>>,
    sets_written: Written,
    deployment_written: Written,
    client: kube::Client,
    clock: Clock,
}

impl Writer {
    /// Decides over `snapshot` and makes the changes.
    async fn apply(&mut self, snapshot: Snapshot) -> Result<Plan, Error> {
        let mut plan = decide(&snapshot)?;
        let mut next = 0;
        while let Some(change) = plan.changes.get(next).cloned() {
            next += 1;
            let Change::Create(set) = change else {
                self.make(change).await?;
                continue;
            };
            let name = set.name_any();
            match self.sets.create(&PostParams::default(), &set).await {
                Ok(created) => {
                    self.note_set(&created);
                    let replicas = spec_replicas(&created);
                    if replicas > 0 {
                        self.say(format!("Scaled up replica set {name} from 0 to {replicas}")).await;
                    }
                }
                Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                    let existing = self.sets.get(&name).await?;
                    if !is_ours_with_template(&snapshot.deployment, &existing) {
                        // Two templates share a hash: `collisionCount` goes up, which
                        // changes the next name, and the reconcile is retried.
                        self.write_status(collided(&self.deployment)).await?;
                        return Err(Error::Invalid(format!(
                            "replica set {name:?} exists with another template: a hash collision"
                        )));
                    }
                    // The set is this Deployment's: decide again with it as the new one.
                    // Deciding is deterministic and reads `taken` first at the create, so
                    // the changes before it are those already made.
                    plan = decide(&Snapshot { taken: Some(existing), ..snapshot.clone() })?;
                    next -= 1;
                }
                Err(error) => {
                    // A refused create is reported on the Progressing condition.
                    let message = format!("Failed to create new replica set {name:?}: {error}");
                    if let Some(status) =
                        failed_to_create(&self.deployment, &snapshot.deployment, message, &snapshot.now)?
                    {
                        self.write_status(status).await?;
                    }
                    return Err(error.into());
                }
            }
        }
        Ok(plan)
    }

    /// `ScalingReplicaSet` on the Deployment, as the deployment controller says a scale.
    async fn say(&self, message: String) {
        let mut object = serde_json::to_value(&self.deployment).unwrap_or_default();
        object["apiVersion"] = json!("apps/v1");
        object["kind"] = json!("Deployment");
        let source = events::Source { component: "deployment-controller", host: None };
        let now = self.clock.timestamp();
        events::record(&self.client, &object, source, events::Type::Normal, "ScalingReplicaSet", &message, &now).await;
    }

    fn note_set(&mut self, set: &ReplicaSet) {
        self.sets_written.note(set);
        self.versions.insert(set.name_any(), set.resource_version());
    }

    /// The version to write `name` against: this pass's last write's, else the one decided on.
    fn version(&self, name: &str, decided: Option<String>) -> Option<String> {
        self.versions.get(name).cloned().unwrap_or(decided)
    }

    async fn patch_set(&mut self, name: &str, patch: serde_json::Value) -> Result<ReplicaSet, kube::Error> {
        let written = self.sets.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.note_set(&written);
        Ok(written)
    }

    async fn make(&mut self, change: Change) -> Result<(), Error> {
        match change {
            Change::Adopt { name, owners, version } => {
                let version = self.version(&name, version);
                self.patch_set(&name, json!({"metadata": {"ownerReferences": owners, "resourceVersion": version}}))
                    .await?;
            }
            Change::Release { name, owners, version } => {
                let version = self.version(&name, version);
                let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": version}});
                match self.patch_set(&name, patch).await {
                    // Gone already: nothing left to release.
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    other => {
                        other?;
                    }
                }
            }
            Change::Update { name, annotations, min_ready_seconds, version } => {
                let version = self.version(&name, version);
                let patch = json!({
                    "metadata": {"annotations": annotations, "resourceVersion": version},
                    "spec": {"minReadySeconds": min_ready_seconds},
                });
                self.patch_set(&name, patch).await?;
            }
            Change::Scale { name, from, replicas, annotations, version } => {
                let version = self.version(&name, version);
                let patch = json!({
                    "metadata": {"annotations": annotations, "resourceVersion": version},
                    "spec": {"replicas": replicas},
                });
                self.patch_set(&name, patch).await?;
                if from != replicas {
                    let direction = if replicas > from { "up" } else { "down" };
                    self.say(format!("Scaled {direction} replica set {name} from {from} to {replicas}")).await;
                }
            }
            Change::Delete { name } => match self.sets.delete(&name, &DeleteParams::default()).await {
                Ok(deleted) => {
                    if let Some(set) = deleted.left() {
                        self.sets_written.note(&set);
                    }
                }
                // Gone already: that is what was wanted.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            },
            Change::Revision(revision) => {
                let patch = json!({
                    "metadata": {"annotations": {REVISION: revision}, "resourceVersion": self.deployment.resource_version()}
                });
                let name = self.deployment.name_any();
                self.deployment = self.deployments.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                self.deployment_written.note(&self.deployment);
            }
            Change::Status(status) => self.write_status(*status).await?,
            // Made by `apply`, which handles its refusals.
            Change::Create(_) => {}
        }
        Ok(())
    }

    /// Writes the status, naming the `resourceVersion` it was made from.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut next = self.deployment.clone();
        next.status = Some(status);
        let name = self.deployment.name_any();
        self.deployment = self.deployments.replace_status(&name, &PostParams::default(), &next).await?;
        self.deployment_written.note(&self.deployment);
        Ok(())
    }
}

/// Whether an existing ReplicaSet is this Deployment's, with its template: the new one.
fn is_ours_with_template(deployment: &Deployment, existing: &ReplicaSet) -> bool {
    let ours = controller_uid(&existing.metadata) == deployment.uid().as_deref();
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let same = existing
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .zip(template)
        .is_some_and(|(a, b)| same_template(a, b));
    ours && same
}

/// The status after a hash collision: `collisionCount` one up.
fn collided(deployment: &Deployment) -> DeploymentStatus {
    let mut status = deployment.status.clone().unwrap_or_default();
    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
    status
}

/// The status reporting a refused create on the Progressing condition (`None`: no
/// deadline, so no Progressing condition, or nothing to change). `current` is the
/// Deployment as last written, `spec` the one decided on.
fn failed_to_create(
    current: &Deployment,
    spec: &Deployment,
    message: String,
    now: &Time,
) -> Result<Option<DeploymentStatus>, Error> {
    if Settings::of(spec)?.deadline.is_none() {
        return Ok(None);
    }
    let mut status = current.status.clone().unwrap_or_default();
    set_condition(&mut status, condition(PROGRESSING, "False", FAILED_RS_CREATE, message, now.clone()));
    Ok(Some(status).filter(|s| current.status.as_ref() != Some(s)))
}

/// What the Deployment's spec asks for, with the API server's defaults and the fenceposts
/// resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    replicas: i32,
    /// `None` for `Recreate`.
    rolling: Option<Fenceposts>,
    paused: bool,
    min_ready_seconds: i32,
    history_limit: Option<i32>,
    deadline: Option<i64>,
}

/// `maxSurge` rounded up and `maxUnavailable` rounded down, never both zero.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fenceposts {
    surge: i32,
    unavailable: i32,
}

impl Settings {
    fn of(deployment: &Deployment) -> Result<Settings, Error> {
        let spec = deployment.spec.as_ref().ok_or_else(|| Error::Invalid("a Deployment without a spec".into()))?;
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.as_ref();
        let rolling = match strategy.and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => None,
            _ => {
                let parameters = strategy.and_then(|s| s.rolling_update.as_ref());
                let surge = parameters.and_then(|p| p.max_surge.as_ref());
                let unavailable = parameters.and_then(|p| p.max_unavailable.as_ref());
                Some(fenceposts(surge, unavailable, replicas)?)
            }
        };
        Ok(Settings {
            replicas,
            rolling,
            paused: spec.paused.unwrap_or(false),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            // The API server defaults both; a missing one is read as its default.
            history_limit: Some(spec.revision_history_limit.unwrap_or(10)).filter(|l| *l != UNLIMITED),
            deadline: Some(spec.progress_deadline_seconds.unwrap_or(600)).filter(|d| *d != UNLIMITED).map(i64::from),
        })
    }

    fn max_surge(&self) -> i32 {
        self.rolling.map_or(0, |f| f.surge)
    }

    fn max_unavailable(&self) -> i32 {
        match self.rolling {
            Some(f) if self.replicas > 0 => f.unavailable.min(self.replicas),
            _ => 0,
        }
    }

    /// The fewest available pods a rollout may leave.
    fn min_available(&self) -> i32 {
        self.replicas - self.max_unavailable()
    }
}

/// `maxSurge`/`maxUnavailable` scaled to `total` (`25%` when unset, the API's default).
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> Result<i32, Error> {
    let default = IntOrString::String("25%".into());
    let scaled = super::scaled(value.unwrap_or(&default), i64::from(total), round_up)?;
    Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
}

/// `ResolveFenceposts`: with both zero no pod could ever be replaced, so one may be unavailable.
fn fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<Fenceposts, Error> {
    let surge = scaled(surge, replicas, true)?;
    let unavailable = scaled(unavailable, replicas, false)?;
    let unavailable = if surge == 0 && unavailable == 0 { 1 } else { unavailable };
    Ok(Fenceposts { surge, unavailable })
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

/// `rand.SafeEncodeString`: each character mapped into an alphabet without vowels (no
/// words) and without characters that look alike.
fn safe_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    text.chars().map(|c| char::from(ALPHABET[c as usize % ALPHABET.len()])).collect()
}

/// The `pod-template-hash` of a template: FNV-32a over the template (then the collision
/// count, little-endian, when there is one), its decimal value safely encoded, as
/// Kubernetes' `controller.ComputeHash`. Kubernetes hashes Go's printout of the struct;
/// this hashes its JSON, so the names differ from a real cluster's but are as stable.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// `EqualIgnoreHash`: templates equal once the hash label is taken from both.
fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
        let mut template = template.clone();
        let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(HASH_LABEL);
        }
        // Kubernetes' semantic equality holds no labels and empty labels equal.
        if metadata.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            metadata.labels = None;
        }
        template
    }
    without_hash(a) == without_hash(b)
}

fn spec_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn status_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().map_or(0, |s| s.replicas)
}

fn ready_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

fn available_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Available pods the set keeps: those beyond its spec are about to be deleted.
fn available_kept(set: &ReplicaSet) -> i32 {
    available_replicas(set).min(spec_replicas(set))
}

/// Pods the set has or is about to have: a lowered spec's surplus is still there until
/// the ReplicaSet controller reports it gone.
fn pods_held(set: &ReplicaSet) -> i32 {
    spec_replicas(set).max(status_replicas(set))
}

fn is_active(set: &ReplicaSet) -> bool {
    spec_replicas(set) > 0
}

fn revision(set: &ReplicaSet) -> i64 {
    set.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn max_revision(sets: &[ReplicaSet]) -> i64 {
    sets.iter().map(revision).max().unwrap_or(0)
}

/// Oldest first, names breaking ties (`ReplicaSetsByCreationTimestamp`).
fn age_key(set: &ReplicaSet) -> (Option<Timestamp>, String) {
    (set.metadata.creation_timestamp.as_ref().map(|t| t.0), set.name_any())
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true)).map(|r| r.uid.as_str())
}

fn sum(sets: &[&ReplicaSet], count: fn(&ReplicaSet) -> i32) -> i32 {
    sets.iter().map(|s| count(s)).sum()
}

/// The revision history of a ReplicaSet taking a new revision: its old one appended,
/// the oldest dropped beyond Kubernetes' length limit.
fn with_history(history: Option<&String>, old: &str) -> String {
    let mut revisions: Vec<&str> =
        history.map(|h| h.split(',').filter(|r| !r.is_empty()).collect()).unwrap_or_default();
    revisions.push(old);
    while revisions.len() > 1 && revisions.join(",").len() > HISTORY_CHARACTERS {
        revisions.remove(0);
    }
    revisions.join(",")
}

/// `getReplicaSetFraction`: the set's share of a scaling, in proportion to its size when
/// the Deployment was last at its `max-replicas`.
fn fraction(set: &ReplicaSet, settings: &Settings, deployment_replicas: i32) -> i32 {
    if settings.replicas == 0 {
        return -spec_replicas(set);
    }
    let allowed = settings.replicas + settings.max_surge();
    let annotated =
        set.annotations().get(MAX_REPLICAS).and_then(|m| m.parse::<i32>().ok()).unwrap_or(deployment_replicas);
    if annotated <= 0 {
        return 0;
    }
    let size = f64::from(spec_replicas(set)) * f64::from(allowed) / f64::from(annotated);
    size.round() as i32 - spec_replicas(set)
}

/// `GetProportion`: the fraction, bounded by what is left to add (or remove).
fn proportion(set: &ReplicaSet, settings: &Settings, deployment_replicas: i32, to_add: i32, added: i32) -> i32 {
    if spec_replicas(set) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let share = fraction(set, settings, deployment_replicas);
    let left = to_add - added;
    if to_add > 0 { share.min(left) } else { share.max(left) }
}

fn condition(type_: &str, status: &str, reason: &str, message: String, at: Time) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(at.clone()),
        last_transition_time: Some(at),
    }
}

fn find_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
    // The API server drops an empty list: keep the same shape, so equal reads as equal.
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
}

/// `SetDeploymentCondition`: the same status and reason is no news; the same status keeps
/// its transition time.
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = find_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time.clone_from(&current.last_transition_time);
        }
    }
    remove_condition(status, &condition.type_);
    status.conditions.get_or_insert_with(Vec::new).push(condition);
}

/// A count as the API writes it: zero is left out.
fn nonzero(count: i32) -> Option<i32> {
    Some(count).filter(|c| *c != 0)
}

fn count(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// `DeploymentComplete`: every replica updated and available, and the spec observed.
fn complete(deployment: &Deployment, settings: &Settings, status: &DeploymentStatus) -> bool {
    let replicas = settings.replicas;
    count(status.updated_replicas) == replicas
        && count(status.replicas) == replicas
        && count(status.available_replicas) == replicas
        && status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones.
fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods = |s: &DeploymentStatus| count(s.replicas) - count(s.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || old_pods(new) < old_pods(old)
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Seconds left at `now` before the Progressing condition's last update is `deadline` old.
fn seconds_left(condition: &DeploymentCondition, deadline: i64, now: &Time) -> Option<i64> {
    let updated = condition.last_update_time.as_ref()?.0.as_second();
    Some(updated + deadline - now.0.as_second())
}

/// `DeploymentTimedOut`.
fn timed_out(status: &DeploymentStatus, deadline: i64, now: &Time) -> bool {
    match find_condition(status, PROGRESSING) {
        None => false,
        Some(c) if c.reason.as_deref() == Some(NEW_RS_AVAILABLE) => false,
        Some(c) if c.reason.as_deref() == Some(TIMED_OUT) => true,
        Some(c) => seconds_left(c, deadline, now).is_some_and(|left| left < 0),
    }
}

/// `isScalingEvent`: an active set made for another replica count.
fn is_scaling_event(settings: &Settings, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
    old.iter().chain(new).filter(|s| is_active(s)).any(|set| {
        set.annotations()
            .get(DESIRED_REPLICAS)
            .and_then(|d| d.parse::<i32>().ok())
            .is_some_and(|d| d != settings.replicas)
    })
}

/// `FindActiveOrLatest`: the one active set, or the newest (the new one first) if none is
/// active; nothing when several are active.
fn active_or_latest<'a>(new: &'a mut Option<ReplicaSet>, old: &'a mut [ReplicaSet]) -> Option<&'a mut ReplicaSet> {
    let active = old.iter().chain(new.iter()).filter(|s| is_active(s)).count();
    match active {
        0 => new.as_mut().or_else(|| old.iter_mut().max_by_key(|s| age_key(s))),
        1 => old.iter_mut().chain(new.iter_mut()).find(|s| is_active(s)),
        _ => None,
    }
}

/// `IsSaturated`: the new set holds every replica, all of them available.
fn is_saturated(settings: &Settings, new: Option<&ReplicaSet>) -> bool {
    new.is_some_and(|set| {
        let desired = set.annotations().get(DESIRED_REPLICAS).and_then(|d| d.parse::<i32>().ok());
        spec_replicas(set) == settings.replicas
            && desired == Some(settings.replicas)
            && available_replicas(set) == settings.replicas
    })
}

/// `syncDeployment`'s decisions over `snapshot`, every write they make in order.
fn decide(snapshot: &Snapshot) -> Result<Plan, Error> {
    let settings = Settings::of(&snapshot.deployment)?;
    let mut rollout = Rollout { snapshot, deployment: snapshot.deployment.clone(), settings, changes: Vec::new() };
    let resync = rollout.sync()?;
    let wake_after = if resync { rollout.next_check() } else { None };
    Ok(Plan { changes: rollout.changes, wake_after })
}

/// One decision over one Deployment: its snapshot, what its spec asks for, and the
/// changes decided so far, each also made to the copies here, as the API would make it,
/// so what is decided next reads what was decided before (as Kubernetes' sync reads its
/// own writes).
struct Rollout<'a> {
    snapshot: &'a Snapshot,
    /// The Deployment as the changes so far leave it.
    deployment: Deployment,
    settings: Settings,
    changes: Vec<Change>,
}

impl Rollout<'_> {
    /// A condition set now, on the control plane's clock.
    fn condition(&self, type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
        condition(type_, status, reason, message, self.snapshot.now.clone())
    }

    /// `syncDeployment`; whether its progress is to be watched (its deadline checked).
    fn sync(&mut self) -> Result<bool, Error> {
        let selector = self.deployment.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selects_everything(&selector) {
            // Kubernetes will not manage every ReplicaSet of the namespace; it only notes
            // that it saw the spec.
            self.observe_generation();
            return Ok(false);
        }
        let selector = serde_json::to_value(&selector).map_err(|e| Error::Invalid(e.to_string()))?;
        let selector = Selector::from_label_selector(Some(&selector)).map_err(|e| Error::Invalid(e.to_string()))?;
        let sets = self.claim(&selector)?;
        let (mut new, mut old) = self.new_and_old(sets);
        if self.deployment.metadata.deletion_timestamp.is_some() {
            self.sync_status(new.as_ref(), &old);
            return Ok(false);
        }
        self.check_paused_conditions();
        if self.settings.paused || is_scaling_event(&self.settings, new.as_ref(), &old) {
            self.scale(&mut new, &mut old);
            if self.settings.paused {
                self.clean_up_history(&old);
            }
            self.sync_status(new.as_ref(), &old);
        } else if self.settings.rolling.is_some() {
            self.roll(new, old)?;
        } else {
            self.recreate(new, old, &selector)?;
        }
        Ok(true)
    }

    fn name(&self) -> String {
        self.deployment.name_any()
    }

    fn status(&self) -> DeploymentStatus {
        self.deployment.status.clone().unwrap_or_default()
    }

    fn owner_reference(&self) -> Result<OwnerReference, Error> {
        let reference = self.deployment.controller_owner_ref(&()).ok_or_else(|| Error::Invalid("no uid".into()))?;
        Ok(OwnerReference { block_owner_deletion: Some(true), ..reference })
    }

    fn observe_generation(&mut self) {
        let mut status = self.status();
        if status.observed_generation < self.deployment.metadata.generation {
            status.observed_generation = self.deployment.metadata.generation;
            self.write_status(status);
        }
    }

    /// The namespace's ReplicaSets this Deployment controls, after adopting orphans its
    /// selector matches and releasing owned ones it no longer matches
    /// (`ClaimReplicaSets`).
    fn claim(&mut self, selector: &Selector) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.deployment.uid().ok_or_else(|| Error::Invalid("a Deployment without a uid".into()))?;
        let deleting = self.deployment.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        for set in &self.snapshot.sets {
            let mut set = set.clone();
            let matches = selector.matches(set.labels());
            match controller_uid(&set.metadata) {
                Some(owner) if owner == uid && matches => claimed.push(set),
                Some(owner) if owner == uid && !deleting => {
                    let owners: Vec<OwnerReference> =
                        set.owner_references().iter().filter(|r| r.uid != uid).cloned().collect();
                    let (name, version) = (set.name_any(), set.resource_version());
                    self.changes.push(Change::Release { name, owners, version });
                }
                None if matches && !deleting && set.metadata.deletion_timestamp.is_none() => {
                    let mut owners = set.owner_references().to_vec();
                    owners.push(self.owner_reference()?);
                    let (name, version) = (set.name_any(), set.resource_version());
                    self.changes.push(Change::Adopt { name, owners: owners.clone(), version });
                    set.metadata.owner_references = Some(owners);
                    claimed.push(set);
                }
                _ => {}
            }
        }
        Ok(claimed)
    }

    /// The new set (if there is one, its revision annotations brought up to date) and the
    /// old ones (`getAllReplicaSetsAndSyncRevision` without creating).
    fn new_and_old(&mut self, mut sets: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        sets.sort_by_key(age_key);
        let template = self.deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        // The oldest of several equal templates is the new one (`FindNewReplicaSet`).
        let position = sets.iter().position(|s| {
            s.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| same_template(t, &template))
        });
        let Some(position) = position else { return (None, sets) };
        let new = sets.remove(position);
        let new = self.sync_new(new, &sets);
        (Some(new), sets)
    }

    /// An existing new set: takes the next revision if an old one holds a later one (a
    /// rollback), and the Deployment's annotations and `minReadySeconds`; then the
    /// Deployment takes the set's revision.
    fn sync_new(&mut self, mut set: ReplicaSet, old: &[ReplicaSet]) -> ReplicaSet {
        let annotations = self.new_set_annotations(set.annotations(), max_revision(old) + 1, true);
        let min_ready = self.settings.min_ready_seconds;
        let min_ready_differs = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0) != min_ready;
        if !annotations.is_empty() || min_ready_differs {
            // As Kubernetes: the Deployment catches up on the next pass, which this write starts.
            self.changes.push(Change::Update {
                name: set.name_any(),
                annotations: annotations.clone(),
                min_ready_seconds: min_ready,
                version: set.resource_version(),
            });
            set.annotations_mut().extend(annotations);
            if min_ready_differs {
                set.metadata.generation = Some(set.metadata.generation.unwrap_or(0) + 1);
            }
            set.spec.get_or_insert_with(ReplicaSetSpec::default).min_ready_seconds = Some(min_ready);
            return set;
        }
        let set_revision = set.annotations().get(REVISION).cloned().unwrap_or_default();
        self.set_deployment_revision(&set_revision);
        let mut status = self.status();
        if self.settings.deadline.is_some() && find_condition(&status, PROGRESSING).is_none() {
            // Progress is estimated from when this controller first noticed the set.
            let message = format!("Found new replica set {:?}", set.name_any());
            set_condition(&mut status, self.condition(PROGRESSING, "True", FOUND_NEW_RS, message));
            self.write_status(status);
        }
        set
    }

    /// The annotations a new set lacks or has wrong (`SetNewReplicaSetAnnotations`).
    fn new_set_annotations(
        &self,
        current: &BTreeMap<String, String>,
        revision: i64,
        exists: bool,
    ) -> BTreeMap<String, String> {
        let mut changes: BTreeMap<String, String> = self
            .deployment
            .annotations()
            .iter()
            .filter(|(key, value)| !NOT_COPIED.contains(&key.as_str()) && current.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let old = current.get(REVISION).filter(|r| !r.is_empty());
        if old.and_then(|r| r.parse::<i64>().ok()).unwrap_or(0) < revision {
            changes.insert(REVISION.into(), revision.to_string());
            // A set taking a new revision again is a rollback: its old revisions are kept.
            if let Some(old) = old {
                changes.insert(REVISION_HISTORY.into(), with_history(current.get(REVISION_HISTORY), old));
            }
        }
        if !exists {
            changes.extend(self.replicas_annotations());
        }
        changes
    }

    fn replicas_annotations(&self) -> BTreeMap<String, String> {
        let replicas = self.settings.replicas;
        BTreeMap::from([
            (DESIRED_REPLICAS.to_string(), replicas.to_string()),
            (MAX_REPLICAS.to_string(), (replicas + self.settings.max_surge()).to_string()),
        ])
    }

    fn set_deployment_revision(&mut self, revision: &str) {
        if self.deployment.annotations().get(REVISION).map(String::as_str) == Some(revision) {
            return;
        }
        self.changes.push(Change::Revision(revision.to_string()));
        self.deployment.annotations_mut().insert(REVISION.into(), revision.to_string());
    }

    /// Makes the new set (`getNewReplicaSet` creating): named by the template's hash, its
    /// first replicas what the strategy allows now. When the name was found taken by this
    /// Deployment's own set with this template, that set is the new one.
    fn create_new(&mut self, old: &[ReplicaSet]) -> Result<ReplicaSet, Error> {
        let revision = max_revision(old) + 1;
        let (created, existed) = match &self.snapshot.taken {
            Some(existing) => (existing.clone(), true),
            None => {
                let set = self.new_set(old, revision)?;
                self.changes.push(Change::Create(Box::new(set.clone())));
                (set, false)
            }
        };
        self.set_deployment_revision(&revision.to_string());
        if !existed && self.settings.deadline.is_some() {
            let mut status = self.status();
            let message = format!("Created new replica set {:?}", created.name_any());
            set_condition(&mut status, self.condition(PROGRESSING, "True", NEW_RS_CREATED, message));
            self.write_status(status);
        }
        Ok(created)
    }

    fn new_set(&self, old: &[ReplicaSet], revision: i64) -> Result<ReplicaSet, Error> {
        let spec = self.deployment.spec.as_ref().ok_or_else(|| Error::Invalid("a Deployment without a spec".into()))?;
        let collisions = self.deployment.status.as_ref().and_then(|s| s.collision_count);
        let hash = pod_template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
        metadata.labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let labels = metadata.labels.clone();
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let mut set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name())),
                namespace: self.deployment.namespace(),
                owner_references: Some(vec![self.owner_reference()?]),
                labels,
                annotations: Some(self.new_set_annotations(&BTreeMap::new(), revision, false)),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(self.settings.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let first = self.first_replicas(old, &set);
        if let Some(spec) = set.spec.as_mut() {
            spec.replicas = Some(first);
        }
        Ok(set)
    }

    /// `NewRSNewReplicas`: `Recreate` starts with every replica (the old pods are gone);
    /// `RollingUpdate` grows the set as far as `maxSurge` allows.
    fn first_replicas(&self, old: &[ReplicaSet], new: &ReplicaSet) -> i32 {
        let replicas = self.settings.replicas;
        let current = spec_replicas(new);
        if self.settings.rolling.is_none() {
            return replicas;
        }
        let held: i32 = old.iter().chain([new]).map(pods_held).sum();
        let most = replicas + self.settings.max_surge();
        if held >= most {
            return current;
        }
        current + (most - held).min(replicas - current)
    }

    /// `scaleReplicaSetAndRecordEvent`: a set already at `to` is left alone.
    fn scale_to(&mut self, set: &mut ReplicaSet, to: i32) -> bool {
        if spec_replicas(set) == to {
            return false;
        }
        self.scale_set(set, to)
    }

    /// `scaleReplicaSet`: the size and the replicas annotations, if either differs; true
    /// if the size changed.
    fn scale_set(&mut self, set: &mut ReplicaSet, to: i32) -> bool {
        let annotations = self.replicas_annotations();
        let resized = spec_replicas(set) != to;
        let stale = annotations.iter().any(|(key, value)| set.annotations().get(key) != Some(value));
        if !resized && !stale {
            return false;
        }
        self.changes.push(Change::Scale {
            name: set.name_any(),
            from: spec_replicas(set),
            replicas: to,
            annotations: annotations.clone(),
            version: set.resource_version(),
        });
        set.annotations_mut().extend(annotations);
        if resized {
            // The API server counts a spec change in `generation`.
            set.metadata.generation = Some(set.metadata.generation.unwrap_or(0) + 1);
        }
        set.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(to);
        resized
    }

    /// `scale`: a replica count change while paused or mid-rollout. One active set takes
    /// it all; a saturated new set leaves the old ones at zero; otherwise, rolling, every
    /// active set grows or shrinks in proportion to its size.
    fn scale(&mut self, new: &mut Option<ReplicaSet>, old: &mut [ReplicaSet]) {
        let replicas = self.settings.replicas;
        if let Some(set) = active_or_latest(new, old) {
            self.scale_to(set, replicas);
            return;
        }
        if is_saturated(&self.settings, new.as_ref()) {
            for set in old.iter_mut().filter(|s| is_active(s)) {
                self.scale_to(set, 0);
            }
            return;
        }
        if self.settings.rolling.is_none() {
            return;
        }
        let mut active: Vec<&mut ReplicaSet> = old.iter_mut().chain(new.iter_mut()).filter(|s| is_active(s)).collect();
        let allowed = if replicas > 0 { replicas + self.settings.max_surge() } else { 0 };
        let to_add = allowed - active.iter().map(|s| spec_replicas(s)).sum::<i32>();
        // Larger sets first; among equals the newer when growing, the older when shrinking.
        active.sort_by(|a, b| {
            let by_size = spec_replicas(b).cmp(&spec_replicas(a));
            let by_age = if to_add > 0 { age_key(b).cmp(&age_key(a)) } else { age_key(a).cmp(&age_key(b)) };
            if to_add == 0 { std::cmp::Ordering::Equal } else { by_size.then(by_age) }
        });
        let deployment_replicas = count(self.deployment.status.as_ref().and_then(|s| s.replicas));
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for set in &active {
            let share = proportion(set, &self.settings, deployment_replicas, to_add, added);
            sizes.push(spec_replicas(set) + share);
            added += share;
        }
        // Rounding leaves a few replicas over: the largest set takes them.
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (set, size) in active.into_iter().zip(sizes) {
            self.scale_set(set, size);
        }
    }

    /// `rolloutRolling`: one step (up, else down), then status; old sets beyond the
    /// history limit go once the rollout is complete.
    fn roll(&mut self, new: Option<ReplicaSet>, mut old: Vec<ReplicaSet>) -> Result<(), Error> {
        let mut new = match new {
            Some(new) => new,
            None => self.create_new(&old)?,
        };
        if self.scale_up_new(&mut new, &old) || self.scale_down_old(&new, &mut old) {
            self.sync_rollout_status(Some(&new), &old);
            return Ok(());
        }
        if complete(&self.deployment, &self.settings, &self.status()) {
            self.clean_up_history(&old);
        }
        self.sync_rollout_status(Some(&new), &old);
        Ok(())
    }

    /// `reconcileNewReplicaSet`.
    fn scale_up_new(&mut self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> bool {
        let replicas = self.settings.replicas;
        match spec_replicas(new).cmp(&replicas) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Greater => self.scale_to(new, replicas),
            std::cmp::Ordering::Less => {
                let to = self.first_replicas(old, new);
                self.scale_to(new, to)
            }
        }
    }

    /// `reconcileOldReplicaSets`: as many old pods as can go without fewer than
    /// `replicas - maxUnavailable` available, unhealthy ones first.
    fn scale_down_old(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> bool {
        let old_pods: i32 = old.iter().map(spec_replicas).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods = old_pods + spec_replicas(new);
        let new_unavailable = spec_replicas(new) - available_kept(new);
        let most = all_pods - self.settings.min_available() - new_unavailable;
        if most <= 0 {
            return false;
        }
        old.sort_by_key(age_key);
        let cleaned = self.clean_up_unhealthy(old, most);
        let scaled = self.scale_down_available(new, old);
        cleaned + scaled > 0
    }

    /// `cleanupUnhealthyReplicas`: old sets' unavailable pods, oldest sets first, are
    /// removed before any available one (they would hold the rollout up forever).
    fn clean_up_unhealthy(&mut self, old: &mut [ReplicaSet], most: i32) -> i32 {
        let mut removed = 0;
        for set in old.iter_mut() {
            if removed >= most {
                break;
            }
            let unhealthy = spec_replicas(set) - available_kept(set);
            if unhealthy == 0 {
                continue;
            }
            let down = (most - removed).min(unhealthy);
            self.scale_to(set, spec_replicas(set) - down);
            removed += down;
        }
        removed
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`: available old pods beyond the minimum,
    /// oldest sets first.
    fn scale_down_available(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> i32 {
        let available = available_kept(new) + old.iter().map(available_kept).sum::<i32>();
        let surplus = available - self.settings.min_available();
        let mut removed = 0;
        for set in old.iter_mut() {
            if removed >= surplus {
                break;
            }
            if !is_active(set) {
                continue;
            }
            let down = spec_replicas(set).min(surplus - removed);
            self.scale_to(set, spec_replicas(set) - down);
            removed += down;
        }
        removed
    }

    /// `rolloutRecreate`: old sets to zero, then, once none of their pods is left, the new
    /// set (made now if need be) to every replica.
    fn recreate(
        &mut self,
        new: Option<ReplicaSet>,
        mut old: Vec<ReplicaSet>,
        selector: &Selector,
    ) -> Result<(), Error> {
        let mut scaled_down = false;
        for set in old.iter_mut().filter(|s| is_active(s)) {
            scaled_down |= self.scale_to(set, 0);
        }
        if scaled_down || self.old_pods_running(&old, selector) {
            self.sync_rollout_status(new.as_ref(), &old);
            return Ok(());
        }
        let mut new = match new {
            Some(new) => new,
            None => self.create_new(&old)?,
        };
        self.scale_to(&mut new, self.settings.replicas);
        if complete(&self.deployment, &self.settings, &self.status()) {
            self.clean_up_history(&old);
        }
        self.sync_rollout_status(Some(&new), &old);
        Ok(())
    }

    /// `oldPodsRunning`: an old set still reports pods, or a pod of one still exists and
    /// has not finished (deleting pods count: they may still be running).
    fn old_pods_running(&self, old: &[ReplicaSet], selector: &Selector) -> bool {
        if old.iter().map(status_replicas).sum::<i32>() > 0 {
            return true;
        }
        let uids: HashSet<String> = old.iter().filter_map(|s| s.uid()).collect();
        self.snapshot.pods.iter().filter(|pod| controller_uid(&pod.metadata).is_some_and(|uid| uids.contains(uid))).any(
            |pod| {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                selector.matches(pod.labels()) && !matches!(phase, Some("Succeeded" | "Failed"))
            },
        )
    }

    /// `cleanupDeployment`: the oldest revisions beyond `revisionHistoryLimit` are deleted,
    /// those with no pods left only.
    fn clean_up_history(&mut self, old: &[ReplicaSet]) {
        let Some(limit) = self.settings.history_limit else { return };
        let mut alive: Vec<&ReplicaSet> = old.iter().filter(|s| s.metadata.deletion_timestamp.is_none()).collect();
        let surplus = alive.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        alive.sort_by_key(|s| (revision(s), age_key(s)));
        for set in alive.into_iter().take(surplus) {
            let observed = set.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            let settled = set.metadata.generation.unwrap_or(0) <= observed;
            if status_replicas(set) != 0 || spec_replicas(set) != 0 || !settled {
                continue;
            }
            self.changes.push(Change::Delete { name: set.name_any() });
        }
    }

    /// `checkPausedConditions`: pausing and resuming show on the Progressing condition,
    /// unless it already reports a missed deadline.
    fn check_paused_conditions(&mut self) {
        if self.settings.deadline.is_none() {
            return;
        }
        let mut status = self.status();
        let reason = find_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let paused_shown = reason.as_deref() == Some(PAUSED);
        let next = match (self.settings.paused, paused_shown) {
            (true, false) => self.condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into()),
            (false, true) => self.condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into()),
            _ => return,
        };
        set_condition(&mut status, next);
        self.write_status(status);
    }

    /// `calculateStatus`: counts from the sets' specs and statuses, and `Available`.
    fn calculate_status(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let available = sum(&all, available_replicas);
        let unavailable = (sum(&all, spec_replicas) - available).max(0);
        let mut status = DeploymentStatus {
            observed_generation: self.deployment.metadata.generation,
            replicas: nonzero(sum(&all, status_replicas)),
            updated_replicas: nonzero(new.map_or(0, status_replicas)),
            ready_replicas: nonzero(sum(&all, ready_replicas)),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero(unavailable),
            ..self.status()
        };
        let available_condition = if available >= self.settings.min_available() {
            self.condition(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
        } else {
            self.condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut status, available_condition);
        status
    }

    /// `syncDeploymentStatus`: status without judging progress (scaling, pausing).
    fn sync_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) {
        let status = self.calculate_status(new, old);
        self.write_status(status);
    }

    /// `syncRolloutStatus`: status, and the Progressing condition judged against the
    /// deadline unless the rollout already completed.
    fn sync_rollout_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) {
        let mut status = self.calculate_status(new, old);
        let Some(deadline) = self.settings.deadline else {
            remove_condition(&mut status, PROGRESSING);
            return self.write_status(status);
        };
        let current = find_condition(&self.status(), PROGRESSING).cloned();
        let done = status.replicas == status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if !done {
            self.judge_progress(&mut status, new, current, deadline);
        }
        self.write_status(status);
    }

    fn judge_progress(
        &self,
        status: &mut DeploymentStatus,
        new: Option<&ReplicaSet>,
        current: Option<DeploymentCondition>,
        deadline: i64,
    ) {
        let subject = match new {
            Some(set) => format!("ReplicaSet {:?}", set.name_any()),
            None => format!("Deployment {:?}", self.name()),
        };
        if complete(&self.deployment, &self.settings, status) {
            let message = format!("{subject} has successfully progressed.");
            set_condition(status, self.condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message));
        } else if progressed(&self.status(), status) {
            // Progress renews the condition's update time even with the same reason, so
            // the deadline counts from the last progress.
            let mut next = self.condition(PROGRESSING, "True", RS_UPDATED, format!("{subject} is progressing."));
            if let Some(current) = current.filter(|c| c.status == "True") {
                next.last_transition_time = current.last_transition_time;
            }
            remove_condition(status, PROGRESSING);
            set_condition(status, next);
        } else if timed_out(status, deadline, &self.snapshot.now) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(status, self.condition(PROGRESSING, "False", TIMED_OUT, message));
        }
    }

    /// The status written, if it changed.
    fn write_status(&mut self, status: DeploymentStatus) {
        if self.deployment.status.as_ref() == Some(&status) {
            return;
        }
        self.changes.push(Change::Status(Box::new(status.clone())));
        self.deployment.status = Some(status);
    }

    /// `requeueStuckDeployment`: a rollout not yet complete is looked at again just after
    /// its deadline would pass, on the control plane's clock; `None` when no deadline is
    /// running.
    fn next_check(&self) -> Option<Duration> {
        let status = self.status();
        let deadline = self.settings.deadline?;
        // A paused Deployment makes no progress and is not expected to.
        if self.deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            return None;
        }
        let current = find_condition(&status, PROGRESSING)?;
        if complete(&self.deployment, &self.settings, &status) || current.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        let left = seconds_left(current, deadline, &self.snapshot.now).unwrap_or(0).max(0);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0) + 1))
    }
}

/// An empty selector: Kubernetes' `metav1.LabelSelector{}`.
fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_set_concerns_the_deployments_that_select_it_and_a_gone_pod_its_deployment() {
        let web = Arc::new(deployment(1, "nginx", json!({}), "1", json!({})));
        let everything = Arc::new(deployment(1, "nginx", json!({"selector": {}}), "1", json!({})));
        let mut orphan = replica_set("web-1", "nginx", 1, 1, 1, 1);
        orphan.metadata.owner_references = None;
        let names = |refs: Vec<ObjectRef<Deployment>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(adopters(&orphan, vec![web, everything])), ["web"], "one selecting everything adopts none");
        orphan.metadata.labels = Some(BTreeMap::from([("app".to_string(), "db".to_string())]));
        let web = Arc::new(deployment(1, "nginx", json!({}), "1", json!({})));
        assert!(adopters(&orphan, vec![web]).is_empty());

        let owned = Arc::new(replica_set("web-1", "nginx", 1, 1, 1, 1));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-1-x", "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "web-1-uid",
                                 "controller": true}]}}))
        .unwrap();
        let found = deployment_of(&pod, |name| (name == "web-1").then(|| Arc::clone(&owned)));
        assert_eq!(found.map(|r| (r.name, r.namespace)), Some(("web".to_string(), Some("default".to_string()))));
        assert!(deployment_of(&pod, |_| None).is_none(), "a set no longer cached leads nowhere");
    }

    fn set(replicas: i32, max_replicas: Option<i32>) -> ReplicaSet {
        let annotations = max_replicas.map(|m| BTreeMap::from([(MAX_REPLICAS.to_string(), m.to_string())]));
        ReplicaSet {
            metadata: ObjectMeta { annotations, ..ObjectMeta::default() },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..ReplicaSetSpec::default() }),
            status: None,
        }
    }

    fn rolling(replicas: i32, surge: i32) -> Settings {
        Settings {
            replicas,
            rolling: Some(Fenceposts { surge, unavailable: 0 }),
            paused: false,
            min_ready_seconds: 0,
            history_limit: Some(10),
            deadline: Some(600),
        }
    }

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn hashes_use_kubernetes_safe_alphabet() {
        // '0'..'9' are 48..57: modulo 27 they land on "456789bcdf".
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let template = PodTemplateSpec::default();
        let hash = pod_template_hash(&template, None);
        assert_eq!(hash, pod_template_hash(&template, None), "stable");
        assert_ne!(hash, pod_template_hash(&template, Some(1)), "the collision count changes it");
        assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{hash}");
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let percent = |p: &str| IntOrString::String(p.into());
        assert_eq!(fenceposts(None, None, 10).unwrap(), Fenceposts { surge: 3, unavailable: 2 });
        assert_eq!(fenceposts(None, None, 1).unwrap(), Fenceposts { surge: 1, unavailable: 0 });
        let zero = IntOrString::Int(0);
        assert_eq!(fenceposts(Some(&zero), Some(&zero), 5).unwrap(), Fenceposts { surge: 0, unavailable: 1 });
        // Half a pod: surge rounds up to one, unavailable down to none.
        let tenth = percent("10%");
        assert_eq!(fenceposts(Some(&tenth), Some(&tenth), 5).unwrap(), Fenceposts { surge: 1, unavailable: 0 });
        assert!(fenceposts(Some(&percent("ten")), None, 5).is_err());
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // A 10-replica deployment (surge 2) scaled to 20 (surge 4): a set of 6 out of 12 takes half.
        let settings = rolling(20, 4);
        assert_eq!(fraction(&set(6, Some(12)), &settings, 12), 6);
        assert_eq!(proportion(&set(6, Some(12)), &settings, 12, 12, 10), 2, "bounded by what is left");
        assert_eq!(proportion(&set(0, Some(12)), &settings, 12, 12, 0), 0, "an empty set takes nothing");
        // Scaled to zero: every set gives up all it has.
        assert_eq!(fraction(&set(6, Some(12)), &rolling(0, 0), 12), -6);
    }

    #[test]
    fn revision_history_keeps_the_newest_within_the_limit() {
        assert_eq!(with_history(None, "1"), "1");
        assert_eq!(with_history(Some(&"1,3".to_string()), "4"), "1,3,4");
        let long = (0..1000).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        let kept = with_history(Some(&long), "1000");
        assert!(kept.len() <= HISTORY_CHARACTERS && kept.ends_with(",999,1000"), "{kept}");
    }

    /// Now, in the decision tables: 10 000 s after the epoch.
    const NOW: i64 = 10_000;

    fn at(second: i64) -> String {
        Timestamp::from_second(second).unwrap().to_string()
    }

    fn template(image: &str, hash: Option<&str>) -> serde_json::Value {
        let mut labels = json!({"app": "web"});
        if let Some(hash) = hash {
            labels[HASH_LABEL] = json!(hash);
        }
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}})
    }

    /// A Deployment `web` of `image`, its spec's other fields from `spec`, at `revision`.
    fn deployment(
        replicas: i32,
        image: &str,
        spec: serde_json::Value,
        revision: &str,
        status: serde_json::Value,
    ) -> Deployment {
        let mut object = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "web-uid", "generation": 1,
                         "annotations": {REVISION: revision}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template(image, None)},
            "status": status,
        });
        for (key, value) in spec.as_object().into_iter().flatten() {
            object["spec"][key] = value.clone();
        }
        serde_json::from_value(object).unwrap()
    }

    /// A ReplicaSet of `web`: `replicas` in its spec, `pods` of them reported, `available`
    /// of those available; made at `revision` (and its creation time counts revisions).
    fn replica_set(name: &str, image: &str, revision: i64, replicas: i32, pods: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("{name}-uid"), "generation": 1,
                "resourceVersion": "7", "creationTimestamp": at(revision * 100),
                "labels": {"app": "web", HASH_LABEL: name},
                "annotations": {REVISION: revision.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "web-uid",
                                     "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": replicas, "minReadySeconds": 0, "selector": {"matchLabels": {"app": "web", HASH_LABEL: name}},
                     "template": template(image, Some(name))},
            "status": {"replicas": pods, "readyReplicas": available, "availableReplicas": available, "observedGeneration": 1},
        }))
        .unwrap()
    }

    /// The same set made for a Deployment of `desired` replicas (and `maximum` with surge).
    fn sized(mut set: ReplicaSet, desired: i32, maximum: i32) -> ReplicaSet {
        set.annotations_mut().insert(DESIRED_REPLICAS.into(), desired.to_string());
        set.annotations_mut().insert(MAX_REPLICAS.into(), maximum.to_string());
        set
    }

    fn condition_json(type_: &str, status: &str, reason: &str, message: &str, at_second: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastUpdateTime": at(at_second), "lastTransitionTime": at(at_second)})
    }

    /// The status `calculateStatus` writes for these counts of a Deployment needing
    /// `minimum` available, with `progressing` as the Progressing condition.
    fn status(
        replicas: i32,
        updated: i32,
        available: i32,
        spec_total: i32,
        minimum: i32,
        progressing: serde_json::Value,
    ) -> serde_json::Value {
        let availability = if available >= minimum {
            condition_json(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", 1000)
        } else {
            condition_json(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                1000,
            )
        };
        let mut status = json!({"observedGeneration": 1, "conditions": [availability, progressing]});
        for (key, value) in [
            ("replicas", replicas),
            ("updatedReplicas", updated),
            ("readyReplicas", available),
            ("availableReplicas", available),
            ("unavailableReplicas", (spec_total - available).max(0)),
        ] {
            if value != 0 {
                status[key] = json!(value);
            }
        }
        status
    }

    fn available_progress(set: &str) -> serde_json::Value {
        let message = format!("ReplicaSet \"{set}\" has successfully progressed.");
        condition_json(PROGRESSING, "True", NEW_RS_AVAILABLE, &message, 1000)
    }

    fn snapshot(deployment: Deployment, sets: Vec<ReplicaSet>) -> Snapshot {
        Snapshot { deployment, sets, pods: Vec::new(), now: Time(Timestamp::from_second(NOW).unwrap()), taken: None }
    }

    /// A change as the tables read it: the new set's name is its hash, so it is `new`.
    fn summary(change: &Change) -> String {
        match change {
            Change::Adopt { name, .. } => format!("adopt {name}"),
            Change::Release { name, .. } => format!("release {name}"),
            Change::Create(set) => format!("create new {}", spec_replicas(set)),
            Change::Update { name, annotations, .. } => {
                format!("update {name} revision {}", annotations.get(REVISION).map_or("-", String::as_str))
            }
            Change::Scale { name, replicas, .. } => format!("scale {name} {replicas}"),
            Change::Delete { name } => format!("delete {name}"),
            Change::Revision(revision) => format!("revision {revision}"),
            Change::Status(status) => {
                let mut line = format!(
                    "status {}/{}/{}",
                    count(status.replicas),
                    count(status.updated_replicas),
                    count(status.available_replicas)
                );
                for c in status.conditions.iter().flatten() {
                    line.push_str(&format!(" {}={}/{}", c.type_, c.status, c.reason.as_deref().unwrap_or_default()));
                }
                line
            }
        }
    }

    fn decided(snapshot: &Snapshot) -> (Vec<String>, Option<Duration>) {
        let plan = decide(snapshot).unwrap();
        (plan.changes.iter().map(summary).collect(), plan.wake_after)
    }

    #[test]
    fn rollouts_decide_the_writes_kubernetes_makes() {
        let rolling = |surge: i32, unavailable: i32| json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}});
        let settled =
            |replicas: i32, set: &str| status(replicas, replicas, replicas, replicas, 0, available_progress(set));
        let old = |replicas, pods, available| sized(replica_set("web-1", "v1", 1, replicas, pods, available), 4, 5);
        let new = |replicas, pods, available| sized(replica_set("web-2", "v2", 2, replicas, pods, available), 4, 5);
        let mid_rollout = |available| {
            let progressing =
                condition_json(PROGRESSING, "True", RS_UPDATED, "ReplicaSet \"web-2\" is progressing.", 9_900);
            status(4, 0, available, 4, 3, progressing)
        };
        let cases: Vec<(&str, Snapshot, Vec<&str>)> = vec![
            (
                "a new Deployment makes its first ReplicaSet, as large as the surge allows, at revision 1",
                snapshot(deployment(3, "v1", json!({}), "", json!({})), vec![]),
                vec![
                    "create new 3",
                    "revision 1",
                    "status 0/0/0 Progressing=True/NewReplicaSetCreated",
                    "status 0/0/0 Progressing=True/NewReplicaSetCreated Available=False/MinimumReplicasUnavailable",
                ],
            ),
            (
                "a new template: the new set surges by one, an old pod goes within maxUnavailable",
                snapshot(deployment(4, "v2", rolling(1, 1), "1", settled(4, "web-1")), vec![old(4, 4, 4)]),
                vec![
                    "create new 1",
                    "revision 2",
                    "status 4/4/4 Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetCreated",
                    "scale web-1 3",
                    "status 4/0/4 Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetCreated",
                ],
            ),
            (
                "the new set grows first, up to replicas plus maxSurge pods in all",
                snapshot(deployment(4, "v2", rolling(1, 1), "2", mid_rollout(4)), vec![old(3, 3, 3), new(1, 1, 1)]),
                vec![
                    "scale web-2 2",
                    "status 4/1/4 Available=True/MinimumReplicasAvailable Progressing=True/ReplicaSetUpdated",
                ],
            ),
            (
                "with no surge an available old pod goes first",
                snapshot(deployment(4, "v2", rolling(0, 1), "2", mid_rollout(4)), vec![old(4, 4, 4), new(0, 0, 0)]),
                vec!["scale web-1 3"],
            ),
            (
                "with no surge nothing more goes while the new pod is unavailable",
                snapshot(deployment(4, "v2", rolling(0, 1), "2", mid_rollout(3)), vec![old(3, 3, 3), new(1, 1, 0)]),
                vec!["status 4/1/3 Available=True/MinimumReplicasAvailable Progressing=True/ReplicaSetUpdated"],
            ),
            (
                "unhealthy old pods go before available ones",
                snapshot(deployment(4, "v2", rolling(0, 1), "2", mid_rollout(3)), vec![old(4, 4, 2), new(0, 0, 0)]),
                vec![
                    "scale web-1 3",
                    "status 4/0/2 Progressing=True/ReplicaSetUpdated Available=False/MinimumReplicasUnavailable",
                ],
            ),
        ];
        for (name, snapshot, expected) in cases {
            assert_eq!(decided(&snapshot).0, expected, "{name}");
        }
    }

    #[test]
    fn scaling_decides_the_writes_kubernetes_makes() {
        let settled = |replicas: i32| status(replicas, replicas, replicas, replicas, 0, available_progress("web-1"));
        let set = |replicas: i32, desired: i32, surge: i32| {
            sized(replica_set("web-1", "v1", 1, replicas, replicas, replicas), desired, desired + surge)
        };
        let proportional = json!({"strategy": {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}});
        let halfway = || {
            let mut halfway = settled(12);
            halfway["updatedReplicas"] = json!(6);
            halfway
        };
        let cases: Vec<(&str, Snapshot, Vec<&str>)> = vec![
            (
                "scaled up: the one active set takes it all",
                snapshot(deployment(5, "v1", json!({}), "1", settled(3)), vec![set(3, 3, 1)]),
                vec![
                    "scale web-1 5",
                    "status 3/3/3 Progressing=True/NewReplicaSetAvailable Available=False/MinimumReplicasUnavailable",
                ],
            ),
            (
                "scaled down: the one active set gives it all up",
                snapshot(deployment(2, "v1", json!({}), "1", settled(3)), vec![set(3, 3, 1)]),
                vec!["scale web-1 2"],
            ),
            (
                "scaled mid-rollout: every active set in proportion to its size",
                snapshot(
                    deployment(20, "v2", proportional, "2", halfway()),
                    vec![
                        sized(replica_set("web-1", "v1", 1, 6, 6, 6), 10, 12),
                        sized(replica_set("web-2", "v2", 2, 6, 6, 6), 10, 12),
                    ],
                ),
                vec![
                    "scale web-2 11",
                    "scale web-1 11",
                    "status 12/6/12 Progressing=True/NewReplicaSetAvailable Available=False/MinimumReplicasUnavailable",
                ],
            ),
            (
                "paused with a new template: no new set, the pause shown",
                snapshot(deployment(3, "v2", json!({"paused": true}), "1", settled(3)), vec![set(3, 3, 1)]),
                vec![
                    "status 3/3/3 Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused",
                    "status 3/0/3 Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused",
                ],
            ),
        ];
        for (name, snapshot, expected) in cases {
            assert_eq!(decided(&snapshot).0, expected, "{name}");
        }
        // A paused Deployment is not expected to progress: no deadline runs.
        let paused = snapshot(deployment(3, "v2", json!({"paused": true}), "1", settled(3)), vec![set(3, 3, 1)]);
        assert_eq!(decided(&paused).1, None);
    }

    #[test]
    fn recreate_waits_for_every_old_pod_to_be_gone() {
        let recreate = json!({"strategy": {"type": "Recreate"}});
        let settled = status(3, 3, 3, 3, 3, available_progress("web-1"));
        let old = |replicas, pods| sized(replica_set("web-1", "v1", 1, replicas, pods, pods), 3, 3);
        let deployment = || deployment(3, "v2", recreate.clone(), "1", settled.clone());
        let (changes, _) = decided(&snapshot(deployment(), vec![old(3, 3)]));
        assert_eq!(changes[0], "scale web-1 0", "old sets to zero first");
        assert!(!changes.iter().any(|c| c.starts_with("create")), "{changes:?}");
        let (changes, _) = decided(&snapshot(deployment(), vec![old(0, 2)]));
        assert!(changes.iter().all(|c| c.starts_with("status")), "no new set while old pods remain: {changes:?}");
        // The set reports none left, but a pod of it is still running.
        let mut running = snapshot(deployment(), vec![old(0, 0)]);
        let pod = json!({"metadata": {"name": "web-1-a", "namespace": "default", "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                              "uid": "web-1-uid", "controller": true}]},
                         "status": {"phase": "Running"}});
        running.pods = vec![Arc::new(serde_json::from_value(pod).unwrap())];
        assert!(!decided(&running).0.iter().any(|c| c.starts_with("create")), "a running pod of an old set holds it");
        let (changes, _) = decided(&snapshot(deployment(), vec![old(0, 0)]));
        assert_eq!(&changes[..2], ["create new 3", "revision 2"], "then the new set with every replica");
    }

    #[test]
    fn old_revisions_beyond_the_history_limit_go_once_the_rollout_is_complete() {
        let settled = status(2, 2, 2, 2, 2, available_progress("web-4"));
        let history = json!({"revisionHistoryLimit": 0});
        let busy = replica_set("web-2", "v2", 2, 0, 1, 0);
        let unsettled = {
            let mut set = replica_set("web-3", "v3", 3, 0, 0, 0);
            set.metadata.generation = Some(2);
            set
        };
        let sets = vec![
            replica_set("web-1", "v1", 1, 0, 0, 0),
            busy,
            unsettled,
            replica_set("web-0", "v0", 0, 0, 0, 0),
            sized(replica_set("web-4", "v4", 4, 2, 2, 2), 2, 3),
        ];
        // Every old one is too many, oldest revisions first: `web-2` still has a pod and
        // `web-3`'s last change is not yet observed, so only `web-0` and `web-1` go (and the
        // status counts `web-2`'s pod).
        let (changes, _) = decided(&snapshot(deployment(2, "v4", history, "4", settled), sets));
        assert_eq!(
            changes,
            [
                "delete web-0",
                "delete web-1",
                "status 3/2/2 Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable"
            ]
        );
    }

    #[test]
    fn a_rollout_without_progress_times_out_at_its_deadline() {
        let stuck = |since: i64| {
            let progressing =
                condition_json(PROGRESSING, "True", RS_UPDATED, "ReplicaSet \"web-2\" is progressing.", since);
            status(2, 2, 0, 2, 2, progressing)
        };
        let set = sized(replica_set("web-2", "v2", 2, 2, 2, 0), 2, 3);
        let (changes, wake) =
            decided(&snapshot(deployment(2, "v2", json!({}), "2", stuck(NOW - 500)), vec![set.clone()]));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(wake, Some(Duration::from_secs(101)), "looked at again just after the deadline");
        let (changes, wake) = decided(&snapshot(deployment(2, "v2", json!({}), "2", stuck(NOW - 700)), vec![set]));
        assert_eq!(
            changes,
            ["status 2/2/0 Available=False/MinimumReplicasUnavailable Progressing=False/ProgressDeadlineExceeded"]
        );
        assert_eq!(wake, None, "a rollout timed out is not looked at again for its deadline");
    }

    #[test]
    fn orphans_are_adopted_and_a_taken_name_is_the_new_set() {
        let mut orphan = replica_set("web-1", "v1", 1, 3, 3, 3);
        orphan.metadata.owner_references = None;
        let settled = status(3, 3, 3, 3, 3, available_progress("web-1"));
        let (changes, _) = decided(&snapshot(deployment(3, "v1", json!({}), "1", settled), vec![orphan]));
        assert_eq!(changes.first().map(String::as_str), Some("adopt web-1"), "{changes:?}");

        // The create found the name taken by this Deployment's own set: it is the new set,
        // nothing is made, and no creation is reported.
        let mut taken = snapshot(deployment(3, "v1", json!({}), "", json!({})), vec![]);
        taken.taken = Some(sized(replica_set("web-1", "v1", 1, 3, 0, 0), 3, 4));
        let (changes, _) = decided(&taken);
        assert_eq!(changes.first().map(String::as_str), Some("revision 1"), "{changes:?}");
        assert!(!changes.iter().any(|c| c.starts_with("create") || c.contains(NEW_RS_CREATED)), "{changes:?}");
    }

    #[test]
    fn a_decision_reads_its_own_earlier_writes() {
        // Scaling an old set down bumps its generation: the history cleanup of the same
        // pass (paused) must not delete it as settled.
        let settled = status(3, 0, 3, 3, 3, available_progress("web-1"));
        let old = sized(replica_set("web-1", "v1", 1, 3, 0, 0), 3, 4);
        let new = sized(replica_set("web-2", "v2", 2, 3, 3, 3), 3, 4);
        let mut deployment = deployment(3, "v2", json!({"paused": true, "revisionHistoryLimit": 0}), "2", settled);
        deployment.status.as_mut().unwrap().updated_replicas = Some(3);
        let (changes, _) = decided(&snapshot(deployment, vec![old, new]));
        assert!(changes.contains(&"scale web-1 0".to_string()), "{changes:?}");
        assert!(!changes.iter().any(|c| c.starts_with("delete")), "{changes:?}");
    }
}
