//! Kustomize input (`fixtures/kustomize/`): a kustomization directory is built as
//! `kubectl apply -k` builds it, and each finding lands in the file its object came from.

use crate::support;

use std::process::Output;

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// (file, line, code, help) of every diagnostic.
fn findings(report: &serde_json::Value) -> Vec<(String, u64, String, String)> {
    let mut all = Vec::new();
    for object in report["objects"].as_array().unwrap() {
        for d in object["diagnostics"].as_array().unwrap() {
            all.push((
                d["file"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["code"].as_str().unwrap().to_string(),
                d["help"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    all
}

#[test]
fn findings_land_in_the_files_the_objects_came_from() {
    let output = support::kubeyard(&["lint", "-o", "json", "fixtures/kustomize/overlays/broken"], None);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let found = findings(&json(&output));
    let at =
        |code: &str| found.iter().find(|f| f.2 == code).unwrap_or_else(|| panic!("no {code} in {found:#?}")).clone();
    // A resource of the overlay's own, on the very field.
    let unknown = at("schema/unknown-field");
    assert_eq!((unknown.0.as_str(), unknown.1), ("fixtures/kustomize/overlays/broken/worker.yaml", 6));
    // A patched value: on the base's field, saying the kustomization made it so.
    let replicas = at("workload/negative-replicas");
    assert_eq!((replicas.0.as_str(), replicas.1), ("fixtures/kustomize/base/deployment.yaml", 8));
    assert!(
        replicas.3.contains("the value is the kustomization's (fixtures/kustomize/overlays/broken/kustomization.yaml"),
        "{replicas:?}"
    );
    // A generated object: on the generator that made it.
    let label = at("metadata/invalid-label");
    assert_eq!((label.0.as_str(), label.1), ("fixtures/kustomize/overlays/broken/kustomization.yaml", 6));
    assert!(label.3.ends_with("the object is made by this kustomization's configMapGenerator"), "{label:?}");
    // A field missing in what was built is missing in its file too: no blame on kustomize.
    let required = at("schema/required");
    assert!(!required.3.contains("kustomization"), "{required:?}");
}

#[test]
fn a_kustomization_is_planned_as_built() {
    let valid = support::kubeyard(&["lint", "fixtures/kustomize/overlays/prod/kustomization.yaml"], None);
    assert_eq!(valid.status.code(), Some(0), "{}", String::from_utf8_lossy(&valid.stdout));
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("state.yaml");
    let plan =
        support::kubeyard(&["plan", "fixtures/kustomize/overlays/prod", "--state", state.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&plan.stderr));
    // The prefix, the namespace, the generated ConfigMap's hashed name, the patch.
    for line in ["+ Namespace/shop", "+ Service/shop/prod-web", "+ Deployment/shop/prod-web", "replicas: 3"] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(text.contains("+ ConfigMap/shop/prod-settings-"), "{text}");
    assert!(text.contains("Plan: 4 to create"), "{text}");
}

#[test]
fn a_kustomization_that_cannot_be_built_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kustomization.yaml"), "resources: [missing.yaml]\n").unwrap();
    let output = support::kubeyard(&["lint", "-o", "json", dir.path().to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let found = findings(&json(&output));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "input/kustomize");
    let message = &json(&output)["objects"][0]["diagnostics"][0]["message"];
    assert!(message.as_str().unwrap().contains("missing.yaml"), "{message}");
}

#[test]
fn findings_follow_their_object_whatever_the_order_and_names() {
    // `sortOptions: fifo` orders the build as the resources are listed, the wrapped build
    // that says where objects came from in kustomize's own order; and one name holds the
    // other. The finding still lands on its own object. The folder's name needs quoting.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("x #y");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("kustomization.yaml"), "resources: [a.yaml, b.yaml]\nsortOptions:\n  order: fifo\n")
        .unwrap();
    std::fs::write(
        app.join("a.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-canary\nspec:\n  bogus: 1\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    std::fs::write(
        app.join("b.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    let output = support::kubeyard(&["lint", "-o", "json", app.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let found = findings(&json(&output));
    let unknown = found.iter().find(|f| f.2 == "schema/unknown-field").unwrap_or_else(|| panic!("{found:#?}"));
    assert!(unknown.0.ends_with("x #y/a.yaml"), "{unknown:?}");
    assert_eq!(unknown.1, 6);
    assert!(!unknown.3.contains("kustomization"), "the value is the file's: {unknown:?}");
}

#[test]
fn a_namespace_the_kustomization_replaces_still_finds_its_object() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kustomization.yaml"), "namespace: prod\nresources: [cm.yaml]\n").unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: dev\ndata:\n  a: 1\n",
    )
    .unwrap();
    let output = support::kubeyard(&["lint", "-o", "json", dir.path().to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let found = findings(&json(&output));
    let wrong = found.iter().find(|f| f.2 == "schema/type").unwrap_or_else(|| panic!("{found:#?}"));
    assert!(wrong.0.ends_with("/cm.yaml") && wrong.1 == 7, "on the file's data.a: {wrong:?}");
}
