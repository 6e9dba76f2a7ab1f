//! A small Kubernetes client for kubeyard's own commands (`plan --kubeconfig`): JSON
//! over HTTP or HTTPS (the kubeconfig's CA, client certificates, tokens), discovery of
//! where each kind lives, get and paged list. `state` reads what a cluster holds for a plan.

pub mod apply;
pub mod config;
pub mod state;

use bytes::Bytes;
use config::Endpoint;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const JSON: &str = "application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

pub struct Client {
    endpoint: Endpoint,
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    authorization: Option<String>,
    /// `apiVersion` to its resources (kind → plural, namespaced), from discovery.
    resources: Mutex<HashMap<String, Arc<Resources>>>,
}

/// Why a write failed: someone else changed the object first (plan again), or anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Conflict(String),
    Failed(String),
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Written::Conflict(message) | Written::Failed(message) => f.write_str(message),
        }
    }
}

/// A resource found by the name a user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub api_version: String,
    pub plural: String,
    pub namespaced: bool,
    pub kind: String,
}

/// One group version's kinds: each kind's plural and whether it is namespaced.
type Resources = HashMap<String, (String, bool)>;

/// `insecure-skip-tls-verify: true`: the server's certificate is not checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls(endpoint: &Endpoint) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if endpoint.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider)))
    } else {
        let Some(ca) = &endpoint.ca_pem else {
            return Err(format!(
                "{} is HTTPS and the kubeconfig names no certificate-authority to trust",
                endpoint.server
            ));
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| format!("the kubeconfig's certificate authority is not PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("the kubeconfig's certificate authority is not usable: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match &endpoint.client_cert {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the client key is not PEM: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("the client certificate is not usable: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Result<Client, String> {
        let https = endpoint.server.starts_with("https://");
        if !https && !endpoint.server.starts_with("http://") {
            return Err(format!("{} is not an http:// or https:// URL", endpoint.server));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = if https {
            connector.with_tls_config(tls(&endpoint)?)
        } else {
            // Never used for plain HTTP, but the connector wants one.
            connector.with_tls_config(
                ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            )
        };
        let connector = connector.https_or_http().enable_http1().build();
        let authorization = match (&endpoint.token, &endpoint.basic) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some((user, password))) => {
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ))
            }
            (None, None) => None,
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Client { endpoint, http, authorization, resources: Mutex::new(HashMap::new()) })
    }

    pub fn server(&self) -> &str {
        &self.endpoint.server
    }

    /// One request: the answer's status and JSON body (`Null` when it has none).
    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint.server))
            .header("accept", accept);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.endpoint.server, source_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if body.is_empty() {
            return Ok((status, Value::Null));
        }
        let value = serde_json::from_slice(&body)
            .map_err(|_| format!("{path}: the server answered {status} with something that is not JSON"))?;
        Ok((status, value))
    }

    /// A failed answer said in full: the Status's message when the server sent one.
    fn failure(path: &str, status: u16, body: &Value) -> String {
        let message = body.get("message").and_then(Value::as_str).unwrap_or("");
        format!("{path}: {status} {}: {message}", body.get("reason").and_then(Value::as_str).unwrap_or(""))
    }

    /// `GET path`: the object, `None` on 404, and any other failure said in full.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.send(hyper::Method::GET, path, JSON, None).await?;
        match status {
            404 => Ok(None),
            200..=299 => Ok(Some(body)),
            _ => Err(Client::failure(path, status, &body)),
        }
    }

    /// `GET path` with the answer as a `meta.k8s.io/v1` Table, as kubectl asks for it.
    pub async fn table(&self, path: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.send(hyper::Method::GET, path, TABLE, None).await?;
        match status {
            404 => Ok(None),
            200..=299 => Ok(Some(body)),
            _ => Err(Client::failure(path, status, &body)),
        }
    }

    /// `POST collection`: the object as the server stored it.
    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value, Written> {
        self.write(hyper::Method::POST, collection, object).await
    }

    /// `PUT path`: the object as the server stored it; a stale resourceVersion is a conflict.
    pub async fn replace(&self, path: &str, object: &Value) -> Result<Value, Written> {
        self.write(hyper::Method::PUT, path, object).await
    }

    async fn write(&self, method: hyper::Method, path: &str, object: &Value) -> Result<Value, Written> {
        let (status, body) = self.send(method, path, JSON, Some(object)).await.map_err(Written::Failed)?;
        match status {
            200..=299 => Ok(body),
            409 => Err(Written::Conflict(Client::failure(path, status, &body))),
            _ => Err(Written::Failed(Client::failure(path, status, &body))),
        }
    }

    /// `DELETE path` with background propagation, as kubectl deletes; gone already is fine.
    pub async fn delete(&self, path: &str) -> Result<(), String> {
        let options =
            serde_json::json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        let (status, body) = self.send(hyper::Method::DELETE, path, JSON, Some(&options)).await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(Client::failure(path, status, &body)),
        }
    }

    /// Every item of a collection, page by page; items get the list's type when the
    /// server leaves it out (Kubernetes does).
    pub async fn list(&self, path: &str, api_version: &str, kind: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page = match &token {
                Some(token) => format!("{path}{separator}limit=500&continue={token}"),
                None => format!("{path}{separator}limit=500"),
            };
            let Some(list) = self.get(&page).await? else { return Ok(items) };
            for mut item in list.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
                if let Some(map) = item.as_object_mut() {
                    map.entry("apiVersion").or_insert_with(|| Value::String(api_version.to_string()));
                    map.entry("kind").or_insert_with(|| Value::String(kind.to_string()));
                }
                items.push(item);
            }
            token = list
                .pointer("/metadata/continue")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    /// Where objects of `kind` in `api_version` live: their plural and whether they are
    /// namespaced; `None` when the server does not serve them.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<Option<(String, bool)>, String> {
        let known = self.resources.lock().unwrap_or_else(|p| p.into_inner()).get(api_version).cloned();
        let resources = match known {
            Some(resources) => resources,
            None => {
                let path = if api_version.contains('/') {
                    format!("/apis/{api_version}")
                } else {
                    format!("/api/{api_version}")
                };
                let mut found = HashMap::new();
                if let Some(list) = self.get(&path).await? {
                    for resource in list.get("resources").and_then(Value::as_array).into_iter().flatten() {
                        let (Some(name), Some(kind)) = (
                            resource.get("name").and_then(Value::as_str),
                            resource.get("kind").and_then(Value::as_str),
                        ) else {
                            continue;
                        };
                        if !name.contains('/') {
                            let namespaced = resource.get("namespaced").and_then(Value::as_bool).unwrap_or(true);
                            found.insert(kind.to_string(), (name.to_string(), namespaced));
                        }
                    }
                }
                let found = Arc::new(found);
                self.resources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(api_version.to_string(), Arc::clone(&found));
                found
            }
        };
        Ok(resources.get(kind).cloned())
    }

    /// The resource a user means by `name` (plural, singular, kind or short name, with an
    /// optional `.group`: `deploy`, `deployment.apps`), as kubectl resolves it: the core
    /// group first, then each group's preferred version.
    pub async fn find(&self, name: &str) -> Result<Option<Found>, String> {
        let name = name.to_lowercase();
        let (name, group) = match name.split_once('.') {
            Some((name, group)) => (name.to_string(), Some(group.to_string())),
            None => (name, None),
        };
        let mut versions = Vec::new();
        if group.as_deref().is_none_or(|g| g.is_empty() || g == "core") {
            versions.push("v1".to_string());
        }
        if let Some(groups) = self.get("/apis").await? {
            for entry in groups.get("groups").and_then(Value::as_array).into_iter().flatten() {
                let group_name = entry.get("name").and_then(Value::as_str).unwrap_or("");
                if group.as_deref().is_some_and(|g| g != group_name && g != "core") {
                    continue;
                }
                if let Some(version) = entry.pointer("/preferredVersion/groupVersion").and_then(Value::as_str) {
                    versions.push(version.to_string());
                }
            }
        }
        for version in versions {
            let path = if version.contains('/') { format!("/apis/{version}") } else { format!("/api/{version}") };
            let Some(list) = self.get(&path).await? else { continue };
            for resource in list.get("resources").and_then(Value::as_array).into_iter().flatten() {
                let text = |key: &str| resource.get(key).and_then(Value::as_str).unwrap_or("").to_lowercase();
                let plural = text("name");
                if plural.contains('/') {
                    continue;
                }
                let short = resource.get("shortNames").and_then(Value::as_array).into_iter().flatten();
                let matches = plural == name
                    || text("singularName") == name
                    || text("kind") == name
                    || short.filter_map(Value::as_str).any(|s| s == name);
                if matches {
                    return Ok(Some(Found {
                        api_version: version,
                        plural,
                        namespaced: resource.get("namespaced").and_then(Value::as_bool).unwrap_or(true),
                        kind: resource.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The path of a collection (`namespace` only for namespaced kinds).
    pub fn collection(api_version: &str, plural: &str, namespace: Option<&str>) -> String {
        let root =
            if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
        match namespace {
            Some(namespace) => format!("{root}/namespaces/{namespace}/{plural}"),
            None => format!("{root}/{plural}"),
        }
    }
}

/// An error and its causes, for "cannot reach" messages that say why.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
