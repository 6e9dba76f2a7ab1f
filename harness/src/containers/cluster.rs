//! A cluster of containers on a private Docker network: etcd, the API server (its port
//! published on the host's loopback), the scheduler, the controller manager, and one
//! container per node running the node agent. Every address is fixed by kubeyard, from a
//! /16 picked for the cluster:
//!
//! ```text
//! 10.B.0.1        the network's gateway (the host)
//! 10.B.0.2        etcd                      10.B.0.3   API server (:6443)
//! 10.B.0.4        scheduler                 10.B.0.5   controller manager
//! 10.B.0.(10+i)   node i                    10.B.i.0/24 node i's pods
//! 10.B.0.(240+m)  etcd member m (m ≥ 1)     10.B.0.(230+a) API server a (a ≥ 1)
//! 10.B.0.9        load balancer (:6443), with several API servers
//! ```
//!
//! With several etcd members (`etcd_members`), etcd is a cluster of them (peers over TLS
//! with etcd's CA), and every API server is given every member's URL. With several API
//! servers (`api_servers`), a load balancer (`kubeyard loadbalancer`, as kind puts
//! HAProxy in front of an HA control plane) holds the published port and the address the
//! components are given, and passes each connection to a live API server.
//!
//! Containers and the network carry the labels `kubeyard.dev/cluster=<id>` and
//! `kubeyard.dev/user=<uid>`; dropping the cluster removes them, and `kubeyard down --all`
//! removes what a user's killed runs left.
//!
//! Secure by default: the API server serves HTTPS with a certificate of a CA made at boot
//! and wants a token (32 random bytes), which the host's kubeconfig and every component
//! carry; etcd is not published and serves only clients with a certificate of another CA
//! made at boot, which only the API server holds (as kubeadm sets etcd up: the host is on
//! every Docker bridge, so a network of its own would not keep etcd from the host's other
//! users); the node agents' log endpoints want the token. Credentials reach the
//! containers as files (`/etc/kubeyard`), never on a command line, which `ps` shows every
//! local user.

use super::docker::{self, ContainerSpec, Docker};
use super::image::{self, Image};
use crate::apiserver::tls::{self, Authority, Issued, Usage};
use crate::kubelet::node_ready;
use crate::store::etcd::{EtcdStore, EtcdTls};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The label every container and network of a cluster carries.
pub const CLUSTER_LABEL: &str = "kubeyard.dev/cluster";
/// The label with the id of the user who started the cluster (`kubeyard down --all`
/// removes only one's own).
pub const USER_LABEL: &str = "kubeyard.dev/user";
/// Where the credentials are in a container.
const SECRETS: &str = "/etc/kubeyard";
const ROLE_LABEL: &str = "kubeyard.dev/role";
const API_PORT: u16 = 6443;
/// Nodes a cluster can have: one /24 of pods each, and an address in 10.B.0.0/24.
pub const MAX_NODES: usize = 200;
/// etcd members a cluster can have (an odd number keeps a majority after a loss).
pub const MAX_ETCD_MEMBERS: usize = 5;
/// API servers a cluster can have.
pub const MAX_API_SERVERS: usize = 3;
/// The load balancer's address, with several API servers.
const LOAD_BALANCER_HOST: u8 = 9;

/// The host part of etcd member `m`'s address: the first where a single etcd is.
fn etcd_host(member: usize) -> u8 {
    if member == 0 { 2 } else { 240 + member as u8 }
}

/// The host part of API server `a`'s address.
fn api_host(server: usize) -> u8 {
    if server == 0 { 3 } else { 230 + server as u8 }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error("no free subnet for the cluster network: every 10.B.0.0/16 tried overlaps another network")]
    NoSubnet,
    #[error("{0}")]
    Invalid(String),
    #[error("the cluster did not get ready in {seconds}s: {what}\n{logs}")]
    NotReady { seconds: u64, what: String, logs: String },
    #[error("there is no node {node}: the nodes are {}", known.join(", "))]
    UnknownNode { node: String, known: Vec<String> },
    #[error("{0}")]
    Credentials(String),
}

/// One node to run.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub capacity: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` each.
    pub taints: Vec<String>,
}

impl NodeSpec {
    pub fn new(name: &str) -> NodeSpec {
        NodeSpec { name: name.into(), capacity: BTreeMap::new(), labels: BTreeMap::new(), taints: Vec::new() }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeSpec>,
    /// Seeds the scheduler's tie-breaking and the simulated pods' delays.
    pub seed: u64,
    /// The etcd binary to put in the etcd image [default: `etcd` on the PATH].
    pub etcd_binary: Option<PathBuf>,
    /// The kubeyard binary to put in the kubeyard image [default: this one, if it is
    /// `kubeyard`, else `KUBEYARD_BINARY`, else `kubeyard` on the PATH].
    pub kubeyard_binary: Option<PathBuf>,
    /// A node whose lease is older than this goes Unknown (`--node-monitor-grace-period`,
    /// 40 s in Kubernetes); nodes renew their leases four times within it.
    pub node_grace: Duration,
    /// Pods whose images the engine does not have are simulated instead of failing to
    /// pull (`kubeyard up --containers --simulate-absent-images`; a Test's
    /// `cluster.simulateAbsentImages`).
    pub simulate_absent_images: bool,
    /// Serve the API over plain HTTP with no token (`kubeyard up --insecure-http`): anyone
    /// who reaches the published port can read every Secret. etcd keeps its certificates.
    pub insecure_http: bool,
    /// How long pods stay on a node that is not ready or unreachable before they are
    /// evicted, unless they say (the API server's `--default-*-toleration-seconds`, 300).
    pub default_toleration_seconds: u64,
    /// The Kubernetes version the API server serves (`/version`, schemas); none: the latest.
    pub kubernetes_version: Option<String>,
    /// Who may do what (`--authorization`).
    pub authorization: crate::apiserver::authorization::Mode,
    /// etcd's members (`kubeyard up --containers --etcd-members 3`; a Test's
    /// `cluster.etcdMembers`): 1 to `MAX_ETCD_MEMBERS`.
    pub etcd_members: usize,
    /// API servers over the same etcd, behind a load balancer (`--api-servers 2`).
    pub api_servers: usize,
}

impl ClusterSpec {
    /// `count` nodes named `node-1`... with the node agent's default capacity.
    pub fn with_nodes(count: usize) -> ClusterSpec {
        ClusterSpec {
            nodes: (1..=count).map(|i| NodeSpec::new(&format!("node-{i}"))).collect(),
            seed: 0,
            etcd_binary: None,
            kubeyard_binary: None,
            node_grace: crate::controllers::node_lifecycle::DEFAULT_GRACE,
            simulate_absent_images: false,
            insecure_http: false,
            default_toleration_seconds: 300,
            kubernetes_version: None,
            authorization: crate::apiserver::authorization::Mode::default(),
            etcd_members: 1,
            api_servers: 1,
        }
    }
}

/// What boot reports as it goes.
pub trait Progress: Send + Sync {
    fn step(&self, message: &str);
}

impl<F: Fn(&str) + Send + Sync> Progress for F {
    fn step(&self, message: &str) {
        self(message)
    }
}

#[derive(Debug, Clone)]
struct NodeSlot {
    name: String,
    container: String,
    ip: Ipv4Addr,
}

/// What a cluster's parts prove themselves with, made at boot: the API's CA, serving
/// certificate and token (none with `insecure_http`), etcd's CA, serving certificate and
/// the API server's client certificate for it.
struct Credentials {
    token: Option<String>,
    /// The API server's CA, PEM, and its serving certificate (for the host's loopback and
    /// its address on the cluster network).
    api: Option<(String, Issued)>,
    etcd_ca: String,
    etcd_server: Issued,
    etcd_client: Issued,
    /// The key service account tokens are signed with (PEM): the API server's across its
    /// restarts, so pods' tokens stay good.
    service_account_key: String,
}

impl Credentials {
    /// `api_addresses`: every address clients may reach an API server at (each server's
    /// own, the load balancer's); `etcd_addresses`: every member's.
    fn make(
        api_addresses: &[Ipv4Addr],
        etcd_addresses: &[Ipv4Addr],
        insecure_http: bool,
    ) -> Result<Credentials, Error> {
        let api = if insecure_http {
            None
        } else {
            let ca = Authority::new("kubeyard-ca").map_err(Error::Credentials)?;
            // Pods reach it through the `kubernetes` Service, by its names and cluster IP.
            let mut names: Vec<String> = api_addresses.iter().map(Ipv4Addr::to_string).collect();
            names.push("apiserver".into());
            names.extend(crate::apiserver::kubernetes_service::serving_names(
                crate::apiserver::allocate::DEFAULT_SERVICE_CIDR,
            ));
            let serving = tls::serving(&ca, &names).map_err(Error::Credentials)?;
            Some((ca.pem.clone(), serving))
        };
        let token = if insecure_http { None } else { Some(tls::token().map_err(Error::Credentials)?) };
        let etcd = Authority::new("kubeyard-etcd-ca").map_err(Error::Credentials)?;
        // One certificate for every member: each serves clients and its peers with it, and
        // is a client of its peers.
        let mut etcd_names: Vec<String> = etcd_addresses.iter().map(Ipv4Addr::to_string).collect();
        etcd_names.push("etcd".into());
        let etcd_server = tls::serving_and_client(&etcd, "etcd", &etcd_names).map_err(Error::Credentials)?;
        let etcd_client =
            etcd.issue("kubeyard-apiserver-etcd-client", &[], &[Usage::Client]).map_err(Error::Credentials)?;
        let service_account_key = crate::apiserver::tokens::Signer::generate_pem().map_err(Error::Credentials)?;
        Ok(Credentials { token, api, etcd_ca: etcd.pem.clone(), etcd_server, etcd_client, service_account_key })
    }

    fn etcd_tls(&self) -> EtcdTls {
        EtcdTls {
            ca_pem: self.etcd_ca.clone().into_bytes(),
            cert_pem: self.etcd_client.cert_pem.clone().into_bytes(),
            key_pem: self.etcd_client.key_pem.clone().into_bytes(),
        }
    }

    /// What a client of the API server in a container is given: the CA and the token.
    fn for_clients(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        if let Some((ca, _)) = &self.api {
            files.push((format!("{SECRETS}/ca.crt"), ca.clone().into_bytes()));
        }
        if let Some(token) = &self.token {
            files.push((format!("{SECRETS}/token"), token.clone().into_bytes()));
        }
        files
    }

    /// Flags naming those files.
    fn client_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.api.is_some() {
            flags.push(format!("--certificate-authority={SECRETS}/ca.crt"));
        }
        if self.token.is_some() {
            flags.push(format!("--token-file={SECRETS}/token"));
        }
        flags
    }
}

/// The user running this process, as the id `kubeyard.dev/user` holds.
pub fn current_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }.to_string()
}

pub struct ContainerCluster {
    docker: Docker,
    id: String,
    network: String,
    /// The B of 10.B.0.0/16.
    octet: u8,
    /// The API server's port on the host's loopback: fixed at creation, so a restarted
    /// API server container is found where it was.
    api_port: u16,
    url: String,
    nodes: Vec<NodeSlot>,
    credentials: Credentials,
    removed: bool,
    etcd_members: usize,
    api_servers: usize,
}

fn container_name(id: &str, role: &str) -> String {
    format!("kubeyard-{id}-{role}")
}

/// A random id for a cluster: six hex digits.
fn new_id() -> String {
    format!("{:06x}", fastrand::u32(..0x100_0000))
}

impl ContainerCluster {
    /// Builds the images if they changed, then starts every container at once (each
    /// component waits for the one it needs) and returns when every node is Ready.
    pub async fn boot(spec: &ClusterSpec, progress: &dyn Progress) -> Result<ContainerCluster, Error> {
        if spec.nodes.is_empty() || spec.nodes.len() > MAX_NODES {
            return Err(Error::Invalid(format!("a container cluster has 1 to {MAX_NODES} nodes")));
        }
        if !(1..=MAX_ETCD_MEMBERS).contains(&spec.etcd_members) {
            return Err(Error::Invalid(format!(
                "a container cluster has 1 to {MAX_ETCD_MEMBERS} etcd members, not {}",
                spec.etcd_members
            )));
        }
        if !(1..=MAX_API_SERVERS).contains(&spec.api_servers) {
            return Err(Error::Invalid(format!(
                "a container cluster has 1 to {MAX_API_SERVERS} API servers, not {}",
                spec.api_servers
            )));
        }
        let started = Instant::now();
        let docker = Docker::connect().await?;
        let (kubeyard, etcd) =
            ensure_images(&docker, spec.kubeyard_binary.as_deref(), spec.etcd_binary.as_deref(), progress).await?;

        let id = new_id();
        let network = format!("kubeyard-{id}");
        let labels = HashMap::from([(CLUSTER_LABEL.to_string(), id.clone()), (USER_LABEL.to_string(), current_user())]);
        let octet = create_network(&docker, &network, &labels).await?;
        let address = |host: u8| Ipv4Addr::new(10, octet, 0, host);
        let mut api_addresses: Vec<Ipv4Addr> = (0..spec.api_servers).map(|a| address(api_host(a))).collect();
        if spec.api_servers > 1 {
            api_addresses.push(address(LOAD_BALANCER_HOST));
        }
        let etcd_addresses: Vec<Ipv4Addr> = (0..spec.etcd_members).map(|m| address(etcd_host(m))).collect();
        let credentials = match Credentials::make(&api_addresses, &etcd_addresses, spec.insecure_http) {
            Ok(credentials) => credentials,
            Err(error) => {
                let _ = docker.remove_network(&network).await;
                return Err(error);
            }
        };
        let nodes: Vec<NodeSlot> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| NodeSlot {
                name: node.name.clone(),
                container: container_name(&id, &node.name),
                ip: Ipv4Addr::new(10, octet, 0, 10 + i as u8 + 1),
            })
            .collect();
        // From here on, a failure leaves containers behind: the cluster removes them on drop.
        let api_port = free_port()?;
        let mut cluster = ContainerCluster {
            docker: docker.clone(),
            id: id.clone(),
            network,
            octet,
            api_port,
            url: String::new(),
            nodes,
            credentials,
            removed: false,
            etcd_members: spec.etcd_members,
            api_servers: spec.api_servers,
        };
        let counted = |count: usize, one: &str, many: &str| {
            if count == 1 { one.to_string() } else { format!("{count} {many}") }
        };
        progress.step(&format!(
            "starting cluster {id}: {}, {}, scheduler, controller manager, {} node(s)",
            counted(spec.etcd_members, "etcd", "etcd members"),
            counted(spec.api_servers, "API server", "API servers behind a load balancer"),
            spec.nodes.len()
        ));
        let specs = cluster.container_specs(spec, &kubeyard.tag, &etcd.tag);
        let runs = specs.iter().map(|s| docker.run(s));
        for result in futures_util::future::join_all(runs).await {
            result?;
        }
        let scheme = if cluster.credentials.api.is_some() { "https" } else { "http" };
        cluster.url = format!("{scheme}://127.0.0.1:{}", cluster.api_port);
        cluster.wait_ready(Duration::from_secs(60)).await?;
        progress.step(&format!("cluster {id} ready in {:.1?}: API server at {}", started.elapsed(), cluster.url));
        Ok(cluster)
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, host)
    }

    /// The role (and container name's end) of etcd member `m`: `etcd` when it is alone.
    fn etcd_role(&self, member: usize) -> String {
        if self.etcd_members == 1 { "etcd".into() } else { format!("etcd-{member}") }
    }

    /// The role of API server `a`: `apiserver` when it is alone.
    fn api_role(&self, server: usize) -> String {
        if self.api_servers == 1 { "apiserver".into() } else { format!("apiserver-{server}") }
    }

    /// The roles of the control plane's containers, each named `kubeyard-<id>-<role>`.
    fn control_plane(&self) -> Vec<String> {
        let mut roles: Vec<String> = (0..self.etcd_members).map(|m| self.etcd_role(m)).collect();
        roles.extend((0..self.api_servers).map(|a| self.api_role(a)));
        if self.api_servers > 1 {
            roles.push("loadbalancer".into());
        }
        roles.extend(["scheduler", "controller-manager"].map(String::from));
        roles
    }

    fn etcd_url(&self, member: usize) -> String {
        format!("https://{}:2379", self.address(etcd_host(member)))
    }

    fn container_specs(&self, spec: &ClusterSpec, kubeyard: &str, etcd: &str) -> Vec<ContainerSpec> {
        let user = current_user();
        let role = |role: &str| {
            HashMap::from([
                (CLUSTER_LABEL.to_string(), self.id.clone()),
                (ROLE_LABEL.to_string(), role.to_string()),
                (USER_LABEL.to_string(), user.clone()),
            ])
        };
        let base = |name: &str, image: &str, host: u8, cmd: Vec<String>| ContainerSpec {
            name: container_name(&self.id, name),
            image: image.to_string(),
            cmd,
            labels: role(name),
            network: self.network.clone(),
            ip: self.address(host).to_string(),
            hostname: Some(name.to_string()),
            restart_on_failure: true,
            ..ContainerSpec::default()
        };
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let credentials = &self.credentials;
        let etcd_urls = (0..self.etcd_members).map(|m| self.etcd_url(m)).collect::<Vec<_>>().join(",");
        let scheme = if credentials.api.is_some() { "https" } else { "http" };
        // The components' way to the API: the load balancer when there are several.
        let front = if self.api_servers > 1 { LOAD_BALANCER_HOST } else { api_host(0) };
        let server = format!("{scheme}://{}:{API_PORT}", self.address(front));
        let file = |name: &str, content: &str| (format!("{SECRETS}/{name}"), content.as_bytes().to_vec());
        // etcd serves only clients with a certificate of its CA: the API server's; its
        // members know each other by certificates of that CA too.
        let peers = (0..self.etcd_members)
            .map(|m| format!("{}=https://{}:2380", self.etcd_role(m), self.address(etcd_host(m))))
            .collect::<Vec<_>>()
            .join(",");
        let etcd_specs = (0..self.etcd_members).map(|member| {
            let role = self.etcd_role(member);
            let mut cmd = strings(&[
                &format!("--name={role}"),
                "--data-dir=/var/lib/etcd",
                "--listen-client-urls=https://0.0.0.0:2379",
                &format!("--advertise-client-urls={}", self.etcd_url(member)),
                "--client-cert-auth",
                &format!("--trusted-ca-file={SECRETS}/etcd-ca.crt"),
                &format!("--cert-file={SECRETS}/etcd.crt"),
                &format!("--key-file={SECRETS}/etcd.key"),
            ]);
            if self.etcd_members > 1 {
                cmd.extend(strings(&[
                    "--listen-peer-urls=https://0.0.0.0:2380",
                    &format!("--initial-advertise-peer-urls=https://{}:2380", self.address(etcd_host(member))),
                    &format!("--initial-cluster={peers}"),
                    &format!("--initial-cluster-token=kubeyard-{}", self.id),
                    "--initial-cluster-state=new",
                    "--peer-client-cert-auth",
                    &format!("--peer-trusted-ca-file={SECRETS}/etcd-ca.crt"),
                    &format!("--peer-cert-file={SECRETS}/etcd.crt"),
                    &format!("--peer-key-file={SECRETS}/etcd.key"),
                ]));
            }
            ContainerSpec {
                files: vec![
                    file("etcd-ca.crt", &credentials.etcd_ca),
                    file("etcd.crt", &credentials.etcd_server.cert_pem),
                    file("etcd.key", &credentials.etcd_server.key_pem),
                ],
                ..base(&role, etcd, etcd_host(member), cmd)
            }
        });
        let mut specs: Vec<ContainerSpec> = etcd_specs.collect();
        let mut apiserver_cmd = strings(&[
            "apiserver",
            &format!("--listen=0.0.0.0:{API_PORT}"),
            &format!("--etcd={etcd_urls}"),
            &format!("--etcd-cafile={SECRETS}/etcd-ca.crt"),
            &format!("--etcd-certfile={SECRETS}/etcd-client.crt"),
            &format!("--etcd-keyfile={SECRETS}/etcd-client.key"),
            &format!("--service-account-signing-key-file={SECRETS}/sa.key"),
            &format!("--default-not-ready-toleration-seconds={}", spec.default_toleration_seconds),
            &format!("--default-unreachable-toleration-seconds={}", spec.default_toleration_seconds),
        ]);
        if let Some(version) = &spec.kubernetes_version {
            apiserver_cmd.push(format!("--kubernetes-version={version}"));
        }
        if self.api_servers > 1 {
            apiserver_cmd.push(format!("--apiserver-count={}", self.api_servers));
        }
        if spec.authorization == crate::apiserver::authorization::Mode::Rbac {
            apiserver_cmd.push("--authorization=rbac".into());
        }
        let mut apiserver_files = vec![
            file("etcd-ca.crt", &credentials.etcd_ca),
            file("etcd-client.crt", &credentials.etcd_client.cert_pem),
            file("etcd-client.key", &credentials.etcd_client.key_pem),
            file("sa.key", &credentials.service_account_key),
        ];
        if let Some((ca, serving)) = &credentials.api {
            // The chain, as Kubernetes' --tls-cert-file holds it: clients trust its CA.
            apiserver_files.push(file("apiserver.crt", &format!("{}{ca}", serving.cert_pem)));
            apiserver_files.push(file("apiserver.key", &serving.key_pem));
            apiserver_cmd.push(format!("--tls-cert-file={SECRETS}/apiserver.crt"));
            apiserver_cmd.push(format!("--tls-private-key-file={SECRETS}/apiserver.key"));
        }
        if let Some(token) = &credentials.token {
            apiserver_files.push(file("token", token));
            apiserver_cmd.push(format!("--token-file={SECRETS}/token"));
        }
        let client = |name: &str, host: u8, mut cmd: Vec<String>| {
            cmd.extend(credentials.client_flags());
            ContainerSpec { files: credentials.for_clients(), ..base(name, kubeyard, host, cmd) }
        };
        for server_index in 0..self.api_servers {
            let mut cmd = apiserver_cmd.clone();
            cmd.push(format!("--advertise-address={}", self.address(api_host(server_index))));
            specs.push(ContainerSpec {
                // One server is published itself; several are reached through the balancer.
                publish: (self.api_servers == 1).then_some((API_PORT, self.api_port)),
                files: apiserver_files.clone(),
                ..base(&self.api_role(server_index), kubeyard, api_host(server_index), cmd)
            });
        }
        if self.api_servers > 1 {
            let mut cmd = strings(&["loadbalancer", &format!("--listen=0.0.0.0:{API_PORT}")]);
            cmd.extend((0..self.api_servers).map(|a| format!("--backend={}:{API_PORT}", self.address(api_host(a)))));
            specs.push(ContainerSpec {
                publish: Some((API_PORT, self.api_port)),
                ..base("loadbalancer", kubeyard, LOAD_BALANCER_HOST, cmd)
            });
        }
        specs.extend([
            client(
                "scheduler",
                4,
                strings(&["scheduler", &format!("--server={server}"), &format!("--seed={}", spec.seed)]),
            ),
            client(
                "controller-manager",
                5,
                strings(&[
                    "controller-manager",
                    &format!("--server={server}"),
                    &format!("--node-monitor-grace-period={}", spec.node_grace.as_secs().max(2)),
                ]),
            ),
        ]);
        for (slot, node) in self.nodes.iter().zip(&spec.nodes) {
            let index = slot.ip.octets()[3] - 10;
            let mut cmd = strings(&[
                "kubelet",
                &format!("--server={server}"),
                &format!("--node={}", node.name),
                &format!("--address={}", slot.ip),
                &format!("--pod-cidr=10.{}.{index}.0/24", self.octet),
                &format!("--seed={}", spec.seed),
                &format!(
                    "--lease-renew-interval={}",
                    crate::controllers::node_lifecycle::renew_interval(spec.node_grace).as_secs()
                ),
            ]);
            if !node.capacity.is_empty() {
                let list: Vec<String> = node.capacity.iter().map(|(k, v)| format!("{k}={v}")).collect();
                cmd.push(format!("--capacity={}", list.join(",")));
            }
            if !node.labels.is_empty() {
                let list: Vec<String> = node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                cmd.push(format!("--labels={}", list.join(",")));
            }
            if !node.taints.is_empty() {
                cmd.push(format!("--taints={}", node.taints.join(",")));
            }
            // Pods of the user's images run in the host's engine, labelled so the cluster's
            // removal and the node's faults reach them.
            cmd.push(format!("--docker-network={}", self.network));
            cmd.push(format!("--sandbox-image={kubeyard}"));
            if spec.simulate_absent_images {
                cmd.push("--simulate-absent-images".into());
            }
            cmd.push(format!(
                "--pod-labels={CLUSTER_LABEL}={},{USER_LABEL}={user},{}={}",
                self.id,
                crate::kubelet::docker::NODE_LABEL,
                slot.container
            ));
            let node_spec = client("node", slot.ip.octets()[3], cmd);
            specs.push(ContainerSpec {
                name: slot.container.clone(),
                hostname: Some(node.name.clone()),
                // The node agent gives its pods their addresses on the node's interface.
                cap_add: vec!["NET_ADMIN".into()],
                // Docker's resolver in the container asks the node's own cluster DNS for
                // what it does not know; short names search the default namespace.
                dns: vec![slot.ip.to_string()],
                dns_search: ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
                    .map(String::from)
                    .to_vec(),
                restart_on_failure: false,
                binds: vec![format!("{}:/var/run/docker.sock", docker_socket())],
                ..node_spec
            });
        }
        specs
    }

    /// Waits for the API server to answer and every node to be Ready.
    async fn wait_ready(&self, within: Duration) -> Result<(), Error> {
        let started = Instant::now();
        let client = self.client()?;
        let nodes: Api<Node> = Api::all(client);
        let mut ready = 0;
        while started.elapsed() < within {
            if let Ok(list) = nodes.list(&ListParams::default()).await {
                ready = list.items.iter().filter(|n| node_ready(n)).count();
                if ready == self.nodes.len() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NotReady {
            seconds: within.as_secs(),
            what: format!("{ready} of {} nodes Ready", self.nodes.len()),
            logs: self.trouble().await,
        })
    }

    /// What is wrong with the cluster's own containers, for a failure that may come from
    /// them (an API server that does not answer): each control-plane container that is not
    /// running, how it ended and its last lines, then the nodes' containers that are not
    /// running (a test may have stopped them). Empty when every one runs.
    pub async fn trouble(&self) -> String {
        let mut text = String::new();
        for role in self.control_plane() {
            let name = container_name(&self.id, &role);
            if let Some(state) = self.docker.not_running(&name).await {
                let logs = self.docker.logs(&name, 20).await;
                text.push_str(&format!("container {name} ({role}) {state}; its last lines:\n{}\n", logs.trim_end()));
            }
        }
        for node in &self.nodes {
            if let Some(state) = self.docker.not_running(&node.container).await {
                text.push_str(&format!("container {} (node {}) {state}\n", node.container, node.name));
            }
        }
        text
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The API server, as the host reaches it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of the API server from the host, with the cluster's CA and token.
    pub fn client(&self) -> Result<kube::Client, Error> {
        self.client_at(&self.url)
    }

    /// A client of the API server at `url` (one of `api_server_urls`, or `url`).
    pub fn client_at(&self, url: &str) -> Result<kube::Client, Error> {
        let uri = url.parse().map_err(|_| Error::Invalid(format!("not a URL: {url}")))?;
        let mut config = kube::Config::new(uri);
        if let Some((ca, _)) = &self.credentials.api {
            use rustls_pki_types::pem::PemObject;
            let ders = rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
                .map(|cert| cert.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Credentials(format!("the cluster's CA is not PEM: {e}")))?;
            config.root_cert = Some(ders);
        }
        if let Some(token) = &self.credentials.token {
            config.auth_info.token = Some(token.clone().into());
        }
        kube::Client::try_from(config).map_err(|e| Error::Invalid(e.to_string()))
    }

    /// The token clients send, unless the cluster serves plain HTTP.
    pub fn token(&self) -> Option<&str> {
        self.credentials.token.as_deref()
    }

    /// etcd's address on the cluster network (not published on the host): its first
    /// member's.
    pub fn etcd_address(&self) -> SocketAddr {
        SocketAddr::from((self.address(etcd_host(0)), 2379))
    }

    /// Every etcd member's client URL, in member order (the host reaches them; they answer
    /// only the API server's certificate).
    pub fn etcd_endpoints(&self) -> Vec<String> {
        (0..self.etcd_members).map(|m| self.etcd_url(m)).collect()
    }

    /// How many etcd members and API servers the cluster has.
    pub fn etcd_members(&self) -> usize {
        self.etcd_members
    }

    pub fn api_servers(&self) -> usize {
        self.api_servers
    }

    /// Each API server's own URL on the cluster network (the host reaches them), in order;
    /// `url` is the load balancer's when there are several.
    pub fn api_server_urls(&self) -> Vec<String> {
        let scheme = if self.credentials.api.is_some() { "https" } else { "http" };
        (0..self.api_servers).map(|a| format!("{scheme}://{}:{API_PORT}", self.address(api_host(a)))).collect()
    }

    /// The certificate of the CA that signed etcd's (public: it lets a client check etcd,
    /// not talk to it).
    pub fn etcd_ca_pem(&self) -> &str {
        &self.credentials.etcd_ca
    }

    /// A kubeconfig for kubectl and any client: the URL, the CA, the token. Write it with
    /// `apiserver::kubeconfig::write` (its owner alone may read it).
    pub fn kubeconfig(&self) -> String {
        let ca = self.credentials.api.as_ref().map(|(ca, _)| ca.as_str());
        crate::apiserver::kubeconfig::render(&self.url, self.credentials.token.as_deref(), ca)
    }

    /// The nodes' names and addresses on the cluster network (the host reaches them too).
    pub fn nodes(&self) -> Vec<(String, Ipv4Addr)> {
        self.nodes.iter().map(|n| (n.name.clone(), n.ip)).collect()
    }

    fn node(&self, name: &str) -> Result<&NodeSlot, Error> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| Error::UnknownNode {
            node: name.into(),
            known: self.nodes.iter().map(|n| n.name.clone()).collect(),
        })
    }

    /// The containers of the node's pods (sandboxes too), each with its pod's address
    /// (empty but on sandboxes).
    async fn pod_containers(&self, node: &NodeSlot) -> Result<Vec<(String, String)>, Error> {
        let labels = [
            format!("{CLUSTER_LABEL}={}", self.id),
            format!("{}={}", crate::kubelet::docker::NODE_LABEL, node.container),
        ];
        Ok(self.docker.containers_with(&labels, crate::kubelet::docker::POD_IP_LABEL).await?)
    }

    /// Does `fault` to the node's container and to its pods' containers, which live and
    /// die with the machine they run on (one already stopped or gone is passed over).
    async fn to_node_and_pods<'a, F, Fut>(&'a self, name: &str, fault: F) -> Result<(), Error>
    where
        F: Fn(&'a Docker, String) -> Fut,
        Fut: std::future::Future<Output = Result<(), docker::Error>>,
    {
        let node = self.node(name)?;
        fault(&self.docker, node.container.clone()).await?;
        let pods = self.pod_containers(node).await?;
        futures_util::future::join_all(pods.into_iter().map(|(container, _)| fault(&self.docker, container))).await;
        Ok(())
    }

    /// Stops the node's container (SIGTERM, then SIGKILL after 2 s), and its pods'.
    pub async fn stop_node(&self, name: &str) -> Result<(), Error> {
        self.to_node_and_pods(name, |docker, container| async move { docker.stop(&container, 2).await }).await
    }

    /// Starts a stopped node's container again; its agent makes its pods' containers anew.
    pub async fn start_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.start(&self.node(name)?.container).await?)
    }

    pub async fn kill_node(&self, name: &str) -> Result<(), Error> {
        self.to_node_and_pods(name, |docker, container| async move { docker.kill(&container).await }).await
    }

    pub async fn pause_node(&self, name: &str) -> Result<(), Error> {
        self.to_node_and_pods(name, |docker, container| async move { docker.pause(&container).await }).await
    }

    pub async fn unpause_node(&self, name: &str) -> Result<(), Error> {
        self.to_node_and_pods(name, |docker, container| async move { docker.unpause(&container).await }).await
    }

    /// Restarts the node: its pods' containers stop with it, and its agent makes them anew.
    pub async fn restart_node(&self, name: &str) -> Result<(), Error> {
        let node = self.node(name)?;
        let pods = self.pod_containers(node).await?;
        futures_util::future::join_all(pods.iter().map(|(container, _)| self.docker.kill(container))).await;
        Ok(self.docker.restart(&node.container, 2).await?)
    }

    /// Cuts the node off the cluster network: nothing reaches it or its pods, they reach
    /// nothing.
    pub async fn disconnect_node(&self, name: &str) -> Result<(), Error> {
        let node = self.node(name)?;
        self.docker.disconnect(&self.network, &node.container).await?;
        for (sandbox, _) in self.pod_containers(node).await?.into_iter().filter(|(_, ip)| !ip.is_empty()) {
            let _ = self.docker.disconnect(&self.network, &sandbox).await;
        }
        Ok(())
    }

    /// Joins it again, at its address, and its pods at theirs.
    pub async fn reconnect_node(&self, name: &str) -> Result<(), Error> {
        let node = self.node(name)?;
        self.docker.connect_to(&self.network, &node.container, &node.ip.to_string()).await?;
        for (sandbox, ip) in self.pod_containers(node).await?.into_iter().filter(|(_, ip)| !ip.is_empty()) {
            let _ = self.docker.connect_to(&self.network, &sandbox, &ip).await;
        }
        Ok(())
    }

    /// Restarts the API server's container (same port on the host, state in etcd), and
    /// returns once it answers again; with several, each in turn, as a rolling restart
    /// does, so the API never goes away.
    pub async fn restart_api_server(&self) -> Result<(), Error> {
        for (server, url) in self.api_server_urls().iter().enumerate() {
            self.docker.restart(&container_name(&self.id, &self.api_role(server)), 2).await?;
            let client = if self.api_servers == 1 { self.client()? } else { self.client_at(url)? };
            self.api_ready(client).await?;
        }
        Ok(())
    }

    /// Restarts etcd's container (every member's at once), and returns once it answers
    /// again (to the API server's certificate: it answers nothing else).
    pub async fn restart_etcd(&self) -> Result<(), Error> {
        let restarts = (0..self.etcd_members)
            .map(|m| async move { self.docker.restart(&container_name(&self.id, &self.etcd_role(m)), 2).await });
        for result in futures_util::future::join_all(restarts).await {
            result?;
        }
        let urls = self.etcd_endpoints().join(",");
        let tls = self.credentials.etcd_tls();
        self.wait_healthy("etcd", || async { EtcdStore::connect_with(&urls, Some(&tls)).await.ok().map(drop) }).await
    }

    /// The container of the `index`th of `count` (API servers, etcd members), if there is
    /// one.
    fn nth(&self, what: &str, index: usize, count: usize, role: impl Fn(usize) -> String) -> Result<String, Error> {
        if index >= count {
            return Err(Error::Invalid(format!("there is no {what} {index}: the cluster's are 0 to {}", count - 1)));
        }
        Ok(container_name(&self.id, &role(index)))
    }

    fn api_server(&self, server: usize) -> Result<String, Error> {
        self.nth("API server", server, self.api_servers, |a| self.api_role(a))
    }

    /// Waits until the API server behind `client` says it is ready.
    async fn api_ready(&self, client: kube::Client) -> Result<(), Error> {
        self.wait_healthy("the API server", || async {
            let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
            client.request_text(request).await.ok().map(drop)
        })
        .await
    }

    /// Kills API server `server` (SIGKILL): behind the load balancer, clients go on
    /// through the others.
    pub async fn kill_api_server(&self, server: usize) -> Result<(), Error> {
        Ok(self.docker.kill(&self.api_server(server)?).await?)
    }

    /// Starts a killed API server again, and returns once it answers.
    pub async fn start_api_server(&self, server: usize) -> Result<(), Error> {
        self.docker.start(&self.api_server(server)?).await?;
        self.api_ready(self.client_at(&self.api_server_urls()[server])?).await
    }

    fn etcd_member(&self, member: usize) -> Result<String, Error> {
        self.nth("etcd member", member, self.etcd_members, |m| self.etcd_role(m))
    }

    /// The member that leads etcd now, as its members see it (`None` during an election).
    pub async fn etcd_leader(&self) -> Option<usize> {
        let (urls, tls) = (self.etcd_endpoints().join(","), self.credentials.etcd_tls());
        EtcdStore::connect_with(&urls, Some(&tls)).await.ok()?.leader().await
    }

    /// Kills etcd member `member` (SIGKILL); its data stays for `start_etcd_member`.
    pub async fn kill_etcd_member(&self, member: usize) -> Result<(), Error> {
        Ok(self.docker.kill(&self.etcd_member(member)?).await?)
    }

    /// Starts a killed member again on its data, and returns once it answers.
    pub async fn start_etcd_member(&self, member: usize) -> Result<(), Error> {
        self.docker.start(&self.etcd_member(member)?).await?;
        let url = self.etcd_url(member);
        let tls = self.credentials.etcd_tls();
        self.wait_healthy("the etcd member", || async {
            EtcdStore::connect_with(&url, Some(&tls)).await.ok().map(drop)
        })
        .await
    }

    /// Waits until `attempt` succeeds (each attempt given a second), 30 s at most.
    async fn wait_healthy<F, Fut>(&self, what: &str, attempt: F) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
    {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(1), attempt()).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NotReady {
            seconds: 30,
            what: format!("{what} did not answer after its restart"),
            logs: String::new(),
        })
    }

    /// Each container's memory use now, in bytes.
    pub async fn memory(&self) -> Vec<(String, u64)> {
        let mut names: Vec<String> = self.control_plane().iter().map(|r| container_name(&self.id, r)).collect();
        names.extend(self.nodes.iter().map(|n| n.container.clone()));
        let mut usage = Vec::new();
        for name in names {
            if let Ok(bytes) = self.docker.memory(&name).await {
                usage.push((name, bytes));
            }
        }
        // The pods' containers in the engine (sandboxes too), as one entry.
        let labels = [format!("{CLUSTER_LABEL}={}", self.id), crate::kubelet::docker::POD_UID_LABEL.to_string()];
        let mut pods = 0;
        for name in self.docker.containers_matching(&labels).await.unwrap_or_default() {
            pods += self.docker.memory(&name).await.unwrap_or(0);
        }
        if pods > 0 {
            usage.push(("pods".to_string(), pods));
        }
        usage
    }

    /// Removes every container and the network.
    pub async fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        remove_cluster(&self.docker, &self.id).await
    }

    /// Whether the cluster was removed under us (`kubeyard down`, `docker rm`): its API
    /// server's container or its network is gone. A stopped container is not gone.
    pub async fn gone(&self) -> Result<bool, Error> {
        let apiserver = self.docker.exists(&container_name(&self.id, &self.api_role(0))).await?;
        Ok(!apiserver || !self.docker.network_exists(&self.network).await?)
    }

    /// Returns once `gone` says so, asking every `period`; an engine that does not answer
    /// is not a removed cluster.
    pub async fn removed_externally(&self, period: Duration) {
        loop {
            if let Ok(true) = self.gone().await {
                return;
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Forgets the cluster without removing anything: someone else removed it.
    pub fn disown(mut self) {
        self.removed = true;
    }
}

impl Drop for ContainerCluster {
    /// Removes what is left, also on a panic or an error. The engine is called from a
    /// thread of its own: the runtime this runs on may be a single thread, busy here.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let id = self.id.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(docker) = Docker::connect().await {
                    let _ = remove_cluster(&docker, &id).await;
                }
            });
        })
        .join();
    }
}

/// Builds whichever of the two images changed.
pub async fn ensure_images(
    docker: &Docker,
    kubeyard_binary: Option<&std::path::Path>,
    etcd_binary: Option<&std::path::Path>,
    progress: &dyn Progress,
) -> Result<(Image, Image), Error> {
    let from_environment = std::env::var_os("KUBEYARD_BINARY").map(PathBuf::from);
    let kubeyard = Image::kubeyard(kubeyard_binary.or(from_environment.as_deref()))?;
    let etcd = Image::etcd(etcd_binary)?;
    for image in [&kubeyard, &etcd] {
        let started = Instant::now();
        if image.ensure(docker).await? {
            progress.step(&format!(
                "built image {} ({:.0} MB) in {:.1?}",
                image.tag,
                image.size() as f64 / 1e6,
                started.elapsed()
            ));
        }
    }
    Ok((kubeyard, etcd))
}

/// A port free on the host's loopback now.
fn free_port() -> Result<u16, Error> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Invalid(format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::Invalid(format!("no free port: {e}")))
}

/// The engine's socket on this host, for the nodes to reach the engine through:
/// `DOCKER_HOST`'s when it is a Unix socket, else Docker's default.
fn docker_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string())
}

/// Creates the network on the first free 10.B.0.0/16, B from 200 up in a random order.
async fn create_network(docker: &Docker, name: &str, labels: &HashMap<String, String>) -> Result<u8, Error> {
    let mut octets: Vec<u8> = (200..=250).collect();
    fastrand::shuffle(&mut octets);
    for octet in octets {
        let subnet = format!("10.{octet}.0.0/16");
        let gateway = format!("10.{octet}.0.1");
        match docker.create_network(name, &subnet, &gateway, labels).await {
            Ok(()) => return Ok(octet),
            Err(docker::Error::Refused { message, .. }) if message.contains("overlap") => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::NoSubnet)
}

/// Removes the containers, then the networks, carrying every one of `labels`; how many
/// containers went.
async fn remove_labelled(docker: &Docker, labels: &[String]) -> Result<usize, Error> {
    let containers = docker.containers_matching(labels).await?;
    let removals = containers.iter().map(|c| docker.remove(c));
    for result in futures_util::future::join_all(removals).await {
        result?;
    }
    // A node agent may have made a pod's containers while the first were removed.
    let late = docker.containers_matching(labels).await?;
    for result in futures_util::future::join_all(late.iter().map(|c| docker.remove(c))).await {
        result?;
    }
    // Pods' volumes the node agents had no time to remove.
    for volume in docker.volumes_matching(labels).await? {
        docker.remove_volume(&volume).await?;
    }
    for network in docker.networks_matching(labels).await? {
        docker.remove_network(&network).await?;
    }
    Ok(containers.len())
}

async fn remove_cluster(docker: &Docker, id: &str) -> Result<(), Error> {
    remove_by_id(docker, id).await.map(drop)
}

/// Removes one cluster by its id; how many containers went.
pub async fn remove_by_id(docker: &Docker, id: &str) -> Result<usize, Error> {
    remove_labelled(docker, &[format!("{CLUSTER_LABEL}={id}")]).await
}

/// Whose clusters `remove_all` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// Those started by the user with this id (`kubeyard.dev/user`).
    User(String),
    /// Every kubeyard cluster on the engine, whoever started it.
    Everyone,
}

/// Removes the kubeyard clusters on this engine that are `whose` (what interrupted runs
/// left behind); how many containers went.
pub async fn remove_all(docker: &Docker, whose: &Whose) -> Result<usize, Error> {
    let mut labels = vec![CLUSTER_LABEL.to_string()];
    if let Whose::User(user) = whose {
        labels.push(format!("{USER_LABEL}={user}"));
    }
    remove_labelled(docker, &labels).await
}
