//! `kubeyard up` as a user runs it: the cluster boots, the kubeconfig is written, the
//! manifests are applied and converge, and kubectl, `kubeyard get` and `kubeyard apply`
//! work against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KUBEYARD: &str = env!("CARGO_BIN_EXE_kubeyard");
const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/up");

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn up_applies_converges_and_serves_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    let mut child = Command::new(KUBEYARD)
        .args(["up", WEB, "--nodes", "2", "--node-capacity", "cpu=2,memory=4Gi,pods=20", "--seed", "3"])
        .args(["--kubeconfig-out", kubeconfig])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _up = Up(child);
    let applied: Vec<String> = BufReader::new(stdout).lines().take(2).map(|l| l.unwrap()).collect();
    assert!(applied.contains(&"deployment.apps/web created".to_string()), "{applied:?}");
    assert!(applied.contains(&"service/web created".to_string()), "{applied:?}");

    // The progress view ends in a converged line.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("converged")) {
        let line =
            lines_rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no convergence: {seen:#?}"));
        seen.push(line);
        assert!(start.elapsed() < Duration::from_secs(30), "{seen:#?}");
    }
    assert!(seen.iter().any(|l| l.contains("2 nodes ready")), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains("pods: 0 pending, 0 scheduled, 0 running, 3 ready")), "{seen:#?}");

    let (ok, out, err) = run(&["kubectl", "--kubeconfig", kubeconfig, "get", "nodes"]);
    assert!(ok && out.contains("node-1") && out.contains("node-2") && out.contains("Ready"), "{out}{err}");
    // Secure by default: HTTPS and a token, both in a kubeconfig only its owner reads.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    assert!(text.contains("server: https://127.0.0.1:") && text.contains("certificate-authority-data:"), "{text}");
    assert!(text.contains("token: "), "{text}");
    let (ok, out, err) = run(&["kubectl", "--kubeconfig", kubeconfig, "--token=guessed", "get", "secrets"]);
    assert!(!ok && err.contains("Unauthorized"), "{out}{err}");
    let (ok, out, err) =
        run(&["kubectl", "--kubeconfig", kubeconfig, "rollout", "status", "deployment/web", "--timeout=20s"]);
    assert!(ok && out.contains("successfully rolled out"), "{out}{err}");
    // Who owns what, as on a real cluster: the applier the spec, the controller manager
    // the status; a pod is the controller manager's creation and the kubelet's status.
    let managers = |what: &str| {
        let jsonpath = "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource};{end}";
        let (ok, out, err) = run(&["kubectl", "--kubeconfig", kubeconfig, "get", what, "-o", jsonpath]);
        assert!(ok, "{err}");
        out
    };
    let deployment = managers("deployment/web");
    assert!(deployment.contains("kubeyard-client-side-apply/Update/;"), "{deployment}");
    assert!(deployment.contains("kube-controller-manager/Update/status;"), "{deployment}");
    let (ok, pod, err) = run(&["kubectl", "--kubeconfig", kubeconfig, "get", "po", "-l", "app=web", "-o", "name"]);
    assert!(ok, "{err}");
    let pod = managers(pod.lines().next().unwrap_or_default());
    assert!(pod.contains("kube-controller-manager/Update/;"), "{pod}");
    assert!(pod.contains("kubelet/Update/status;"), "{pod}");

    let (ok, out, err) = run(&[KUBEYARD, "get", "deploy,svc", "--kubeconfig", kubeconfig]);
    assert!(ok, "{err}");
    assert!(out.contains("deployment.apps/web") && out.contains("3/3"), "{out}");
    assert!(out.contains("service/web") && out.contains("ClusterIP"), "{out}");
    let (ok, out, _) = run(&[KUBEYARD, "get", "po", "-l", "app=web", "-o", "name", "--kubeconfig", kubeconfig]);
    assert!(ok && out.lines().count() == 3 && out.lines().all(|l| l.starts_with("pod/web-")), "{out}");
    let (ok, _, err) = run(&[KUBEYARD, "get", "widgets", "--kubeconfig", kubeconfig]);
    assert!(!ok && err.contains("doesn't have a resource type \"widgets\""), "{err}");

    // Applying the same manifests again changes nothing; a changed one is configured.
    let (ok, out, err) = run(&[KUBEYARD, "apply", WEB, "--kubeconfig", kubeconfig]);
    assert!(ok && out.contains("deployment.apps/web unchanged") && out.contains("service/web unchanged"), "{out}{err}");
    let changed = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(format!("{WEB}/web.yaml")).unwrap().replace("replicas: 3", "replicas: 4");
    std::fs::write(changed.path().join("web.yaml"), text).unwrap();
    let (ok, out, err) = run(&[KUBEYARD, "apply", changed.path().to_str().unwrap(), "--kubeconfig", kubeconfig]);
    assert!(ok && out.contains("deployment.apps/web configured"), "{out}{err}");
    let start = Instant::now();
    loop {
        let (_, out, _) = run(&[
            "kubectl",
            "--kubeconfig",
            kubeconfig,
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        if out == "4" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never 4 ready: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_refuses_bad_flags_clearly() {
    let (ok, _, err) = run(&[KUBEYARD, "up", "--node-capacity", "cpu=lots"]);
    assert!(!ok && err.contains("--node-capacity: cpu=lots"), "{err}");
    let (ok, _, err) = run(&[KUBEYARD, "up", "--nodes", "0"]);
    assert!(!ok && err.contains("--nodes"), "{err}");
}

#[test]
fn up_insecure_http_serves_plain_http_without_a_token_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    let mut child = Command::new(KUBEYARD)
        .args(["up", "--nodes", "1", "--insecure-http", "--kubeconfig-out", kubeconfig])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _up = Up(child);
    // Read on for as long as it runs: a closed stderr would end it.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("kubeconfig written")) {
        seen.push(lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{seen:#?}")));
    }
    assert!(seen.iter().any(|l| l.contains("warning: --insecure-http")), "{seen:#?}");
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    assert!(text.contains("server: http://127.0.0.1:") && !text.contains("token:"), "{text}");
    let (ok, out, err) = run(&["kubectl", "--kubeconfig", kubeconfig, "get", "nodes"]);
    assert!(ok && out.contains("node-1"), "{out}{err}");
    let help = run(&[KUBEYARD, "up", "--help"]).1;
    assert!(help.contains("--insecure-http") && help.contains("Secrets"), "{help}");
}
