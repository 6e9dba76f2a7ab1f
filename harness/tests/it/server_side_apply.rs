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
    // An applied configuration may not hold an item of a keyed list twice (an update may).
    let dup_url = format!("{}/apis/apps/v1/namespaces/default/deployments/dup", server.url);
    let env = json!([{"name": "FOO", "value": "1"}, {"name": "FOO", "value": "2"}]);
    let twice = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dup", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "dup"}}, "template": {"metadata": {"labels": {"app": "dup"}},
                 "spec": {"containers": [{"name": "c", "image": "nginx", "env": env}]}}}});
    let refused = apply(&dup_url, "?fieldManager=me", &twice);
    assert_eq!(refused.status, 500, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        r#"failed to create typed patch object (default/dup; apps/v1, Kind=Deployment): .spec.template.spec.containers[name="c"].env: duplicate entries for key [name="FOO"]"#
    );
    assert!(refused.body.get("reason").is_none(), "{}", refused.text);
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

/// Every create records its creator, owning the object as decoded (defaults included)
/// but not what admission adds after; past ten updaters the oldest merge into
/// `ancient-changes`.
#[test]
fn creates_record_their_creator_and_updaters_are_capped() {
    let server = Server::start();
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    let web = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    let created =
        call("POST", &deployments, Some("application/json"), Some(&web.to_string()), &[("User-Agent", "deployer/1.0")]);
    assert_eq!(created.status, 201, "{}", created.text);
    let entry = &created.body["metadata"]["managedFields"][0];
    assert_eq!((entry["manager"].as_str(), entry["operation"].as_str()), (Some("deployer"), Some("Update")));
    let fields = &entry["fieldsV1"];
    assert!(fields.pointer("/f:spec/f:progressDeadlineSeconds").is_some(), "defaults are the creator's: {fields}");
    let container = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert!(container.get("f:imagePullPolicy").is_some() && container.get(".").is_some(), "{fields}");
    assert!(fields.get("f:status").is_none(), "{fields}");

    // A pod's creator does not own what admission added (its service account's volume,
    // the default tolerations).
    let accounts = format!("{}/api/v1/namespaces/default/serviceaccounts", server.url);
    let _ = support::api::post(
        &accounts,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    );
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let created = support::api::post(&pods, &pod);
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.body.pointer("/spec/tolerations").is_some() && created.body.pointer("/spec/volumes").is_some());
    let spec = &created.body["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(spec.get("f:tolerations").is_none() && spec.get("f:volumes").is_none(), "{spec}");
    assert!(spec.get("f:restartPolicy").is_some(), "{spec}");

    // A create that sets nothing a manager owns leaves the object untracked, as in
    // Kubernetes: updates of it are not tracked either.
    let configmaps = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bare"}});
    let created = support::api::post(&configmaps, &bare);
    assert!(created.body["metadata"].get("managedFields").is_none(), "{}", created.text);
    let patched = call(
        "PATCH",
        &format!("{configmaps}/bare"),
        Some("application/merge-patch+json"),
        Some(r#"{"data":{"a":"1"}}"#),
        &[],
    );
    assert!(patched.body["metadata"].get("managedFields").is_none(), "{}", patched.text);
    // Eleven updaters after the creator: ten Update entries are kept, the oldest merged
    // into ancient-changes.
    let seeded = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"seed": "x"}});
    assert_eq!(support::api::post(&configmaps, &seeded).status, 201);
    for n in 0..11 {
        let patch = json!({"data": {format!("k{n}"): "v"}}).to_string();
        let patched = call(
            "PATCH",
            &format!("{configmaps}/c?fieldManager=m{n:02}"),
            Some("application/merge-patch+json"),
            Some(&patch),
            &[],
        );
        assert_eq!(patched.status, 200, "{}", patched.text);
    }
    let entries = get(&format!("{configmaps}/c")).body["metadata"]["managedFields"].as_array().cloned().unwrap();
    assert_eq!(entries.len(), 10, "{entries:?}");
    assert!(entries.iter().any(|e| e["manager"] == "ancient-changes"), "{entries:?}");

    // A tracked object sent back as it is stored is not written again: same
    // resourceVersion, same entries (the field manager compares the two without their
    // entries, and the stored object keeps its own).
    let stored = get(&format!("{configmaps}/c")).body;
    let again = call(
        "PUT",
        &format!("{configmaps}/c?fieldManager=m00"),
        Some("application/json"),
        Some(&stored.to_string()),
        &[],
    );
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"], "{}", again.text);
    assert_eq!(again.body["metadata"]["managedFields"], stored["metadata"]["managedFields"]);
}

/// A custom kind merges by its schema's markers: a `map` list by its keys, a `set` by
/// value; an applier dropping its item removes it, the other's stays.
#[test]
fn custom_objects_merge_by_their_list_markers() {
    let server = Server::start();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "routes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "routes", "kind": "Route"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "backends": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                                      "items": {"type": "object", "required": ["name"], "properties": {
                                          "name": {"type": "string"}, "weight": {"type": "integer"}}}},
                         "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}}}}]}
    });
    let made =
        support::api::post(&format!("{}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", server.url), &crd);
    assert_eq!(made.status, 201, "{}", made.text);
    let url = format!("{}/apis/example.com/v1/namespaces/default/routes/r", server.url);
    let route = |backend: &str, host: &str| {
        json!({"apiVersion": "example.com/v1", "kind": "Route", "metadata": {"name": "r"},
               "spec": {"backends": [{"name": backend, "weight": 1}], "hosts": [host]}})
    };
    assert_eq!(apply(&url, "?fieldManager=team-a", &route("a", "a.example")).status, 201);
    let both = apply(&url, "?fieldManager=team-b", &route("b", "b.example"));
    assert_eq!(both.status, 200, "{}", both.text);
    assert_eq!(both.body["spec"]["backends"], json!([{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]));
    assert_eq!(both.body["spec"]["hosts"], json!(["a.example", "b.example"]));
    // Team A moves to another backend: its old one goes, team B's stays.
    let moved = apply(&url, "?fieldManager=team-a", &route("c", "a.example"));
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body["spec"]["backends"], json!([{"name": "b", "weight": 1}, {"name": "c", "weight": 1}]));
    // Both setting one backend's weight differently: a conflict on that item's field.
    let mut heavier = route("b", "b.example");
    heavier["spec"]["backends"][0]["weight"] = json!(5);
    let refused = apply(&url, "?fieldManager=team-a", &heavier);
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        r#"Apply failed with 1 conflict: conflict with "team-b": .spec.backends[name="b"].weight"#
    );
}
