//! The control plane's components one per process, as the cluster's containers run them:
//! `kubeyard scheduler`, `kubeyard controller-manager` and `kubeyard kubelet`, each a
//! client of the API server at `--server`, exactly the code `kubeyard up` runs in one
//! process. Each waits for the API server to answer, then runs until SIGINT or SIGTERM.
//! Credentials come from files (`--token-file`, `--certificate-authority`): a container's
//! command line is any local user's to read (`ps` on the host shows it), its files are not.

use super::Exit;
use super::lint::usage_error;
use super::up::capacity;
use crate::clock::Clock;
use crate::controllers::node_lifecycle;
use crate::kubelet::{self, Kubelets, NodeConfig, NodeNetwork};
use clap::Args;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The API server to work for (`http://HOST:PORT` or `https://HOST:PORT`).
    #[arg(long, value_name = "URL")]
    server: String,

    /// A bearer token to send it (every local user can read a command line: prefer
    /// --token-file).
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,

    /// Read the bearer token to send from this file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// With an `https://` --server: trust only this CA's certificates (PEM) [default: the
    /// system's roots].
    #[arg(long, value_name = "FILE")]
    certificate_authority: Option<PathBuf>,

    /// How long to wait for the API server to answer at start.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    wait: u64,
}

#[derive(Args, Debug)]
pub struct SchedulerArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// Seeds the tie-breaking between equally good nodes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
pub struct ControllerManagerArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// A node whose lease is older than this goes Unknown (`--node-monitor-grace-period`).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::controllers::node_lifecycle::DEFAULT_GRACE.as_secs())]
    node_monitor_grace_period: u64,
}

#[derive(Args, Debug)]
pub struct KubeletArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// The node's name.
    #[arg(long)]
    node: String,

    /// The node's address (its InternalIP) [default: a made-up one].
    #[arg(long, value_name = "IP", requires = "pod_cidr")]
    address: Option<Ipv4Addr>,

    /// The /24 its pods' addresses come from, e.g. `10.200.1.0/24`.
    #[arg(long, value_name = "CIDR", requires = "address")]
    pod_cidr: Option<String>,

    /// The node's capacity, as `resource=quantity` pairs.
    #[arg(long, value_name = "LIST", default_value = "cpu=4,memory=8Gi,pods=110")]
    capacity: String,

    /// Labels, as `key=value` pairs.
    #[arg(long, value_name = "LIST", default_value = "")]
    labels: String,

    /// Taints, as `key=value:Effect` (or `key:Effect`) pairs.
    #[arg(long, value_name = "LIST", default_value = "")]
    taints: String,

    /// Seeds the simulated delays.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// How often the node's Lease is renewed (keep it well under the controller
    /// manager's --node-monitor-grace-period).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lease_renew_interval: u64,

    /// Runs pods of images other than the built-in one as containers of the host's Docker
    /// engine (its socket mounted at /var/run/docker.sock), their sandboxes on this network.
    #[arg(long, value_name = "NETWORK", requires = "address")]
    docker_network: Option<String>,

    /// The image whose `kubeyard pause` the pods' sandboxes run (this binary's image).
    #[arg(long, value_name = "IMAGE", default_value = "kubeyard/kubeyard")]
    sandbox_image: String,

    /// Labels every pod container carries, as `key=value` pairs (the cluster's, its user's, the node's).
    #[arg(long, value_name = "LIST", default_value = "")]
    pod_labels: String,

    /// Simulates the pods whose images the engine does not have, instead of failing to pull them.
    #[arg(long, requires = "docker_network")]
    simulate_absent_images: bool,

    /// The Service range, routed through the node from every pod's sandbox.
    #[arg(long, value_name = "CIDR", default_value = crate::apiserver::allocate::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
}

/// The API server's credentials read from files, as a container's API server is given
/// them (its command line is any local user's to read): the token, a serving certificate
/// made by whoever made the cluster (so its components and the host can trust its CA), and
/// the client certificate etcd asks for.
#[derive(Args, Debug)]
pub struct ApiServerFiles {
    /// Read the token clients must send (`Authorization: Bearer TOKEN`) from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate (PEM; its CA's certificate concatenated after it,
    /// as Kubernetes' --tls-cert-file), instead of one made at start.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,

    /// The key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,

    /// With an `https://` --etcd: the CA that signed etcd's certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["etcd_certfile", "etcd_keyfile"])]
    etcd_cafile: Option<PathBuf>,

    /// The client certificate to present to etcd (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    etcd_certfile: Option<PathBuf>,

    /// Its key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    etcd_keyfile: Option<PathBuf>,
}

impl ApiServerFiles {
    /// `--token`, else --token-file's first line.
    pub fn token(&self, given: Option<String>) -> Result<Option<String>, String> {
        match (given, &self.token_file) {
            (Some(token), _) => Ok(Some(token)),
            (None, Some(path)) => {
                let token = read_credential(path, "--token-file")?.trim().to_string();
                if token.is_empty() {
                    return Err(format!("--token-file {}: empty", path.display()));
                }
                Ok(Some(token))
            }
            (None, None) => Ok(None),
        }
    }

    /// The serving identity of --tls-cert-file and --tls-private-key-file, if given.
    pub fn identity(&self) -> Result<Option<crate::apiserver::tls::Identity>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_private_key_file) else { return Ok(None) };
        let cert = read_credential(cert, "--tls-cert-file")?;
        let key = read_credential(key, "--tls-private-key-file")?;
        crate::apiserver::tls::Identity::from_chain(&cert, &key).map(Some)
    }

    /// What reaching etcd over TLS takes, if given.
    pub fn etcd_tls(&self) -> Result<Option<crate::store::etcd::EtcdTls>, String> {
        let (Some(ca), Some(cert), Some(key)) = (&self.etcd_cafile, &self.etcd_certfile, &self.etcd_keyfile) else {
            return Ok(None);
        };
        Ok(Some(crate::store::etcd::EtcdTls {
            ca_pem: read_credential(ca, "--etcd-cafile")?.into_bytes(),
            cert_pem: read_credential(cert, "--etcd-certfile")?.into_bytes(),
            key_pem: read_credential(key, "--etcd-keyfile")?.into_bytes(),
        }))
    }
}

/// Resolves on SIGINT or SIGTERM: a container is stopped with SIGTERM, and a process that
/// is PID 1 dies of it only if it handles it.
pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A file's text, for a credential flag.
pub(super) fn read_credential(path: &Path, flag: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl ServerArgs {
    /// The token to send: --token, or --token-file's first line.
    fn token(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(Some(token.clone())),
            (None, Some(path)) => Ok(Some(read_credential(path, "--token-file")?.trim().to_string())),
            (None, None) => Ok(None),
        }
    }
}

/// The TCP connector of every component: dead connections (a partition) are found by TCP
/// keepalive within about 20 s, and a connect gives up after 5 s, so a component cut off
/// and joined again carries on by itself.
fn tcp_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(5)));
    connector.set_keepalive_interval(Some(Duration::from_secs(5)));
    connector.set_keepalive_retries(Some(3));
    connector.set_nodelay(true);
    connector
}

/// A kube client over plain HTTP: kube's own builder sets up TLS even for `http://`,
/// loading the system's roots, and a `FROM scratch` image has none.
pub fn http_client(config: kube::Config) -> Result<kube::Client, String> {
    client_over(config, tcp_connector())
}

/// A kube client over HTTPS trusting only the CA `ca_pem` (kube's own builder would load
/// the system's roots too, and a `FROM scratch` image has none), with the same keepalive.
pub fn https_client(config: kube::Config, ca_pem: &[u8]) -> Result<kube::Client, String> {
    let tls = crate::apiserver::tls::client_config(ca_pem, None)?;
    let mut tcp = tcp_connector();
    // The TLS layer above it speaks https; the TCP one must let it through.
    tcp.enforce_http(false);
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(tcp);
    client_over(config, connector)
}

fn client_over<C>(config: kube::Config, connector: C) -> Result<kube::Client, String>
where
    C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response:
        hyper_util::client::legacy::connect::Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    C::Future: Send + Unpin + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use kube::client::ConfigExt;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(config.extra_headers_layer().map_err(|e| format!("cannot set the headers: {e}"))?)
        .option_layer(config.auth_layer().map_err(|e| format!("cannot authenticate: {e}"))?)
        // One error type under the auth layer, whichever kind of authentication it is.
        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A client of the API server, once it answers `/readyz`.
async fn connect(args: &ServerArgs, component: &str) -> Result<kube::Client, String> {
    let url: http::Uri = args.server.parse().map_err(|e| format!("--server {}: {e}", args.server))?;
    let https = url.scheme_str() == Some("https");
    let mut config = kube::Config::new(url);
    let product = match component {
        "scheduler" => crate::controlplane::SCHEDULER,
        "controller-manager" => crate::controlplane::CONTROLLER_MANAGER,
        "kubelet" => crate::controlplane::KUBELET,
        _ => "kubeyard",
    };
    config.headers.push(crate::controlplane::user_agent(product));
    if let Some(token) = args.token()? {
        config.auth_info.token = Some(token.into());
    }
    let ca = args.certificate_authority.as_deref().map(|path| read_credential(path, "--certificate-authority"));
    let client = match (https, ca.transpose()?) {
        (true, Some(ca)) => https_client(config, ca.as_bytes())?,
        (true, None) => kube::Client::try_from(config).map_err(|e| format!("cannot make a client: {e}"))?,
        (false, _) => http_client(config)?,
    };
    let started = Instant::now();
    loop {
        let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
        match client.request_text(request).await {
            Ok(_) => {
                eprintln!("kubeyard {component}: connected to {}", args.server);
                return Ok(client);
            }
            Err(error) if started.elapsed() > Duration::from_secs(args.wait) => {
                return Err(format!("the API server at {} did not answer in {}s: {error}", args.server, args.wait));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs `work` on a runtime of every core until it ends or the process is told to stop.
fn serve<F, Fut>(component: &str, server: &ServerArgs, work: F) -> Exit
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    runtime.block_on(async {
        let client = match connect(server, component).await {
            Ok(client) => client,
            Err(message) => return usage_error(&message),
        };
        tokio::select! {
            done = work(client) => match done {
                Ok(()) => Exit::Ok,
                Err(message) => usage_error(&message),
            },
            _ = interrupted() => {
                eprintln!("kubeyard {component}: stopped");
                Exit::Ok
            }
        }
    })
}

pub fn scheduler(args: SchedulerArgs) -> Exit {
    serve("scheduler", &args.server, |client| async move {
        crate::scheduler::run(client, args.seed).await;
        Ok(())
    })
}

pub fn controller_manager(args: ControllerManagerArgs) -> Exit {
    let lifecycle =
        node_lifecycle::Options { clock: Clock::real(), grace: Duration::from_secs(args.node_monitor_grace_period) };
    // The CA it trusts the API server by is the one pods are told to trust it by.
    let root_ca =
        args.server.certificate_authority.as_deref().map(|path| read_credential(path, "--certificate-authority"));
    let root_ca = match root_ca.transpose() {
        Ok(root_ca) => root_ca,
        Err(message) => return usage_error(&message),
    };
    serve("controller-manager", &args.server, |client| async move {
        let profile = std::sync::Arc::new(crate::profile::Profile::default());
        let mut controllers = crate::controller_manager::start(client, lifecycle, root_ca, profile);
        // The controllers run for ever; one ending is a fault worth a restart.
        match controllers.join_next().await {
            Some(Err(error)) => Err(format!("a controller stopped: {error}")),
            _ => Err("a controller stopped".into()),
        }
    })
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  kubeyard loadbalancer --listen 0.0.0.0:6443 --backend 10.200.0.3:6443 --backend 10.200.0.231:6443"
)]
pub struct LoadBalancerArgs {
    /// The address to accept connections on.
    #[arg(long, value_name = "ADDRESS", default_value = "0.0.0.0:6443")]
    listen: String,

    /// An API server's address (`HOST:PORT`); give one per server.
    #[arg(long = "backend", value_name = "ADDRESS", required = true)]
    backends: Vec<std::net::SocketAddr>,
}

pub fn load_balancer(args: LoadBalancerArgs) -> Exit {
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(listener) => listener,
            Err(error) => return usage_error(&format!("cannot listen on {}: {error}", args.listen)),
        };
        let backends = std::sync::Arc::new(crate::loadbalancer::Backends::new(args.backends.clone()));
        eprintln!("kubeyard loadbalancer: on {}, to {:?}", args.listen, args.backends);
        tokio::select! {
            () = crate::loadbalancer::serve(listener, backends) => Exit::Ok,
            _ = interrupted() => {
                eprintln!("kubeyard loadbalancer: stopped");
                Exit::Ok
            }
        }
    })
}

/// `a=b,c=d` to a map.
fn pairs(text: &str, flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("{flag}: `{pair}` is not key=value"))?;
        map.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(map)
}

/// `key=value:Effect` or `key:Effect` pairs to taints as the API writes them.
fn taints(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut taints = Vec::new();
    for taint in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (rest, effect) = taint.rsplit_once(':').ok_or_else(|| format!("--taints: `{taint}` has no :Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!("--taints: `{effect}` is not NoSchedule, PreferNoSchedule or NoExecute"));
        }
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let mut object = serde_json::json!({"key": key, "effect": effect});
        if !value.is_empty() {
            object["value"] = serde_json::json!(value);
        }
        taints.push(object);
    }
    Ok(taints)
}

/// `10.200.1.0/24` to its first address; only a /24 will do (the pod addresses are
/// `.2` to `.254` of it).
fn pod_network(cidr: &str) -> Result<Ipv4Addr, String> {
    let (address, bits) = cidr.split_once('/').ok_or_else(|| format!("--pod-cidr: `{cidr}` is not ADDRESS/24"))?;
    let address: Ipv4Addr = address.parse().map_err(|e| format!("--pod-cidr: {address}: {e}"))?;
    if bits != "24" || address.octets()[3] != 0 {
        return Err(format!("--pod-cidr: `{cidr}` is not a /24 starting at .0"));
    }
    Ok(address)
}

fn node_config(args: &KubeletArgs) -> Result<NodeConfig, String> {
    let mut node = NodeConfig::new(&args.node, 1);
    node.capacity.extend(capacity(&args.capacity)?);
    node.labels = pairs(&args.labels, "--labels")?;
    node.taints = taints(&args.taints)?;
    if let (Some(address), Some(cidr)) = (args.address, &args.pod_cidr) {
        node.network = Some(NodeNetwork { address, pods: pod_network(cidr)? });
    }
    Ok(node)
}

pub fn kubelet(args: KubeletArgs) -> Exit {
    let node = match node_config(&args) {
        Ok(node) => node,
        Err(message) => return usage_error(&message),
    };
    let pod_labels = match pairs(&args.pod_labels, "--pod-labels") {
        Ok(labels) => labels,
        Err(message) => return usage_error(&message),
    };
    let mut options = kubelet::Options {
        seed: args.seed,
        renew_interval: Duration::from_secs(args.lease_renew_interval.max(1)),
        ..kubelet::Options::default()
    };
    let address = args.address;
    // The node's log endpoint wants the token the node itself sends the API server: the
    // API server's pods/log sends it back (the cluster has one token).
    let token = match args.server.token() {
        Ok(token) => token,
        Err(message) => return usage_error(&message),
    };
    let engine =
        args.docker_network.clone().zip(address).map(|(network, node_address)| {
            (network, node_address, args.sandbox_image.clone(), args.service_cidr.clone())
        });
    let simulate_absent = args.simulate_absent_images;
    serve("kubelet", &args.server, |client| async move {
        let name = node.name.clone();
        if let Some((network, node_address, sandbox_image, service_cidr)) = engine {
            let docker = crate::containers::docker::Docker::connect().await.map_err(|e| e.to_string())?;
            let runtime = kubelet::docker::DockerRuntime {
                docker,
                network,
                sandbox_image,
                labels: pod_labels.into_iter().collect(),
                service_cidr,
                node_address,
                images: if simulate_absent { Some(Default::default()) } else { None },
            };
            let left = runtime.remove_leftovers().await.map_err(|e| e.to_string())?;
            if left > 0 {
                eprintln!("kubeyard kubelet: removed {left} containers an earlier run of this node left");
            }
            let runtime = std::sync::Arc::new(runtime);
            if simulate_absent {
                tokio::spawn(kubelet::docker::watch_images(std::sync::Arc::clone(&runtime)));
            }
            options.docker = Some(runtime);
        }
        // A node on a real network runs processes (the API server reads their logs
        // here), their Services' proxy, and the cluster's DNS.
        if let Some(address) = address {
            let endpoint = std::net::SocketAddr::new(address.into(), kubelet::server::PORT);
            let logs = kubelet::process::Runtime::new(address).logs;
            let docker = options.docker.clone();
            let stats = kubelet::stats::Stats::new(&name);
            options.stats = Some(std::sync::Arc::clone(&stats));
            tokio::spawn(std::sync::Arc::clone(&stats).sample(docker.clone()));
            tokio::spawn(async move {
                if let Err(error) = kubelet::server::serve(endpoint, logs, token, docker, stats).await {
                    eprintln!("kubeyard kubelet: cannot serve logs on {endpoint}: {error}");
                }
            });
            let services = crate::informers::Informer::start(kube::Api::all(client.clone()));
            let endpoints = crate::informers::Informer::start(kube::Api::all(client.clone()));
            tokio::spawn(crate::proxy::run(services.clone(), endpoints.clone()));
            let dns = std::net::SocketAddr::new(address.into(), 53);
            tokio::spawn(async move {
                if let Err(error) = crate::dns::serve(dns, services, endpoints).await {
                    eprintln!("kubeyard kubelet: cannot serve DNS on {dns}: {error}");
                }
            });
        }
        let _kubelets = Kubelets::start(client, vec![node], options).await.map_err(|e| e.to_string())?;
        eprintln!("kubeyard kubelet: node {name} registered");
        std::future::pending::<()>().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_pod_networks_are_checked() {
        let parsed = taints("dedicated=gpu:NoSchedule, spot:PreferNoSchedule").unwrap();
        assert_eq!(parsed[0], serde_json::json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
        assert_eq!(parsed[1], serde_json::json!({"key": "spot", "effect": "PreferNoSchedule"}));
        assert!(taints("dedicated=gpu").unwrap_err().contains("no :Effect"));
        assert!(taints("a:Sometimes").unwrap_err().contains("Sometimes"));
        assert_eq!(pod_network("10.200.3.0/24").unwrap(), Ipv4Addr::new(10, 200, 3, 0));
        assert!(pod_network("10.200.3.0/16").is_err());
        assert!(pod_network("10.200.3.7/24").is_err());
        assert!(pairs("zone=a,disk", "--labels").unwrap_err().contains("`disk`"));
    }
}
