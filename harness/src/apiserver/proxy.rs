//! `pods/proxy` and `services/proxy`: the API server forwards an HTTP request to a pod, or
//! to a ready endpoint of a Service, and streams the answer back, as `kubectl proxy`,
//! `kubectl get --raw .../services/web:80/proxy/` and dashboards use it. The name may
//! carry a scheme and a port (`[http:]name[:port]`, Kubernetes' `SplitSchemeNamePort`);
//! a Service's port is its port name or number, and the endpoint is picked at random
//! among the ready addresses with that port, as the real server's `ResourceLocation` does.
//! The API server reaches pod addresses directly, as the real one does: on a container
//! cluster they are on its network; simulated pods have none, which is said plainly.

use super::ApiServer;
use super::objects::{from_entry, store_error};
use super::resources;
use super::status::{ApiError, Subject};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use serde_json::Value;
use std::time::Duration;

/// What a proxy path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProxyTarget {
    pub kind: ProxyKind,
    pub namespace: String,
    /// The name as given: `[scheme:]name[:port]`.
    pub id: String,
    /// The path to request on the target, from its `/`.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProxyKind {
    Pod,
    Service,
}

/// `/api/v1/namespaces/{ns}/{pods|services}/{name}/proxy[/rest]`, before the path is
/// checked segment by segment: what follows `proxy` belongs to the target, `%` and all.
pub(super) fn parse(path: &str) -> Option<ProxyTarget> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = rest.splitn(5, '/');
    let namespace = parts.next()?;
    let kind = match parts.next()? {
        "pods" => ProxyKind::Pod,
        "services" => ProxyKind::Service,
        _ => return None,
    };
    let id = parts.next()?;
    if parts.next()? != "proxy" || namespace.is_empty() || id.is_empty() {
        return None;
    }
    let path = format!("/{}", parts.next().unwrap_or_default());
    Some(ProxyTarget { kind, namespace: namespace.to_string(), id: id.to_string(), path })
}

/// `[scheme:]name[:port]`, as Kubernetes' `SplitSchemeNamePort` reads it.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] if matches!(*scheme, "http" | "https") => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty()).then_some((scheme, name, port))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

async fn object(server: &ApiServer, plural: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let resource = resources::find("", "v1", plural).ok_or_else(ApiError::no_route)?;
    let namespace = (!namespace.is_empty()).then_some(namespace);
    let entry = server.store.get(&resource.key(namespace, name)).await.map_err(|e| store_error(resource, name, e))?;
    from_entry(&entry.ok_or_else(|| ApiError::not_found(Subject { group: "", kind: plural, name }))?)
}

/// A pod's IP and UID, if something can listen there: pods on simulated nodes have
/// an address but no processes.
/// The pod's address and uid; `forwarding` (port-forward) refuses a simulated pod with
/// a 400 as exec does, a proxied request with a 503 as an unreachable backend.
pub(super) async fn pod_address(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    forwarding: bool,
) -> Result<(String, String), ApiError> {
    let pod = object(server, "pods", namespace, name).await?;
    let ip = text(&pod, "/status/podIP");
    if ip.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} has no IP address yet")));
    }
    let node_name = text(&pod, "/spec/nodeName");
    let node = object(server, "nodes", "", node_name).await;
    let simulated = node.is_ok_and(|n| text(&n, "/metadata/annotations/kubeyard.dev~1runtime") != "process");
    if simulated && forwarding {
        return Err(ApiError::simulated(name, node_name, "ports to forward"));
    }
    if simulated {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "pod {name} runs on simulated node {node_name}: nothing listens at its address \
                 (pods on a container cluster's nodes do)"
            ),
        ));
    }
    Ok((ip.to_string(), text(&pod, "/metadata/uid").to_string()))
}

/// Where the request goes: `ip:port` (a pod without a port is asked on 80, as the real
/// server leaves the port to the scheme's default).
async fn locate(server: &ApiServer, target: &ProxyTarget) -> Result<String, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(&target.id).ok_or_else(|| {
        let kind = if target.kind == ProxyKind::Pod { "pod" } else { "service" };
        ApiError::bad_request(format!("invalid {kind} request {:?}", target.id))
    })?;
    if scheme == "https" {
        return Err(ApiError::bad_request("kubeyard proxies plain HTTP only: drop the https: scheme"));
    }
    match target.kind {
        ProxyKind::Pod => {
            let (ip, _) = pod_address(server, &target.namespace, name, false).await?;
            let port = if port.is_empty() { "80" } else { port };
            port.parse::<u16>().map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
            Ok(format!("{ip}:{port}"))
        }
        ProxyKind::Service => service_endpoint(server, &target.namespace, name, port).await,
    }
}

/// A ready endpoint (`ip:port`) of a Service's port, given by its name or number, picked
/// at random as the real server's `ResourceLocation` picks one.
pub(super) async fn service_endpoint(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    port: &str,
) -> Result<String, ApiError> {
    let service = object(server, "services", namespace, name).await?;
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    // A port number names the Service port of that number, by its name.
    let port_name = match port.parse::<i64>() {
        Ok(number) => ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(number))
            .map(|p| text(p, "/name").to_string())
            .ok_or_else(|| {
                ApiError::new(503, "ServiceUnavailable", format!("no service port {number} found for service {name:?}"))
            })?,
        Err(_) => port.to_string(),
    };
    let endpoints = object(server, "endpoints", namespace, name).await.ok();
    let subsets =
        endpoints.as_ref().and_then(|e| e.get("subsets")).and_then(Value::as_array).cloned().unwrap_or_default();
    let unavailable =
        || ApiError::new(503, "ServiceUnavailable", format!("no endpoints available for service {name:?}"));
    if subsets.is_empty() {
        return Err(unavailable());
    }
    let mut candidates = Vec::new();
    for subset in &subsets {
        let addresses = subset.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default();
        let subset_ports = subset.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        for subset_port in subset_ports.iter().filter(|p| text(p, "/name") == port_name) {
            let Some(number) = subset_port.get("port").and_then(Value::as_i64) else { continue };
            for address in &addresses {
                candidates.push(format!("{}:{number}", text(address, "/ip")));
            }
        }
    }
    if candidates.is_empty() {
        return Err(unavailable());
    }
    Ok(candidates.swap_remove(fastrand::usize(..candidates.len())))
}

/// Headers that belong to one hop, and the client's credentials, which are the API
/// server's and not the target's business.
const NOT_FORWARDED: &[header::HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in NOT_FORWARDED {
        out.remove(name);
    }
    out.remove("keep-alive");
    // Who the request acted as is the API server's business, not the pod's.
    let impersonating: Vec<_> = out.keys().filter(|name| name.as_str().starts_with("impersonate-")).cloned().collect();
    for name in impersonating {
        out.remove(name);
    }
    out
}

/// How long the target may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    server: &ApiServer,
    target: &ProxyTarget,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let address = locate(server, target).await?;
    let path_and_query = match uri.query() {
        Some(query) => format!("{}?{query}", target.path),
        None => target.path.clone(),
    };
    let url: Uri = format!("http://{address}{path_and_query}")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("the proxied path is not valid: {e}")))?;
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    *request.headers_mut() = forwarded(headers);
    if let Ok(host) = HeaderValue::from_str(&address) {
        request.headers_mut().insert(header::HOST, host);
    }
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Body>(connector);
    let response = client.request(request).await.map_err(|e| {
        let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_else(|| e.to_string());
        ApiError::new(503, "ServiceUnavailable", format!("error trying to reach service: {cause}"))
    })?;
    let (mut parts, incoming) = response.into_parts();
    for name in NOT_FORWARDED {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_keep_everything_after_proxy() {
        let parsed = parse("/api/v1/namespaces/shop/services/web:http/proxy/a/b%20c").unwrap();
        assert_eq!(parsed.kind, ProxyKind::Service);
        assert_eq!((parsed.namespace.as_str(), parsed.id.as_str()), ("shop", "web:http"));
        assert_eq!(parsed.path, "/a/b%20c");
        assert_eq!(parse("/api/v1/namespaces/a/pods/p/proxy").unwrap().path, "/");
        assert_eq!(parse("/api/v1/namespaces/a/pods/p/proxy/").unwrap().path, "/");
        assert!(parse("/api/v1/namespaces/a/pods/p/log").is_none());
        assert!(parse("/api/v1/namespaces/a/configmaps/p/proxy").is_none());
        assert!(parse("/apis/apps/v1/namespaces/a/pods/p/proxy").is_none());
    }

    #[test]
    fn names_carry_a_scheme_and_a_port_as_kubernetes_splits_them() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }
}
