//! A whole control plane in one process: the API server over the embedded store, the
//! scheduler, the controller manager and the node agents, each talking to the API server
//! over HTTP with its own client, exactly as when they run apart. `kubeyard up` and the
//! tests boot it; dropping it stops everything. `Config::secure` serves HTTPS and wants a
//! token (what `kubeyard up` does): the components' client carries both.

use crate::apiserver::{self, ApiServer, objects, tls};
use crate::clock::Clock;
use crate::controller_manager;
use crate::controllers::node_lifecycle;
use crate::kubelet::simulate::Delays;
use crate::kubelet::{self, Kubelets, NodeConfig};
use crate::scheduler;
use crate::store::memory::MemoryStore;
use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::{CatalogOptions, KubernetesVersion};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: Vec<NodeConfig>,
    /// Seeds the scheduler's tie-breaking and the runtime's delays.
    pub seed: u64,
    pub clock: Clock,
    pub delays: Delays,
    /// Where the API server listens (`127.0.0.1:0`: a free port).
    pub listen: String,
    pub version: KubernetesVersion,
    /// `--node-monitor-grace-period`.
    pub node_grace: Duration,
    /// Serve HTTPS (a CA made at boot signs a certificate for the listening address) and
    /// want a token made at boot, as `kubeyard up` does: otherwise anyone on the machine
    /// reaches the API, Secrets and all. Off for tests that speak plain HTTP.
    pub secure: bool,
    /// How long pods stay on a node that is not ready or unreachable before they are
    /// evicted, unless they say (the API server's `--default-*-toleration-seconds`).
    pub default_toleration_seconds: u64,
    /// Who may do what (`kubeyard up --authorization rbac`), and users by token.
    pub authorization: apiserver::authorization::Mode,
    pub users: Arc<std::collections::HashMap<String, kubeyard_compiler::rbac::User>>,
}

impl Config {
    /// `count` nodes named `node-1`... with the default capacity.
    pub fn with_nodes(count: u32) -> Config {
        Config {
            nodes: (1..=count).map(|i| NodeConfig::new(&format!("node-{i}"), i)).collect(),
            seed: 0,
            clock: Clock::real(),
            delays: Delays::default(),
            listen: "127.0.0.1:0".into(),
            version: KubernetesVersion::latest(),
            node_grace: node_lifecycle::DEFAULT_GRACE,
            secure: false,
            default_toleration_seconds: 300,
            authorization: apiserver::authorization::Mode::default(),
            users: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the schemas do not load: {0}")]
    Schemas(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot create what the cluster starts with (its namespaces, its StorageClass): {0}")]
    Namespace(String),
    #[error("cannot make a client: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Kubelet(#[from] kubelet::Error),
    #[error("{0}")]
    Credentials(String),
}

pub struct ControlPlane {
    url: String,
    client: kube::Client,
    clock: Clock,
    kubelets: Kubelets,
    server: std::sync::Mutex<JoinHandle<()>>,
    store: Arc<MemoryStore>,
    address: std::net::SocketAddr,
    version: KubernetesVersion,
    /// With `Config::secure`: the token and what the server serves with.
    token: Option<String>,
    identity: Option<Arc<tls::Identity>>,
    scheduler: JoinHandle<()>,
    nodes_seen: scheduler::NodesSeen,
    names: Arc<apiserver::names::Names>,
    default_tolerations: apiserver::DefaultTolerations,
    authorization: apiserver::authorization::Mode,
    users: Arc<std::collections::HashMap<String, kubeyard_compiler::rbac::User>>,
    profile: Arc<crate::profile::Profile>,
    _controllers: JoinSet<()>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner).abort();
        self.scheduler.abort();
    }
}

impl ControlPlane {
    /// Boots everything and returns once every node is registered and ready.
    pub async fn boot(config: Config) -> Result<ControlPlane, Error> {
        let admission = Admission::new(CatalogOptions { version: config.version, ..CatalogOptions::default() })
            .map_err(|e| Error::Schemas(e.to_string()))?;
        let token = config.secure.then(tls::token).transpose().map_err(Error::Credentials)?;
        let seconds = config.default_toleration_seconds;
        // Generated names come from the seed, so a seeded run names its pods alike.
        let names = Arc::new(apiserver::names::Names::seeded(config.seed));
        let profile = Arc::new(crate::profile::Profile::default());
        let options = apiserver::Options {
            clock: config.clock.clone(),
            token: token.clone(),
            default_toleration_seconds: apiserver::DefaultTolerations { not_ready: seconds, unreachable: seconds },
            names: Arc::clone(&names),
            authorization: config.authorization,
            users: Arc::clone(&config.users),
            profile: Some(Arc::clone(&profile)),
            ..apiserver::Options::default()
        };
        let store = Arc::new(MemoryStore::new());
        let server = ApiServer::new(Arc::clone(&store) as Arc<dyn crate::store::Store>, admission, options);
        objects::bootstrap(&server).await.map_err(|e| Error::Namespace(e.message))?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| Error::Listen { address: config.listen.clone(), source })?;
        let address =
            listener.local_addr().map_err(|source| Error::Listen { address: config.listen.clone(), source })?;
        // Pods are simulated here: the Service has no endpoints (a loopback address is none).
        apiserver::kubernetes_service::reconcile(&server, address.port(), None)
            .await
            .map_err(|e| Error::Namespace(e.message))?;
        let identity = match config.secure {
            true => {
                let mut names = vec![address.ip().to_string()];
                names.extend(apiserver::kubernetes_service::serving_names(&server.options.service_cidr));
                Some(Arc::new(tls::self_signed(&names).map_err(Error::Credentials)?))
            }
            false => None,
        };
        let url = format!("{}://{address}", if identity.is_some() { "https" } else { "http" });
        let server = tokio::spawn(serve(server, listener, identity.clone()));
        // Each component is its own client, named as in a real cluster's managedFields.
        let component = |product| client(&url, token.as_deref(), identity.as_deref(), product);
        let client = component("kubeyard")?;
        let lifecycle = node_lifecycle::Options { clock: config.clock.clone(), grace: config.node_grace };
        let root_ca = identity.as_ref().map(|identity| identity.ca_pem.clone());
        let controllers =
            controller_manager::start(component(CONTROLLER_MANAGER)?, lifecycle, root_ca, Arc::clone(&profile));
        let kubelet_options = kubelet::Options {
            clock: config.clock.clone(),
            seed: config.seed,
            delays: config.delays.clone(),
            renew_interval: node_lifecycle::renew_interval(config.node_grace),
            ..kubelet::Options::default()
        };
        let kubelets = Kubelets::start(component(KUBELET)?, config.nodes.clone(), kubelet_options).await?;
        // Started once the nodes are registered, so its first list holds them all and a
        // seed's placement does not depend on which node registered first.
        let nodes_seen = scheduler::NodesSeen::default();
        let scheduler = tokio::spawn(crate::profile::scope(
            Arc::clone(&profile),
            scheduler::run_seen(component(SCHEDULER)?, config.seed, nodes_seen.clone(), config.clock.clone()),
        ));
        Ok(ControlPlane {
            url,
            client,
            clock: config.clock,
            kubelets,
            server: std::sync::Mutex::new(server),
            store,
            address,
            version: config.version,
            token,
            identity,
            scheduler,
            nodes_seen,
            names,
            default_tolerations: apiserver::DefaultTolerations { not_ready: seconds, unreachable: seconds },
            authorization: config.authorization,
            users: config.users,
            profile,
            _controllers: controllers,
        })
    }

    /// The API server process dies and starts again on the same port over the same store,
    /// as when its container restarts: every client sees its connections fail, and its
    /// watches start again from where they were.
    pub async fn restart_api_server(&self) -> Result<(), Error> {
        self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner).abort();
        let admission = Admission::new(CatalogOptions { version: self.version, ..CatalogOptions::default() })
            .map_err(|e| Error::Schemas(e.to_string()))?;
        let options = apiserver::Options {
            clock: self.clock.clone(),
            token: self.token.clone(),
            names: Arc::clone(&self.names),
            default_toleration_seconds: self.default_tolerations,
            authorization: self.authorization,
            users: Arc::clone(&self.users),
            profile: Some(Arc::clone(&self.profile)),
            ..apiserver::Options::default()
        };
        let server = ApiServer::new(Arc::clone(&self.store) as Arc<dyn crate::store::Store>, admission, options);
        // The CRDs it holds are served again before its first request.
        apiserver::crds::load(&server).await;
        let mut attempts = 0;
        let listener = loop {
            // The old listener closes as its task ends: the port comes free a moment later.
            match tokio::net::TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(source) => return Err(Error::Listen { address: self.address.to_string(), source }),
            }
        };
        let task = tokio::spawn(serve(server, listener, self.identity.clone()));
        *self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = task;
        Ok(())
    }

    /// What the store holds: its live keys and their bytes, and its watch history (for
    /// the benchmark's account of where memory goes).
    pub fn store_usage(&self) -> ((usize, usize), crate::store::memory::HistoryUsage) {
        (self.store.usage(), self.store.history())
    }

    /// The store's revision: it moves with every write, so a test can tell a cluster at
    /// work from an idle one.
    pub async fn revision(&self) -> u64 {
        use crate::store::Store;
        self.store.revision().await.unwrap_or(0)
    }

    /// Tells `notify` of every write to the store under `prefix` (a kind's keys) until
    /// the returned task is dropped or aborted: a test's signal that something it waits
    /// on changed, read from the store itself rather than from a watch over HTTP (which
    /// decodes every object, and at 100,000 pods fell out of the history and listed
    /// them all again). Should this watch fall out of the history, it tells `notify`
    /// and starts again from the store's revision: a signal needs no missed event.
    pub fn notify_writes(&self, prefix: String, notify: Arc<tokio::sync::Notify>) -> JoinHandle<()> {
        use crate::store::Store;
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            loop {
                if let Ok(revision) = store.revision().await
                    && let Ok(mut watch) = store.watch(&prefix, revision).await
                {
                    while let Some(event) = watch.recv().await {
                        notify.notify_one();
                        if event.is_err() {
                            break;
                        }
                    }
                }
                // Whatever ended the watch (its history gone, the store failing), what it
                // may have missed is a change; look again shortly, never in a spin.
                notify.notify_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Lets `duration` pass on a manual clock, in steps of at most 5 s with a moment of
    /// real time between them: components that act periodically (kubelets renewing
    /// leases every 10 s) keep up, as they would in real time, so a jump does not make
    /// every healthy node look silent.
    pub async fn advance(&self, duration: Duration) {
        let step = Duration::from_secs(5);
        let mut left = duration;
        while !left.is_zero() {
            let now = left.min(step);
            self.clock.advance(now);
            left -= now;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What the controllers and the scheduler did so far (`Profile::summary`).
    pub fn profile(&self) -> &Arc<crate::profile::Profile> {
        &self.profile
    }

    /// How far the scheduler's view of the nodes has come.
    pub fn scheduler_nodes_seen(&self) -> &scheduler::NodesSeen {
        &self.nodes_seen
    }

    pub fn kubelets(&self) -> &Kubelets {
        &self.kubelets
    }

    /// A kubeconfig for kubectl and any client: the URL, and the CA and token when secure.
    pub fn kubeconfig(&self) -> String {
        let ca = self.identity.as_ref().map(|i| i.ca_pem.as_str());
        apiserver::kubeconfig::render(&self.url, self.token.as_deref(), ca)
    }

    /// The token clients must send, when secure.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Serves the API, over TLS when there is an identity, until the task is aborted.
async fn serve(server: Arc<ApiServer>, listener: tokio::net::TcpListener, identity: Option<Arc<tls::Identity>>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    // Its `kubernetes` Service is kept while it serves (made again if deleted).
    let keep = apiserver::kubernetes_service::keep(Arc::clone(&server), port, None);
    let serving = async {
        let _ = match identity {
            Some(identity) => server.serve_tls(listener, &identity).await,
            None => server.serve(listener).await,
        };
    };
    tokio::select! {
        () = serving => {}
        () = keep => {}
    }
}

/// The User-Agent products of the components: the API server names the field manager of
/// a write after it (`kubectl get -o yaml --show-managed-fields` shows who owns what).
pub const SCHEDULER: &str = "kube-scheduler";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBELET: &str = "kubelet";

/// The `User-Agent` header of a component whose product is `product`, in Kubernetes'
/// form (`kube-scheduler/v1.32.0 (linux/amd64) kubernetes/...`): the product, then our version.
pub fn user_agent(product: &str) -> (http::HeaderName, http::HeaderValue) {
    let text = format!("{product}/v{} (kubeyard)", env!("CARGO_PKG_VERSION"));
    let value = http::HeaderValue::from_str(&text).unwrap_or_else(|_| http::HeaderValue::from_static("kubeyard"));
    (http::header::USER_AGENT, value)
}

/// A component's client: trusting the server's CA and sending the token, when secure,
/// and its User-Agent.
fn client(
    url: &str,
    token: Option<&str>,
    identity: Option<&tls::Identity>,
    product: &str,
) -> Result<kube::Client, Error> {
    let mut config = kube::Config::new(url.parse().map_err(|_| Error::Namespace(url.to_string()))?);
    config.headers.push(user_agent(product));
    if let Some(identity) = identity {
        use rustls_pki_types::pem::PemObject;
        let ders = rustls_pki_types::CertificateDer::pem_slice_iter(identity.ca_pem.as_bytes())
            .map(|cert| cert.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Credentials(format!("the CA is not PEM: {e}")))?;
        config.root_cert = Some(ders);
    }
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    Ok(kube::Client::try_from(config)?)
}
