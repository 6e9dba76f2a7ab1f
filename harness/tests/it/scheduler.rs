//! The scheduler against the API server: pending pods are bound to nodes with room,
//! spread, the same way for the same seed; a pod that fits nowhere is reported as
//! Kubernetes reports it.

use crate::support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::api::{Server, component, get, post, wait_for};

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}
    })
}

fn pod(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    })
}

fn placements(url: &str) -> BTreeMap<String, String> {
    get(&format!("{url}/api/v1/namespaces/default/pods")).body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((p["metadata"]["name"].as_str()?.to_string(), p["spec"]["nodeName"].as_str()?.to_string()))
        })
        .collect()
}

/// Three nodes, nine small pods and one too big for any node.
fn cluster(seed: u64) -> (Server, BTreeMap<String, String>) {
    let server = Server::start();
    for name in ["node-a", "node-b", "node-c"] {
        assert_eq!(post(&format!("{}/api/v1/nodes", server.url), &node(name)).status, 201);
    }
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    for i in 0..9 {
        assert_eq!(post(&pods, &pod(&format!("small-{i}"), "300m")).status, 201);
    }
    assert_eq!(post(&pods, &pod("huge", "3")).status, 201);
    component(&server.url, move |client| kubeyard_harness::scheduler::run(client, seed));
    wait_for("nine pods bound", || placements(&server.url).len() == 9);
    let placed = placements(&server.url);
    (server, placed)
}

#[test]
fn pending_pods_are_bound_spread_and_repeatably() {
    let (server, placed) = cluster(42);
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in placed.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [3, 3, 3], "{placed:?}");
    let bound = get(&format!("{}/api/v1/namespaces/default/pods/small-0", server.url)).body;
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    assert_eq!(bound["status"]["conditions"][0]["status"], "True");

    // The pod that fits nowhere stays Pending, and says why, as Kubernetes does.
    let huge_url = format!("{}/api/v1/namespaces/default/pods/huge", server.url);
    wait_for("the huge pod's condition", || get(&huge_url).body["status"]["conditions"].is_array());
    let huge = get(&huge_url).body;
    assert_eq!(huge["status"]["phase"], "Pending");
    let condition = &huge["status"]["conditions"][0];
    assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("Unschedulable")));
    assert_eq!(condition["message"], "0/3 nodes are available: 3 Insufficient cpu.");
    let events = get(&format!(
        "{}/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dhuge,reason%3DFailedScheduling",
        server.url
    ))
    .body;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "reported once: {events}");
    assert_eq!(events["items"][0]["type"], "Warning");

    // The same cluster with the same seed places every pod on the same node.
    let (_again, placed_again) = cluster(42);
    assert_eq!(placed, placed_again);
}
