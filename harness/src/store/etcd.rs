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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A store in an etcd cluster, reached at any of its members' client URLs. Requests go
/// to the member that answered last; one that cannot be reached, or that has no leader,
/// passes the request to the next. Reads are sent again after a lost connection or an
/// Unavailable answer too; writes only when they surely did not happen (not sent, or
/// refused for want of a leader before anything was proposed), so none is applied twice.
/// A watch that loses its member resumes on another from the revision after the last
/// event it delivered, so its receiver sees no gap and no repeat.
#[derive(Clone)]
pub struct EtcdStore {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    /// The endpoint that answered last: the next request starts there.
    current: AtomicUsize,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// How long to wait for a connection to a member: one that was killed answers nothing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one request may take: etcd gives up on a proposal after about 7 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request keeps trying the members (a leader election takes a second or two).
const RETRY_FOR: Duration = Duration::from_secs(15);
/// How long a watch looks for a member to resume on before it reports the loss.
const RESUME_FOR: Duration = Duration::from_secs(30);

/// Asks each member to refuse a request while it has no leader (etcd's
/// `WithRequireLeader`, which kube-apiserver asks for on watches, through the gateway's
/// metadata headers): here on every request too, so that a write refused this way surely
/// never happened and may go to another member, and a watch on a member cut off from the
/// rest is cancelled rather than left silent.
const REQUIRE_LEADER: (&str, &str) = ("grpc-metadata-hasleader", "true");

/// Whether a request may be sent again, to another member, after it failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: whatever went wrong, asking again changes nothing.
    Repeatable,
    /// Writes: only if the member surely did not apply it.
    IfNotApplied,
}

/// How one attempt at a request failed.
enum Failure {
    /// The request never reached the member (no connection).
    Unsent(String),
    /// The member refused it without proposing it: it has no leader.
    NoLeader(String),
    /// The member is unavailable (gRPC code 14: timeout, leader changed): a write may or
    /// may not have happened.
    Unavailable(String),
    /// The connection failed after the request went out: the same doubt.
    Lost(String),
    /// The member answered with an error that another member would repeat.
    Answered(String),
}

impl Failure {
    fn retryable(&self, retry: Retry) -> bool {
        match self {
            Failure::Unsent(_) | Failure::NoLeader(_) => true,
            Failure::Unavailable(_) | Failure::Lost(_) => retry == Retry::Repeatable,
            Failure::Answered(_) => false,
        }
    }

    fn into_error(self) -> StoreError {
        match self {
            Failure::Unsent(m)
            | Failure::NoLeader(m)
            | Failure::Unavailable(m)
            | Failure::Lost(m)
            | Failure::Answered(m) => io(m),
        }
    }
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

/// The client URLs in `endpoints`, separated by commas as kube-apiserver's
/// `--etcd-servers` takes them.
pub fn endpoints(list: &str) -> Vec<String> {
    list.split(',').map(|url| url.trim().trim_end_matches('/').to_string()).filter(|url| !url.is_empty()).collect()
}

/// What a failed answer says: etcd's gateway answers a gRPC error as JSON with its code
/// (14 is Unavailable) and message.
fn answered(path: &str, status: hyper::StatusCode, body: &Value) -> Failure {
    let message = body.get("message").or_else(|| body.get("error")).and_then(Value::as_str).unwrap_or("");
    let text = format!("{path} answered {status}: {message}");
    if message.contains("no leader") {
        Failure::NoLeader(text)
    } else if body.get("code").and_then(Value::as_u64) == Some(14) || status == hyper::StatusCode::SERVICE_UNAVAILABLE {
        Failure::Unavailable(text)
    } else {
        Failure::Answered(text)
    }
}

impl EtcdStore {
    /// A store in the etcd at `endpoints` (`http://127.0.0.1:2379`, or several members'
    /// URLs separated by commas); checks that one answers.
    pub async fn connect(endpoints: &str) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_with(endpoints, None).await
    }

    /// The same, over TLS with a client certificate when `tls` is given (`https://`
    /// endpoints), else plain HTTP.
    pub async fn connect_with(endpoints: &str, tls: Option<&EtcdTls>) -> Result<EtcdStore, StoreError> {
        let endpoints = self::endpoints(endpoints);
        if endpoints.is_empty() {
            return Err(io("no endpoint given"));
        }
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
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        // A member that falls silent without closing its connections (frozen, cut off) is
        // noticed in about 11 s, as clientv3's gRPC keepalive would: a watch then moves on.
        http.set_keepalive(Some(Duration::from_secs(5)));
        http.set_keepalive_interval(Some(Duration::from_secs(2)));
        http.set_keepalive_retries(Some(3));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let inner = Inner { endpoints, current: AtomicUsize::new(0), client };
        let store = EtcdStore { inner: std::sync::Arc::new(inner) };
        store.revision().await?;
        Ok(store)
    }

    /// The members' client URLs, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, StoreError> {
        self.call_as(path, body, Retry::Repeatable).await
    }

    /// Sends the request to the member that answered last, and on to the next ones while
    /// `retry` allows, for `RETRY_FOR` at most.
    async fn call_as(&self, path: &str, body: Value, retry: Retry) -> Result<Value, StoreError> {
        let body = Bytes::from(body.to_string());
        let started = std::time::Instant::now();
        let count = self.inner.endpoints.len();
        let mut index = self.inner.current.load(Ordering::Relaxed) % count;
        let mut pause = Duration::from_millis(50);
        loop {
            // One round over the members, then a pause: a leader election takes a moment.
            for _ in 0..count {
                match self.inner.send(index, path, body.clone()).await {
                    Ok(value) => {
                        self.inner.current.store(index, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(failure) if failure.retryable(retry) && started.elapsed() < RETRY_FOR => {
                        index = (index + 1) % count;
                    }
                    Err(failure) => return Err(failure.into_error()),
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
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
        let response = self.call_as("/v3/kv/txn", transaction, Retry::IfNotApplied).await?;
        if response.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Err(self.refused(key, expected).await);
        }
        Ok(response)
    }

    /// Forgets history up to `revision`: watches from before it get 410.
    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.call_as(
            "/v3/kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
            Retry::IfNotApplied,
        )
        .await
        .map(drop)
    }

    /// Each member's id, and the id of the leader as that member sees it (`None` for a
    /// member that does not answer), in the order of the endpoints.
    pub async fn members(&self) -> Vec<Option<(u64, u64)>> {
        let mut members = Vec::new();
        for index in 0..self.inner.endpoints.len() {
            let status = self.inner.send(index, "/v3/maintenance/status", Bytes::from_static(b"{}")).await.ok();
            members.push(status.map(|s| (number(s.pointer("/header/member_id")), number(s.get("leader")))));
        }
        members
    }

    /// The index of the endpoint whose member leads now, if the members that answer agree
    /// on one among them (during a change of term they may not: then none).
    pub async fn leader(&self) -> Option<usize> {
        let members = self.members().await;
        let mut views = members.iter().flatten().map(|(_, leader)| *leader);
        let leader = views.next().filter(|&l| l != 0)?;
        if !views.all(|view| view == leader) {
            return None;
        }
        members.iter().position(|m| m.is_some_and(|(id, _)| id == leader))
    }
}

impl Inner {
    /// One attempt at a request, to one member.
    async fn send(&self, index: usize, path: &str, body: Bytes) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.endpoints[index]);
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
            .body(Full::new(body))
            .map_err(|e| Failure::Answered(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let text = format!("{url}: {e}");
                if e.is_connect() { Failure::Unsent(text) } else { Failure::Lost(text) }
            })?;
            let status = response.status();
            let bytes =
                response.into_body().collect().await.map_err(|e| Failure::Lost(format!("{url}: {e}")))?.to_bytes();
            Ok::<_, Failure>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| Failure::Lost(format!("{url}: no answer in {REQUEST_TIMEOUT:?}")))??;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| Failure::Answered(format!("{url}: not JSON: {e}")))?;
        if !status.is_success() {
            return Err(answered(path, status, &value));
        }
        Ok(value)
    }

    /// Opens a watch stream on one member, from `start`.
    async fn open_watch(&self, index: usize, prefix: &str, start: u64) -> Result<Incoming, Failure> {
        let request = json!({"create_request": {
            "key": encode(prefix.as_bytes()),
            "range_end": encode(&prefix_end(prefix)),
            "start_revision": start.to_string(),
            "prev_kv": true,
        }});
        let url = format!("{}/v3/watch", self.endpoints[index]);
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
            .body(Full::new(Bytes::from(request.to_string())))
            .map_err(|e| Failure::Answered(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| Failure::Lost(format!("{url}: no answer in {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| Failure::Unsent(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(Failure::Unavailable(format!("{url} answered {}", response.status())));
        }
        Ok(response.into_body())
    }
}

type Incoming = hyper::body::Incoming;

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
            .call_as(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": encoded, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                    "success": [{"request_put": {"key": encoded, "value": encode(&value)}}],
                }),
                Retry::IfNotApplied,
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
        // The first stream is opened here, so that a watch no member takes fails here; as
        // a read does, it waits out an election (`RETRY_FOR`).
        let inner = std::sync::Arc::clone(&self.inner);
        let count = inner.endpoints.len();
        let before_first = (inner.current.load(Ordering::Relaxed) + count - 1) % count;
        let deadline = std::time::Instant::now() + RETRY_FOR;
        let (mut index, mut body) = match open_somewhere(&inner, prefix, before_first, after, deadline, None).await {
            Ok(opened) => opened,
            Err(reason) => return Err(io(format!("no member took the watch: {reason}"))),
        };
        let prefix = prefix.to_string();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            // The revision of the last event delivered: a resumed stream starts after it.
            let mut last = after;
            // Since when no stream has lasted: a member that takes the watch and drops it
            // at once, again and again, must not keep it alive for ever.
            let mut failing_since: Option<std::time::Instant> = None;
            loop {
                let opened = std::time::Instant::now();
                let ended = pump(&mut body, &tx, &mut last).await;
                let Pumped::Lost(reason, delivered) = ended else { return };
                if delivered || opened.elapsed() > STREAM_LASTED {
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                // The member went away (or lost its leader): another takes the watch on
                // from `last`, so the receiver sees neither gap nor repeat.
                match open_somewhere(&inner, &prefix, index, last, since + RESUME_FOR, Some(&tx)).await {
                    Ok((next, stream)) => (index, body) = (next, stream),
                    Err(why) => {
                        let message = format!(
                            "the watch stream ended ({reason}) and no member took it on within {RESUME_FOR:?}: {why}"
                        );
                        let _ = tx.send(Err(io(message))).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// A stream that lasted this long was a working one: its loss starts a new count.
const STREAM_LASTED: Duration = Duration::from_secs(10);

/// How a watch stream ended.
enum Pumped {
    /// The receiver is gone.
    Closed,
    /// An error the receiver was given (a compaction, a cancellation): the watch is over.
    Delivered,
    /// The connection to the member ended (and whether events came through it first):
    /// the watch may resume elsewhere.
    Lost(String, bool),
}

/// Passes one stream's events to `tx`, noting in `last` the revision of each.
async fn pump(body: &mut Incoming, tx: &mpsc::Sender<Result<Event, StoreError>>, last: &mut u64) -> Pumped {
    let mut buffer = Vec::new();
    let mut delivered = false;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // The watcher is gone: dropping the body ends etcd's watch stream.
            _ = tx.closed() => return Pumped::Closed,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Pumped::Lost(error.to_string(), delivered),
            None => return Pumped::Lost("the member closed the stream".into(), delivered),
        };
        let Some(data) = frame.data_ref() else { continue };
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            match results(&line, *last) {
                Line::Events(events) => {
                    for event in events {
                        let stop = event.is_err();
                        if let Ok(event) = &event {
                            *last = event.revision;
                            delivered = true;
                        }
                        if tx.send(event).await.is_err() {
                            return Pumped::Closed;
                        }
                        if stop {
                            return Pumped::Delivered;
                        }
                    }
                }
                Line::Resumable(reason) => return Pumped::Lost(reason, delivered),
            }
        }
    }
}

/// Opens the watch after `last` on the members after `failed` in turn, pausing between
/// rounds, until `deadline`; why not, if no member took it (or the receiver left).
async fn open_somewhere(
    inner: &Inner,
    prefix: &str,
    failed: usize,
    last: u64,
    deadline: std::time::Instant,
    tx: Option<&mpsc::Sender<Result<Event, StoreError>>>,
) -> Result<(usize, Incoming), String> {
    let count = inner.endpoints.len();
    let mut index = failed;
    let mut pause = Duration::from_millis(50);
    let mut why = String::from("no member answered");
    loop {
        for _ in 0..count {
            index = (index + 1) % count;
            match inner.open_watch(index, prefix, last + 1).await {
                Ok(body) => return Ok((index, body)),
                Err(failure) => why = failure.into_error().to_string(),
            }
        }
        if std::time::Instant::now() >= deadline || tx.is_some_and(|tx| tx.is_closed()) {
            return Err(why);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// What one line of a watch stream holds.
enum Line {
    /// Events, or the error that ends the watch (a compaction).
    Events(Vec<Result<Event, StoreError>>),
    /// The member cancelled the watch for a reason of its own (it lost its leader):
    /// another member may take it on.
    Resumable(String),
}

/// The events in one line of a watch stream, or why it ended.
fn results(line: &[u8], after: u64) -> Line {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Line::Events(vec![Err(io("a watch line is not JSON"))]);
    };
    let Some(result) = value.get("result") else {
        // The gateway's stream failed: the member is going away or lost its leader
        // (Unavailable, 14), which another member may not share; anything else
        // (permission denied) every member would repeat.
        let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("unknown error");
        let code = value.pointer("/error/grpc_code").or_else(|| value.pointer("/error/code")).and_then(Value::as_u64);
        if code == Some(14) || message.contains("no leader") {
            return Line::Resumable(message.to_string());
        }
        return Line::Events(vec![Err(io(message))]);
    };
    let compacted = number(result.get("compact_revision"));
    if compacted > 0 {
        return Line::Events(vec![Err(StoreError::Compacted { requested: after, oldest: compacted })]);
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        let reason = result.get("cancel_reason").and_then(Value::as_str).unwrap_or("the watch was cancelled");
        // A member cut off from its leader cancels its watches (`WithRequireLeader`):
        // another member takes them on. Any other reason is the watch's end.
        if reason.contains("no leader") {
            return Line::Resumable(reason.to_string());
        }
        return Line::Events(vec![Err(io(reason))]);
    }
    let Some(events) = result.get("events").and_then(Value::as_array) else { return Line::Events(Vec::new()) };
    Line::Events(
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
            .collect(),
    )
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
        let Line::Events(events) = results(line, 3) else { panic!("events expected") };
        let event = events[0].as_ref().unwrap();
        assert_eq!((event.kind, event.key.as_str(), event.revision), (EventKind::Delete, "/k", 9));
        assert_eq!(event.prev.as_deref(), Some(&b"v"[..]));
        let Line::Events(compacted) = results(br#"{"result":{"canceled":true,"compact_revision":"7"}}"#, 3) else {
            panic!("a compaction ends the watch")
        };
        assert_eq!(compacted[0], Err(StoreError::Compacted { requested: 3, oldest: 7 }));
        assert!(matches!(results(br#"{"result":{"created":true}}"#, 3), Line::Events(e) if e.is_empty()));
        // A member that lost its leader cancels its watches: another member takes them on.
        let lost = results(br#"{"result":{"canceled":true,"cancel_reason":"etcdserver: no leader"}}"#, 3);
        assert!(matches!(lost, Line::Resumable(reason) if reason.contains("no leader")));
        // A refusal every member would repeat ends the watch with its reason.
        let refused = results(
            br#"{"result":{"created":true,"canceled":true,"cancel_reason":"etcdserver: permission denied"}}"#,
            3,
        );
        assert!(
            matches!(&refused, Line::Events(e) if matches!(&e[0], Err(StoreError::Io(m)) if m.contains("permission denied")))
        );
        let unavailable = results(br#"{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing"}}"#, 3);
        assert!(matches!(unavailable, Line::Resumable(_)));
    }
}
