//! `kubeyard echo`: the built-in image `kubeyard/echo`, a real HTTP server a container
//! node runs as a process for each such container. It answers `/` with its pod's name (so
//! a test sees which pod a Service reached), serves `/healthz` and `/readyz` for probes
//! (each can be made to fail from a moment on), can exit on its own, and from inside the
//! cluster resolves names and fetches URLs (`/resolve?name=`, `/fetch?url=`), so tests
//! can exercise the cluster's DNS and Services from a pod. Given a certificate and key
//! (`--tls-cert`, `--tls-key`) it serves HTTPS, and it answers admission webhooks' calls
//! (`POST /admit`, an `AdmissionReview` v1): it allows every request but for objects
//! labelled `kubeyard.dev/deny`, which it refuses with 403 and the label's value as the
//! message, so tests can run a webhook behind a Service on a real pod. It can keep CPU busy
//! and hold memory (`--use-cpu`, `--use-memory`), so `kubectl top` and autoscalers see real
//! load. Every request is logged on standard output, which is what `kubectl logs` shows.

use clap::Args;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// The port to serve on, on the pod's address (`KUBEYARD_POD_IP`) when it has one
    /// [the node sets PORT to the container's first containerPort].
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,

    /// The name to answer with [default: $HOSTNAME, the pod's name].
    #[arg(long)]
    name: Option<String>,

    /// Text to answer with after the name.
    #[arg(long, default_value = "")]
    text: String,

    /// `/readyz` answers 503 from this long after start (`0s`: always).
    #[arg(long, value_name = "DURATION")]
    fail_readiness_after: Option<kubeyard_compiler::duration::Duration>,

    /// `/healthz` answers 500 from this long after start.
    #[arg(long, value_name = "DURATION")]
    fail_liveness_after: Option<kubeyard_compiler::duration::Duration>,

    /// Exit this long after start, with --exit-code.
    #[arg(long, value_name = "DURATION")]
    exit_after: Option<kubeyard_compiler::duration::Duration>,

    /// The exit code of --exit-after.
    #[arg(long, default_value_t = 0)]
    exit_code: i32,

    /// Keep this much CPU busy (`250m`, `1.5`), so `kubectl top` and autoscalers see load.
    #[arg(long, value_name = "QUANTITY")]
    use_cpu: Option<kubeyard_compiler::quantity::Quantity>,

    /// Hold this much memory, written so that it is resident (`64Mi`).
    #[arg(long, value_name = "QUANTITY")]
    use_memory: Option<kubeyard_compiler::quantity::Quantity>,

    /// Serve HTTPS with this certificate (PEM; the chain after it), with --tls-key.
    #[arg(long, env = "ECHO_TLS_CERT", value_name = "PEM", hide_env_values = true)]
    tls_cert: Option<String>,

    /// The key of --tls-cert (PEM).
    #[arg(long, env = "ECHO_TLS_KEY", value_name = "PEM", hide_env_values = true)]
    tls_key: Option<String>,
}

/// The label that makes `/admit` refuse an object; its value is the message.
const DENY_LABEL: &str = "kubeyard.dev/deny";

/// An admission webhook's answer to an `AdmissionReview`: allowed, unless the object (or,
/// on a delete, the old object) carries `DENY_LABEL`.
fn admit(body: &[u8]) -> (u16, String) {
    let Ok(review) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (400, "the body is not JSON\n".into());
    };
    let request = &review["request"];
    let labels = |key: &str| request[key]["metadata"]["labels"][DENY_LABEL].as_str().map(str::to_string);
    let mut response = serde_json::json!({"uid": request["uid"], "allowed": true});
    if let Some(message) = labels("object").or_else(|| labels("oldObject")) {
        response["allowed"] = serde_json::json!(false);
        response["status"] = serde_json::json!({"code": 403, "reason": "Forbidden", "message": message});
    }
    let answer =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    (200, answer.to_string())
}

struct State {
    args: EchoArgs,
    name: String,
    started: Instant,
}

impl State {
    fn after(&self, moment: Option<kubeyard_compiler::duration::Duration>) -> bool {
        moment.is_some_and(|m| self.started.elapsed() >= m.as_std())
    }
}

fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", crate::clock::now());
    let _ = out.flush();
}

/// `a%20b` to `a b`, `+` to a space; a `%` not followed by two hex digits stays.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(target: &str, key: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')).map(unescape)
}

/// Fetches `http://host[:port]/path` from here: one plain HTTP/1.1 GET.
async fn fetch(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let resolved = tokio::task::spawn_blocking(move || address.to_socket_addrs().map(|mut a| a.next()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let connect = tokio::net::TcpStream::connect(resolved);
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("connecting to {resolved} timed out"))?
        .map_err(|e| format!("cannot connect to {resolved}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .map_err(|_| "the answer timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// One request: its status and body.
async fn answer(state: &State, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let path = target.split('?').next().unwrap_or("/");
    match path {
        "/admit" if method == "POST" => admit(body),
        "/healthz" if state.after(state.args.fail_liveness_after) => (500, "failing\n".into()),
        "/readyz" if state.after(state.args.fail_readiness_after) => (503, "not ready\n".into()),
        "/healthz" | "/readyz" => (200, "ok\n".into()),
        "/resolve" => match query(target, "name") {
            Some(name) => {
                let lookup = name.clone();
                let found = tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs()).await;
                match found {
                    Ok(Ok(addresses)) => {
                        let ips: Vec<String> = addresses.map(|a| a.ip().to_string()).collect();
                        (200, format!("{}\n", ips.join(" ")))
                    }
                    Ok(Err(error)) => (502, format!("cannot resolve {name}: {error}\n")),
                    Err(error) => (500, format!("{error}\n")),
                }
            }
            None => (400, "resolve?name=NAME\n".into()),
        },
        "/fetch" => match query(target, "url") {
            Some(url) => match fetch(&url).await {
                Ok(body) => (200, body),
                Err(message) => (502, format!("{message}\n")),
            },
            None => (400, "fetch?url=http://HOST:PORT/PATH\n".into()),
        },
        _ if state.args.text.is_empty() => (200, format!("{}\n", state.name)),
        _ => (200, format!("{} {}\n", state.name, state.args.text)),
    }
}

/// The most of a request body read (an `AdmissionReview` of a 3 MiB object, and room).
const MAX_BODY: usize = 4 << 20;

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    state: Arc<State>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Requests are small: read until the end of the head, or give up.
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < 16 * 1024 {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { return };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or("GET").to_string(), words.next().unwrap_or("/").to_string());
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut request_body = buffer[end + 4..].to_vec();
    while request_body.len() < length {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(read)) => request_body.extend_from_slice(&chunk[..read]),
        }
    }
    let (status, body) = answer(&state, &method, &target, &request_body).await;
    // Probes are not worth a line each; everything else is, as a web server logs it.
    if !matches!(target.as_str(), "/healthz" | "/readyz") {
        log(&format!("{} {method} {target} {status}", peer.ip()));
    }
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let content_type = if body.starts_with('{') { "application/json" } else { "text/plain" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-pod-name: {}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        state.name
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Keeps `cores` of CPU busy, in threads of at most one core each: each spins for its
/// share of every 100 ms and sleeps the rest.
fn use_cpu(cores: f64) {
    const PERIOD: Duration = Duration::from_millis(100);
    let mut left = cores.clamp(0.0, 64.0);
    while left > 0.0 {
        let share = left.min(1.0);
        left -= share;
        std::thread::spawn(move || {
            loop {
                let begun = Instant::now();
                let busy = PERIOD.mul_f64(share);
                while begun.elapsed() < busy {
                    std::hint::spin_loop();
                }
                std::thread::sleep(PERIOD.saturating_sub(begun.elapsed()));
            }
        });
    }
}

/// `bytes` of memory, each page written so that it is resident, held until exit.
fn use_memory(bytes: i128) -> Vec<u8> {
    vec![1u8; usize::try_from(bytes).unwrap_or(0)]
}

pub fn run(args: EchoArgs) -> std::process::ExitCode {
    if let Some(cpu) = &args.use_cpu {
        use_cpu(cpu.as_f64());
    }
    let _held = args.use_memory.as_ref().map(|memory| use_memory(memory.units_ceil()));
    let name = args.name.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "echo".into());
    let ip: IpAddr = std::env::var("KUBEYARD_POD_IP")
        .ok()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("echo: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        let address = SocketAddr::new(ip, args.port);
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("echo: cannot listen on {address}: {error}");
                return 1;
            }
        };
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => match crate::apiserver::tls::Identity::from_chain(cert, key) {
                Ok(identity) => Some(tokio_rustls::TlsAcceptor::from(identity.config)),
                Err(error) => {
                    eprintln!("echo: {error}");
                    return 1;
                }
            },
            (None, None) => None,
            _ => {
                eprintln!("echo: --tls-cert and --tls-key go together");
                return 1;
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        log(&format!("{name} listening on {address} ({scheme})"));
        let exit_after = args.exit_after.map(|d| d.as_std());
        let exit_code = args.exit_code;
        let state = Arc::new(State { args, name, started: Instant::now() });
        let accepting = async {
            loop {
                if let Ok((stream, peer)) = listener.accept().await {
                    let state = Arc::clone(&state);
                    match tls.clone() {
                        Some(acceptor) => {
                            tokio::spawn(async move {
                                // A client that fails the handshake is just gone.
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve(stream, peer, state).await;
                                }
                            });
                        }
                        None => {
                            tokio::spawn(serve(stream, peer, state));
                        }
                    }
                }
            }
        };
        let exiting = async {
            match exit_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = accepting => 0,
            _ = exiting => {
                log(&format!("exiting with code {exit_code}, as told"));
                exit_code
            }
            _ = crate::cli::components::interrupted() => {
                log("terminated: shutting down");
                0
            }
        }
    });
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_reviews_are_allowed_unless_the_object_says_deny() {
        let review = |labels: serde_json::Value| {
            serde_json::json!({"request": {"uid": "u1", "object": {"metadata": {"labels": labels}}}}).to_string()
        };
        let (status, body) = admit(review(serde_json::json!({"app": "web"})).as_bytes());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, &answer["response"]["uid"], &answer["response"]["allowed"]),
            (200, &serde_json::json!("u1"), &serde_json::json!(true))
        );
        let (_, body) = admit(review(serde_json::json!({DENY_LABEL: "not here"})).as_bytes());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["response"]["allowed"], false);
        assert_eq!(answer["response"]["status"]["message"], "not here");
        assert_eq!(admit(b"nonsense").0, 400);
    }

    #[test]
    fn queries_are_read_and_unescaped() {
        assert_eq!(query("/fetch?url=http%3A%2F%2Fweb%3A80%2F", "url").as_deref(), Some("http://web:80/"));
        assert_eq!(query("/resolve?x=1&name=a+b", "name").as_deref(), Some("a b"));
        assert_eq!(query("/resolve", "name"), None);
        assert_eq!(unescape("100%"), "100%");
    }
}
