//! The scheduler: a client of the API server, as in Kubernetes. It watches nodes and pods
//! and keeps its own cache of both (each node with what is bound to it, each pod's
//! requests read once), takes pending pods from a queue ordered as Kubernetes' default
//! (priority, then age, then namespace and name), places each with the compiler's
//! scheduling framework and binds it through the `binding` subresource. Binds run in the
//! background, many at once, the pod counted on its node from the moment it is placed
//! (Kubernetes' "assumed" pods), so the next decision already sees it. A pod that fits
//! nowhere gets `PodScheduled=False` and a `FailedScheduling` event saying why, once per
//! reason, and is tried again when the cluster changes.
//!
//! Ties between equal nodes are broken by a generator seeded with `--seed`, so the same
//! cluster and seed give the same placement. On large clusters only part of the nodes is
//! searched per pod, from where the last search stopped, as Kubernetes does.

use crate::clock::Clock;
use crate::events;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubeyard_compiler::scheduling::{Framework, NodeInfo, PodInfo};
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

pub const NAME: &str = "default-scheduler";

/// Binds in flight at once.
const BINDS: usize = 64;
/// Pods placed between looks at what the watches brought.
const BATCH: usize = 256;
/// How soon pods that fit nowhere are tried again after the cluster changed, and how
/// often at the latest.
const RETRY_AFTER_CHANGE: Duration = Duration::from_secs(1);
const RETRY_ANYWAY: Duration = Duration::from_secs(10);
/// How long no pod may have joined the queue before pods are placed: pods made together
/// (three ReplicaSets replacing what a lost node ran) are then placed in queue order, not
/// in whatever order their creations happened to arrive, so a seed decides who gets the
/// last room. Kubernetes' queue orders what it holds the same way; this only makes sure it
/// holds the whole burst. On a stopped clock (`kubeyard test` in process) a burst's pods
/// share one creation time and are ordered by name, and the wait is long enough for a
/// busy machine's burst: what a seed places then does not depend on the machine's speed.
/// (50 ms split a burst about once in 40 runs of the determinism test under a full test
/// run's load with our crates unoptimised; the wait costs real time only when pods are
/// made, and no cluster time.)
const SETTLE: Duration = Duration::from_millis(5);
const SETTLE_SIMULATED: Duration = Duration::from_millis(200);

/// Queue order: higher priority first, then older, then by namespace and name.
type QueueKey = (Reverse<i32>, i64, String, String);

struct Tracked {
    info: Arc<PodInfo>,
    key: QueueKey,
    /// The node the pod is counted on: bound there, or assumed while its bind is in flight.
    counted: Option<String>,
    /// The API server says it is bound (not only assumed).
    bound: bool,
}

enum Bound {
    Done,
    /// The pod is gone or someone else bound it: the watch will say which.
    Moot,
    Failed,
}

struct Scheduler {
    client: kube::Client,
    /// The cluster's clock: the times of its conditions and events.
    clock: Clock,
    framework: Framework,
    rng: fastrand::Rng,
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, Tracked>,
    queue: BTreeSet<(QueueKey, String)>,
    /// Pods that fit nowhere, waiting for the cluster to change.
    unschedulable: HashMap<String, QueueKey>,
    /// The last reason reported per pod: each change is said once.
    reported: HashMap<String, String>,
    changed: bool,
    last_retry: Instant,
    /// Where the next search over the nodes begins (`nextStartNodeIndex`).
    start: usize,
    binds: Arc<Semaphore>,
    results: mpsc::UnboundedSender<(String, Bound)>,
    /// Pods and nodes listed in full since the watch (re)started.
    pods_synced: bool,
    nodes_synced: bool,
    listing_pods: Vec<Pod>,
    listing_nodes: Vec<Node>,
    /// The newest node revision taken in (see [`NodesSeen`]).
    seen: NodesSeen,
    /// Its attempts, in the control plane's profile.
    counts: Option<Arc<crate::profile::Component>>,
}

/// How far the scheduler's view of the nodes has come: the highest resource version of a
/// node it has taken in. A test that cordons a node and at once creates pods waits for
/// this to pass the cordon's revision, since the node watch and the pod watch are two
/// streams and nothing orders one's events against the other's.
#[derive(Debug, Clone, Default)]
pub struct NodesSeen(Arc<std::sync::atomic::AtomicU64>, Arc<std::sync::atomic::AtomicBool>);

impl NodesSeen {
    /// Whether pods wait in the queue to be placed (the scheduler lets a burst settle
    /// first): a test's stopped clock is not pushed meanwhile, as the cluster is not idle.
    pub fn placing(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Acquire)
    }

    fn saw(&self, node: &Node) {
        if let Some(revision) = node.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()) {
            self.0.fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        }
    }

    pub fn revision(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits (at most `limit`) until a node of `revision` or newer has been taken in.
    pub async fn reach(&self, revision: u64, limit: std::time::Duration) -> bool {
        let started = Instant::now();
        while self.revision() < revision {
            if started.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        true
    }
}

fn pod_value(pod: &Pod) -> Value {
    serde_json::to_value(pod).unwrap_or(Value::Null)
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn queue_key(pod: &Pod) -> QueueKey {
    let created = pod.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    (Reverse(priority), created, pod.namespace().unwrap_or_default(), pod.name_any())
}

impl Scheduler {
    fn count(&mut self, uid: &str, node: &str) {
        let Some(tracked) = self.pods.get_mut(uid) else { return };
        if tracked.counted.as_deref() == Some(node) {
            return;
        }
        if let Some(previous) = tracked.counted.take()
            && let Some(&i) = self.index.get(&previous)
        {
            self.nodes[i].remove(&tracked.info);
        }
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].add(&tracked.info);
        }
        tracked.counted = Some(node.to_string());
    }

    fn uncount(&mut self, uid: &str) {
        let Some(tracked) = self.pods.get_mut(uid) else { return };
        if let Some(previous) = tracked.counted.take() {
            if let Some(&i) = self.index.get(&previous) {
                self.nodes[i].remove(&tracked.info);
            }
            self.changed = true;
        }
        tracked.bound = false;
    }

    fn forget(&mut self, uid: &str) {
        self.uncount(uid);
        if let Some(tracked) = self.pods.remove(uid) {
            self.queue.remove(&(tracked.key, uid.to_string()));
        }
        self.unschedulable.remove(uid);
        self.reported.remove(uid);
    }

    fn observe_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.uid() else { return };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        let ours = matches!(pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()), None | Some("") | Some(NAME));
        if finished(pod) || (node.is_none() && (pod.metadata.deletion_timestamp.is_some() || !ours)) {
            // Finished pods take nothing; pending ones being deleted or not ours are not queued.
            self.forget(&uid);
            return;
        }
        if !self.pods.contains_key(&uid) {
            let tracked = Tracked {
                info: Arc::new(PodInfo::new(&pod_value(pod))),
                key: queue_key(pod),
                counted: None,
                bound: false,
            };
            self.pods.insert(uid.clone(), tracked);
        }
        match node {
            Some(node) => {
                if let Some(tracked) = self.pods.get_mut(&uid) {
                    tracked.bound = true;
                    let key = (tracked.key.clone(), uid.clone());
                    self.queue.remove(&key);
                }
                self.unschedulable.remove(&uid);
                self.reported.remove(&uid);
                self.count(&uid, &node);
            }
            None => {
                let tracked = &self.pods[&uid];
                // Assumed (a bind in flight), queued, or waiting for a change: already in hand.
                if tracked.counted.is_none() && !self.unschedulable.contains_key(&uid) {
                    self.queue.insert((tracked.key.clone(), uid));
                }
            }
        }
    }

    fn observe_node(&mut self, node: &Node) {
        self.seen.saw(node);
        let value = serde_json::to_value(node).unwrap_or(Value::Null);
        let name = node.name_any();
        match self.index.get(&name) {
            Some(&i) => self.nodes[i] = self.nodes[i].updated(&value),
            None => {
                let mut info = NodeInfo::new(&value);
                for tracked in self.pods.values().filter(|t| t.counted.as_deref() == Some(name.as_str())) {
                    info.add(&tracked.info);
                }
                self.nodes.push(info);
                self.reindex();
            }
        }
        self.changed = true;
    }

    fn remove_node(&mut self, name: &str) {
        if self.index.contains_key(name) {
            self.nodes.retain(|n| n.name != name);
            self.reindex();
            self.changed = true;
        }
    }

    fn reindex(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.index = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    }

    /// A watch that listed again: the cache is rebuilt from the listing.
    fn relisted_pods(&mut self, pods: Vec<Pod>) {
        let assumed: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, t)| !t.bound)
            .filter_map(|(uid, t)| Some((uid.clone(), t.counted.clone()?)))
            .collect();
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.forget(&uid);
        }
        for pod in &pods {
            self.observe_pod(pod);
        }
        // Binds still in flight keep their pods assumed.
        for (uid, node) in assumed {
            if self.pods.get(&uid).is_some_and(|t| !t.bound) {
                let key = (self.pods[&uid].key.clone(), uid.clone());
                self.queue.remove(&key);
                self.count(&uid, &node);
            }
        }
        self.pods_synced = true;
    }

    fn relisted_nodes(&mut self, nodes: Vec<Node>) {
        self.nodes.clear();
        self.index.clear();
        let counted: Vec<(String, String)> =
            self.pods.iter().filter_map(|(uid, t)| Some((uid.clone(), t.counted.clone()?))).collect();
        for tracked in self.pods.values_mut() {
            tracked.counted = None;
        }
        for node in &nodes {
            self.observe_node(node);
        }
        for (uid, node) in counted {
            self.count(&uid, &node);
        }
        self.nodes_synced = true;
    }

    fn bind_result(&mut self, uid: &str, result: Bound) {
        match result {
            Bound::Done => {}
            Bound::Moot => {
                if self.pods.get(uid).is_some_and(|t| !t.bound) {
                    self.uncount(uid);
                }
            }
            Bound::Failed => {
                if let Some(tracked) = self.pods.get(uid).filter(|t| !t.bound) {
                    let key = tracked.key.clone();
                    self.uncount(uid);
                    self.unschedulable.insert(uid.to_string(), key);
                }
            }
        }
    }

    fn retry_unschedulable(&mut self) {
        for (uid, key) in self.unschedulable.drain() {
            self.queue.insert((key, uid));
        }
        self.changed = false;
        self.last_retry = Instant::now();
    }

    /// Places up to a batch of queued pods, binding each in the background.
    fn schedule(&mut self) {
        if let Some(counts) = &self.counts {
            counts.queued(self.queue.len());
        }
        for _ in 0..BATCH {
            if self.binds.available_permits() == 0 {
                return;
            }
            let Some((key, uid)) = self.queue.pop_first() else { return };
            let Some(tracked) = self.pods.get(&uid) else { continue };
            let info = Arc::clone(&tracked.info);
            let rng = &mut self.rng;
            let started = Instant::now();
            let placed = self.framework.schedule_from(&info, &self.nodes, self.start, &mut |n| rng.usize(..n));
            if let Some(counts) = &self.counts {
                counts.record(started.elapsed(), placed.is_err());
            }
            match placed {
                Ok(placement) => {
                    self.start = (self.start + placement.examined) % self.nodes.len().max(1);
                    let node = self.nodes[placement.node].name.clone();
                    self.count(&uid, &node);
                    self.reported.remove(&uid);
                    let (_, _, namespace, name) = key;
                    self.spawn_bind(uid, namespace, name, node);
                }
                Err(unschedulable) => {
                    let message = unschedulable.to_string();
                    if self.reported.get(&uid) != Some(&message) {
                        let (_, _, namespace, name) = &key;
                        let pod = json!({"metadata": {"namespace": namespace, "name": name, "uid": uid}});
                        tokio::spawn(report(self.client.clone(), pod, message.clone(), self.clock.timestamp()));
                        self.reported.insert(uid.clone(), message);
                    }
                    self.unschedulable.insert(uid, key);
                }
            }
        }
    }

    fn spawn_bind(&self, uid: String, namespace: String, name: String, node: String) {
        let Ok(permit) = Arc::clone(&self.binds).try_acquire_owned() else { return };
        let (client, results, clock) = (self.client.clone(), self.results.clone(), self.clock.clone());
        tokio::spawn(async move {
            let result = bind(&client, &namespace, &name, &node).await;
            drop(permit);
            if let Bound::Done = result {
                // Kubernetes' scheduler says so on the pod: `kubectl describe` shows it.
                let pod = json!({"metadata": {"namespace": namespace, "name": name, "uid": uid}});
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                let source = events::Source { component: NAME, host: None };
                events::record(&client, &pod, source, events::Type::Normal, "Scheduled", &message, &clock.timestamp())
                    .await;
            }
            let _ = results.send((uid, result));
        });
    }
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, seed: u64) {
    run_seen(client, seed, NodesSeen::default(), Clock::real()).await;
}

/// Runs until the task is dropped, saying in `seen` how far its view of the nodes is.
pub async fn run_seen(client: kube::Client, seed: u64, seen: NodesSeen, clock: Clock) {
    let (results, mut bound) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler {
        client: client.clone(),
        clock,
        framework: Framework::default(),
        rng: fastrand::Rng::with_seed(seed),
        nodes: Vec::new(),
        index: HashMap::new(),
        pods: HashMap::new(),
        queue: BTreeSet::new(),
        unschedulable: HashMap::new(),
        reported: HashMap::new(),
        changed: false,
        last_retry: Instant::now(),
        start: 0,
        binds: Arc::new(Semaphore::new(BINDS)),
        results,
        pods_synced: false,
        nodes_synced: false,
        listing_pods: Vec::new(),
        listing_nodes: Vec::new(),
        seen,
        counts: crate::profile::current().map(|profile| profile.component(NAME)),
    };
    // The scheduler's cache keeps no managedFields (it never reads them).
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|pod| pod.metadata.managed_fields = None);
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node| node.metadata.managed_fields = None);
    futures_util::pin_mut!(pods, nodes);
    let mut tick = tokio::time::interval(RETRY_AFTER_CHANGE);
    // When a pod last joined the queue.
    let mut last_pod_event = tokio::time::Instant::now();
    let settle = if scheduler.clock.is_stopped() { SETTLE_SIMULATED } else { SETTLE };
    loop {
        let waiting = scheduler.pods_synced
            && scheduler.nodes_synced
            && !scheduler.queue.is_empty()
            && scheduler.binds.available_permits() > 0;
        let settled = last_pod_event.elapsed() >= settle;
        scheduler.seen.1.store(waiting, std::sync::atomic::Ordering::Release);
        tokio::select! {
            biased;
            Some(event) = pods.next() => {
                let queued = scheduler.queue.len();
                match event {
                    Ok(watcher::Event::Apply(pod)) => scheduler.observe_pod(&pod),
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(uid) = pod.uid() {
                            scheduler.forget(&uid);
                        }
                    }
                    Ok(watcher::Event::Init) => scheduler.listing_pods.clear(),
                    Ok(watcher::Event::InitApply(pod)) => scheduler.listing_pods.push(pod),
                    Ok(watcher::Event::InitDone) => {
                        let listing = std::mem::take(&mut scheduler.listing_pods);
                        scheduler.relisted_pods(listing);
                    }
                    Err(_) => {}
                }
                // A pod joined the queue: more of its burst may be on the way.
                if scheduler.queue.len() > queued {
                    last_pod_event = tokio::time::Instant::now();
                }
            }
            Some(event) = nodes.next() => match event {
                Ok(watcher::Event::Apply(node)) => scheduler.observe_node(&node),
                Ok(watcher::Event::Delete(node)) => scheduler.remove_node(&node.name_any()),
                Ok(watcher::Event::Init) => scheduler.listing_nodes.clear(),
                Ok(watcher::Event::InitApply(node)) => scheduler.listing_nodes.push(node),
                Ok(watcher::Event::InitDone) => {
                    let listing = std::mem::take(&mut scheduler.listing_nodes);
                    scheduler.relisted_nodes(listing);
                }
                Err(_) => {}
            },
            Some((uid, result)) = bound.recv() => scheduler.bind_result(&uid, result),
            _ = tick.tick() => {
                let waited = scheduler.last_retry.elapsed();
                if !scheduler.unschedulable.is_empty()
                    && ((scheduler.changed && waited >= RETRY_AFTER_CHANGE) || waited >= RETRY_ANYWAY)
                {
                    scheduler.retry_unschedulable();
                }
            }
            _ = std::future::ready(()), if waiting && settled => scheduler.schedule(),
            _ = tokio::time::sleep_until(last_pod_event + settle), if waiting && !settled => {}
        }
    }
}

/// `POST pods/{name}/binding`.
async fn bind(client: &kube::Client, namespace: &str, name: &str, node: &str) -> Bound {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match pods.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding).await {
        Ok(_) => Bound::Done,
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Bound::Moot,
        Err(_) => Bound::Failed,
    }
}

/// `PodScheduled=False` with the reason, and a `FailedScheduling` event, as the
/// Kubernetes scheduler reports a pod that fits nowhere.
async fn report(client: kube::Client, pod: Value, message: String, now: String) {
    let text = |pointer: &str| pod.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let (namespace, name) = (text("/metadata/namespace"), text("/metadata/name"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let condition = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastTransitionTime": now, "lastProbeTime": null,
    }]}});
    // A pod deleted meanwhile has nothing to report to.
    if pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition)).await.is_err() {
        return;
    }
    let source = events::Source { component: NAME, host: None };
    events::record(&client, &pod, source, events::Type::Warning, "FailedScheduling", &message, &now).await;
}
