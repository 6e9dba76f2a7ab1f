//! The garbage collector against the API server: dependents of gone owners collected,
//! foreground deletion waits for blocking dependents, orphaning lets dependents go, a
//! dependent with a live owner kept, references that cannot be valid not followed.

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, call, component, delete, get, patch, post, wait_for};

const MERGE: &str = "application/merge-patch+json";

fn start() -> Server {
    let server = Server::start();
    component(&server.url, kubeyard_harness::controllers::garbage_collector::run);
    server
}

fn reference(api_version: &str, kind: &str, owner: &Value, block: bool) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block,
    })
}

fn configmaps(url: &str, namespace: &str) -> String {
    format!("{url}/api/v1/namespaces/{namespace}/configmaps")
}

/// Creates a ConfigMap with these owner references, returning it as stored.
fn configmap(url: &str, namespace: &str, name: &str, owners: &[Value]) -> Value {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "ownerReferences": owners}, "data": {"k": "v"}});
    let created = post(&configmaps(url, namespace), &object);
    assert_eq!(created.status, 201, "{}", created.text);
    created.body
}

fn replicaset(url: &str, replicas: u32) -> Value {
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    });
    let created = post(&format!("{url}/apis/apps/v1/namespaces/default/replicasets"), &set);
    assert_eq!(created.status, 201, "{}", created.text);
    created.body
}

fn pods(url: &str) -> Vec<Value> {
    get(&format!("{url}/api/v1/namespaces/default/pods")).body["items"].as_array().cloned().unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    let references = object["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    references.iter().filter_map(|r| r["uid"].as_str().map(str::to_string)).collect()
}

fn gone(url: &str) -> bool {
    get(url).status == 404
}

/// Lets the collector run a while: what it should leave alone is still there after.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

#[test]
fn background_deletion_collects_the_dependents_of_gone_owners() {
    let server = start();
    let url = server.url.clone();
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::replicaset::run(client, &informers, &kubeyard_harness::clock::Clock::real())
            .await
    });
    replicaset(&url, 2);
    wait_for("two pods", || pods(&url).len() == 2);

    let parent = configmap(&url, "default", "parent", &[]);
    configmap(&url, "default", "child", &[reference("v1", "ConfigMap", &parent, false)]);
    let never = json!({"metadata": {"name": "never", "uid": "00000000-0000-0000-0000-000000000000"}});
    configmap(&url, "default", "stray", &[reference("v1", "ConfigMap", &never, false)]);
    wait_for("the stray collected", || gone(&format!("{}/stray", configmaps(&url, "default"))));
    assert_eq!(get(&format!("{}/child", configmaps(&url, "default"))).status, 200, "its owner lives");

    // The REST default for a ReplicaSet is background: it goes at once, its pods after.
    let deleted = delete(&format!("{url}/apis/apps/v1/namespaces/default/replicasets/web"));
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    wait_for("no pod left", || pods(&url).is_empty());

    assert_eq!(delete(&format!("{}/parent", configmaps(&url, "default"))).status, 200);
    wait_for("the child collected", || gone(&format!("{}/child", configmaps(&url, "default"))));
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let server = start();
    let url = server.url.clone();
    let set = replicaset(&url, 3);
    // Pods as Kubernetes' ReplicaSet controller writes them (blocking), and one that does not block.
    let pod = |name: &str, block: bool, finalizers: &[&str]| {
        let mut owner = reference("apps/v1", "ReplicaSet", &set, block);
        owner["controller"] = json!(true);
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [owner], "finalizers": finalizers},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        assert_eq!(post(&format!("{url}/api/v1/namespaces/default/pods"), &pod).status, 201);
    };
    pod("free", true, &[]);
    pod("held", true, &["example.com/hold"]);
    pod("loose", false, &["example.com/hold"]);
    let set_url = format!("{url}/apis/apps/v1/namespaces/default/replicasets/web");
    let pod_url = |name: &str| format!("{url}/api/v1/namespaces/default/pods/{name}");

    let deleted = call("DELETE", &format!("{set_url}?propagationPolicy=Foreground"), None, None, &[]);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    wait_for("the free pod collected", || gone(&pod_url("free")));
    wait_for("the held pods deleting", || {
        ["held", "loose"].iter().all(|name| get(&pod_url(name)).body["metadata"]["deletionTimestamp"].is_string())
    });
    settle();
    let waiting = get(&set_url);
    assert_eq!(waiting.status, 200, "the set waits for its blocking pod");
    assert!(waiting.body["metadata"]["deletionTimestamp"].is_string(), "{}", waiting.text);
    assert_eq!(waiting.body["metadata"]["finalizers"], json!(["foregroundDeletion"]));

    patch(&pod_url("held"), MERGE, &json!({"metadata": {"finalizers": null}}));
    wait_for("the held pod gone", || gone(&pod_url("held")));
    wait_for("the set gone after it", || gone(&set_url));
    // A dependent that does not block was deleted, not waited for.
    assert!(get(&pod_url("loose")).body["metadata"]["deletionTimestamp"].is_string());
}

#[test]
fn orphan_deletion_lets_the_dependents_go() {
    let server = start();
    let url = server.url.clone();
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::replicaset::run(client, &informers, &kubeyard_harness::clock::Clock::real())
            .await
    });
    let set = replicaset(&url, 2);
    let uid = set["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    wait_for("two owned pods", || pods(&url).iter().filter(|p| owner_uids(p).contains(&uid)).count() == 2);
    // Settled, so that the ReplicaSet controller is not adopting them back meanwhile.
    let set_url = format!("{url}/apis/apps/v1/namespaces/default/replicasets/web");
    wait_for("status.replicas 2", || get(&set_url).body["status"]["replicas"] == 2);

    let deleted = call("DELETE", &format!("{set_url}?propagationPolicy=Orphan"), None, None, &[]);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    wait_for("the set gone", || gone(&set_url));
    settle();
    let left = pods(&url);
    assert_eq!(left.len(), 2, "the pods stay");
    assert!(left.iter().all(|p| !owner_uids(p).contains(&uid)), "{left:?}");
}

#[test]
fn a_dependent_is_collected_only_when_all_its_owners_are_gone() {
    let server = start();
    let url = server.url.clone();
    let first = configmap(&url, "default", "first", &[]);
    let second = configmap(&url, "default", "second", &[]);
    let owners = [reference("v1", "ConfigMap", &first, false), reference("v1", "ConfigMap", &second, false)];
    configmap(&url, "default", "shared", &owners);
    let shared = format!("{}/shared", configmaps(&url, "default"));

    assert_eq!(delete(&format!("{}/second", configmaps(&url, "default"))).status, 200);
    // Kept, and the reference to the gone owner dropped, as Kubernetes does.
    let first_uid = first["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    wait_for("the gone owner's reference dropped", || owner_uids(&get(&shared).body) == [first_uid.clone()]);
    settle();
    assert_eq!(get(&shared).status, 200, "one owner lives");

    assert_eq!(delete(&format!("{}/first", configmaps(&url, "default"))).status, 200);
    wait_for("the dependent collected", || gone(&shared));
}

#[test]
fn references_that_cannot_be_valid_are_not_followed() {
    let server = start();
    let url = server.url.clone();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}});
    assert_eq!(post(&format!("{url}/api/v1/namespaces"), &namespace).status, 201);
    let owner = configmap(&url, "default", "owner", &[]);
    let by_owner = reference("v1", "ConfigMap", &owner, true);
    configmap(&url, "default", "child", std::slice::from_ref(&by_owner));
    // A namespaced owner owns nothing in another namespace: there, the owner is gone. Held
    // by a finalizer, it stays deleting, and must not hold up the owner's deletion.
    let impostor = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "impostor", "ownerReferences": [by_owner], "finalizers": ["example.com/hold"]}});
    assert_eq!(post(&configmaps(&url, "other"), &impostor).status, 201);
    // A cluster-scoped object cannot have a namespaced owner: it is left alone.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "cluster-child", "ownerReferences": [by_owner]}, "rules": []});
    let roles = format!("{url}/apis/rbac.authorization.k8s.io/v1/clusterroles");
    assert_eq!(post(&roles, &role).status, 201);

    let impostor_url = format!("{}/impostor", configmaps(&url, "other"));
    wait_for("the impostor collected", || get(&impostor_url).body["metadata"]["deletionTimestamp"].is_string());
    let owner_url = format!("{}/owner", configmaps(&url, "default"));
    let deleted = call("DELETE", &format!("{owner_url}?propagationPolicy=Foreground"), None, None, &[]);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    wait_for("the owner gone", || gone(&owner_url));
    assert!(gone(&format!("{}/child", configmaps(&url, "default"))), "its valid dependent went first");
    settle();
    assert_eq!(get(&format!("{roles}/cluster-child")).status, 200, "never collected");
}

/// A custom resource whose CRD is created after the collector started owns like any other
/// object: deleted, its dependents go; and the dependents of a custom resource go with
/// their owner.
#[test]
fn custom_resources_served_later_own_and_are_owned() {
    let server = start();
    let url = server.url.clone();
    // A moment for the collector's first discovery, before the CRD exists.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let created = post(&format!("{url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"), &crd);
    assert_eq!(created.status, 201, "{}", created.text);
    let widgets = format!("{url}/apis/example.com/v1/namespaces/default/widgets");
    let widget = post(&widgets, &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}));
    assert_eq!(widget.status, 201, "{}", widget.text);
    let owned = configmap(&url, "default", "owned", &[reference("example.com/v1", "Widget", &widget.body, false)]);
    let config = configmap(&url, "default", "config", &[]);
    let part = post(
        &widgets,
        &json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "part", "ownerReferences": [reference("v1", "ConfigMap", &config, false)]}}),
    );
    assert_eq!(part.status, 201, "{}", part.text);
    assert_eq!(delete(&format!("{widgets}/w")).status, 200);
    let owned_url = format!("{}/{}", configmaps(&url, "default"), owned["metadata"]["name"].as_str().unwrap());
    wait_for("the widget's ConfigMap collected", || gone(&owned_url));
    assert_eq!(delete(&format!("{}/config", configmaps(&url, "default"))).status, 200);
    wait_for("the ConfigMap's widget collected", || gone(&format!("{widgets}/part")));
}
