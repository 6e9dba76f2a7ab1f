//! Templates end to end: every folder under `fixtures/templates/` is normalized once per
//! environment it has (`values/default.yaml` alone, then each `values/NAME.yaml` with
//! `--env NAME`), and what kubeyard prints (objects, or diagnostics) is snapshotted.

use crate::support;

use std::path::Path;

#[test]
fn fixtures_render_per_environment() {
    let dirs = support::case_dirs("templates");
    assert!(dirs.len() >= 2, "fixtures/templates holds at least a good and a broken case");
    support::snapshots_in("templates").bind(|| {
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let relative = format!("fixtures/templates/{name}");
            for env in environments(&dir) {
                let mut args = vec!["normalize", relative.as_str()];
                if let Some(env) = &env {
                    args.extend(["--env", env.as_str()]);
                }
                let output = support::kubeyard(&args, None);
                let text = format!(
                    "exit: {}\n--- stdout\n{}--- stderr\n{}",
                    output.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr).replace('\r', "")
                );
                let text = support::without_timing(&text);
                insta::assert_snapshot!(
                    format!("{name}@{}", env.as_deref().unwrap_or("default")),
                    text,
                    &args.join(" ")
                );
            }
        }
    });
}

fn environments(dir: &Path) -> Vec<Option<String>> {
    let mut envs = vec![None];
    let mut named: Vec<String> = std::fs::read_dir(dir.join("values"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_string))
                .filter(|n| n != "default")
                .collect()
        })
        .unwrap_or_default();
    named.sort();
    envs.extend(named.into_iter().map(Some));
    envs
}

#[test]
fn set_and_values_files_win_in_order_and_values_are_not_manifests() {
    let output = support::kubeyard(
        &["normalize", "fixtures/templates/shop", "--env", "prod", "--set", "image.tag=2.0.0", "-o", "json"],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let objects: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let kinds: Vec<&str> = objects.as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    // values/*.yaml are read as values, never linted as manifests.
    assert_eq!(kinds, ["Namespace", "Deployment", "Secret"]);
    let container = &objects[1]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/web:2.0.0");
    assert_eq!(objects[1]["spec"]["replicas"], 5);

    let missing = support::kubeyard(&["lint", "fixtures/templates/shop", "--env", "staging"], None);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("values/staging.yaml") && err.contains("there are: prod"), "{err}");

    let bad_set = support::kubeyard(&["lint", "fixtures/templates/shop", "--set", "novalue"], None);
    assert_eq!(bad_set.status.code(), Some(2));
}

#[test]
fn without_values_a_dollar_brace_is_text() {
    // No values folder, no flags: `${HOME}` in a shell command stays as written.
    let output = support::kubeyard(
        &["normalize", "-"],
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {run: 'echo ${HOME}'}\n"),
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("run: echo ${HOME}"));
}
