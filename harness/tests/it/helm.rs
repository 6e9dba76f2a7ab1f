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

    // In a CI annotation the rendered template is no file of the pull request: its place
    // goes into the message.
    let output = support::kubeyard(
        &["lint", "-o", "github", "fixtures/helm/web", "--helm-values", "fixtures/helm/broken-values.yaml"],
        None,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.contains("negative-replicas")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("::error title=workload/negative-replicas (Deployment/release-name-web)::fixtures/helm/web/templates/deployment.yaml (helm template):10:13: "),
        "{line}"
    );
}

#[test]
fn a_chart_is_rendered_as_an_install_renders_it() {
    // Its CRDs first (so its custom resources validate), the hooks an install runs and no
    // others, for the namespace asked (default unless told).
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("widgets");
    for folder in ["crds", "templates"] {
        std::fs::create_dir_all(chart.join(folder)).unwrap();
    }
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: widgets\nversion: 0.1.0\n").unwrap();
    std::fs::write(
        chart.join("crds/widget.yaml"),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n\
         spec:\n  group: example.com\n  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}\n\
         \x20 scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n\
         \x20   schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n\
         \x20         spec: {type: object, properties: {size: {type: integer}}}\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: {{ .Release.Namespace }}\nspec:\n  size: 3\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cleanup.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cleanup\n  annotations: {helm.sh/hook: pre-delete}\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(["lint", "-o", "json", "Chart.yaml", "--helm-namespace", "shop"])
        .current_dir(&chart)
        .env("HELM_NAMESPACE", "elsewhere")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let report = json(&output);
    let objects: Vec<(&str, &str, Option<&str>)> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["name"].as_str().unwrap(), o["namespace"].as_str()))
        .collect();
    assert_eq!(
        objects,
        [("CustomResourceDefinition", "widgets.example.com", None), ("Widget", "w", Some("shop"))],
        "no pre-delete hook: {report:#}"
    );
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
    // Nothing of the chart was checked: the run's failure (2), not a finding (1).
    assert_eq!(output.status.code(), Some(2));
    let diagnostic = &json(&output)["objects"][0]["diagnostics"][0];
    assert_eq!(diagnostic["code"], "input/missing-tool");
    assert_eq!(diagnostic["message"], "cannot render the chart fixtures/helm/web: helm is not on the PATH");
    assert!(diagnostic["help"].as_str().unwrap().contains("helm template DIR | kubeyard lint -"), "{diagnostic}");
}
