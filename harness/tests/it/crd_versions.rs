//! A CRD with several versions, as clients of each version see it: objects are stored in
//! the storage version and served in the version asked for (`conversion.strategy: None`
//! rewrites `apiVersion` only; `Webhook` asks the CRD's conversion webhook, which the
//! test runs over HTTPS with its own CA).

use crate::support;

use kubeyard_harness::apiserver::Options;
use kubeyard_harness::store::Store;
use kubeyard_harness::store::memory::MemoryStore;
use serde_json::{Value, json};
use std::sync::Arc;
use support::api::{Server, get, patch, post, put, watch_events};

fn fixture(name: &str) -> Value {
    support::yaml_documents(&format!("fixtures/crds/gadgets/{name}")).remove(0)
}

fn crds(server: &Server) -> String {
    format!("{}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", server.url)
}

fn at(server: &Server, version: &str, plural: &str) -> String {
    format!("{}/apis/example.com/{version}/namespaces/default/{plural}", server.url)
}

/// The stored bytes of an object, as JSON.
fn stored(store: &Arc<MemoryStore>, key: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let entry = runtime.block_on(store.get(key)).expect("the store answers").expect("stored");
    serde_json::from_slice(&entry.value).expect("JSON")
}

#[test]
fn objects_are_stored_in_the_storage_version_and_served_in_each() {
    let store = Arc::new(MemoryStore::new());
    let server = Server::with(Arc::clone(&store) as Arc<dyn Store>, Options::default());
    let created = post(&crds(&server), &fixture("crd.yaml"));
    assert_eq!(created.status, 201, "{}", created.text);
    // Discovery prefers v1 over v1beta1, as Kubernetes orders versions.
    let group = get(&format!("{}/apis/example.com", server.url)).body;
    assert_eq!(group["preferredVersion"]["version"], "v1");

    // Written through v1beta1: answered in v1beta1, stored in v1.
    let made = post(&at(&server, "v1beta1", "gadgets"), &fixture("gadget.yaml"));
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["apiVersion"], "example.com/v1beta1");
    let key = "/registry/example.com/gadgets/default/probe";
    assert_eq!(stored(&store, key)["apiVersion"], "example.com/v1");
    // Each version's reader sees its own apiVersion, the fields untouched.
    for version in ["v1", "v1beta1"] {
        let one = get(&format!("{}/probe", at(&server, version, "gadgets"))).body;
        assert_eq!(one["apiVersion"], format!("example.com/{version}"));
        assert_eq!(one["spec"]["size"], 3);
        let list = get(&at(&server, version, "gadgets")).body;
        assert_eq!(list["apiVersion"], format!("example.com/{version}"));
        assert_eq!(list["items"][0]["apiVersion"], format!("example.com/{version}"));
        let events = watch_events(&format!("{}?watch=true&timeoutSeconds=1", at(&server, version, "gadgets")));
        assert_eq!(events[0]["object"]["apiVersion"], format!("example.com/{version}"), "{events:?}");
        let selected = watch_events(&format!(
            "{}?watch=true&timeoutSeconds=1&labelSelector=app%3Dprobe",
            at(&server, version, "gadgets")
        ));
        assert_eq!(selected[0]["object"]["apiVersion"], format!("example.com/{version}"), "{selected:?}");
    }
    // Updated through one version, patched through the other: one object, one generation count.
    let mut object = get(&format!("{}/probe", at(&server, "v1", "gadgets"))).body;
    object["spec"]["size"] = json!(4);
    let updated = put(&format!("{}/probe", at(&server, "v1", "gadgets")), &object);
    assert_eq!((updated.status, updated.body["metadata"]["generation"].as_i64()), (200, Some(2)), "{}", updated.text);
    let patched = patch(
        &format!("{}/probe", at(&server, "v1beta1", "gadgets")),
        "application/merge-patch+json",
        &json!({"spec": {"size": 5}}),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["apiVersion"], "example.com/v1beta1");
    assert_eq!(patched.body["metadata"]["generation"], 3);
    assert_eq!(stored(&store, key)["apiVersion"], "example.com/v1");
    // Each version is validated by its own schema.
    let refused = patch(
        &format!("{}/probe", at(&server, "v1beta1", "gadgets")),
        "application/merge-patch+json",
        &json!({"spec": {"size": 0}}),
    );
    assert_eq!(refused.status, 422, "{}", refused.text);

    // The storage version moves to v1beta1: both stay in storedVersions, new writes go there.
    let mut crd = get(&format!("{}/gadgets.example.com", crds(&server))).body;
    crd["spec"]["versions"][0]["storage"] = json!(true);
    crd["spec"]["versions"][1]["storage"] = json!(false);
    let moved = put(&format!("{}/gadgets.example.com", crds(&server)), &crd);
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body["status"]["storedVersions"], json!(["v1", "v1beta1"]));
    let patched = patch(
        &format!("{}/probe", at(&server, "v1", "gadgets")),
        "application/merge-patch+json",
        &json!({"spec": {"size": 6}}),
    );
    assert_eq!(
        (patched.status, patched.body["apiVersion"].as_str()),
        (200, Some("example.com/v1")),
        "{}",
        patched.text
    );
    assert_eq!(stored(&store, key)["apiVersion"], "example.com/v1beta1");
    // Tables use the asked version's printer columns.
    let table = support::api::call(
        "GET",
        &at(&server, "v1beta1", "gadgets"),
        None,
        None,
        &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
    );
    assert_eq!(table.body["columnDefinitions"][1]["name"], "Size", "{}", table.text);
    assert_eq!(table.body["rows"][0]["cells"][1], 6);
}

/// A conversion webhook between v1's `spec.size` and v2's `spec.parts`.
fn convert(review: &Value) -> Value {
    let request = &review["request"];
    let to = request["desiredAPIVersion"].as_str().unwrap_or_default().to_string();
    let converted: Vec<Value> = request["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|object| {
            let mut out = object.clone();
            let spec = object["spec"].as_object().cloned().unwrap_or_default();
            out["spec"] = match to.as_str() {
                "example.com/v2" => json!({"parts": spec.get("size")}),
                _ => json!({"size": spec.get("parts")}),
            };
            out["apiVersion"] = json!(to);
            // Only labels and annotations may change in metadata; the rest is ignored.
            out["metadata"]["labels"] = json!({"converted": "yes"});
            out["metadata"]["name"] = json!("renamed");
            out
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": request["uid"], "convertedObjects": converted, "result": {"status": "Success"}},
    })
}

#[test]
fn a_conversion_webhook_converts_objects_between_versions() {
    let hook = support::webhook::Webhook::start(convert);
    let store = Arc::new(MemoryStore::new());
    let server = Server::with(Arc::clone(&store) as Arc<dyn Store>, Options::default());
    let mut crd = fixture("crd-webhook.yaml");
    crd["spec"]["conversion"]["webhook"]["clientConfig"] = hook.client_config("/convert");
    let created = post(&crds(&server), &crd);
    assert_eq!(created.status, 201, "{}", created.text);

    // Created in v2: the webhook turns it into v1 to store it.
    let sprocket =
        json!({"apiVersion": "example.com/v2", "kind": "Sprocket", "metadata": {"name": "s"}, "spec": {"parts": 7}});
    let made = post(&at(&server, "v2", "sprockets"), &sprocket);
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["spec"], json!({"parts": 7}));
    let kept = stored(&store, "/registry/example.com/sprockets/default/s");
    assert_eq!((kept["apiVersion"].as_str(), &kept["spec"]), (Some("example.com/v1"), &json!({"size": 7})));
    assert_eq!(kept["metadata"]["name"], "s", "a webhook's change of name is ignored");
    assert_eq!(kept["metadata"]["labels"], json!({"converted": "yes"}));
    let (path, review) = hook.calls()[0].clone();
    assert_eq!(path, "/convert");
    assert_eq!(review["kind"], "ConversionReview");
    assert_eq!(review["request"]["desiredAPIVersion"], "example.com/v1");

    // Read in v1: no call; in v2: converted, in get, list and watch alike.
    let calls = hook.calls().len();
    assert_eq!(get(&format!("{}/s", at(&server, "v1", "sprockets"))).body["spec"], json!({"size": 7}));
    assert_eq!(hook.calls().len(), calls, "objects already in the asked version are not sent");
    assert_eq!(get(&format!("{}/s", at(&server, "v2", "sprockets"))).body["spec"], json!({"parts": 7}));
    assert_eq!(get(&at(&server, "v2", "sprockets")).body["items"][0]["spec"], json!({"parts": 7}));
    let events = watch_events(&format!("{}?watch=true&timeoutSeconds=1", at(&server, "v2", "sprockets")));
    assert_eq!(events[0]["object"]["spec"], json!({"parts": 7}), "{events:?}");
    // An update in v2 converts the stored object to v2 first, then back.
    let patched = patch(
        &format!("{}/s", at(&server, "v2", "sprockets")),
        "application/merge-patch+json",
        &json!({"spec": {"parts": 8}}),
    );
    assert_eq!((patched.status, &patched.body["spec"]), (200, &json!({"parts": 8})), "{}", patched.text);
    assert_eq!(stored(&store, "/registry/example.com/sprockets/default/s")["spec"], json!({"size": 8}));

    // A webhook that cannot be reached: 500 in Kubernetes' words.
    let mut crd = get(&format!("{}/sprockets.example.com", crds(&server))).body;
    crd["spec"]["conversion"]["webhook"]["clientConfig"] =
        json!({"url": "https://127.0.0.1:1/convert", "caBundle": hook.ca_bundle});
    assert_eq!(put(&format!("{}/sprockets.example.com", crds(&server)), &crd).status, 200);
    let failed = get(&format!("{}/s", at(&server, "v2", "sprockets")));
    assert_eq!(failed.status, 500, "{}", failed.text);
    let message = failed.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            r#"Internal error occurred: conversion webhook for example.com/v1, Kind=Sprocket failed: Post "https://127.0.0.1:1/convert": dial tcp 127.0.0.1:1"#
        ),
        "{message}"
    );
}
