//! The API server under load on loopback, measured by its own load tool: creates,
//! gets, and one write stream fanned out to 100 watchers, with p50 and p99 latencies.
//! Server and load share the machine, as they would with wrk.
//!
//! Run: `cargo bench -p kubeyard-harness --bench apiserver` (add `-- --creates N --gets N
//! --clients N --watchers N --updates N`).
//! Targets (issue 5), 2-core machine, embedded store: 5,000 creates/s, 20,000 gets/s, and
//! 100 watchers keeping up with the write stream.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::CatalogOptions;
use kubeyard_harness::apiserver::{ApiServer, Options, objects};
use kubeyard_harness::store::Store;
use kubeyard_harness::store::memory::{DEFAULT_HISTORY, MemoryStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Http = Client<HttpConnector, Full<Bytes>>;

struct Settings {
    creates: usize,
    gets: usize,
    clients: usize,
    watchers: usize,
    updates: usize,
}

fn settings() -> Settings {
    let mut settings = Settings { creates: 20_000, gets: 100_000, clients: 32, watchers: 100, updates: 2_000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{arg} N"));
        match arg.as_str() {
            "--creates" => settings.creates = value(),
            "--gets" => settings.gets = value(),
            "--clients" => settings.clients = value(),
            "--watchers" => settings.watchers = value(),
            "--updates" => settings.updates = value(),
            _ => {}
        }
    }
    settings
}

/// Starts a server on its own two-thread runtime; returns its URL.
fn serve(store: Arc<dyn Store>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admission = Admission::new(CatalogOptions::default()).unwrap();
            let server = ApiServer::new(store, admission, Options::default());
            objects::ensure_namespace(&server, "default").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            server.serve(listener).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

async fn send(http: &Http, method: &str, url: &str, body: Option<String>) -> (u16, Bytes) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let response = http.request(request).await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

fn config_map(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench","tier":"web"}}}},"data":{{"config.yaml":"replicas: 3\nimage: example/app:1.2.3\n","mode":"production"}}}}"#
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn report(what: &str, count: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    println!(
        "{what:<28} {count:>7} in {:>6.3} s = {:>7.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

/// `total` requests from `clients` concurrent clients; `make` gives each request.
async fn load(
    http: &Http,
    clients: usize,
    total: usize,
    make: impl Fn(usize) -> (&'static str, String, Option<String>, u16) + Send + Sync + 'static,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, next, make) = (http.clone(), Arc::clone(&next), Arc::clone(&make));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let (method, url, body, expected) = make(i);
                    let sent = Instant::now();
                    let (status, reply) = send(&http, method, &url, body).await;
                    assert_eq!(status, expected, "{}", String::from_utf8_lossy(&reply));
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (started.elapsed(), latencies)
}

async fn creates_and_gets(name: &str, url: &str, settings: &Settings) {
    let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    let collection = format!("{url}/api/v1/namespaces/default/configmaps");
    let target = collection.clone();
    let (elapsed, latencies) = load(&http, settings.clients, settings.creates, move |i| {
        ("POST", target.clone(), Some(config_map(&format!("cm-{i}"))), 201)
    })
    .await;
    report(&format!("create ({name})"), settings.creates, elapsed, latencies);
    let created = settings.creates;
    let (elapsed, latencies) = load(&http, settings.clients, settings.gets, move |i| {
        ("GET", format!("{collection}/cm-{}", (i * 7919) % created), None, 200)
    })
    .await;
    report(&format!("get ({name})"), settings.gets, elapsed, latencies);
}

/// One writer updating objects as fast as it can; every watcher must see every update.
async fn fan_out(url: &str, settings: &Settings) {
    let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    let collection = format!("{url}/api/v1/namespaces/fanout/configmaps");
    let (status, _) = send(
        &http,
        "POST",
        &format!("{url}/api/v1/namespaces"),
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fanout"}}"#.into()),
    )
    .await;
    assert_eq!(status, 201);
    let (status, reply) = send(&http, "POST", &collection, Some(config_map("hot"))).await;
    assert_eq!(status, 201);
    let start: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let start = start["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let sent_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u64, Instant>::new()));
    let updates = settings.updates;
    let mut watchers = Vec::new();
    for _ in 0..settings.watchers {
        let request =
            hyper::Request::get(format!("{collection}?watch=true&resourceVersion={start}&timeoutSeconds=120"))
                .body(Full::new(Bytes::new()))
                .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let sent_at = Arc::clone(&sent_at);
        watchers.push(tokio::spawn(async move {
            let mut body = response.into_body();
            let mut buffer = Vec::new();
            let mut lags = Vec::with_capacity(updates);
            while lags.len() < updates {
                let Some(Ok(frame)) = body.frame().await else { panic!("the watch ended early") };
                let Some(data) = frame.data_ref() else { continue };
                buffer.extend_from_slice(data);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
                    let revision: u64 =
                        event["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                    let now = Instant::now();
                    // The writer records the time just after its write is acknowledged; an
                    // event can arrive before that, which counts as no lag.
                    let sent = sent_at.lock().unwrap().get(&revision).copied();
                    lags.push(sent.map_or(Duration::ZERO, |s| now.saturating_duration_since(s)));
                }
            }
            lags
        }));
    }
    let started = Instant::now();
    for i in 0..updates {
        let patch = format!(r#"{{"data":{{"n":"{i}"}}}}"#);
        let request = hyper::Request::patch(format!("{collection}/hot"))
            .header("content-type", "application/merge-patch+json")
            .body(Full::new(Bytes::from(patch)))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let reply: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let revision: u64 = reply["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        sent_at.lock().unwrap().insert(revision, Instant::now());
    }
    let writes = started.elapsed();
    let mut lags = Vec::new();
    for watcher in watchers {
        lags.extend(watcher.await.unwrap());
    }
    let delivered = started.elapsed();
    lags.sort_unstable();
    println!(
        "fan-out: {updates} updates in {:.3} s ({:.0}/s) to {} watchers; all {} events delivered {:.3} s after the first write; lag p50 {:.2} ms, p99 {:.2} ms",
        writes.as_secs_f64(),
        updates as f64 / writes.as_secs_f64(),
        settings.watchers,
        lags.len(),
        delivered.as_secs_f64(),
        percentile(&lags, 0.5).as_secs_f64() * 1e3,
        percentile(&lags, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let memory = serve(Arc::new(MemoryStore::new()));
    runtime.block_on(creates_and_gets("in memory", &memory, &settings));
    runtime.block_on(fan_out(&memory, &settings));
    let dir = tempfile::tempdir().unwrap();
    let durable = serve(Arc::new(MemoryStore::open(dir.path(), DEFAULT_HISTORY).unwrap()));
    runtime.block_on(creates_and_gets("--data-dir, fsync", &durable, &settings));
    let peak = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
    });
    if let Some(kb) = peak {
        println!("peak RSS of server and load together: {} MB", kb.parse::<u64>().unwrap_or(0) / 1024);
    }
}
