//! Calling a webhook as the API server does: a JSON `POST` over HTTPS to a
//! `clientConfig` (a `url`, or a Service in the cluster) trusting its `caBundle`, with a
//! deadline. Admission webhooks and CRD conversion webhooks both go through here.
//!
//! A Service is reached at one of its ready endpoints (as kube-apiserver does with
//! `--enable-aggregator-routing`), and its certificate is checked against the Service's
//! DNS name `<name>.<namespace>.svc`, as Kubernetes checks it. Failures read as Go's
//! HTTP client words them (`Post "https://...": <cause>`), because Kubernetes puts that
//! text into the errors clients see.

use super::ApiServer;
use super::proxy;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::ServerName;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Where a webhook is, from its `clientConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The URL as Kubernetes shows it in errors (with `?timeout=` for admission).
    pub url: String,
    /// Host name the certificate must carry.
    server_name: String,
    /// Where to connect: `host:port`, or a Service to resolve.
    address: Address,
    /// Path and query sent.
    path: String,
    ca_bundle: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Direct(String),
    Service { namespace: String, name: String, port: u16 },
}

/// Why a call failed, as the error Kubernetes reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Reads a `clientConfig`; `query` is added to the path (`timeout=10s`).
pub(super) fn endpoint(config: &Value, query: Option<&str>) -> Result<Endpoint, CallError> {
    use base64::Engine;
    let ca_bundle = match text(config, "/caBundle") {
        Some(encoded) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| CallError(format!("the caBundle is not base64: {e}")))?,
        ),
        None => None,
    };
    let with_query = |path: &str| match query {
        Some(query) if path.contains('?') => format!("{path}&{query}"),
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    if let Some(url) = text(config, "/url") {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| CallError(format!("{url:?}: 'https' is the only allowed URL scheme")))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
        let (host, port) = split_host_port(authority);
        let path = with_query(path);
        return Ok(Endpoint {
            url: format!("https://{authority}{path}"),
            server_name: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            address: Address::Direct(format!("{host}:{}", port.unwrap_or(443))),
            path,
            ca_bundle,
        });
    }
    let service = config
        .get("service")
        .filter(|s| s.is_object())
        .ok_or_else(|| CallError("the clientConfig has neither url nor service".into()))?;
    let namespace = text(service, "/namespace").unwrap_or("default").to_string();
    let name = text(service, "/name").unwrap_or_default().to_string();
    let port = service.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443);
    let path = with_query(text(service, "/path").unwrap_or("/"));
    let host = format!("{name}.{namespace}.svc");
    Ok(Endpoint {
        url: format!("https://{host}:{port}{path}"),
        server_name: host,
        address: Address::Service { namespace, name, port },
        path,
        ca_bundle,
    })
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    // `[::1]:8443`, `host:8443`, `host`.
    let colon = if authority.starts_with('[') { authority.find("]:").map(|at| at + 1) } else { authority.rfind(':') };
    match colon {
        Some(at) => match authority[at + 1..].parse() {
            Ok(port) => (&authority[..at], Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

/// Posts `body` and reads the JSON answer, all within `timeout`.
pub(super) async fn post(
    server: &ApiServer,
    endpoint: &Endpoint,
    body: &Value,
    timeout: Duration,
) -> Result<Value, CallError> {
    let failed = |cause: String| CallError(format!("Post {:?}: {cause}", endpoint.url));
    match tokio::time::timeout(timeout, exchange(server, endpoint, body)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(cause)) => Err(failed(cause)),
        Err(_) => Err(failed("context deadline exceeded".into())),
    }
}

async fn exchange(server: &ApiServer, endpoint: &Endpoint, body: &Value) -> Result<Value, String> {
    let address = match &endpoint.address {
        Address::Direct(address) => address.clone(),
        Address::Service { namespace, name, port } => {
            proxy::service_endpoint(server, namespace, name, &port.to_string())
                .await
                .map_err(|e| format!("service \"{namespace}/{name}\": {}", e.message))?
        }
    };
    let config = match &endpoint.ca_bundle {
        Some(pem) => super::tls::client_config(pem, None)?,
        None => return Err("x509: certificate signed by unknown authority (no caBundle given)".into()),
    };
    let name = ServerName::try_from(endpoint.server_name.clone()).map_err(|e| format!("invalid host name: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(&address).await.map_err(|e| format!("dial tcp {address}: {e}"))?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.server_name.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(format!("the server responded with the status code {}: {shown}", status.as_u16()));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the response is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_configs_name_the_url_kubernetes_shows() {
        let service = json!({"service": {"namespace": "hooks", "name": "guard", "path": "/validate", "port": 8443}});
        let found = endpoint(&service, Some("timeout=10s")).unwrap();
        assert_eq!(found.url, "https://guard.hooks.svc:8443/validate?timeout=10s");
        assert_eq!(found.server_name, "guard.hooks.svc");
        assert_eq!(found.address, Address::Service { namespace: "hooks".into(), name: "guard".into(), port: 8443 });
        let url = endpoint(&json!({"url": "https://127.0.0.1:9443/convert"}), None).unwrap();
        assert_eq!((url.url.as_str(), url.path.as_str()), ("https://127.0.0.1:9443/convert", "/convert"));
        assert_eq!(url.address, Address::Direct("127.0.0.1:9443".into()));
        let bare = endpoint(&json!({"url": "https://hooks.example"}), Some("timeout=5s")).unwrap();
        assert_eq!(
            (bare.url.as_str(), bare.address.clone()),
            ("https://hooks.example/?timeout=5s", Address::Direct("hooks.example:443".into()))
        );
        let v6 = endpoint(&json!({"url": "https://[::1]:8443/x"}), None).unwrap();
        assert_eq!((v6.server_name.as_str(), v6.address), ("::1", Address::Direct("[::1]:8443".into())));
        assert!(endpoint(&json!({"url": "http://insecure/"}), None).is_err());
        assert!(endpoint(&json!({"caBundle": "%%%", "url": "https://a/"}), None).is_err());
        assert!(endpoint(&json!({}), None).is_err());
    }
}
