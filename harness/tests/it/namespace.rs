//! The namespace controller against the API server: a deleted namespace's content goes,
//! then the namespace; other namespaces are untouched; content held by a finalizer holds
//! the namespace, and its conditions say so.

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, component, delete, get, patch, post, wait_for};

fn start() -> Server {
    let server = Server::start();
    component(&server.url, |client| {
        kubeyard_harness::controllers::namespace::run(client, kubeyard_harness::clock::Clock::real())
    });
    component(&server.url, kubeyard_harness::controllers::garbage_collector::run);
    server
}

fn create(url: &str, path: &str, object: Value) {
    let created = post(&format!("{url}{path}"), &object);
    assert_eq!(created.status, 201, "{path}: {}", created.text);
}

/// The collections of `namespace` this test fills, by path.
fn collections(namespace: &str) -> Vec<String> {
    ["api/v1/configmaps", "api/v1/services", "api/v1/secrets", "apis/apps/v1/replicasets", "api/v1/pods"]
        .iter()
        .map(|path| {
            let (prefix, plural) = path.rsplit_once('/').unwrap_or_default();
            format!("/{prefix}/namespaces/{namespace}/{plural}")
        })
        .collect()
}

fn count(url: &str, collection: &str) -> usize {
    get(&format!("{url}{collection}")).body["items"].as_array().map_or(0, Vec::len)
}

/// A namespace holding a ConfigMap, a Service, a Secret and a ReplicaSet of two pods.
fn populate(url: &str, namespace: &str) {
    create(
        url,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    );
    let at = |plural: &str| format!("/api/v1/namespaces/{namespace}/{plural}");
    create(url, &at("configmaps"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}));
    create(
        url,
        &at("services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    create(
        url,
        &at("secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "data": {"token": "c2VjcmV0"}}),
    );
    create(
        url,
        &format!("/apis/apps/v1/namespaces/{namespace}/replicasets"),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
    );
}

fn condition(namespace: &Value, type_: &str) -> Value {
    let conditions = namespace["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.into_iter().find(|c| c["type"] == type_).unwrap_or(Value::Null)
}

#[test]
fn a_deleted_namespace_loses_its_content_then_goes() {
    let server = start();
    let url = server.url.clone();
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::replicaset::run(client, &informers, &kubeyard_harness::clock::Clock::real())
            .await
    });
    // Each new namespace's `default` account, which its pods run as.
    component(&url, kubeyard_harness::controllers::serviceaccount::run);
    populate(&url, "doomed");
    populate(&url, "kept");
    let pods = |namespace: &str| format!("/api/v1/namespaces/{namespace}/pods");
    wait_for("the pods of both", || count(&url, &pods("doomed")) == 2 && count(&url, &pods("kept")) == 2);

    let deleted = delete(&format!("{url}/api/v1/namespaces/doomed"));
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["status"]["phase"], "Terminating");
    wait_for("the namespace gone", || get(&format!("{url}/api/v1/namespaces/doomed")).status == 404);
    for collection in collections("doomed") {
        assert_eq!(count(&url, &collection), 0, "{collection}");
    }
    for collection in collections("kept") {
        let wanted = if collection.ends_with("/pods") { 2 } else { 1 };
        assert_eq!(count(&url, &collection), wanted, "{collection}");
    }
    assert_eq!(get(&format!("{url}/api/v1/namespaces/kept")).body["status"]["phase"], "Active");
}

#[test]
fn content_held_by_a_finalizer_holds_the_namespace() {
    let server = start();
    let url = server.url.clone();
    create(&url, "/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}}));
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    create(&url, "/api/v1/namespaces/held/configmaps", held);
    let namespace_url = format!("{url}/api/v1/namespaces/held");

    assert_eq!(delete(&namespace_url).status, 200);
    wait_for("the conditions to say what is left", || {
        let namespace = get(&namespace_url).body;
        condition(&namespace, "NamespaceContentRemaining")["status"] == "True"
            && condition(&namespace, "NamespaceFinalizersRemaining")["status"] == "True"
    });
    let namespace = get(&namespace_url).body;
    assert_eq!(
        condition(&namespace, "NamespaceContentRemaining")["message"],
        "Some resources are remaining: configmaps has 1 resource instances"
    );
    assert_eq!(
        condition(&namespace, "NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));

    let configmap = format!("{namespace_url}/configmaps/held");
    patch(&configmap, "application/merge-patch+json", &json!({"metadata": {"finalizers": null}}));
    wait_for("the namespace gone", || get(&namespace_url).status == 404);
}
