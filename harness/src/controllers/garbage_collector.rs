//! The garbage collector: objects whose owners are all gone are deleted, and owners deleted
//! with `Foreground` or `Orphan` propagation have their dependents deleted first or let go,
//! as Kubernetes' garbage collector does it.
//!
//! Every kind discovery shows as listable, watchable, readable and deletable is watched for
//! its metadata only, and an owner graph keyed by uid is kept from those watches. The graph
//! says what to look at, never proves what to do: before a dependent is deleted because an
//! owner is gone, the dependent and each owner are read live by kind and name and their uids
//! compared (a cache lags; a name can come back as a new object). One worker drains a queue
//! of work between watch events, so the graph never changes under a decision but between
//! API calls. No work is done before every kind's first listing is in the graph.
//!
//! The work, as in Kubernetes:
//! - attempt to delete a dependent: its owners are read and found solid, dangling (gone, or
//!   another uid under the name) or waiting (deleting with `foregroundDeletion`). With a solid
//!   owner left, references to dangling and waiting owners are removed from it; with none, it
//!   is deleted (with a uid precondition): `Foreground` when a waiting owner asked and it has
//!   dependents of its own, otherwise as its own finalizers say (`orphan`, `foregroundDeletion`)
//!   or `Background`.
//! - a foreground owner: its dependents are attempted; once none blocks it (a reference with
//!   `blockOwnerDeletion: true`) in the graph nor in a live listing, its `foregroundDeletion`
//!   finalizer is removed. Dependents without `blockOwnerDeletion` are deleted all the same
//!   but not waited for.
//! - an orphaning owner: its reference is removed from every dependent (listed live, so that
//!   one the watches have not shown yet is not left naming a gone owner, to be collected),
//!   then its `orphan` finalizer.
//!
//! References that cannot be valid are not followed: a namespaced owner owns only objects in
//! its own namespace (a reference from another namespace reads as a dangling owner there, so
//! such a dependent is collected and never blocks or gets orphaned by the owner it names),
//! and a cluster-scoped object cannot have a namespaced owner, nor can anyone have an owner of
//! a kind that is not served: such an object is left alone, as Kubernetes leaves it. Left out:
//! Kubernetes' cache of owners known absent and breaking foreground cycles by unblocking
//! references. The served kinds are discovered at start and again whenever a
//! CustomResourceDefinition changes (Kubernetes looks every 30 s), so custom resources
//! own and are owned like any other object.

use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

/// Set by the API server on an owner deleted with `Foreground` propagation.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Set by the API server on an owner deleted with `Orphan` propagation.
pub const ORPHAN: &str = "orphan";

/// How long failed work waits before it is tried again (and discovery, for the server).
const RETRY: Duration = Duration::from_millis(500);

/// An object's type and metadata: all the collectors read or watch.
pub type Meta = PartialObjectMeta<DynamicObject>;

/// A served kind the collectors act on.
#[derive(Clone, Debug)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub delete_collection: bool,
}

impl Kind {
    /// The metadata API of this kind in `namespace` (which a cluster-scoped kind ignores).
    pub fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<Meta> {
        match namespace {
            Some(namespace) if self.namespaced => Api::namespaced_with(client.clone(), namespace, &self.resource),
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }

    /// `pods`, `replicasets.apps`: the resource as Kubernetes' messages name it.
    pub fn resource_name(&self) -> String {
        match self.resource.group.as_str() {
            "" => self.resource.plural.clone(),
            group => format!("{}.{group}", self.resource.plural),
        }
    }
}

/// Every kind discovery shows as listable, watchable, readable and deletable.
pub async fn discover(client: &kube::Client) -> Result<Vec<Kind>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            let can = |verb: &str| capabilities.supports_operation(verb);
            if [verbs::LIST, verbs::WATCH, verbs::GET, verbs::DELETE].into_iter().all(can) {
                kinds.push(Kind {
                    resource,
                    namespaced: capabilities.scope == Scope::Namespaced,
                    delete_collection: can(verbs::DELETE_COLLECTION),
                });
            }
        }
    }
    Ok(kinds)
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client) {
    let kinds = loop {
        match discover(&client).await {
            Ok(kinds) => break kinds,
            // Not serving yet: a controller manager starts beside its API server.
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    };
    let mut events = watch_all(&client, &kinds);
    let mut crds = crd_changes(&client);
    let mut collector = Collector::new(client, kinds);
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some((kind, Ok(event))) => collector.on_event(kind, event),
                // The watcher lists and watches again by itself after its back-off.
                Some((_, Err(_))) => {}
                None => return,
            },
            Some(()) = crds.next() => {
                if let Ok(kinds) = discover(&collector.client).await {
                    for kind in kinds {
                        if let Some(index) = collector.add_kind(kind) {
                            events.push(watch_kind(&collector.client, &collector.kinds[index], index));
                        }
                    }
                }
            },
            _ = retry.tick() => collector.retry_failed(),
            () = std::future::ready(()), if collector.ready_to_work() => collector.work_one().await,
        }
    }
}

/// The metadata watches of every kind as one stream, each event tagged with its kind;
/// kinds served later are added to it.
type Events = stream::SelectAll<BoxStream<'static, (usize, Result<Event<Meta>, watcher::Error>)>>;

fn watch_all(client: &kube::Client, kinds: &[Kind]) -> Events {
    stream::select_all(kinds.iter().enumerate().map(|(index, kind)| watch_kind(client, kind, index)))
}

fn watch_kind(
    client: &kube::Client,
    kind: &Kind,
    index: usize,
) -> BoxStream<'static, (usize, Result<Event<Meta>, watcher::Error>)> {
    let api: Api<Meta> = Api::all_with(client.clone(), &kind.resource);
    watcher(api, watcher::Config::default()).default_backoff().map(move |event| (index, event)).boxed()
}

/// A signal for every change to a CustomResourceDefinition (the kinds served may have
/// changed), and once after the first listing if it held any (one made between the first
/// discovery and this watch); nothing while the server holds none, so a cluster without
/// CRDs does no discovery beyond the first.
fn crd_changes(client: &kube::Client) -> BoxStream<'static, ()> {
    let resource = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let api: Api<Meta> = Api::all_with(client.clone(), &resource);
    let listed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let listed = std::sync::Arc::clone(&listed);
            async move {
                use std::sync::atomic::Ordering;
                match event {
                    Ok(Event::Apply(_) | Event::Delete(_)) => Some(()),
                    Ok(Event::InitApply(_)) => {
                        listed.store(true, Ordering::Relaxed);
                        None
                    }
                    Ok(Event::InitDone) => listed.swap(false, Ordering::Relaxed).then_some(()),
                    _ => None,
                }
            }
        })
        .boxed()
}

/// One object as the collector knows it: where it is and what it says about ownership.
#[derive(Debug)]
struct Node {
    kind: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn from_meta(kind: usize, meta: &ObjectMeta) -> Option<(String, Node)> {
        let node = Node {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        Some((meta.uid.clone()?, node))
    }

    fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }

    /// Whether `dependent` can validly name this node as its owner.
    fn may_own(&self, dependent: &Node) -> bool {
        self.namespace.is_none() || self.namespace == dependent.namespace
    }
}

/// Who owns whom, by uid.
#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → the uids of objects naming it (whether or not the owner is known).
    dependents: HashMap<String, HashSet<String>>,
}

/// What the worker does for one uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// Collect the object if its owners are gone; finish a foreground deletion.
    Delete(String),
    /// Let go of an orphaning owner's dependents.
    Orphan(String),
}

impl Graph {
    /// Records an object as it is now, returning the work its change calls for.
    fn observe(&mut self, uid: String, node: Node) -> Vec<Work> {
        let mut work = Vec::new();
        let previous = self.nodes.remove(&uid);
        let owners_changed = previous.as_ref().is_none_or(|p| p.owners != node.owners);
        if let Some(previous) = &previous {
            self.unlink(&uid, previous);
            // An owner waiting on its dependents looks again when one lets go of it.
            if owners_changed {
                work.extend(self.waiting_owners(previous));
            }
        }
        self.link(&uid, &node);
        if node.orphaning() {
            work.push(Work::Orphan(uid.clone()));
        }
        if node.deleting_dependents() {
            work.push(Work::Delete(uid.clone()));
            work.extend(self.dependents_of(&uid).into_iter().map(Work::Delete));
        }
        if !node.owners.is_empty() && (owners_changed || !self.waiting_owners(&node).is_empty()) {
            work.push(Work::Delete(uid.clone()));
        }
        self.nodes.insert(uid, node);
        work
    }

    /// Forgets a deleted object, returning the work its absence calls for.
    fn forget(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        self.unlink(uid, &node);
        let mut work: Vec<Work> = self.dependents_of(uid).into_iter().map(Work::Delete).collect();
        work.extend(self.waiting_owners(&node));
        work
    }

    fn link(&mut self, uid: &str, node: &Node) {
        for owner in &node.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.to_string());
        }
    }

    fn unlink(&mut self, uid: &str, node: &Node) {
        for owner in &node.owners {
            if let Some(dependents) = self.dependents.get_mut(&owner.uid) {
                dependents.remove(uid);
                if dependents.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents.get(uid).into_iter().flatten().cloned().collect()
    }

    /// The dependents that can validly name `uid` as their owner.
    fn valid_dependents(&self, uid: &str) -> Vec<String> {
        let Some(owner) = self.nodes.get(uid) else {
            return Vec::new();
        };
        self.dependents_of(uid)
            .into_iter()
            .filter(|dependent| self.nodes.get(dependent).is_some_and(|d| owner.may_own(d)))
            .collect()
    }

    /// The valid dependents whose reference to `uid` blocks its foreground deletion.
    fn blocking_dependents(&self, uid: &str) -> Vec<String> {
        self.valid_dependents(uid)
            .into_iter()
            .filter(|dependent| {
                self.nodes[dependent].owners.iter().any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// The owners of `node` that are deleting with `foregroundDeletion`.
    fn waiting_owners(&self, node: &Node) -> Vec<Work> {
        node.owners
            .iter()
            .filter(|r| self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents))
            .map(|r| Work::Delete(r.uid.clone()))
            .collect()
    }

    fn uids_of_kind(&self, kind: usize) -> Vec<String> {
        self.nodes.iter().filter(|(_, node)| node.kind == kind).map(|(uid, _)| uid.clone()).collect()
    }
}

/// Each queued piece of work once, in order.
#[derive(Default)]
struct Queue {
    order: VecDeque<Work>,
    queued: HashSet<Work>,
}

impl Queue {
    fn push(&mut self, work: Work) {
        if self.queued.insert(work.clone()) {
            self.order.push_back(work);
        }
    }

    fn pop(&mut self) -> Option<Work> {
        let work = self.order.pop_front()?;
        self.queued.remove(&work);
        Some(work)
    }
}

/// What an owner reference, read live, turned out to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Solid,
    /// Gone, or another object under its name.
    Dangling,
    /// Deleting with `foregroundDeletion`: waiting for its dependents to go.
    Waiting,
}

struct Collector {
    client: kube::Client,
    kinds: Vec<Kind>,
    graph: Graph,
    queue: Queue,
    /// Work that failed, queued again at the next retry tick.
    failed: Vec<Work>,
    /// Per kind being listed (again), the uids its listing has shown so far.
    listing: HashMap<usize, HashSet<String>>,
    /// Kinds whose first listing is not complete yet.
    unsynced: HashSet<usize>,
    /// Dependents with an owner of a kind not served (yet): attempted again when a kind is
    /// added, as Kubernetes requeues a reference its REST mapper cannot resolve (a CRD's
    /// kind discovered late); the owner may have come and gone before its kind was watched.
    unresolved: HashSet<String>,
}

fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn holds(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

impl Collector {
    fn new(client: kube::Client, kinds: Vec<Kind>) -> Collector {
        Collector {
            client,
            unsynced: (0..kinds.len()).collect(),
            kinds,
            graph: Graph::default(),
            queue: Queue::default(),
            failed: Vec::new(),
            listing: HashMap::new(),
            unresolved: HashSet::new(),
        }
    }

    /// A kind served since the last discovery: its index, to watch it; `None` if known.
    fn add_kind(&mut self, kind: Kind) -> Option<usize> {
        let known = self
            .kinds
            .iter()
            .any(|k| k.resource.api_version == kind.resource.api_version && k.resource.plural == kind.resource.plural);
        if known {
            return None;
        }
        self.kinds.push(kind);
        for uid in std::mem::take(&mut self.unresolved) {
            self.queue.push(Work::Delete(uid));
        }
        // Not waited for, unlike the kinds of the start: a CRD deleted before its first
        // listing would hold the collector forever, and owners are read live before any
        // dependent is deleted anyway.
        Some(self.kinds.len() - 1)
    }

    fn ready_to_work(&self) -> bool {
        self.unsynced.is_empty() && !self.queue.order.is_empty()
    }

    fn retry_failed(&mut self) {
        for work in std::mem::take(&mut self.failed) {
            self.queue.push(work);
        }
    }

    fn on_event(&mut self, kind: usize, event: Event<Meta>) {
        match event {
            Event::Init => {
                self.listing.insert(kind, HashSet::new());
            }
            Event::InitApply(object) => {
                if let Some(uid) = self.observe(kind, &object.metadata) {
                    self.listing.entry(kind).or_default().insert(uid);
                }
            }
            // A new listing is the whole truth for its kind: what it did not show is gone.
            Event::InitDone => {
                let listed = self.listing.remove(&kind).unwrap_or_default();
                for uid in self.graph.uids_of_kind(kind) {
                    if !listed.contains(&uid) {
                        self.forget(&uid);
                    }
                }
                self.unsynced.remove(&kind);
            }
            Event::Apply(object) => {
                self.observe(kind, &object.metadata);
            }
            Event::Delete(object) => {
                if let Some(uid) = &object.metadata.uid {
                    self.forget(uid);
                }
            }
        }
    }

    fn observe(&mut self, kind: usize, meta: &ObjectMeta) -> Option<String> {
        let (uid, node) = Node::from_meta(kind, meta)?;
        for work in self.graph.observe(uid.clone(), node) {
            self.queue.push(work);
        }
        Some(uid)
    }

    fn forget(&mut self, uid: &str) {
        self.unresolved.remove(uid);
        for work in self.graph.forget(uid) {
            self.queue.push(work);
        }
    }

    async fn work_one(&mut self) {
        let Some(work) = self.queue.pop() else {
            return;
        };
        let done = match &work {
            Work::Delete(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.orphan_dependents(uid).await,
        };
        if done.is_err() {
            self.failed.push(work);
        }
    }

    fn kind_of(&self, reference: &OwnerReference) -> Option<usize> {
        let group = group_of(&reference.api_version);
        self.kinds.iter().position(|k| k.resource.group == group && k.resource.kind == reference.kind)
    }

    /// The object of `kind` named `name`, read live, if it is still the one with `uid`.
    async fn read(
        &self,
        kind: usize,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
    ) -> Result<Option<Meta>, kube::Error> {
        let object = self.kinds[kind].api(&self.client, namespace).get_opt(name).await?;
        Ok(object.filter(|o| o.metadata.uid.as_deref() == Some(uid)))
    }

    /// Whether every owner of `node` is in the graph, validly named and not waiting on its
    /// dependents: then nothing is to be done, and the API need not be asked.
    fn owners_known_solid(&self, node: &Node) -> bool {
        node.owners.iter().all(|reference| {
            self.graph.nodes.get(&reference.uid).is_some_and(|owner| {
                owner.name == reference.name
                    && self.kinds[owner.kind].resource.kind == reference.kind
                    && owner.may_own(node)
                    && !owner.deleting_dependents()
            })
        })
    }

    async fn attempt_to_delete(&mut self, uid: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.nodes.get(uid) else {
            return Ok(());
        };
        // Deleting is a one-way trip: its dependents are looked at once it is gone.
        if node.deleting && !node.deleting_dependents() {
            return Ok(());
        }
        if !node.deleting && self.owners_known_solid(node) {
            return Ok(());
        }
        let (kind, namespace, name) = (node.kind, node.namespace.clone(), node.name.clone());
        let Some(latest) = self.read(kind, namespace.as_deref(), &name, uid).await? else {
            // Gone already: its watch event will say so.
            return Ok(());
        };
        if latest.metadata.deletion_timestamp.is_some() {
            if holds(&latest.metadata, FOREGROUND) {
                return self.finish_foreground_deletion(uid).await;
            }
            return Ok(());
        }
        let references = latest.metadata.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(());
        }
        if references.iter().any(|reference| self.kind_of(reference).is_none()) {
            self.unresolved.insert(uid.to_string());
            return Ok(());
        }
        let Some(owners) = self.classify(&references, namespace.as_deref()).await? else {
            return Ok(());
        };
        if owners.iter().any(|(_, owner)| *owner == Owner::Solid) {
            let stale: Vec<&str> =
                owners.iter().filter(|(_, owner)| *owner != Owner::Solid).map(|(r, _)| r.uid.as_str()).collect();
            if stale.is_empty() {
                return Ok(());
            }
            return self.remove_references(kind, &latest, &stale).await;
        }
        let waited_for = owners.iter().any(|(_, owner)| *owner == Owner::Waiting);
        let policy = if waited_for && !self.graph.dependents_of(uid).is_empty() {
            // The foreground deletion goes on down the chain.
            PropagationPolicy::Foreground
        } else if holds(&latest.metadata, ORPHAN) {
            PropagationPolicy::Orphan
        } else if holds(&latest.metadata, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(kind, namespace.as_deref(), &name, uid, policy).await
    }

    /// Each owner reference read live; `None` when one can never be followed (a namespaced
    /// owner of a cluster-scoped object; a kind not served, for the caller has looked):
    /// the dependent is left alone.
    async fn classify(
        &self,
        references: &[OwnerReference],
        namespace: Option<&str>,
    ) -> Result<Option<Vec<(OwnerReference, Owner)>>, kube::Error> {
        let mut owners = Vec::new();
        for reference in references {
            let Some(kind) = self.kind_of(reference) else {
                return Ok(None);
            };
            if self.kinds[kind].namespaced && namespace.is_none() {
                return Ok(None);
            }
            // A namespaced owner is looked for in the dependent's namespace, nowhere else.
            let owner = match self.read(kind, namespace, &reference.name, &reference.uid).await? {
                None => Owner::Dangling,
                Some(o) if o.metadata.deletion_timestamp.is_some() && holds(&o.metadata, FOREGROUND) => Owner::Waiting,
                Some(_) => Owner::Solid,
            };
            owners.push((reference.clone(), owner));
        }
        Ok(Some(owners))
    }

    async fn delete(
        &self,
        kind: usize,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        policy: PropagationPolicy,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            // Never another object that took the name meanwhile.
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        ignore_not_found(self.kinds[kind].api(&self.client, namespace).delete(name, &params).await)
    }

    /// Takes the references to `owners` out of `object`, unless it changed since it was read.
    async fn remove_references(&self, kind: usize, object: &Meta, owners: &[&str]) -> Result<(), kube::Error> {
        let references = object.metadata.owner_references.iter().flatten();
        let kept: Vec<&OwnerReference> = references.filter(|r| !owners.contains(&r.uid.as_str())).collect();
        let kept = if kept.is_empty() { Value::Null } else { json!(kept) };
        let patch = json!({"metadata": {
            "ownerReferences": kept,
            "resourceVersion": object.metadata.resource_version,
        }});
        self.patch(kind, object, patch).await
    }

    /// Takes `finalizer` out of the object `uid`, unless it changed since it was read.
    async fn remove_finalizer(&self, uid: &str, finalizer: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.nodes.get(uid) else {
            return Ok(());
        };
        let Some(latest) = self.read(node.kind, node.namespace.as_deref(), &node.name, uid).await? else {
            return Ok(());
        };
        if !holds(&latest.metadata, finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = latest.metadata.finalizers.iter().flatten().filter(|f| *f != finalizer).collect();
        let kept = if kept.is_empty() { Value::Null } else { json!(kept) };
        let patch = json!({"metadata": {
            "finalizers": kept,
            "resourceVersion": latest.metadata.resource_version,
        }});
        self.patch(node.kind, &latest, patch).await
    }

    async fn patch(&self, kind: usize, object: &Meta, patch: Value) -> Result<(), kube::Error> {
        let api = self.kinds[kind].api(&self.client, object.metadata.namespace.as_deref());
        let name = object.metadata.name.as_deref().unwrap_or_default();
        ignore_not_found(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await)
    }

    /// A foreground owner: its finalizer goes once no dependent blocks it; until then the
    /// blocking dependents are attempted (again), and their going brings it back here.
    async fn finish_foreground_deletion(&mut self, uid: &str) -> Result<(), kube::Error> {
        let blocking = self.graph.blocking_dependents(uid);
        if blocking.is_empty() {
            // The watches can lag behind: only a live listing proves that none is left.
            if self.live_dependents(uid).await?.iter().any(|(_, dependent)| blocks(dependent, uid)) {
                // One the graph has not seen yet: its event will queue it, this looks again.
                self.failed.push(Work::Delete(uid.to_string()));
                return Ok(());
            }
            return self.remove_finalizer(uid, FOREGROUND).await;
        }
        for dependent in blocking {
            if !self.graph.nodes.get(&dependent).is_some_and(Node::deleting_dependents) {
                self.queue.push(Work::Delete(dependent));
            }
        }
        Ok(())
    }

    /// An orphaning owner: its reference goes from every dependent, then its finalizer. The
    /// dependents are listed live, as one the watches have not shown yet would otherwise
    /// keep a reference to a gone owner, and be collected.
    async fn orphan_dependents(&self, uid: &str) -> Result<(), kube::Error> {
        if !self.graph.nodes.get(uid).is_some_and(Node::orphaning) {
            return Ok(());
        }
        for (kind, dependent) in self.live_dependents(uid).await? {
            self.remove_references(kind, &dependent, &[uid]).await?;
        }
        self.remove_finalizer(uid, ORPHAN).await
    }

    /// The objects naming the owner `uid`, listed live over every kind: in the owner's
    /// namespace for a namespaced owner (nothing elsewhere can validly name it), everywhere
    /// for a cluster-scoped one. Costly, so only for an owner's last step.
    async fn live_dependents(&self, uid: &str) -> Result<Vec<(usize, Meta)>, kube::Error> {
        let Some(owner) = self.graph.nodes.get(uid) else {
            return Ok(Vec::new());
        };
        let mut dependents = Vec::new();
        for (index, kind) in self.kinds.iter().enumerate() {
            if owner.namespace.is_some() && !kind.namespaced {
                continue;
            }
            let objects = kind.api(&self.client, owner.namespace.as_deref()).list(&ListParams::default()).await?;
            let named = objects
                .items
                .into_iter()
                .filter(|o| o.metadata.owner_references.iter().flatten().any(|r| r.uid == uid));
            dependents.extend(named.map(|object| (index, object)));
        }
        Ok(dependents)
    }
}

/// Whether `dependent`'s reference to `owner` blocks the owner's foreground deletion.
fn blocks(dependent: &Meta, owner: &str) -> bool {
    dependent.metadata.owner_references.iter().flatten().any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(namespace: Option<&str>, owners: &[(&str, bool)], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            kind: 0,
            namespace: namespace.map(str::to_string),
            name: "x".into(),
            owners: owners
                .iter()
                .map(|(uid, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "owner".into(),
                    uid: uid.to_string(),
                    block_owner_deletion: Some(*block),
                    controller: None,
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn a_gone_owner_sends_its_dependents_to_be_attempted() {
        let mut graph = Graph::default();
        graph.observe("owner".into(), node(Some("a"), &[], &[], false));
        let work = graph.observe("child".into(), node(Some("a"), &[("owner", true)], &[], false));
        assert_eq!(work, vec![Work::Delete("child".into())]);
        assert_eq!(graph.forget("owner"), vec![Work::Delete("child".into())]);
        // Unchanged owners call for nothing.
        assert!(graph.observe("child".into(), node(Some("a"), &[("owner", true)], &[], false)).is_empty());
    }

    #[test]
    fn only_valid_blocking_dependents_hold_a_foreground_owner() {
        let mut graph = Graph::default();
        graph.observe("owner".into(), node(Some("a"), &[], &[FOREGROUND], true));
        graph.observe("blocks".into(), node(Some("a"), &[("owner", true)], &[], false));
        graph.observe("free".into(), node(Some("a"), &[("owner", false)], &[], false));
        graph.observe("elsewhere".into(), node(Some("b"), &[("owner", true)], &[], false));
        graph.observe("cluster".into(), node(None, &[("owner", true)], &[], false));
        assert_eq!(graph.blocking_dependents("owner"), vec!["blocks".to_string()]);
        // Its last blocking dependent's going brings the owner back.
        assert!(graph.forget("blocks").contains(&Work::Delete("owner".into())));
        assert!(graph.blocking_dependents("owner").is_empty());
    }

    #[test]
    fn an_orphaning_owner_is_queued_and_a_cluster_scoped_owner_owns_anywhere() {
        let mut graph = Graph::default();
        assert_eq!(graph.observe("owner".into(), node(None, &[], &[ORPHAN], true)), vec![Work::Orphan("owner".into())]);
        graph.observe("a".into(), node(Some("a"), &[("owner", true)], &[], false));
        graph.observe("b".into(), node(None, &[("owner", true)], &[], false));
        let mut dependents = graph.valid_dependents("owner");
        dependents.sort();
        assert_eq!(dependents, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }
}
