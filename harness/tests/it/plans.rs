//! Plans over every folder of `fixtures/plans/`: `manifests/` (with optional `values/`),
//! an optional `state.yaml` to plan against, and optional extra flags in `args`. The text
//! plan and the stable YAML plan are snapshotted together.

use crate::support;

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
    let dirs = support::case_dirs("plans");
    assert!(dirs.len() >= 4, "fixtures/plans holds the cases");
    support::snapshots_in("plans").bind(|| {
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

/// `plan` writes its JSON entry by entry (the summary counted first): the document is
/// the plan the library makes whole, and the text and YAML snapshots above were made
/// whole before they were streamed.
#[test]
fn the_json_plan_written_entry_by_entry_is_the_whole_plan() {
    use kubeyard_harness::snapshot::{PlanRequest, plan_yaml};
    for dir in support::case_dirs("plans") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut args = plan_args(&dir, &name);
        args.extend(["-o".to_string(), "json".to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = support::kubeyard(&refs, None);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the plan is one JSON document");
        let extra = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
        let words: Vec<&str> = extra.split_whitespace().collect();
        let request = PlanRequest {
            paths: vec![format!("{}/manifests", dir.display())],
            env: words.iter().position(|w| *w == "--env").map(|at| words[at + 1].to_string()),
            set: words.iter().position(|w| *w == "--set").map(|at| words[at + 1].to_string()).into_iter().collect(),
            state: Some(dir.join("state.yaml")).filter(|state| state.is_file()),
            prune: words.contains(&"--prune"),
            server_side: words.contains(&"--server-side"),
            force_conflicts: words.contains(&"--force-conflicts"),
            ..PlanRequest::default()
        };
        let whole = plan_yaml(&request).expect("the fixture plans");
        assert_eq!(kubeyard_compiler::print::to_yaml(&json), whole, "{name}");
        assert!(json["objects"].as_array().is_some_and(|objects| !objects.is_empty()), "{name}");
    }
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

/// Unforced, the server-side fixture's apply would be refused: the plan names each field
/// and its manager as the API server's 409 does, and fails.
#[test]
fn a_server_side_plan_in_conflict_names_the_fields_and_fails() {
    let args = [
        "plan",
        "fixtures/plans/server-side/manifests",
        "--state",
        "fixtures/plans/server-side/state.yaml",
        "--server-side",
    ];
    let output = support::kubeyard(&args, None);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(r#"! .spec.replicas: owned by "hpa" using apps/v1"#), "{text}");
    assert!(text.contains(r#"! .data.mode: owned by "ops" using v1"#), "{text}");
    assert!(text.contains("2 objects in conflict"), "{text}");
    // An applier's own updates are another manager's, as in Kubernetes: `ops` applying
    // conflicts with what `ops` wrote by update.
    let mut other = args.to_vec();
    other.extend(["--field-manager", "ops"]);
    let output = support::kubeyard(&other, None);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(r#"! .data.mode: owned by "ops" using v1"#), "{text}");
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

/// The invariant behind `kubeyard apply`: once a plan is applied, planning the same
/// manifests again changes nothing. Over every file of the real-world corpus whose
/// objects are all valid.
#[test]
#[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
fn applying_then_planning_again_changes_nothing_over_the_corpus() {
    let (files, objects) = apply_then_plan_again(&support::corpus());
    assert!(files > 150 && objects > 250, "{files} files, {objects} objects");
}

/// The same invariant over the project's own applications and fixtures, on every clone.
#[test]
fn applying_then_planning_again_changes_nothing_over_the_fixtures() {
    let (files, objects) = apply_then_plan_again(&support::workspace().join("fixtures"));
    assert!(files > 40 && objects > 80, "{files} files, {objects} objects");
}

/// Plans every file under `folder` whose objects are all valid, applies the plan to an
/// empty state and plans again; returns the files and objects planned.
fn apply_then_plan_again(folder: &Path) -> (usize, usize) {
    use kubeyard_compiler::graph::{self, ObjectId};
    use kubeyard_compiler::normalize::normalize;
    use kubeyard_compiler::plan::{self, Action, state::State};
    use kubeyard_compiler::{LintOptions, Linter, Verdict};

    let mut linter = Linter::new(LintOptions {
        rules: kubeyard_compiler::rules::RuleSettings::all_off(),
        keep_trees: true,
        ..LintOptions::default()
    })
    .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut planned_files = 0;
    let mut planned_objects = 0;
    for path in files {
        let report = support::lint_file(&mut linter, &path, folder);
        if report.objects.is_empty() || report.objects.iter().any(|o| o.verdict != Verdict::Valid) {
            continue;
        }
        let mut written = Vec::new();
        let mut normalized = Vec::new();
        let mut infos = Vec::new();
        for object in &report.objects {
            let (Some(info), Some(tree)) = (&object.object, &object.tree) else { continue };
            written.push(tree.to_json());
            normalized.push(normalize(info, tree, linter.catalog()));
            infos.push(info.clone());
        }
        let ids: Vec<Option<ObjectId>> = normalized.iter().map(ObjectId::of).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        if ids.iter().any(Option::is_none) || unique.len() != ids.len() {
            continue; // generateName objects and duplicates cannot be applied as they are
        }
        let refs: Vec<&serde_json::Value> = normalized.iter().collect();
        let desired: Vec<plan::Desired<'_>> = (0..refs.len())
            .map(|i| plan::Desired { written: &written[i], normalized: &normalized[i], info: &infos[i] })
            .collect();
        let graph = graph::build(&refs);
        let first =
            plan::plan(&desired, &graph, &State::default(), linter.catalog(), false, &plan::Applier::ClientSide);
        assert!(first.objects.iter().all(|e| e.action == Action::Create), "{}", path.display());
        let by_id = ids.iter().flatten().cloned().zip(written.iter().cloned()).collect();
        let mut state = State::default();
        for object in plan::applied(&first, &by_id, &State::default()) {
            let text = serde_json::to_string(&object).unwrap();
            state.read(&kubeyard_compiler::SourceFile::new("state.json", text).unwrap()).unwrap();
        }
        let second = plan::plan(&desired, &graph, &state, linter.catalog(), true, &plan::Applier::ClientSide);
        let changed: Vec<String> = second
            .objects
            .iter()
            .filter(|e| e.action != Action::Unchanged)
            .map(|e| format!("{} {:?} {:?}", e.object.id, e.action, e.changes))
            .collect();
        assert!(changed.is_empty(), "{}: {changed:#?}", path.display());
        planned_files += 1;
        planned_objects += refs.len();
    }
    (planned_files, planned_objects)
}

/// The Rust API users call from their own tests.
#[test]
fn assert_plan_snapshot_for_rust_tests() {
    let manifests = support::workspace().join("fixtures/plans/environment/manifests");
    let state = support::workspace().join("fixtures/plans/environment/state.yaml");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(support::workspace().join("snapshots/plans"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        kubeyard_harness::assert_plan_snapshot!(
            [manifests.display()],
            env = "prod",
            set = ["image.tag=1.5.0"],
            state = &state
        );
    });
    // Problems come back as the linter's diagnostics.
    let broken = kubeyard_harness::snapshot::plan_yaml(&kubeyard_harness::snapshot::PlanRequest {
        paths: vec![support::workspace().join("fixtures/graph/cycle").display().to_string()],
        ..Default::default()
    });
    assert!(broken.is_err_and(|problems| problems.contains("graph/cycle")));
}

/// Tests and cluster shapes lie beside the manifests they are about (as docs/testing.md
/// suggests): `plan` and `graph` leave them out, saying so, instead of planning to create
/// them (which the API server would refuse).
#[test]
fn kubeyards_own_documents_beside_manifests_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n---\n\
         apiVersion: kubeyard.dev/v1alpha1\nkind: Test\nmetadata: {name: smoke}\nspec:\n  steps:\n  - converged: {}\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    for command in ["plan", "graph"] {
        let output = support::kubeyard(&[command, path], None);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{command}: {stdout}{stderr}");
        assert!(stdout.contains("ConfigMap/default/settings") && !stdout.contains("smoke"), "{command}: {stdout}");
        assert!(
            stderr.contains("note: left out 1 kubeyard.dev document(s)") && stderr.contains("Test/smoke"),
            "{stderr}"
        );
    }
}
