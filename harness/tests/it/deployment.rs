//! The Deployment controller against the API server, with the ReplicaSet controller and a
//! stand-in kubelet that marks pods ready some time after they appear: one ReplicaSet per
//! template named by its hash, rolling updates within their bounds at every moment,
//! rollbacks, `Recreate`, history limits, scaling, pausing, hash collisions, deadlines,
//! and kubectl's `rollout status` and `rollout undo`.

use crate::support;

use kubeyard_harness::controllers::{deployment, replicaset};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::api::{Server, component, get, patch, post, wait_for};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SETS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const REVISION: &str = "deployment.kubernetes.io/revision";
const MERGE: &str = "application/merge-patch+json";

/// The kubelet's part: every pod is marked Running and Ready, each after a delay drawn
/// from `delay` (milliseconds) when it is first seen, until this is dropped.
struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    fn start(url: &str, delay: Range<u64>) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_string();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut due: HashMap<String, Instant> = HashMap::new();
            while !stopped.load(Ordering::SeqCst) {
                for pod in pods(&url).iter().filter(|p| !ready(p)) {
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let wait = Duration::from_millis(fastrand::u64(delay.clone()));
                    if *due.entry(name.clone()).or_insert_with(|| Instant::now() + wait) <= Instant::now() {
                        let status = json!({"status": {"phase": "Running",
                                                       "conditions": [{"type": "Ready", "status": "True"}]}});
                        patch(&format!("{url}{PODS}/{name}/status"), MERGE, &status);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Kubelet { stop, thread: Some(thread) }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The two controllers a Deployment needs.
fn controllers(url: &str) {
    component(url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        let clock = kubeyard_harness::clock::Clock::real();
        tokio::join!(replicaset::run(client.clone(), &informers, &clock), deployment::run(client, &informers, &clock));
    });
}

fn manifest(replicas: i32, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
        }
    })
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn create(url: &str, deployment: &Value) {
    let created = post(&format!("{url}{DEPLOYMENTS}"), deployment);
    assert_eq!(created.status, 201, "{}", created.text);
}

fn web(url: &str) -> Value {
    get(&format!("{url}{DEPLOYMENTS}/web")).body
}

fn change(url: &str, body: &Value) {
    let changed = patch(&format!("{url}{DEPLOYMENTS}/web"), MERGE, body);
    assert_eq!(changed.status, 200, "{}", changed.text);
}

fn set_image(url: &str, image: &str) {
    change(url, &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}));
}

fn items(url: &str) -> Vec<Value> {
    get(url).body["items"].as_array().cloned().unwrap_or_default()
}

fn sets(url: &str) -> Vec<Value> {
    items(&format!("{url}{SETS}"))
}

fn pods(url: &str) -> Vec<Value> {
    items(&format!("{url}{PODS}"))
}

fn set_named(url: &str, name: &str) -> Value {
    get(&format!("{url}{SETS}/{name}")).body
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn image(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

fn number(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn condition<'a>(deployment: &'a Value, type_: &str) -> &'a Value {
    deployment["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// What `kubectl rollout status` waits for, and the Progressing condition saying so.
fn rolled_out(deployment: &Value) -> bool {
    let status = &deployment["status"];
    let replicas = number(&deployment["spec"]["replicas"]);
    number(&deployment["metadata"]["generation"]) <= number(&status["observedGeneration"])
        && number(&status["updatedReplicas"]) == replicas
        && number(&status["replicas"]) == replicas
        && number(&status["availableReplicas"]) == replicas
        && condition(deployment, "Progressing")["reason"] == "NewReplicaSetAvailable"
}

fn wait_rolled_out(url: &str, generation: i64) {
    wait_for(&format!("generation {generation} rolled out"), || {
        let deployment = web(url);
        number(&deployment["metadata"]["generation"]) == generation && rolled_out(&deployment)
    });
}

/// The set whose pods run `image`.
fn set_running(url: &str, image: &str) -> Value {
    sets(url)
        .into_iter()
        .find(|s| s["spec"]["template"]["spec"]["containers"][0]["image"] == image)
        .unwrap_or_else(|| panic!("no ReplicaSet runs {image}"))
}

fn name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_deployment_makes_one_replicaset_named_by_its_template_hash() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(3, "nginx:1.25", json!({})));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..50);
    wait_rolled_out(&url, 1);

    let deployment = web(&url);
    let template = serde_json::from_value(deployment["spec"]["template"].clone()).unwrap();
    let hash = deployment::pod_template_hash(&template, None);
    let all = sets(&url);
    assert_eq!(all.len(), 1, "{all:?}");
    let set = &all[0];
    assert_eq!(name(set), format!("web-{hash}"));
    assert_eq!(set["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    assert_eq!(set["spec"]["selector"]["matchLabels"], json!({"app": "web", "pod-template-hash": hash}));
    assert_eq!(set["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    let owner = &set["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["controller"], &owner["blockOwnerDeletion"]),
        (&json!("Deployment"), &json!("web"), &json!(true), &json!(true))
    );
    assert_eq!(owner["uid"], deployment["metadata"]["uid"]);
    assert_eq!(annotation(set, REVISION), Some("1"));
    assert_eq!(annotation(set, "deployment.kubernetes.io/desired-replicas"), Some("3"));
    // maxSurge 25% of 3 rounds up to 1.
    assert_eq!(annotation(set, "deployment.kubernetes.io/max-replicas"), Some("4"));
    assert_eq!(annotation(&deployment, REVISION), Some("1"));
    let pods = pods(&url);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()), "{pods:?}");

    let status = &deployment["status"];
    for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
        assert_eq!(status[field], 3, "{field}: {status}");
    }
    assert_eq!(status["observedGeneration"], 1);
    assert!(status.get("unavailableReplicas").is_none(), "{status}");
    let available = condition(&deployment, "Available");
    assert_eq!(
        (&available["status"], &available["reason"], &available["message"]),
        (&json!("True"), &json!("MinimumReplicasAvailable"), &json!("Deployment has minimum availability."))
    );
    let progressing = condition(&deployment, "Progressing");
    assert_eq!((&progressing["status"], &progressing["reason"]), (&json!("True"), &json!("NewReplicaSetAvailable")));
    assert_eq!(progressing["message"], format!("ReplicaSet \"web-{hash}\" has successfully progressed."));
    assert!(progressing["lastUpdateTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{progressing}");
}

/// One look at the cluster mid-rollout: pods alive, pods ready, and the sets' specs.
struct Observation {
    pods: usize,
    ready: usize,
    specs: i64,
    sets: usize,
}

fn observe(url: &str) -> Observation {
    let all = sets(url);
    let pods = pods(url);
    let alive: Vec<&Value> = pods.iter().filter(|p| p["metadata"].get("deletionTimestamp").is_none()).collect();
    Observation {
        pods: alive.len(),
        ready: alive.iter().filter(|p| ready(p)).count(),
        specs: all.iter().map(|s| number(&s["spec"]["replicas"])).sum(),
        sets: all.len(),
    }
}

#[test]
fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(10, "nginx:1.25", rolling(json!(2), json!(1))));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 100..300);
    wait_rolled_out(&url, 1);
    let old = name(&sets(&url)[0]);

    set_image(&url, "nginx:1.26");
    let started = Instant::now();
    let (mut most_pods, mut waited_on_readiness) = (0, false);
    loop {
        let seen = observe(&url);
        assert!(seen.pods <= 12, "{} pods: more than replicas + maxSurge", seen.pods);
        assert!(seen.specs <= 12, "the sets ask for {} pods: more than replicas + maxSurge", seen.specs);
        assert!(seen.ready >= 9, "{} pods ready: fewer than replicas - maxUnavailable", seen.ready);
        assert!(seen.sets <= 2, "{} ReplicaSets", seen.sets);
        most_pods = most_pods.max(seen.pods);
        waited_on_readiness |= seen.ready < seen.pods;
        let deployment = web(&url);
        let old_empty = number(&set_named(&url, &old)["status"]["replicas"]) == 0;
        if number(&deployment["metadata"]["generation"]) == 2 && rolled_out(&deployment) && old_empty {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the rollout did not finish: {deployment}");
    }
    assert!(most_pods > 10, "the rollout surged ({most_pods} pods at most)");
    assert!(waited_on_readiness, "some pods were seen not ready yet");

    let old = set_named(&url, &old);
    assert_eq!((number(&old["spec"]["replicas"]), annotation(&old, REVISION)), (0, Some("1")));
    let new = set_running(&url, "nginx:1.26");
    assert_eq!((number(&new["spec"]["replicas"]), annotation(&new, REVISION)), (10, Some("2")));
    assert_eq!(annotation(&web(&url), REVISION), Some("2"));
    let pods = pods(&url);
    assert!(pods.len() == 10 && pods.iter().all(|p| image(p) == "nginx:1.26" && ready(p)), "{pods:?}");
}

#[test]
fn a_rollback_brings_the_old_replicaset_back_with_the_next_revision() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(4, "nginx:1.25", rolling(json!(1), json!(1))));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 20..80);
    wait_rolled_out(&url, 1);
    let first = name(&set_running(&url, "nginx:1.25"));
    set_image(&url, "nginx:1.26");
    wait_rolled_out(&url, 2);
    let second = name(&set_running(&url, "nginx:1.26"));

    // What `kubectl rollout undo` does: the old template, back on the Deployment.
    set_image(&url, "nginx:1.25");
    wait_for("the rollback", || {
        let deployment = web(&url);
        assert!(sets(&url).len() <= 2, "a third ReplicaSet was made");
        number(&deployment["metadata"]["generation"]) == 3 && rolled_out(&deployment)
    });
    let back = set_named(&url, &first);
    assert_eq!(number(&back["spec"]["replicas"]), 4);
    assert_eq!(annotation(&back, REVISION), Some("3"));
    assert_eq!(annotation(&back, "deployment.kubernetes.io/revision-history"), Some("1"));
    assert_eq!(number(&set_named(&url, &second)["spec"]["replicas"]), 0);
    assert_eq!(annotation(&web(&url), REVISION), Some("3"));
    let names: Vec<String> = sets(&url).iter().map(name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(pods(&url).iter().all(|p| image(p) == "nginx:1.25"));
}

#[test]
fn recreate_removes_every_old_pod_before_making_a_new_one() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(3, "nginx:1.25", json!({"type": "Recreate"})));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 50..150);
    wait_rolled_out(&url, 1);

    set_image(&url, "nginx:1.26");
    let started = Instant::now();
    loop {
        let pods = pods(&url);
        let old = pods.iter().filter(|p| image(p) == "nginx:1.25").count();
        let new = pods.iter().filter(|p| image(p) == "nginx:1.26").count();
        assert!(old == 0 || new == 0, "{old} old pods and {new} new ones at once");
        let deployment = web(&url);
        if number(&deployment["metadata"]["generation"]) == 2 && rolled_out(&deployment) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the rollout did not finish: {deployment}");
    }
    assert_eq!(pods(&url).iter().filter(|p| image(p) == "nginx:1.26").count(), 3);
    assert_eq!(annotation(&web(&url), REVISION), Some("2"));
}

#[test]
fn revision_history_limit_deletes_the_oldest_empty_replicasets() {
    let server = Server::start();
    let url = server.url.clone();
    let mut deployment = manifest(2, "nginx:1.25", json!({}));
    deployment["spec"]["revisionHistoryLimit"] = json!(1);
    create(&url, &deployment);
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..30);
    wait_rolled_out(&url, 1);
    for (generation, image) in [(2, "nginx:1.26"), (3, "nginx:1.27"), (4, "nginx:1.28")] {
        set_image(&url, image);
        wait_rolled_out(&url, generation);
    }
    wait_for("two ReplicaSets left", || sets(&url).len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    let mut left: Vec<(String, i64)> = sets(&url)
        .iter()
        .map(|s| (annotation(s, REVISION).unwrap_or_default().to_string(), number(&s["spec"]["replicas"])))
        .collect();
    left.sort();
    assert_eq!(left, [("3".to_string(), 0), ("4".to_string(), 2)]);
}

#[test]
fn scaling_resizes_the_current_replicaset_without_a_new_revision() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(3, "nginx:1.25", json!({})));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..30);
    wait_rolled_out(&url, 1);
    let set = name(&sets(&url)[0]);

    change(&url, &json!({"spec": {"replicas": 6}}));
    wait_rolled_out(&url, 2);
    assert_eq!(pods(&url).len(), 6);
    let all = sets(&url);
    assert_eq!(all.iter().map(name).collect::<Vec<_>>(), std::slice::from_ref(&set));
    assert_eq!(annotation(&all[0], REVISION), Some("1"));
    assert_eq!(annotation(&all[0], "deployment.kubernetes.io/desired-replicas"), Some("6"));
    assert_eq!(annotation(&all[0], "deployment.kubernetes.io/max-replicas"), Some("8"));
    assert_eq!(annotation(&web(&url), REVISION), Some("1"));

    // Through the scale subresource, as `kubectl scale` does.
    let scaled = patch(&format!("{url}{DEPLOYMENTS}/web/scale"), MERGE, &json!({"spec": {"replicas": 2}}));
    assert_eq!(scaled.status, 200, "{}", scaled.text);
    wait_for("two pods", || pods(&url).len() == 2 && rolled_out(&web(&url)));
    assert_eq!(sets(&url).iter().map(name).collect::<Vec<_>>(), [set]);
    assert_eq!(annotation(&web(&url), REVISION), Some("1"));
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let server = Server::start();
    let url = server.url.clone();
    create(&url, &manifest(2, "nginx:1.25", json!({})));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..30);
    wait_rolled_out(&url, 1);

    change(&url, &json!({"spec": {"paused": true}}));
    set_image(&url, "nginx:1.26");
    wait_for("the pause noted", || condition(&web(&url), "Progressing")["reason"] == "DeploymentPaused");
    assert_eq!(condition(&web(&url), "Progressing")["message"], "Deployment is paused");
    change(&url, &json!({"spec": {"replicas": 4}}));
    wait_for("four old pods", || pods(&url).iter().filter(|p| image(p) == "nginx:1.25" && ready(p)).count() == 4);
    assert_eq!(sets(&url).len(), 1, "no rollout while paused");

    change(&url, &json!({"spec": {"paused": false}}));
    wait_for("the resumed rollout", || {
        let deployment = web(&url);
        rolled_out(&deployment) && annotation(&deployment, REVISION) == Some("2")
    });
    assert_eq!(number(&set_running(&url, "nginx:1.26")["spec"]["replicas"]), 4);
    assert_eq!(number(&set_running(&url, "nginx:1.25")["spec"]["replicas"]), 0);
}

#[test]
fn orphans_the_selector_matches_are_adopted_and_mismatches_released() {
    let server = Server::start();
    let url = server.url.clone();
    let legacy = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "legacy", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.24"}]}}}
    });
    assert_eq!(post(&format!("{url}{SETS}"), &legacy).status, 201);
    create(&url, &manifest(2, "nginx:1.25", rolling(json!(1), json!(0))));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..30);
    wait_rolled_out(&url, 1);
    wait_for("the legacy set emptied", || number(&set_named(&url, "legacy")["status"]["replicas"]) == 0);

    let uid = web(&url)["metadata"]["uid"].clone();
    let adopted = set_named(&url, "legacy");
    let owner = &adopted["metadata"]["ownerReferences"][0];
    assert_eq!((&owner["uid"], &owner["controller"]), (&uid, &json!(true)), "{adopted}");
    assert_eq!(number(&adopted["spec"]["replicas"]), 0);
    assert_eq!(annotation(&set_running(&url, "nginx:1.25"), REVISION), Some("1"));
    assert!(pods(&url).iter().all(|p| image(p) == "nginx:1.25"));

    // Relabelled out of the selector: let go.
    patch(&format!("{url}{SETS}/legacy"), MERGE, &json!({"metadata": {"labels": {"app": "retired"}}}));
    wait_for("the legacy set released", || {
        set_named(&url, "legacy")["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)
    });
}

#[test]
fn a_hash_collision_moves_the_new_replicaset_to_another_name() {
    let server = Server::start();
    let url = server.url.clone();
    let created = post(&format!("{url}{DEPLOYMENTS}"), &manifest(1, "nginx:1.25", json!({})));
    let template = serde_json::from_value(created.body["spec"]["template"].clone()).unwrap();
    let taken = format!("web-{}", deployment::pod_template_hash(&template, None));
    // Another set already holds the name: one this Deployment does not select.
    let squatter = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": taken},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "other"}},
                 "template": {"metadata": {"labels": {"app": "other"}},
                              "spec": {"containers": [{"name": "other", "image": "busybox"}]}}}
    });
    assert_eq!(post(&format!("{url}{SETS}"), &squatter).status, 201);
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 0..30);
    wait_rolled_out(&url, 1);

    let deployment = web(&url);
    assert_eq!(deployment["status"]["collisionCount"], 1);
    let set = set_running(&url, "nginx:1.25");
    assert_eq!(name(&set), format!("web-{}", deployment::pod_template_hash(&template, Some(1))));
    assert!(set_named(&url, &taken)["metadata"].get("ownerReferences").is_none(), "the squatter is left alone");
}

#[test]
fn a_rollout_without_progress_exceeds_its_deadline() {
    let server = Server::start();
    let url = server.url.clone();
    let mut deployment = manifest(1, "nginx:1.25", json!({}));
    deployment["spec"]["progressDeadlineSeconds"] = json!(1);
    create(&url, &deployment);
    // No kubelet: the pod never becomes ready.
    controllers(&url);
    wait_for("the deadline", || condition(&web(&url), "Progressing")["reason"] == "ProgressDeadlineExceeded");
    let deployment = web(&url);
    let set = name(&sets(&url)[0]);
    let progressing = condition(&deployment, "Progressing");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["message"], format!("ReplicaSet \"{set}\" has timed out progressing."));
    let available = condition(&deployment, "Available");
    assert_eq!((&available["status"], &available["reason"]), (&json!("False"), &json!("MinimumReplicasUnavailable")));
    assert_eq!(deployment["status"]["unavailableReplicas"], 1);
}

/// kubectl 1.32 against the server, through a kubeconfig in `dir`.
fn kubectl(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "kubectl {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn kubectl_rollout_status_history_and_undo() {
    let server = Server::start();
    let url = server.url.clone();
    let dir = tempfile::tempdir().unwrap();
    kubeyard_harness::apiserver::kubeconfig::write(&dir.path().join("kubeconfig"), &url, None, None).unwrap();
    create(&url, &manifest(3, "nginx:1.25", json!({})));
    controllers(&url);
    let _kubelet = Kubelet::start(&url, 50..150);
    let status = ["rollout", "status", "deployment/web", "--timeout=40s"];

    assert!(kubectl(dir.path(), &status).contains("deployment \"web\" successfully rolled out"));
    let first = name(&sets(&url)[0]);
    kubectl(dir.path(), &["set", "image", "deployment/web", "web=nginx:1.26"]);
    assert!(kubectl(dir.path(), &status).contains("successfully rolled out"));
    assert_eq!(number(&set_named(&url, &first)["spec"]["replicas"]), 0);
    let history = kubectl(dir.path(), &["rollout", "history", "deployment/web"]);
    assert!(history.lines().any(|l| l.starts_with("1 ")) && history.lines().any(|l| l.starts_with("2 ")), "{history}");

    let undone = kubectl(dir.path(), &["rollout", "undo", "deployment/web"]);
    assert!(undone.contains("rolled back"), "{undone}");
    assert!(kubectl(dir.path(), &status).contains("successfully rolled out"));
    let deployment = web(&url);
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25");
    assert_eq!(annotation(&deployment, REVISION), Some("3"));
    let back = set_named(&url, &first);
    assert_eq!((number(&back["spec"]["replicas"]), annotation(&back, REVISION)), (3, Some("3")));
    assert_eq!(sets(&url).len(), 2);
}
