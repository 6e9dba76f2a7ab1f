//! `kubeyard plan --kubeconfig` and `--cluster`: plans against what a live cluster holds
//! (kubeyard's API server here, written to by kubectl, as users would).

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use support::api::Server;
use support::kubeyard;

const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: 'nginx:1.27'}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: fast}
";

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let output = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn plans_compare_with_what_the_cluster_holds() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, APP).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kubeyard_harness::apiserver::kubeconfig::write(&kubeconfig, &server.url, None, None).unwrap();
    let (manifests_arg, kubeconfig_arg) = (manifests.display().to_string(), kubeconfig.display().to_string());

    // Nothing there yet: everything is created.
    let empty = kubeyard(&["plan", &manifests_arg, "--cluster", &server.url, "--detailed-exitcode"], None);
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty));
    assert!(text(&empty).contains("2 to create, 0 to update, 0 to delete"), "{}", text(&empty));

    // Applied with kubectl: nothing to do.
    kubectl(&kubeconfig, &["apply", "-f", &manifests_arg]);
    let same = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--detailed-exitcode"], None);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));

    // A change in the manifests is an update with its fields; a change someone made in
    // the cluster to a field the manifests set is drift the apply undoes.
    std::fs::write(&manifests, APP.replace("replicas: 2", "replicas: 3")).unwrap();
    kubectl(&kubeconfig, &["patch", "configmap", "settings", "-p", r#"{"data":{"mode":"slow"}}"#]);
    let changed = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "-o", "json"], None);
    assert!(changed.status.success(), "{}", text(&changed));
    let plan: serde_json::Value = serde_json::from_slice(&changed.stdout).unwrap();
    let actions: Vec<(String, String)> = plan["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (o["id"].as_str().unwrap_or_default().to_string(), o["action"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert!(actions.iter().all(|(_, action)| action == "update"), "{actions:?}");
    let text_plan = text(&kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg], None));
    assert!(text_plan.contains("spec.replicas") && text_plan.contains("data.mode"), "{text_plan}");

    // An object left out of the manifests is deleted with --prune, and only then.
    std::fs::write(&manifests, APP.split("---").next().unwrap()).unwrap();
    let kept = text(&kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg], None));
    assert!(kept.contains("0 to delete"), "{kept}");
    let pruned = text(&kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--prune"], None));
    assert!(pruned.contains("1 to delete") && pruned.contains("settings"), "{pruned}");
}

#[test]
fn plans_reach_a_cluster_over_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let _server = support::api::Process::start(&kubeconfig, &["--tls", "--token", "s3cret"]);
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, APP).unwrap();
    let (manifests_arg, kubeconfig_arg) = (manifests.display().to_string(), kubeconfig.display().to_string());
    kubectl(&kubeconfig, &["apply", "-f", &manifests_arg]);
    let plan = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--detailed-exitcode"], None);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // Without the CA, or with the wrong token, the plan fails and says why.
    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, config.replace("s3cret", "nope")).unwrap();
    let refused = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &wrong.display().to_string()], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("401"), "{}", text(&refused));
    let url = config.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let untrusted = kubeyard(&["plan", &manifests_arg, "--cluster", &url, "--token", "s3cret"], None);
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(text(&untrusted).contains("certificate"), "{}", text(&untrusted));
    let insecure = kubeyard(
        &[
            "plan",
            &manifests_arg,
            "--cluster",
            &url,
            "--token",
            "s3cret",
            "--insecure-skip-tls-verify",
            "--detailed-exitcode",
        ],
        None,
    );
    assert_eq!(insecure.status.code(), Some(0), "{}", text(&insecure));

    // Credentials from an exec plugin (as EKS, GKE and AKS kubeconfigs give them), run
    // as kubectl runs it.
    let plugin = dir.path().join("token-plugin");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"s3cret\"}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
        plugin.display()
    );
    let token_line = config.lines().find(|l| l.trim_start().starts_with("token:")).unwrap();
    let with_plugin = dir.path().join("with-plugin");
    std::fs::write(&with_plugin, config.replace(&format!("{token_line}\n"), &exec)).unwrap();
    assert!(!std::fs::read_to_string(&with_plugin).unwrap().contains("s3cret"));
    // kubectl reads the same kubeconfig (it asserts success).
    kubectl(&with_plugin, &["get", "configmaps"]);
    let plugged = kubeyard(
        &["plan", &manifests_arg, "--kubeconfig", &with_plugin.display().to_string(), "--detailed-exitcode"],
        None,
    );
    assert_eq!(plugged.status.code(), Some(0), "{}", text(&plugged));
}

/// `kubeyard apply --server-side`: each object applied by the `kubeyard` field manager (or
/// `--field-manager`), a field another manager owns refused, `--force-conflicts` taking it.
#[test]
fn kubeyard_applies_server_side() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, APP).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kubeyard_harness::apiserver::kubeconfig::write(&kubeconfig, &server.url, None, None).unwrap();
    let (manifests_arg, kubeconfig_arg) = (manifests.display().to_string(), kubeconfig.display().to_string());
    // First applied client-side, as kubeyard applies by default.
    let first = kubeyard(&["apply", &manifests_arg, "--kubeconfig", &kubeconfig_arg], None);
    assert!(first.status.success(), "{}", text(&first));
    let managers = |kubeconfig: &Path| {
        let managers =
            kubectl(kubeconfig, &["get", "cm", "settings", "-o", "jsonpath={.metadata.managedFields[*].manager}"]);
        String::from_utf8_lossy(&managers.stdout).into_owned()
    };
    assert_eq!(managers(&kubeconfig), "kubeyard-client-side-apply");
    // Moving to server-side apply is no conflict with itself: what the client-side applies
    // own becomes the applier's, and the last-applied annotation, no longer anyone's, goes.
    let planned = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side"], None);
    assert!(planned.status.success(), "{}", text(&planned));
    assert!(!text(&planned).contains("conflict"), "{}", text(&planned));
    let applied = kubeyard(&["apply", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side"], None);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(text(&applied).contains("configmap/settings serverside-applied"), "{}", text(&applied));
    assert_eq!(managers(&kubeconfig), "kubeyard");
    let annotations = kubectl(&kubeconfig, &["get", "cm", "settings", "-o", "jsonpath={.metadata.annotations}"]);
    assert!(!String::from_utf8_lossy(&annotations.stdout).contains("last-applied"));
    // Someone else takes the mode; the next apply with another mode is refused, then forced.
    kubectl(
        &kubeconfig,
        &["patch", "cm", "settings", "--type", "merge", "-p", r#"{"data":{"mode":"slow"}}"#, "--field-manager=ops"],
    );
    std::fs::write(&manifests, APP.replace("mode: fast", "mode: fastest")).unwrap();
    // The plan predicts it from the cluster's managedFields, and fails as the apply will.
    let planned = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side"], None);
    assert_eq!(planned.status.code(), Some(1), "{}", text(&planned));
    assert!(text(&planned).contains(r#"! .data.mode: owned by "ops" using v1"#), "{}", text(&planned));
    assert!(text(&planned).contains("1 object in conflict"), "{}", text(&planned));
    let forcing = kubeyard(
        &["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side", "--force-conflicts"],
        None,
    );
    assert!(forcing.status.success(), "{}", text(&forcing));
    assert!(text(&forcing).contains("~ data.mode: slow → fastest"), "{}", text(&forcing));
    let refused = kubeyard(&["apply", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side"], None);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(r#"Apply failed with 1 conflict: conflict with "ops" using v1: .data.mode"#),
        "{}",
        text(&refused)
    );
    let forced = kubeyard(
        &["apply", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side", "--force-conflicts"],
        None,
    );
    assert!(forced.status.success(), "{}", text(&forced));
    let mode = kubectl(&kubeconfig, &["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]);
    assert_eq!(String::from_utf8_lossy(&mode.stdout), "fastest");
    // Applied, the plan has nothing left to do.
    let settled = kubeyard(&["plan", &manifests_arg, "--kubeconfig", &kubeconfig_arg, "--server-side"], None);
    assert!(settled.status.success(), "{}", text(&settled));
    assert!(text(&settled).contains("No changes"), "{}", text(&settled));
}
