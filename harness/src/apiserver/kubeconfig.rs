//! The kubeconfig that points kubectl and every other client at a kubeyard server.

use std::io::Write;
use std::path::Path;

/// The kubeconfig text for a server at `url` (`http://127.0.0.1:8080`), trusting the
/// CA `ca_pem` when it serves HTTPS.
pub fn render(url: &str, token: Option<&str>, ca_pem: Option<&str>) -> String {
    let user = match token {
        // JSON strings are YAML strings, and escape whatever the token holds.
        Some(token) => format!("    token: {}\n", serde_json::Value::String(token.to_string())),
        None => "    {}\n".to_string(),
    };
    let user = format!("  user:\n{user}");
    let ca = ca_pem.map_or(String::new(), |pem| {
        use base64::Engine;
        format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(pem))
    });
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubeyard\n  cluster:\n    server: {url}\n{ca}\
         contexts:\n- name: kubeyard\n  context:\n    cluster: kubeyard\n    user: kubeyard\n    namespace: default\n\
         current-context: kubeyard\nusers:\n- name: kubeyard\n{user}preferences: {{}}\n"
    )
}

/// Writes it atomically (a reader never sees half a file), readable by its owner only
/// when it holds a token.
pub fn write(path: &Path, url: &str, token: Option<&str>, ca_pem: Option<&str>) -> std::io::Result<()> {
    write_text(path, &render(url, token, ca_pem))
}

/// Writes a rendered kubeconfig as [`write`] does.
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("kubeconfig")));
    {
        let mut file = std::fs::File::create(&temporary)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}
