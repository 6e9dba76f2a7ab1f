//! The kubelet's own HTTP endpoint (port 10250) on a node that runs processes: the API
//! server reaches it for `kubectl logs`, `exec` and `attach`, and for the resource metrics
//! (`/stats/summary`, the Summary API; see `stats.rs`). `/containerLogs/{namespace}/{pod}/{container}`
//! with `previous`, `tailLines`, `limitBytes` and `follow`, from the files the process
//! runtime writes (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log`).
//! Logs hold what pods print, Secrets' values among it: given a token (the cluster's, which
//! the API server's `pods/log` sends), every request but `/healthz` must carry it as a
//! bearer, and is refused `401 Unauthorized` otherwise, as the kubelet's authentication
//! refuses anonymous requests.

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The port the API server asks (`daemonEndpoints.kubeletEndpoint.Port`).
pub const PORT: u16 = 10250;

struct Logs {
    root: PathBuf,
    /// The bearer token every request must carry; none: anyone may ask.
    token: Option<String>,
    /// The engine the node's pods of other images run in (`exec` reaches them there).
    docker: Option<Arc<super::docker::DockerRuntime>>,
    /// What the node's running containers use.
    stats: Arc<super::stats::Stats>,
}

impl Logs {
    /// The log files of one container, oldest run first; the pod's newest incarnation
    /// when a pod of that name came and went before.
    fn files(&self, namespace: &str, pod: &str, container: &str) -> Vec<PathBuf> {
        let prefix = format!("{namespace}_{pod}_");
        let newest = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        let Some(dir) = newest.map(|e| e.path().join(container)) else { return Vec::new() };
        let mut runs: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                Some((name.strip_suffix(".log")?.parse().ok()?, e.path()))
            })
            .collect();
        runs.sort();
        runs.into_iter().map(|(_, path)| path).collect()
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// The last `lines` lines of `text`.
fn tail(text: &[u8], lines: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    match body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(lines.saturating_sub(1)) {
        Some((at, _)) if lines > 0 => &text[at + 1..],
        _ if lines == 0 => &[],
        _ => text,
    }
}

/// Whether the request carries the token, when one is required.
fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|given| crate::apiserver::tls::same_secret(given.as_bytes(), token.as_bytes()))
}

async fn container_logs(
    State(logs): State<Arc<Logs>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers, logs.token.as_deref()) {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    let flag = |key: &str| query.get(key).is_some_and(|v| v == "true" || v == "1");
    let number = |key: &str| query.get(key).and_then(|v| v.parse::<usize>().ok());
    let files = logs.files(&namespace, &pod, &container);
    let chosen = if flag("previous") { files.len().checked_sub(2) } else { files.len().checked_sub(1) };
    let Some(path) = chosen.map(|i| files[i].clone()) else {
        let message = if flag("previous") {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")
        };
        return refuse(StatusCode::NOT_FOUND, message);
    };
    let mut bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => return refuse(StatusCode::NOT_FOUND, format!("cannot read the log: {error}")),
    };
    // Following goes on from what was read, not from the file's length a moment later:
    // a line written in between would be lost.
    let offset = bytes.len() as u64;
    if let Some(lines) = number("tailLines") {
        bytes = tail(&bytes, lines).to_vec();
    }
    if let Some(limit) = number("limitBytes") {
        bytes.truncate(limit);
    }
    if !flag("follow") || flag("previous") {
        return Body::from(bytes).into_response();
    }
    // Follow: what is there, then what the file gains, until the container runs again
    // (a newer log appears) or the pod goes.
    let runs = files.len();
    let follow = futures_util::stream::unfold((offset, Some(bytes)), move |(offset, first)| {
        let (path, logs, namespace, pod, container) =
            (path.clone(), Arc::clone(&logs), namespace.clone(), pod.clone(), container.clone());
        async move {
            if let Some(first) = first {
                return Some((Ok::<_, std::io::Error>(first), (offset, None)));
            }
            loop {
                let length = std::fs::metadata(&path).map(|m| m.len()).ok()?;
                if length > offset {
                    let mut file = std::fs::File::open(&path).ok()?;
                    file.seek(SeekFrom::Start(offset)).ok()?;
                    let mut grown = Vec::new();
                    file.take(length - offset).read_to_end(&mut grown).ok()?;
                    return Some((Ok(grown), (length, None)));
                }
                if logs.files(&namespace, &pod, &container).len() != runs {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    Body::from_stream(follow).into_response()
}

/// The engine's name of a running container of the pod, for a client with the token;
/// `Err` is the refusal (`doing`: what was asked, in its words).
async fn running(
    logs: &Logs,
    headers: &HeaderMap,
    (namespace, pod, container): &(String, String, String),
    doing: &str,
) -> Result<(Arc<super::docker::DockerRuntime>, String), Response> {
    if !authorized(headers, logs.token.as_deref()) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Unauthorized".into()));
    }
    let Some(docker) = logs.docker.clone() else {
        return Err(refuse(StatusCode::BAD_REQUEST, "this node runs no containers: pods here are processes".into()));
    };
    let Some(name) = docker.running_container(namespace, pod, container).await else {
        let message = format!(
            "container not found (\"{container}\"): it is not running, or it is of the built-in image kubeyard/echo, \
             which runs as a process and has no {doing}"
        );
        return Err(refuse(StatusCode::NOT_FOUND, message));
    };
    Ok((docker, name))
}

/// `kubectl exec`'s session with a container of the engine, over a WebSocket.
async fn exec(
    State(logs): State<Arc<Logs>>,
    Path(path): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (docker, name) = match running(&logs, &headers, &path, "exec").await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let request = match super::exec::Request::parse(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    upgrade
        .protocols(super::exec::PROTOCOLS)
        .on_upgrade(move |socket| super::exec::session(docker, name, request, socket))
}

/// `kubectl attach`'s session with a running container's own streams, over a WebSocket.
async fn attach(
    State(logs): State<Arc<Logs>>,
    Path(path): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (docker, name) = match running(&logs, &headers, &path, "attach").await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let stdin = pairs.iter().any(|(k, v)| k == "stdin" && matches!(v.as_str(), "true" | "1"));
    upgrade.protocols(super::exec::PROTOCOLS).on_upgrade(move |socket| super::exec::attach(docker, name, stdin, socket))
}

/// The Summary API (`/stats/summary`): what the node and its pods use.
async fn summary(State(logs): State<Arc<Logs>>, headers: HeaderMap) -> Response {
    if !authorized(&headers, logs.token.as_deref()) {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    let body = logs.stats.summary(&crate::clock::now()).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Serves until the task is dropped; with a `token`, only to requests that carry it.
pub async fn serve(
    address: SocketAddr,
    root: PathBuf,
    token: Option<String>,
    docker: Option<Arc<super::docker::DockerRuntime>>,
    stats: Arc<super::stats::Stats>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router(Logs { root, token, docker, stats })).await
}

fn router(logs: Logs) -> Router {
    let logs = Arc::new(logs);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/summary", get(summary))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", get(exec))
        .route("/attach/{namespace}/{pod}/{container}", get(attach))
        .with_state(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\nb\n", 0), b"");
    }

    #[test]
    fn the_newest_run_and_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let stats = crate::kubelet::stats::Stats::new("node-1");
        let logs = Logs { root: dir.path().to_path_buf(), token: None, docker: None, stats };
        let container = dir.path().join("shop_web-1_uid-1").join("web");
        std::fs::create_dir_all(&container).unwrap();
        for run in [0, 1, 10] {
            std::fs::write(container.join(format!("{run}.log")), format!("run {run}\n")).unwrap();
        }
        let files = logs.files("shop", "web-1", "web");
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["0.log", "1.log", "10.log"]);
        assert!(logs.files("shop", "web-2", "web").is_empty());
    }

    #[tokio::test]
    async fn logs_need_the_token_and_health_does_not() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let container = dir.path().join("shop_web-1_uid-1").join("web");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::write(container.join("0.log"), "the secret is hunter2\n").unwrap();
        let stats = crate::kubelet::stats::Stats::new("node-1");
        let router = router(Logs { root: dir.path().to_path_buf(), token: Some("s3cret".into()), docker: None, stats });
        let ask = |authorization: Option<&str>, path: &str| {
            let mut request = axum::http::Request::get(path);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            router.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let logs = "/containerLogs/shop/web-1/web";
        for refused in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("Basic s3cret"), Some("s3cret")] {
            for path in [logs, "/stats/summary"] {
                let response = ask(refused, path).await.unwrap();
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?} {path}");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"Unauthorized");
            }
        }
        let response = ask(Some("Bearer s3cret"), "/stats/summary").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let summary: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(summary["node"]["nodeName"], "node-1");
        let response = ask(Some("Bearer s3cret"), logs).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"the secret is hunter2\n");
        assert_eq!(ask(None, "/healthz").await.unwrap().status(), StatusCode::OK);
    }
}
