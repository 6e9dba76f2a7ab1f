use super::*;
use serde_json::json;

fn node(name: &str, cpu: &str, memory: &str) -> NodeInfo {
    NodeInfo::new(&json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    }))
}

fn pod(cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
    ]}})
}

fn first(_: usize) -> usize {
    0
}

#[test]
fn requests_count_containers_init_containers_and_overhead() {
    let pod = json!({"spec": {
        "containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}, {"resources": {"requests": {"cpu": "250m"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
        "overhead": {"cpu": "10m"}
    }});
    assert_eq!(pod_requests(&pod), Resources { milli_cpu: 1010, memory: 64 << 20, pods: 1 });
}

#[test]
fn a_pod_that_fits_nowhere_says_why_as_kubernetes_does() {
    let framework = Framework::default();
    let nodes = vec![node("a", "1", "1Gi"), node("b", "1", "1Gi"), node("c", "4", "256Mi")];
    let error = framework.schedule(&pod("2", "512Mi"), &nodes, &mut first).unwrap_err();
    assert_eq!(error.to_string(), "0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.");
    let error = framework.schedule(&pod("2", "2Gi"), &nodes[..2], &mut first).unwrap_err();
    assert_eq!(error.to_string(), "0/2 nodes are available: 2 Insufficient cpu.");
}

#[test]
fn filters_rule_out_cordoned_tainted_unselected_and_busy_nodes() {
    let framework = Framework::default();
    let mut cordoned = node("cordoned", "4", "8Gi");
    cordoned.node["spec"] = json!({"unschedulable": true});
    let mut tainted = node("tainted", "4", "8Gi");
    tainted.node["spec"] = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]});
    let mut ported = node("ported", "4", "8Gi");
    ported.add_pod(&json!({"spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
    let mut labelled = node("labelled", "4", "8Gi");
    labelled.node["metadata"]["labels"]["disk"] = json!("ssd");
    let nodes = vec![cordoned, tainted, ported, labelled];
    let wants = json!({"spec": {
        "nodeSelector": {"disk": "ssd"},
        "containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]
    }});
    assert_eq!(framework.schedule(&wants, &nodes, &mut first), Ok(3));
    let nowhere = json!({"spec": {"nodeSelector": {"disk": "hdd"}, "containers": [{"ports": [{"hostPort": 8080}]}]}});
    let error = framework.schedule(&nowhere, &nodes, &mut first).unwrap_err();
    // One reason a node, the first filter's, in Kubernetes' filter order.
    assert_eq!(
        error.to_string(),
        "0/4 nodes are available: 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable, \
         2 node(s) didn't match Pod's node affinity/selector."
    );
    let port = json!({"spec": {"containers": [{"ports": [{"hostPort": 8080}]}]}});
    assert_eq!(
        framework.schedule(&port, &nodes[2..3], &mut first).unwrap_err().to_string(),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    // Tolerating the taint opens the node; requiring it by affinity picks it.
    let gpu = json!({"spec": {
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["tainted"]}]}
        ]}}},
        "containers": [{}]
    }});
    assert_eq!(framework.schedule(&gpu, &nodes, &mut first), Ok(1));
}

#[test]
fn scores_prefer_free_nodes_preferred_labels_and_spreading() {
    let framework = Framework::default();
    let mut busy = node("busy", "4", "8Gi");
    busy.add_pod(&pod("3", "6Gi"));
    let idle = node("idle", "4", "8Gi");
    assert_eq!(framework.schedule(&pod("100m", "128Mi"), &[busy.clone(), idle.clone()], &mut first), Ok(1));

    let mut zoned = node("zoned", "4", "8Gi");
    zoned.node["metadata"]["labels"]["zone"] = json!("a");
    let prefers = json!({"spec": {"containers": [{}], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
    ]}}}});
    assert_eq!(framework.schedule(&prefers, &[idle.clone(), zoned], &mut first), Ok(1));

    let replica =
        json!({"metadata": {"ownerReferences": [{"uid": "rs-1", "controller": true}]}, "spec": {"containers": [{}]}});
    let mut with_sibling = node("sibling", "4", "8Gi");
    with_sibling.add_pod(&replica);
    let mut plain = node("plain", "4", "8Gi");
    plain.add_pod(&json!({"spec": {"containers": [{}]}}));
    assert_eq!(framework.schedule(&replica, &[with_sibling, plain], &mut first), Ok(1));
}

#[test]
fn ties_are_broken_by_the_pick_so_a_seed_repeats_a_placement() {
    let framework = Framework::default();
    let nodes: Vec<NodeInfo> = (0..5).map(|i| node(&format!("n{i}"), "4", "8Gi")).collect();
    let place = |seed: u64| {
        let mut rng = seed;
        let mut pick = |n: usize| {
            // A small LCG stands in for the harness's seeded generator.
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) as usize % n
        };
        (0..10).map(|_| framework.schedule(&pod("100m", "64Mi"), &nodes, &mut pick).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(place(7), place(7));
    let spread: std::collections::BTreeSet<usize> = place(7).into_iter().collect();
    assert!(spread.len() > 1, "equal nodes are chosen among, not always the first");
}
