//! kubeyard's own commands' view of a cluster (`plan`/`apply`/`get` against a live
//! cluster, tests against any cluster), on kube-rs: its kubeconfig reader (every auth form
//! kubeconfig users have, exec credential plugins included), its transport and its
//! typed discovery. Objects stay JSON values by path, so what a plan compares is exactly
//! what the server sent. `state` reads what a cluster holds for a plan; `apply` carries a
//! plan out.

pub mod apply;
pub mod state;

use http_body_util::BodyExt;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const JSON: &str = "application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Clone)]
pub struct Client {
    kube: kube::Client,
    /// The server's URL, for messages.
    server: String,
    /// `apiVersion` to its kinds' resources, from discovery.
    resources: Arc<Mutex<HashMap<String, Arc<Resources>>>>,
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

/// Why discovery failed: the server was not reached (or cut its answer off), or it
/// answered with an error. A test retries the first and reports the second.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Answered(String),
}

impl From<Failed> for String {
    fn from(failed: Failed) -> String {
        failed.to_string()
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

/// A served kind: where it lives and whether it is namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// One group version's kinds.
type Resources = HashMap<String, Served>;

/// A connection to a kubeconfig's cluster: the client and the context's namespace
/// (`default` when it names none, as kubectl reads it).
pub struct Connected {
    pub client: Client,
    pub namespace: String,
}

impl Client {
    /// Over a kube client already made (the clusters kubeyard runs itself).
    pub fn new(kube: kube::Client, server: impl Into<String>) -> Client {
        Client { kube, server: server.into(), resources: Arc::default() }
    }

    /// The cluster of a kubeconfig, as kubectl picks it: `path`, else `$KUBECONFIG` (its
    /// files merged), else `~/.kube/config`; `context`, else the current one.
    pub async fn connect(path: Option<&Path>, context: Option<&str>) -> Result<Connected, String> {
        let shown = path.map_or_else(|| "the kubeconfig".to_string(), |p| p.display().to_string());
        let kubeconfig = match path {
            Some(path) => kube::config::Kubeconfig::read_from(path),
            None => kube::config::Kubeconfig::read(),
        }
        .map_err(|e| format!("cannot read {shown}: {}", source_chain(&e)))?;
        let options = kube::config::KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("{shown}: {}", source_chain(&e)))?;
        Client::from_config(config)
    }

    /// The server at `url` with a bearer token or none (`--cluster URL --token T`).
    pub fn for_url(url: &str, token: Option<&str>, insecure: bool) -> Result<Connected, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url} is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("{url} is not an http:// or https:// URL"));
        }
        let mut config = kube::Config::new(uri);
        config.accept_invalid_certs = insecure;
        config.auth_info.token = token.map(|t| t.to_string().into());
        Client::from_config(config)
    }

    fn from_config(mut config: kube::Config) -> Result<Connected, String> {
        // kubeyard's writes are owned by `kubeyard` in managedFields (the server names a
        // manager after the User-Agent's product).
        config.headers.push(crate::controlplane::user_agent("kubeyard"));
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let namespace = config.default_namespace.clone();
        let kube = kube::Client::try_from(config).map_err(|e| format!("{server}: {}", source_chain(&e)))?;
        Ok(Connected { client: Client::new(kube, server), namespace })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn kube(&self) -> &kube::Client {
        &self.kube
    }

    /// One request: the answer's status and JSON body (`Null` when it has none).
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        self.send_as(method, path, accept, JSON, body).await
    }

    async fn send_as(
        &self,
        method: http::Method,
        path: &str,
        accept: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = http::Request::builder().method(method).uri(path).header(http::header::ACCEPT, accept);
        let bytes = match body {
            Some(body) => {
                request = request.header(http::header::CONTENT_TYPE, content_type);
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let request = request.body(kube::client::Body::from(bytes)).map_err(|e| e.to_string())?;
        let response =
            self.kube.send(request).await.map_err(|e| format!("cannot reach {}: {}", self.server, source_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: the answer was cut short: {}", source_chain(&e)))?
            .to_bytes();
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
        self.read(path, JSON).await
    }

    /// `GET path` with the answer as a `meta.k8s.io/v1` Table, as kubectl asks for it.
    pub async fn table(&self, path: &str) -> Result<Option<Value>, String> {
        self.read(path, TABLE).await
    }

    async fn read(&self, path: &str, accept: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.send(http::Method::GET, path, accept, None).await?;
        match status {
            404 => Ok(None),
            200..=299 => Ok(Some(body)),
            _ => Err(Client::failure(path, status, &body)),
        }
    }

    /// `POST collection`: the object as the server stored it.
    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value, Written> {
        self.write(http::Method::POST, collection, object).await
    }

    /// `PUT path`: the object as the server stored it; a stale resourceVersion is a conflict.
    pub async fn replace(&self, path: &str, object: &Value) -> Result<Value, Written> {
        self.write(http::Method::PUT, path, object).await
    }

    /// `POST collection` as the field manager `manager`.
    pub async fn create_by(&self, collection: &str, object: &Value, manager: &str) -> Result<Value, Written> {
        self.write_by(http::Method::POST, collection, object, Some(manager)).await
    }

    /// `PUT path` as the field manager `manager`.
    pub async fn replace_by(&self, path: &str, object: &Value, manager: &str) -> Result<Value, Written> {
        self.write_by(http::Method::PUT, path, object, Some(manager)).await
    }

    async fn write(&self, method: http::Method, path: &str, object: &Value) -> Result<Value, Written> {
        self.write_by(method, path, object, None).await
    }

    async fn write_by(
        &self,
        method: http::Method,
        path: &str,
        object: &Value,
        manager: Option<&str>,
    ) -> Result<Value, Written> {
        let target = match manager {
            Some(manager) => format!("{path}?fieldManager={}", query_escape(manager)),
            None => path.to_string(),
        };
        let (status, body) = self.send(method, &target, JSON, Some(object)).await.map_err(Written::Failed)?;
        match status {
            200..=299 => Ok(body),
            409 => Err(Written::Conflict(Client::failure(path, status, &body))),
            _ => Err(Written::Failed(Client::failure(path, status, &body))),
        }
    }

    /// A server-side apply of `object` at `path` by `manager` (an upsert): the object as
    /// the server stored it; a conflict with another manager's fields is `Conflict`, its
    /// message the server's (`Apply failed with 1 conflict: ...`).
    pub async fn apply(&self, path: &str, object: &Value, manager: &str, force: bool) -> Result<Value, Written> {
        let (status, body) = self.send_apply(path, object, manager, force, false).await.map_err(Written::Failed)?;
        match status {
            200..=299 => Ok(body),
            409 => Err(Written::Conflict(Client::failure(path, status, &body))),
            _ => Err(Written::Failed(Client::failure(path, status, &body))),
        }
    }

    /// A server-side apply with `dryRun=All`: what the server would store, or the fields
    /// and managers of its 409 (`kubectl diff --server-side`'s question).
    pub async fn apply_dry_run(
        &self,
        path: &str,
        object: &Value,
        manager: &str,
        force: bool,
    ) -> Result<kubeyard_compiler::plan::DryRun, String> {
        use kubeyard_compiler::plan::{Conflict, DryRun};
        let (status, body) = self.send_apply(path, object, manager, force, true).await?;
        match status {
            200..=299 => Ok(DryRun::Applied(body)),
            409 => {
                let causes = body.pointer("/details/causes").and_then(Value::as_array).cloned().unwrap_or_default();
                let conflicts: Vec<Conflict> = causes
                    .iter()
                    .filter(|c| c.get("reason").and_then(Value::as_str) == Some("FieldManagerConflict"))
                    .map(|c| {
                        let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default();
                        Conflict::from_cause(text("field").to_string(), text("message"))
                    })
                    .collect();
                if conflicts.is_empty() {
                    // A 409 of another kind (the object changed under the request).
                    return Err(Client::failure(path, status, &body));
                }
                Ok(DryRun::Refused(conflicts))
            }
            _ => Err(Client::failure(path, status, &body)),
        }
    }

    async fn send_apply(
        &self,
        path: &str,
        object: &Value,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<(u16, Value), String> {
        let manager = query_escape(manager);
        let target = format!(
            "{path}?fieldManager={manager}{}{}",
            if force { "&force=true" } else { "" },
            if dry_run { "&dryRun=All" } else { "" }
        );
        self.send_as(http::Method::PATCH, &target, JSON, "application/apply-patch+yaml", Some(object)).await
    }

    /// client-go's `csaupgrade` for kubeyard: before `manager` applies server-side the
    /// object at `path`, what kubeyard's client-side applies own becomes its (a JSON
    /// patch of managedFields under the object's resourceVersion, retried when someone
    /// wrote between), so moving to server-side apply is not a conflict with itself.
    pub async fn upgrade_client_side(&self, path: &str, manager: &str) -> Result<(), Written> {
        use kubeyard_compiler::managed_fields::{self, KUBEYARD_CLIENT_SIDE_APPLY};
        for _ in 0..5 {
            let Some(live) = self.get(path).await.map_err(Written::Failed)? else { return Ok(()) };
            let entries = live.pointer("/metadata/managedFields").unwrap_or(&Value::Null);
            let Ok(entries) = managed_fields::decode(entries) else { return Ok(()) };
            let Some(upgraded) = managed_fields::upgrade_client_side(&entries, KUBEYARD_CLIENT_SIDE_APPLY, manager)
            else {
                return Ok(());
            };
            let encoded: Vec<Value> = upgraded.iter().map(managed_fields::Entry::to_json).collect();
            let version = live.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            let patch = serde_json::json!([
                {"op": "replace", "path": "/metadata/managedFields", "value": encoded},
                {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
            ]);
            let (status, body) = self
                .send_as(http::Method::PATCH, path, JSON, "application/json-patch+json", Some(&patch))
                .await
                .map_err(Written::Failed)?;
            match status {
                200..=299 => return Ok(()),
                409 => continue,
                _ => return Err(Written::Failed(Client::failure(path, status, &body))),
            }
        }
        Err(Written::Conflict(format!("{path}: changed by others while its ownership moved to {manager}")))
    }

    /// `DELETE path` with background propagation, as kubectl deletes; gone already is fine.
    pub async fn delete(&self, path: &str) -> Result<(), String> {
        let options =
            serde_json::json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        let (status, body) = self.send(http::Method::DELETE, path, JSON, Some(&options)).await?;
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

    /// One group version's resource list (kube's typed discovery); `None` when the
    /// server does not serve the group version.
    async fn resource_list(
        &self,
        api_version: &str,
    ) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>, Failed> {
        let listed = if api_version.contains('/') {
            self.kube.list_api_group_resources(api_version).await
        } else {
            self.kube.list_core_api_resources(api_version).await
        };
        match listed {
            Ok(list) => Ok(Some(list)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(kube::Error::Api(status)) => Err(Failed::Answered(format!(
                "discovery of {api_version}: {} {}: {}",
                status.code, status.reason, status.message
            ))),
            Err(error) => Err(Failed::Unreachable(format!(
                "discovery of {api_version}: cannot reach {}: {}",
                self.server,
                source_chain(&error)
            ))),
        }
    }

    /// Where objects of `kind` in `api_version` live: their resource and whether they are
    /// namespaced; `None` when the server does not serve them.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<Option<Served>, Failed> {
        let known = self.resources.lock().unwrap_or_else(|p| p.into_inner()).get(api_version).cloned();
        if let Some(served) = known.as_ref().and_then(|resources| resources.get(kind)) {
            return Ok(Some(served.clone()));
        }
        // Not served when last asked, or never asked: ask again, as a CustomResourceDefinition
        // applied a moment ago may serve it now (kubectl's discovery does the same on a miss).
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let Some(list) = self.resource_list(api_version).await? else { return Ok(None) };
        let mut found = HashMap::new();
        for resource in list.resources {
            // Subresources (`pods/status`) are not where objects live.
            if resource.name.contains('/') {
                continue;
            }
            let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
            let served = Served {
                resource: ApiResource::from_gvk_with_plural(&gvk, &resource.name),
                namespaced: resource.namespaced,
            };
            found.insert(resource.kind, served);
        }
        let found = Arc::new(found);
        self.resources.lock().unwrap_or_else(|p| p.into_inner()).insert(api_version.to_string(), Arc::clone(&found));
        Ok(found.get(kind).cloned())
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
        let groups = self
            .kube
            .list_api_groups()
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.server, source_chain(&e)))?;
        for entry in groups.groups {
            if group.as_deref().is_some_and(|g| g != entry.name && g != "core") {
                continue;
            }
            if let Some(preferred) = entry.preferred_version {
                versions.push(preferred.group_version);
            }
        }
        for version in versions {
            let Some(list) = self.resource_list(&version).await? else { continue };
            for resource in list.resources {
                let plural = resource.name.to_lowercase();
                if plural.contains('/') {
                    continue;
                }
                let matches = plural == name
                    || resource.singular_name.to_lowercase() == name
                    || resource.kind.to_lowercase() == name
                    || resource.short_names.iter().flatten().any(|s| *s == name);
                if matches {
                    return Ok(Some(Found {
                        api_version: version,
                        plural,
                        namespaced: resource.namespaced,
                        kind: resource.kind,
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

/// An error and its causes, for messages that say why.
pub(crate) fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A query parameter's value, percent-encoded.
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .flat_map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => vec![b as char],
            other => format!("%{other:02X}").chars().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_current_context_or_a_named_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: b\n\
             clusters:\n- name: one\n  cluster: {server: 'http://a.example:6443/'}\n\
             contexts:\n- name: a\n  context: {cluster: one, user: u1}\n- name: b\n  context: {cluster: one, user: u2, namespace: shop}\n\
             users:\n- name: u1\n  user: {token: abc}\n- name: u2\n  user: {tokenFile: token}\n",
        )
        .unwrap();
        let current = Client::connect(Some(&path), None).await.unwrap();
        assert_eq!((current.client.server(), current.namespace.as_str()), ("http://a.example:6443", "shop"));
        let named = Client::connect(Some(&path), Some("a")).await.unwrap();
        assert_eq!(named.namespace, "default");
        let missing = Client::connect(Some(&path), Some("missing")).await.err().unwrap();
        assert!(missing.contains("missing"), "{missing}");
        let absent = Client::connect(Some(&dir.path().join("nothing")), None).await.err().unwrap();
        assert!(absent.starts_with("cannot read"), "{absent}");
    }

    #[test]
    fn a_url_must_be_http_or_https() {
        assert!(Client::for_url("ftp://x", None, false).err().unwrap().contains("not an http"));
    }
}
