//! Secure by default, on a container cluster: the API server is the only door. It serves
//! HTTPS and wants the cluster's token; etcd is not published and answers only the API
//! server's client certificate (not the host, not a node, not a certificate of another
//! CA); a node agent's log endpoint wants the token. `kubeyard down --all` removes only
//! the user's clusters, and `kubeyard up --containers` stops when its cluster is removed.

use crate::containers::{boot, http_get};
use crate::support::eventually;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kubeyard_harness::apiserver::tls::{Authority, Usage};
use kubeyard_harness::containers::cluster::{self, CLUSTER_LABEL, USER_LABEL, Whose};
use kubeyard_harness::containers::docker::Docker;
use kubeyard_harness::store::etcd::{EtcdStore, EtcdTls};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);
const KUBEYARD: &str = env!("CARGO_BIN_EXE_kubeyard");

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_is_the_only_door_of_a_container_cluster() {
    let cluster = boot(1).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();

    // The API: HTTPS with the token, which the kubeconfig carries with the CA.
    assert!(cluster.url().starts_with("https://127.0.0.1:"), "{}", cluster.url());
    let text = cluster.kubeconfig();
    assert!(text.contains("certificate-authority-data:") && text.contains("token:"), "{text}");
    let (ok, out) = kubectl(&kubeconfig, &["get", "secrets", "-A"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&kubeconfig, &["--token=not-the-token", "get", "secrets", "-A"]);
    assert!(!ok && out.contains("Unauthorized"), "{out}");
    let plain = http_get(&cluster.url().replacen("https://", "http://", 1));
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // etcd: not published on the host, and refusing the host without the API server's
    // certificate: plain HTTP, and a certificate of a CA of one's own.
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let etcd = docker.inspect_container(&format!("kubeyard-{}-etcd", cluster.id()), None).await.unwrap();
    let bindings = etcd.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
    assert!(bindings.is_empty(), "etcd publishes {bindings:?}");
    let address = cluster.etcd_address();
    let plain = EtcdStore::connect(&format!("http://{address}")).await;
    assert!(plain.is_err(), "etcd answered plain HTTP from the host");
    let own = Authority::new("someone-else").unwrap();
    let forged = own.issue("intruder", &[], &[Usage::Client]).unwrap();
    let tls = EtcdTls {
        ca_pem: cluster.etcd_ca_pem().as_bytes().to_vec(),
        cert_pem: forged.cert_pem.into_bytes(),
        key_pem: forged.key_pem.into_bytes(),
    };
    let intruder = EtcdStore::connect_with(&format!("https://{address}"), Some(&tls)).await;
    assert!(intruder.is_err(), "etcd answered a certificate of another CA");

    // A real pod, to ask from inside the cluster and to read the logs of.
    let client = cluster.client().unwrap();
    let pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
        "spec": {"containers": [{"name": "echo", "image": "kubeyard/echo", "ports": [{"containerPort": 9000}]}]}
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the echo pod answering", WITHIN, || async {
        let ip = pods.get("echo").await.ok().and_then(|p| p.status).and_then(|s| s.pod_ip);
        ip.is_some_and(|ip| http_get(&format!("http://{ip}:9000/")).is_ok())
    })
    .await;
    let ip = pods.get("echo").await.unwrap().status.and_then(|s| s.pod_ip).unwrap();
    // From a node (a pod on it), etcd does not answer either: it speaks only TLS.
    let [_, b, _, _] = match address.ip() {
        std::net::IpAddr::V4(v4) => v4.octets(),
        std::net::IpAddr::V6(_) => unreachable!("the cluster network is IPv4"),
    };
    let from_node = http_get(&format!("http://{ip}:9000/fetch?url=http://10.{b}.0.2:2379/version")).unwrap();
    assert!(!from_node.contains("etcdserver"), "etcd answered a node: {from_node}");

    // The node's log endpoint: 401 without the token, the logs with it; kubectl logs goes
    // through the API server, which sends it.
    let node = cluster.nodes()[0].1;
    let logs = format!("http://{node}:10250/containerLogs/default/echo/echo");
    let refused = http_get(&logs).unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(3))).build().new_agent();
    let token = cluster.token().unwrap();
    let mut answer = agent.get(&logs).header("Authorization", format!("Bearer {token}")).call().unwrap();
    let body = answer.body_mut().read_to_string().unwrap();
    assert!(body.contains("listening on"), "{body}");
    let (ok, out) = kubectl(&kubeconfig, &["logs", "echo"]);
    assert!(ok && out.contains("listening on"), "{out}");
    cluster.remove().await.unwrap();
}

/// A network labelled as a cluster of `user`'s, made directly (no cluster needs booting).
async fn labelled_network(docker: &bollard::Docker, cluster: &str, user: &str) -> String {
    let name = format!("kubeyard-test-{cluster}");
    let labels =
        HashMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string()), (USER_LABEL.to_string(), user.to_string())]);
    let request = bollard::models::NetworkCreateRequest {
        name: name.clone(),
        labels: Some(labels),
        ..bollard::models::NetworkCreateRequest::default()
    };
    docker.create_network(request).await.unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_all_removes_only_the_users_clusters() {
    // Made-up users: the real one's clusters (other tests') are left alone, and
    // `Whose::Everyone` is not run here for the same reason.
    let engine = bollard::Docker::connect_with_local_defaults().unwrap();
    let docker = Docker::connect().await.unwrap();
    let (me, other) = ("4000000001", "4000000002");
    let suffix = format!("{:06x}", std::process::id());
    let mine = labelled_network(&engine, &format!("mine-{suffix}"), me).await;
    let theirs = labelled_network(&engine, &format!("theirs-{suffix}"), other).await;
    cluster::remove_all(&docker, &Whose::User(me.to_string())).await.unwrap();
    assert!(!docker.network_exists(&mine).await.unwrap(), "the user's cluster stays");
    assert!(docker.network_exists(&theirs).await.unwrap(), "another user's cluster went");
    cluster::remove_all(&docker, &Whose::User(other.to_string())).await.unwrap();
    assert!(!docker.network_exists(&theirs).await.unwrap());

    // The flags: one of an id, --all, --everyone.
    let output = Command::new(KUBEYARD).args(["down", "--all", "--everyone"]).output().unwrap();
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
    let output = Command::new(KUBEYARD).args(["down"]).output().unwrap();
    assert!(!output.status.success());
    let help = Command::new(KUBEYARD).args(["down", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("this user started") && help.contains("whoever started it"), "{help}");
}

#[test]
fn up_containers_stops_when_its_cluster_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let mut child = Command::new(KUBEYARD)
        .args(["up", "--containers", "--nodes", "1", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env("KUBEYARD_BINARY", KUBEYARD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut id = None;
    while !seen.iter().any(|l| l.contains("kubeconfig written")) {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(90)) else {
            let _ = child.kill();
            panic!("up never got ready: {seen:#?}");
        };
        if let Some(rest) = line.split("starting cluster ").nth(1) {
            id = rest.split(':').next().map(str::to_string);
        }
        seen.push(line);
        assert!(started.elapsed() < Duration::from_secs(120), "{seen:#?}");
    }
    let id = id.unwrap_or_else(|| panic!("no cluster id: {seen:#?}"));
    // The kubeconfig: for its owner only, with the token and the CA.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains("server: https://127.0.0.1:") && text.contains("token:"), "{text}");

    let down = Command::new(KUBEYARD).args(["down", &id]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let waited = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if waited.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("up kept running after its cluster was removed: {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    seen.extend(lines.try_iter());
    assert!(!status.success(), "{seen:#?}");
    let message = format!("kubeyard: cluster {id} was removed (its containers are gone); stopping");
    assert!(seen.iter().any(|l| l.contains(&message)), "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_http_container_cluster_serves_plain_http_and_keeps_etcd_closed() {
    let mut spec = crate::containers::spec(1);
    spec.insecure_http = true;
    let cluster = kubeyard_harness::containers::ContainerCluster::boot(&spec, &|step: &str| eprintln!("{step}"))
        .await
        .expect("the cluster boots");
    assert!(cluster.url().starts_with("http://127.0.0.1:") && cluster.token().is_none(), "{}", cluster.url());
    let text = cluster.kubeconfig();
    assert!(!text.contains("token:") && !text.contains("certificate-authority"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, text).unwrap();
    let (ok, out) = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(ok && out.contains("node-1"), "{out}");
    let plain = EtcdStore::connect(&format!("http://{}", cluster.etcd_address())).await;
    assert!(plain.is_err(), "etcd answered plain HTTP from the host");
    cluster.remove().await.unwrap();
}

/// `kubeyard apiserver` on a non-loopback address without `--token` warns; with one, or
/// on loopback, it does not.
#[test]
fn an_api_server_open_beyond_loopback_without_a_token_warns() {
    let warning = "without --token: anyone who can reach it can read every Secret";
    for (args, warns) in [
        (&["--listen", "0.0.0.0:0"][..], true),
        (&["--listen", "0.0.0.0:0", "--token", "t0ken"][..], false),
        (&["--listen", "127.0.0.1:0"][..], false),
    ] {
        let mut child = Command::new(KUBEYARD)
            .arg("apiserver")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
            let listening = line.contains("API server listening on");
            seen.push(line);
            if listening {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen.iter().any(|l| l.contains(warning)), warns, "{args:?}: {seen:#?}");
    }
}
