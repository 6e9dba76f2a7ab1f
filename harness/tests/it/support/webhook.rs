//! A webhook in the test process, as a cluster's operator would run one: HTTPS with a
//! certificate of its own CA for 127.0.0.1, answering every POST with what `answer`
//! makes of the JSON it was sent, and keeping what it was sent.

use axum::routing::post;
use base64::Engine;
use kubeyard_harness::apiserver::tls;
use serde_json::Value;
use std::sync::{Arc, Mutex};

pub struct Webhook {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA's certificate, base64 of PEM: a `clientConfig.caBundle`.
    pub ca_bundle: String,
    /// Every body posted, in order, with the path and query it was posted to.
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn start(answer: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Webhook {
        Webhook::serving(&[], answer)
    }

    /// A webhook whose certificate also names `hosts` (a Service's `name.namespace.svc`).
    pub fn serving(hosts: &[&str], answer: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Webhook {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ca = tls::Authority::new("webhook-ca").expect("a CA");
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let issued = tls::serving(&ca, &hosts).expect("a serving certificate");
        let identity = tls::Identity::from_pem(&issued.cert_pem, &issued.key_pem, &ca.pem).expect("loads");
        let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let answer = Arc::new(answer);
        let kept = Arc::clone(&calls);
        let router = axum::Router::new().fallback(post(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let (answer, kept) = (Arc::clone(&answer), Arc::clone(&kept));
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let reply = answer(&body);
                kept.lock().unwrap().push((uri.to_string(), body));
                ([(axum::http::header::CONTENT_TYPE, "application/json")], reply.to_string())
            }
        }));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
        let address = listener.local_addr().expect("bound");
        runtime.spawn(tls::serve(listener, router, identity.config));
        Webhook {
            url: format!("https://{address}"),
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(&ca.pem),
            calls,
            _runtime: runtime,
        }
    }

    /// A `clientConfig` for the webhook at `path`.
    pub fn client_config(&self, path: &str) -> Value {
        serde_json::json!({"url": format!("{}{path}", self.url), "caBundle": self.ca_bundle})
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}
