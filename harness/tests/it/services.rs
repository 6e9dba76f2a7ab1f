//! Services' cluster IPs and node ports, as the API server allocates them: from the
//! service CIDR and the node port range, unique under concurrent creates, requested ones
//! honoured once, kept across updates, released by type changes and deletion, and still
//! held after a restart on a durable store.

use crate::support;

use kubeyard_harness::apiserver::Options;
use kubeyard_harness::store::memory::{DEFAULT_HISTORY, MemoryStore};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use support::api::{self, Server, call, delete, get, patch, post, put};

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() && spec.get("type") != Some(&json!("ExternalName")) {
        spec["ports"] = json!([{"port": 80, "targetPort": 8080}]);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn services(server: &Server) -> String {
    format!("{}/api/v1/namespaces/default/services", server.url)
}

fn create(server: &Server, name: &str, spec: Value) -> api::Reply {
    post(&services(server), &service(name, spec))
}

fn created(server: &Server, name: &str, spec: Value) -> Value {
    let reply = create(server, name, spec);
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body
}

fn cluster_ip(service: &Value) -> Ipv4Addr {
    service["spec"]["clusterIP"].as_str().and_then(|ip| ip.parse().ok()).unwrap_or_else(|| panic!("{service}"))
}

fn node_ports(service: &Value) -> Vec<u16> {
    service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or_else(|| panic!("{service}")))
        .collect()
}

/// In 10.96.0.0/12, and neither its network address nor the `kubernetes` Service's.
fn assert_in_range(ip: Ipv4Addr) {
    let value = u32::from(ip);
    let network = u32::from(Ipv4Addr::new(10, 96, 0, 0));
    assert_eq!(value & 0xfff0_0000, network, "{ip} is outside 10.96.0.0/12");
    assert!(value > network + 1 && value < network + (1 << 20) - 1, "{ip} is reserved");
}

/// A 422 naming `field` with `message` in its cause.
fn assert_invalid(reply: &api::Reply, field: &str, message: &str) {
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["reason"], "Invalid", "{}", reply.text);
    let causes = reply.body["details"]["causes"].as_array().unwrap_or_else(|| panic!("{}", reply.text));
    assert!(
        causes.iter().any(|c| c["field"] == field && c["message"].as_str().unwrap_or("").contains(message)),
        "no cause on {field} saying {message:?}: {}",
        reply.text
    );
}

/// `count` Services created from `threads` threads at once, as the server answered them.
fn create_concurrently(server: &Server, threads: usize, count: usize, spec: Value) -> Vec<Value> {
    let url = services(server);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, spec) = (url.clone(), spec.clone());
            std::thread::spawn(move || {
                (0..count / threads)
                    .map(|i| {
                        let reply = post(&url, &service(&format!("svc-{t}-{i}"), spec.clone()));
                        assert_eq!(reply.status, 201, "{}", reply.text);
                        reply.body
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

#[test]
fn cluster_ips_come_from_the_range_unique_across_concurrent_creates() {
    let server = Server::start();
    let made = create_concurrently(&server, 5, 50, json!({"selector": {"app": "web"}}));
    let mut seen = HashSet::new();
    for service in &made {
        let ip = cluster_ip(service);
        assert_in_range(ip);
        assert!(seen.insert(ip), "{ip} handed out twice");
        let spec = &service["spec"];
        assert_eq!(spec["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    }
    // What the creates answered is what is stored.
    let listed = get(&services(&server)).body;
    let stored: HashSet<Ipv4Addr> = listed["items"].as_array().unwrap().iter().map(cluster_ip).collect();
    assert_eq!(stored, seen);
}

/// A range small enough that racing creates would collide without the allocation lock.
#[test]
fn a_small_range_fills_without_duplicates_then_is_full() {
    let options = Options { service_cidr: "10.100.0.0/26".into(), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    // 62 usable addresses, the first of them the `kubernetes` Service's.
    let mut made = create_concurrently(&server, 4, 60, json!({}));
    made.push(created(&server, "last", json!({})));
    let ips: HashSet<Ipv4Addr> = made.iter().map(cluster_ip).collect();
    assert_eq!(ips.len(), 61);
    assert!(ips.iter().all(|ip| ip.octets()[..3] == [10, 100, 0] && (2..63).contains(&ip.octets()[3])), "{ips:?}");
    let full = create(&server, "one-too-many", json!({}));
    assert_eq!(full.status, 500, "{}", full.text);
    assert!(full.text.contains("range is full"), "{}", full.text);
    let outside = create(&server, "outside", json!({"clusterIP": "10.96.0.10"}));
    assert_invalid(&outside, "spec.clusterIPs", "The range of valid IPs is 10.100.0.0/26");
}

#[test]
fn headless_and_external_name_services_get_no_address() {
    let server = Server::start();
    let headless = created(&server, "headless", json!({"clusterIP": "None", "selector": {"app": "db"}}));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "SingleStack");
    // Without a selector its endpoints may be of either family, as Kubernetes assumes.
    let selectorless = created(&server, "selectorless", json!({"clusterIP": "None"}));
    assert_eq!(selectorless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    assert_eq!(selectorless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let external = created(&server, "external", json!({"type": "ExternalName", "externalName": "db.example.com"}));
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(external["spec"].get(field).is_none(), "{field}: {external}");
    }
    let refused = create(
        &server,
        "external-ip",
        json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.0.9"}),
    );
    assert_invalid(&refused, "spec.clusterIPs", "may not be set for ExternalName services");
    let refused = create(&server, "headless-node-port", json!({"type": "NodePort", "clusterIP": "None"}));
    assert_invalid(&refused, "spec.clusterIPs[0]", "may not be set to 'None' for NodePort services");
    let refused = create(&server, "dual", json!({"ipFamilyPolicy": "RequireDualStack"}));
    assert_invalid(&refused, "spec.ipFamilyPolicy", "this cluster is not configured for dual-stack services");
}

#[test]
fn a_requested_cluster_ip_is_honoured_once() {
    let server = Server::start();
    let first = created(&server, "first", json!({"clusterIP": "10.96.0.50"}));
    assert_eq!(first["spec"]["clusterIPs"], json!(["10.96.0.50"]));
    let taken = create(&server, "second", json!({"clusterIP": "10.96.0.50"}));
    assert_invalid(
        &taken,
        "spec.clusterIPs",
        r#"Invalid value: []string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"#,
    );
    assert!(taken.body["message"].as_str().unwrap().starts_with("Service \"second\" is invalid: spec.clusterIPs:"));
    let outside = create(&server, "outside", json!({"clusterIP": "10.0.0.5"}));
    assert_invalid(
        &outside,
        "spec.clusterIPs",
        "the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12",
    );
    let garbage = create(&server, "garbage", json!({"clusterIP": "ten.0.0.5"}));
    assert_invalid(&garbage, "spec.clusterIPs[0]", "must be a valid IP address");
    let v6 = create(&server, "v6", json!({"clusterIP": "fd00::5"}));
    assert_invalid(&v6, "spec.clusterIPs[0]", "IPv6 is not configured on this cluster");
    // Refused creates hold nothing: the second name is free for another address.
    created(&server, "second", json!({}));
}

#[test]
fn node_ports_are_assigned_in_range_unique_across_concurrent_creates() {
    let server = Server::start();
    let spec = json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]});
    let made = create_concurrently(&server, 4, 40, spec);
    let mut seen = HashSet::new();
    for service in &made {
        assert_in_range(cluster_ip(service));
        assert_eq!(service["spec"]["externalTrafficPolicy"], "Cluster");
        for port in node_ports(service) {
            assert!((30000..=32767).contains(&port), "{port}");
            assert!(seen.insert(port), "node port {port} handed out twice");
        }
    }
    assert_eq!(seen.len(), 80);
    // TCP and UDP on one port number share one node port, as Kubernetes allocates them.
    let dns = created(
        &server,
        "dns",
        json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    );
    let ports = node_ports(&dns);
    assert_eq!(ports[0], ports[1]);
    assert!(!seen.contains(&ports[0]));
}

#[test]
fn a_requested_node_port_is_honoured_once() {
    let server = Server::start();
    let first = created(&server, "first", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
    assert_eq!(node_ports(&first), [30080]);
    let taken = create(&server, "second", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
    assert_invalid(&taken, "spec.ports[0].nodePort", "Invalid value: 30080: provided port is already allocated");
    assert!(
        taken.body["message"]
            .as_str()
            .unwrap()
            .contains("spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"),
        "{}",
        taken.text
    );
    // Another port of the same Service, same protocol: a duplicate.
    let twice = create(
        &server,
        "twice",
        json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30081}, {"name": "b", "port": 81, "nodePort": 30081}]}),
    );
    assert_invalid(&twice, "spec.ports[1].nodePort", "Duplicate value: 30081");
    // A LoadBalancer that keeps traffic local gets a health check port too.
    let local = created(&server, "local", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}));
    let health = local["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&health) && health != u64::from(node_ports(&local)[0]), "{local}");
    // One that opts out of node ports gets none, but one asked for is still honoured.
    let opted = created(
        &server,
        "opted-out",
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
               "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30082}]}),
    );
    assert!(opted["spec"]["ports"][0].get("nodePort").is_none(), "{opted}");
    assert_eq!(opted["spec"]["ports"][1]["nodePort"], 30082);
}

#[test]
fn updates_keep_allocations_and_type_changes_release_them() {
    let server = Server::start();
    let url = format!("{}/web", services(&server));
    let web = created(
        &server,
        "web",
        json!({"type": "NodePort", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "nodePort": 30100}, {"name": "admin", "port": 9000}]}),
    );
    let ip = cluster_ip(&web);
    let admin_port = node_ports(&web)[1];

    // A client resubmitting what it created (no clusterIP, no allocated nodePort) changes nothing.
    let mut again = service(
        "web",
        json!({"type": "NodePort", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "nodePort": 30100}, {"name": "admin", "port": 9000}]}),
    );
    let resubmitted = put(&url, &again);
    assert_eq!(resubmitted.status, 200, "{}", resubmitted.text);
    assert_eq!(cluster_ip(&resubmitted.body), ip);
    assert_eq!(node_ports(&resubmitted.body), [30100, admin_port]);
    assert_eq!(resubmitted.body["metadata"]["resourceVersion"], web["metadata"]["resourceVersion"]);

    // clusterIP is immutable.
    again["spec"]["clusterIP"] = json!("10.96.0.77");
    let moved = put(&url, &again);
    assert_invalid(&moved, "spec.clusterIP", "Invalid value: \"10.96.0.77\": field is immutable");

    // To ClusterIP: the node ports go, the address stays, and another Service may take them.
    let cluster = patch(&url, "application/merge-patch+json", &json!({"spec": {"type": "ClusterIP"}}));
    assert_eq!(cluster.status, 200, "{}", cluster.text);
    assert_eq!(cluster_ip(&cluster.body), ip);
    for port in cluster.body["spec"]["ports"].as_array().unwrap() {
        assert!(port.get("nodePort").is_none(), "{}", cluster.text);
    }
    assert!(cluster.body["spec"].get("externalTrafficPolicy").is_none(), "{}", cluster.text);
    let reuse = created(&server, "reuse", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30100}]}));
    assert_eq!(node_ports(&reuse), [30100]);

    // Back to NodePort: new node ports, not the taken one.
    let node_port = patch(&url, "application/merge-patch+json", &json!({"spec": {"type": "NodePort"}}));
    assert_eq!(node_port.status, 200, "{}", node_port.text);
    assert!(!node_ports(&node_port.body).contains(&30100), "{}", node_port.text);

    // To ExternalName the address goes; back, a new one comes.
    let external = patch(
        &url,
        "application/merge-patch+json",
        &json!({"spec": {"type": "ExternalName", "externalName": "web.example.com", "selector": null}}),
    );
    assert_eq!(external.status, 200, "{}", external.text);
    assert!(external.body["spec"].get("clusterIP").is_none(), "{}", external.text);
    let reused = created(&server, "reused-ip", json!({"clusterIP": ip.to_string()}));
    assert_eq!(cluster_ip(&reused), ip);
    let back = patch(
        &url,
        "application/merge-patch+json",
        &json!({"spec": {"type": "ClusterIP", "externalName": null, "selector": {"app": "web"}}}),
    );
    assert_eq!(back.status, 200, "{}", back.text);
    assert_in_range(cluster_ip(&back.body));
    assert_ne!(cluster_ip(&back.body), ip);
}

#[test]
fn deleting_frees_the_address_and_node_ports_and_dry_runs_hold_nothing() {
    let server = Server::start();
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.60", "ports": [{"port": 80, "nodePort": 30090}]});
    let tried = call(
        "POST",
        &format!("{}?dryRun=All", services(&server)),
        Some("application/json"),
        Some(&service("dry", spec.clone()).to_string()),
        &[],
    );
    assert_eq!(tried.status, 201, "{}", tried.text);
    assert_eq!(tried.body["spec"]["clusterIP"], "10.96.0.60");
    created(&server, "owner", spec.clone());
    assert_eq!(create(&server, "rival", spec.clone()).status, 422);
    let gone = delete(&format!("{}/owner", services(&server)));
    assert_eq!(gone.status, 200, "{}", gone.text);
    let rival = created(&server, "rival", spec);
    assert_eq!(cluster_ip(&rival), Ipv4Addr::new(10, 96, 0, 60));
    assert_eq!(node_ports(&rival), [30090]);
}

#[test]
fn allocations_survive_a_restart_on_a_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let store = Arc::new(MemoryStore::open(dir.path(), DEFAULT_HISTORY).expect("the data directory opens"));
        Server::with(store, Options::default())
    };
    let mut before = Vec::new();
    {
        let server = start();
        before.extend(create_concurrently(&server, 2, 20, json!({"type": "NodePort"})));
        before.push(created(&server, "pinned", json!({"clusterIP": "10.96.0.70"})));
    }
    let server = start();
    let taken = create(&server, "pinned-again", json!({"clusterIP": "10.96.0.70"}));
    assert_invalid(&taken, "spec.clusterIPs", "provided IP is already allocated");
    let old_port = node_ports(&before[0])[0];
    let taken =
        create(&server, "port-again", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": old_port}]}));
    assert_invalid(&taken, "spec.ports[0].nodePort", "provided port is already allocated");
    let mut ips: HashSet<Ipv4Addr> = before.iter().map(cluster_ip).collect();
    let mut ports: HashSet<u16> =
        before.iter().filter(|s| s["spec"]["type"] == "NodePort").flat_map(node_ports).collect();
    for i in 0..20 {
        let service = created(&server, &format!("after-{i}"), json!({"type": "NodePort"}));
        assert!(ips.insert(cluster_ip(&service)), "{} was held before the restart", cluster_ip(&service));
        for port in node_ports(&service) {
            assert!(ports.insert(port), "{port} was held before the restart");
        }
    }
}

#[test]
fn kubectl_tables_show_the_cluster_ip_and_node_ports() {
    let server = Server::start();
    let web = created(&server, "web", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30200}]}));
    let table =
        call("GET", &services(&server), None, None, &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")]);
    assert_eq!(table.status, 200, "{}", table.text);
    let columns: Vec<&str> =
        table.body["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    let row = &table.body["rows"][0]["cells"];
    let cell = |name: &str| row[columns.iter().position(|c| *c == name).unwrap()].clone();
    assert_eq!(cell("Cluster-IP"), json!(cluster_ip(&web).to_string()));
    assert_eq!(cell("Port(s)"), "80:30200/TCP");
}

/// Two API servers on one store (`Options::shared_store`, as over etcd with
/// `--api-servers 2`): each allocates against what the other wrote, not against an index
/// of its own writes, so an address the other took is refused, and a small range filled
/// from both at once holds no address twice.
#[test]
fn api_servers_sharing_a_store_never_hand_out_the_same_address() {
    let store: Arc<dyn kubeyard_harness::store::Store> = Arc::new(MemoryStore::new());
    let options = || Options { service_cidr: "10.100.0.0/26".into(), shared_store: true, ..Options::default() };
    let (a, b) = (Server::with(Arc::clone(&store), options()), Server::with(Arc::clone(&store), options()));
    // The first server has read the Services (its index is built) before the second writes.
    created(&a, "warm", json!({}));
    created(
        &b,
        "held",
        json!({"clusterIP": "10.100.0.10", "type": "NodePort", "ports": [{"port": 80, "nodePort": 30010}]}),
    );
    let taken = create(&a, "again", json!({"clusterIP": "10.100.0.10"}));
    assert_invalid(
        &taken,
        "spec.clusterIPs",
        r#"Invalid value: []string{"10.100.0.10"}: failed to allocate IP 10.100.0.10: provided IP is already allocated"#,
    );
    let port = create(&a, "port", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30010}]}));
    assert_eq!(port.status, 422, "{}", port.text);
    assert!(port.text.contains("provided port is already allocated"), "{}", port.text);
    // Both fill the rest of the range at once: 62 usable addresses, 3 taken.
    let from_a = std::thread::spawn({
        let url = services(&a);
        move || (0..29).map(|i| post(&url, &service(&format!("a-{i}"), json!({}))).status).collect::<Vec<_>>()
    });
    let from_b: Vec<u16> = (0..30).map(|i| create(&b, &format!("b-{i}"), json!({})).status).collect();
    let from_a = from_a.join().unwrap();
    assert!(from_a.iter().chain(&from_b).all(|s| *s == 201), "{from_a:?} {from_b:?}");
    let listed = get(&services(&a)).body;
    let items = listed["items"].as_array().unwrap();
    let ips: HashSet<Ipv4Addr> = items.iter().map(cluster_ip).collect();
    assert_eq!((items.len(), ips.len()), (61, 61));
    assert_eq!(create(&b, "one-too-many", json!({})).status, 500);
}
