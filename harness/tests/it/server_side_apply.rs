//! Server-side apply over HTTP, as clients other than kubectl send it: the options and
//! the body checked in Kubernetes' words, an apply that creates (201), a dry run that
//! stores nothing, and updates of applied objects moving ownership to their manager.

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, call, get};

fn apply(url: &str, query: &str, body: &Value) -> support::api::Reply {
    call("PATCH", &format!("{url}{query}"), Some("application/apply-patch+yaml"), Some(&body.to_string()), &[])
}

#[test]
fn applies_are_checked_created_and_tracked_as_kubernetes_does() {
    let server = Server::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps/app", server.url);
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "1"}});
    let refused = apply(&url, "", &config);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let wrong =
        apply(&url, "?fieldManager=me", &json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "app"}}));
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.body["message"],
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    );
    let mut managed = config.clone();
    managed["metadata"]["managedFields"] = json!([]);
    assert_eq!(apply(&url, "?fieldManager=me", &managed).body["message"], "metadata.managedFields must be nil");
    // A dry run stores nothing.
    assert_eq!(apply(&url, "?fieldManager=me&dryRun=All", &config).status, 201);
    assert_eq!(get(&url).status, 404);
    // An apply creates.
    let created = apply(&url, "?fieldManager=me", &config);
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["metadata"]["managedFields"][0]["manager"], "me");
    // An update of the applied object moves the field it changes to its manager (here the
    // User-Agent's product, as Kubernetes names a writer that gives no fieldManager).
    let mut changed = created.body.clone();
    changed["data"]["a"] = json!("2");
    let updated = call(
        "PUT",
        &url,
        Some("application/json"),
        Some(&changed.to_string()),
        &[("User-Agent", "deployer/1.0 (linux)")],
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    let entries = updated.body["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let deployer = entries.iter().find(|e| e["manager"] == "deployer").expect("the updater's entry");
    assert_eq!(deployer["operation"], "Update");
    assert_eq!(deployer["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    assert!(entries.iter().all(|e| e["manager"] != "me"), "the applier owned nothing else: {entries:?}");
    // `force` is for applies only.
    let merge = call("PATCH", &format!("{url}?force=true"), Some("application/merge-patch+json"), Some("{}"), &[]);
    assert_eq!(merge.status, 422);
    assert_eq!(
        merge.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    // Forced, the applier takes it back.
    let forced = apply(&url, "?fieldManager=me&force=true", &config);
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_eq!(forced.body["data"]["a"], "1");
}

#[test]
fn status_applies_are_recorded_and_managed_fields_can_be_reset() {
    let server = Server::start();
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments/web", server.url);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        "status": {"replicas": 9}});
    let created = apply(&url, "?fieldManager=deployer", &deployment);
    assert_eq!(created.status, 201, "{}", created.text);
    // Status through the main resource is not the applier's.
    let applier = &created.body["metadata"]["managedFields"][0];
    assert!(applier["fieldsV1"].get("f:status").is_none(), "{applier}");
    // A status apply is recorded with its subresource.
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"observedGeneration": 1}});
    let applied = apply(&format!("{url}/status"), "?fieldManager=controller", &status);
    assert_eq!(applied.status, 200, "{}", applied.text);
    let entries = applied.body["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let controller = entries.iter().find(|e| e["manager"] == "controller").expect("the status applier's entry");
    assert_eq!((controller["operation"].as_str(), controller["subresource"].as_str()), (Some("Apply"), Some("status")));
    assert_eq!(controller["fieldsV1"], json!({"f:status": {"f:observedGeneration": {}}}));
    // `[{}]` sent with an update resets the tracking.
    let mut reset = applied.body.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    let put = call("PUT", &url, Some("application/json"), Some(&reset.to_string()), &[]);
    assert_eq!(put.status, 200, "{}", put.text);
    assert!(put.body["metadata"].get("managedFields").is_none(), "{}", put.text);
}
