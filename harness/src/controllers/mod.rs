//! The controllers of the controller manager: each its own module with a reconcile loop
//! over watched state (kube-runtime's `Controller`, fed by the shared informers), a
//! client of the API server like any other component. What several of them share is
//! here and in `pods.rs` (claiming, writing and reading pods).
//!
//! Each informer-fed controller is started through one scaffold, [`Wiring`]: the kind it
//! reconciles, the informers whose changes concern it (`owns`, `watches`) or that it only
//! reads (`reads`), its clock wake-ups; `run` waits for those caches to be filled, starts
//! kube-runtime's `Controller` and retries every failed reconcile by one policy
//! ([`retry`]). The recipe inside a controller is the DaemonSet's: a pure decision over a
//! snapshot of the caches (what to change), table-tested, and an `apply` that makes the
//! changes through the API. The namespace controller and the garbage collector keep their
//! own loops: they watch kinds no shared informer holds (namespaces; every kind discovery
//! finds).

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod every_namespace;
pub mod garbage_collector;
pub mod history;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod pod_gc;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca;
pub mod service_lb;
pub mod serviceaccount;
pub mod stale_disruption;
pub mod statefulset;
pub mod taint_eviction;

use crate::clock::Clock;
use crate::informers::{Informer, Kind};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Why a reconcile failed: the API said no. The controller retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How a reconcile that failed is retried, for every controller: a write that lost a race
/// (the object moved under the decision) at once, to decide again on fresh state; anything
/// else (the API server away, an invalid spec) after a pause.
pub(crate) fn retry(error: &Error) -> Action {
    match error {
        Error::Api(kube::Error::Api(status)) if status.code == 409 => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

/// A change to the controller being wired, applied once the caches are filled.
type Wire<K> = Box<dyn FnOnce(Controller<K>) -> Controller<K> + Send>;

/// What every informer-fed controller's `run` did by hand, once: the kind it reconciles
/// (from its shared informer), what else brings an object back to it, the caches its
/// reconcile reads, filled before the first one. Built, then [`Wiring::run`].
pub(crate) struct Wiring<K: Kind> {
    primary: Informer<K>,
    synced: Vec<BoxFuture<'static, ()>>,
    wires: Vec<Wire<K>>,
    /// What the profile calls it, when not its file (a file running several controllers).
    name: Option<String>,
}

impl<K: Kind> Wiring<K> {
    /// A controller of the objects in `informer`.
    pub(crate) fn of(informer: &Informer<K>) -> Wiring<K> {
        Wiring { primary: informer.clone(), synced: Vec::new(), wires: Vec::new(), name: None }
    }

    /// Named in the profile by the kind it reconciles (`controller/replicationcontroller`),
    /// for a file that runs one controller per kind.
    pub(crate) fn named_by_kind(mut self) -> Self {
        self.name = Some(format!("controller/{}", K::kind(&()).to_ascii_lowercase()));
        self
    }

    /// A cache the reconcile reads: filled before the first reconcile.
    pub(crate) fn reads<C: Kind>(mut self, informer: &Informer<C>) -> Self {
        let informer = informer.clone();
        self.synced.push(async move { informer.synced().await }.boxed());
        self
    }

    /// Objects of another kind the reconciled ones control: a change to one reconciles its
    /// owner (`Controller::owns`). Read too.
    pub(crate) fn owns<C: Kind>(mut self, informer: &Informer<C>) -> Self {
        let children = informer.clone();
        self.wires.push(Box::new(move |controller| controller.owns_shared_stream(children.subscribe())));
        self.reads(informer)
    }

    /// Objects of another kind whose change concerns the reconciled objects `mapper` names
    /// (`Controller::watches`). Read too.
    pub(crate) fn watches<C, I>(
        mut self,
        informer: &Informer<C>,
        mapper: impl Fn(Arc<C>) -> I + Send + Sync + 'static,
    ) -> Self
    where
        C: Kind,
        I: IntoIterator<Item = ObjectRef<K>> + 'static,
        I::IntoIter: Send,
    {
        let others = informer.clone();
        self.wires.push(Box::new(move |controller| controller.watches_shared_stream(others.subscribe(), mapper)));
        self.reads(informer)
    }

    /// Reconciles asked for at moments of the control plane's clock (deadlines,
    /// `minReadySeconds`): the handle the reconcile asks through.
    pub(crate) fn wakeups(&mut self, clock: &Clock) -> Wakeups<K> {
        let (wakeups, woken) = Wakeups::new(clock);
        self.wires.push(Box::new(move |controller| controller.reconcile_on(woken)));
        wakeups
    }

    /// Waits until every cache the controller reads is filled (again at once after the first).
    pub(crate) async fn synced(&mut self) {
        futures_util::future::join_all(std::mem::take(&mut self.synced)).await;
    }

    /// Runs the controller until the task is dropped: each object reconciled on any change
    /// that concerns it and whenever `reconcile` asks, a failed reconcile retried by [`retry`].
    /// Each reconcile is counted in the control plane's profile, under the name of the file
    /// that runs it (`controller/deployment`).
    #[track_caller]
    pub(crate) fn run<C, R, F>(mut self, mut reconcile: R, context: Arc<C>) -> impl Future<Output = ()>
    where
        C: Send + Sync + 'static,
        R: FnMut(Arc<K>, Arc<C>) -> F,
        F: Future<Output = Result<Action, Error>> + Send + 'static,
    {
        let file = std::panic::Location::caller().file();
        let name = std::path::Path::new(file).file_stem().map(|s| s.to_string_lossy().into_owned());
        let name = self.name.take().unwrap_or_else(|| format!("controller/{}", name.unwrap_or_default()));
        async move {
            let counts = crate::profile::current().map(|profile| profile.component(&name));
            self.synced().await;
            // Subscribed only now: each subscriber is told the filled cache first.
            let mut controller = Controller::for_shared_stream(self.primary.subscribe(), self.primary.store());
            for wire in self.wires {
                controller = wire(controller);
            }
            let counted = move |object: Arc<K>, context: Arc<C>| {
                let started = std::time::Instant::now();
                let reconciling = reconcile(object, context);
                let counts = counts.clone();
                async move {
                    let result = reconciling.await;
                    if let Some(counts) = &counts {
                        counts.record(started.elapsed(), result.is_err());
                    }
                    result
                }
            };
            controller.run(counted, |_, error, _| retry(error), context).for_each(|_| async {}).await;
        }
    }
}

/// The controlling owner each child of one kind had when last seen, so that the owner a
/// child leaves is told too (Kubernetes' `updatePod`, `updateReplicaSet`: "the
/// ControllerRef changed: sync the old controller"); `owns` tells only the one it has now.
/// Without it, a pod whose owner reference was removed or replaced left its former set a
/// replica short until something else happened to it.
pub(crate) struct FormerOwners<C: Kind, K: Kind> {
    children: Informer<C>,
    /// (namespace, child) → the name of its controlling owner of kind `K`.
    known: Mutex<HashMap<(String, String), String>>,
    owner: std::marker::PhantomData<fn() -> K>,
}

impl<C: Kind, K: Kind> FormerOwners<C, K> {
    pub(crate) fn new(children: &Informer<C>) -> FormerOwners<C, K> {
        FormerOwners { children: children.clone(), known: Mutex::default(), owner: std::marker::PhantomData }
    }

    /// The owners a change of `child` concerns besides its controller (`owns` tells that
    /// one): when it is an orphan, those that may adopt it (`adopters`, given the objects
    /// of its namespace), and the one it left, if any.
    pub(crate) fn concerned(
        &self,
        child: &C,
        owners: &Informer<K>,
        adopters: impl FnOnce(&C, Vec<Arc<K>>) -> Vec<ObjectRef<K>>,
    ) -> Vec<ObjectRef<K>> {
        let mut concerned = match crate::informers::controller_of(child) {
            Some(_) => Vec::new(),
            None => adopters(child, owners.in_namespace(child.meta().namespace.as_deref().unwrap_or_default())),
        };
        concerned.extend(self.left(child));
        concerned
    }

    /// The owner `child` (as a change of the cache tells it) had and no longer has, if any.
    fn left(&self, child: &C) -> Option<ObjectRef<K>> {
        let meta = child.meta();
        let present =
            self.children.get(meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default());
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        former_owner::<C, K>(&mut known, child, present.is_some())
    }
}

/// What [`FormerOwners::left`] decides over what it remembers: `child`'s controlling
/// owner is remembered while it is `present`, and forgotten once it is gone (its owner is
/// told of that through `owns`); the owner it had before, if it now has another or none.
fn former_owner<C: Kind, K: Kind>(
    known: &mut HashMap<(String, String), String>,
    child: &C,
    present: bool,
) -> Option<ObjectRef<K>> {
    let meta = child.meta();
    let key = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    if !present {
        known.remove(&key);
        return None;
    }
    let kind = K::kind(&());
    let now = crate::informers::controller_reference(child).filter(|r| r.kind == kind).map(|r| r.name.as_str());
    // Most changes of a child leave its owner as it was: nothing is written for them.
    let before = match now {
        Some(owner) if known.get(&key).is_some_and(|known| known == owner) => return None,
        Some(owner) => known.insert(key.clone(), owner.to_string()),
        None => known.remove(&key),
    }?;
    Some(ObjectRef::new(&before).within(&key.0))
}

/// Merges `fields` into the object's status, against the version it was read at, unless
/// they are there already; the written object, if anything was written.
pub(crate) async fn patch_status<K>(api: &Api<K>, object: &K, fields: Value) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let before = serde_json::to_value(object).ok().and_then(|o| o.get("status").cloned()).unwrap_or(json!({}));
    let mut after = before.clone();
    match (after.as_object_mut(), fields.as_object()) {
        (Some(after), Some(fields)) => after.extend(fields.clone()),
        _ => after = fields.clone(),
    }
    if same_content(&before, &after) {
        return Ok(None);
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"resourceVersion": object.meta().resource_version}, "status": fields});
    Ok(Some(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?))
}

/// Whether two values say the same, reading absent, `null`, `false`, zero, empty text,
/// lists and maps as one: the API server drops what `omitempty` drops, and what it
/// stored must not look changed and be written again for ever.
pub(crate) fn same_content<T: serde::Serialize>(a: &T, b: &T) -> bool {
    fn prune(value: Value) -> Value {
        let pruned = match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, prune(v))).filter(|(_, v)| !v.is_null()).collect())
            }
            Value::Array(list) => Value::Array(list.into_iter().map(prune).collect()),
            other => other,
        };
        let empty = match &pruned {
            Value::Object(map) => map.is_empty(),
            Value::Array(list) => list.is_empty(),
            Value::String(text) => text.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Bool(on) => !on,
            Value::Null => true,
        };
        if empty { Value::Null } else { pruned }
    }
    let json = |v: &T| prune(serde_json::to_value(v).unwrap_or(Value::Null));
    json(a) == json(b)
}

/// `intstr.GetScaledValueFromIntOrPercent` of a typed field (`kubeyard_compiler::int_or_percent`).
pub(crate) fn scaled(
    value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    total: i64,
    round_up: bool,
) -> Result<i64, Error> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as Typed;
    use kubeyard_compiler::int_or_percent::{self, IntOrString};
    let value = match value {
        Typed::Int(count) => IntOrString::Int(i64::from(*count)),
        Typed::String(text) => IntOrString::String(text),
    };
    int_or_percent::scaled(value, total, round_up).map_err(Error::Invalid)
}

/// The controller reference an owner puts on what it makes.
pub(crate) fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Result<OwnerReference, Error> {
    let reference = owner.controller_owner_ref(&()).ok_or_else(|| Error::Invalid("an owner without a uid".into()))?;
    Ok(OwnerReference { block_owner_deletion: Some(true), ..reference })
}

pub(crate) fn label_selector<T: serde::Serialize>(selector: &T) -> Result<Selector, Error> {
    let json = serde_json::to_value(selector).map_err(|e| Error::Invalid(e.to_string()))?;
    Selector::from_label_selector(Some(&json)).map_err(|e| Error::Invalid(e.to_string()))
}

/// `now` on the control plane's clock, as a `Time` field holds it.
pub(crate) fn time(clock: &Clock) -> Time {
    time_at(clock.now())
}

/// A moment as a `Time` field holds it: whole seconds.
pub(crate) fn time_at(now: SystemTime) -> Time {
    let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    Time(k8s_openapi::jiff::Timestamp::from_second(i64::try_from(seconds).unwrap_or(0)).unwrap_or_default())
}

/// Reconciles asked for at a moment of the control plane's clock: a deadline
/// (`progressDeadlineSeconds`, `activeDeadlineSeconds`) or the moment a pod has been ready
/// for `minReadySeconds`. kube-runtime's `Action::requeue` counts real time, and a test's
/// virtual clock runs ahead of it, so these wake through [`Clock::sleep`] instead, into the
/// controller's `reconcile_on`. One wake-up per object is kept: the earliest asked for.
pub(crate) struct Wakeups<K: Resource<DynamicType = ()>> {
    clock: Clock,
    sender: mpsc::UnboundedSender<ObjectRef<K>>,
    pending: Arc<Mutex<HashMap<ObjectRef<K>, SystemTime>>>,
}

impl<K: Resource<DynamicType = ()> + Send + Sync + 'static> Wakeups<K> {
    /// The wake-ups and the stream they arrive on, for `Controller::reconcile_on`.
    pub(crate) fn new(clock: &Clock) -> (Wakeups<K>, impl futures_util::Stream<Item = ObjectRef<K>> + Send + use<K>) {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let stream = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
        (Wakeups { clock: clock.clone(), sender, pending: Arc::default() }, stream)
    }

    /// Reconciles `object` again once `after` has passed on the clock (unless an earlier
    /// wake-up is already set).
    pub(crate) fn after(&self, object: &K, after: Duration) {
        let reference = ObjectRef::from_obj(object);
        let at = self.clock.now() + after;
        {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match pending.get(&reference) {
                Some(set) if *set <= at => return,
                _ => pending.insert(reference.clone(), at),
            };
        }
        let (clock, sender, pending) = (self.clock.clone(), self.sender.clone(), Arc::clone(&self.pending));
        tokio::spawn(async move {
            clock.sleep(after).await;
            {
                let mut pending = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // A later, earlier wake-up replaced this one: it does the waking.
                if pending.get(&reference) != Some(&at) {
                    return;
                }
                pending.remove(&reference);
            }
            let _ = sender.send(reference);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(owner: Option<&str>) -> Pod {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "default"}});
        if let Some(owner) = owner {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": owner, "uid": format!("{owner}-uid"), "controller": true}]);
        }
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn the_owner_a_child_leaves_is_told_once() {
        let mut known = HashMap::new();
        let mut left = |child: &Pod, present: bool| {
            former_owner::<Pod, ReplicaSet>(&mut known, child, present).map(|r| (r.name, r.namespace))
        };
        let was = |name: &str| Some((name.to_string(), Some("default".to_string())));
        assert_eq!(left(&pod(Some("a")), true), None, "first seen: nothing left");
        assert_eq!(left(&pod(Some("a")), true), None, "the same owner");
        assert_eq!(left(&pod(None), true), was("a"), "its reference removed: a told");
        assert_eq!(left(&pod(None), true), None, "told once");
        assert_eq!(left(&pod(Some("b")), true), None, "adopted by b");
        assert_eq!(left(&pod(Some("c")), true), was("b"), "taken over by c: b told");
        assert_eq!(left(&pod(Some("c")), false), None, "gone: its owner hears through owns");
        assert_eq!(left(&pod(Some("d")), true), None, "forgotten once gone");
    }
}
