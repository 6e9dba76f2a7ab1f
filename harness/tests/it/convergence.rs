//! Real applications converge on the in-process control plane: a whole microservices
//! application (`fixtures/apps/storefront`), applied with `kubeyard apply --cluster`, ends
//! with every Deployment Available and every selecting Service with ready endpoints; its
//! converged state is snapshot-tested. Readiness probes with long initial delays pass on
//! the manual clock.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, ListParams};
use kubeyard_harness::clock::Clock;
use kubeyard_harness::controlplane::{Config, ControlPlane};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/apps/storefront");

fn available(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Available" && c.status == "True"))
}

fn ready_addresses(endpoints: &Endpoints) -> usize {
    endpoints.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_application_converges_on_three_nodes() {
    let config = Config { clock: Clock::manual(), seed: 7, ..Config::with_nodes(3) };
    let plane = ControlPlane::boot(config).await.unwrap();
    let url = plane.url().to_string();
    let applied = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubeyard")).args(["apply", "--cluster", &url, APP]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(applied.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&applied.stderr));
    assert!(stdout.contains("deployment.apps/web created"), "{stdout}");
    assert!(stdout.contains("service/web-external created"), "{stdout}");

    let deployments: Api<Deployment> = Api::namespaced(plane.client(), "default");
    let services: Api<Service> = Api::namespaced(plane.client(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(plane.client(), "default");
    let start = Instant::now();
    let mut converged = false;
    while start.elapsed() < Duration::from_secs(60) {
        // Readiness probes wait up to 20 s before their first check: let that pass.
        plane.advance(Duration::from_secs(5)).await;
        let all = deployments.list(&ListParams::default()).await.unwrap().items;
        // Every selecting Service lists all its ready pods (the endpoints controller follows
        // the pods a moment later: the snapshot must not catch it halfway).
        let pods = Api::<Pod>::namespaced(plane.client(), "default").list(&ListParams::default()).await.unwrap().items;
        let mut with_endpoints = true;
        for service in services.list(&ListParams::default()).await.unwrap().items {
            let name = service.metadata.name.clone().unwrap();
            let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            if selector.is_empty() {
                continue;
            }
            let ready_pods = pods
                .iter()
                .filter(|p| selector.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)))
                .filter(|p| {
                    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
                    conditions.into_iter().any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .count();
            let listed = endpoints.get_opt(&name).await.unwrap().map_or(0, |e| ready_addresses(&e));
            with_endpoints &= listed > 0 && listed == ready_pods;
        }
        if all.len() == 10 && all.iter().all(available) && with_endpoints {
            converged = true;
            break;
        }
    }
    assert!(converged, "the application did not converge within a minute");

    // Applying again changes nothing.
    let url = plane.url().to_string();
    let again = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubeyard")).args(["apply", "--cluster", &url, APP]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && !stdout.contains("created") && !stdout.contains("configured"), "{stdout}");

    // The converged state, in a form that does not depend on timing or random names.
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    for deployment in deployments.list(&ListParams::default()).await.unwrap().items {
        let status = deployment.status.clone().unwrap_or_default();
        state.insert(
            format!("deployment/{}", deployment.metadata.name.clone().unwrap()),
            format!(
                "replicas {} ready {} available {} revision {}",
                status.replicas.unwrap_or(0),
                status.ready_replicas.unwrap_or(0),
                status.available_replicas.unwrap_or(0),
                deployment
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                    .cloned()
                    .unwrap_or_default(),
            ),
        );
    }
    for service in services.list(&ListParams::default()).await.unwrap().items {
        let name = service.metadata.name.clone().unwrap();
        let spec = service.spec.clone().unwrap_or_default();
        let ready = endpoints.get_opt(&name).await.unwrap().map_or(0, |e| ready_addresses(&e));
        state.insert(
            format!("service/{name}"),
            format!("{} with {ready} ready endpoint(s)", spec.type_.unwrap_or_default()),
        );
    }
    let pods = Api::<Pod>::namespaced(plane.client(), "default").list(&ListParams::default()).await.unwrap().items;
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        *phases.entry(pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()).or_insert(0) += 1;
    }
    let phases: Vec<String> = phases.iter().map(|(phase, count)| format!("{count} {phase}")).collect();
    state.insert("pods".into(), phases.join(", "));
    insta::with_settings!({snapshot_path => "../../../snapshots/controlplane", prepend_module_to_snapshot => false}, {
        insta::assert_yaml_snapshot!("storefront-converged", state);
    });
}
