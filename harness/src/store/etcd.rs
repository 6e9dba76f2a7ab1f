//! The store in a real etcd (v3), through etcd's JSON gateway (`/v3/kv/*`, `/v3/watch`):
//! the same trait as the embedded store, so the API server runs on either.
//!
//! Every conditional write is one etcd transaction: create compares the key's
//! `create_revision` with 0, update and delete compare `mod_revision` with the
//! revision the caller read. A watch is one streaming `/v3/watch` request with
//! `prev_kv`, so that updates carry the value they replaced.

use super::{Entry, Event, EventKind, Listing, Store, StoreError, Watch};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub struct EtcdStore {
    endpoint: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// How to reach an etcd that serves HTTPS and asks its clients for a certificate
/// (`--client-cert-auth`), as kubeadm sets etcd up: PEM each.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificate (`--etcd-cafile`).
    pub ca_pem: Vec<u8>,
    /// This client's certificate and key (`--etcd-certfile`, `--etcd-keyfile`).
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("etcd: {error}"))
}

fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn decode(value: Option<&Value>) -> Result<Vec<u8>, StoreError> {
    match value.and_then(Value::as_str) {
        None => Ok(Vec::new()),
        Some(text) => STANDARD.decode(text).map_err(io),
    }
}

/// etcd writes 64-bit numbers as JSON strings.
fn number(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(text)) => text.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn entry(kv: &Value) -> Result<Entry, StoreError> {
    let key = String::from_utf8(decode(kv.get("key"))?).map_err(io)?;
    Ok(Entry { key, value: Bytes::from(decode(kv.get("value"))?), revision: number(kv.get("mod_revision")) })
}

impl EtcdStore {
    /// A store in the etcd at `endpoint` (`http://127.0.0.1:2379`); checks it answers.
    pub async fn connect(endpoint: &str) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_with(endpoint, None).await
    }

    /// The same, over TLS with a client certificate when `tls` is given (an `https://`
    /// endpoint), else plain HTTP.
    pub async fn connect_with(endpoint: &str, tls: Option<&EtcdTls>) -> Result<EtcdStore, StoreError> {
        let config = match tls {
            Some(tls) => {
                crate::apiserver::tls::client_config(&tls.ca_pem, Some((&tls.cert_pem, &tls.key_pem))).map_err(io)?
            }
            // No CA to trust: an `https://` endpoint fails its handshake, plain HTTP works.
            None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(io)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let store = EtcdStore { endpoint: endpoint.trim_end_matches('/').to_string(), client };
        store.revision().await?;
        Ok(store)
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, StoreError> {
        let request = hyper::Request::post(format!("{}{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(io)?;
        let response = self.client.request(request).await.map_err(io)?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(io)?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(io)?;
        if !status.is_success() {
            let message = value.get("message").or_else(|| value.get("error")).and_then(Value::as_str).unwrap_or("");
            return Err(io(format!("{path} answered {status}: {message}")));
        }
        Ok(value)
    }

    async fn current(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let response = self.call("/v3/kv/range", json!({"key": encode(key.as_bytes())})).await?;
        response.get("kvs").and_then(Value::as_array).and_then(|kvs| kvs.first()).map(entry).transpose()
    }

    /// Why a conditional write's comparison failed.
    async fn refused(&self, key: &str, expected: Option<u64>) -> StoreError {
        match self.current(key).await {
            Ok(None) => StoreError::NotFound(key.to_string()),
            Ok(Some(entry)) => {
                StoreError::Conflict { key: key.to_string(), expected: expected.unwrap_or(0), current: entry.revision }
            }
            Err(error) => error,
        }
    }

    /// The comparison for "the key exists, at `expected` if given".
    fn exists_at(key: &str, expected: Option<u64>) -> Value {
        match expected {
            Some(revision) => {
                json!({"key": encode(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()})
            }
            None => {
                json!({"key": encode(key.as_bytes()), "target": "CREATE", "result": "GREATER", "create_revision": "0"})
            }
        }
    }

    /// Runs `operation` if the key exists (at `expected`, if given), in one transaction.
    async fn if_exists(&self, key: &str, expected: Option<u64>, operation: Value) -> Result<Value, StoreError> {
        let transaction = json!({"compare": [EtcdStore::exists_at(key, expected)], "success": [operation]});
        let response = self.call("/v3/kv/txn", transaction).await?;
        if response.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Err(self.refused(key, expected).await);
        }
        Ok(response)
    }

    /// Forgets history up to `revision`: watches from before it get 410.
    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.call("/v3/kv/compaction", json!({"revision": revision.to_string(), "physical": true})).await.map(drop)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn revision(&self) -> Result<u64, StoreError> {
        let response = self.call("/v3/kv/range", json!({"key": encode(b"\0"), "count_only": true})).await?;
        Ok(number(response.pointer("/header/revision")))
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.current(key).await
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<Listing, StoreError> {
        let start = match after {
            Some(after) if after >= prefix => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut request = json!({"key": encode(&start), "range_end": encode(&prefix_end(prefix))});
        if let Some(limit) = limit.filter(|&l| l > 0) {
            request["limit"] = json!(limit.to_string());
        }
        let response = self.call("/v3/kv/range", request).await?;
        let entries = response
            .get("kvs")
            .and_then(Value::as_array)
            .map(|kvs| kvs.iter().map(entry).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default();
        Ok(Listing {
            entries,
            revision: number(response.pointer("/header/revision")),
            more: response.get("more").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        let encoded = encode(key.as_bytes());
        let response = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": encoded, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                    "success": [{"request_put": {"key": encoded, "value": encode(&value)}}],
                }),
            )
            .await?;
        if response.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Err(StoreError::Exists(key.to_string()));
        }
        Ok(number(response.pointer("/header/revision")))
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<u64>) -> Result<u64, StoreError> {
        let put = json!({"request_put": {"key": encode(key.as_bytes()), "value": encode(&value)}});
        let response = self.if_exists(key, expected, put).await?;
        Ok(number(response.pointer("/header/revision")))
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Entry, StoreError> {
        let delete = json!({"request_delete_range": {"key": encode(key.as_bytes()), "prev_kv": true}});
        let response = self.if_exists(key, expected, delete).await?;
        let previous = response
            .pointer("/responses/0/response_delete_range/prev_kvs/0")
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        let mut deleted = entry(previous)?;
        deleted.revision = number(response.pointer("/header/revision"));
        Ok(deleted)
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<Watch, StoreError> {
        let request = json!({"create_request": {
            "key": encode(prefix.as_bytes()),
            "range_end": encode(&prefix_end(prefix)),
            "start_revision": (after + 1).to_string(),
            "prev_kv": true,
        }});
        let request = hyper::Request::post(format!("{}/v3/watch", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(request.to_string())))
            .map_err(io)?;
        let response = self.client.request(request).await.map_err(io)?;
        if !response.status().is_success() {
            return Err(io(format!("/v3/watch answered {}", response.status())));
        }
        let mut body = response.into_body();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            loop {
                let frame = tokio::select! {
                    frame = body.frame() => frame,
                    // The watcher is gone: dropping the body ends etcd's watch stream.
                    _ = tx.closed() => return,
                };
                let Some(Ok(frame)) = frame else { break };
                let Some(data) = frame.data_ref() else { continue };
                buffer.extend_from_slice(data);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    for item in results(&line, after) {
                        let stop = item.is_err();
                        if tx.send(item).await.is_err() || stop {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Err(io("the watch stream ended"))).await;
        });
        Ok(rx)
    }
}

/// The events in one line of a watch stream (or why it was cancelled).
fn results(line: &[u8], after: u64) -> Vec<Result<Event, StoreError>> {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return vec![Err(io("a watch line is not JSON"))];
    };
    let Some(result) = value.get("result") else {
        let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("unknown error");
        return vec![Err(io(message))];
    };
    let compacted = number(result.get("compact_revision"));
    if compacted > 0 {
        return vec![Err(StoreError::Compacted { requested: after, oldest: compacted })];
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        return vec![Err(io("the watch was cancelled"))];
    }
    let Some(events) = result.get("events").and_then(Value::as_array) else { return Vec::new() };
    events
        .iter()
        .map(|event| {
            let kv = event.get("kv").ok_or_else(|| io("a watch event has no kv"))?;
            let key = String::from_utf8(decode(kv.get("key"))?).map_err(io)?;
            let prev = event.get("prev_kv").map(|p| decode(p.get("value")).map(Bytes::from)).transpose()?;
            let delete = event.get("type").and_then(Value::as_str) == Some("DELETE");
            let kind = if delete { EventKind::Delete } else { EventKind::Put };
            let value = if delete { None } else { Some(Bytes::from(decode(kv.get("value"))?)) };
            Ok(Event::new(kind, key, value, prev, number(kv.get("mod_revision"))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_cover_every_key_under_a_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn watch_lines_become_events_or_a_compaction() {
        let line = br#"{"result":{"events":[{"type":"DELETE","kv":{"key":"L2s=","mod_revision":"9"},"prev_kv":{"key":"L2s=","value":"dg==","mod_revision":"8"}}]}}"#;
        let events = results(line, 3);
        let event = events[0].as_ref().unwrap();
        assert_eq!((event.kind, event.key.as_str(), event.revision), (EventKind::Delete, "/k", 9));
        assert_eq!(event.prev.as_deref(), Some(&b"v"[..]));
        let compacted = results(br#"{"result":{"canceled":true,"compact_revision":"7"}}"#, 3);
        assert_eq!(compacted[0], Err(StoreError::Compacted { requested: 3, oldest: 7 }));
        assert!(results(br#"{"result":{"created":true}}"#, 3).is_empty());
    }
}
