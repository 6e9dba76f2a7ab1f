//! The runtime of a node that is a real host (a container of the containerized control
//! plane). A pod whose every container is of a built-in image (`kubeyard/echo`) runs as
//! real processes of this binary, with the pod's address added to the node's interface;
//! a pod of any other image runs as containers of the host's Docker engine in a sandbox
//! at the pod's address (`docker.rs`), its images pulled as `imagePullPolicy` says. Both
//! get their environment (literal values, the downward API, ConfigMap and Secret keys),
//! real HTTP, TCP and exec probes, restarts with CrashLoopBackOff's back-off, and each
//! container's output in a log file the kubelet serves (`kubectl logs`). A pod with the
//! `kubeyard.dev/simulate` annotation, or on a node without an engine, is simulated
//! (`pod.rs`).
//!
//! One task per container runs its life (start, probe, exit, back off, start again) and
//! reports each change to the pod's task, which keeps the pod's status and writes it.
//! A deletion asks every container to stop within the grace period (SIGTERM, then
//! SIGKILL), then the deletion is confirmed.

use super::docker::{DockerRuntime, Pulled, Sandbox};
use super::pod::{self, State, Status};
use super::stats::{self, Measure, Stats};
use super::{network, volumes};
use kube::api::Api;
use serde_json::{Map, Value};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The built-in image a container node runs as a process.
pub const ECHO_IMAGE: &str = "kubeyard/echo";

/// `kubeyard/echo`, with any tag or digest.
pub fn is_builtin(image: &str) -> bool {
    image == ECHO_IMAGE
        || image.strip_prefix(ECHO_IMAGE).is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
}

/// Whether every container of the pod, init containers too, is of a built-in image.
pub fn runs_as_processes(pod: &Value) -> bool {
    let mut containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|field| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array))
        .flatten()
        .peekable();
    containers.peek().is_some() && containers.all(|c| is_builtin(text(c, "/image")))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// What a node's runtime needs: this binary, where logs go, the node's address, and the
/// host's engine for pods of other images (`None`: they are simulated).
#[derive(Clone)]
pub struct Runtime {
    pub executable: PathBuf,
    pub logs: PathBuf,
    pub node_address: Ipv4Addr,
    pub docker: Option<Arc<DockerRuntime>>,
    /// Where running containers are measured (`None`: they are not).
    pub stats: Option<Arc<Stats>>,
}

impl Runtime {
    pub fn new(node_address: Ipv4Addr) -> Runtime {
        Runtime {
            executable: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/kubeyard")),
            logs: PathBuf::from("/var/log/pods"),
            node_address,
            docker: None,
            stats: None,
        }
    }

    /// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log`, as the kubelet
    /// lays its logs out.
    pub fn log_path(&self, namespace: &str, pod: &str, uid: &str, container: &str, restarts: u32) -> PathBuf {
        self.logs.join(format!("{namespace}_{pod}_{uid}")).join(container).join(format!("{restarts}.log"))
    }
}

/// The pod's address on the node's interface while the pod runs.
struct Address {
    ip: Ipv4Addr,
    /// The interface it is on now: a node cut off the network and reconnected gets a new
    /// interface, without the addresses the old one had.
    index: Arc<Mutex<u32>>,
    keeper: tokio::task::JoinHandle<()>,
}

fn add_address(node: Ipv4Addr, ip: Ipv4Addr) -> Result<u32, String> {
    let index =
        network::interface_holding(node).ok_or_else(|| format!("no interface holds the node's address {node}"))?;
    network::add(index, ip, 32).map_err(|e| format!("cannot add {ip} to the node's interface: {e}"))?;
    Ok(index)
}

impl Address {
    fn add(node: Ipv4Addr, ip: Ipv4Addr) -> Result<Address, String> {
        let index = Arc::new(Mutex::new(add_address(node, ip)?));
        let kept = Arc::clone(&index);
        // Puts the address back whenever the node's interface comes back without it.
        let keeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !network::holds(ip)
                    && let Ok(now) = add_address(node, ip)
                    && let Ok(mut index) = kept.lock()
                {
                    *index = now;
                }
            }
        });
        Ok(Address { ip, index, keeper })
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        self.keeper.abort();
        if let Ok(index) = self.index.lock() {
            let _ = network::remove(*index, self.ip, 32);
        }
    }
}

/// How a probe checks.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    Http {
        port: u16,
        path: String,
    },
    Tcp {
        port: u16,
    },
    Exec {
        argv: Vec<String>,
    },
    /// gRPC's health check of `service` (empty: the server as a whole).
    Grpc {
        port: u16,
        service: String,
    },
    /// A probe this runtime cannot run, and why: it fails.
    Unsupported(String),
}

#[derive(Debug, Clone)]
struct Probe {
    check: Check,
    initial: Duration,
    period: Duration,
    timeout: Duration,
    success: u32,
    failure: u32,
}

/// A port of a probe: a number, or the name of one of the container's ports.
fn port(value: &Value, container: &Value) -> Result<u16, String> {
    if let Some(number) = value.as_u64() {
        return u16::try_from(number).map_err(|_| format!("port {number} is out of range"));
    }
    let name = value.as_str().unwrap_or_default();
    container
        .pointer("/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| text(p, "/name") == name)
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("the container has no port named {name:?}"))
}

/// What a probe or a lifecycle hook does (`httpGet`, `tcpSocket`, `exec`, and for probes
/// `grpc`); `None` for anything else.
fn handler(spec: &Value, container: &Value) -> Option<Check> {
    if let Some(http) = spec.get("httpGet") {
        return Some(match port(&http["port"], container) {
            Ok(port) => Check::Http { port, path: http.get("path").and_then(Value::as_str).unwrap_or("/").to_string() },
            Err(message) => Check::Unsupported(message),
        });
    }
    if let Some(tcp) = spec.get("tcpSocket") {
        return Some(match port(&tcp["port"], container) {
            Ok(port) => Check::Tcp { port },
            Err(message) => Check::Unsupported(message),
        });
    }
    if let Some(grpc) = spec.get("grpc") {
        return Some(match port(&grpc["port"], container) {
            Ok(port) => Check::Grpc { port, service: text(grpc, "/service").to_string() },
            Err(message) => Check::Unsupported(message),
        });
    }
    let exec = spec.get("exec")?;
    let argv = exec
        .get("command")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string));
    Some(Check::Exec { argv: argv.collect() })
}

fn probe(container: &Value, field: &str) -> Option<Probe> {
    let spec = container.get(field)?;
    let seconds =
        |key: &str, default: u64| Duration::from_secs(spec.get(key).and_then(Value::as_u64).unwrap_or(default));
    let count = |key: &str, default: u32| {
        spec.get(key).and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok()).unwrap_or(default).max(1)
    };
    Some(Probe {
        check: handler(spec, container).unwrap_or_else(|| {
            Check::Unsupported("only httpGet, tcpSocket, grpc and exec probes run on kubeyard's nodes".into())
        }),
        initial: seconds("initialDelaySeconds", 0),
        period: seconds("periodSeconds", 10).max(Duration::from_secs(1)),
        timeout: seconds("timeoutSeconds", 1).max(Duration::from_secs(1)),
        success: count("successThreshold", 1),
        failure: count("failureThreshold", 3),
    })
}

/// The argv of a built-in image's container: its entrypoint is `kubeyard echo`; a
/// `command` may only name that same program.
fn argv(container: &Value) -> Result<Vec<String>, String> {
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    let command = strings("command");
    let mut argv = match command.first().map(String::as_str) {
        None => vec!["echo".to_string()],
        Some("echo" | "/echo") => [vec!["echo".to_string()], command[1..].to_vec()].concat(),
        Some("kubeyard" | "/kubeyard") if command.get(1).map(String::as_str) == Some("echo") => command[1..].to_vec(),
        Some(other) => {
            return Err(format!("exec: \"{other}\": executable file not found in $PATH (the image has `echo` only)"));
        }
    };
    argv.extend(strings("args"));
    Ok(argv)
}

/// Kubernetes' `$(VAR)` expansion of command and args: a variable the container defines
/// is replaced, `$$` is a `$`, anything else stays as written.
pub(crate) fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.iter().rev().find(|(key, _)| key == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An exec probe's command, run as a process of the same built-in image.
fn exec_argv(command: &[String]) -> Result<Vec<String>, String> {
    match command.first().map(String::as_str) {
        Some("kubeyard" | "/kubeyard") => Ok(command[1..].to_vec()),
        Some("echo" | "/echo") => Ok(command.to_vec()),
        Some(other) => Err(format!("exec: \"{other}\": executable file not found in $PATH")),
        None => Err("an exec probe with no command".into()),
    }
}

/// What one container is started with: a built-in image's process its `argv`, a
/// container of the engine its `command` (the entrypoint) and `args`, each expanded.
#[derive(Default)]
pub(crate) struct Launch {
    argv: Vec<String>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) env: Vec<(String, String)>,
    /// The pod's `securityContext`, under the container's own.
    pub(crate) pod_security: Value,
}

/// Where a pod's containers run.
#[derive(Clone)]
enum Engine {
    /// As processes of this binary (the built-in image).
    Process(PathBuf),
    /// As containers of the host's engine, in the pod's sandbox.
    Docker(Arc<Sandbox>),
}

/// A container started: its process, or its name in the engine.
enum Started {
    Process(tokio::process::Child),
    Container(Arc<Sandbox>, String),
}

/// How a container's run ended, as the kubelet reports it.
struct Ended {
    code: i32,
    /// `Completed`, `Error` or `OOMKilled`.
    reason: &'static str,
}

impl Ended {
    fn of(code: i32) -> Ended {
        Ended { code, reason: if code == 0 { "Completed" } else { "Error" } }
    }
}

impl Started {
    async fn wait(&mut self) -> Ended {
        match self {
            Started::Process(child) => Ended::of(child.wait().await.map(exit_code).unwrap_or(1)),
            Started::Container(sandbox, name) => engine_ended(sandbox.wait(name).await),
        }
    }

    /// SIGTERM, then SIGKILL once `grace` has passed.
    async fn stop(&mut self, grace: Duration) -> Ended {
        match self {
            Started::Process(child) => Ended::of(Life::kill(child, grace).await),
            Started::Container(sandbox, name) => engine_ended(sandbox.stop(name, grace).await),
        }
    }
}

fn engine_ended(ended: crate::containers::docker::Ended) -> Ended {
    if ended.oom_killed { Ended { code: ended.code, reason: "OOMKilled" } } else { Ended::of(ended.code) }
}

/// What a container's environment is made of: the pod, where it runs, and the API server
/// its ConfigMaps and Secrets come from.
#[derive(Clone)]
struct Source {
    client: kube::Client,
    pod: Value,
    pod_ip: String,
    host_ip: String,
    node: String,
}

impl Source {
    fn new(context: &pod::Context) -> Source {
        Source {
            client: context.client.clone(),
            pod: context.pod.clone(),
            pod_ip: context.pod_ip.clone(),
            host_ip: context.host_ip.clone(),
            node: context.node.clone(),
        }
    }
}

/// `metadata.labels['app']` and `metadata.annotations['x']`: the map and the key.
pub(crate) fn map_field(path: &str) -> Option<(&str, &str)> {
    let (map, rest) = path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    matches!(map, "metadata.labels" | "metadata.annotations").then_some((map.trim_start_matches("metadata."), key))
}

/// The container's environment: what Kubernetes sets, its literal values, the downward
/// API and keys of ConfigMaps and Secrets.
/// A built-in image's process also learns what a container has from its sandbox (its
/// hostname, its address, the resolver's search list) and its first port.
async fn environment(context: &Source, container: &Value, builtin: bool) -> Result<Vec<(String, String)>, String> {
    let pod = &context.pod;
    let namespace = text(pod, "/metadata/namespace");
    let mut env = Vec::new();
    if builtin {
        env.push(("HOSTNAME".to_string(), text(pod, "/metadata/name").to_string()));
        env.push(("KUBEYARD_POD_IP".to_string(), context.pod_ip.clone()));
        // The search list a pod's resolv.conf has in Kubernetes, so `web` and `web.shop`
        // resolve from a pod of `shop` (the node's resolver has the node's search list).
        env.push(("LOCALDOMAIN".to_string(), format!("{namespace}.svc.cluster.local svc.cluster.local cluster.local")));
        if let Some(port) = container.pointer("/ports/0/containerPort").and_then(Value::as_u64) {
            env.push(("PORT".into(), port.to_string()));
        }
    }
    // `envFrom` first, each source's keys (with its prefix) in order; `env` after, over it.
    for from in container.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
        let prefix = text(from, "/prefix");
        let optional = |reference: &Value| reference.get("optional").and_then(Value::as_bool) == Some(true);
        let data: Vec<(String, String)> = if let Some(reference) = from.get("configMapRef") {
            let source = text(reference, "/name");
            match volumes::config_map(&context.client, namespace, source).await? {
                Some(map) => map.data.unwrap_or_default().into_iter().collect(),
                None if optional(reference) => continue,
                None => return Err(format!("configmap \"{source}\" not found")),
            }
        } else if let Some(reference) = from.get("secretRef") {
            let source = text(reference, "/name");
            match volumes::secret(&context.client, namespace, source).await? {
                Some(secret) => secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if optional(reference) => continue,
                None => return Err(format!("secret \"{source}\" not found")),
            }
        } else {
            continue;
        };
        env.extend(data.into_iter().map(|(key, value)| (format!("{prefix}{key}"), value)));
    }
    for variable in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = text(variable, "/name").to_string();
        if let Some(value) = variable.get("value").and_then(Value::as_str) {
            env.push((name, value.to_string()));
            continue;
        }
        let Some(from) = variable.get("valueFrom") else {
            env.push((name, String::new()));
            continue;
        };
        let value = if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            match path {
                "metadata.name" => text(pod, "/metadata/name").to_string(),
                "metadata.namespace" => namespace.to_string(),
                "metadata.uid" => text(pod, "/metadata/uid").to_string(),
                "spec.nodeName" => context.node.clone(),
                "spec.serviceAccountName" => text(pod, "/spec/serviceAccountName").to_string(),
                "status.podIP" => context.pod_ip.clone(),
                "status.hostIP" => context.host_ip.clone(),
                other => match map_field(other) {
                    Some((map, key)) => {
                        let pointer = format!("/metadata/{map}/{}", key.replace('~', "~0").replace('/', "~1"));
                        text(pod, &pointer).to_string()
                    }
                    None => return Err(format!("env {name}: the field {other} is not supported")),
                },
            }
        } else if let Some(reference) = from.get("configMapKeyRef") {
            let (source, key) = (text(reference, "/name"), text(reference, "/key"));
            let found = volumes::config_map(&context.client, namespace, source).await?;
            match found.and_then(|m| m.data).and_then(|d| d.get(key).cloned()) {
                Some(value) => value,
                None if reference.get("optional").and_then(Value::as_bool) == Some(true) => continue,
                None => return Err(format!("configmap \"{source}\" has no key \"{key}\"")),
            }
        } else if let Some(reference) = from.get("secretKeyRef") {
            let (source, key) = (text(reference, "/name"), text(reference, "/key"));
            let found = volumes::secret(&context.client, namespace, source).await?;
            match found.and_then(|s| s.data).and_then(|d| d.get(key).cloned()) {
                Some(bytes) => String::from_utf8_lossy(&bytes.0).into_owned(),
                None if reference.get("optional").and_then(Value::as_bool) == Some(true) => continue,
                None => return Err(format!("secret \"{source}\" has no key \"{key}\"")),
            }
        } else {
            return Err(format!("env {name}: only fieldRef, configMapKeyRef and secretKeyRef are supported"));
        };
        env.push((name, value));
    }
    let mut env = last_wins(env);
    // Service links: added after the container's own variables, never over them. The
    // API server's own Service (`kubernetes` of `default`) is always linked, whatever
    // `enableServiceLinks` says, unless the namespace has a Service of that name linked.
    let mut list: Vec<Value> = Vec::new();
    if pod.pointer("/spec/enableServiceLinks").and_then(Value::as_bool) != Some(false) {
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(context.client.clone(), namespace);
        let found = services.list(&Default::default()).await.map_err(|e| format!("listing services: {e}"))?;
        list.extend(found.items.iter().filter_map(|s| serde_json::to_value(s).ok()));
    }
    let master = crate::apiserver::kubernetes_service::NAME;
    if !list.iter().any(|s| text(s, "/metadata/name") == master) {
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(context.client.clone(), "default");
        let found = services.get_opt(master).await.map_err(|e| format!("reading service {master}: {e}"))?;
        list.extend(found.and_then(|s| serde_json::to_value(s).ok()));
    }
    for (name, value) in service_links(&list) {
        if !env.iter().any(|(known, _)| *known == name) {
            env.push((name, value));
        }
    }
    Ok(env)
}

/// The variables the kubelet gives containers for the Services of their pod's namespace
/// (`enableServiceLinks`, on unless turned off), as Kubernetes' `envvars.FromServices`
/// writes them: `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (and one per named port),
/// and Docker's link variables (`<NAME>_PORT=tcp://ip:port`, `<NAME>_PORT_<port>_<PROTO>`
/// with `_PROTO`, `_PORT`, `_ADDR`). Services without a cluster IP (headless,
/// ExternalName) have none. In the order of the Services' names.
pub(crate) fn service_links(services: &[Value]) -> Vec<(String, String)> {
    let upper = |name: &str| name.to_uppercase().replace('-', "_");
    let mut services: Vec<&Value> = services.iter().collect();
    services.sort_by_key(|s| text(s, "/metadata/name").to_string());
    let mut env = Vec::new();
    for service in services {
        let ip = text(service, "/spec/clusterIP");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = upper(text(service, "/metadata/name"));
        let ports: Vec<&Value> =
            service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten().collect();
        let Some(first) = ports.first() else { continue };
        let number = |port: &Value| port.get("port").and_then(Value::as_i64).unwrap_or(0).to_string();
        env.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{name}_SERVICE_PORT"), number(first)));
        for port in &ports {
            let port_name = text(port, "/name");
            if !port_name.is_empty() {
                env.push((format!("{name}_SERVICE_PORT_{}", upper(port_name)), number(port)));
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = Some(text(port, "/protocol")).filter(|p| !p.is_empty()).unwrap_or("TCP");
            let url = format!("{}://{ip}:{}", protocol.to_lowercase(), number(port));
            if i == 0 {
                env.push((format!("{name}_PORT"), url.clone()));
            }
            let prefix = format!("{name}_PORT_{}_{}", number(port), protocol.to_uppercase());
            env.push((prefix.clone(), url));
            env.push((format!("{prefix}_PROTO"), protocol.to_lowercase()));
            env.push((format!("{prefix}_PORT"), number(port)));
            env.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    env
}

/// One value per name, the last one given, at the place of the first: a later `env`
/// entry overrides an earlier one or an `envFrom` key, as the kubelet builds the list.
fn last_wins(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (name, value) in env {
        match out.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) => entry.1 = value,
            None => out.push((name, value)),
        }
    }
    out
}

/// What a container's task tells the pod's task.
enum Report {
    Waiting {
        index: usize,
        reason: &'static str,
        message: String,
        restarts: u32,
    },
    Running {
        index: usize,
        started: String,
    },
    Ready {
        index: usize,
        ready: bool,
    },
    Exited {
        index: usize,
        code: i32,
        reason: &'static str,
        started: String,
        finished: String,
        restarts: u32,
    },
    Event {
        reason: &'static str,
        message: String,
        warning: bool,
    },
    /// The container will not run again: the last exit code.
    Done {
        code: i32,
    },
}

/// One container, as its task sees it.
struct Life {
    index: usize,
    name: String,
    spec: Value,
    source: Source,
    launch: Launch,
    log: Box<dyn Fn(u32) -> PathBuf + Send + Sync>,
    engine: Engine,
    pod_ip: String,
    /// `Always`, `OnFailure` or `Never`.
    policy: String,
    grace: Duration,
    reports: mpsc::UnboundedSender<Report>,
    stop: watch::Receiver<Option<Duration>>,
    /// Where the running container is measured, and under which name.
    stats: Option<(Arc<Stats>, stats::Key)>,
}

/// CrashLoopBackOff: 10 s, doubling, at most 5 minutes.
fn back_off(restarts: u32) -> Duration {
    Duration::from_secs(10u64.saturating_mul(1 << restarts.saturating_sub(1).min(5)).min(300))
}

/// An exit status as the kubelet reports it: killed by a signal is 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}

/// Where an exec probe's command runs: as a process of the built-in image (with the
/// container's environment), or inside the container.
enum ExecIn<'a> {
    Process(&'a PathBuf, &'a [(String, String)]),
    Container(&'a Sandbox, &'a str),
}

/// Runs one check; `Err` says why it failed.
async fn check(check: &Check, ip: &str, timeout: Duration, exec: ExecIn<'_>) -> Result<(), String> {
    let run = async {
        match check {
            Check::Http { port, path } => {
                let mut stream = tokio::net::TcpStream::connect((ip, *port)).await.map_err(|e| e.to_string())?;
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.32\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
                let mut head = vec![0u8; 64];
                let read = stream.read(&mut head).await.map_err(|e| e.to_string())?;
                let line = String::from_utf8_lossy(&head[..read]);
                let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                if (200..400).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {status}"))
                }
            }
            Check::Tcp { port } => tokio::net::TcpStream::connect((ip, *port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {ip}:{port}: {e}")),
            Check::Exec { argv } => {
                let (executable, env) = match exec {
                    ExecIn::Process(executable, env) => (executable, env),
                    ExecIn::Container(sandbox, name) => {
                        let code = sandbox.exec(name, argv).await?;
                        return if code == 0 { Ok(()) } else { Err(format!("command exited with {code}")) };
                    }
                };
                let argv = exec_argv(argv)?;
                let status = tokio::process::Command::new(executable)
                    .args(&argv)
                    .env_clear()
                    .envs(env.iter().cloned())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| e.to_string())?;
                if status.success() { Ok(()) } else { Err(format!("command exited with {}", exit_code(status))) }
            }
            Check::Grpc { port, service } => super::grpc_probe::check(ip, *port, service, timeout).await,
            Check::Unsupported(why) => Err(why.clone()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("timeout: no answer within {timeout:?}")),
    }
}

/// A probe's running tally: consecutive successes and failures.
struct Tally {
    probe: Probe,
    due: Instant,
    successes: u32,
    failures: u32,
}

impl Tally {
    fn new(probe: Probe, started: Instant) -> Tally {
        Tally { due: started + probe.initial, probe, successes: 0, failures: 0 }
    }

    /// Records a result; `Some(true)` when the success threshold is reached now,
    /// `Some(false)` when the failure threshold is.
    fn record(&mut self, passed: bool) -> Option<bool> {
        self.due = Instant::now() + self.probe.period;
        if passed {
            self.failures = 0;
            self.successes += 1;
            (self.successes == self.probe.success).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures == self.probe.failure).then_some(false)
        }
    }
}

impl Life {
    fn report(&self, report: Report) {
        let _ = self.reports.send(report);
    }

    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Starts the container, its output to the log of this run.
    async fn spawn(&self, restarts: u32) -> Result<Started, String> {
        let path = (self.log)(restarts);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let executable = match &self.engine {
            Engine::Process(executable) => executable,
            Engine::Docker(sandbox) => {
                let name = sandbox.start(&self.spec, &self.launch, restarts, log).await?;
                return Ok(Started::Container(Arc::clone(sandbox), name));
            }
        };
        let err = log.try_clone().map_err(|e| e.to_string())?;
        tokio::process::Command::new(executable)
            .args(&self.launch.argv)
            .env_clear()
            .envs(self.launch.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map(Started::Process)
            .map_err(|e| format!("cannot start {}: {e}", executable.display()))
    }

    /// Runs the container's `postStart` or `preStop` hook, if it has one, within `within`;
    /// `Err` says why it failed. A `sleep` hook sleeps.
    async fn hook(&self, started: &Started, which: &str, within: Duration) -> Result<(), String> {
        let Some(spec) = self.spec.pointer(&format!("/lifecycle/{which}")) else { return Ok(()) };
        if let Some(seconds) = spec.pointer("/sleep/seconds").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_secs(seconds).min(within)).await;
            return Ok(());
        }
        let check =
            handler(spec, &self.spec).unwrap_or_else(|| Check::Unsupported(format!("a {which} hook with no handler")));
        self::check(&check, &self.pod_ip, within, self.exec_in(started)).await
    }

    /// Stops the container as the kubelet does: its `preStop` hook first, then SIGTERM,
    /// SIGKILL once the grace period (what is left of it after the hook) has passed.
    async fn terminate(&self, started: &mut Started, grace: Duration) -> Ended {
        let begun = Instant::now();
        if let Err(why) = self.hook(started, "preStop", grace).await {
            let message = format!("PreStopHook failed: {why}");
            self.report(Report::Event { reason: "FailedPreStopHook", message, warning: true });
        }
        started.stop(grace.saturating_sub(begun.elapsed())).await
    }

    /// Where this container's exec probes run.
    fn exec_in<'a>(&'a self, started: &'a Started) -> ExecIn<'a> {
        match (started, &self.engine) {
            (Started::Container(sandbox, name), _) => ExecIn::Container(sandbox, name),
            (Started::Process(_), Engine::Process(executable)) => ExecIn::Process(executable, &self.launch.env),
            // A process is only started by the process engine.
            (Started::Process(_), Engine::Docker(sandbox)) => ExecIn::Container(sandbox, ""),
        }
    }

    /// The image, pulled as the container's `imagePullPolicy` says, with the kubelet's
    /// events; a pull that fails is tried again after ImagePullBackOff's back-off. False
    /// when the pod is deleted first.
    async fn pull(&mut self, sandbox: &Sandbox, restarts: u32) -> bool {
        let image = text(&self.spec, "/image").to_string();
        let policy = text(&self.spec, "/imagePullPolicy").to_string();
        let mut failures = 0u32;
        loop {
            if failures == 0 && policy != "Never" && policy != "IfNotPresent" {
                let message = format!("Pulling image \"{image}\"");
                self.report(Report::Event { reason: "Pulling", message, warning: false });
            }
            let (reason, message) = match sandbox.image(&image, &policy).await {
                Ok(Pulled::Present) => {
                    let message = format!("Container image \"{image}\" already present on machine");
                    self.report(Report::Event { reason: "Pulled", message, warning: false });
                    return true;
                }
                Ok(Pulled::Pulled(took)) => {
                    let message = format!("Successfully pulled image \"{image}\" in {took:?}");
                    self.report(Report::Event { reason: "Pulled", message, warning: false });
                    return true;
                }
                Err(failure) => failure,
            };
            failures += 1;
            let index = self.index;
            self.report(Report::Waiting { index, reason, message: message.clone(), restarts });
            let failed =
                if reason == "ErrImagePull" { format!("Failed to pull image \"{image}\": {message}") } else { message };
            self.report(Report::Event { reason: "Failed", message: failed, warning: true });
            self.report(Report::Event { reason: "Failed", message: format!("Error: {reason}"), warning: true });
            let wait = back_off(failures);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1).min(wait)) => {}
                _ = self.stop.changed() => return false,
            }
            if reason == "ErrImagePull" {
                let message = format!("Back-off pulling image \"{image}\"");
                self.report(Report::Waiting { index, reason: "ImagePullBackOff", message: message.clone(), restarts });
                self.report(Report::Event { reason: "BackOff", message, warning: false });
                let message = "Error: ImagePullBackOff".to_string();
                self.report(Report::Event { reason: "Failed", message, warning: true });
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.saturating_sub(Duration::from_secs(1))) => {}
                _ = self.stop.changed() => return false,
            }
        }
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; the exit code.
    async fn kill(child: &mut tokio::process::Child, grace: Duration) -> i32 {
        if let Some(pid) = child.id() {
            // SAFETY: a signal to our own child, whose pid we still hold (not yet reaped).
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => exit_code(status),
            _ => {
                let _ = child.kill().await;
                child.wait().await.map(exit_code).unwrap_or(137)
            }
        }
    }

    /// Makes the container's command line and environment, as the kubelet does before
    /// each start: a missing ConfigMap or Secret key is CreateContainerConfigError, tried
    /// again until it appears; a command the image cannot run is RunContainerError, for
    /// good. False when the pod is deleted first.
    async fn configure(&mut self) -> bool {
        let builtin = matches!(self.engine, Engine::Process(_));
        let argv = match if builtin { argv(&self.spec) } else { Ok(Vec::new()) } {
            Ok(argv) => argv,
            Err(message) => {
                let reason = "RunContainerError";
                self.report(Report::Waiting { index: self.index, reason, message: message.clone(), restarts: 0 });
                self.report(Report::Event { reason: "Failed", message: format!("Error: {message}"), warning: true });
                let _ = self.stop.changed().await;
                return false;
            }
        };
        let mut told = String::new();
        loop {
            match environment(&self.source, &self.spec, builtin).await {
                Ok(env) => {
                    let strings = |field: &str| {
                        self.spec.get(field).and_then(Value::as_array).map(|list| {
                            list.iter().filter_map(Value::as_str).map(|a| expand(a, &env)).collect::<Vec<_>>()
                        })
                    };
                    self.launch = Launch {
                        argv: argv.iter().map(|a| expand(a, &env)).collect(),
                        command: strings("command"),
                        args: strings("args"),
                        pod_security: self.source.pod.pointer("/spec/securityContext").cloned().unwrap_or(Value::Null),
                        env,
                    };
                    return true;
                }
                Err(message) => {
                    if message != told {
                        let reason = "CreateContainerConfigError";
                        self.report(Report::Waiting {
                            index: self.index,
                            reason,
                            message: message.clone(),
                            restarts: 0,
                        });
                        let event = format!("Error: {message}");
                        self.report(Report::Event { reason: "Failed", message: event, warning: true });
                        told = message;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.stop.changed() => return false,
            }
        }
    }

    /// Runs the container until it is not to run again.
    async fn run(mut self) {
        if !self.configure().await {
            self.report(Report::Done { code: 128 });
            return;
        }
        let mut restarts = 0u32;
        let code = loop {
            if let Engine::Docker(sandbox) = self.engine.clone()
                && !self.pull(&sandbox, restarts).await
            {
                break 128;
            }
            let started = crate::clock::now();
            let code = match self.spawn(restarts).await {
                Ok(mut child) => {
                    let _measured = self.stats.as_ref().and_then(|(stats, key)| {
                        let measure = match &child {
                            Started::Process(process) => Measure::Process(process.id()?),
                            Started::Container(_, name) => Measure::Engine(name.clone()),
                        };
                        Some(stats.track(key.clone(), measure, started.clone()))
                    });
                    let message = format!("Created container {}", self.name);
                    self.report(Report::Event { reason: "Created", message, warning: false });
                    self.report(Report::Running { index: self.index, started: started.clone() });
                    let message = format!("Started container {}", self.name);
                    self.report(Report::Event { reason: "Started", message, warning: false });
                    let Ended { code, reason } = self.watch(&mut child).await;
                    let finished = crate::clock::now();
                    self.report(Report::Exited { index: self.index, code, reason, started, finished, restarts });
                    code
                }
                Err(message) => {
                    self.report(Report::Waiting {
                        index: self.index,
                        reason: "RunContainerError",
                        message: message.clone(),
                        restarts,
                    });
                    self.report(Report::Event {
                        reason: "Failed",
                        message: format!("Error: {message}"),
                        warning: true,
                    });
                    128
                }
            };
            if self.stopping().is_some() || !self.back_off(&mut restarts, code).await {
                break code;
            }
        };
        self.report(Report::Done { code });
    }

    /// After an exit: whether to run again, having waited out the back-off.
    async fn back_off(&mut self, restarts: &mut u32, code: i32) -> bool {
        let again = match self.policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !again || self.stopping().is_some() {
            return false;
        }
        *restarts += 1;
        let wait = back_off(*restarts);
        let message = format!("back-off {}s restarting failed container={}", wait.as_secs(), self.name);
        self.report(Report::Waiting { index: self.index, reason: "CrashLoopBackOff", message, restarts: *restarts });
        self.report(Report::Event {
            reason: "BackOff",
            message: "Back-off restarting failed container".into(),
            warning: true,
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.stop.changed() => false,
        }
    }

    /// While the process runs: probes, until it exits, fails its liveness or startup
    /// probe, or the pod is deleted. The exit code.
    async fn watch(&mut self, child: &mut Started) -> Ended {
        // The kubelet runs `postStart` right after the start, and kills a container whose
        // hook fails.
        if let Err(why) = self.hook(child, "postStart", self.grace).await {
            let message = format!("PostStartHook failed: {why}");
            self.report(Report::Event { reason: "FailedPostStartHook", message, warning: true });
            let message = format!("Container {} failed post-start hook, will be restarted", self.name);
            self.report(Report::Event { reason: "Killing", message, warning: false });
            return self.terminate(child, self.grace).await;
        }
        let started = Instant::now();
        let mut startup = probe(&self.spec, "startupProbe").map(|p| Tally::new(p, started));
        let mut readiness = probe(&self.spec, "readinessProbe").map(|p| Tally::new(p, started));
        let mut liveness = probe(&self.spec, "livenessProbe").map(|p| Tally::new(p, started));
        let mut ready = false;
        if startup.is_none() && readiness.is_none() {
            ready = true;
            self.report(Report::Ready { index: self.index, ready });
        }
        loop {
            // The probes due next: the startup probe alone until it has passed.
            let due = match &startup {
                Some(tally) => Some(tally.due),
                None => [&readiness, &liveness].iter().filter_map(|t| t.as_ref().map(|t| t.due)).min(),
            };
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ended = child.wait() => return ended,
                _ = self.stop.changed() => {
                    let grace = self.stopping().unwrap_or(self.grace);
                    return self.terminate(child, grace).await;
                }
                _ = sleep => {}
            }
            let now = Instant::now();
            if let Some(tally) = startup.as_mut() {
                let result = check(&tally.probe.check, &self.pod_ip, tally.probe.timeout, self.exec_in(child)).await;
                match tally.record(result.is_ok()) {
                    Some(true) => {
                        startup = None;
                        let started = Instant::now();
                        readiness.iter_mut().for_each(|t| t.due = started + t.probe.initial);
                        liveness.iter_mut().for_each(|t| t.due = started + t.probe.initial);
                        if readiness.is_none() {
                            ready = true;
                            self.report(Report::Ready { index: self.index, ready });
                        }
                    }
                    Some(false) => {
                        let message = format!("Startup probe failed: {}", result.err().unwrap_or_default());
                        self.report(Report::Event { reason: "Unhealthy", message, warning: true });
                        self.report(Report::Event {
                            reason: "Killing",
                            message: format!("Container {} failed startup probe, will be restarted", self.name),
                            warning: false,
                        });
                        return self.terminate(child, self.grace).await;
                    }
                    None => {}
                }
                continue;
            }
            if let Some(tally) = readiness.as_mut().filter(|t| t.due <= now) {
                let result = check(&tally.probe.check, &self.pod_ip, tally.probe.timeout, self.exec_in(child)).await;
                let failure = result.as_ref().err().cloned();
                match tally.record(result.is_ok()) {
                    Some(now_ready) if now_ready != ready => {
                        ready = now_ready;
                        self.report(Report::Ready { index: self.index, ready });
                    }
                    _ if !ready && tally.failures == 1 => {
                        let message = format!("Readiness probe failed: {}", failure.unwrap_or_default());
                        self.report(Report::Event { reason: "Unhealthy", message, warning: true });
                    }
                    _ => {}
                }
            }
            if let Some(tally) = liveness.as_mut().filter(|t| t.due <= now) {
                let result = check(&tally.probe.check, &self.pod_ip, tally.probe.timeout, self.exec_in(child)).await;
                let failure = result.as_ref().err().cloned();
                if tally.record(result.is_ok()) == Some(false) {
                    let message = format!("Liveness probe failed: {}", failure.unwrap_or_default());
                    self.report(Report::Event { reason: "Unhealthy", message, warning: true });
                    self.report(Report::Event {
                        reason: "Killing",
                        message: format!("Container {} failed liveness probe, will be restarted", self.name),
                        warning: false,
                    });
                    if ready {
                        self.report(Report::Ready { index: self.index, ready: false });
                    }
                    return self.terminate(child, self.grace).await;
                }
            }
        }
    }
}

/// Runs the pod until it is finished (its address released), or until it is deleted:
/// then its containers stop within the grace period and the deletion is confirmed.
pub async fn run(mut context: pod::Context, runtime: Runtime, mut stop: watch::Receiver<Option<Duration>>) {
    let pod = context.pod.clone();
    let init_specs: Vec<Value> =
        pod.pointer("/spec/initContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let specs: Vec<Value> = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut status = Status {
        phase: "Pending",
        start_time: context.clock.timestamp(),
        initialized: init_specs.is_empty(),
        init: pod::containers(&pod, "initContainers"),
        containers: pod::containers(&pod, "containers"),
        transitions: Map::new(),
        completed: false,
    };
    context.write(&mut status).await;
    context.flush().await;

    // The pod's address (on the node, or its sandbox's), kept until the pod is done.
    let ip: Ipv4Addr = context.pod_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let address = loop {
        let made = match &runtime.docker {
            Some(docker) if !runs_as_processes(&pod) => {
                // The claims' volumes first: a claim not bound yet holds the pod here.
                match super::volumes::bound_volumes(&context.client, &pod).await {
                    Ok(bound) => docker
                        .sandbox(&pod, &context.pod_ip, bound)
                        .await
                        .map(Place::sandbox)
                        .map_err(|message| ("FailedCreatePodSandBox", message)),
                    Err(message) => Err(("FailedMount", message)),
                }
            }
            _ => Address::add(runtime.node_address, ip).map(Place::Address).map_err(|m| ("FailedCreatePodSandBox", m)),
        };
        match made {
            Ok(address) => break address,
            Err((reason, message)) => {
                context.event(reason, &message, true).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return confirm(&context, &runtime, None).await,
                }
            }
        }
    };
    let engine = address.engine(&runtime);
    // The file volumes are written before any container starts, and kept up to date
    // while the pod runs, as the kubelet's volume manager does.
    let _refresher = match &address {
        Place::Sandbox(sandbox) => {
            let mut told = String::new();
            while let Err(message) = sandbox.mount(&context.client).await {
                if message != told {
                    context.event("FailedMount", &message, true).await;
                    told = message;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return confirm(&context, &runtime, Some(address)).await,
                }
            }
            let (sandbox, client) = (Arc::clone(sandbox), context.client.clone());
            Some(AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(VOLUME_RESYNC).await;
                    let _ = sandbox.mount(&client).await;
                }
            })))
        }
        Place::Address(_) => None,
    };
    let policy = context.restart_policy().to_string();
    let grace =
        Duration::from_secs(pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(30));

    // The containers' tasks end with this one: aborted, their processes are killed.
    let mut lives = tokio::task::JoinSet::new();
    // Init containers one at a time, each to a successful end.
    let mut failed = false;
    for (index, spec) in init_specs.iter().enumerate() {
        let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
        let (reports, mut inbox) = mpsc::unbounded_channel();
        lives.spawn(life(&context, &runtime, &engine, spec, index, init_policy, grace, reports, &stop).run());
        let mut code = 1;
        while let Some(done) = receive(&mut context, &mut status, &mut inbox, true).await {
            if let Some(last) = done.first() {
                code = *last;
                break;
            }
        }
        if code != 0 || stop.borrow().is_some() {
            failed = true;
            break;
        }
    }
    if stop.borrow().is_some() {
        return confirm(&context, &runtime, Some(address)).await;
    }
    if failed {
        status.phase = "Failed";
        status.completed = true;
        context.write(&mut status).await;
        context.flush().await;
        address.release().await;
        let _ = stop.changed().await;
        return confirm(&context, &runtime, None).await;
    }
    status.initialized = true;

    let (reports, mut inbox) = mpsc::unbounded_channel();
    for (index, spec) in specs.iter().enumerate() {
        lives.spawn(life(&context, &runtime, &engine, spec, index, &policy, grace, reports.clone(), &stop).run());
    }
    let running = specs.len();
    drop(reports);
    status.phase = status.phase_after_init();
    context.write(&mut status).await;
    context.flush().await;
    let mut codes = Vec::new();
    while codes.len() < running {
        let Some(done) = receive(&mut context, &mut status, &mut inbox, false).await else { break };
        codes.extend(done);
    }
    if stop.borrow().is_some() {
        return confirm(&context, &runtime, Some(address)).await;
    }
    address.release().await;
    // Every container is done for good: the pod ends.
    status.phase = if codes.iter().all(|c| *c == 0) && codes.len() == specs.len() { "Succeeded" } else { "Failed" };
    status.completed = true;
    for container in &mut status.containers {
        container.ready = false;
    }
    context.write(&mut status).await;
    context.flush().await;
    let _ = stop.changed().await;
    confirm(&context, &runtime, None).await
}

/// How often a running pod's file volumes are compared with their sources (the kubelet
/// takes up to its sync period, a minute, plus its cache's time to live).
const VOLUME_RESYNC: Duration = Duration::from_secs(5);

/// A task that ends with its handle.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a pod's network lives: its address on the node's interface (built-in images) or
/// its sandbox in the engine.
enum Place {
    Address(Address),
    Sandbox(Arc<Sandbox>),
}

impl Place {
    fn sandbox(sandbox: Sandbox) -> Place {
        Place::Sandbox(Arc::new(sandbox))
    }

    fn engine(&self, runtime: &Runtime) -> Engine {
        match self {
            Place::Address(_) => Engine::Process(runtime.executable.clone()),
            Place::Sandbox(sandbox) => Engine::Docker(Arc::clone(sandbox)),
        }
    }

    /// The pod is done: its address is free (its containers, their sandbox, gone).
    async fn release(self) {
        match self {
            Place::Address(address) => drop(address),
            Place::Sandbox(sandbox) => sandbox.remove().await,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn life(
    context: &pod::Context,
    runtime: &Runtime,
    engine: &Engine,
    spec: &Value,
    index: usize,
    policy: &str,
    grace: Duration,
    reports: mpsc::UnboundedSender<Report>,
    stop: &watch::Receiver<Option<Duration>>,
) -> Life {
    let name = text(spec, "/name").to_string();
    let pod = &context.pod;
    let (namespace, pod_name, uid) = (
        text(pod, "/metadata/namespace").to_string(),
        text(pod, "/metadata/name").to_string(),
        text(pod, "/metadata/uid").to_string(),
    );
    let key =
        stats::Key { namespace: namespace.clone(), pod: pod_name.clone(), uid: uid.clone(), container: name.clone() };
    let (runtime_for_log, container) = (runtime.clone(), name.clone());
    Life {
        index,
        name,
        spec: spec.clone(),
        source: Source::new(context),
        launch: Launch::default(),
        log: Box::new(move |restarts| runtime_for_log.log_path(&namespace, &pod_name, &uid, &container, restarts)),
        engine: engine.clone(),
        pod_ip: context.pod_ip.clone(),
        policy: policy.to_string(),
        grace,
        reports,
        stop: stop.clone(),
        stats: runtime.stats.clone().map(|stats| (stats, key)),
    }
}

/// One report into the pod's status (`init`: of an init container).
async fn apply(context: &mut pod::Context, status: &mut Status, report: Report, init: bool) {
    let containers = if init { &mut status.init } else { &mut status.containers };
    match report {
        Report::Waiting { index, reason, message, restarts } => {
            if let Some(c) = containers.get_mut(index) {
                if let State::Terminated { .. } = c.state {
                    c.last = Some(c.state.clone());
                }
                c.state = State::Waiting(reason, message);
                c.ready = false;
                c.restarts = restarts;
            }
        }
        Report::Running { index, started } => {
            if let Some(c) = containers.get_mut(index) {
                c.state = State::Running(started);
            }
        }
        Report::Ready { index, ready } => {
            if let Some(c) = containers.get_mut(index) {
                c.ready = ready;
            }
        }
        Report::Exited { index, code, reason, started, finished, restarts } => {
            if let Some(c) = containers.get_mut(index) {
                c.state = State::Terminated { code, reason, started, finished };
                c.ready = false;
                c.restarts = restarts;
            }
        }
        Report::Event { reason, message, warning } => context.event(reason, &message, warning).await,
        Report::Done { .. } => {}
    }
}

/// Waits for reports, takes in every one already sent with the first, and writes the
/// status once for all of them; the exit codes of containers that are done.
async fn receive(
    context: &mut pod::Context,
    status: &mut Status,
    inbox: &mut mpsc::UnboundedReceiver<Report>,
    init: bool,
) -> Option<Vec<i32>> {
    let first = inbox.recv().await?;
    let mut done = Vec::new();
    let mut next = Some(first);
    while let Some(report) = next {
        match report {
            Report::Done { code } => done.push(code),
            report => apply(context, status, report, init).await,
        }
        next = inbox.try_recv().ok();
    }
    if !init && !status.completed {
        status.phase = status.phase_after_init();
    }
    context.write(status).await;
    context.flush().await;
    Some(done)
}

/// The pod's containers are stopped: the kubelet confirms the deletion, and its logs and
/// its place (if it still has one) go.
async fn confirm(context: &pod::Context, runtime: &Runtime, place: Option<Place>) {
    if let Some(place) = place {
        place.release().await;
    }
    let pod = &context.pod;
    let dir =
        format!("{}_{}_{}", text(pod, "/metadata/namespace"), text(pod, "/metadata/name"), text(pod, "/metadata/uid"));
    let _ = std::fs::remove_dir_all(runtime.logs.join(dir));
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(context.client.clone(), text(pod, "/metadata/namespace"));
    pod::confirm_deletion(&context.clock, &pods, pod).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_images_are_told_apart() {
        assert!(is_builtin("kubeyard/echo") && is_builtin("kubeyard/echo:1") && is_builtin("kubeyard/echo@sha256:ab"));
        assert!(!is_builtin("kubeyard/echoes") && !is_builtin("nginx"));
        let pod = |images: &[&str]| json!({"spec": {"containers": images.iter().map(|i| json!({"name": "c", "image": i})).collect::<Vec<_>>()}});
        assert!(runs_as_processes(&pod(&["kubeyard/echo", "kubeyard/echo:2"])));
        assert!(!runs_as_processes(&pod(&["kubeyard/echo", "nginx"])));
        assert!(!runs_as_processes(&json!({"spec": {}})));
    }

    #[test]
    fn the_command_may_only_name_the_images_program() {
        let argv_of = |container: Value| argv(&container);
        assert_eq!(argv_of(json!({"args": ["--port", "9000"]})).unwrap(), ["echo", "--port", "9000"]);
        assert_eq!(argv_of(json!({"command": ["echo", "--text", "hi"]})).unwrap(), ["echo", "--text", "hi"]);
        assert_eq!(argv_of(json!({"command": ["/kubeyard", "echo"], "args": ["-x"]})).unwrap(), ["echo", "-x"]);
        assert!(
            argv_of(json!({"command": ["sh", "-c", "x"]})).unwrap_err().contains("\"sh\": executable file not found")
        );
    }

    #[test]
    fn variables_in_arguments_expand_as_kubernetes_expands_them() {
        let env = vec![("GREETING".to_string(), "hello".to_string()), ("PORT".to_string(), "80".to_string())];
        assert_eq!(expand("$(GREETING), world", &env), "hello, world");
        assert_eq!(expand("--port=$(PORT)", &env), "--port=80");
        assert_eq!(expand("$(MISSING) $$(GREETING) $5", &env), "$(MISSING) $(GREETING) $5");
        assert_eq!(expand("$(unclosed", &env), "$(unclosed");
    }

    #[test]
    fn probes_resolve_named_ports_and_take_kubernetes_defaults() {
        let container = json!({
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "http", "path": "/readyz"}, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 8080}},
            "startupProbe": {"grpc": {"port": 9000}},
        });
        let readiness = probe(&container, "readinessProbe").unwrap();
        assert_eq!(readiness.check, Check::Http { port: 8080, path: "/readyz".into() });
        assert_eq!((readiness.period, readiness.failure, readiness.success), (Duration::from_secs(2), 3, 1));
        assert_eq!(probe(&container, "livenessProbe").unwrap().check, Check::Tcp { port: 8080 });
        assert_eq!(
            probe(&container, "startupProbe").unwrap().check,
            Check::Grpc { port: 9000, service: String::new() }
        );
        assert!(probe(&container, "missingProbe").is_none());
    }

    #[test]
    fn labels_and_annotations_are_fields_of_the_downward_api() {
        assert_eq!(map_field("metadata.labels['app']"), Some(("labels", "app")));
        assert_eq!(map_field("metadata.annotations['kubeyard.dev/x']"), Some(("annotations", "kubeyard.dev/x")));
        assert_eq!(map_field("metadata.labels"), None);
        assert_eq!(map_field("spec.labels['app']"), None);
    }

    #[test]
    fn a_later_variable_overrides_an_earlier_one_in_its_place() {
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let env = pairs(&[("A", "from-config-map"), ("B", "b"), ("A", "from-env")]);
        assert_eq!(last_wins(env), pairs(&[("A", "from-env"), ("B", "b")]));
    }

    #[test]
    fn services_become_variables_as_the_kubelet_writes_them() {
        let services = [
            serde_json::json!({"metadata": {"name": "redis-master"},
                               "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "redis", "port": 6379}]}}),
            serde_json::json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
            serde_json::json!({"metadata": {"name": "dns"},
                               "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}}),
        ];
        let env = service_links(&services);
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let expected = [
            ("DNS_SERVICE_HOST", "10.96.0.10"),
            ("DNS_SERVICE_PORT", "53"),
            ("DNS_PORT", "udp://10.96.0.10:53"),
            ("DNS_PORT_53_UDP", "udp://10.96.0.10:53"),
            ("DNS_PORT_53_UDP_PROTO", "udp"),
            ("DNS_PORT_53_UDP_PORT", "53"),
            ("DNS_PORT_53_UDP_ADDR", "10.96.0.10"),
            ("DNS_PORT_53_TCP", "tcp://10.96.0.10:53"),
            ("DNS_PORT_53_TCP_PROTO", "tcp"),
            ("DNS_PORT_53_TCP_PORT", "53"),
            ("DNS_PORT_53_TCP_ADDR", "10.96.0.10"),
            ("REDIS_MASTER_SERVICE_HOST", "10.96.0.11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_MASTER_PORT", "tcp://10.96.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.0.11"),
        ];
        assert_eq!(env, pairs(&expected));
    }

    #[test]
    fn hooks_and_probes_share_their_handlers() {
        let container = json!({"ports": [{"name": "http", "containerPort": 80}]});
        let http = json!({"httpGet": {"port": "http", "path": "/drain"}});
        assert_eq!(handler(&http, &container), Some(Check::Http { port: 80, path: "/drain".into() }));
        let exec = json!({"exec": {"command": ["sh", "-c", "sleep 1"]}});
        assert_eq!(
            handler(&exec, &container),
            Some(Check::Exec { argv: vec!["sh".into(), "-c".into(), "sleep 1".into()] })
        );
        assert_eq!(handler(&json!({"sleep": {"seconds": 1}}), &container), None);
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|r| back_off(r).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_tally_turns_at_its_thresholds() {
        let probe = Probe {
            check: Check::Tcp { port: 1 },
            initial: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success: 2,
            failure: 2,
        };
        let mut tally = Tally::new(probe, Instant::now());
        assert_eq!(tally.record(true), None);
        assert_eq!(tally.record(true), Some(true));
        assert_eq!(tally.record(false), None);
        assert_eq!(tally.record(false), Some(false));
    }
}
