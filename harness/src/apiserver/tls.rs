//! HTTPS for the API server: a certificate authority made at start, a serving
//! certificate it signs for loopback, and the CA handed to clients in the kubeconfig,
//! as kind and k3d do. kubectl sends credentials (the `--token`) only over TLS.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
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

/// A fresh CA and a serving certificate for `localhost`, `127.0.0.1` and `hosts`.
pub fn self_signed(hosts: &[String]) -> Result<Identity, String> {
    let ca_key = KeyPair::generate().map_err(error)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(error)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kubeyard-ca");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(error)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(hosts.iter().cloned());
    let server_key = KeyPair::generate().map_err(error)?;
    let mut server = CertificateParams::new(names).map_err(error)?;
    server.distinguished_name.push(DnType::CommonName, "kubeyard-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).map_err(error)?;

    let chain = vec![CertificateDer::from(server_cert.der().to_vec()), CertificateDer::from(ca_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(error)?;
    // HTTP/1.1 only: clients (client-go among them) then use it, watches included.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity { ca_pem: ca_cert.pem(), config: Arc::new(config) })
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
