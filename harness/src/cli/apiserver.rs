//! `kubeyard apiserver`: the Kubernetes API over kubeyard's store, for kubectl and any
//! client, until interrupted.

use super::Exit;
use super::lint::usage_error;
use crate::apiserver::{
    ApiServer, MAX_CONNECTIONS, Options, default_max_connections, kubeconfig, kubernetes_service, objects, tls,
};
use crate::store::Store;
use crate::store::etcd::EtcdStore;
use crate::store::memory::{DEFAULT_HISTORY, HistoryLimits, MemoryStore};
use clap::Args;
use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::{CatalogOptions, KubernetesVersion};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ApiServerArgs {
    /// Address to listen on (port 0 picks a free port). Plain HTTP: keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,

    /// Keep state here, durably (a write-ahead log and snapshots); without it, state
    /// lives in memory only.
    #[arg(long, value_name = "DIR", conflicts_with = "etcd")]
    data_dir: Option<PathBuf>,

    /// Keep state in this etcd (v3, through its JSON gateway), as Kubernetes does: one
    /// member's URL, or every member's separated by commas (as `--etcd-servers`); a
    /// request or watch whose member goes away moves on to the next. Other API servers
    /// may share it.
    #[arg(long, value_name = "URL[,URL...]")]
    etcd: Option<String>,

    /// How many API servers share the --etcd (kube-apiserver's `--apiserver-count`): above
    /// 1, this one follows the others' writes of what it keeps in memory, allocates
    /// Service addresses under a lock in etcd and lists every live server in the
    /// `kubernetes` Service.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "etcd")]
    apiserver_count: u32,

    /// How long to wait for etcd to answer at start (it may be starting beside us).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    etcd_wait: u64,

    /// Require `Authorization: Bearer TOKEN` on every request but health checks.
    #[arg(long)]
    token: Option<String>,

    /// Serve HTTPS, with a certificate authority made at start (its certificate goes
    /// into the kubeconfig). kubectl sends a token only over HTTPS.
    #[arg(long)]
    tls: bool,

    /// Credentials from files (a container cluster's API server is given them so).
    #[command(flatten)]
    files: super::components::ApiServerFiles,

    /// The address pods reach this server at: the `kubernetes` Service's endpoint
    /// (`KUBERNETES_SERVICE_HOST` in every pod). [default: the listening address, unless
    /// it is loopback or unspecified, when the Service has no endpoints]
    #[arg(long, value_name = "IP")]
    advertise_address: Option<std::net::IpAddr>,

    /// Sign service account tokens with this key (PEM, PKCS#8, EC P-256), so tokens
    /// outlive a restart [default: a key made at start].
    #[arg(long, value_name = "FILE")]
    service_account_signing_key_file: Option<PathBuf>,

    /// Admission plugins to turn off, as kube-apiserver's flag: `ServiceAccount` (pods
    /// then need no service account, for a server run without a controller manager).
    #[arg(long, value_name = "PLUGINS", value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,

    /// Who may do what: `rbac` (Kubernetes' RBAC authorizer over the stored Roles and
    /// bindings; the cluster's token is system:masters) or `always-allow`.
    #[arg(long, value_name = "MODE", default_value = "always-allow")]
    authorization: crate::apiserver::authorization::Mode,

    /// Users by bearer token, as kube-apiserver's static token file:
    /// `token,user,uid,"group1,group2"` per line.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<std::path::PathBuf>,

    /// How long pods tolerate a node that is not ready before they are evicted, unless
    /// they say (the DefaultTolerationSeconds admission plugin).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    default_not_ready_toleration_seconds: u64,

    /// How long pods tolerate an unreachable node before they are evicted, unless they say.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    default_unreachable_toleration_seconds: u64,

    /// Write a kubeconfig for this server here.
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,

    /// The Kubernetes version whose schemas and defaults admission uses.
    #[arg(long, value_name = "VERSION")]
    kubernetes_version: Option<String>,

    /// Watch events kept for watchers resuming from an older resourceVersion (the
    /// embedded store; etcd keeps what its own compaction leaves).
    #[arg(long, default_value_t = DEFAULT_HISTORY)]
    history: usize,

    /// The watch history's memory budget, as a quantity (`512Mi`) or bytes: large objects
    /// leave fewer events in it (the embedded store).
    #[arg(long, value_name = "BYTES", default_value = "1Gi", value_parser = bytes_quantity)]
    watch_history_bytes: usize,

    /// Client connections served at once; past it health checks are still answered
    /// and other requests get 429. Default: 4096, or fewer when the open-files limit
    /// (raised to its hard limit at start) leaves less room.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

/// A byte count written as a Kubernetes quantity (`256Mi`, `1G`, `1048576`).
fn bytes_quantity(text: &str) -> Result<usize, String> {
    let quantity: kubeyard_compiler::quantity::Quantity =
        text.parse().map_err(|e| format!("{text} is not a quantity: {e}"))?;
    if quantity.is_negative() {
        return Err(format!("{text} is negative"));
    }
    usize::try_from(quantity.units_ceil()).map_err(|_| format!("{text} is too large"))
}

pub fn run(args: ApiServerArgs) -> Exit {
    let version = match args.kubernetes_version.as_deref().map(str::parse::<KubernetesVersion>).transpose() {
        Ok(version) => version.unwrap_or_else(KubernetesVersion::latest),
        Err(error) => return usage_error(&error.to_string()),
    };
    let admission = match Admission::new(CatalogOptions { version, ..CatalogOptions::default() }) {
        Ok(admission) => admission,
        Err(error) => return usage_error(&error.to_string()),
    };
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    let (token, etcd_tls) = match (args.files.token(args.token.clone()), args.files.etcd_tls()) {
        (Ok(token), Ok(etcd_tls)) => (token, etcd_tls),
        (Err(message), _) | (_, Err(message)) => return usage_error(&message),
    };
    for plugin in &args.disable_admission_plugins {
        if plugin != crate::apiserver::serviceaccount::PLUGIN {
            return usage_error(&format!(
                "--disable-admission-plugins: {plugin} is not a plugin kubeyard can turn off (ServiceAccount)"
            ));
        }
    }
    let signer = match &args.service_account_signing_key_file {
        None => crate::apiserver::tokens::Signer::generate(),
        Some(path) => super::components::read_credential(path, "--service-account-signing-key-file").and_then(|pem| {
            crate::apiserver::tokens::Signer::from_pem(&pem)
                .map_err(|e| format!("--service-account-signing-key-file {}: {e}", path.display()))
        }),
    };
    let signer = match signer {
        Ok(signer) => Arc::new(signer),
        Err(message) => return usage_error(&message),
    };
    crate::apiserver::raise_open_files_limit();
    let limits = HistoryLimits { events: args.history, bytes: args.watch_history_bytes };
    let max_connections = match args.max_connections {
        Some(n) => usize::try_from(n).unwrap_or(MAX_CONNECTIONS),
        None => default_max_connections(),
    };
    runtime.block_on(async move {
        let store: Arc<dyn Store> = match (&args.data_dir, &args.etcd) {
            (_, Some(url)) => {
                let started = std::time::Instant::now();
                loop {
                    match EtcdStore::connect_with(url, etcd_tls.as_ref()).await {
                        Ok(store) => break Arc::new(store),
                        Err(error) if started.elapsed().as_secs() >= args.etcd_wait => {
                            return usage_error(&format!("cannot use etcd at {url}: {error}"));
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    }
                }
            }
            (Some(dir), None) => match MemoryStore::open_with(dir, limits) {
                Ok(store) => Arc::new(store),
                Err(error) => return usage_error(&error.to_string()),
            },
            (None, None) => Arc::new(MemoryStore::with_limits(limits)),
        };
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(listener) => listener,
            Err(error) => return usage_error(&format!("cannot listen on {}: {error}", args.listen)),
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(error) => return usage_error(&error.to_string()),
        };
        // Anyone who can reach a non-loopback address can read every Secret without one.
        if token.is_none() && !address.ip().is_loopback() {
            eprintln!(
                "kubeyard: warning: serving the API on {address} without --token: anyone who can reach it can read every Secret"
            );
        }
        if args.authorization == crate::apiserver::authorization::Mode::Rbac && token.is_none() {
            return usage_error(
                "--authorization rbac needs --token: the components and the administrator authenticate with it (as system:masters); without it every request would be anonymous",
            );
        }
        let users = match &args.token_auth_file {
            None => Default::default(),
            Some(path) => match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| {
                crate::apiserver::authorization::read_token_file(&t)
            }) {
                Ok(users) => users,
                Err(error) => return usage_error(&format!("--token-auth-file {}: {error}", path.display())),
            },
        };
        let options = Options {
            authorization: args.authorization,
            users: Arc::new(users),
            token: token.clone(),
            max_connections,
            service_account_signer: signer,
            disabled_admission_plugins: args.disable_admission_plugins.clone(),
            default_toleration_seconds: crate::apiserver::DefaultTolerations {
                not_ready: args.default_not_ready_toleration_seconds,
                unreachable: args.default_unreachable_toleration_seconds,
            },
            // Other API servers share the store (`up --containers --api-servers 2`).
            shared_store: args.etcd.is_some() && args.apiserver_count > 1,
            ..Options::default()
        };
        let server = ApiServer::new(store, admission, options);
        if server.options.shared_store {
            tokio::spawn(crate::apiserver::peers::follow(Arc::clone(&server)));
        }
        if let Err(error) = objects::bootstrap(&server).await {
            return usage_error(&format!("cannot create what the cluster starts with: {}", error.message));
        }
        let advertise = std::net::SocketAddr::new(args.advertise_address.unwrap_or(address.ip()), address.port());
        if let Err(error) = kubernetes_service::reconcile(&server, address.port(), Some(advertise)).await {
            return usage_error(&format!("cannot create the kubernetes Service: {}", error.message));
        }
        let identity = match args.files.identity() {
            Ok(Some(identity)) => Ok(Some(identity)),
            Ok(None) => {
                let mut names = vec![address.ip().to_string()];
                names.extend(kubernetes_service::serving_names(&server.options.service_cidr));
                args.tls.then(|| tls::self_signed(&names)).transpose()
            }
            Err(error) => Err(error),
        };
        let identity = match identity {
            Ok(identity) => identity,
            Err(error) => return usage_error(&error),
        };
        let scheme = if identity.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{address}");
        if let Some(path) = &args.kubeconfig_out {
            let ca = identity.as_ref().map(|i| i.ca_pem.as_str());
            if let Err(error) = kubeconfig::write(path, &url, token.as_deref(), ca) {
                return usage_error(&format!("cannot write {}: {error}", path.display()));
            }
            eprintln!("kubeyard: kubeconfig written to {}", path.display());
        }
        eprintln!("kubeyard: API server listening on {url}");
        // Its `kubernetes` Service is kept while it serves (made again if deleted).
        let keep = kubernetes_service::keep(Arc::clone(&server), address.port(), Some(advertise));
        tokio::spawn(keep);
        let serving = async {
            match &identity {
                Some(identity) => server.serve_tls(listener, identity).await,
                None => server.serve(listener).await,
            }
        };
        tokio::select! {
            served = serving => match served {
                Ok(()) => Exit::Ok,
                Err(error) => usage_error(&format!("the server stopped: {error}")),
            },
            _ = super::components::interrupted() => Exit::Ok,
        }
    })
}
