//! The in-process control plane: boot to a ready cluster, and a scale run from apply to
//! every pod Running and Ready, with the scheduler's throughput and peak memory.
//!
//! Run: `cargo bench -p kubeyard-harness --bench controlplane` (add `-- --nodes N
//! --deployments N --replicas N --boots N`).
//! Targets (issue 6), 2-core machine: boot to a ready 3-node cluster under 200 ms;
//! 1,000 nodes and 30,000 pods (3,000 Deployments of 10) Running and Ready in under 30 s,
//! the scheduler binding 2,000 pods/s.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kubeyard_harness::controlplane::{Config, ControlPlane};
use kubeyard_harness::informers::Informer;
use kubeyard_harness::kubelet::simulate::Delays;
use serde_json::json;
use std::time::{Duration, Instant};

// The allocator the `kubeyard` binary runs with, so the figures are what `kubeyard up` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn boots(count: usize) {
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
    use futures_util::StreamExt;
    while creating.next().await.is_some() {}
    println!("{} Deployments created: {:.2?}", settings.deployments, start.elapsed());
    // Watched, as `kubectl get pods -w` would: polling lists of 30,000 pods would load the
    // API server more than the cluster itself does.
    let pods = Informer::start(Api::<Pod>::all(plane.client()));
    let mut first_bound = None;
    let mut all_bound = None;
    let mut last_report = Instant::now();
    loop {
        let all = pods.all();
        let bound = all.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
        let ready = all
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if bound > 0 && first_bound.is_none() {
            first_bound = Some(start.elapsed());
        }
        if bound >= total && all_bound.is_none() {
            all_bound = Some(start.elapsed());
        }
        if ready >= total || last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {:>6.1?}: {} pods, {bound} bound, {ready} ready", start.elapsed(), all.len());
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
}

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        boots(settings.boots).await;
        scale(&settings).await;
    });
}
