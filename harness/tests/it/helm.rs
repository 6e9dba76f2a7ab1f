//! Helm charts as input (`fixtures/helm/`): rendered by the real `helm` (scripts/setup
//! installs it), each template's output checked as a file named after the template.

use crate::support;

use std::process::Output;

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn a_chart_is_linted_template_by_template_with_its_values() {
    let output = support::kubeyard(&["lint", "-o", "json", "fixtures/helm/web"], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let report = json(&output);
    let files: Vec<&str> = report["objects"].as_array().unwrap().iter().map(|o| o["file"].as_str().unwrap()).collect();
    // Its test hook is `helm test`'s, not part of what is installed.
    assert_eq!(
        files,
        [
            "fixtures/helm/web/templates/service.yaml (helm template)",
            "fixtures/helm/web/templates/deployment.yaml (helm template)"
        ]
    );

    let output = support::kubeyard(
        &[
            "lint",
            "-o",
            "json",
            "fixtures/helm/web/Chart.yaml",
            "--helm-values",
            "fixtures/helm/broken-values.yaml",
            "--helm-release",
            "shop",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    let deployment = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(deployment["name"], "shop-web", "the release names it");
    let codes: Vec<(&str, u64)> = deployment["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap(), d["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(codes, [("workload/negative-replicas", 10), ("image/latest-tag", 23)], "{deployment:#}");
    assert_eq!(deployment["diagnostics"][0]["file"], "fixtures/helm/web/templates/deployment.yaml (helm template)");
}

#[test]
fn a_chart_is_planned_as_rendered_and_refused_loudly_without_helm() {
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("state.yaml");
    let plan = support::kubeyard(
        &["plan", "fixtures/helm/web", "--helm-release", "shop", "--state", state.to_str().unwrap()],
        None,
    );
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("+ Deployment/default/shop-web") && text.contains("+ Service/default/shop-web"), "{text}");
    assert!(text.contains("Plan: 2 to create"), "{text}");

    // No helm: the chart is not passed over, the run fails and says what to do.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(["lint", "-o", "json", "fixtures/helm/web"])
        .current_dir(support::workspace())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let diagnostic = &json(&output)["objects"][0]["diagnostics"][0];
    assert_eq!(diagnostic["code"], "input/helm");
    assert_eq!(diagnostic["message"], "cannot render the chart fixtures/helm/web: helm is not on the PATH");
    assert!(diagnostic["help"].as_str().unwrap().contains("helm template DIR | kubeyard lint -"), "{diagnostic}");
}
