//! The endpoints controller against the API server: a Service's Endpoints follow the
//! pods it selects and their readiness.

use crate::support;

use serde_json::{Value, json};
use std::time::Duration;
use support::api::{Server, component, delete, get, post, put, wait_for};

/// A running pod with an IP, ready or not (what a node agent would report).
fn running(url: &str, name: &str, ip: &str, ready: bool) {
    let pods = format!("{url}/api/v1/namespaces/default/pods");
    let current = get(&format!("{pods}/{name}"));
    let mut pod = if current.status == 200 {
        current.body
    } else {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
                         "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}});
        post(&pods, &pod).body
    };
    pod["status"] = json!({"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]});
    assert_eq!(put(&format!("{pods}/{name}/status"), &pod).status, 200);
}

fn addresses(endpoints: &Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

#[test]
fn endpoints_follow_the_selected_pods_and_their_readiness() {
    let server = Server::start();
    let url = server.url.clone();
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                         "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    assert_eq!(post(&format!("{url}/api/v1/namespaces/default/services"), &service).status, 201);
    running(&url, "a", "10.0.0.1", true);
    running(&url, "b", "10.0.0.2", false);
    component(&url, |client| async move {
        let informers = kubeyard_harness::informers::Informers::start(&client);
        kubeyard_harness::controllers::endpoints::run(client, &informers).await
    });
    let endpoints_url = format!("{url}/api/v1/namespaces/default/endpoints/web");
    let endpoints = || get(&endpoints_url).body;
    wait_for("endpoints", || addresses(&endpoints(), "addresses") == ["10.0.0.1"]);
    let current = endpoints();
    assert_eq!(addresses(&current, "notReadyAddresses"), ["10.0.0.2"]);
    assert_eq!(current["subsets"][0]["ports"][0]["port"], 8080, "the named targetPort resolved: {current}");
    assert_eq!(current["subsets"][0]["addresses"][0]["targetRef"]["name"], "a");

    running(&url, "b", "10.0.0.2", true);
    wait_for("b ready", || addresses(&endpoints(), "addresses") == ["10.0.0.1", "10.0.0.2"]);
    delete(&format!("{url}/api/v1/namespaces/default/pods/a?gracePeriodSeconds=0"));
    wait_for("a gone", || addresses(&endpoints(), "addresses") == ["10.0.0.2"]);
    // A pod the selector does not pick is no endpoint.
    let other = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "labels": {"app": "db"}},
                       "spec": {"containers": [{"name": "db", "image": "postgres"}]}});
    post(&format!("{url}/api/v1/namespaces/default/pods"), &other);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(addresses(&endpoints(), "addresses"), ["10.0.0.2"]);
}
