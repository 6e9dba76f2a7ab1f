//! The API server under load on loopback, measured by its own load tool: creates,
//! gets, and one write stream fanned out to 100 watchers, with p50 and p99 latencies;
//! then memory under a fixed watch load, in a `kubeyard apiserver` process of its own
//! (so that its memory is the server's alone): 900 watches of a namespace holding a
//! 3 MiB ConfigMap and 100 watches of every namespace that do not read, updates, then
//! 200 updates of a 2 MiB ConfigMap in another namespace (which the 100 fall behind).
//! Server and load share the machine, as they would with wrk.
//!
//! Then CRDs: how soon a created CRD's kind is served, and custom objects' creates
//! against ConfigMaps', without and with 5 CEL rules (issue 20).
//!
//! Run: `cargo bench -p kubeyard-harness --bench apiserver` (add `-- --creates N --gets N
//! --clients N --watchers N --updates N --load-watchers N --load-slow N --load-updates N
//! --load-big-updates N --churn N`).
//! Targets (issue 5), 2-core machine, embedded store: 5,000 creates/s, 20,000 gets/s, and
//! 100 watchers keeping up with the write stream. Bound (docs/apiserver.md): the server's
//! peak RSS under the watch load stays below `LOAD_BOUND_MB`.

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
    load_watchers: usize,
    load_slow: usize,
    load_updates: usize,
    load_big_updates: usize,
    churn: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        creates: 20_000,
        gets: 100_000,
        clients: 32,
        watchers: 100,
        updates: 2_000,
        load_watchers: 1_000,
        load_slow: 100,
        load_updates: 100,
        load_big_updates: 2,
        churn: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{arg} N"));
        match arg.as_str() {
            "--creates" => settings.creates = value(),
            "--gets" => settings.gets = value(),
            "--clients" => settings.clients = value(),
            "--watchers" => settings.watchers = value(),
            "--updates" => settings.updates = value(),
            "--load-watchers" => settings.load_watchers = value(),
            "--load-slow" => settings.load_slow = value(),
            "--load-updates" => settings.load_updates = value(),
            "--load-big-updates" => settings.load_big_updates = value(),
            "--churn" => settings.churn = value(),
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

/// A CRD of the bench's own: `Gadget<n>` with a typed spec, and with `rules` CEL rules on
/// its spec when `rules` is not 0.
fn crd(n: usize, rules: usize) -> String {
    let validations: Vec<String> = [
        r#"{"rule":"self.size >= 1","message":"size must be positive"}"#,
        r#"{"rule":"self.size <= 1000"}"#,
        r#"{"rule":"self.color in ['red','green','blue']"}"#,
        r#"{"rule":"self.name.startsWith('g')","fieldPath":".name"}"#,
        r#"{"rule":"self.tags.all(t, t.size() <= 20)"}"#,
    ]
    .iter()
    .take(rules)
    .map(|r| r.to_string())
    .collect();
    format!(
        r#"{{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
        "metadata":{{"name":"gadget{n}s.bench.example.com"}},
        "spec":{{"group":"bench.example.com","scope":"Namespaced",
          "names":{{"plural":"gadget{n}s","singular":"gadget{n}","kind":"Gadget{n}"}},
          "versions":[{{"name":"v1","served":true,"storage":true,"schema":{{"openAPIV3Schema":{{
            "type":"object","properties":{{"spec":{{"type":"object","x-kubernetes-validations":[{}],
              "properties":{{"size":{{"type":"integer"}},"color":{{"type":"string"}},"name":{{"type":"string","maxLength":63}},
                "tags":{{"type":"array","maxItems":10,"items":{{"type":"string","maxLength":32}}}}}}}}}}}}}}}}]}}}}"#,
        validations.join(",")
    )
}

fn gadget(n: usize, name: &str) -> String {
    format!(
        r#"{{"apiVersion":"bench.example.com/v1","kind":"Gadget{n}","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},
        "spec":{{"size":3,"color":"red","name":"gear","tags":["a","b"]}}}}"#
    )
}

/// CRDs (issue 20): how soon a created CRD's kind is served, and custom objects' creates
/// against ConfigMaps', without and with 5 CEL rules.
async fn custom_resources(url: &str, settings: &Settings) {
    let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    let crds = format!("{url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    let mut served = Vec::new();
    for n in 0..20 {
        let started = Instant::now();
        let (status, reply) = send(&http, "POST", &crds, Some(crd(n, if n == 1 { 5 } else { 0 }))).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
        let list = format!("{url}/apis/bench.example.com/v1/namespaces/default/gadget{n}s");
        while send(&http, "GET", &list, None).await.0 != 200 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        served.push(started.elapsed());
    }
    served.sort_unstable();
    println!(
        "CRD created to its kind served: p50 {:.2} ms, max {:.2} ms (20 CRDs, target < 50 ms)",
        percentile(&served, 0.5).as_secs_f64() * 1e3,
        served[served.len() - 1].as_secs_f64() * 1e3
    );
    // In rounds, each kind in turn: the store grows as the bench goes, and a kind measured
    // last would pay for that.
    let rounds = 4;
    let count = settings.creates / 2 / rounds;
    let kinds = [("ConfigMap", None), ("custom object", Some(0)), ("custom object, 5 CEL rules", Some(1))];
    let mut totals: [(Duration, Vec<Duration>); 3] = std::array::from_fn(|_| (Duration::ZERO, Vec::new()));
    for round in 0..rounds {
        for (k, (_, n)) in kinds.iter().enumerate() {
            let n = *n;
            let target = match n {
                None => format!("{url}/api/v1/namespaces/default/configmaps"),
                Some(n) => format!("{url}/apis/bench.example.com/v1/namespaces/default/gadget{n}s"),
            };
            let (elapsed, latencies) = load(&http, settings.clients, count, move |i| {
                let body = match n {
                    None => config_map(&format!("crd-cm-{round}-{i}")),
                    Some(n) => gadget(n, &format!("g-{round}-{i}")),
                };
                ("POST", target.clone(), Some(body), 201)
            })
            .await;
            totals[k].0 += elapsed;
            totals[k].1.extend(latencies);
        }
    }
    let mut rates = Vec::new();
    for ((what, _), (elapsed, latencies)) in kinds.iter().zip(totals) {
        rates.push((count * rounds) as f64 / elapsed.as_secs_f64());
        report(&format!("create ({what})"), count * rounds, elapsed, latencies);
    }
    println!(
        "  custom objects at {:.0}% of ConfigMaps' creates/s (target >= 80%); 5 CEL rules cost {:.0}% of a plain custom object's rate (target < 20%)",
        rates[1] / rates[0] * 100.0,
        (1.0 - rates[2] / rates[1]) * 100.0
    );
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

/// The server's peak RSS under the watch load may not exceed this (docs/apiserver.md).
/// Before the history and watchers were bounded, 1,000 watches of a 3 MiB object alone
/// took it to 2.26 GB.
const LOAD_BOUND_MB: u64 = 512;

/// `kubeyard apiserver` in its own process, killed when dropped.
struct Process {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Process {
    fn start() -> Process {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
            .args(["apiserver", "--listen", "127.0.0.1:0", "--watch-history-bytes", "256Mi", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubeyard starts");
        let started = Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && let Some(url) = text.lines().find_map(|l| l.trim_start().strip_prefix("server: "))
            {
                break url.to_string();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no kubeconfig after 30 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        Process { child, url, _dir: dir }
    }

    /// A line of the process's /proc status (`VmRSS`, `VmHWM`), in MB.
    fn memory(&self, field: &str) -> u64 {
        status_kb(&format!("/proc/{}/status", self.child.id()), field) / 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kb(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Counts a watch's events as they stream, keeping none of them (a thousand clients
/// holding 3 MiB lines would measure the load, not the server); stops after `want`
/// events, at an ERROR event (true), or after `quiet` without a byte.
async fn count_events(mut body: hyper::body::Incoming, want: usize, quiet: Duration) -> (usize, bool) {
    // An ERROR event is a short line (a Status) whose fields may come in any order.
    const SHORT: usize = 2048;
    const ERROR: &[u8] = br#""type":"ERROR""#;
    let mut events = 0;
    let mut line = Vec::with_capacity(SHORT);
    let mut length = 0;
    while events < want {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(quiet, body.frame()).await else { break };
        let Some(data) = frame.data_ref() else { continue };
        for piece in data.split_inclusive(|&b| b == b'\n') {
            length += piece.len();
            if length <= SHORT {
                line.extend_from_slice(piece);
            }
            if piece.last() == Some(&b'\n') {
                if length <= SHORT && line.windows(ERROR.len()).any(|w| w == ERROR) {
                    return (events, true);
                }
                events += 1;
                line.clear();
                length = 0;
            }
        }
    }
    (events, false)
}

async fn create(http: &Http, url: &str, body: String) -> serde_json::Value {
    let (status, reply) = send(http, "POST", url, Some(body)).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply[..reply.len().min(500)]));
    serde_json::from_slice(&reply).unwrap()
}

async fn merge_patch(http: &Http, url: &str, patch: String) {
    let request = hyper::Request::patch(url)
        .header("content-type", "application/merge-patch+json")
        .body(Full::new(Bytes::from(patch)))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status().as_u16();
    let reply = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply[..reply.len().min(500)]));
}

/// A ConfigMap whose one value makes it `size` bytes, about.
fn large_config_map(name: &str, size: usize, fill: char) -> String {
    let value = fill.to_string().repeat(size);
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"big":"{value}"}}}}"#)
}

/// Memory of a `kubeyard apiserver` process under a fixed watch load, then under
/// updates of a large object nobody watches.
async fn watch_load(settings: &Settings) {
    let server = Process::start();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let url = &server.url;
    for namespace in ["load", "churn"] {
        let body = format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{namespace}"}}}}"#);
        create(&http, &format!("{url}/api/v1/namespaces"), body).await;
    }
    let collection = format!("{url}/api/v1/namespaces/load/configmaps");
    // As large as the 3 MiB request limit lets a ConfigMap be.
    let big = (3 << 20) - (8 << 10);
    create(&http, &collection, large_config_map("big", big, 'a')).await;
    let base = server.memory("VmRSS");

    // Every watch starts with the current state: the 3 MiB object, as ADDED. The ones
    // that do not read watch every namespace, so that they fall behind the churn below.
    let started = Instant::now();
    let want = 1 + 1 + settings.load_updates + settings.load_big_updates;
    let mut readers = Vec::new();
    let mut slow = Vec::new();
    for i in 0..settings.load_watchers {
        let watched = if i < settings.load_slow { format!("{url}/api/v1/configmaps") } else { collection.clone() };
        let request = hyper::Request::get(format!("{watched}?watch=true&timeoutSeconds=600"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        if i < settings.load_slow {
            slow.push(response);
        } else {
            readers.push(tokio::spawn(count_events(response.into_body(), want, Duration::from_secs(120))));
        }
    }
    create(&http, &collection, config_map("small")).await;
    for i in 0..settings.load_big_updates {
        let fill = char::from(b'b' + (i % 20) as u8);
        let patch = format!(r#"{{"data":{{"big":"{}"}}}}"#, fill.to_string().repeat(big));
        merge_patch(&http, &format!("{collection}/big"), patch).await;
    }
    for i in 0..settings.load_updates {
        merge_patch(&http, &format!("{collection}/small"), format!(r#"{{"data":{{"n":"{i}"}}}}"#)).await;
    }
    let mut complete = 0;
    for reader in readers {
        complete += usize::from(reader.await.unwrap().0 >= want);
    }
    let delivered = started.elapsed();
    let peak = server.memory("VmHWM");
    println!(
        "watch load: {} watches of a namespace with a 3 MiB ConfigMap ({} not reading), {} + {} updates: {complete} of {} readers got all {want} events in {:.1} s",
        settings.load_watchers,
        settings.load_slow,
        settings.load_updates,
        settings.load_big_updates,
        settings.load_watchers - settings.load_slow,
        delivered.as_secs_f64(),
    );
    println!("  server RSS: {base} MB before the watches, peak {peak} MB");

    // Updates of a 2 MiB ConfigMap that only the watches not reading watch: the history
    // keeps its budget's worth, and they fall out of it.
    let churn = format!("{url}/api/v1/namespaces/churn/configmaps");
    create(&http, &churn, large_config_map("churn", 2 << 20, 'a')).await;
    let before = server.memory("VmRSS");
    let started = Instant::now();
    for i in 0..settings.churn {
        let fill = char::from(b'b' + (i % 20) as u8);
        merge_patch(
            &http,
            &format!("{churn}/churn"),
            format!(r#"{{"data":{{"big":"{}"}}}}"#, fill.to_string().repeat(2 << 20)),
        )
        .await;
    }
    let peak = server.memory("VmHWM");
    println!(
        "  {} updates of a 2 MiB ConfigMap in {:.1} s: server RSS {before} MB before, {} MB after, peak {peak} MB (bound {LOAD_BOUND_MB} MB)",
        settings.churn,
        started.elapsed().as_secs_f64(),
        server.memory("VmRSS"),
    );

    // The watchers that never read: what the server kept for them, then 410 if the
    // history moved past them.
    let mut expired = 0;
    let mut events = 0;
    let slow: Vec<_> = slow
        .into_iter()
        .map(|response| tokio::spawn(count_events(response.into_body(), usize::MAX, Duration::from_secs(2))))
        .collect();
    for reader in slow {
        let (seen, error) = reader.await.unwrap();
        expired += usize::from(error);
        events += seen;
    }
    println!(
        "  the {} watches that did not read, read now: {expired} end with 410 Expired, after {:.1} events each on average",
        settings.load_slow,
        events as f64 / settings.load_slow.max(1) as f64,
    );
    assert!(
        peak <= LOAD_BOUND_MB,
        "the server's peak RSS under the watch load, {peak} MB, is above {LOAD_BOUND_MB} MB"
    );
}

fn main() {
    let settings = settings();
    // A thousand watches are a thousand sockets on each side.
    kubeyard_harness::apiserver::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let memory = serve(Arc::new(MemoryStore::new()));
    runtime.block_on(creates_and_gets("in memory", &memory, &settings));
    runtime.block_on(custom_resources(&memory, &settings));
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
    runtime.block_on(watch_load(&settings));
}
