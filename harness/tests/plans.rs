//! Plans over every folder of `fixtures/plans/`: `manifests/` (with optional `values/`),
//! an optional `state.yaml` to plan against, and optional extra flags in `args`. The text
//! plan and the stable YAML plan are snapshotted together.

mod support;

use std::path::Path;

fn plan_args(dir: &Path, name: &str) -> Vec<String> {
    let mut args = vec!["plan".to_string(), format!("fixtures/plans/{name}/manifests")];
    if dir.join("state.yaml").is_file() {
        args.extend(["--state".to_string(), format!("fixtures/plans/{name}/state.yaml")]);
    }
    if let Ok(extra) = std::fs::read_to_string(dir.join("args")) {
        args.extend(extra.split_whitespace().map(str::to_string));
    }
    args
}

#[test]
fn fixtures_plan_as_snapshotted() {
    let root = support::workspace().join("fixtures/plans");
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "fixtures/plans holds the cases");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(support::workspace().join("snapshots/plans"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let args = plan_args(&dir, &name);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let text = support::kubeyard(&refs, None);
            let mut yaml_args = refs.clone();
            yaml_args.extend(["-o", "yaml"]);
            let yaml = support::kubeyard(&yaml_args, None);
            assert_eq!(text.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&text.stderr));
            let snapshot =
                format!("{}--- yaml\n{}", String::from_utf8_lossy(&text.stdout), String::from_utf8_lossy(&yaml.stdout));
            insta::assert_snapshot!(name.clone(), snapshot, &format!("kubeyard {}", args.join(" ")));
        }
    });
}

#[test]
fn detailed_exit_codes_and_snapshot_check() {
    let three_way = ["plan", "fixtures/plans/three-way/manifests", "--state", "fixtures/plans/three-way/state.yaml"];
    let mut args = three_way.to_vec();
    args.push("--detailed-exitcode");
    assert_eq!(support::kubeyard(&args, None).status.code(), Some(2), "changes: 2");

    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("plan.yaml");
    let snapshot = snapshot.to_str().unwrap();
    let mut write = three_way.to_vec();
    write.extend(["--snapshot", snapshot]);
    assert_eq!(support::kubeyard(&write, None).status.code(), Some(0));
    let mut check = write.clone();
    check.push("--check");
    assert_eq!(support::kubeyard(&check, None).status.code(), Some(0), "the plan matches its snapshot");
    // Another state: the plan changes, and --check says how.
    let mut other = vec!["plan", "fixtures/plans/three-way/manifests", "--snapshot", snapshot, "--check"];
    other.push("--detailed-exitcode");
    let output = support::kubeyard(&other, None);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("differs from the snapshot"), "{err}");
    // Against no state, both objects are created: the summary's lines change.
    assert!(err.contains("-  create: 0") && err.contains("+  create: 2"), "{err}");
}

#[test]
fn apply_records_state_and_the_next_plan_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.yaml");
    let state = state.to_str().unwrap();
    let apply = support::kubeyard(&["apply", "fixtures/plans/create/manifests", "--state", state], None);
    assert_eq!(apply.status.code(), Some(0), "{}", String::from_utf8_lossy(&apply.stderr));
    let plan =
        support::kubeyard(&["plan", "fixtures/plans/create/manifests", "--state", state, "--detailed-exitcode"], None);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("0 to create, 0 to update, 0 to delete, 15 unchanged"));
    // Secrets' values are in the state (it is what the cluster holds), never in a plan.
    let yaml = support::kubeyard(&["plan", "fixtures/plans/create/manifests", "-o", "yaml"], None);
    assert!(!String::from_utf8_lossy(&yaml.stdout).contains("not-a-real-one"));
}

#[test]
fn invalid_manifests_and_states_are_errors() {
    let output = support::kubeyard(&["plan", "fixtures/graph/cycle"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("graph/cycle"));
    let bad_state = support::kubeyard(
        &["plan", "fixtures/plans/prune/manifests", "--state", "fixtures/plans/prune/manifests/app.yaml.missing"],
        None,
    );
    assert_eq!(bad_state.status.code(), Some(0), "a state file that does not exist yet is an empty state");
    let not_objects = support::kubeyard(
        &["plan", "fixtures/plans/prune/manifests", "--state", "fixtures/templates/shop/values/default.yaml"],
        None,
    );
    assert_eq!(not_objects.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_objects.stderr).contains("plan/invalid-state"));
}
