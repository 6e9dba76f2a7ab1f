//! A kubeyard API server in the test process, and a small blocking HTTP client for it.

use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::CatalogOptions;
use kubeyard_harness::apiserver::{ApiServer, Options, objects};
use kubeyard_harness::store::Store;
use kubeyard_harness::store::memory::MemoryStore;
use serde_json::Value;
use std::io::BufRead;
use std::sync::Arc;

pub struct Server {
    pub url: String,
    pub address: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Server::with(Arc::new(MemoryStore::new()), Options::default())
    }

    pub fn with(store: Arc<dyn Store>, options: Options) -> Server {
        Server::at("127.0.0.1:0", store, options)
    }

    /// A server on a given address: a restarted server comes back where clients knew it.
    pub fn at(address: &str, store: Arc<dyn Store>, options: Options) -> Server {
        let address = address.to_string();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime starts");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&address).await.expect("a free port");
                let admission = Admission::new(CatalogOptions::default()).expect("the schemas load");
                let server = ApiServer::new(store, admission, options);
                objects::ensure_namespace(&server, "default").await.expect("default namespace");
                address_tx.send(listener.local_addr().expect("bound")).expect("the test waits");
                tokio::select! {
                    _ = server.serve(listener) => {}
                    _ = stopped => {}
                }
            });
        });
        let address = address_rx.recv().expect("the server starts");
        Server {
            url: format!("http://{address}"),
            address: address.to_string(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: Value,
    /// The `Warning` headers, as sent.
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn rv(&self) -> u64 {
        self.body["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).expect("a resourceVersion")
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// One request; `content_type` and `body` go together.
pub fn call(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let agent = agent();
    let request = axum::http::Request::builder().method(method).uri(url);
    let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, *v));
    let request = match content_type {
        Some(content_type) => request.header("Content-Type", content_type),
        None => request,
    };
    let request = request.body(body.unwrap_or("").to_string()).expect("a well-formed request");
    let mut response = agent.run(request).expect("the server answers");
    let status = response.status().as_u16();
    let warnings =
        response.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    let text = response.body_mut().with_config().limit(64 << 20).read_to_string().expect("a text body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, text, body, warnings }
}

pub fn get(url: &str) -> Reply {
    call("GET", url, None, None, &[])
}

pub fn post(url: &str, body: &Value) -> Reply {
    call("POST", url, Some("application/json"), Some(&body.to_string()), &[])
}

pub fn put(url: &str, body: &Value) -> Reply {
    call("PUT", url, Some("application/json"), Some(&body.to_string()), &[])
}

pub fn patch(url: &str, content_type: &str, body: &Value) -> Reply {
    call("PATCH", url, Some(content_type), Some(&body.to_string()), &[])
}

pub fn delete(url: &str) -> Reply {
    call("DELETE", url, None, None, &[])
}

/// The events of a watch that ends by its `timeoutSeconds`, as JSON values.
pub fn watch_events(url: &str) -> Vec<Value> {
    let mut response = agent().get(url).call().expect("the server answers");
    assert_eq!(response.status().as_u16(), 200, "{url}");
    let reader = std::io::BufReader::new(response.body_mut().as_reader());
    reader.lines().map_while(Result::ok).map(|line| serde_json::from_str(&line).expect("each line is JSON")).collect()
}

/// `kubeyard apiserver` as users start it, in its own process, writing its kubeconfig to
/// `kubeconfig`; killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub url: String,
}

impl Process {
    pub fn start(kubeconfig: &std::path::Path, extra: &[&str]) -> Process {
        let _ = std::fs::remove_file(kubeconfig);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeyard"))
            .args(["apiserver", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(kubeconfig)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubeyard starts");
        let started = std::time::Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(kubeconfig)
                && let Some(url) = text.lines().find_map(|l| l.trim_start().strip_prefix("server: "))
            {
                break url.to_string();
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "no kubeconfig after 20 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Process { child, url }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` until it holds, failing the test after 30 seconds.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs a control-plane component (scheduler, controller) against the server at `url`,
/// on its own runtime, for at most a minute.
pub fn component<F, Fut>(url: &str, run: F)
where
    F: FnOnce(kube::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move {
            let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(60), run(client)).await.ok();
        });
    });
}
