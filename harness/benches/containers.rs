//! The containerized control plane on this machine's Docker engine: boot to a ready
//! 3-node cluster, Online Boutique from `kubeyard test` start to converged, and the
//! containers' memory.
//!
//! Then pods of a local image (a busybox built `FROM scratch`) as real containers: one
//! pod from bound to Running and Ready (issue 18: under 1 s), 50 on 3 nodes from create to
//! all Running and Ready (under 15 s), and the memory of the cluster with them.
//!
//! Run: `cargo bench -p kubeyard-harness --bench containers` (add `-- --boots N`).
//! Targets (issue 8), with the images built: a 3-node cluster ready in under 5 s; Online
//! Boutique converged in under 10 s from `kubeyard test` start. Published figures for
//! the tools users would otherwise pick: kind about 33 s, k3d about 20 s to a usable
//! cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubeyard_harness::containers::ClusterSpec;
use kubeyard_harness::containers::cluster::{self, ContainerCluster};
use kubeyard_harness::containers::docker::Docker;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KUBEYARD: &str = env!("CARGO_BIN_EXE_kubeyard");

fn boots() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--boots" {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or(5);
        }
    }
    5
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ sits in the workspace").to_path_buf()
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn spec(nodes: usize) -> ClusterSpec {
    ClusterSpec { kubeyard_binary: Some(PathBuf::from(KUBEYARD)), ..ClusterSpec::with_nodes(nodes) }
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    println!("{label}: min {min:.2?}, median {median:.2?}, max {max:.2?} ({} runs)", times.len());
}

async fn memory_report(label: &str, cluster: &ContainerCluster) {
    let usage = cluster.memory().await;
    let total: u64 = usage.iter().map(|(_, bytes)| bytes).sum();
    let parts: Vec<String> = usage
        .iter()
        .map(|(name, bytes)| format!("{} {:.1} MB", name.rsplit('-').next().unwrap_or(name), megabytes(*bytes)))
        .collect();
    println!("memory {label}: {:.0} MB in all ({})", megabytes(total), parts.join(", "));
}

/// Every Deployment with all its replicas ready; how many pods run.
async fn converged(client: &kube::Client) -> (bool, usize) {
    let Ok(deployments) = Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await else {
        return (false, 0);
    };
    let all_ready = !deployments.items.is_empty()
        && deployments.items.iter().all(|d| {
            let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) >= wanted
        });
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    let running = pods.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
    (all_ready, running)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let docker = Docker::connect().await.expect("a Docker engine");
        let started = Instant::now();
        let progress = |message: &str| println!("  {message}");
        cluster::ensure_images(&docker, Some(Path::new(KUBEYARD)), None, &progress).await.expect("the images build");
        println!("images ready in {:.2?} (built only when the binary changed)", started.elapsed());

        let mut times = Vec::new();
        for run in 0..boots() {
            let started = Instant::now();
            let cluster = ContainerCluster::boot(&spec(3), &|_: &str| {}).await.expect("the cluster boots");
            times.push(started.elapsed());
            if run == 0 {
                memory_report("of an idle 3-node cluster", &cluster).await;
            }
            let removing = Instant::now();
            cluster.remove().await.expect("the cluster is removed");
            if run == 0 {
                println!("removing it: {:.2?}", removing.elapsed());
            }
        }
        summary("boot to a ready 3-node container cluster", times);

        // Online Boutique (from the corpus beside the project) as `kubeyard test` runs it,
        // its images (which no registry here serves) simulated:
        // boot, apply, converged, cleanup.
        let boutique = workspace().join("../shared/corpus/online-boutique");
        let test_dir = tempfile::tempdir().expect("a temporary folder");
        let test = format!(
            "apiVersion: kubeyard.dev/v1alpha1\nkind: Test\nmetadata: {{name: online-boutique}}\nspec:\n  \
             cluster: {{nodes: [{{name: node, count: 3}}], simulateAbsentImages: true}}\n  steps:\n    - apply: {{files: [\"{}\"]}}\n    \
             - converged: {{}}\n      within: 5m\n",
            boutique.display()
        );
        std::fs::write(test_dir.path().join("test.yaml"), test).expect("the test is written");
        let started = Instant::now();
        let output = std::process::Command::new(KUBEYARD)
            .current_dir(workspace())
            .args(["test", "--cluster", "containers"])
            .arg(test_dir.path())
            .output()
            .expect("kubeyard test runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let converged_line = text.lines().find(|l| l.contains("converged")).unwrap_or("").trim().to_string();
        println!(
            "kubeyard test --cluster containers (Online Boutique): {} in {:.2?} ({converged_line})",
            if output.status.success() { "passed" } else { "FAILED" },
            started.elapsed()
        );

        // The same, step by step, with memory at the end.
        let started = Instant::now();
        let simulating = ClusterSpec { simulate_absent_images: true, ..spec(3) };
        let cluster = ContainerCluster::boot(&simulating, &|_: &str| {}).await.expect("the cluster boots");
        let booted = started.elapsed();
        // Through the cluster's kubeconfig: it holds the CA the API server's certificate
        // is signed by, and the token.
        let kubeconfig = test_dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("the kubeconfig is written");
        let applied = std::process::Command::new(KUBEYARD)
            .arg("apply")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg(&boutique)
            .output()
            .expect("kubeyard apply runs");
        assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
        let applied_at = started.elapsed();
        let client = cluster.client().expect("a client");
        let mut all_running = None;
        let converged_at = loop {
            let (ready, running) = converged(&client).await;
            if all_running.is_none() && running >= 12 {
                all_running = Some(started.elapsed());
            }
            if ready {
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(300), "Online Boutique did not converge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "Online Boutique on 3 container nodes: booted {booted:.2?}, applied {applied_at:.2?}, every pod Running \
             {:.2?}, every Deployment ready {converged_at:.2?} (its readiness probes wait up to 20 s, initialDelaySeconds)",
            all_running.unwrap_or(converged_at)
        );
        memory_report("with Online Boutique converged", &cluster).await;
        cluster.remove().await.expect("the cluster is removed");

        engine_pods(&docker).await;
    });
}

const BUSYBOX: &str = "kubeyard/test-busybox:2";

/// Pods of a local image (Debian's busybox, built `FROM scratch`): one pod from bound to
/// Running and Ready, then 50 pods on 3 nodes from create to all Running and Ready, and
/// the cluster's memory with them.
async fn engine_pods(docker: &Docker) {
    if let Err(why) = kubeyard_harness::containers::image::busybox(docker, BUSYBOX).await {
        println!("pods of a local image: skipped ({why})");
        return;
    }
    let cluster = ContainerCluster::boot(&spec(3), &|_: &str| {}).await.expect("the cluster boots");
    let client = cluster.client().expect("a client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let container = serde_json::json!({"name": "web", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                       "args": ["-c", "exec httpd -f -p 8080"]});
    let mut single = Vec::new();
    for run in 0..5 {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("one-{run}")},
                                                               "spec": {"containers": [container]}}))
        .expect("a pod");
        pods.create(&Default::default(), &pod).await.expect("the pod is created");
        let mut bound = None;
        let ready = loop {
            let pod = pods.get(&format!("one-{run}")).await.expect("the pod");
            let now = Instant::now();
            if bound.is_none() && pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                bound = Some(now);
            }
            let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        single.push(ready - bound.unwrap_or(ready));
    }
    summary("a pod of a local image, from bound to Running and Ready", single);

    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 50, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}}}))
    .expect("a Deployment");
    let started = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&Default::default(), &deployment)
        .await
        .expect("the Deployment is created");
    loop {
        let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
        let ready = list
            .iter()
            .filter(|p| {
                let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .count();
        if ready == 50 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "50 pods did not come up: {ready} ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("50 pods of a local image on 3 nodes, from create to Running and Ready: {:.2?}", started.elapsed());
    memory_report("with 55 real pods (the 50 and the 5 timed one by one)", &cluster).await;
    cluster.remove().await.expect("the cluster is removed");
}
