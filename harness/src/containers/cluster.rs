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
//! ```
//!
//! Containers and the network carry the label `kubeyard.dev/cluster=<id>`; dropping the
//! cluster removes them, and `kubeyard down --all` removes what a killed run left.

use super::docker::{self, ContainerSpec, Docker};
use super::image::{self, Image};
use crate::kubelet::node_ready;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The label every container and network of a cluster carries.
pub const CLUSTER_LABEL: &str = "kubeyard.dev/cluster";
const ROLE_LABEL: &str = "kubeyard.dev/role";
const API_PORT: u16 = 6443;
/// Nodes a cluster can have: one /24 of pods each, and an address in 10.B.0.0/24.
pub const MAX_NODES: usize = 200;

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
    #[error("no node named {0} in this cluster")]
    UnknownNode(String),
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
}

impl ClusterSpec {
    /// `count` nodes named `node-1`... with the node agent's default capacity.
    pub fn with_nodes(count: usize) -> ClusterSpec {
        ClusterSpec {
            nodes: (1..=count).map(|i| NodeSpec::new(&format!("node-{i}"))).collect(),
            seed: 0,
            etcd_binary: None,
            kubeyard_binary: None,
            node_grace: Duration::from_secs(40),
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
    removed: bool,
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
        let started = Instant::now();
        let docker = Docker::connect().await?;
        let (kubeyard, etcd) =
            ensure_images(&docker, spec.kubeyard_binary.as_deref(), spec.etcd_binary.as_deref(), progress).await?;

        let id = new_id();
        let network = format!("kubeyard-{id}");
        let labels = HashMap::from([(CLUSTER_LABEL.to_string(), id.clone())]);
        let octet = create_network(&docker, &network, &labels).await?;
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
            removed: false,
        };
        progress.step(&format!(
            "starting cluster {id}: etcd, API server, scheduler, controller manager, {} node(s)",
            spec.nodes.len()
        ));
        let specs = cluster.container_specs(spec, &kubeyard.tag, &etcd.tag);
        let runs = specs.iter().map(|s| docker.run(s));
        for result in futures_util::future::join_all(runs).await {
            result?;
        }
        cluster.url = format!("http://127.0.0.1:{}", cluster.api_port);
        cluster.wait_ready(Duration::from_secs(60)).await?;
        progress.step(&format!("cluster {id} ready in {:.1?}: API server at {}", started.elapsed(), cluster.url));
        Ok(cluster)
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, host)
    }

    fn container_specs(&self, spec: &ClusterSpec, kubeyard: &str, etcd: &str) -> Vec<ContainerSpec> {
        let role = |role: &str| {
            HashMap::from([(CLUSTER_LABEL.to_string(), self.id.clone()), (ROLE_LABEL.to_string(), role.to_string())])
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
        let etcd_url = format!("http://{}:2379", self.address(2));
        let server = format!("http://{}:{API_PORT}", self.address(3));
        let mut specs = vec![
            base(
                "etcd",
                etcd,
                2,
                strings(&[
                    "--name=etcd",
                    "--data-dir=/var/lib/etcd",
                    "--listen-client-urls=http://0.0.0.0:2379",
                    &format!("--advertise-client-urls={etcd_url}"),
                ]),
            ),
            ContainerSpec {
                publish: Some((API_PORT, self.api_port)),
                ..base(
                    "apiserver",
                    kubeyard,
                    3,
                    strings(&["apiserver", &format!("--listen=0.0.0.0:{API_PORT}"), &format!("--etcd={etcd_url}")]),
                )
            },
            base(
                "scheduler",
                kubeyard,
                4,
                strings(&["scheduler", &format!("--server={server}"), &format!("--seed={}", spec.seed)]),
            ),
            base(
                "controller-manager",
                kubeyard,
                5,
                strings(&[
                    "controller-manager",
                    &format!("--server={server}"),
                    &format!("--node-monitor-grace-period={}", spec.node_grace.as_secs().max(2)),
                    &format!("--node-monitor-period={}", (spec.node_grace.as_secs() / 8).clamp(1, 5)),
                ]),
            ),
        ];
        for (slot, node) in self.nodes.iter().zip(&spec.nodes) {
            let index = slot.ip.octets()[3] - 10;
            let mut cmd = strings(&[
                "kubelet",
                &format!("--server={server}"),
                &format!("--node={}", node.name),
                &format!("--address={}", slot.ip),
                &format!("--pod-cidr=10.{}.{index}.0/24", self.octet),
                &format!("--seed={}", spec.seed),
                &format!("--lease-renew-interval={}", (spec.node_grace.as_secs() / 4).clamp(1, 10)),
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
                ..base("node", kubeyard, slot.ip.octets()[3], cmd)
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
        let mut logs = String::new();
        for role in ["etcd", "apiserver", "scheduler", "controller-manager"] {
            let name = container_name(&self.id, role);
            if !self.docker.running(&name).await {
                logs.push_str(&format!(
                    "{name} is not running; its last lines:\n{}\n",
                    self.docker.logs(&name, 20).await
                ));
            }
        }
        Err(Error::NotReady {
            seconds: within.as_secs(),
            what: format!("{ready} of {} nodes Ready", self.nodes.len()),
            logs,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The API server, as the host reaches it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> Result<kube::Client, Error> {
        let uri = self.url.parse().map_err(|_| Error::Invalid(format!("not a URL: {}", self.url)))?;
        kube::Client::try_from(kube::Config::new(uri)).map_err(|e| Error::Invalid(e.to_string()))
    }

    pub fn kubeconfig(&self) -> String {
        crate::apiserver::kubeconfig::render(&self.url, None, None)
    }

    /// The nodes' names and addresses on the cluster network (the host reaches them too).
    pub fn nodes(&self) -> Vec<(String, Ipv4Addr)> {
        self.nodes.iter().map(|n| (n.name.clone(), n.ip)).collect()
    }

    fn node(&self, name: &str) -> Result<&NodeSlot, Error> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| Error::UnknownNode(name.into()))
    }

    /// Stops the node's container (SIGTERM, then SIGKILL after `grace_seconds`).
    pub async fn stop_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.stop(&self.node(name)?.container, 2).await?)
    }

    /// Starts a stopped node's container again.
    pub async fn start_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.start(&self.node(name)?.container).await?)
    }

    pub async fn kill_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.kill(&self.node(name)?.container).await?)
    }

    pub async fn pause_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.pause(&self.node(name)?.container).await?)
    }

    pub async fn unpause_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.unpause(&self.node(name)?.container).await?)
    }

    pub async fn restart_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.restart(&self.node(name)?.container, 2).await?)
    }

    /// Cuts the node off the cluster network: nothing reaches it, it reaches nothing.
    pub async fn disconnect_node(&self, name: &str) -> Result<(), Error> {
        Ok(self.docker.disconnect(&self.network, &self.node(name)?.container).await?)
    }

    /// Joins it again, at its address.
    pub async fn reconnect_node(&self, name: &str) -> Result<(), Error> {
        let node = self.node(name)?;
        Ok(self.docker.connect_to(&self.network, &node.container, &node.ip.to_string()).await?)
    }

    /// Restarts the API server's container (same port on the host, state in etcd), and
    /// returns once it answers again.
    pub async fn restart_api_server(&self) -> Result<(), Error> {
        self.docker.restart(&container_name(&self.id, "apiserver"), 2).await?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.api_port));
        self.wait_healthy("the API server", address, "/readyz").await
    }

    /// Restarts etcd's container, and returns once it answers again.
    pub async fn restart_etcd(&self) -> Result<(), Error> {
        self.docker.restart(&container_name(&self.id, "etcd"), 2).await?;
        self.wait_healthy("etcd", SocketAddr::from((self.address(2), 2379)), "/health").await
    }

    async fn wait_healthy(&self, what: &str, address: SocketAddr, path: &str) -> Result<(), Error> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if answers(address, path).await {
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
        let mut names: Vec<String> = ["etcd", "apiserver", "scheduler", "controller-manager"]
            .iter()
            .map(|r| container_name(&self.id, r))
            .collect();
        names.extend(self.nodes.iter().map(|n| n.container.clone()));
        let mut usage = Vec::new();
        for name in names {
            if let Ok(bytes) = self.docker.memory(&name).await {
                usage.push((name, bytes));
            }
        }
        usage
    }

    /// Removes every container and the network.
    pub async fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        remove_cluster(&self.docker, &self.id).await
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

/// Whether `GET path` at `address` answers 200.
async fn answers(address: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let read = stream.read(&mut head).await.ok()?;
        Some(head[..read].starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}

/// A port free on the host's loopback now.
fn free_port() -> Result<u16, Error> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Invalid(format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::Invalid(format!("no free port: {e}")))
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

/// Removes the containers, then the networks, carrying `label`; how many containers went.
async fn remove_labelled(docker: &Docker, label: &str) -> Result<usize, Error> {
    let containers = docker.containers_labelled(label).await?;
    let removals = containers.iter().map(|c| docker.remove(c));
    for result in futures_util::future::join_all(removals).await {
        result?;
    }
    for network in docker.networks_labelled(label).await? {
        docker.remove_network(&network).await?;
    }
    Ok(containers.len())
}

async fn remove_cluster(docker: &Docker, id: &str) -> Result<(), Error> {
    remove_labelled(docker, &format!("{CLUSTER_LABEL}={id}")).await.map(drop)
}

/// Removes one cluster by its id; how many containers went.
pub async fn remove_by_id(docker: &Docker, id: &str) -> Result<usize, Error> {
    remove_labelled(docker, &format!("{CLUSTER_LABEL}={id}")).await
}

/// Removes every kubeyard cluster on this engine (what interrupted runs left behind);
/// how many containers went.
pub async fn remove_all(docker: &Docker) -> Result<usize, Error> {
    remove_labelled(docker, CLUSTER_LABEL).await
}
