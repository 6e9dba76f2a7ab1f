//! A [testcontainers](https://docs.rs/testcontainers) module for kubeyard, as
//! testcontainers-modules' `k3s` is for k3s: one container running `kubeyard up` (an API
//! server, the scheduler, the controller manager and simulated nodes, in one process), and
//! the kubeconfig to reach it from the test.
//!
//! The image is `kubeyard/kubeyard:latest`, which `kubeyard image build` makes on the
//! machine (no registry is used): build it once before the tests.
//!
//! ```no_run
//! use testcontainers::runners::AsyncRunner;
//! use testcontainers_kubeyard::Kubeyard;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Kubeyard::default().with_nodes(2).start().await?;
//! let kubeconfig = Kubeyard::kubeconfig(&cluster).await?; // YAML, for kube-rs or kubectl
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::{ContainerAsync, Image, TestcontainersError};

/// The port the API server listens on in the container (HTTPS).
pub const API_PORT: ContainerPort = ContainerPort::Tcp(6443);
/// Where `kubeyard up` writes the kubeconfig in the container.
const KUBECONFIG: &str = "/kubeconfig";

/// `kubeyard up` in a container.
#[derive(Debug, Clone)]
pub struct Kubeyard {
    tag: String,
    nodes: u32,
    cmd: Vec<String>,
}

impl Default for Kubeyard {
    fn default() -> Self {
        Kubeyard { tag: "latest".into(), nodes: 3, cmd: Vec::new() }.command()
    }
}

impl Kubeyard {
    /// Another tag of `kubeyard/kubeyard` (`kubeyard image build` prints the one it made).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// How many simulated nodes (default 3).
    pub fn with_nodes(mut self, nodes: u32) -> Self {
        self.nodes = nodes;
        self.command()
    }

    fn command(mut self) -> Self {
        self.cmd = vec![
            "up".into(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--listen".into(),
            "0.0.0.0:6443".into(),
            "--kubeconfig-out".into(),
            KUBECONFIG.into(),
        ];
        self
    }

    /// The cluster's kubeconfig, its server the address the container's API port is
    /// published at on this host (the API server's certificate holds `localhost` and
    /// `127.0.0.1`). It carries the cluster's CA and token.
    pub async fn kubeconfig(container: &ContainerAsync<Kubeyard>) -> Result<String, TestcontainersError> {
        let bytes = container.copy_file_from(KUBECONFIG, Vec::new()).await?;
        let text = String::from_utf8(bytes).map_err(|e| TestcontainersError::other(format!("kubeconfig: {e}")))?;
        let port = container.get_host_port_ipv4(API_PORT).await?;
        let host = container.get_host().await?.to_string();
        Ok(with_server(&text, &host, port))
    }
}

/// `kubeconfig` with every cluster's `server:` replaced by the published port on `host`.
/// The server's certificate names the loopback addresses (and the container's own): on a
/// remote Docker host (`DOCKER_HOST=tcp://...`) clients are told to check it as `localhost`
/// (`tls-server-name`, which kubectl, client-go, kube-rs and the Python client read).
fn with_server(kubeconfig: &str, host: &str, port: u16) -> String {
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    let server = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let mut out = String::with_capacity(kubeconfig.len());
    for line in kubeconfig.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("tls-server-name:") {
            continue;
        }
        match trimmed.strip_prefix("server:") {
            Some(_) => {
                let indent = &line[..line.len() - trimmed.len()];
                out.push_str(&format!("{indent}server: https://{server}:{port}\n"));
                if !loopback {
                    out.push_str(&format!("{indent}tls-server-name: localhost\n"));
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

impl Image for Kubeyard {
    fn name(&self) -> &str {
        "kubeyard/kubeyard"
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        // `up` writes the kubeconfig once its nodes are ready, then says so.
        vec![WaitFor::message_on_stderr("kubeconfig written to")]
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        self.cmd.iter().map(String::as_str)
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &[API_PORT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_the_published_port() {
        let kubeconfig = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QQ==\n    server: https://0.0.0.0:6443\n  name: kubeyard\n";
        assert_eq!(
            with_server(kubeconfig, "localhost", 32768),
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QQ==\n    server: https://localhost:32768\n  name: kubeyard\n"
        );
        // A remote Docker host: the certificate is checked as localhost's.
        assert_eq!(
            with_server(kubeconfig, "docker.example", 32768),
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QQ==\n    server: https://docker.example:32768\n    tls-server-name: localhost\n  name: kubeyard\n"
        );
    }

    #[test]
    fn the_command_runs_up_with_the_nodes_asked_for() {
        let image = Kubeyard::default().with_nodes(2).with_tag("0.1.0-abc");
        let cmd: Vec<String> = image.cmd().into_iter().map(|c| c.into().into_owned()).collect();
        assert_eq!(cmd, ["up", "--nodes", "2", "--listen", "0.0.0.0:6443", "--kubeconfig-out", "/kubeconfig"]);
        assert_eq!((image.name(), image.tag()), ("kubeyard/kubeyard", "0.1.0-abc"));
    }
}
