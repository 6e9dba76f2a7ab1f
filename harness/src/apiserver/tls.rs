//! HTTPS for the API server and the credentials of a cluster: certificate authorities
//! made at start, the serving and client certificates they sign, the CA handed to clients
//! in the kubeconfig (as kind and k3d do), and bearer tokens from the system's CSPRNG.
//! kubectl sends credentials (the `--token`) only over TLS.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the server serves with, and what clients must trust.
pub struct Identity {
    /// The CA certificate, PEM: a kubeconfig's `certificate-authority-data`.
    pub ca_pem: String,
    pub config: Arc<ServerConfig>,
}

fn error(e: impl std::fmt::Display) -> String {
    format!("cannot make the TLS certificates: {e}")
}

/// A certificate authority kubeyard made: it signs a cluster's serving and client
/// certificates, and its key never leaves the process that made it.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM: what the other side trusts.
    pub pem: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate and its private key, PEM each.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    /// The key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Authority {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Result<Authority, String> {
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(error)?;
        Ok(Authority { issuer: Issuer::new(params, key), pem: cert.pem() })
    }

    /// A certificate for `common_name`, valid for the DNS names and IP addresses `names`
    /// (a server's; a client's may have none), for `usages` (etcd's serving certificate is
    /// a client's too: its gateway calls etcd itself with it, as kubeadm's is).
    pub fn issue(&self, common_name: &str, names: &[String], usages: &[Usage]) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(error)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = usages
            .iter()
            .map(|usage| match usage {
                Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        let cert = params.signed_by(&key, &self.issuer).map_err(error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The names every serving certificate of kubeyard's holds besides its own: the host's
/// loopback, where the API server is published.
fn with_loopback(hosts: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    names
}

/// A fresh CA and a serving certificate for `localhost`, `127.0.0.1` and `hosts`.
pub fn self_signed(hosts: &[String]) -> Result<Identity, String> {
    let ca = Authority::new("kubeyard-ca")?;
    let serving = serving(&ca, hosts)?;
    Identity::from_pem(&serving.cert_pem, &serving.key_pem, &ca.pem)
}

/// A serving certificate of `ca` for `localhost`, `127.0.0.1` and `hosts` (a container's
/// address on its network), for an API server that runs elsewhere.
pub fn serving(ca: &Authority, hosts: &[String]) -> Result<Issued, String> {
    ca.issue("kubeyard-apiserver", &with_loopback(hosts), &[Usage::Server])
}

/// A serving certificate of `ca` for `localhost`, `127.0.0.1` and `hosts` that is a
/// client's too (etcd's: its gateway calls etcd itself).
pub fn serving_and_client(ca: &Authority, common_name: &str, hosts: &[String]) -> Result<Issued, String> {
    ca.issue(common_name, &with_loopback(hosts), &[Usage::Server, Usage::Client])
}

impl Identity {
    /// Serves with the certificate `cert_pem` (the CA's `ca_pem` sent after it) and its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Identity, String> {
        let mut chain = certificates(cert_pem.as_bytes(), "the serving certificate")?;
        if !ca_pem.is_empty() {
            chain.extend(certificates(ca_pem.as_bytes(), "the certificate authority")?);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("the serving key is not a PEM private key: {e}"))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(error)?;
        // HTTP/1.1 only: clients (client-go among them) then use it, watches included.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Identity { ca_pem: ca_pem.to_string(), config: Arc::new(config) })
    }
}

impl Identity {
    /// Serves with the chain `chain_pem` (the serving certificate, then its CA's, as
    /// Kubernetes' `--tls-cert-file` holds them) and the key; clients are told to trust
    /// the chain's last certificate.
    pub fn from_chain(chain_pem: &str, key_pem: &str) -> Result<Identity, String> {
        let mut identity = Identity::from_pem(chain_pem, key_pem, "")?;
        let blocks: Vec<&str> = chain_pem.split_inclusive("-----END CERTIFICATE-----").collect();
        let last = blocks.iter().rev().find(|b| b.contains("-----BEGIN CERTIFICATE-----")).copied().unwrap_or("");
        identity.ca_pem = format!("{}\n", last.trim());
        Ok(identity)
    }
}

/// The certificates of a PEM text; at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(certs)
}

/// A client's TLS: trusting only the CAs of `ca_pem`, presenting `client` (a certificate
/// and its key, PEM) when given.
pub fn client_config(ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "the certificate authority")? {
        roots.add(cert).map_err(|e| format!("the certificate authority is not usable: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(error)?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => {
            let certs = certificates(cert, "the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the client key is not PEM: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("the client certificate is not usable: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A bearer token: 32 bytes from the system's CSPRNG, in hex (what a kubeconfig and a
/// header carry as is).
pub fn token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` is `expected`, in time that does not depend on where they differ (a
/// token compared byte by byte, stopping at the first difference, leaks its prefix).
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

/// Serves `router` over TLS until the listener fails for good.
pub async fn serve(listener: TcpListener, router: Router, config: Arc<ServerConfig>) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait, as hyper's own server does.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            // A client that fails the handshake (plain HTTP, a distrusted CA) is just gone.
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let service = TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same_secret(a.as_bytes(), a.as_bytes()));
        assert!(!same_secret(a.as_bytes(), b.as_bytes()));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn issued_certificates_load_on_both_sides() {
        let ca = Authority::new("test-ca").unwrap();
        let server = serving(&ca, &["10.200.0.3".into()]).unwrap();
        Identity::from_pem(&server.cert_pem, &server.key_pem, &ca.pem).unwrap();
        let chained = Identity::from_chain(&format!("{}{}", server.cert_pem, ca.pem), &server.key_pem).unwrap();
        assert_eq!(chained.ca_pem.trim(), ca.pem.trim());
        let client = ca.issue("apiserver-etcd-client", &[], &[Usage::Client]).unwrap();
        client_config(ca.pem.as_bytes(), Some((client.cert_pem.as_bytes(), client.key_pem.as_bytes()))).unwrap();
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
        assert!(client_config(b"not pem", None).is_err());
    }
}
