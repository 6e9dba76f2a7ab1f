//! `GET .../pods/{name}/log`: the API server asks the pod's node, as Kubernetes does: the
//! kubelet at the node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port` serves
//! `/containerLogs/{namespace}/{pod}/{container}`, and the answer (followed, with
//! `follow=true`) streams back to the client. Simulated nodes run no processes and write
//! no logs: asking one is a clear error. The kubelets of a cluster with a token want it
//! (logs hold what pods print), so the API server sends its own, as the real one
//! authenticates to kubelets with its client credentials.

use super::objects::{from_entry, store_error};
use super::resources;
use super::status::{ApiError, Subject};
use super::{ApiServer, Query, Target};
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The query the kubelet understands, passed on as given.
const PASSED: &[&str] = &["follow", "previous", "tailLines", "limitBytes", "sinceSeconds", "timestamps"];

/// A pod's container and the kubelet that runs it.
pub(super) struct Located {
    pub namespace: String,
    pub name: String,
    pub container: String,
    pub node_name: String,
    /// The kubelet's `host:port`.
    pub kubelet: String,
}

/// Finds the container `query` names (or the pod's only one) and its node's kubelet;
/// `doing` says what for, in the errors (`logs`, `exec`).
pub(super) async fn locate(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    doing: &str,
) -> Result<Located, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let key = target.resource.key(Some(namespace), name);
    let entry = server.store.get(&key).await.map_err(|e| store_error(target.resource, name, e))?;
    let pod = from_entry(&entry.ok_or_else(|| ApiError::not_found(Subject { group: "", kind: "pods", name }))?)?;
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| text(c, "/name"))
        .collect();
    let container = match (query.get("container"), containers.as_slice()) {
        (Some(container), _) => container.as_str(),
        (None, [only]) => only,
        (None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let known = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array))
        .flatten()
        .any(|c| text(c, "/name") == container);
    if !known {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}")));
    }
    let node_name = text(&pod, "/spec/nodeName");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} is not scheduled yet: no {doing}")));
    }
    let nodes = resources::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = server.store.get(&nodes.key(None, node_name)).await.map_err(|e| store_error(nodes, node_name, e))?;
    let node = from_entry(&node.ok_or_else(|| ApiError::bad_request(format!("node {node_name} is gone")))?)?;
    if text(&node, "/metadata/annotations/kubeyard.dev~1runtime") != "process" {
        return Err(ApiError::simulated(name, node_name, doing));
    }
    let kubelet =
        kubelet_endpoint(&node).ok_or_else(|| ApiError::internal(format!("node {node_name} has no InternalIP")))?;
    Ok(Located {
        namespace: namespace.to_string(),
        name: name.to_string(),
        container: container.to_string(),
        node_name: node_name.to_string(),
        kubelet,
    })
}

/// A node's kubelet (`host:port`): its InternalIP, at `daemonEndpoints.kubeletEndpoint.Port`.
pub(super) fn kubelet_endpoint(node: &Value) -> Option<String> {
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| text(a, "/type") == "InternalIP")
        .map(|a| text(a, "/address"))?;
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(10250);
    Some(format!("{address}:{port}"))
}

/// `GET http://{kubelet}{path}` with the API server's credentials. No answer within 5 s
/// is a 503, and a kubelet refusing the credentials an internal error; any other answer
/// is the caller's to read.
pub(super) async fn kubelet_get(
    server: &ApiServer,
    node_name: &str,
    kubelet: &str,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let url = format!("http://{kubelet}{path}");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = url.parse().map_err(|_| ApiError::internal(format!("not a URL: {url}")))?;
    let mut request = http::Request::get(uri);
    if let Some(token) = &server.options.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(http_body_util::Empty::new()).map_err(|e| ApiError::internal(e.to_string()))?;
    // A node cut off the network would hold the client for as long as TCP retries.
    let unavailable = |why: String| {
        ApiError::new(503, "ServiceUnavailable", format!("the kubelet of {node_name} does not answer: {why}"))
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| unavailable("no answer within 5s".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    if response.status() == StatusCode::UNAUTHORIZED {
        // The node was started with another token: an operator's mistake, not the user's.
        return Err(ApiError::internal(format!("the kubelet of {node_name} refused the API server's credentials")));
    }
    Ok(response)
}

pub(super) async fn serve(server: &ApiServer, target: &Target, query: &Query) -> Result<Response, ApiError> {
    let Located { namespace, name, container, node_name, kubelet } = locate(server, target, query, "logs").await?;
    let passed: Vec<(&str, &str)> =
        PASSED.iter().filter_map(|key| query.get(*key).map(|value| (*key, value.as_str()))).collect();
    let query = serde_urlencoded::to_string(passed).unwrap_or_default();
    let path = format!("/containerLogs/{namespace}/{name}/{container}?{query}");
    let response = kubelet_get(server, &node_name, &kubelet, &path).await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        let code = if status == StatusCode::NOT_FOUND { 404 } else { 400 };
        return Err(ApiError::new(code, if code == 404 { "NotFound" } else { "BadRequest" }, message));
    }
    let stream = response.into_body().into_data_stream();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
