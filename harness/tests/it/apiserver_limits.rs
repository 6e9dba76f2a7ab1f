//! The API server's bounds, over HTTP: a watcher that stops reading is expired instead
//! of buffered, slow or idle connections are closed, and past the connection cap
//! `/readyz` still answers.

use crate::support;

use kubeyard_harness::apiserver::Options;
use kubeyard_harness::store::memory::{HistoryLimits, MemoryStore};
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::api::{self, Server, get, patch, post};

/// Whether the server closed `socket` within `within` (it reads EOF or a reset); what
/// it sent first, a response for instance, is read past.
fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < within {
        socket.set_read_timeout(Some(within.saturating_sub(started.elapsed()).max(Duration::from_millis(10)))).unwrap();
        match socket.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_watcher_that_stops_reading_is_expired_not_buffered() {
    // Each update of a 1 MiB value counts 3 MiB: the history holds 5 of them.
    let store = MemoryStore::with_limits(HistoryLimits { events: 100_000, bytes: 16 << 20 });
    let server = Server::with(Arc::new(store), Options::default());
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let big = |fill: char| json!({"data": {"big": fill.to_string().repeat(1 << 20)}});
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}});
    object["data"] = big('a')["data"].clone();
    let start = post(&collection, &object).rv();

    let url = format!("{collection}?watch=true&resourceVersion={start}&timeoutSeconds=120");
    let mut response = api::agent().get(&url).call().expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    // The client reads nothing while 60 MiB of updates are written.
    let updates = 60;
    for i in 0..updates {
        let fill = char::from(b'b' + (i % 20) as u8);
        let reply = patch(&format!("{collection}/big"), "application/merge-patch+json", &big(fill));
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let reader = std::io::BufReader::new(response.body_mut().as_reader());
    let mut modified = 0;
    let mut last = Value::Null;
    for line in reader.lines() {
        let line = line.expect("the stream reads");
        let event: Value = serde_json::from_str(&line).expect("each line is JSON");
        match event["type"].as_str() {
            Some("MODIFIED") => modified += 1,
            _ => {
                last = event;
                break;
            }
        }
    }
    // What the server and the sockets held for it: a few events, not the 60 written.
    assert!(modified < 30, "{modified} updates were buffered for a watcher that did not read");
    assert_eq!(last["type"], "ERROR", "{last}");
    assert_eq!(last["object"]["code"], 410, "{last}");
    assert_eq!(last["object"]["reason"], "Expired", "{last}");
    assert!(last["object"]["message"].as_str().is_some_and(|m| m.starts_with("too old resource version")), "{last}");

    // A client that lists again and watches from there is served.
    let current = get(&format!("{collection}/big")).rv();
    let events =
        api::watch_events(&format!("{collection}?watch=true&resourceVersion={}&timeoutSeconds=1", current - 1));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "MODIFIED");
}

#[test]
fn slow_and_silent_connections_are_cut_at_the_header_timeout() {
    let options = Options { header_timeout: Duration::from_secs(1), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    // Headers at one byte every 200 ms: never done in a second.
    let mut slow = TcpStream::connect(&server.address).unwrap();
    let mut writer = slow.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for byte in b"GET /readyz HTTP/1.1\r\nHost: kubeyard\r\nAccept: */*\r\n\r\n" {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut silent = TcpStream::connect(&server.address).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)), "a slow-header connection stayed open");
    assert!(closed_within(&mut silent, Duration::from_secs(5)), "a silent connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    dribble.join().unwrap();
    // Requests sent at once are served as ever.
    assert_eq!(get(&format!("{}/readyz", server.url)).text, "ok");
}

#[test]
fn idle_connections_are_closed_and_watches_are_not() {
    let options =
        Options { header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(1), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    let mut kept = TcpStream::connect(&server.address).unwrap();
    kept.write_all(b"GET /readyz HTTP/1.1\r\nHost: kubeyard\r\n\r\n").unwrap();
    let mut answer = [0u8; 1024];
    let read = kept.read(&mut answer).unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..read]));
    let started = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(5)), "an idle connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // A watch sends nothing for longer than the idle timeout, and is not cut for it.
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let watch = format!("{collection}?watch=true&timeoutSeconds=4");
    let watcher = std::thread::spawn(move || api::watch_events(&watch));
    std::thread::sleep(Duration::from_millis(2500));
    post(&collection, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}));
    let events = watcher.join().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "late");
}

#[test]
fn past_the_connection_cap_readyz_answers_and_slow_connections_make_room() {
    let options = Options { header_timeout: Duration::from_secs(2), max_connections: 4, ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    let holding: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&server.address).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The cap is full: health checks are answered, the API asks to come back.
    assert_eq!(get(&format!("{}/readyz", server.url)).text, "ok");
    let refused = get(&format!("{}/api/v1/namespaces", server.url));
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.body["reason"], "TooManyRequests");

    // A flood of silent sockets past the cap and its health-check slots: the excess is
    // closed at once, the rest at the header timeout, and then all is served again.
    let flood: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(&server.address).ok()).collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(&format!("{}/readyz", server.url)).text, "ok");
    let served = get(&format!("{}/api/v1/namespaces", server.url));
    assert_eq!(served.status, 200, "{}", served.text);
    drop((holding, flood));
}

#[test]
fn over_tls_requests_are_served_and_a_stalled_handshake_is_cut() {
    use kubeyard_compiler::admission::Admission;
    use kubeyard_compiler::schema::CatalogOptions;
    use kubeyard_harness::apiserver::{ApiServer, tls};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let identity = tls::self_signed(&[]).unwrap();
    let ca = CertificateDer::from_pem_slice(identity.ca_pem.as_bytes()).unwrap().to_vec();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let admission = Admission::new(CatalogOptions::default()).unwrap();
        let options = Options { header_timeout: Duration::from_secs(1), ..Options::default() };
        let server = ApiServer::new(Arc::new(MemoryStore::new()), admission, options);
        tokio::spawn(async move { server.serve_tls(listener, &identity).await });

        // A connection that never starts its handshake is closed at the header timeout.
        let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        let mut buffer = [0u8; 64];
        let read =
            tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut silent, &mut buffer));
        assert!(matches!(read.await, Ok(Ok(0) | Err(_))), "a stalled handshake stayed open");
        assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

        let mut config = kube::Config::new(format!("https://127.0.0.1:{}", address.port()).parse().unwrap());
        config.root_cert = Some(vec![ca]);
        let client = kube::Client::try_from(config).unwrap();
        let ready = client.request_text(http::Request::get("/readyz").body(Vec::new()).unwrap()).await.unwrap();
        assert_eq!(ready, "ok");
    });
}
