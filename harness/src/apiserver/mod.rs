//! The API server: the Kubernetes REST API over a `Store`, for kubectl, kube-rs, the
//! Python client and kubeyard's own components. Every write goes through admission
//! (the compiler's validation and defaulting); every read and watch comes from the
//! store. Paths are parsed here, each verb is handled in `objects`, watches in
//! `watch`, kubectl's tables in `table`, field selectors in `fields`. Connections are
//! accepted here too, with the limits a server facing any client needs (see `serve`).

pub mod allocate;
mod apply;
pub mod authorization;
mod conversion;
pub mod crds;
pub mod eviction;
mod exec;
mod exec_spdy;
pub mod fields;
pub mod kubeconfig;
pub mod kubernetes_service;
mod logs;
mod metrics;
pub mod names;
pub mod objects;
pub mod openapi;
pub mod peers;
mod policies;
mod portforward;
mod protobuf;
mod proxy;
mod quota;
pub mod resources;
pub mod serviceaccount;
mod spdy;
pub mod status;
mod stored;
pub mod table;
pub mod tls;
pub mod tokens;
pub mod watch;
mod webhook_client;
mod webhooks;

use crate::store::Store;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kubeyard_compiler::admission::Admission;
use resources::Resource;
use serde_json::{Value, json};
use status::ApiError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The API server's limit on a request body (etcd's 1.5 MiB object limit plus room for
/// encoding, as Kubernetes sets it: 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

pub struct Options {
    /// Clients must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How long a watch lasts when the client does not say (Kubernetes: 30 to 60 min).
    pub watch_timeout: Duration,
    /// Creation and deletion timestamps come from it, so grace periods run on virtual time.
    pub clock: crate::clock::Clock,
    /// The addresses Services' cluster IPs come from (`--service-cluster-ip-range`).
    pub service_cidr: String,
    /// How long a client has to send a request's headers, from the connection's opening
    /// (TLS handshake included) or from the first byte of a later request: a client
    /// sending them a byte at a time is cut off (Kubernetes: 32 s).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request (Kubernetes: 90 s).
    /// A response still being sent, a watch above all, is not idle.
    pub idle_timeout: Duration,
    /// Connections served at once. Past it a few more are accepted that get health
    /// checks answered and anything else a 429, then connections are closed on accept.
    pub max_connections: usize,
    /// Signs service account tokens, and checks them (`--service-account-signing-key-file`).
    pub service_account_signer: Arc<tokens::Signer>,
    /// Admission plugins turned off (`--disable-admission-plugins`): `ServiceAccount`.
    pub disabled_admission_plugins: Vec<String>,
    /// The tolerations the DefaultTolerationSeconds plugin gives pods for a node that is
    /// not ready and one that is unreachable (`--default-not-ready-toleration-seconds`,
    /// `--default-unreachable-toleration-seconds`: 300 each).
    pub default_toleration_seconds: DefaultTolerations,
    /// What `generateName` appends: random, or drawn from the cluster's seed.
    pub names: Arc<names::Names>,
    /// Who may do what: everyone authenticated everything, or RBAC (`--authorization`).
    pub authorization: authorization::Mode,
    /// Users by bearer token (`--token-auth-file`).
    pub users: Arc<std::collections::HashMap<String, kubeyard_compiler::rbac::User>>,
    /// Other API servers may write the same store (an etcd): what the server keeps from
    /// the store follows the store's events (`peers`), Service allocation takes a lock in
    /// the store (`allocate`), and the `kubernetes` Service lists every live server
    /// (`kubernetes_service`).
    pub shared_store: bool,
    /// Where each request is counted, by verb and resource (`apiserver/patch
    /// pods/status`), with the control plane's components: the API server is what they
    /// all wait on, so its share of a slow convergence belongs in the same table.
    pub profile: Option<Arc<crate::profile::Profile>>,
}

/// The DefaultTolerationSeconds plugin's two durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultTolerations {
    pub not_ready: u64,
    pub unreachable: u64,
}

impl Default for DefaultTolerations {
    fn default() -> Self {
        DefaultTolerations { not_ready: 300, unreachable: 300 }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            clock: crate::clock::Clock::real(),
            service_cidr: allocate::DEFAULT_SERVICE_CIDR.to_string(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
            service_account_signer: Arc::new(
                // Only the system's random source failing stops this, and then nothing
                // else would work either.
                tokens::Signer::generate().expect("the system's random source gives a key"),
            ),
            disabled_admission_plugins: Vec::new(),
            default_toleration_seconds: DefaultTolerations::default(),
            names: Arc::new(names::Names::random()),
            authorization: authorization::Mode::default(),
            users: Arc::default(),
            shared_store: false,
            profile: None,
        }
    }
}

/// Shorter than Kubernetes' 32 s: a slow-header flood holds its sockets a third as long,
/// and no real client needs seconds to send headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Go's and Kubernetes' idle timeout: clients' pools (client-go's, 90 s too) close first.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The connection cap when file descriptors allow it: room for every component of a
/// large test cluster and hundreds of watches, small enough that each connection's
/// buffers stay a fraction of memory.
pub const MAX_CONNECTIONS: usize = 4096;
/// Descriptors left for everything but client connections (the store's files, etcd and
/// kubelet connections, the over-cap health-check slots), at most half the limit.
const RESERVED_FILES: usize = 256;

/// `MAX_CONNECTIONS`, or fewer when the process may not open that many files: running
/// out of descriptors would stop the server accepting anything, `/readyz` included.
pub fn default_max_connections() -> usize {
    let files = open_files_limit();
    files.saturating_sub(RESERVED_FILES.min(files / 2)).clamp(1, MAX_CONNECTIONS)
}

/// Raises the soft limit on open files to the hard one, as Go programs (kube-apiserver
/// among them) do at start: the soft limit is often 1,024, a few hundred watches.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            // Failing leaves the limit as it was, and the connection cap follows it.
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The process's soft limit on open files.
pub fn open_files_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !read || limit.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub admission: Admission,
    pub options: Options,
    /// The kinds CustomResourceDefinitions add (see `crds`).
    pub resources: resources::Registry,
    /// The CRDs whose objects are being deleted (see `crds::cleanup`).
    crd_cleanups: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Itself, for the tasks it starts.
    me: std::sync::Weak<ApiServer>,
    /// OpenAPI documents, built on first use for the served kinds of one generation.
    openapi: std::sync::Mutex<Option<(u64, Arc<openapi::Documents>)>>,
    /// Services' cluster IPs and node ports (see `allocate`).
    allocator: allocate::Allocator,
    /// Pod creates in namespaces with quotas, one at a time (see `quota`).
    quota_locks: quota::Locks,
    /// Large objects' JSON for watches' initial events, shared (see `watch`).
    shared_objects: watch::SharedObjects,
    /// The ValidatingAdmissionPolicies enforced (see `policies`).
    policies: policies::Policies,
    /// The admission webhooks called (see `webhooks`).
    webhooks: webhooks::Webhooks,
    /// The RBAC objects, for the authorizer (see `authorization`).
    policy_cache: authorization::PolicyCache,
}

/// The Kubernetes version the server reports, from the schemas it admits with.
pub fn version_info(admission: &Admission) -> Value {
    let version = admission.catalog().version();
    let text = version.to_string();
    let minor = text.rsplit('.').next().unwrap_or("0").to_string();
    json!({
        "major": "1",
        "minor": minor,
        "gitVersion": format!("v{text}.0-kubeyard"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, admission: Admission, options: Options) -> Arc<ApiServer> {
        let allocator = allocate::Allocator::new(&options.service_cidr);
        Arc::new_cyclic(|me| ApiServer {
            store,
            admission,
            options,
            resources: resources::Registry::default(),
            crd_cleanups: std::sync::Mutex::default(),
            me: me.clone(),
            openapi: std::sync::Mutex::new(None),
            allocator,
            quota_locks: quota::Locks::default(),
            shared_objects: watch::SharedObjects::default(),
            policies: policies::Policies::default(),
            webhooks: webhooks::Webhooks::default(),
            policy_cache: authorization::PolicyCache::default(),
        })
    }

    /// The OpenAPI documents of what is served now, built again after a CRD changed it.
    fn openapi_documents(&self, served: &resources::Served) -> Arc<openapi::Documents> {
        let mut cached = self.openapi.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((generation, documents)) if *generation == served.generation => Arc::clone(documents),
            _ => {
                let documents = Arc::new(openapi::documents(self.admission.catalog(), served));
                *cached = Some((served.generation, Arc::clone(&documents)));
                documents
            }
        }
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(Arc::clone(self))
    }

    /// Serves until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        serving::serve(listener, self.router(), serving::Limits::from(&self.options), None).await
    }

    /// Serves HTTPS with `identity` (see `tls::self_signed`).
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        identity: &tls::Identity,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&identity.config));
        serving::serve(listener, self.router(), serving::Limits::from(&self.options), Some(acceptor)).await
    }
}

/// Accepting and serving connections, bounded: a connection cap (and health checks
/// answered past it), a deadline for request headers and one for idle connections.
/// hyper's own header timeout is not used: it runs while a kept-alive connection waits
/// for its next request too, so it would close idle connections after 10 s.
mod serving {
    use super::{ApiError, Route, parse_path};
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderValue, Request, Response};
    use axum::response::IntoResponse;
    use hyper::body::{Frame, Incoming, SizeHint};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::convert::Infallible;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};
    use tokio::time::Instant;
    use tokio_rustls::TlsAcceptor;
    use tower::ServiceExt;

    /// Connections past the cap that still get health checks answered (anything else
    /// gets a 429), so `/readyz` answers while the cap is full; past these too,
    /// connections are closed as soon as they are accepted.
    const HEALTH_CONNECTIONS: usize = 32;
    /// How long one of those has to send its one request.
    const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    /// After an accept fails for lack of descriptors, the wait before the next.
    const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

    #[derive(Clone, Copy)]
    pub(super) struct Limits {
        header: Duration,
        idle: Duration,
        connections: usize,
    }

    impl From<&super::Options> for Limits {
        fn from(options: &super::Options) -> Limits {
            Limits {
                header: options.header_timeout,
                idle: options.idle_timeout,
                connections: options.max_connections.max(1),
            }
        }
    }

    pub(super) async fn serve(
        listener: TcpListener,
        router: Router,
        limits: Limits,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(limits.connections));
        let health = Arc::new(Semaphore::new(HEALTH_CONNECTIONS));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // A client that gave up before we got to it.
                Err(error) if is_connection_error(&error) => continue,
                // Out of file descriptors and the like: wait for some to close.
                Err(_) => {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let (permit, limits) = match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => (permit, limits),
                Err(_) => match Arc::clone(&health).try_acquire_owned() {
                    Ok(permit) => {
                        let header = limits.header.min(HEALTH_TIMEOUT);
                        (permit, Limits { header, idle: header, connections: 0 })
                    }
                    // Closed at once: the client sees the connection reset, not a hang.
                    Err(_) => continue,
                },
            };
            tokio::spawn(connection(stream, tls.clone(), router.clone(), limits, permit));
        }
    }

    fn is_connection_error(error: &io::Error) -> bool {
        matches!(
            error.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        )
    }

    async fn connection(
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        router: Router,
        limits: Limits,
        _slot: OwnedSemaphorePermit,
    ) {
        let activity = Arc::new(Activity::new());
        match tls {
            None => drive(Watched { io: stream, activity: Arc::clone(&activity) }, activity, router, limits).await,
            Some(acceptor) => {
                // The handshake counts toward the time to send headers; one that fails
                // (plain HTTP, a distrusted CA) is just gone.
                let Ok(Ok(stream)) = tokio::time::timeout(limits.header, acceptor.accept(stream)).await else {
                    return;
                };
                drive(Watched { io: stream, activity: Arc::clone(&activity) }, activity, router, limits).await;
            }
        }
    }

    /// Serves one connection until it ends or misses a deadline.
    async fn drive<IO>(io: Watched<IO>, activity: Arc<Activity>, router: Router, limits: Limits)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Past the cap (`connections` is 0): one request, and only health checks.
        let limited = limits.connections == 0;
        let tracker = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let (router, activity) = (router.clone(), Arc::clone(&tracker));
            async move {
                activity.begin();
                let done = Done(activity);
                let health = matches!(parse_path(request.uri().path(), &Default::default()), Ok(Route::Health));
                let response = if limited && !health {
                    too_many_requests()
                } else {
                    let Ok(response) = router.oneshot(request).await;
                    response
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _done: done })))
            }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
        if limited {
            builder.http1().keep_alive(false);
        }
        // Upgrades: `pods/exec` turns its connection into a WebSocket.
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let check = tokio::time::sleep(limits.header);
        tokio::pin!(check);
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                () = check.as_mut() => {
                    let now = Instant::now();
                    match activity.deadline(limits) {
                        // Dropping the connection closes the socket: nothing is in flight.
                        Some(deadline) if deadline <= now => return,
                        Some(deadline) => check.as_mut().reset(deadline),
                        // A request is being served: look again later.
                        None => check.as_mut().reset(now + limits.header),
                    }
                }
            }
        }
    }

    fn too_many_requests() -> Response<Body> {
        let error = ApiError::new(429, "TooManyRequests", "too many connections are open; try again later");
        let mut response = error.into_response();
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        response
    }

    /// What a connection is doing, in milliseconds since it opened, for its deadlines.
    struct Activity {
        opened: Instant,
        /// Requests being served (their responses not yet all handed to hyper).
        active: AtomicUsize,
        /// The last sign of life with no request being served: a response finished, or
        /// its last bytes being written.
        idle_since: AtomicU64,
        /// One more than when the first byte of the next request's headers came; 0 while
        /// none has. A new connection is waiting for headers from the start.
        headers_since: AtomicU64,
    }

    impl Activity {
        fn new() -> Activity {
            Activity {
                opened: Instant::now(),
                active: AtomicUsize::new(0),
                idle_since: AtomicU64::new(0),
                headers_since: AtomicU64::new(1),
            }
        }

        fn now(&self) -> u64 {
            u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
        }

        fn begin(&self) {
            self.active.fetch_add(1, Ordering::SeqCst);
            self.headers_since.store(0, Ordering::SeqCst);
        }

        fn end(&self) {
            self.idle_since.store(self.now(), Ordering::SeqCst);
            self.active.fetch_sub(1, Ordering::SeqCst);
        }

        fn read(&self) {
            if self.active.load(Ordering::SeqCst) == 0 && self.headers_since.load(Ordering::SeqCst) == 0 {
                self.headers_since.store(self.now() + 1, Ordering::SeqCst);
            }
        }

        fn wrote(&self) {
            if self.active.load(Ordering::SeqCst) == 0 {
                self.idle_since.store(self.now(), Ordering::SeqCst);
            }
        }

        /// When the connection is to be closed unless something happens first; `None`
        /// while a request is being served.
        fn deadline(&self, limits: Limits) -> Option<Instant> {
            if self.active.load(Ordering::SeqCst) > 0 {
                return None;
            }
            let at = |millis: u64, limit: Duration| self.opened + Duration::from_millis(millis) + limit;
            match self.headers_since.load(Ordering::SeqCst) {
                0 => Some(at(self.idle_since.load(Ordering::SeqCst), limits.idle)),
                since => Some(at(since - 1, limits.header)),
            }
        }
    }

    /// Marks a request served when its response body is done or dropped.
    struct Done(Arc<Activity>);

    impl Drop for Done {
        fn drop(&mut self) {
            self.0.end();
        }
    }

    /// A response body that marks its request served when it goes.
    struct Tracked {
        body: Body,
        _done: Done,
    }

    impl hyper::body::Body for Tracked {
        type Data = bytes::Bytes;
        type Error = axum::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, axum::Error>>> {
            Pin::new(&mut self.get_mut().body).poll_frame(cx)
        }

        fn is_end_stream(&self) -> bool {
            self.body.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.body.size_hint()
        }
    }

    /// A connection's stream, telling its `Activity` what comes and goes.
    struct Watched<IO> {
        io: IO,
        activity: Arc<Activity>,
    }

    impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.io).poll_read(cx, buf);
            if buf.filled().len() > before {
                this.activity.read();
            }
            polled
        }
    }

    impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let polled = Pin::new(&mut this.io).poll_write(cx, data);
            if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
                this.activity.wrote();
            }
            polled
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let polled = Pin::new(&mut this.io).poll_write_vectored(cx, data);
            if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
                this.activity.wrote();
            }
            polled
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
        }
    }
}

/// What a request's path names.
#[derive(Debug)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

enum Route {
    Health,
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Objects(Target),
    /// `/openapi/v3` and `/openapi/v3/{group version}`.
    OpenApi(Option<String>),
    /// `/openapi/v2`: a document with no definitions (see `openapi::v2`).
    OpenApiV2,
    /// `POST /api/v1/namespaces/{ns}/bindings`.
    Bindings(String),
}

fn parse_path(path: &str, served: &resources::Served) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    // Empty segments (`//`), dot segments and anything not plain would let a path mean
    // two things: such paths name nothing.
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('%')) {
        return Err(ApiError::no_route());
    }
    let (group, version, rest) = match segments.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Health),
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", group] => return Ok(Route::Group(group.to_string())),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApi(None)),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApi(Some(rest.join("/")))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let resource = |plural: &str| served.find(group, version, plural).ok_or_else(ApiError::no_route);
    let object = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        let resource = resource(plural)?;
        if namespace.is_some() && !resource.namespaced {
            return Err(ApiError::no_route());
        }
        if let Some(sub) = sub
            && !resource.subresources().contains(&sub)
        {
            return Err(ApiError::no_route());
        }
        Ok(Route::Objects(Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        }))
    };
    match rest {
        [] => Ok(Route::Resources(group.to_string(), version.to_string())),
        ["namespaces", ns, "bindings"] if group.is_empty() => Ok(Route::Bindings(ns.to_string())),
        ["namespaces", name, sub @ ("status" | "finalize")] => object("namespaces", None, Some(name), Some(sub)),
        ["namespaces", ns, plural] => object(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => object(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => object(plural, Some(ns), Some(name), Some(sub)),
        [plural] => object(plural, None, None, None),
        [plural, name] => object(plural, None, Some(name), None),
        [plural, name, sub] => object(plural, None, Some(name), Some(sub)),
        _ => Err(ApiError::no_route()),
    }
}

/// The query string as a map; a repeated parameter keeps its last value.
pub type Query = HashMap<String, String>;

fn parse_query(query: Option<&str>) -> Result<Query, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}")))?;
    Ok(pairs.into_iter().collect())
}

/// What the client accepts: JSON (plain, as a Table for kubectl, or metadata only for
/// metadata informers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Json,
    Table,
    Metadata,
}

/// An object as `PartialObjectMetadata`: its type and metadata, nothing else.
pub fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

fn negotiate(headers: &HeaderMap) -> Result<Representation, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Representation::Json);
    };
    let mut json = false;
    for item in accept.split(',') {
        let item = item.trim();
        let media = item.split(';').next().unwrap_or("").trim();
        if !matches!(media, "application/json" | "*/*" | "application/*" | "") {
            continue;
        }
        let form = item.split(';').map(str::trim).find_map(|p| p.strip_prefix("as="));
        match form {
            Some("Table") => return Ok(Representation::Table),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => return Ok(Representation::Metadata),
            _ => {}
        }
        let other_form = form.is_some();
        if !other_form {
            json = true;
        }
    }
    if json {
        Ok(Representation::Json)
    } else {
        Err(ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: application/json (asked for {accept})"),
        ))
    }
}

/// The aggregated discovery version a client accepts in JSON (`v2`, else `v2beta1`), if
/// it asks for one; clients that also take the legacy documents list them after it.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())?;
    let offered: Vec<Vec<&str>> = accept
        .split(',')
        .map(|media| media.split(';').map(str::trim).collect::<Vec<&str>>())
        .filter(|parts| {
            parts.first() == Some(&"application/json")
                && parts.contains(&"g=apidiscovery.k8s.io")
                && parts.contains(&"as=APIGroupDiscoveryList")
        })
        .collect();
    ["v2", "v2beta1"]
        .into_iter()
        .find(|version| offered.iter().any(|parts| parts.contains(&format!("v={version}").as_str())))
}

/// A response of JSON already written.
pub fn json_bytes_response(code: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (code, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut response = (code, value.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn dispatch(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match authorization::serving(handle(&server, parts, body)).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// A body this much larger than the limit is read to its end (and dropped) before the
/// 413, so that the client, still sending, gets to read the answer.
const DRAIN: usize = 64 << 20;

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the request body could not be read: {e}")))?;
        seen += chunk.len();
        if seen <= MAX_BODY {
            buffer.extend_from_slice(&chunk);
        } else if seen > DRAIN {
            break;
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the {MAX_BODY} bytes the server accepts"),
        ));
    }
    Ok(buffer.freeze())
}

async fn handle(
    server: &Arc<ApiServer>,
    mut parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    // What follows a proxy path's `proxy` is the target's: read before the path's own checks.
    if let Some(target) = proxy::parse(parts.uri.path()) {
        let Some(user) = authorization::authenticate(server, &parts.headers).await else {
            return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
        };
        let user = authorization::impersonate(server, user, &parts.headers).await?;
        authorization::remember(&user);
        let resource = match target.kind {
            proxy::ProxyKind::Pod => "pods",
            proxy::ProxyKind::Service => "services",
        };
        let verb = match parts.method.as_str() {
            "GET" | "HEAD" => "get".to_string(),
            "POST" => "create".to_string(),
            "PUT" => "update".to_string(),
            "PATCH" => "patch".to_string(),
            "DELETE" => "delete".to_string(),
            other => other.to_lowercase(),
        };
        let request = kubeyard_compiler::rbac::Attributes {
            verb,
            resource: resource.into(),
            subresource: "proxy".into(),
            name: target.id.clone(),
            namespace: target.namespace.clone(),
            ..Default::default()
        };
        authorization::authorize(server, &user, &request).await?;
        let method = parts.method.clone();
        return proxy::serve(server, &target, method, &parts.uri, &parts.headers, body).await;
    }
    let served = server.resources.snapshot();
    let route = parse_path(parts.uri.path(), &served)?;
    let user = authorization::authenticate(server, &parts.headers).await;
    let Some(user) = user.or_else(|| matches!(route, Route::Health).then(authorization::admin)) else {
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    };
    let user = authorization::impersonate(server, user, &parts.headers).await?;
    authorization::remember(&user);
    let query = parse_query(parts.uri.query())?;
    let method = parts.method.clone();
    // Discovery, OpenAPI, version and health are every authenticated user's (the
    // bootstrap roles grant them); objects are RBAC's to allow, with `--authorization rbac`.
    match &route {
        Route::Objects(target) if !authorization::is_self_review(target.resource) => {
            authorization::authorize(server, &user, &authorization::attributes(&method, target, &query)).await?;
        }
        Route::Bindings(namespace) => {
            let request = kubeyard_compiler::rbac::Attributes {
                verb: "create".into(),
                resource: "bindings".into(),
                namespace: namespace.clone(),
                ..Default::default()
            };
            authorization::authorize(server, &user, &request).await?;
        }
        _ => {}
    }
    let read_only = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Health if read_only => Ok((StatusCode::OK, "ok").into_response()),
        Route::Version if read_only => Ok(json_response(StatusCode::OK, &version_info(&server.admission))),
        Route::CoreVersions | Route::Groups if read_only && let Some(version) = aggregated(&parts.headers) => {
            let document = served.aggregated(matches!(route, Route::CoreVersions), version);
            let mut response = json_response(StatusCode::OK, &document);
            let content_type = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            Ok(response)
        }
        Route::CoreVersions if read_only => Ok(json_response(StatusCode::OK, &resources::core_versions())),
        Route::Groups if read_only => Ok(json_response(StatusCode::OK, &served.group_list())),
        Route::Group(group) if read_only => {
            served.group(&group).map(|g| json_response(StatusCode::OK, &g)).ok_or_else(ApiError::no_route)
        }
        Route::Resources(group, version) if read_only => served
            .resource_list(&group, version.as_str())
            .map(|list| json_response(StatusCode::OK, &list))
            .ok_or_else(ApiError::no_route),
        Route::OpenApiV2 if read_only => {
            let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let (content_type, body) = openapi::v2(accept, &server.admission.catalog().version().to_string());
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(response)
        }
        Route::OpenApi(group_version) if read_only => {
            let documents = server.openapi_documents(&served);
            match group_version {
                None => Ok(json_response(StatusCode::OK, &documents.index)),
                Some(group_version) => {
                    let document = documents.by_group_version.get(&group_version).ok_or_else(ApiError::no_route)?;
                    let mut response = (StatusCode::OK, document.clone()).into_response();
                    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(response)
                }
            }
        }
        Route::Health
        | Route::Version
        | Route::CoreVersions
        | Route::Groups
        | Route::Group(_)
        | Route::Resources(..)
        | Route::OpenApi(_)
        | Route::OpenApiV2 => Err(ApiError::method_not_allowed()),
        Route::Bindings(namespace) if method == Method::POST => {
            let body = read_body(body).await?;
            objects::bind(server, &namespace, None, &parts.headers, &query, &body).await
        }
        Route::Bindings(_) => Err(ApiError::method_not_allowed()),
        // Logs are text, whatever the client accepts.
        Route::Objects(target) if target.subresource.as_deref() == Some("log") && method == Method::GET => {
            logs::serve(server, &target, &query).await
        }
        Route::Objects(target)
            if matches!(target.subresource.as_deref(), Some("exec" | "attach"))
                && matches!(method, Method::GET | Method::POST) =>
        {
            exec::serve(server, &target, &query, &mut parts).await
        }
        Route::Objects(target)
            if target.subresource.as_deref() == Some("portforward") && matches!(method, Method::GET | Method::POST) =>
        {
            portforward::serve(server, &target, &query, &mut parts).await
        }
        Route::Objects(target) if authorization::is_review(target.resource) => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let body = read_body(body).await?;
            let answer = authorization::review(server, &user, &target, &parts.headers, &body).await?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        Route::Objects(target) if target.resource.is_metrics() => {
            metrics::serve(server, &method, &target, &query).await
        }
        Route::Objects(target) if target.subresource.as_deref() == Some("eviction") => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let body = read_body(body).await?;
            eviction::evict(server, &target, &parts.headers, &query, &body).await
        }
        Route::Objects(target) if target.subresource.as_deref() == Some("token") => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let body = read_body(body).await?;
            let (namespace, name) = (target.namespace.unwrap_or_default(), target.name.unwrap_or_default());
            let answer = tokens::request(server, &namespace, &name, &parts.headers, &body).await?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        Route::Objects(target) => {
            let representation = negotiate(&parts.headers)?;
            let body = read_body(body).await?;
            objects::handle(server, &method, target, &query, &parts.headers, &body, representation).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_or_nothing() {
        let target = |path: &str| match parse_path(path, &resources::Served::default()) {
            Ok(Route::Objects(t)) => Some((t.resource.plural, t.namespace, t.name, t.subresource)),
            _ => None,
        };
        assert_eq!(target("/api/v1/pods"), Some(("pods", None, None, None)));
        assert_eq!(
            target("/api/v1/namespaces/ns/pods/p/status"),
            Some(("pods", Some("ns".into()), Some("p".into()), Some("status".into())))
        );
        assert_eq!(target("/api/v1/namespaces/ns"), Some(("namespaces", None, Some("ns".into()), None)));
        assert_eq!(
            target("/api/v1/namespaces/ns/status"),
            Some(("namespaces", None, Some("ns".into()), Some("status".into())))
        );
        assert_eq!(target("/apis/apps/v1/namespaces/a/deployments/d/scale").map(|t| t.3), Some(Some("scale".into())));
        for bad in [
            "/api/v1/namespaces/a/nodes/n",
            "/api/v1/pods/p/scale",
            "/api/v1/../v1/pods",
            "/api/v1//pods",
            "/apis/apps/v2/deployments",
            "/etc/passwd",
            "/api/v1/namespaces/a/pods/p/status/x",
        ] {
            assert!(target(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn accept_headers_pick_json_or_a_table() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            negotiate(&headers)
        };
        assert_eq!(with("application/json").unwrap(), Representation::Json);
        assert_eq!(
            with("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").unwrap(),
            Representation::Table
        );
        assert_eq!(with("application/vnd.kubernetes.protobuf, */*").unwrap(), Representation::Json);
        assert_eq!(with("application/vnd.kubernetes.protobuf").unwrap_err().code, 406);
        assert_eq!(
            with("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").unwrap(),
            Representation::Metadata
        );
    }
}
