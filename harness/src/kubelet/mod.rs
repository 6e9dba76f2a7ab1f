//! Node agents: simulated kubelets, clients of the API server like every component. Each
//! registers its Node with capacity and a pod CIDR, renews its Lease in `kube-node-lease`,
//! and runs the pods bound to it through the simulated runtime (`pod.rs`), which reports the
//! phases, conditions and container states the real kubelet does. A deleted pod's
//! containers are stopped within its grace period and the pod is then removed, as the real
//! kubelet confirms a deletion.
//!
//! One [`Kubelets`] hosts any number of nodes behind one pod watch (kwok's design): a
//! thousand simulated nodes cost one watch, not a thousand. A node can be stopped (it
//! stops renewing its lease and its pods freeze, as when a kubelet dies) and started again
//! (it re-registers and resumes its pods).

pub mod docker;
pub mod exec;
pub mod grpc_probe;
pub mod network;
pub mod pause;
pub mod pod;
pub mod process;
pub mod server;
pub mod simulate;
pub mod stats;
pub mod volumes;

use crate::apiserver::names::stable_hash;
use crate::clock::Clock;
use crate::events;
use crate::informers::Informer;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use simulate::{Delays, Simulation};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// One node to simulate.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// `cpu`, `memory`, `pods` and any other resource, as quantities.
    pub capacity: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Taints as the API writes them (`{key, value, effect}`).
    pub taints: Vec<Value>,
    /// Picks the node's pod CIDR and address, so each node's are distinct.
    pub index: u32,
    /// Where the node really is (a container on a cluster network): its address and its
    /// pods' /24, instead of the made-up ones `index` picks.
    pub network: Option<NodeNetwork>,
}

/// A node's place on a real network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeNetwork {
    pub address: std::net::Ipv4Addr,
    /// The first address of the node's pod /24.
    pub pods: std::net::Ipv4Addr,
}

impl NodeConfig {
    pub fn new(name: &str, index: u32) -> NodeConfig {
        let capacity = [("cpu", "4"), ("memory", "8Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")];
        NodeConfig {
            name: name.to_string(),
            capacity: capacity.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            index,
            network: None,
        }
    }

    /// The first three octets of the pod /24: the network's, or
    /// `10.{244 + index / 256}.{index % 256}` (2,800 nodes before the range runs out).
    pub(crate) fn pod_prefix(&self) -> String {
        match self.network {
            Some(network) => {
                let [a, b, c, _] = network.pods.octets();
                format!("{a}.{b}.{c}")
            }
            None => format!("10.{}.{}", 244 + self.index / 256, self.index % 256),
        }
    }

    pub fn pod_cidr(&self) -> String {
        format!("{}.0/24", self.pod_prefix())
    }

    pub(crate) fn pod_ip(&self, host: u32) -> String {
        format!("{}.{host}", self.pod_prefix())
    }

    pub fn address(&self) -> String {
        match self.network {
            Some(network) => network.address.to_string(),
            None => format!("172.18.{}.{}", self.index / 250, self.index % 250 + 2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Clock,
    /// Seeds each pod's delays (with its name), so a seed replays a run's timings.
    pub seed: u64,
    pub delays: Delays,
    /// How often a lease is renewed (the kubelet renews every 10 s of a 40 s lease).
    pub renew_interval: Duration,
    pub lease_duration: Duration,
    pub kubelet_version: String,
    /// The host's engine, for a container node's pods of images other than the built-in
    /// one (`None`: those are simulated).
    pub docker: Option<Arc<docker::DockerRuntime>>,
    /// Where a node that runs real containers records what they use (`/stats/summary`).
    pub stats: Option<Arc<stats::Stats>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::real(),
            seed: 0,
            delays: Delays::default(),
            renew_interval: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            kubelet_version: "v1.32.0".into(),
            docker: None,
            stats: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("there is no node {node}: the nodes are {}", known.join(", "))]
    Unknown { node: String, known: Vec<String> },
    #[error("node {0} exists already")]
    Exists(String),
}

struct NodeState {
    config: NodeConfig,
    running: bool,
    /// Host parts of the pod CIDR in use, and by which pod.
    addresses: HashMap<String, u32>,
    next: u32,
}

impl NodeState {
    /// The pod's address: the one it has (its status says so after this agent restarts),
    /// else the next free one; `None` when the node's /24 is used up, as the real
    /// kubelet's network plugin fails a sandbox when its range is exhausted.
    fn allocate(&mut self, uid: &str, known: Option<&str>) -> Option<String> {
        if let Some(host) = self.addresses.get(uid) {
            return Some(self.config.pod_ip(*host));
        }
        let used: HashSet<u32> = self.addresses.values().copied().collect();
        let prefix = format!("{}.", self.config.pod_prefix());
        let known = known.and_then(|ip| ip.strip_prefix(&prefix)).and_then(|host| host.parse::<u32>().ok());
        if let Some(host) = known.filter(|h| (2..=254).contains(h) && !used.contains(h)) {
            self.addresses.insert(uid.to_string(), host);
            return Some(self.config.pod_ip(host));
        }
        // Hosts .2 to .254, handed out round-robin so a freed address is not reused at once.
        let host = (0..253).map(|i| 2 + (self.next.saturating_sub(2) + i) % 253).find(|h| !used.contains(h))?;
        self.next = if host >= 254 { 2 } else { host + 1 };
        self.addresses.insert(uid.to_string(), host);
        Some(self.config.pod_ip(host))
    }
}

struct Running {
    node: String,
    simulation: String,
    terminating: bool,
    task: JoinHandle<()>,
    /// A pod of real processes is stopped through this (its grace period), not aborted.
    stop: Option<tokio::sync::watch::Sender<Option<Duration>>>,
    reported: pod::Reported,
}

/// The kubelet's status manager sends a pod's status again when the API server's copy
/// disagrees with it: the node controller marks the pods of a silent node not ready
/// (Ready=False, ContainersReady left as it was, which the kubelet itself never writes),
/// and once the node is back its kubelet sets them right without waiting for a change of
/// its own.
fn resync(shared: &Arc<Shared>, pod: &Pod, reported: &pod::Reported) {
    // Read from the typed pod: this runs for every event of every running pod.
    let status = |kind: &str| crate::controllers::pods::condition(pod, kind).map(|c| c.status.as_str());
    let marked = status("Ready") == Some("False") && status("ContainersReady") == Some("True");
    if !marked {
        return;
    }
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let (name, reported) = (pod.name_any(), Arc::clone(reported));
    tokio::spawn(async move {
        // What the pod's task reported last, read now: never an older report.
        let Some(ours) = reported.lock().ok().and_then(|r| r.clone()) else { return };
        let ready = ours.get("conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        if ready {
            let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": ours}))).await;
        }
    });
}

struct Shared {
    client: kube::Client,
    /// The agent's nodes as the API server has them.
    node_cache: Informer<Node>,
    options: Options,
    nodes: Mutex<BTreeMap<String, NodeState>>,
    pods: Mutex<HashMap<String, Running>>,
    /// Bounds the requests the pods' tasks make at once (`pod::POD_REQUESTS`).
    pod_requests: Arc<tokio::sync::Semaphore>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder leaves plain data behind; carry on with it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The node agents of one process. Dropping it stops them all.
pub struct Kubelets {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for (_, running) in lock(&self.shared.pods).drain() {
            running.task.abort();
        }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

impl Kubelets {
    /// Registers every node and starts renewing leases and running pods.
    pub async fn start(client: kube::Client, nodes: Vec<NodeConfig>, options: Options) -> Result<Kubelets, Error> {
        let single = (nodes.len() == 1).then(|| nodes[0].name.clone());
        let fields = match &single {
            Some(node) => watcher::Config::default().fields(&format!("metadata.name={node}")),
            None => watcher::Config::default(),
        };
        let node_cache = Informer::start_with(Api::all(client.clone()), fields);
        let shared = Arc::new(Shared {
            node_cache,
            client,
            options,
            nodes: Mutex::new(
                nodes
                    .into_iter()
                    .map(|config| {
                        let state = NodeState { config, running: true, addresses: HashMap::new(), next: 2 };
                        (state.config.name.clone(), state)
                    })
                    .collect(),
            ),
            pods: Mutex::new(HashMap::new()),
            pod_requests: Arc::new(tokio::sync::Semaphore::new(pod::POD_REQUESTS)),
        });
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": LEASE_NAMESPACE}})).unwrap_or_default();
        let _ = Api::<Namespace>::all(shared.client.clone()).create(&PostParams::default(), &namespace).await;
        let configs: Vec<NodeConfig> = lock(&shared.nodes).values().map(|n| n.config.clone()).collect();
        let registrations = futures_util::stream::iter(configs.iter().map(|c| register(&shared, c)))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        registrations.into_iter().collect::<Result<Vec<()>, Error>>()?;
        let tasks =
            vec![tokio::spawn(heartbeat(Arc::clone(&shared))), tokio::spawn(watch(Arc::clone(&shared), single))];
        Ok(Kubelets { shared, tasks })
    }

    pub fn nodes(&self) -> Vec<String> {
        lock(&self.shared.nodes).keys().cloned().collect()
    }

    /// The node's kubelet dies: no more lease renewals, its pods freeze as they are.
    pub fn stop(&self, node: &str) -> Result<(), Error> {
        let mut nodes = lock(&self.shared.nodes);
        let names: Vec<String> = nodes.keys().cloned().collect();
        nodes.get_mut(node).ok_or_else(|| Error::Unknown { node: node.into(), known: names })?.running = false;
        lock(&self.shared.pods).retain(|_, running| {
            let keep = running.node != node;
            if !keep {
                running.task.abort();
            }
            keep
        });
        Ok(())
    }

    /// A node joins: this agent registers it and runs its pods from now on.
    pub async fn add_node(&self, config: NodeConfig) -> Result<(), Error> {
        {
            let mut nodes = lock(&self.shared.nodes);
            if nodes.contains_key(&config.name) {
                return Err(Error::Exists(config.name.clone()));
            }
            let state = NodeState { config: config.clone(), running: true, addresses: HashMap::new(), next: 2 };
            nodes.insert(config.name.clone(), state);
        }
        register(&self.shared, &config).await
    }

    /// The node's kubelet comes back: it re-registers, renews its lease and resumes its pods.
    pub async fn start_node(&self, node: &str) -> Result<(), Error> {
        let config = {
            let mut nodes = lock(&self.shared.nodes);
            let names: Vec<String> = nodes.keys().cloned().collect();
            let state = nodes.get_mut(node).ok_or_else(|| Error::Unknown { node: node.into(), known: names })?;
            state.running = true;
            state.config.clone()
        };
        register(&self.shared, &config).await?;
        let pods: Api<Pod> = Api::all(self.shared.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        if let Ok(list) = pods.list(&params).await {
            for pod in list.items {
                observe(&self.shared, pod);
            }
        }
        Ok(())
    }
}

fn node_object(config: &NodeConfig, version: &str, now: &str) -> Value {
    let mut labels = kubeyard_compiler::node::kubelet_labels(&config.name);
    labels.extend(config.labels.clone());
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut spec = json!({"podCIDR": config.pod_cidr(), "podCIDRs": [config.pod_cidr()]});
    // A node on a real network runs pods of built-in images as processes; the rest, and
    // everything on a made-up node, is simulated.
    let runtime = if config.network.is_some() { "process" } else { "simulated" };
    if !config.taints.is_empty() {
        spec["taints"] = json!(config.taints);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kubeyard.dev/runtime": runtime}},
        "spec": spec,
        "status": {
            "capacity": config.capacity,
            "allocatable": config.capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": config.address()}, {"type": "Hostname", "address": config.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("kubeyard-{}", config.index), "systemUUID": format!("kubeyard-{}", config.index),
                "bootID": format!("kubeyard-{}", config.index), "kernelVersion": "6.1.0-kubeyard",
                "osImage": "kubeyard simulated node", "containerRuntimeVersion": "kubeyard://0.1.0",
                "kubeletVersion": version, "kubeProxyVersion": version,
                "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}

/// Creates the Node (or, after a restart, re-posts its status as ready) and its Lease.
async fn register(shared: &Shared, config: &NodeConfig) -> Result<(), Error> {
    let failed = |source| Error::Register { node: config.name.clone(), source };
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let object = node_object(config, &shared.options.kubelet_version, &shared.options.clock.timestamp());
    let node: Node = serde_json::from_value(object.clone()).map_err(|e| failed(kube::Error::SerdeError(e)))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(failed(error)),
    }
    // The API server drops status on create; it is posted through the subresource.
    let status = json!({"status": object["status"]});
    nodes.patch_status(&config.name, &PatchParams::default(), &Patch::Merge(status)).await.map_err(failed)?;
    renew(shared, config).await.map_err(failed)?;
    // What a kubelet says of its node as it starts (its recorder names the node by name).
    let name = &config.name;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}});
    let source = events::Source { component: "kubelet", host: Some(name) };
    let now = shared.options.clock.timestamp();
    for (reason, message) in [
        ("Starting", "Starting kubelet.".to_string()),
        ("NodeHasSufficientMemory", format!("Node {name} status is now: NodeHasSufficientMemory")),
        ("NodeHasNoDiskPressure", format!("Node {name} status is now: NodeHasNoDiskPressure")),
        ("NodeHasSufficientPID", format!("Node {name} status is now: NodeHasSufficientPID")),
        ("NodeReady", format!("Node {name} status is now: NodeReady")),
    ] {
        events::record(&shared.client, &node, source, events::Type::Normal, reason, &message, &now).await;
    }
    Ok(())
}

async fn renew(shared: &Shared, config: &NodeConfig) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let now = shared.options.clock.micro_timestamp();
    let spec = json!({
        "holderIdentity": config.name,
        "leaseDurationSeconds": shared.options.lease_duration.as_secs(),
        "renewTime": now,
    });
    match leases.patch(&config.name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec}))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": config.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": []},
                "spec": spec,
            });
            let lease: Lease = serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
            leases.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(error) => Err(error),
    }
}

/// Whether the node's `Ready` condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    let conditions = node.status.iter().flat_map(|s| s.conditions.iter().flatten());
    kubeyard_compiler::node::ready(conditions.map(|c| (c.type_.as_str(), c.status.as_str())))
}

/// Renews every running node's lease each interval; a node the node-lifecycle controller
/// marked not ready while its kubelet was away is posted ready again.
async fn heartbeat(shared: Arc<Shared>) {
    loop {
        shared.options.clock.sleep(shared.options.renew_interval).await;
        let configs: Vec<NodeConfig> =
            lock(&shared.nodes).values().filter(|n| n.running).map(|n| n.config.clone()).collect();
        futures_util::stream::iter(configs.into_iter().map(|config| {
            let shared = Arc::clone(&shared);
            async move {
                let (shared, config) = (&*shared, &config);
                let _ = renew(shared, config).await;
                if shared.node_cache.get("", &config.name).is_some_and(|node| !node_ready(&node)) {
                    let _ = register(shared, config).await;
                }
            }
        }))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    }
}

/// One watch over the pods (or those bound to the one node, for a single agent).
async fn watch(shared: Arc<Shared>, single: Option<String>) {
    // Many nodes watch every pod and keep their own: a selector would make the API server
    // judge each event for this watch alone instead of sending the line every watcher of
    // pods gets.
    let config = match &single {
        Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        None => watcher::Config::default(),
    };
    let pods: Api<Pod> = Api::all(shared.client.clone());
    // The node agent keeps no managedFields (it never reads them).
    let stream = watcher(pods, config).default_backoff().modify(|pod| pod.metadata.managed_fields = None);
    futures_util::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => observe(&shared, pod),
            Ok(watcher::Event::Delete(pod)) => forget(&shared, &pod),
            _ => {}
        }
    }
}

fn forget(shared: &Shared, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(running) = lock(&shared.pods).remove(&uid) {
        running.task.abort();
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    if let Some(state) = lock(&shared.nodes).get_mut(&node) {
        state.addresses.remove(&uid);
    }
}

/// A pod bound to one of our nodes changed: start running it, resume it with a changed
/// simulation, or stop it when it is being deleted.
fn observe(shared: &Arc<Shared>, pod: Pod) {
    // Most events are of pods already running as they should (their own status reports):
    // those are told from the typed pod, before anything is copied.
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    if !lock(&shared.nodes).get(&node).is_some_and(|s| s.running) {
        return;
    }
    let simulation_text = pod.annotations().get(simulate::ANNOTATION).cloned().unwrap_or_default();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    if finished && !deleting {
        // Its containers are gone and so is its sandbox: the address may serve another pod.
        if let Some(state) = lock(&shared.nodes).get_mut(&node) {
            state.addresses.remove(&uid);
        }
    }
    {
        let pods = lock(&shared.pods);
        if let Some(running) = pods.get(&uid) {
            let same = running.simulation == simulation_text;
            if running.terminating || (!deleting && same) {
                if !running.terminating && !deleting {
                    resync(shared, &pod, &running.reported);
                }
                return;
            }
        } else if finished && !deleting {
            return;
        }
    }
    let known_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    let (host_ip, pod_ip, config) = {
        let mut nodes = lock(&shared.nodes);
        let Some(state) = nodes.get_mut(&node).filter(|s| s.running) else { return };
        let pod_ip = match state.allocate(&uid, known_ip.as_deref()) {
            Some(ip) => ip,
            // Stopping a pod needs no address.
            None if deleting => String::new(),
            None => {
                tokio::spawn(no_address(Arc::clone(shared), pod, state.config.pod_prefix()));
                return;
            }
        };
        (state.config.address(), pod_ip, state.config.clone())
    };
    let value = match serde_json::to_value(&pod) {
        Ok(value) => value,
        Err(_) => return,
    };
    // On a real node, a pod runs for real: the built-in image as processes, any other
    // in the engine, unless the pod asks to be simulated.
    let asked_to_simulate = pod.annotations().contains_key(simulate::ANNOTATION);
    let in_engine = !asked_to_simulate && shared.options.docker.as_ref().is_some_and(|docker| docker.runs(&value));
    let processes = config.network.filter(|_| process::runs_as_processes(&value) || in_engine);
    let mut pods = lock(&shared.pods);
    if processes.is_some() {
        // Real processes: a changed annotation means nothing to them, and a deletion
        // stops them within the grace period before it is confirmed.
        match pods.get_mut(&uid) {
            Some(running) if deleting => {
                let grace = value.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(30);
                if let Some(stop) = &running.stop {
                    stop.send_replace(Some(Duration::from_secs(grace)));
                }
                running.terminating = true;
                return;
            }
            Some(_) => return,
            None => {}
        }
    }
    if let Some(previous) = pods.remove(&uid) {
        previous.task.abort();
    }
    let reported = pod::Reported::default();
    let mut stop = None;
    let task = if deleting {
        tokio::spawn(terminate(Arc::clone(shared), value))
    } else {
        let simulation = match Simulation::parse(&simulation_text) {
            Ok(simulation) => simulation,
            Err(message) => {
                // The pod says what it wants wrongly: say so on the pod, run it healthy.
                let shared = Arc::clone(shared);
                let pod = value.clone();
                tokio::spawn(async move { warn(&shared, &pod, &message).await });
                Simulation::default()
            }
        };
        let seed = shared.options.seed
            ^ stable_hash(&format!("{}/{}", text(&value, "/metadata/namespace"), text(&value, "/metadata/name")));
        let namespace = text(&value, "/metadata/namespace");
        let context = pod::Context {
            client: shared.client.clone(),
            pods: Api::namespaced(shared.client.clone(), namespace),
            pod: value.clone(),
            host_ip,
            pod_ip,
            clock: shared.options.clock.clone(),
            rng: fastrand::Rng::with_seed(seed),
            delays: shared.options.delays.clone(),
            simulation,
            node: config.name.clone(),
            pending: None,
            gone: false,
            reported: reported.clone(),
            requests: Arc::clone(&shared.pod_requests),
            retry: pod::STATUS_RETRY,
        };
        match processes {
            Some(network) => {
                let (sender, receiver) = tokio::sync::watch::channel(None);
                stop = Some(sender);
                let runtime = process::Runtime {
                    docker: shared.options.docker.clone(),
                    stats: shared.options.stats.clone(),
                    ..process::Runtime::new(network.address)
                };
                tokio::spawn(Box::pin(process::run(context, runtime, receiver)))
            }
            // Boxed: a finished task's memory goes only with its handle, which is kept
            // while the pod exists, and unboxed that is the whole future's state (up
            // to 16 KB a pod); boxed, the future is freed as the pod's run ends.
            None => tokio::spawn(Box::pin(pod::run(context))),
        }
    };
    pods.insert(uid, Running { node, simulation: simulation_text, terminating: deleting, task, stop, reported });
}

/// FNV-1a: a stable hash of a pod's name for its delay seed (std's hasher is randomized).
async fn warn(shared: &Shared, pod: &Value, message: &str) {
    let message = format!("annotation {}: {message}", simulate::ANNOTATION);
    let source = events::Source { component: "kubelet", host: None };
    let now = shared.options.clock.timestamp();
    events::record(&shared.client, pod, source, events::Type::Warning, "InvalidSimulation", &message, &now).await;
}

/// The node's pod range is used up: say so on the pod, as the real kubelet does, and try
/// again later with the pod as it is then (finished and deleted pods free addresses).
async fn no_address(shared: Arc<Shared>, pod: Pod, prefix: String) {
    let Ok(value) = serde_json::to_value(&pod) else { return };
    let message = format!(
        "Failed to create pod sandbox: failed to allocate for range 0: no IP addresses available in range set: {prefix}.2-{prefix}.254"
    );
    let source = events::Source { component: "kubelet", host: None };
    let now = shared.options.clock.timestamp();
    events::record(&shared.client, &value, source, events::Type::Warning, "FailedCreatePodSandBox", &message, &now)
        .await;
    shared.options.clock.sleep(Duration::from_secs(10)).await;
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), text(&value, "/metadata/namespace"));
    if let Ok(Some(current)) = pods.get_opt(text(&value, "/metadata/name")).await
        && current.metadata.uid == pod.metadata.uid
    {
        observe(&shared, current);
    }
}

/// Stops the pod's containers (within its grace period) and confirms the deletion.
async fn terminate(shared: Arc<Shared>, pod: Value) {
    let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(30);
    // By name, not uid: uids are random, names come from the seed.
    let name = format!("{}/{}", text(&pod, "/metadata/namespace"), text(&pod, "/metadata/name"));
    let mut rng = fastrand::Rng::with_seed(shared.options.seed ^ stable_hash(&name) ^ 0x5354_4f50);
    let stop = simulate::draw(shared.options.delays.stop, &mut rng).min(Duration::from_secs(grace));
    // A running pod's containers are stopped: said per container, as the kubelet says it.
    if text(&pod, "/status/phase") == "Running" {
        let node = text(&pod, "/spec/nodeName");
        let source = events::Source { component: "kubelet", host: Some(node) };
        let now = shared.options.clock.timestamp();
        for container in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
            let container = text(container, "/name");
            let mut object = pod.clone();
            object["fieldPath"] = json!(format!("spec.containers{{{container}}}"));
            let message = format!("Stopping container {container}");
            events::record(&shared.client, &object, source, events::Type::Normal, "Killing", &message, &now).await;
        }
    }
    shared.options.clock.sleep(stop).await;
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), text(&pod, "/metadata/namespace"));
    pod::confirm_deletion(&shared.options.clock, &pods, &pod).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_until_the_range_is_used_up() {
        let mut state =
            NodeState { config: NodeConfig::new("n1", 0), running: true, addresses: HashMap::new(), next: 2 };
        let given: HashSet<String> =
            (0..253).map(|i| state.allocate(&format!("pod-{i}"), None).expect("a free address")).collect();
        assert_eq!(given.len(), 253, "no address handed out twice");
        assert_eq!(state.allocate("pod-0", None), Some(state.config.pod_ip(2)), "a pod keeps its address");
        assert_eq!(state.allocate("one-too-many", None), None, "a full range gives nothing, not a used address");
        state.addresses.remove("pod-7");
        let freed = state.config.pod_ip(9);
        assert_eq!(state.allocate("one-too-many", None), Some(freed), "a freed address serves the next pod");
    }
}
