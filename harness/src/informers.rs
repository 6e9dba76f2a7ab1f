//! Shared informers, as client-go's `SharedInformerFactory` gives every controller of
//! `kube-controller-manager`: one watch per kind for the whole process, one cache of its
//! objects, and any number of subscribers told of every change. Each controller reads its
//! objects and their dependents from the caches instead of listing them from the API
//! server on every reconcile, which is what lets a thousand Deployments converge without
//! the API server serializing a thousand lists.
//!
//! The caches are indexed by namespace and by controlling owner, the lookups every
//! controller makes (client-go's namespace and controller-uid indexers).
//!
//! A cache lags the API server, so a controller that acted on it could act twice (make
//! pods it already made). Kubernetes guards with "expectations"; here every informer
//! knows the newest revision it has seen, the API server having one revision counter
//! (etcd's), so a controller simply waits until its informers have caught up with its own
//! writes ([`Informer::caught_up`]) before it reads them again: exact read-your-writes.

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a controller waits for a cache to show its own write before it goes on with
/// what the cache holds (a watch that was cut off and listed again never delivers the
/// revision of an object deleted meanwhile).
pub const CATCH_UP: Duration = Duration::from_secs(5);

pub trait Kind: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static {}
impl<K> Kind for K where K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static {}

type Key = (String, String);

struct State<K: Kind> {
    writer: Writer<K>,
    /// Namespace → objects by name.
    by_namespace: HashMap<String, BTreeMap<String, Arc<K>>>,
    /// (namespace, controller uid or "" for none) → objects by name.
    by_controller: HashMap<(String, String), BTreeMap<String, Arc<K>>>,
    /// What each object was indexed under, to unindex it.
    indexed: HashMap<Key, String>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
    /// The objects of a listing in progress (a watch that started again).
    listing: Vec<K>,
    /// Listings begun, and the number of the last one finished: a listing begun after a
    /// write holds it, whatever revision the watch reached.
    listings_begun: u64,
    listed: u64,
}

struct Inner<K: Kind> {
    store: Store<K>,
    state: Mutex<State<K>>,
    revision: watch::Sender<u64>,
    synced: watch::Sender<bool>,
}

/// One kind's shared cache. Cheap to clone.
pub struct Informer<K: Kind> {
    inner: Arc<Inner<K>>,
}

impl<K: Kind> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { inner: Arc::clone(&self.inner) }
    }
}

/// The object's controlling owner reference.
pub fn controller_reference<K: Resource>(object: &K) -> Option<&OwnerReference> {
    object.meta().owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// The uid of the object's controlling owner.
pub fn controller_of<K: Resource>(object: &K) -> Option<&str> {
    controller_reference(object).map(|r| r.uid.as_str())
}

/// The revision a written object carries (0 when it is not a number: then nothing waits).
pub fn revision_of<K: Resource>(object: &K) -> u64 {
    object.meta().resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn key_of<K: Kind>(object: &K) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder leaves plain data behind; carry on with it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K: Kind> State<K> {
    fn index(&mut self, object: &Arc<K>) {
        let key = key_of(object.as_ref());
        let controller = controller_of(object.as_ref()).unwrap_or_default().to_string();
        if self.indexed.get(&key) != Some(&controller) {
            self.unindex(&key);
        }
        self.by_namespace.entry(key.0.clone()).or_default().insert(key.1.clone(), Arc::clone(object));
        self.by_controller
            .entry((key.0.clone(), controller.clone()))
            .or_default()
            .insert(key.1.clone(), Arc::clone(object));
        self.indexed.insert(key, controller);
    }

    fn unindex(&mut self, key: &Key) {
        let Some(controller) = self.indexed.remove(key) else { return };
        if let Some(objects) = self.by_namespace.get_mut(&key.0) {
            objects.remove(&key.1);
            if objects.is_empty() {
                self.by_namespace.remove(&key.0);
            }
        }
        let index = (key.0.clone(), controller);
        if let Some(objects) = self.by_controller.get_mut(&index) {
            objects.remove(&key.1);
            if objects.is_empty() {
                self.by_controller.remove(&index);
            }
        }
    }

    fn tell(&mut self, object: Arc<K>) {
        self.subscribers.retain(|subscriber| subscriber.send(Arc::clone(&object)).is_ok());
    }
}

impl<K: Kind> Informer<K> {
    /// Starts watching every object of the kind; the task ends with the last clone.
    pub fn start(api: Api<K>) -> Informer<K> {
        Informer::start_with(api, watcher::Config::default())
    }

    /// Starts watching the objects `config` selects.
    pub fn start_with(api: Api<K>, config: watcher::Config) -> Informer<K> {
        let writer = Writer::default();
        let store = writer.as_reader();
        let state = State {
            writer,
            by_namespace: HashMap::new(),
            by_controller: HashMap::new(),
            indexed: HashMap::new(),
            subscribers: Vec::new(),
            listing: Vec::new(),
            listings_begun: 0,
            listed: 0,
        };
        let inner = Arc::new(Inner {
            store,
            state: Mutex::new(state),
            revision: watch::channel(0).0,
            synced: watch::channel(false).0,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            // No component reads managedFields: the cache does not keep them (client-go's
            // informers are given the same transform), and writes that send none keep the
            // live ones.
            let stream =
                watcher(api, config).default_backoff().modify(|object| object.meta_mut().managed_fields = None);
            futures_util::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let Some(inner) = weak.upgrade() else { return };
                if let Ok(event) = event {
                    Informer { inner }.apply(event);
                }
            }
        });
        Informer { inner }
    }

    fn apply(&self, event: watcher::Event<K>) {
        let mut state = lock(&self.inner.state);
        let mut newest = 0;
        match event {
            watcher::Event::Apply(object) => {
                newest = revision_of(&object);
                let key = key_of(&object);
                // kube's writer keeps a copy of the decoded object, and the cache keeps that
                // copy. It costs a clone, but it is the smaller object: decoding leaves the
                // slack of each vector's growth in it (a pod's containers, its conditions),
                // and a clone has none. Caching the decoded pods themselves, with no copy,
                // took the 100,000-pod bench from 4.7 GB to 5.1 GB at its peak, in the same
                // time (docs/controlplane.md).
                state.writer.apply_watcher_event(&watcher::Event::Apply(object));
                if let Some(stored) = self.get(&key.0, &key.1) {
                    state.index(&stored);
                    state.tell(stored);
                }
            }
            watcher::Event::Delete(object) => {
                newest = revision_of(&object);
                let key = key_of(&object);
                state.unindex(&key);
                state.writer.apply_watcher_event(&watcher::Event::Delete(object.clone()));
                state.tell(Arc::new(object));
            }
            watcher::Event::Init => {
                state.listing.clear();
                state.listings_begun += 1;
            }
            watcher::Event::InitApply(object) => state.listing.push(object),
            watcher::Event::InitDone => {
                let listing = std::mem::take(&mut state.listing);
                let listed: HashSet<Key> = listing.iter().map(key_of).collect();
                // What went while the watch was away is told as gone.
                let gone: Vec<Arc<K>> =
                    self.inner.store.state().into_iter().filter(|o| !listed.contains(&key_of(o.as_ref()))).collect();
                state.writer.apply_watcher_event(&watcher::Event::Init);
                for object in listing {
                    newest = newest.max(revision_of(&object));
                    state.writer.apply_watcher_event(&watcher::Event::InitApply(object));
                }
                state.writer.apply_watcher_event(&watcher::Event::InitDone);
                for object in gone {
                    state.unindex(&key_of(object.as_ref()));
                    state.tell(object);
                }
                for object in self.inner.store.state() {
                    state.index(&object);
                    state.tell(object);
                }
                state.listed = state.listings_begun;
                self.inner.synced.send_replace(true);
            }
        }
        drop(state);
        self.inner.revision.send_if_modified(|seen| {
            let moved = newest > *seen;
            *seen = (*seen).max(newest);
            moved
        });
    }

    /// Where the cache stands now, for a write just made at `revision`.
    pub fn mark(&self, revision: u64) -> Mark {
        Mark { revision, listing: lock(&self.inner.state).listings_begun }
    }

    /// Whether the cache holds the write `mark` was taken for: the watch delivered its
    /// revision, or a listing begun after it finished.
    pub fn holds(&self, mark: &Mark) -> bool {
        *self.inner.revision.borrow() >= mark.revision || lock(&self.inner.state).listed > mark.listing
    }

    /// The cache, for kube-runtime's `Controller::for_shared_stream`.
    pub fn store(&self) -> Store<K> {
        self.inner.store.clone()
    }

    /// Every object now in the cache, then every change (an object as it now is, or as it
    /// last was when it is gone). What the subscriber has not read yet is kept for it.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = lock(&self.inner.state);
        for object in self.inner.store.state() {
            let _ = tx.send(object);
        }
        state.subscribers.push(tx);
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|object| (object, rx)) })
    }

    /// Returns once the first listing is in the cache.
    pub async fn synced(&self) {
        let mut synced = self.inner.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Returns once the cache holds every change up to `revision` (or after [`CATCH_UP`]).
    pub async fn caught_up(&self, revision: u64) {
        if revision == 0 {
            return;
        }
        let mut seen = self.inner.revision.subscribe();
        let _ = tokio::time::timeout(CATCH_UP, seen.wait_for(|seen| *seen >= revision)).await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let mut reference = ObjectRef::new(name);
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        self.inner.store.get(&reference)
    }

    /// The namespace's objects, by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let state = lock(&self.inner.state);
        state.by_namespace.get(namespace).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    /// The namespace's objects whose controlling owner has `uid` (`""`: no controller).
    pub fn controlled_by(&self, namespace: &str, uid: &str) -> Vec<Arc<K>> {
        let state = lock(&self.inner.state);
        let index = (namespace.to_string(), uid.to_string());
        state.by_controller.get(&index).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    /// Every object in the cache.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.inner.store.state()
    }
}

/// A write a cache is expected to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    revision: u64,
    listing: u64,
}

/// Kubernetes' controller expectations, exact: per object a controller manages, the
/// newest write of its last reconcile that the cache of one kind does not show yet. The
/// next reconcile of that object waits until it does, so it never decides on a cache
/// older than its own writes (and makes a pod twice). Kubernetes gives up on an
/// expectation after five minutes; so does this, as a last resort.
pub struct Expectations<K: Kind> {
    informer: Informer<K>,
    pending: Mutex<HashMap<String, (Mark, std::time::Instant)>>,
}

/// How long an expectation is held at most (`ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

impl<K: Kind> Expectations<K> {
    pub fn new(informer: &Informer<K>) -> Expectations<K> {
        Expectations { informer: informer.clone(), pending: Mutex::new(HashMap::new()) }
    }

    /// The reconcile of `key` wrote `written` through the API.
    pub fn expect(&self, key: &str, written: &Written) {
        let revision = written.revision();
        if revision == 0 {
            return;
        }
        let mark = self.informer.mark(revision);
        lock(&self.pending).insert(key.to_string(), (mark, std::time::Instant::now()));
    }

    /// Whether the cache shows every write expected for `key`.
    pub fn met(&self, key: &str) -> bool {
        let mut pending = lock(&self.pending);
        let Some((mark, since)) = pending.get(key) else { return true };
        if self.informer.holds(mark) || since.elapsed() >= EXPECTATIONS_TIMEOUT {
            pending.remove(key);
            return true;
        }
        false
    }
}

/// The key expectations are kept under: `namespace/name`.
pub fn key_of_object<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// How soon a reconcile that found its expectations unmet looks again (the cache's own
/// events usually bring it back sooner).
pub const UNMET_RETRY: Duration = Duration::from_secs(1);

/// The newest revision a reconcile wrote through one API, to wait for before the next
/// reconcile reads that kind's cache.
#[derive(Debug, Default)]
pub struct Written(std::sync::atomic::AtomicU64);

impl Written {
    pub fn note<K: Resource>(&self, object: &K) {
        self.0.fetch_max(revision_of(object), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn revision(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The controller manager's informers, one per kind its controllers read.
#[derive(Clone)]
pub struct Informers {
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub deployments: Informer<Deployment>,
    pub replicasets: Informer<ReplicaSet>,
    pub replication_controllers: Informer<ReplicationController>,
    pub daemonsets: Informer<DaemonSet>,
    pub statefulsets: Informer<StatefulSet>,
    pub jobs: Informer<Job>,
    /// The kubelets' Leases (`kube-node-lease`), for the node lifecycle controller.
    pub leases: Informer<Lease>,
    pub persistent_volume_claims: Informer<PersistentVolumeClaim>,
    pub persistent_volumes: Informer<PersistentVolume>,
    pub storage_classes: Informer<StorageClass>,
    pub pod_disruption_budgets: Informer<PodDisruptionBudget>,
    pub cronjobs: Informer<CronJob>,
    pub horizontal_pod_autoscalers: Informer<HorizontalPodAutoscaler>,
    pub resource_quotas: Informer<ResourceQuota>,
    pub controller_revisions: Informer<ControllerRevision>,
}

impl Informers {
    pub fn start(client: &kube::Client) -> Informers {
        Informers {
            pods: Informer::start(Api::all(client.clone())),
            nodes: Informer::start(Api::all(client.clone())),
            services: Informer::start(Api::all(client.clone())),
            endpoints: Informer::start(Api::all(client.clone())),
            endpoint_slices: Informer::start(Api::all(client.clone())),
            deployments: Informer::start(Api::all(client.clone())),
            replicasets: Informer::start(Api::all(client.clone())),
            replication_controllers: Informer::start(Api::all(client.clone())),
            daemonsets: Informer::start(Api::all(client.clone())),
            statefulsets: Informer::start(Api::all(client.clone())),
            jobs: Informer::start(Api::all(client.clone())),
            leases: Informer::start(Api::namespaced(client.clone(), crate::kubelet::LEASE_NAMESPACE)),
            persistent_volume_claims: Informer::start(Api::all(client.clone())),
            persistent_volumes: Informer::start(Api::all(client.clone())),
            storage_classes: Informer::start(Api::all(client.clone())),
            pod_disruption_budgets: Informer::start(Api::all(client.clone())),
            cronjobs: Informer::start(Api::all(client.clone())),
            horizontal_pod_autoscalers: Informer::start(Api::all(client.clone())),
            resource_quotas: Informer::start(Api::all(client.clone())),
            controller_revisions: Informer::start(Api::all(client.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{self, ApiServer};
    use crate::store::memory::MemoryStore;
    use kube::api::{DeleteParams, PostParams};
    use kubeyard_compiler::admission::Admission;
    use kubeyard_compiler::schema::CatalogOptions;
    use serde_json::json;

    async fn client() -> kube::Client {
        let admission = Admission::new(CatalogOptions::default()).unwrap();
        let server = ApiServer::new(Arc::new(MemoryStore::new()), admission, apiserver::Options::default());
        apiserver::objects::ensure_namespace(&server, "default").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { server.serve(listener).await });
        kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    fn pod(name: &str, owner: Option<&str>) -> Pod {
        let mut pod = json!({"metadata": {"name": name, "namespace": "default"},
                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        if let Some(uid) = owner {
            pod["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        serde_json::from_value(pod).unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    /// A server holding the pod `before`, and an informer of pods that has listed it.
    async fn synced_with_one_pod() -> (Api<Pod>, Informer<Pod>) {
        let client = client().await;
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        api.create(&PostParams::default(), &pod("before", None)).await.unwrap();
        let informer = Informer::start(Api::<Pod>::all(client));
        informer.synced().await;
        (api, informer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cache_shows_each_write_once_caught_up_and_tells_subscribers() {
        let (api, informer) = synced_with_one_pod().await;
        let mut told = Box::pin(informer.subscribe());
        assert_eq!(told.next().await.map(|p| p.name_any()).as_deref(), Some("before"), "what is cached is told first");

        // Read-your-writes: once caught up with a write's revision, the cache holds it,
        // and an expectation of it is met.
        let owned = api.create(&PostParams::default(), &pod("owned", Some("uid-1"))).await.unwrap();
        let expectations = Expectations::new(&informer);
        let written = Written::default();
        written.note(&owned);
        expectations.expect("default/rs", &written);
        informer.caught_up(revision_of(&owned)).await;
        assert!(expectations.met("default/rs"));
        assert!(expectations.met("default/other"), "nothing expected, nothing to wait for");
        let beyond = Written::default();
        beyond.0.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        expectations.expect("default/rs", &beyond);
        assert!(!expectations.met("default/rs"), "a write the cache has not shown holds the next pass back");
        assert!(informer.get("default", "owned").is_some());
        assert_eq!(names(&informer.controlled_by("default", "uid-1")), ["owned"]);
        assert_eq!(names(&informer.controlled_by("default", "")), ["before"]);
        assert_eq!(names(&informer.in_namespace("default")), ["before", "owned"]);
        assert!(informer.in_namespace("elsewhere").is_empty());
        assert_eq!(told.next().await.map(|p| p.name_any()).as_deref(), Some("owned"));

        // A deletion is told with the object as it last was, and leaves every index.
        let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        api.delete("before", &now).await.unwrap();
        assert_eq!(told.next().await.map(|p| p.name_any()).as_deref(), Some("before"));
        assert!(informer.get("default", "before").is_none());
        assert!(informer.controlled_by("default", "").is_empty());
        assert_eq!(names(&informer.all()), ["owned"]);
        // Nothing written, nothing to wait for.
        informer.caught_up(0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubes_store_and_the_indexes_share_one_copy_of_each_object() {
        let (api, informer) = synced_with_one_pod().await;
        let store = informer.store();
        store.wait_until_ready().await.unwrap();
        let before = ObjectRef::new("before").within("default");
        let kept = store.get(&before).unwrap();
        assert!(Arc::ptr_eq(&kept, &informer.get("default", "before").unwrap()), "one copy, shared");
        // Later writes reach both, as one object.
        let after = api.create(&PostParams::default(), &pod("after", Some("uid-1"))).await.unwrap();
        informer.caught_up(revision_of(&after)).await;
        let kept = store.get(&ObjectRef::new("after").within("default")).unwrap();
        assert!(Arc::ptr_eq(&kept, &informer.controlled_by("default", "uid-1")[0]));
        let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        api.delete("before", &now).await.unwrap();
        let gone = async {
            while informer.get("default", "before").is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the deletion reaches the cache");
        assert!(store.get(&before).is_none(), "a deletion leaves kube's store too");
        assert_eq!(store.state().len(), 1);
        assert!(Arc::ptr_eq(&informer.store().get(&ObjectRef::new("after").within("default")).unwrap(), &kept));
    }
}
