//! `kubeyard test` on the end-to-end fixtures: every test under `fixtures/e2e` passes;
//! every one under `fixtures/e2e-failing` fails with exactly the report snapshotted in
//! `snapshots/e2e` (timings left out, generated names masked). And the same harness as a
//! Rust API, as a user's `cargo test` drives it.

use crate::support;

use kubeyard_harness::testing::{Cluster, Error, Expectation};
use serde_json::json;
use std::time::Duration;
use support::{case_dirs, kubeyard, snapshots_in};

#[test]
fn the_end_to_end_fixtures_pass() {
    let output = support::kubeyard_within(&["test", "fixtures/e2e", "--parallel", "2"], None, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let tests = case_dirs("e2e").len();
    assert!(tests >= 10, "at least ten end-to-end tests");
    assert!(stdout.contains(&format!("{tests} tests: {tests} passed, 0 failed")), "{stdout}");
    // While they ran, their progress went to stderr (not a terminal here: a plain line as
    // each step starts and ends, for CI logs), leaving the report on stdout alone.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in [
        "START cordon: booting its cluster",
        "START cordon: step 1 cordon node-1 (of 9)",
        "PASS  cordon: 1 cordon node-1 [",
        "START cordon: cleaning up",
    ] {
        assert!(stderr.contains(line), "{line:?} missing from:\n{stderr}");
    }
    assert!(!stdout.contains("START "), "{stdout}");
}

/// Online Boutique, as its authors wrote it, converges on three nodes: a real application
/// nobody here wrote, from the corpus.
#[test]
#[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
fn online_boutique_from_the_corpus_converges() {
    let boutique = support::corpus().join("online-boutique");
    let dir = tempfile::tempdir().unwrap();
    let test = format!(
        r#"apiVersion: kubeyard.dev/v1alpha1
kind: Test
metadata:
  name: online-boutique
spec:
  cluster:
    nodes:
      - name: node
        count: 3
  steps:
    - apply:
        files: ["{}"]
    - converged: {{}}
      within: 5m
    - assert:
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: frontend}}
        status: {{readyReplicas: 1}}
    - count:
        apiVersion: v1
        kind: Pod
        status: {{phase: Running}}
      atLeast: 12
"#,
        boutique.display()
    );
    std::fs::write(dir.path().join("test.yaml"), test).unwrap();
    let output = kubeyard(&["test", &dir.path().display().to_string()], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 test: 1 passed, 0 failed"), "{stdout}");
}

/// Node faults in process: a node silenced by any of them comes back, and its kubelet sets
/// right the readiness the node controller took from its pods meanwhile.
#[test]
fn node_faults_hold_in_process_too() {
    let output = kubeyard(&["test", "fixtures/e2e-containers/node-faults"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 test: 1 passed, 0 failed"), "{stdout}");
}

#[test]
fn failing_tests_say_exactly_what_went_wrong() {
    for case in case_dirs("e2e-failing") {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let relative = format!("fixtures/e2e-failing/{name}");
        let output = kubeyard(&["test", "--stable", "--parallel", "1", &relative], None);
        assert_eq!(output.status.code(), Some(1), "{name} must fail: {}", String::from_utf8_lossy(&output.stdout));
        snapshots_in("e2e").bind(|| insta::assert_snapshot!(name.clone(), String::from_utf8_lossy(&output.stdout)));
    }
}

/// `--keep-on-failure`: the failed test's cluster (in this process) stays up, its
/// kubeconfig's path printed, until Ctrl-C; kubectl looks at what the test left.
#[test]
fn a_failed_tests_cluster_is_kept_for_a_look_until_ctrl_c() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(["test", "--keep-on-failure", "fixtures/e2e-failing/still-present"])
        .current_dir(support::workspace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let note = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("is kept"))
        .expect("the kept cluster is announced");
    assert!(
        note.starts_with("kubeyard test: still-present failed; its cluster is kept until you press Ctrl-C"),
        "{note}"
    );
    let kubeconfig = note.split("--kubeconfig ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    let looked = std::process::Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig, "get", "configmap", "settings", "-o", "jsonpath={.data.mode}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&looked.stdout), "fast", "{}", String::from_utf8_lossy(&looked.stderr));
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a failed run, ended by the user");
    let _ = std::fs::remove_file(kubeconfig);
}

#[test]
fn reports_come_as_junit_and_json_too() {
    let junit = kubeyard(&["test", "--output", "junit", "fixtures/e2e-failing/still-present"], None);
    let text = String::from_utf8_lossy(&junit.stdout);
    assert!(text.contains("<testsuites") && text.contains("<testsuite name=\"still-present\""), "{text}");
    // A case per step: the one that failed carries the report, the apply its output.
    assert!(text.contains("<testcase name=\"2 absent ConfigMap/settings\""), "{text}");
    assert!(text.contains("<failure message=\"ConfigMap settings is present, and should not be"), "{text}");
    assert!(text.contains("<system-out>configmap/settings created</system-out>"), "{text}");
    let json = kubeyard(&["test", "--output", "json", "fixtures/e2e/job-completes"], None);
    assert!(json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["summary"], json!({"total": 1, "passed": 1, "failed": 0}));
    assert!(report["tests"][0]["steps"].as_array().unwrap().iter().all(|s| s["passed"] == true));
}

#[test]
fn bad_invocations_are_refused_clearly() {
    let nothing = kubeyard(&["test", "fixtures/lint"], None);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no kubeyard.dev/v1alpha1 Test found"));
    let kubeconfig =
        kubeyard(&["test", "--cluster", "kubeconfig", "--kubeconfig", "/nonexistent", "fixtures/e2e/cordon"], None);
    assert_eq!(kubeconfig.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&kubeconfig.stdout).contains("/nonexistent"), "{kubeconfig:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_api_boots_applies_waits_and_snapshots() {
    let cluster = Cluster::builder().nodes(2).seed(3).build().await.unwrap();
    let app = support::workspace().join("fixtures/e2e/rolling-update/deployment.yaml");
    let lines = cluster.apply_paths(&[app], None, None).await.unwrap();
    assert_eq!(lines, ["deployment/web created"]);
    cluster.assert_converged(Duration::from_secs(60)).await.unwrap();
    let ready =
        Expectation::matching(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}))
            .that("status.readyReplicas == spec.replicas")
            .unwrap();
    cluster.eventually(&ready, Duration::from_secs(10)).await.unwrap();

    // A failure is a value with the closest object and the differences.
    let wrong =
        Expectation::matching(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                             "spec": {"replicas": 3}}));
    let Err(Error::Failed(failure)) = cluster.eventually(&wrong, Duration::from_secs(5)).await else {
        panic!("must fail")
    };
    assert_eq!(failure.differences, ["spec.replicas: expected 3, found 10"]);

    // Virtual time: a minute passes at once.
    let before = cluster.clock().now();
    cluster.advance(Duration::from_secs(60)).await;
    assert!(cluster.clock().now().duration_since(before).unwrap() >= Duration::from_secs(60));

    let snapshot = cluster.snapshot().await.unwrap();
    snapshots_in("e2e").bind(|| insta::assert_yaml_snapshot!("rust-api-converged", snapshot));
}

/// `--profile`: under a test, what its control plane's components did, the busiest first;
/// and `kubeyard up` says the same when it stops.
#[test]
fn profiles_show_what_each_component_did() {
    let output = kubeyard(&["test", "--profile", "fixtures/e2e/rolling-update"], None);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let table: Vec<&str> = text.lines().skip_while(|l| !l.contains("what the control plane did")).collect();
    assert!(table.get(1).is_some_and(|l| l.contains("component") && l.contains("busy")), "{text}");
    let row = |name: &str| {
        table.iter().find(|l| l.trim_start().starts_with(name)).map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    let deployment = row("controller/deployment").expect("the Deployment controller ran");
    let runs: u64 = deployment[1].parse().unwrap();
    assert!(runs > 0, "{text}");
    let scheduler = row("default-scheduler").expect("the scheduler ran");
    assert!(scheduler[1].parse::<u64>().unwrap() >= 3, "a scheduling attempt per pod at least: {text}");
    // The API server's requests, by verb and resource: what every component waits on.
    let binds = row("apiserver/create pods/binding").expect("the scheduler's bindings are counted");
    assert!(binds[2].parse::<u64>().unwrap() >= 3, "a binding per pod at least: {text}");
    let creates = row("apiserver/create pods ");
    assert!(creates.is_some_and(|c| c[2].parse::<u64>().unwrap() >= 3), "the ReplicaSets' pods are counted: {text}");

    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(["up", "--nodes", "1", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .arg(support::workspace().join("fixtures/e2e/rolling-update/deployment.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !kubeconfig.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "up did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let lines: Vec<String> =
        std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok).collect();
    let _ = child.wait();
    let said = lines.join("\n");
    assert!(said.contains("kubeyard: what the control plane did in"), "{said}");
    assert!(said.contains("controller/"), "{said}");
}
