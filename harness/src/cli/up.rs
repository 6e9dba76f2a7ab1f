//! `kubeyard up`: a whole cluster in this process (API server, scheduler, controller
//! manager, simulated nodes), or each component in a container of its own
//! (`--containers`), a kubeconfig for kubectl, the manifests applied in plan order, and a
//! live view of the workloads converging, until interrupted (or, in containers, until the
//! cluster is removed under it). The API is served over HTTPS with a token made at start,
//! both in the kubeconfig (written for its owner only), unless `--insecure-http`.

use super::Exit;
use super::inputs::Inputs;
use super::lint::usage_error;
use super::plan::{self, Connection, Target};
use crate::apiserver::kubeconfig;
use crate::client::Client;
use crate::containers::cluster::MAX_NODES;
use crate::containers::{ClusterSpec, ContainerCluster};
use crate::controlplane::{Config, ControlPlane};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kubeyard_compiler::quantity::Quantity;
use kubeyard_compiler::schema::KubernetesVersion;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    inputs: Inputs,

    /// How many simulated nodes to run.
    #[arg(long, default_value_t = 3)]
    nodes: u32,

    /// Each node's capacity, as `resource=quantity` pairs.
    #[arg(long, value_name = "LIST", default_value = "cpu=4,memory=8Gi,pods=110")]
    node_capacity: String,

    /// One node, with its own capacity over --node-capacity (`--node cpu=4,memory=8Gi
    /// --node cpu=16` runs two nodes); repeated, instead of --nodes.
    #[arg(long = "node", value_name = "LIST", conflicts_with = "nodes")]
    node: Vec<String>,

    /// Who may do what: `rbac` (Kubernetes' RBAC authorizer over the stored Roles and
    /// bindings; the kubeconfig's token is system:masters) or `always-allow`.
    #[arg(long, value_name = "MODE", default_value = "always-allow", conflicts_with = "insecure_http")]
    authorization: crate::apiserver::authorization::Mode,

    /// Users by bearer token, as kube-apiserver's static token file:
    /// `token,user,uid,"group1,group2"` per line (in process only).
    #[arg(long, value_name = "FILE", conflicts_with = "containers")]
    token_auth_file: Option<PathBuf>,

    /// Seeds the scheduler's tie-breaking and the simulated delays: the same seed places
    /// every pod on the same node.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Where to write the kubeconfig [default: ~/.kube/kubeyard].
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,

    /// Address for the API server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,

    /// A node whose lease is older than this goes Unknown and is tainted unreachable
    /// (Kubernetes' --node-monitor-grace-period).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::controllers::node_lifecycle::DEFAULT_GRACE.as_secs())]
    node_monitor_grace_period: u64,

    /// With --containers: simulate the pods whose images the local Docker engine does not
    /// have, instead of failing to pull them (ImagePullBackOff).
    #[arg(long, requires = "containers")]
    simulate_absent_images: bool,

    /// Run every component in a Docker container of its own (etcd, API server, scheduler,
    /// controller manager, one per node) on a private network, from images built locally.
    #[arg(long)]
    containers: bool,

    /// With --containers: the etcd binary to package [default: `etcd` on the PATH].
    #[arg(long, value_name = "FILE", requires = "containers")]
    etcd_binary: Option<PathBuf>,

    /// With --containers: run etcd as a cluster of this many members (3 survives the loss
    /// of one); every API server is given every member.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "containers",
          value_parser = clap::value_parser!(u8).range(1..=crate::containers::cluster::MAX_ETCD_MEMBERS as i64))]
    etcd_members: u8,

    /// With --containers: run this many API servers over the same etcd, behind a load
    /// balancer that holds the kubeconfig's address and passes over a server that is down.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "containers",
          value_parser = clap::value_parser!(u8).range(1..=crate::containers::cluster::MAX_API_SERVERS as i64))]
    api_servers: u8,

    /// Serve the API over plain HTTP with no token instead of HTTPS with one: anyone who
    /// can reach the port (every user of this machine) can then read and change
    /// everything, Secrets included.
    #[arg(long)]
    insecure_http: bool,
}

/// `cpu=4,memory=8Gi,pods=110` to a capacity, each quantity checked.
pub(crate) fn capacity(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut capacity = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, quantity) =
            pair.split_once('=').ok_or_else(|| format!("--node-capacity: `{pair}` is not resource=quantity"))?;
        quantity.parse::<Quantity>().map_err(|e| format!("--node-capacity: {name}={quantity}: {e}"))?;
        capacity.insert(name.trim().to_string(), quantity.trim().to_string());
    }
    Ok(capacity)
}

fn default_kubeconfig() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".kube").join("kubeyard")
}

/// Each node's capacity: `--node-capacity` for every node, or per `--node`, over it.
fn capacities(args: &UpArgs) -> Result<Vec<BTreeMap<String, String>>, String> {
    let shared = capacity(&args.node_capacity)?;
    if args.node.is_empty() {
        return Ok(vec![shared; args.nodes as usize]);
    }
    args.node
        .iter()
        .map(|own| {
            let mut merged = shared.clone();
            merged.extend(capacity(own).map_err(|e| e.replacen("--node-capacity", "--node", 1))?);
            Ok(merged)
        })
        .collect()
}

pub fn run(mut args: UpArgs) -> Exit {
    let capacities = match capacities(&args) {
        Ok(capacities) => capacities,
        Err(message) => return usage_error(&message),
    };
    args.nodes = u32::try_from(capacities.len()).unwrap_or(u32::MAX);
    let version = match args.inputs.kubernetes_version.as_deref().map(str::parse::<KubernetesVersion>) {
        Some(Err(error)) => return usage_error(&format!("--kubernetes-version: {error}")),
        Some(Ok(version)) => Some(version),
        None => None,
    };
    let most = if args.containers { MAX_NODES as u32 } else { 2800 };
    if args.nodes == 0 || args.nodes > most {
        return usage_error(&format!("--nodes: between 1 and {most}"));
    }
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    let started = Instant::now();
    if args.containers {
        let mut spec = ClusterSpec::with_nodes(args.nodes as usize);
        spec.seed = args.seed;
        spec.etcd_binary = args.etcd_binary.clone();
        spec.node_grace = Duration::from_secs(args.node_monitor_grace_period);
        spec.insecure_http = args.insecure_http;
        spec.simulate_absent_images = args.simulate_absent_images;
        spec.etcd_members = usize::from(args.etcd_members);
        spec.api_servers = usize::from(args.api_servers);
        spec.kubernetes_version = version.map(|v| v.to_string());
        spec.authorization = args.authorization;
        for (node, capacity) in spec.nodes.iter_mut().zip(&capacities) {
            node.capacity.extend(capacity.clone());
        }
        let progress = |message: &str| eprintln!("kubeyard: {message}");
        // Interrupted while booting, the half-made cluster is dropped, and removes itself.
        let booted = runtime.block_on(async {
            tokio::select! {
                booted = ContainerCluster::boot(&spec, &progress) => Some(booted),
                _ = super::components::interrupted() => None,
            }
        });
        let cluster = match booted {
            Some(Ok(cluster)) => cluster,
            Some(Err(error)) => return usage_error(&error.to_string()),
            None => {
                eprintln!("kubeyard: interrupted; the cluster's containers are removed");
                std::process::exit(130);
            }
        };
        if args.insecure_http {
            eprintln!(
                "kubeyard: warning: --insecure-http: anyone who can reach {} can read every Secret",
                cluster.url()
            );
        }
        // A kube client starts its connection pool on the runtime it is made in.
        let client = match runtime.block_on(async { cluster.client() }) {
            Ok(client) => client,
            Err(error) => return usage_error(&error.to_string()),
        };
        // Removed under us (`kubeyard down`, `docker rm`), the live view would go on
        // showing nothing changing: noticed within a second, it ends the run.
        let gone = async {
            cluster.removed_externally(Duration::from_secs(1)).await;
            format!("cluster {} was removed (its containers are gone); stopping", cluster.id())
        };
        let exit = match serve(&args, &runtime, (&cluster.kubeconfig(), cluster.url()), client, started, gone) {
            Served::Stopped(exit) => exit,
            Served::Removed(message) => {
                eprintln!("kubeyard: {message}");
                cluster.disown();
                return Exit::Usage;
            }
        };
        eprintln!("kubeyard: removing cluster {}", cluster.id());
        if let Err(error) = runtime.block_on(cluster.remove()) {
            return usage_error(&format!("{error}; `kubeyard down --all` removes what is left"));
        }
        return exit;
    }
    let mut config = Config::with_nodes(args.nodes);
    config.seed = args.seed;
    config.listen = args.listen.clone();
    config.node_grace = Duration::from_secs(args.node_monitor_grace_period);
    config.secure = !args.insecure_http;
    config.authorization = args.authorization;
    if let Some(path) = &args.token_auth_file {
        let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
        match read.and_then(|text| crate::apiserver::authorization::read_token_file(&text)) {
            Ok(users) => config.users = std::sync::Arc::new(users),
            Err(error) => return usage_error(&format!("--token-auth-file {}: {error}", path.display())),
        }
    }
    if let Some(version) = version {
        config.version = version;
    }
    for (node, capacity) in config.nodes.iter_mut().zip(&capacities) {
        node.capacity.extend(capacity.clone());
    }
    let plane = match runtime.block_on(ControlPlane::boot(config)) {
        Ok(plane) => plane,
        Err(error) => return usage_error(&error.to_string()),
    };
    eprintln!("kubeyard: {} nodes ready in {:.0?} at {}", args.nodes, started.elapsed(), plane.url());
    if args.insecure_http {
        eprintln!("kubeyard: warning: --insecure-http: anyone who can reach {} can read every Secret", plane.url());
    }
    let served =
        serve(&args, &runtime, (&plane.kubeconfig(), plane.url()), plane.client(), started, std::future::pending());
    // What each component did: the busiest first, where a slow convergence waited.
    eprint!("kubeyard: {}", plane.profile().summary());
    match served {
        Served::Stopped(exit) => exit,
        Served::Removed(message) => usage_error(&message),
    }
}

/// How a run ended.
enum Served {
    /// Interrupted, or failed before the live view.
    Stopped(Exit),
    /// The cluster was removed under the run: why.
    Removed(String),
}

/// Writes the kubeconfig, applies the manifests, and shows the cluster converging until
/// interrupted or until `gone` says the cluster is gone.
fn serve(
    args: &UpArgs,
    runtime: &tokio::runtime::Runtime,
    (kubeconfig, server): (&str, &str),
    client: kube::Client,
    started: Instant,
    gone: impl std::future::Future<Output = String>,
) -> Served {
    let path = args.kubeconfig_out.clone().unwrap_or_else(default_kubeconfig);
    // Owner-only: it holds the token.
    if let Err(error) = kubeconfig::write_text(&path, kubeconfig) {
        return Served::Stopped(usage_error(&format!("cannot write the kubeconfig {}: {error}", path.display())));
    }
    eprintln!("kubeyard: kubeconfig written to {}: export KUBECONFIG={}", path.display(), path.display());

    if !args.inputs.paths.is_empty() {
        // Planning reads the cluster through the kubeconfig just written: its CA and token.
        let connection = Connection { kubeconfig: Some(path.clone()), ..Connection::default() };
        let target = Target { connection, ..Target::default() };
        // Planning reads the cluster through its own small runtime, beside the one that
        // serves it.
        let planned = match plan::make_plan(&args.inputs, &target, true) {
            Ok(planned) => planned,
            Err(exit) => return Served::Stopped(exit),
        };
        let applier = Client::new(client.clone(), server);
        let applied = runtime.block_on(async {
            tokio::select! {
                applied = plan::apply_live(&applier, &planned, &crate::client::apply::Mode::ClientSide) => Some(applied),
                _ = super::components::interrupted() => None,
            }
        });
        match applied {
            Some(Exit::Ok) => {}
            Some(_) => eprintln!("kubeyard: some objects were not applied; the cluster stays up"),
            // Stopped while applying: the cluster goes down as after a live view.
            None => {
                eprintln!();
                eprintln!("kubeyard: stopped");
                return Served::Stopped(Exit::Ok);
            }
        }
    }
    let removed = runtime.block_on(async {
        tokio::select! {
            _ = watch_progress(client, started) => None,
            _ = super::components::interrupted() => None,
            why = gone => Some(why),
        }
    });
    eprintln!();
    match removed {
        Some(why) => Served::Removed(why),
        None => {
            eprintln!("kubeyard: stopped");
            Served::Stopped(Exit::Ok)
        }
    }
}

/// What the cluster looks like now, in one line.
#[derive(Default, PartialEq, Eq)]
struct Progress {
    nodes: (usize, usize),
    pending: usize,
    scheduled: usize,
    running: usize,
    ready: usize,
    failed: usize,
    deployments: (usize, usize),
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nodes {}/{} ready · pods: {} pending, {} scheduled, {} running, {} ready",
            self.nodes.0, self.nodes.1, self.pending, self.scheduled, self.running, self.ready
        )?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        write!(f, " · deployments {}/{} available", self.deployments.0, self.deployments.1)
    }
}

async fn progress(client: &kube::Client) -> Result<Progress, kube::Error> {
    let mut progress = Progress::default();
    for node in Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items {
        let ready = crate::kubelet::node_ready(&node);
        progress.nodes.1 += 1;
        progress.nodes.0 += usize::from(ready);
    }
    for pod in Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let ready = crate::controllers::pods::is_ready(&pod);
        let status = pod.status.unwrap_or_default();
        match status.phase.as_deref() {
            Some("Running") if ready => progress.ready += 1,
            Some("Running") => progress.running += 1,
            Some("Failed") => progress.failed += 1,
            Some("Succeeded") => {}
            _ if bound => progress.scheduled += 1,
            _ => progress.pending += 1,
        }
    }
    for deployment in Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await?.items {
        let available = deployment
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True");
        progress.deployments.1 += 1;
        progress.deployments.0 += usize::from(available);
    }
    Ok(progress)
}

/// Shows the progress line, in place on a terminal, and says once when all has converged.
async fn watch_progress(client: kube::Client, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let mut last = None;
    let mut converged = false;
    loop {
        if let Ok(now) = progress(&client).await {
            let settled = now.pending + now.scheduled + now.running == 0 && now.deployments.0 == now.deployments.1;
            if last.as_ref() != Some(&now) {
                if terminal {
                    eprint!("\r\x1b[K{now}");
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("{now}");
                }
                last = Some(now);
            }
            if settled && !converged {
                let newline = if terminal { "\n" } else { "" };
                eprintln!(
                    "{newline}kubeyard: converged {:.1?} after start; Ctrl-C stops the cluster",
                    started.elapsed()
                );
                converged = true;
            } else if !settled {
                converged = false;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_checked_quantities() {
        let parsed = capacity("cpu=8, memory=16Gi,pods=50").unwrap();
        assert_eq!(parsed["memory"], "16Gi");
        assert_eq!(parsed.len(), 3);
        assert!(capacity("cpu").unwrap_err().contains("not resource=quantity"));
        assert!(capacity("cpu=lots").unwrap_err().contains("cpu=lots"));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    fn parse(args: &[&str]) -> Result<UpArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("up").chain(args.iter().copied())).map(|cli| cli.up)
    }

    #[test]
    fn each_node_flag_is_a_node_with_its_own_capacity() {
        let args = parse(&["--node-capacity", "cpu=2,memory=4Gi", "--node", "cpu=16", "--node", "memory=1Gi"]).unwrap();
        let each = capacities(&args).unwrap();
        assert_eq!(each.len(), 2);
        assert_eq!((each[0]["cpu"].as_str(), each[0]["memory"].as_str()), ("16", "4Gi"));
        assert_eq!((each[1]["cpu"].as_str(), each[1]["memory"].as_str()), ("2", "1Gi"));
        let shared = capacities(&parse(&["--nodes", "3"]).unwrap()).unwrap();
        assert_eq!(shared.len(), 3);
        assert_eq!(shared[2]["pods"], "110");
        let bad = capacities(&parse(&["--node", "cpu=lots"]).unwrap()).unwrap_err();
        assert!(bad.starts_with("--node: cpu=lots"), "{bad}");
        assert!(parse(&["--nodes", "2", "--node", "cpu=1"]).is_err(), "one or the other");
    }
}
