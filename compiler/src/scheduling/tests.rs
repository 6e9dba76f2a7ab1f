use super::*;
use serde_json::json;

fn node_with(name: &str, cpu: &str, memory: &str, extra: Value) -> NodeInfo {
    let mut node = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    });
    if let Some(spec) = extra.get("spec") {
        node["spec"] = spec.clone();
    }
    if let Some(labels) = extra.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            node["metadata"]["labels"][k] = v.clone();
        }
    }
    NodeInfo::new(&node)
}

fn node(name: &str, cpu: &str, memory: &str) -> NodeInfo {
    node_with(name, cpu, memory, json!({}))
}

fn pod(cpu: &str, memory: &str) -> PodInfo {
    PodInfo::new(&json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
    ]}}))
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
    // A sidecar runs beside the containers, so it counts toward the pod's steady state
    // (the scheduler once left it out).
    let pod = json!({"spec": {
        "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}],
        "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}}}]
    }});
    assert_eq!(pod_requests(&pod), Resources { milli_cpu: 750, memory: 96 << 20, pods: 1 });
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
    let cordoned = node_with("cordoned", "4", "8Gi", json!({"spec": {"unschedulable": true}}));
    let tainted = node_with(
        "tainted",
        "4",
        "8Gi",
        json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
    );
    let mut ported = node("ported", "4", "8Gi");
    ported.add_pod(&json!({"spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
    let labelled = node_with("labelled", "4", "8Gi", json!({"labels": {"disk": "ssd"}}));
    let nodes = vec![cordoned, tainted, ported, labelled];
    let wants = PodInfo::new(&json!({"spec": {
        "nodeSelector": {"disk": "ssd"},
        "containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]
    }}));
    assert_eq!(framework.schedule(&wants, &nodes, &mut first), Ok(3));
    let nowhere = PodInfo::new(
        &json!({"spec": {"nodeSelector": {"disk": "hdd"}, "containers": [{"ports": [{"hostPort": 8080}]}]}}),
    );
    let error = framework.schedule(&nowhere, &nodes, &mut first).unwrap_err();
    // One reason a node, the first filter's, in Kubernetes' filter order.
    assert_eq!(
        error.to_string(),
        "0/4 nodes are available: 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable, \
         2 node(s) didn't match Pod's node affinity/selector."
    );
    let port = PodInfo::new(&json!({"spec": {"containers": [{"ports": [{"hostPort": 8080}]}]}}));
    assert_eq!(
        framework.schedule(&port, &nodes[2..3], &mut first).unwrap_err().to_string(),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    // Tolerating the taint opens the node; requiring it by affinity picks it.
    let gpu = PodInfo::new(&json!({"spec": {
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["tainted"]}]}
        ]}}},
        "containers": [{}]
    }}));
    assert_eq!(framework.schedule(&gpu, &nodes, &mut first), Ok(1));
}

#[test]
fn a_removed_pod_gives_back_what_it_took() {
    let mut info = node("a", "4", "8Gi");
    let empty = info.clone();
    let replica = PodInfo::new(&json!({
        "metadata": {"ownerReferences": [{"uid": "rs-1", "controller": true}]},
        "spec": {"containers": [{"ports": [{"hostPort": 80}], "resources": {"requests": {"cpu": "1"}}}]}
    }));
    info.add(&replica);
    assert_eq!(info.requested, Resources { milli_cpu: 1000, memory: 0, pods: 1 });
    assert_eq!(info.owners.get("rs-1"), Some(&1));
    info.remove(&replica);
    assert_eq!((info.requested, info.host_ports.len(), info.owners.len()), (empty.requested, 0, 0));
    // A newer copy of the node keeps what is bound to it.
    info.add(&replica);
    let relabelled = info.updated(&json!({"metadata": {"name": "a", "labels": {"zone": "b"}},
                                          "status": {"allocatable": {"cpu": "8", "pods": "110"}}}));
    assert_eq!((relabelled.requested.pods, relabelled.allocatable.milli_cpu), (1, 8000));
    assert_eq!(relabelled.labels.get("zone").map(String::as_str), Some("b"));
}

#[test]
fn tolerations_match_taints_as_kubernetes_does() {
    let taint = Taint::new("node.kubernetes.io/unreachable", "", "NoExecute");
    let toleration = |value: Value| Toleration::from_value(&value);
    assert!(toleration(json!({"operator": "Exists"})).tolerates(&taint), "an empty key with Exists tolerates all");
    assert!(toleration(json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists"})).tolerates(&taint));
    assert!(
        !toleration(json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}))
            .tolerates(&taint)
    );
    assert!(toleration(json!({"key": "gpu", "value": "yes"})).tolerates(&Taint::new("gpu", "yes", "NoSchedule")));
    assert!(!toleration(json!({"key": "gpu", "value": "no"})).tolerates(&Taint::new("gpu", "yes", "NoSchedule")));

    let tolerations = |list: Value| Toleration::of_pod(&json!({"spec": {"tolerations": list}}));
    assert_eq!(tolerated_for(&tolerations(json!([])), &taint), Some(Duration::ZERO));
    let defaulted = tolerations(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                        "effect": "NoExecute", "tolerationSeconds": 300}]));
    assert_eq!(tolerated_for(&defaulted, &taint), Some(Duration::from_secs(300)));
    assert_eq!(tolerated_for(&tolerations(json!([{"operator": "Exists"}])), &taint), None);
    assert_eq!(
        tolerated_for(&tolerations(json!([{"key": "dedicated", "operator": "Exists"}])), &taint),
        Some(Duration::ZERO)
    );
    let no_execute_elsewhere =
        tolerations(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]));
    assert_eq!(tolerated_for(&no_execute_elsewhere, &taint), Some(Duration::ZERO));
}

#[test]
fn scores_prefer_free_nodes_preferred_labels_and_spreading() {
    let framework = Framework::default();
    let mut busy = node("busy", "4", "8Gi");
    busy.add(&pod("3", "6Gi"));
    let idle = node("idle", "4", "8Gi");
    assert_eq!(framework.schedule(&pod("100m", "128Mi"), &[busy.clone(), idle.clone()], &mut first), Ok(1));

    let zoned = node_with("zoned", "4", "8Gi", json!({"labels": {"zone": "a"}}));
    let prefers = PodInfo::new(
        &json!({"spec": {"containers": [{}], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
        ]}}}}),
    );
    assert_eq!(framework.schedule(&prefers, &[idle.clone(), zoned], &mut first), Ok(1));

    let replica =
        json!({"metadata": {"ownerReferences": [{"uid": "rs-1", "controller": true}]}, "spec": {"containers": [{}]}});
    let mut with_sibling = node("sibling", "4", "8Gi");
    with_sibling.add_pod(&replica);
    let mut plain = node("plain", "4", "8Gi");
    plain.add_pod(&json!({"spec": {"containers": [{}]}}));
    assert_eq!(framework.schedule(&PodInfo::new(&replica), &[with_sibling, plain], &mut first), Ok(1));
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

#[test]
fn large_clusters_are_searched_in_part_from_where_the_last_search_stopped() {
    // Kubernetes' adaptive percentageOfNodesToScore.
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(100), 100);
    assert_eq!(feasible_nodes_to_find(1_000), 420);
    assert_eq!(feasible_nodes_to_find(5_000), 500);
    assert_eq!(feasible_nodes_to_find(200), 100);

    let framework = Framework::default();
    let nodes: Vec<NodeInfo> = (0..1_000).map(|i| node(&format!("n{i:04}"), "4", "8Gi")).collect();
    let placed = framework.schedule_from(&pod("100m", "64Mi"), &nodes, 900, &mut first).unwrap();
    assert_eq!(placed.examined, 420);
    // The search wrapped round: the lowest index among the feasible is the first pick.
    assert_eq!(placed.node, 0);
    // Nothing fits: every node is tried, and every one is counted in the reasons.
    let error = framework.schedule_from(&pod("8", "64Mi"), &nodes, 10, &mut first).unwrap_err();
    assert_eq!(error.to_string(), "0/1000 nodes are available: 1000 Insufficient cpu.");
}

#[test]
fn a_selection_no_node_meets_is_named() {
    let ssd = node_with("fast", "4", "8Gi", json!({"labels": {"disk": "ssd", "zone": "a"}}));
    let hdd = node_with("slow", "4", "8Gi", json!({"labels": {"disk": "hdd", "zone": "b"}}));
    let nodes = vec![ssd, hdd];
    let selecting = |spec: Value| PodInfo::new(&json!({ "spec": spec })).unmatched_selection(&nodes);
    assert_eq!(selecting(json!({"nodeSelector": {"disk": "ssd"}})), None);
    assert_eq!(
        selecting(json!({"nodeSelector": {"disk": "nvme"}})).as_deref(),
        Some("nodeSelector disk: nvme matches no node: they have disk: hdd, ssd")
    );
    assert_eq!(
        selecting(json!({"nodeSelector": {"gpu": "yes"}})).as_deref(),
        Some("nodeSelector gpu: yes matches no node: none has the label gpu")
    );
    // Each label is on some node, but not both on one.
    assert_eq!(
        selecting(json!({"nodeSelector": {"disk": "ssd", "zone": "b"}})).as_deref(),
        Some("no node has all of nodeSelector's labels (disk: ssd, zone: b)")
    );
    let terms = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
    assert_eq!(
        selecting(terms(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "arch", "operator": "In", "values": ["arm64"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gone"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "zone", "operator": "In", "values": ["b"]}]},
            {}
        ])))
        .as_deref(),
        Some(
            "required node affinity matches no node: term 1 needs arch In [arm64], which no node meets; \
             term 2 needs metadata.name In [gone], which no node meets; \
             term 3's requirements meet no one node together; term 4 is empty and matches nothing"
        )
    );
    // Selector and affinity each match a node, never the same one.
    assert_eq!(
        selecting(json!({"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
        ]}}}}))
        .as_deref(),
        Some("required node affinity matches no node: term 1 needs zone In [b], which no node meets")
    );
}
