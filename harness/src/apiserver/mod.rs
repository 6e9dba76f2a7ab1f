//! The API server: the Kubernetes REST API over a `Store`, for kubectl, kube-rs, the
//! Python client and kubeyard's own components. Every write goes through admission
//! (the compiler's validation and defaulting); every read and watch comes from the
//! store. Paths are parsed here, each verb is handled in `objects`, watches in
//! `watch`, kubectl's tables in `table`, field selectors in `fields`.

pub mod allocate;
pub mod fields;
pub mod kubeconfig;
mod logs;
pub mod objects;
pub mod openapi;
mod protobuf;
mod quota;
pub mod resources;
pub mod status;
pub mod table;
pub mod tls;
pub mod watch;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            clock: crate::clock::Clock::real(),
            service_cidr: allocate::DEFAULT_SERVICE_CIDR.to_string(),
        }
    }
}

pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub admission: Admission,
    pub options: Options,
    openapi: std::sync::OnceLock<openapi::Documents>,
    /// Services' cluster IPs and node ports (see `allocate`).
    allocator: allocate::Allocator,
    /// Pod creates in namespaces with quotas, one at a time (see `quota`).
    quota_locks: quota::Locks,
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
        Arc::new(ApiServer {
            store,
            admission,
            options,
            openapi: std::sync::OnceLock::new(),
            allocator,
            quota_locks: quota::Locks::default(),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(Arc::clone(self))
    }

    /// Serves until the listener fails or the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Serves HTTPS with `identity` (see `tls::self_signed`).
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        identity: &tls::Identity,
    ) -> std::io::Result<()> {
        tls::serve(listener, self.router(), Arc::clone(&identity.config)).await
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
    /// `POST /api/v1/namespaces/{ns}/bindings`.
    Bindings(String),
}

fn parse_path(path: &str) -> Result<Route, ApiError> {
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
        ["openapi", "v3"] => return Ok(Route::OpenApi(None)),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApi(Some(rest.join("/")))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let resource = |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::no_route);
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

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut response = (code, value.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn authorized(server: &ApiServer, headers: &HeaderMap) -> bool {
    let Some(token) = &server.options.token else { return true };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == token)
}

async fn dispatch(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match handle(&server, parts, body).await {
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

async fn handle(server: &Arc<ApiServer>, parts: axum::http::request::Parts, body: Body) -> Result<Response, ApiError> {
    let route = parse_path(parts.uri.path())?;
    if !matches!(route, Route::Health) && !authorized(server, &parts.headers) {
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let query = parse_query(parts.uri.query())?;
    let method = parts.method.clone();
    let read_only = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Health if read_only => Ok((StatusCode::OK, "ok").into_response()),
        Route::Version if read_only => Ok(json_response(StatusCode::OK, &version_info(&server.admission))),
        Route::CoreVersions if read_only => Ok(json_response(StatusCode::OK, &resources::core_versions())),
        Route::Groups if read_only => Ok(json_response(StatusCode::OK, &resources::group_list())),
        Route::Group(group) if read_only => {
            resources::group(&group).map(|g| json_response(StatusCode::OK, &g)).ok_or_else(ApiError::no_route)
        }
        Route::Resources(group, version) if read_only => resources::resource_list(&group, version.as_str())
            .map(|list| json_response(StatusCode::OK, &list))
            .ok_or_else(ApiError::no_route),
        Route::OpenApi(group_version) if read_only => {
            let documents = server.openapi.get_or_init(|| openapi::documents(server.admission.catalog()));
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
        | Route::OpenApi(_) => Err(ApiError::method_not_allowed()),
        Route::Bindings(namespace) if method == Method::POST => {
            let body = read_body(body).await?;
            objects::bind(server, &namespace, None, &parts.headers, &query, &body).await
        }
        Route::Bindings(_) => Err(ApiError::method_not_allowed()),
        // Logs are text, whatever the client accepts.
        Route::Objects(target) if target.subresource.as_deref() == Some("log") && method == Method::GET => {
            logs::serve(server, &target, &query).await
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
        let target = |path: &str| match parse_path(path) {
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
