//! Reading a kubeconfig: the current (or named) context's server, its CA, and the user's
//! credentials (a token, a token file, a client certificate, basic auth).

use base64::Engine;
use kubeyard_compiler::source::SourceFile;
use kubeyard_compiler::yaml::Documents;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where and how to reach one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub server: String,
    /// PEM of the CAs to trust.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<String>,
    /// PEM of the client certificate and its key.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    pub basic: Option<(String, String)>,
    /// The context's namespace.
    pub namespace: Option<String>,
}

/// The kubeconfig kubectl would read: `--kubeconfig`, else the first path of
/// `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("KUBECONFIG") {
        return std::env::split_paths(&paths).find(|p| !p.as_os_str().is_empty());
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".kube/config"))
}

fn named<'a>(config: &'a Value, list: &str, name: &str, field: &str) -> Result<&'a Value, String> {
    config
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|entry| entry.get(field))
        .ok_or_else(|| format!("the kubeconfig has no {field} named \"{name}\" in {list}"))
}

/// Inline `*-data` (base64) or a file named beside the kubeconfig.
fn material(entry: &Value, field: &str, base: &Path) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = entry.get(format!("{field}-data")).and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("{field}-data in the kubeconfig is not base64: {e}"))?;
        return Ok(Some(bytes));
    }
    match entry.get(field).and_then(Value::as_str) {
        Some(path) => {
            let path = base.join(path);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| format!("cannot read {} (the kubeconfig's {field}): {e}", path.display()))
        }
        None => Ok(None),
    }
}

/// Reads `path` and picks `context` (or the current one).
pub fn load(path: &Path, context: Option<&str>) -> Result<Endpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
    let source = SourceFile::from_bytes(path.display().to_string(), bytes).map_err(|e| e.to_string())?;
    let config = match Documents::new(&source).next() {
        Some(Ok(document)) => match (document.root, document.diagnostics.first()) {
            (Some(root), None) => root.to_json(),
            (_, Some(problem)) => return Err(format!("{}: {}", path.display(), problem.message)),
            (None, None) => return Err(format!("{} is empty", path.display())),
        },
        Some(Err(problem)) => return Err(format!("{}: {}", path.display(), problem.message)),
        None => return Err(format!("{} is empty", path.display())),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let context_name = match context {
        Some(name) => name.to_string(),
        None => config
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("{} has no current-context: name one with --context", path.display()))?
            .to_string(),
    };
    let context = named(&config, "contexts", &context_name, "context")?;
    let cluster_name = context.get("cluster").and_then(Value::as_str).unwrap_or_default();
    let cluster = named(&config, "clusters", cluster_name, "cluster")?;
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the cluster \"{cluster_name}\" has no server"))?
        .trim_end_matches('/')
        .to_string();
    let mut endpoint = Endpoint {
        server,
        ca_pem: material(cluster, "certificate-authority", base)?,
        insecure: cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false),
        namespace: context.get("namespace").and_then(Value::as_str).map(str::to_string),
        ..Endpoint::default()
    };
    if let Some(user_name) = context.get("user").and_then(Value::as_str) {
        let user = named(&config, "users", user_name, "user")?;
        if user.get("exec").is_some() || user.get("auth-provider").is_some() {
            return Err(format!(
                "the user \"{user_name}\" gets its credentials from a plugin (exec or auth-provider), which kubeyard does not run: use a token or a client certificate"
            ));
        }
        endpoint.token =
            match (user.get("token").and_then(Value::as_str), user.get("tokenFile").and_then(Value::as_str)) {
                (Some(token), _) => Some(token.to_string()),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(base.join(file))
                        .map_err(|e| format!("cannot read the token file {file}: {e}"))?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
        endpoint.client_cert = match (material(user, "client-certificate", base)?, material(user, "client-key", base)?)
        {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(format!("the user \"{user_name}\" has a client certificate or key without the other")),
        };
        if let (Some(username), Some(password)) =
            (user.get("username").and_then(Value::as_str), user.get("password").and_then(Value::as_str))
        {
            endpoint.basic = Some((username.to_string(), password.to_string()));
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: b\n\
             clusters:\n- name: one\n  cluster: {server: 'https://a.example:6443/', certificate-authority-data: 'Q0E='}\n\
             contexts:\n- name: a\n  context: {cluster: one, user: u1}\n- name: b\n  context: {cluster: one, user: u2, namespace: shop}\n\
             users:\n- name: u1\n  user: {token: abc}\n- name: u2\n  user: {tokenFile: token}\n- name: u3\n  user: {exec: {command: aws}}\n",
        )
        .unwrap();
        let endpoint = load(&path, None).unwrap();
        assert_eq!(endpoint.server, "https://a.example:6443");
        assert_eq!(endpoint.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!((endpoint.token.as_deref(), endpoint.namespace.as_deref()), (Some("from-file"), Some("shop")));
        assert_eq!(load(&path, Some("a")).unwrap().token.as_deref(), Some("abc"));
        assert!(load(&path, Some("missing")).unwrap_err().contains("no context named \"missing\""));
    }
}
