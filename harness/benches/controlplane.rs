//! The in-process control plane: boot to a ready cluster, and a scale run from apply to
//! every pod Running and Ready, with the scheduler's throughput and peak memory.
//!
//! Run: `cargo bench -p kubeyard-harness --bench controlplane` (add `-- --nodes N
//! --deployments N --replicas N --boots N`).
//! Targets (issue 6), 2-core machine: boot to a ready 3-node cluster under 200 ms;
//! 1,000 nodes and 30,000 pods (3,000 Deployments of 10) Running and Ready in under 30 s,
//! the scheduler binding 2,000 pods/s.

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::CatalogOptions;
use kubeyard_harness::apiserver::{self, ApiServer};
use kubeyard_harness::controlplane::{Config, ControlPlane};
use kubeyard_harness::informers::Informer;
use kubeyard_harness::kubelet::simulate::Delays;
use kubeyard_harness::store::memory::MemoryStore;
use serde::Deserialize;
use serde_json::json;
use std::alloc::GlobalAlloc;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// The allocator the `kubeyard` binary runs with, so the figures are what `kubeyard up` does;
// or, built with `KUBEYARD_BENCH_SYSTEM_ALLOCATOR` set, the system's, which a heap profiler
// sees (`heaptrack`, for where the memory goes: docs/controlplane.md).
#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

const SYSTEM_ALLOCATOR: bool = option_env!("KUBEYARD_BENCH_SYSTEM_ALLOCATOR").is_some();

struct Allocator;

// SAFETY: every call goes to one of two allocators, always the same one (a constant), so
// each block is freed by the allocator that made it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { if SYSTEM_ALLOCATOR { std::alloc::System.alloc(layout) } else { mimalloc::MiMalloc.alloc(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe {
            if SYSTEM_ALLOCATOR {
                std::alloc::System.dealloc(ptr, layout)
            } else {
                mimalloc::MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe {
            if SYSTEM_ALLOCATOR {
                std::alloc::System.alloc_zeroed(layout)
            } else {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe {
            if SYSTEM_ALLOCATOR {
                std::alloc::System.realloc(ptr, layout, new_size)
            } else {
                mimalloc::MiMalloc.realloc(ptr, layout, new_size)
            }
        }
    }
}

struct Settings {
    nodes: u32,
    deployments: usize,
    replicas: usize,
    boots: usize,
}

fn settings() -> Settings {
    let mut settings = Settings { nodes: 1_000, deployments: 3_000, replicas: 10, boots: 10 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| panic!("{arg} N"));
        match arg.as_str() {
            "--nodes" => settings.nodes = value() as u32,
            "--deployments" => settings.deployments = value(),
            "--replicas" => settings.replicas = value(),
            "--boots" => settings.boots = value(),
            _ => {}
        }
    }
    settings
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM")
}

/// A size `/proc/self/status` gives in kB, in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn boots(count: usize) {
    if count == 0 {
        return;
    }
    let mut times = Vec::new();
    for _ in 0..count {
        let start = Instant::now();
        let plane = ControlPlane::boot(Config::with_nodes(3)).await.expect("boots");
        times.push(start.elapsed());
        drop(plane);
    }
    times.sort();
    println!(
        "boot to a ready 3-node cluster: min {:.1?}, median {:.1?}, max {:.1?} ({count} boots)",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// What the bench reads of a pod: its name, whether it is bound and whether it is Ready.
/// The bench watches pods as `kubectl get pods -w` would, but it is the measuring
/// instrument, not the cluster: it decodes these few fields (the rest of each line is
/// skipped unbuilt), where a whole `Pod` cost it a fifth of what the control plane's
/// own watchers of pods cost, on the same two cores.
#[derive(Clone, Debug, Default, Deserialize)]
struct PodProgress {
    #[serde(deserialize_with = "names")]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: ProgressSpec,
    #[serde(default)]
    status: ProgressStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProgressSpec {
    node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ProgressStatus {
    conditions: Option<Vec<ProgressCondition>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ProgressCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// Only what a watcher keeps of `metadata` (no managedFields, labels or owners built).
fn names<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Names {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        uid: Option<String>,
    }
    let Names { name, namespace, resource_version, uid } = Names::deserialize(deserializer)?;
    Ok(ObjectMeta { name, namespace, resource_version, uid, ..ObjectMeta::default() })
}

impl kube::Resource for PodProgress {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl PodProgress {
    fn bound(&self) -> bool {
        self.spec.node_name.is_some()
    }

    fn ready(&self) -> bool {
        self.status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

/// Pods seen, bound and ready, as the bench's watch has them.
#[derive(Default)]
struct Counts {
    seen: AtomicUsize,
    bound: AtomicUsize,
    ready: AtomicUsize,
}

impl Counts {
    fn now(&self) -> (usize, usize, usize) {
        (self.seen.load(Ordering::Relaxed), self.bound.load(Ordering::Relaxed), self.ready.load(Ordering::Relaxed))
    }
}

/// Keeps `counts` up to date with every change the informer tells (a pod gone from its
/// cache is told as it last was, and counted out).
async fn count(pods: Informer<PodProgress>, counts: Arc<Counts>) {
    let mut known: HashMap<String, (bool, bool)> = HashMap::new();
    let changes = pods.subscribe();
    futures_util::pin_mut!(changes);
    while let Some(pod) = changes.next().await {
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let state = pods.get(&namespace, &name).map(|pod| (pod.bound(), pod.ready()));
        let key = format!("{namespace}/{name}");
        let before = match state {
            Some(state) => known.insert(key, state),
            None => known.remove(&key),
        };
        let (was, is) = (before.unwrap_or_default(), state.unwrap_or_default());
        let moved = |counter: &AtomicUsize, was: bool, is: bool| match (was, is) {
            (false, true) => drop(counter.fetch_add(1, Ordering::Relaxed)),
            (true, false) => drop(counter.fetch_sub(1, Ordering::Relaxed)),
            _ => {}
        };
        moved(&counts.seen, before.is_some(), state.is_some());
        moved(&counts.bound, was.0, is.0);
        moved(&counts.ready, was.1, is.1);
    }
}

async fn scale(settings: &Settings) {
    let config = Config { delays: Delays::none(), ..Config::with_nodes(settings.nodes) };
    let start = Instant::now();
    let plane = ControlPlane::boot(config).await.expect("boots");
    println!("boot with {} nodes: {:.2?}", settings.nodes, start.elapsed());
    let total = settings.deployments * settings.replicas;
    let deployments: Api<Deployment> = Api::namespaced(plane.client(), "default");
    let start = Instant::now();
    let mut creating = futures_util::stream::iter((0..settings.deployments).map(|i| {
        let deployments = deployments.clone();
        let replicas = settings.replicas;
        async move {
            let deployment: Deployment = serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("app-{i}")},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                         "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                                      "spec": {"containers": [{"name": "app", "image": "nginx",
                                               "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
            }))
            .expect("a deployment");
            deployments.create(&PostParams::default(), &deployment).await.expect("created");
        }
    }))
    .buffer_unordered(32);
    while creating.next().await.is_some() {}
    println!("{} Deployments created: {:.2?}", settings.deployments, start.elapsed());
    // Watched, as `kubectl get pods -w` would: polling lists of 30,000 pods would load the
    // API server more than the cluster itself does.
    let pods = Informer::start(Api::<PodProgress>::all(plane.client()));
    // Counted as the changes come (each pod's last state kept), not by going over every
    // pod each time: at 100,000 pods, looking at them all 20 times a second was a tenth
    // of the machine, this bench's own load, not the cluster's.
    let counts = Arc::new(Counts::default());
    let counting = tokio::spawn(count(pods.clone(), Arc::clone(&counts)));
    let mut first_bound = None;
    let mut all_bound = None;
    let mut last_report = Instant::now();
    loop {
        let (seen, bound, ready) = counts.now();
        if bound > 0 && first_bound.is_none() {
            first_bound = Some(start.elapsed());
        }
        if bound >= total && all_bound.is_none() {
            all_bound = Some(start.elapsed());
        }
        if ready >= total || last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {:>6.1?}: {seen} pods, {bound} bound, {ready} ready", start.elapsed());
            last_report = Instant::now();
        }
        if ready >= total {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            println!("gave up after 10 minutes: {ready} of {total} ready");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    counting.abort();
    let elapsed = start.elapsed();
    let (first, last) = (first_bound.unwrap_or_default(), all_bound.unwrap_or(elapsed));
    let binding = last.saturating_sub(first).as_secs_f64().max(0.001);
    println!(
        "{total} pods on {} nodes Running and Ready: {elapsed:.2?} after the first create; \
         scheduler {:.0} pods/s (first to last binding, {:.2?}); peak RSS {:.0} MB",
        settings.nodes,
        total as f64 / binding,
        last.saturating_sub(first),
        peak_rss_mb()
    );
    // Where the time went: each controller's and the scheduler's work, busiest first.
    println!("{}", plane.profile().summary());
    // Where the memory goes: the store's live state and its watch history are counted
    // exactly; the rest of the RSS is the caches (informers, scheduler, this bench's own
    // watch), connections' buffers and the allocator's slack.
    let ((keys, live), history) = plane.store_usage();
    println!(
        "  store: {keys} keys, {:.0} MB of keys and values; watch history: {} events, {:.0} MB counted, \
         {} watchers fell out of it (410, then a listing); RSS now {:.0} MB",
        live as f64 / 1e6,
        history.events,
        history.bytes as f64 / 1e6,
        history.expired,
        rss_mb()
    );
}

fn rss_mb() -> f64 {
    status_mb("VmRSS")
}

/// The scheduler alone, as Kubernetes' scheduler_perf measures it: an API server with
/// the nodes and every pod already pending (no kubelets, no controllers), then the
/// scheduler started; the time until the last pod is bound.
async fn scheduler_alone(settings: &Settings) {
    let admission = Admission::new(CatalogOptions::default()).expect("schemas");
    let server = ApiServer::new(Arc::new(MemoryStore::new()), admission, apiserver::Options::default());
    apiserver::objects::ensure_namespace(&server, "default").await.expect("a namespace");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { server.serve(listener).await });
    let client = kube::Client::try_from(kube::Config::new(url.parse().expect("a URL"))).expect("a client");
    let nodes: Api<Node> = Api::all(client.clone());
    let mut making = futures_util::stream::iter((0..settings.nodes).map(|i| {
        let nodes = nodes.clone();
        async move {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}")}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                           "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
            }))
            .expect("a node");
            let made = nodes.create(&PostParams::default(), &node).await.expect("created");
            let status = json!({"status": serde_json::to_value(&node.status).expect("a status")});
            nodes.patch_status(&made.name_any(), &PatchParams::default(), &Patch::Merge(status)).await.expect("status");
        }
    }))
    .buffer_unordered(32);
    while making.next().await.is_some() {}
    let total = settings.deployments * settings.replicas;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut making = futures_util::stream::iter((0..total).map(|i| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("pod-{i}")},
                "spec": {"containers": [{"name": "app", "image": "nginx",
                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }))
            .expect("a pod");
            pods.create(&PostParams::default(), &pod).await.expect("created");
        }
    }))
    .buffer_unordered(32);
    while making.next().await.is_some() {}
    let watched = Informer::start(Api::<PodProgress>::all(client.clone()));
    watched.synced().await;
    let start = Instant::now();
    let scheduler = tokio::spawn(kubeyard_harness::scheduler::run(client, 0));
    loop {
        let bound = watched.all().iter().filter(|p| p.bound()).count();
        if bound >= total || start.elapsed() > Duration::from_secs(300) {
            let elapsed = start.elapsed();
            println!(
                "scheduler alone: {bound} of {total} pending pods bound to {} nodes in {elapsed:.2?}: {:.0} pods/s",
                settings.nodes,
                bound as f64 / elapsed.as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.abort();
}

fn main() {
    if !SYSTEM_ALLOCATOR {
        kubeyard_harness::allocator::tune();
    }
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        boots(settings.boots).await;
        scheduler_alone(&settings).await;
        scale(&settings).await;
    });
}
