//! The ReplicaSet controller against the API server: pods made to match replicas, owned,
//! scaled both ways, orphans adopted, released pods let go, status counted; and the same
//! controller over ReplicationControllers (a selector map, `v1`).

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, component, get, patch, post, wait_for};

fn pods(url: &str) -> Vec<Value> {
    get(&format!("{url}/api/v1/namespaces/default/pods")).body["items"].as_array().unwrap().clone()
}

fn owned_by(url: &str, uid: &str) -> Vec<Value> {
    pods(url)
        .into_iter()
        .filter(|p| p["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|r| r["uid"] == uid)))
        .collect()
}

#[test]
fn a_replicaset_keeps_its_pods() {
    let server = Server::start();
    let url = server.url.clone();
    // An orphan the set will select, made before the set.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
    assert_eq!(post(&format!("{url}/api/v1/namespaces/default/pods"), &orphan).status, 201);
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    });
    let sets = format!("{url}/apis/apps/v1/namespaces/default/replicasets");
    let created = post(&sets, &set);
    assert_eq!(created.status, 201, "{}", created.text);
    let uid = created.body["metadata"]["uid"].as_str().unwrap().to_string();
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::replicaset::run(client, &informers, &kubeyard_harness::clock::Clock::real())
            .await
    });

    wait_for("three pods", || owned_by(&url, &uid).len() == 3);
    let owned = owned_by(&url, &uid);
    assert!(owned.iter().any(|p| p["metadata"]["name"] == "orphan"), "the orphan is adopted");
    let made = owned.iter().find(|p| p["metadata"]["name"] != "orphan").unwrap();
    assert!(made["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    let reference = &made["metadata"]["ownerReferences"][0];
    assert_eq!((reference["kind"].as_str(), reference["controller"].as_bool()), (Some("ReplicaSet"), Some(true)));
    wait_for("status.replicas 3", || get(&format!("{sets}/web")).body["status"]["replicas"] == 3);

    patch(&format!("{sets}/web/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 5}}));
    wait_for("five pods", || owned_by(&url, &uid).len() == 5);
    patch(&format!("{sets}/web"), "application/merge-patch+json", &json!({"spec": {"replicas": 1}}));
    wait_for("one pod", || owned_by(&url, &uid).len() == 1);
    wait_for("status.replicas 1", || get(&format!("{sets}/web")).body["status"]["replicas"] == 1);

    // A pod relabelled out of the selection is released, and replaced.
    let last = owned_by(&url, &uid)[0]["metadata"]["name"].as_str().unwrap().to_string();
    patch(
        &format!("{url}/api/v1/namespaces/default/pods/{last}"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "debug"}}}),
    );
    wait_for("the released pod replaced", || {
        let owned = owned_by(&url, &uid);
        owned.len() == 1 && owned[0]["metadata"]["name"] != last.as_str()
    });
    let released = get(&format!("{url}/api/v1/namespaces/default/pods/{last}")).body;
    assert!(released["metadata"].get("ownerReferences").is_none(), "{released}");
}

#[test]
fn a_replication_controller_keeps_its_pods() {
    let server = Server::start();
    let url = server.url.clone();
    let controller = json!({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"},
                 "template": {"metadata": {"labels": {"app": "legacy", "tier": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    });
    let controllers = format!("{url}/api/v1/namespaces/default/replicationcontrollers");
    let created = post(&controllers, &controller);
    assert_eq!(created.status, 201, "{}", created.text);
    let uid = created.body["metadata"]["uid"].as_str().unwrap().to_string();
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::replicaset::run_replication_controllers(
            client,
            &informers,
            &kubeyard_harness::clock::Clock::real(),
        )
        .await
    });

    wait_for("two pods", || owned_by(&url, &uid).len() == 2);
    let made = &owned_by(&url, &uid)[0];
    assert!(made["metadata"]["name"].as_str().unwrap().starts_with("legacy-"));
    assert_eq!(made["metadata"]["labels"]["tier"], "web");
    let reference = &made["metadata"]["ownerReferences"][0];
    assert_eq!(
        (reference["apiVersion"].as_str(), reference["kind"].as_str(), reference["controller"].as_bool()),
        (Some("v1"), Some("ReplicationController"), Some(true))
    );
    wait_for("status.replicas 2", || get(&format!("{controllers}/legacy")).body["status"]["replicas"] == 2);

    patch(&format!("{controllers}/legacy/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 0}}));
    wait_for("no pods", || owned_by(&url, &uid).is_empty());
    wait_for("status.replicas 0", || {
        get(&format!("{controllers}/legacy")).body["status"].get("replicas").is_none_or(|r| r == 0)
    });
}
