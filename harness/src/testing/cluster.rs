//! A cluster under test, for `kubeyard test` and for users' own `cargo test`s: boot one
//! (`Cluster::builder().nodes(3).build().await?`, in process, virtual time by default) or
//! connect to any cluster of a kubeconfig, apply manifests in plan order, change it, break
//! it, and wait for what should become true (`eventually`, `consistently`,
//! `assert_converged`), each wait driven by watches on the kinds it is about. On a virtual
//! clock, time runs ahead whenever the cluster has gone quiet, so a 40-second grace period
//! passes in milliseconds, yet nothing that happens in between is skipped.

use super::expect::{Expectation, Failure, Holds};
use super::idle::Idle;
use super::spec::EtcdMember;
use crate::cli::compile::compile;
use crate::cli::inputs::Inputs;
use crate::client::{self, Client, Connected, Written, source_chain};
use crate::clock::Clock;
use crate::containers::{ClusterSpec, ContainerCluster};
use crate::controlplane::{Config, ControlPlane};
use crate::kubelet::NodeConfig;
use crate::kubelet::simulate::ANNOTATION;
use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kubeyard_compiler::graph::ObjectId;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What can befall a node of a test's cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    Kill,
    Pause,
    Unpause,
    Disconnect,
    Reconnect,
}

impl NodeFault {
    /// As a step's progress line says it.
    pub fn verb(self) -> &'static str {
        match self {
            NodeFault::Kill => "kill",
            NodeFault::Pause => "pause",
            NodeFault::Unpause => "unpause",
            NodeFault::Disconnect => "disconnect",
            NodeFault::Reconnect => "reconnect",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster does not boot: {0}")]
    Boot(String),
    #[error("{0}")]
    Manifests(String),
    #[error("{0}")]
    Api(String),
    /// The API server could not be reached or cut the answer off: which request, where,
    /// and the transport's own words.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0} needs the in-process cluster")]
    InProcessOnly(&'static str),
    #[error("{0} needs a container cluster (--cluster containers)")]
    ContainersOnly(&'static str),
    #[error("{0} needs a cluster kubeyard runs (in process or in containers)")]
    OwnClusterOnly(&'static str),
    #[error("{}", .0.summary)]
    Failed(Box<Failure>),
}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) => Error::Api(kube::Error::Api(status).to_string()),
            // The connection failed or broke: the chain says how (refused, reset, closed
            // before the answer), where kube's own text stops at "client error (SendRequest)".
            transport @ (kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)) => {
                Error::Unreachable(format!("cannot reach the API server: {}", source_chain(&transport)))
            }
            other => Error::Api(source_chain(&other)),
        }
    }
}

/// A request's failure said with the request (`GET /api/v1/namespaces/x/pods`) when the
/// API server could not be reached; its answers (404, 409...) stay as the server said them.
fn request(method: &'static str, url: String) -> impl FnOnce(kube::Error) -> Error {
    move |error| match Error::from(error) {
        Error::Unreachable(cause) => Error::Unreachable(format!("{method} {url}: {cause}")),
        other => other,
    }
}

/// An object the test applied, to check it converged and to clean it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// How a cluster for a test is made.
pub struct Builder {
    config: Config,
    virtual_time: bool,
}

impl Builder {
    /// `count` nodes named `node-1`... with the default capacity (4 cpu, 8Gi, 110 pods).
    pub fn nodes(mut self, count: u32) -> Builder {
        self.config.nodes = Config::with_nodes(count).nodes;
        self
    }

    /// One more node, as configured.
    pub fn node(mut self, node: NodeConfig) -> Builder {
        self.config.nodes.push(node);
        self
    }

    /// Every node's capacity set for these resources (`cpu`, `memory`, `pods`, ...).
    pub fn capacity(mut self, resources: &[(&str, &str)]) -> Builder {
        for node in &mut self.config.nodes {
            node.capacity.extend(resources.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        self
    }

    pub fn seed(mut self, seed: u64) -> Builder {
        self.config.seed = seed;
        self
    }

    /// How long a node may go silent before it turns NotReady (Kubernetes' 50 s unless told; the kubelets renew their leases at a quarter of it, at most every 10 s).
    pub fn node_monitor_grace_period(mut self, grace: Duration) -> Builder {
        self.config.node_grace = grace;
        self
    }

    /// How long pods stay on a node that is not ready or unreachable before they are
    /// evicted, unless they say (300 s unless told).
    pub fn default_toleration_seconds(mut self, seconds: u64) -> Builder {
        self.config.default_toleration_seconds = seconds;
        self
    }

    /// Wall-clock time instead of the virtual clock.
    pub fn real_time(mut self) -> Builder {
        self.virtual_time = false;
        self
    }

    pub async fn build(self) -> Result<Cluster, Error> {
        let mut config = self.config;
        config.clock = if self.virtual_time { Clock::stopped() } else { Clock::real() };
        let clock = config.clock.clone();
        let plane = ControlPlane::boot(config).await.map_err(|e| Error::Boot(e.to_string()))?;
        let client = Client::new(plane.client(), plane.url());
        Ok(Cluster::new(client, Some(plane), clock, self.virtual_time, "default".into()))
    }
}

/// How long a wait may take in real time beyond its cluster-time bound before it is
/// given up (a cluster that cannot keep up with its clock).
const REAL_TIME_GRACE: Duration = Duration::from_secs(30);
/// How long `converged` must hold after a fault before it counts (cluster time).
const SETTLE: Duration = Duration::from_secs(2);
/// How long the cluster must be quiet before a virtual clock runs ahead.
const QUIET: Duration = Duration::from_millis(15);
/// How long, in real time, the last instant of a wait may take to go quiet.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// The steps a virtual clock runs ahead by: short at first, doubling while nothing
/// happens, never more than a kubelet's lease renewal can keep up with.
const FIRST_STEP: Duration = Duration::from_millis(250);
/// The longest a wait pauses between two checks of a busy cluster (real time).
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
const LONGEST_STEP: Duration = Duration::from_secs(5);
/// How soon a check the API server did not answer is tried again (real time).
const RETRY_UNREACHABLE: Duration = Duration::from_millis(200);

/// An assertion's checks the API server did not answer. A blip (a pooled connection the
/// server closed, a restarting container) is tried again until the assertion's time is
/// up, as kubectl's and chainsaw's waits do; if it never answers, the failure says so and
/// since when, with the last error, instead of a verdict on the cluster's state.
#[derive(Default)]
struct Unreachable {
    /// The last error, and when the first of the run of them came.
    last: Option<(String, Instant)>,
}

impl Unreachable {
    /// The check's verdict; `None` when the API server did not answer (noted).
    fn retried(&mut self, checked: Result<Holds, Error>) -> Result<Option<Holds>, Error> {
        match checked {
            Ok(holds) => {
                self.last = None;
                Ok(Some(holds))
            }
            Err(Error::Unreachable(cause)) => {
                let since = self.last.take().map_or_else(Instant::now, |(_, since)| since);
                self.last = Some((cause, since));
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    fn gave_up(&self, started: Instant) -> Error {
        match &self.last {
            Some((cause, since)) => Error::Unreachable(format!(
                "{cause} (tried again for {:.1}s of the assertion's {:.1}s)",
                since.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64()
            )),
            None => Error::Unreachable("cannot reach the API server".into()),
        }
    }
}

pub struct Cluster {
    client: Client,
    plane: Option<ControlPlane>,
    /// A container cluster this one booted (removed when it is dropped).
    containers: Option<ContainerCluster>,
    clock: Clock,
    virtual_time: bool,
    namespace: String,
    applied: Mutex<Vec<Applied>>,
    /// Node faults not yet seen by the cluster: each node and whether it should end Ready
    /// (started again) or not (stopped, killed, paused, cut off). `converged` waits for
    /// them first: right after a fault nothing has noticed it, and the old state would
    /// pass for the new one.
    unobserved: Mutex<std::collections::BTreeMap<String, bool>>,
    /// The etcd members this test killed and did not start again (`startEtcdMember: killed`).
    killed_etcd_members: Mutex<Vec<usize>>,
}

impl Cluster {
    /// A cluster in this process, three nodes unless told otherwise, on a virtual clock.
    pub fn builder() -> Builder {
        Builder { config: Config::with_nodes(3), virtual_time: true }
    }

    /// A running cluster, a kubeconfig's (its current context unless one is named), in
    /// real time; `namespace` is where objects that name none go.
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
        namespace: &str,
    ) -> Result<Cluster, Error> {
        let Connected { client, .. } = Client::connect(kubeconfig, context).await.map_err(Error::Api)?;
        Ok(Cluster::new(client, None, Clock::real(), false, namespace.to_string()))
    }

    fn new(
        client: Client,
        plane: Option<ControlPlane>,
        clock: Clock,
        virtual_time: bool,
        namespace: String,
    ) -> Cluster {
        Cluster {
            client,
            plane,
            containers: None,
            clock,
            virtual_time,
            namespace,
            applied: Mutex::new(Vec::new()),
            unobserved: Mutex::new(std::collections::BTreeMap::new()),
            killed_etcd_members: Mutex::new(Vec::new()),
        }
    }

    /// A cluster of containers (`kubeyard up --containers`), in real time: every component
    /// a process of its own, node faults real ones.
    pub async fn containers(spec: &ClusterSpec) -> Result<Cluster, Error> {
        let quiet = |_: &str| {};
        let containers = ContainerCluster::boot(spec, &quiet).await.map_err(|e| Error::Boot(e.to_string()))?;
        let kube = containers.client().map_err(|e| Error::Boot(e.to_string()))?;
        let client = Client::new(kube, containers.url());
        let mut cluster = Cluster::new(client, None, Clock::real(), false, "default".into());
        cluster.containers = Some(containers);
        Ok(cluster)
    }

    /// The kube client underneath (the one `client` speaks through).
    pub fn kube(&self) -> kube::Client {
        self.client.kube().clone()
    }

    /// The container cluster, when this is one.
    pub fn container_cluster(&self) -> Option<&ContainerCluster> {
        self.containers.as_ref()
    }

    /// Leaves the container cluster running when this is dropped (`kubeyard down ID`
    /// removes it); its id, when this is one.
    pub fn keep_containers(&mut self) -> Option<String> {
        let containers = self.containers.take()?;
        let id = containers.id().to_string();
        containers.disown();
        Some(id)
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// An unreachable API server's failure said in full: where the server is and, for a
    /// container cluster, which of its containers is not running, how it ended and its
    /// last lines.
    pub async fn explain_unreachable(&self, failure: &str) -> String {
        let mut text = format!("{failure}\nthe API server is {}", self.client.server());
        if let Some(containers) = &self.containers {
            match containers.trouble().await {
                trouble if trouble.is_empty() => text.push_str("; every container of the cluster is running"),
                trouble => {
                    text.push('\n');
                    text.push_str(trouble.trim_end());
                }
            }
        }
        text
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn plane(&self) -> Option<&ControlPlane> {
        self.plane.as_ref()
    }

    /// A kubeconfig for kubectl and any client (clusters kubeyard runs).
    pub fn kubeconfig(&self) -> Option<String> {
        match (&self.plane, &self.containers) {
            (Some(plane), _) => Some(plane.kubeconfig()),
            (None, Some(containers)) => Some(containers.kubeconfig()),
            _ => None,
        }
    }

    /// What the test applied so far, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Lets `duration` pass in the cluster: pushed ahead on a virtual clock (in steps the
    /// kubelets keep up with), slept through on a real one.
    pub async fn advance(&self, duration: Duration) {
        if !self.virtual_time {
            tokio::time::sleep(duration).await;
            return;
        }
        let end = self.clock.now() + duration;
        while let Ok(left) = end.duration_since(self.clock.now()) {
            if left.is_zero() {
                break;
            }
            self.clock.advance(self.clock.step_towards(left.min(LONGEST_STEP)));
            tokio::time::sleep(QUIET).await;
        }
    }

    /// The API resource of a kind, and whether it is namespaced.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool), Error> {
        match self.client.resource(api_version, kind).await.map_err(|failed| match failed {
            client::Failed::Unreachable(why) => Error::Unreachable(why),
            client::Failed::Answered(why) => Error::Api(why),
        })? {
            Some(served) => Ok((served.resource, served.namespaced)),
            None => Err(Error::Api(format!("the cluster does not serve {api_version} {kind}"))),
        }
    }

    /// The API of a kind in `namespace` (the test's when `None`; ignored for cluster-scoped kinds).
    pub async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, Error> {
        let (resource, namespaced) = self.resource(api_version, kind).await?;
        Ok(if namespaced {
            Api::namespaced_with(self.kube(), namespace.unwrap_or(&self.namespace), &resource)
        } else {
            Api::all_with(self.kube(), &resource)
        })
    }

    /// Every object of a kind in `namespace` (the test's with `None`), picked by a label
    /// selector if given.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        Ok(self.list_where(api_version, kind, namespace, &params).await?.0)
    }

    /// `list` with any list options (a field selector such as `status.phase=Pending`, so
    /// the server filters; a limit), and whether more items are left past the limit.
    pub async fn list_where(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<(Vec<Value>, bool), Error> {
        let api = self.api(api_version, kind, namespace).await?;
        // Read as JSON values straight away: through `DynamicObject` every item was decoded,
        // encoded and decoded again, most of a large check's time.
        let url = api.resource_url().to_string();
        let http = kube::core::Request::new(&url).list(params).map_err(|e| Error::Api(e.to_string()))?;
        let list: kube::core::ObjectList<Value> = self.kube().request(http).await.map_err(request("GET", url))?;
        let more = list.metadata.continue_.as_deref().is_some_and(|c| !c.is_empty());
        let items = list
            .items
            .into_iter()
            .map(|mut object| {
                // A real API server leaves the type off a list's items.
                if let Some(map) = object.as_object_mut() {
                    map.insert("apiVersion".into(), json!(api_version));
                    map.insert("kind".into(), json!(kind));
                }
                object
            })
            .collect();
        Ok((items, more))
    }

    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let api = self.api(api_version, kind, namespace).await?;
        let url = format!("{}/{name}", api.resource_url());
        Ok(api.get_opt(name).await.map_err(request("GET", url))?.map(|o| with_type(&o, api_version, kind)))
    }

    /// Applies manifests (files or directories; templates filled from `values` and the
    /// environment `env`) in plan order, as `kubeyard apply` does; one line per object.
    pub async fn apply_paths(
        &self,
        paths: &[PathBuf],
        env: Option<&str>,
        values: Option<&Value>,
    ) -> Result<Vec<String>, Error> {
        let values_file = values.map(write_values).transpose()?;
        let inputs = Inputs {
            paths: paths.iter().map(|p| p.display().to_string()).collect(),
            env: env.map(str::to_string),
            values: values_file.iter().map(|f| f.path.clone()).collect(),
            no_config: true,
            ..Inputs::default()
        };
        self.apply_inputs(inputs).await
    }

    /// Installs the chart in `chart` as `helm install` would: rendered by `helm template`
    /// (with the values files, tests left out) and applied in plan order.
    pub async fn install_chart(
        &self,
        chart: &Path,
        release: Option<&str>,
        values: &[PathBuf],
    ) -> Result<Vec<String>, Error> {
        let inputs = Inputs {
            paths: vec![chart.display().to_string()],
            helm_values: values.to_vec(),
            helm_release: release.map(str::to_string),
            helm_namespace: Some(self.namespace.clone()),
            no_config: true,
            ..Inputs::default()
        };
        self.apply_inputs(inputs).await
    }

    /// Plans what `inputs` names against the cluster and applies it.
    async fn apply_inputs(&self, inputs: Inputs) -> Result<Vec<String>, Error> {
        let (plan, written) = {
            let mut compiled =
                compile(&inputs).map_err(|_| Error::Manifests(format!("cannot read {}", inputs.paths.join(", "))))?;
            // kubeyard's own documents (this test, a Cluster) describe the run, not the cluster.
            compiled.objects.retain(|d| d.info.gvk.group != kubeyard_compiler::schema::KUBEYARD_GROUP);
            if self.namespace != "default" {
                // What names no namespace goes into the test's own.
                let catalog = compiled.linter.catalog();
                for desired in &mut compiled.objects {
                    if catalog.is_namespaced(&desired.info.gvk) && desired.info.namespace_span.is_none() {
                        desired.edit(|object| {
                            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                                metadata.insert("namespace".into(), json!(self.namespace));
                            }
                        });
                    }
                }
            }
            let graph = compiled.graph();
            if let Some(problems) = compiled.problems_text()
                && compiled.reports.iter().any(|r| r.objects.iter().any(|o| o.diagnostics.iter().any(|d| d.is_error())))
            {
                return Err(Error::Manifests(problems));
            }
            let values: Vec<Value> = compiled.objects.iter().map(|d| d.value()).collect();
            let desired: Vec<&Value> = values.iter().collect();
            let state = client::state::read(&self.client, &desired, false).await.map_err(Error::Api)?;
            let plan = compiled.plan(&graph, &state, false, &kubeyard_compiler::plan::Applier::ClientSide);
            let written: HashMap<ObjectId, Value> =
                graph.ids.iter().cloned().zip(compiled.objects.iter().map(|d| d.written())).collect();
            (plan, written)
        };
        self.carry_out(&plan, &written).await
    }

    async fn carry_out(
        &self,
        plan: &kubeyard_compiler::plan::Plan,
        written: &HashMap<ObjectId, Value>,
    ) -> Result<Vec<String>, Error> {
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        let mut applied = Vec::new();
        // Objects of one wave are written at once and finish in any order: what is said
        // and recorded follows the plan's order, the same on every run.
        let position = |entry: &kubeyard_compiler::plan::Entry| {
            plan.objects.iter().position(|e| std::ptr::eq(e, entry)).unwrap_or(usize::MAX)
        };
        client::apply::apply(&self.client, plan, written, &client::apply::Mode::ClientSide, |entry, result| {
            let object = &entry.object;
            let at = position(entry);
            let shown = format!("{}/{}", object.kind.to_lowercase(), object.name);
            match result {
                Ok(()) => {
                    let verb = match entry.action {
                        kubeyard_compiler::plan::Action::Create => "created",
                        kubeyard_compiler::plan::Action::Update => "configured",
                        kubeyard_compiler::plan::Action::Delete => "pruned",
                        kubeyard_compiler::plan::Action::Unchanged => "unchanged",
                        // Tests apply client-side: their plans have no conflicts.
                        kubeyard_compiler::plan::Action::Conflict => "in conflict",
                    };
                    lines.push((at, format!("{shown} {verb}")));
                    applied.push((
                        at,
                        Applied {
                            api_version: object.api_version.clone(),
                            kind: object.kind.clone(),
                            namespace: object.namespace.clone(),
                            name: object.name.clone(),
                        },
                    ));
                }
                Err(Written::Conflict(message) | Written::Failed(message)) => {
                    failures.push((at, format!("{shown}: {message}")))
                }
            }
        })
        .await;
        for list in [&mut lines, &mut failures] {
            list.sort_by_key(|(at, _)| *at);
        }
        applied.sort_by_key(|(at, _)| *at);
        let lines: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
        let failures: Vec<String> = failures.into_iter().map(|(_, line)| line).collect();
        let mut recorded = self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, object) in applied {
            if !recorded.contains(&object) {
                recorded.push(object);
            }
        }
        if failures.is_empty() { Ok(lines) } else { Err(Error::Api(failures.join("\n"))) }
    }

    /// Merges a patch (`strategic`, `merge` or `json`) into one object.
    pub async fn patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch_type: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        let api = self.api(api_version, kind, namespace).await?;
        let patch = match patch_type {
            "merge" => Patch::Merge(patch.clone()),
            "json" => Patch::Json::<Value>(
                serde_json::from_value(patch.clone()).map_err(|e| Error::Api(format!("a JSON patch: {e}")))?,
            ),
            _ => Patch::Strategic(patch.clone()),
        };
        let url = format!("{}/{name}", api.resource_url());
        api.patch(name, &PatchParams::default(), &patch).await.map_err(request("PATCH", url))?;
        Ok(())
    }

    /// Deletes one object, or every object a label selector picks.
    pub async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&str>,
        propagation: Option<&str>,
    ) -> Result<(), Error> {
        let api = self.api(api_version, kind, namespace).await?;
        let params = DeleteParams {
            propagation_policy: Some(match propagation {
                Some("Foreground") => PropagationPolicy::Foreground,
                Some("Orphan") => PropagationPolicy::Orphan,
                _ => PropagationPolicy::Background,
            }),
            ..DeleteParams::default()
        };
        match name {
            Some(name) => match api.delete(name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    Err(Error::Api(format!("{kind}/{name} does not exist")))
                }
                Err(error) => Err(request("DELETE", format!("{}/{name}", api.resource_url()))(error)),
            },
            None => {
                let mut list = ListParams::default();
                if let Some(selector) = selector {
                    list = list.labels(selector);
                }
                api.delete_collection(&params, &list)
                    .await
                    .map_err(request("DELETE", api.resource_url().to_string()))?;
                Ok(())
            }
        }
    }

    /// Sets `spec.replicas` through the `scale` subresource, as `kubectl scale` does.
    pub async fn scale(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        replicas: i64,
    ) -> Result<(), Error> {
        let api = self.api(api_version, kind, namespace).await?;
        let url = format!("{}/{name}/scale", api.resource_url());
        api.patch_scale(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas}})))
            .await
            .map_err(request("PATCH", url))?;
        Ok(())
    }

    fn in_process(&self, what: &'static str) -> Result<&ControlPlane, Error> {
        self.plane.as_ref().ok_or(Error::InProcessOnly(what))
    }

    /// The node's agent dies: its lease is no longer renewed and its pods freeze (in
    /// containers: the node's container stops, its processes with it).
    pub async fn stop_node(&self, node: &str) -> Result<(), Error> {
        self.fault_on(node, false);
        if let Some(containers) = &self.containers {
            return containers.stop_node(node).await.map_err(|e| Error::Api(e.to_string()));
        }
        self.in_process("stopping a node")?.kubelets().stop(node).map_err(|e| Error::Api(e.to_string()))
    }

    /// A node fault as a container cluster carries it out; in-process, where a node is
    /// only its agent, the ones that silence a node stop the agent and the others start it.
    pub async fn node_fault(&self, node: &str, fault: NodeFault) -> Result<(), Error> {
        self.fault_on(node, matches!(fault, NodeFault::Unpause | NodeFault::Reconnect));
        if let Some(containers) = &self.containers {
            let done = match fault {
                NodeFault::Kill => containers.kill_node(node).await,
                NodeFault::Pause => containers.pause_node(node).await,
                NodeFault::Unpause => containers.unpause_node(node).await,
                NodeFault::Disconnect => containers.disconnect_node(node).await,
                NodeFault::Reconnect => containers.reconnect_node(node).await,
            };
            return done.map_err(|e| Error::Api(e.to_string()));
        }
        match fault {
            NodeFault::Kill | NodeFault::Pause | NodeFault::Disconnect => self.stop_node(node).await,
            NodeFault::Unpause | NodeFault::Reconnect => self.start_node(node).await,
        }
    }

    /// etcd's container restarts; the call returns once it answers. Container clusters
    /// only: in-process the store is the API server's own.
    pub async fn restart_etcd(&self) -> Result<(), Error> {
        match &self.containers {
            Some(containers) => containers.restart_etcd().await.map_err(|e| Error::Api(e.to_string())),
            None => Err(Error::ContainersOnly("restarting etcd")),
        }
    }

    /// SIGKILL to an etcd member: by index, or `leader`, the one leading now. Container
    /// clusters only.
    pub async fn kill_etcd_member(&self, member: &EtcdMember) -> Result<(), Error> {
        let containers = self.containers.as_ref().ok_or(Error::ContainersOnly("killing an etcd member"))?;
        let index = match member {
            EtcdMember::Index(index) => *index,
            EtcdMember::Named(name) if name == "leader" => {
                // An election may be under way: ask until the members agree, 30 s at most.
                let started = std::time::Instant::now();
                loop {
                    if let Some(leader) = containers.etcd_leader().await {
                        break leader;
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        return Err(Error::Api("killEtcdMember: etcd has had no leader for 30 s".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            EtcdMember::Named(name) => {
                return Err(Error::Manifests(format!(
                    "killEtcdMember: \"{name}\" is not a member: give its index or \"leader\""
                )));
            }
        };
        containers.kill_etcd_member(index).await.map_err(|e| Error::Api(e.to_string()))?;
        self.killed_etcd_members.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(index);
        Ok(())
    }

    /// Starts an etcd member again on its data: by index, or `killed`, every one this test
    /// killed. Returns once each answers.
    pub async fn start_etcd_member(&self, member: &EtcdMember) -> Result<(), Error> {
        let containers = self.containers.as_ref().ok_or(Error::ContainersOnly("starting an etcd member"))?;
        let members = match member {
            EtcdMember::Index(index) => vec![*index],
            EtcdMember::Named(name) if name == "killed" => {
                std::mem::take(&mut *self.killed_etcd_members.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            }
            EtcdMember::Named(name) => {
                return Err(Error::Manifests(format!(
                    "startEtcdMember: \"{name}\" is not a member: give its index or \"killed\""
                )));
            }
        };
        for index in members {
            containers.start_etcd_member(index).await.map_err(|e| Error::Api(e.to_string()))?;
            self.killed_etcd_members.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&m| m != index);
        }
        Ok(())
    }

    pub async fn start_node(&self, node: &str) -> Result<(), Error> {
        self.fault_on(node, true);
        if let Some(containers) = &self.containers {
            return containers.start_node(node).await.map_err(|e| Error::Api(e.to_string()));
        }
        self.in_process("starting a node")?.kubelets().start_node(node).await.map_err(|e| Error::Api(e.to_string()))
    }

    /// A node joins the cluster (its index, which picks its pod CIDR and address, the next
    /// free one).
    pub async fn add_node(&self, mut node: NodeConfig) -> Result<(), Error> {
        let plane = self.in_process("adding a node")?;
        node.index = u32::try_from(plane.kubelets().nodes().len()).unwrap_or(0) + 1;
        plane.kubelets().add_node(node).await.map_err(|e| Error::Api(e.to_string()))
    }

    /// `kubectl cordon` (`uncordon` with `false`). In-process, it returns once the
    /// scheduler has seen it, so pods created next are placed knowing it (a real
    /// scheduler sees it within milliseconds, long before a Deployment's pods exist).
    pub async fn cordon(&self, node: &str, cordoned: bool) -> Result<(), Error> {
        let api = self.api("v1", "Node", None).await?;
        let patch = Patch::Merge(json!({"spec": {"unschedulable": cordoned}}));
        let url = format!("{}/{node}", api.resource_url());
        let patched = api.patch(node, &PatchParams::default(), &patch).await.map_err(request("PATCH", url))?;
        let revision = patched.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
        if let (Some(plane), Some(revision)) = (&self.plane, revision) {
            plane.scheduler_nodes_seen().reach(revision, Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// The pods' containers exit with an error from now on (simulated pods, which every
    /// pod of an in-process cluster is, and any pod not of a built-in image in containers).
    pub async fn crash_pods(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&str>,
    ) -> Result<usize, Error> {
        if self.plane.is_none() && self.containers.is_none() {
            return Err(Error::OwnClusterOnly("crashing a pod"));
        }
        let pods: Vec<String> = match name {
            Some(name) => vec![name.to_string()],
            None => self
                .list("v1", "Pod", namespace, selector)
                .await?
                .iter()
                .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
                .collect(),
        };
        let api = self.api("v1", "Pod", namespace).await?;
        let patch = json!({"metadata": {"annotations": {ANNOTATION: "crash-after=0s"}}});
        for pod in &pods {
            let url = format!("{}/{pod}", api.resource_url());
            api.patch(pod, &PatchParams::default(), &Patch::Merge(patch.clone()))
                .await
                .map_err(request("PATCH", url))?;
        }
        Ok(pods.len())
    }

    pub async fn restart_api_server(&self) -> Result<(), Error> {
        if let Some(containers) = &self.containers {
            return containers.restart_api_server().await.map_err(|e| Error::Api(e.to_string()));
        }
        self.in_process("restarting the API server")?.restart_api_server().await.map_err(|e| Error::Api(e.to_string()))
    }

    /// A signal raised by every change to objects of these kinds while it lives (in
    /// process, built-in kinds are heard of from the store, with nothing decoded).
    async fn changes(&self, kinds: &[(String, String)]) -> Result<Changes, Error> {
        let notify = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for (api_version, kind) in kinds {
            let group = api_version.split_once('/').map_or("", |(group, _)| group);
            if let (Some(plane), Some(resource)) = (&self.plane, crate::apiserver::resources::by_kind(group, kind)) {
                tasks.push(plane.notify_writes(resource.prefix(None), Arc::clone(&notify)));
                continue;
            }
            let (resource, _) = self.resource(api_version, kind).await?;
            let api: Api<DynamicObject> = Api::all_with(self.kube(), &resource);
            let notify = Arc::clone(&notify);
            tasks.push(tokio::spawn(async move {
                let stream = watcher(api, watcher::Config::default()).default_backoff();
                futures_util::pin_mut!(stream);
                while stream.next().await.is_some() {
                    notify.notify_one();
                }
            }));
        }
        Ok(Changes { notify, tasks })
    }

    /// Waits until the cluster is quiet at the present instant (at most `SETTLE_LIMIT` of
    /// real time: a cluster that never goes quiet is checked as it stands).
    async fn settle(&self, changes: &Changes) {
        let started = Instant::now();
        while !self.quiet(changes).await && started.elapsed() < SETTLE_LIMIT {}
    }

    /// Whether the cluster stayed idle for `QUIET`: no change to what is watched, and (in
    /// process) no write at all, no pod being placed and the runtime every component runs
    /// on idle too ([`Idle`]: a starved component can go longer than the window without
    /// a write), so running the clock ahead skips nothing in progress.
    async fn quiet(&self, changes: &Changes) -> bool {
        let before = match &self.plane {
            Some(plane) => Some((plane.revision().await, Idle::now())),
            None => None,
        };
        if tokio::time::timeout(QUIET, changes.notify.notified()).await.is_ok() {
            return false;
        }
        match (&self.plane, before) {
            (Some(plane), Some((revision, idle))) => {
                plane.revision().await == revision
                    && !plane.scheduler_nodes_seen().placing()
                    && idle.is_none_or(|idle| idle.held_for(QUIET))
            }
            _ => true,
        }
    }

    /// Waits until `expectation` holds, for at most `within` of cluster time; the failure
    /// says how it stood last.
    pub async fn eventually(&self, expectation: &Expectation, within: Duration) -> Result<(), Error> {
        self.eventually_said(expectation, within, within).await
    }

    /// `eventually`, the failure saying `said` (the whole wait, of which `within` is left).
    async fn eventually_said(&self, expectation: &Expectation, within: Duration, said: Duration) -> Result<(), Error> {
        let kinds = expectation.kinds();
        let changes = self.changes(&kinds).await?;
        let deadline = self.clock.now() + within;
        let started = Instant::now();
        let mut step = FIRST_STEP;
        let mut unreachable = Unreachable::default();
        loop {
            let checking = Instant::now();
            let checked = unreachable.retried(expectation.check(self).await)?;
            // While the cluster is busy, the next check waits a few times as long as this
            // one took: checking 10,000 Deployments back to back took most of the machine
            // from the cluster it waited on. A small check costs a millisecond and waits
            // as little; a quiet cluster is checked again at once.
            let pause = (checking.elapsed() * 3).min(LONGEST_PAUSE);
            let now = self.clock.now();
            let over = now >= deadline || started.elapsed() > within + REAL_TIME_GRACE;
            let failure = match checked {
                Some(Holds::Yes) => return Ok(()),
                Some(Holds::No(failure)) => failure,
                None if over => return Err(unreachable.gave_up(started)),
                None => {
                    tokio::time::sleep(RETRY_UNREACHABLE).await;
                    continue;
                }
            };
            if over {
                return Err(Error::Failed(Box::new(self.with_events(failure.within(said)).await)));
            }
            let left = deadline.duration_since(now).unwrap_or_default();
            if self.virtual_time {
                // The clock moves on whenever the cluster is quiet, one sleeper's deadline
                // at a time; a costly check is made again once the pause is over or the
                // clock has moved a first step's worth (30,000 pods starting are as many
                // deadlines: a check after each was the whole run). A check is never
                // further apart than that in cluster time, so what holds is seen soon.
                let until = Instant::now() + pause;
                let checked_at = self.clock.now();
                loop {
                    let left = deadline.duration_since(self.clock.now()).unwrap_or_default();
                    if left.is_zero() {
                        // What fell due at the deadline is done before the last check: the
                        // verdict and the failure's detail (its events, the pods still
                        // there) are then the seed's alone, not how far the components
                        // got on a loaded machine.
                        self.settle(&changes).await;
                        break;
                    }
                    if self.quiet(&changes).await {
                        self.clock.advance(self.clock.step_towards(step.min(left)));
                        step = (step * 2).min(LONGEST_STEP);
                    } else {
                        step = FIRST_STEP;
                    }
                    if Instant::now() >= until || self.clock.now() >= checked_at + FIRST_STEP {
                        break;
                    }
                }
            } else {
                tokio::time::sleep(pause).await;
                let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), changes.notify.notified()).await;
            }
        }
    }

    /// Checks that `expectation` holds now and at every change for `duration` of cluster time.
    pub async fn consistently(&self, expectation: &Expectation, duration: Duration) -> Result<(), Error> {
        let changes = self.changes(&expectation.kinds()).await?;
        let end = self.clock.now() + duration;
        let started = Instant::now();
        let mut step = FIRST_STEP;
        let mut unreachable = Unreachable::default();
        loop {
            match unreachable.retried(expectation.check(self).await)? {
                Some(Holds::No(failure)) => {
                    return Err(Error::Failed(Box::new(self.with_events(failure.consistently(duration)).await)));
                }
                Some(Holds::Yes) => {}
                // Not judged while the API server is away: a blip is no verdict either way,
                // but the whole wait must not pass on no evidence.
                None if self.clock.now() >= end || started.elapsed() > duration + REAL_TIME_GRACE => {
                    return Err(unreachable.gave_up(started));
                }
                None => {
                    tokio::time::sleep(RETRY_UNREACHABLE).await;
                    continue;
                }
            }
            let now = self.clock.now();
            if now >= end {
                return Ok(());
            }
            let left = end.duration_since(now).unwrap_or_default();
            if self.virtual_time {
                if self.quiet(&changes).await {
                    self.clock.advance(self.clock.step_towards(step.min(left)));
                    step = (step * 2).min(LONGEST_STEP);
                } else {
                    step = FIRST_STEP;
                }
            } else {
                let _ = tokio::time::timeout(left, changes.notify.notified()).await;
            }
        }
    }

    /// Waits until everything applied is realised: workloads available, Services with
    /// ready endpoints, no pod of theirs pending.
    pub async fn assert_converged(&self, within: Duration) -> Result<(), Error> {
        let started = self.clock.now();
        if !self.observed(within).await? {
            return self.eventually(&Expectation::converged(), within).await;
        }
        // After a fault the controllers catch up hop by hop (pods, then their ReplicaSet,
        // then its Deployment): converged counts once it holds for a moment, not on a
        // status written before the fault reached it.
        let converged = Expectation::converged();
        loop {
            let spent = self.clock.now().duration_since(started).unwrap_or_default();
            self.eventually_said(&converged, within.saturating_sub(spent), within).await?;
            match self.consistently(&converged, SETTLE).await {
                Ok(()) => return Ok(()),
                Err(Error::Failed(_)) if self.clock.now().duration_since(started).unwrap_or_default() < within => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Notes a node fault the cluster has yet to see.
    fn fault_on(&self, node: &str, ready_after: bool) {
        self.unobserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(node.to_string(), ready_after);
    }

    /// Waits until the cluster has seen the node faults made since the last wait: each
    /// node's Ready condition `Unknown` (the node controller marked a silent node) or
    /// `True` again (started).
    /// Whether there were faults to wait for.
    async fn observed(&self, within: Duration) -> Result<bool, Error> {
        let pending: Vec<(String, bool)> =
            std::mem::take(&mut *self.unobserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                .into_iter()
                .collect();
        let any = !pending.is_empty();
        for (node, ready) in pending {
            let status = if ready { "True" } else { "Unknown" };
            let seen = Expectation::matching(json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                "status": {"conditions": [{"type": "Ready", "status": status}]},
            }));
            let noticed = |error| match error {
                Error::Failed(mut failure) => {
                    failure.summary = format!(
                        "the cluster did not notice the fault on node {node} (Ready {status}): {}",
                        failure.summary
                    );
                    Error::Failed(failure)
                }
                other => other,
            };
            self.eventually(&seen, within).await.map_err(noticed)?;
            if !ready {
                // The node controller marks the node's pods not ready with it; until then
                // their workloads still count them.
                let still_ready = Expectation::count(
                    json!({"apiVersion": "v1", "kind": "Pod",
                           "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                    super::spec::Bounds { exactly: Some(0), at_least: None, at_most: None },
                )
                .that(&format!("spec.nodeName == '{node}'"))
                .map_err(Error::Manifests)?;
                self.eventually(&still_ready, within).await.map_err(noticed)?;
            }
        }
        Ok(any)
    }

    /// The recent events of the objects the failure is about (and of what they own).
    async fn with_events(&self, mut failure: Failure) -> Failure {
        let Some(object) = failure.closest.clone().or_else(|| failure.subjects.first().cloned()) else {
            return failure;
        };
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
        let Ok(events) = self.list("v1", "Event", Some(namespace.as_deref().unwrap_or(&self.namespace)), None).await
        else {
            return failure;
        };
        let mut about: Vec<String> = failure
            .subjects
            .iter()
            .chain(failure.closest.iter())
            .filter_map(|o| o.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string))
            .collect();
        // What the objects own, two levels down (a Deployment's ReplicaSets and their pods).
        for kind in [("apps/v1", "ReplicaSet"), ("v1", "Pod")] {
            if let Ok(owned) = self.list(kind.0, kind.1, namespace.as_deref(), None).await {
                for item in owned {
                    let owners = item
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if owners
                        .iter()
                        .any(|r| r.get("uid").and_then(Value::as_str).is_some_and(|u| about.iter().any(|a| a == u)))
                        && let Some(uid) = item.pointer("/metadata/uid").and_then(Value::as_str)
                    {
                        about.push(uid.to_string());
                    }
                }
            }
        }
        let mut related: Vec<&Value> = events
            .iter()
            .filter(|e| {
                e.pointer("/involvedObject/uid").and_then(Value::as_str).is_some_and(|u| about.iter().any(|a| a == u))
            })
            .collect();
        // By time, then by what they say: events of one second come in no set order.
        related.sort_by_key(|e| {
            let text = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            (text("/lastTimestamp"), text("/involvedObject/name"), text("/reason"), text("/message"))
        });
        failure.events = related
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|e| {
                let text = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default();
                format!(
                    "{} {} {}/{}: {}",
                    text("/type"),
                    text("/reason"),
                    text("/involvedObject/kind"),
                    text("/involvedObject/name"),
                    text("/message")
                )
            })
            .collect();
        failure
    }

    /// The converged state in a form that depends neither on timing nor on generated
    /// names: nodes with their readiness, and per node how many pods of each owner run in
    /// which phase; each workload's replica counts. For snapshot tests.
    pub async fn snapshot(&self) -> Result<Value, Error> {
        let mut nodes = BTreeMap::new();
        for node in self.list("v1", "Node", None, None).await? {
            let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let ready = kubeyard_compiler::node::is_ready(&node);
            nodes.insert(name, json!({"ready": ready, "pods": {}}));
        }
        let (pods_api, _) = self.resource("v1", "Pod").await?;
        let pods = Api::<DynamicObject>::all_with(self.kube(), &pods_api).list(&ListParams::default()).await?;
        let mut unscheduled: BTreeMap<String, u64> = BTreeMap::new();
        for pod in &pods.items {
            let pod = serde_json::to_value(pod).unwrap_or(Value::Null);
            let text = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            let owner = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    format!("{}/{}", r["kind"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default())
                })
                .unwrap_or_else(|| format!("Pod/{}", text("/metadata/name")));
            let ready = kubeyard_compiler::pod::is_ready(&pod);
            let key = format!(
                "{}/{owner} {}{}",
                text("/metadata/namespace"),
                text("/status/phase"),
                if ready { " ready" } else { "" }
            );
            match nodes.get_mut(&text("/spec/nodeName")).and_then(|n| n["pods"].as_object_mut()) {
                Some(on_node) => {
                    let count = on_node.entry(key).or_insert(json!(0));
                    *count = json!(count.as_u64().unwrap_or(0) + 1);
                }
                None => *unscheduled.entry(key).or_default() += 1,
            }
        }
        let mut workloads = BTreeMap::new();
        for (api_version, kind) in [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet")] {
            let (resource, _) = self.resource(api_version, kind).await?;
            let all = Api::<DynamicObject>::all_with(self.kube(), &resource).list(&ListParams::default()).await?;
            for object in &all.items {
                let object = serde_json::to_value(object).unwrap_or(Value::Null);
                let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
                let mut status = object.get("status").cloned().unwrap_or(json!({}));
                if let Some(map) = status.as_object_mut() {
                    map.retain(|k, v| v.is_number() && !k.contains("eneration") && k != "collisionCount");
                }
                workloads.insert(format!("{kind} {}/{}", text("/metadata/namespace"), text("/metadata/name")), status);
            }
        }
        Ok(json!({"nodes": nodes, "unscheduled": unscheduled, "workloads": workloads}))
    }
}

/// The object as JSON with its `apiVersion` and `kind` (lists leave them out of items).
fn with_type(object: &DynamicObject, api_version: &str, kind: &str) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!(kind));
    }
    value
}

struct Changes {
    notify: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Changes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A values file for the templates of one apply, removed when dropped.
struct ValuesFile {
    path: PathBuf,
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn write_values(values: &Value) -> Result<ValuesFile, Error> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("kubeyard-test-values-{}-{n}.json", std::process::id()));
    std::fs::write(&path, values.to_string())
        .map_err(|e| Error::Manifests(format!("cannot write {}: {e}", path.display())))?;
    Ok(ValuesFile { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport failure kube says as "ServiceError: client error (SendRequest)" keeps
    /// its causes, and a request's failure names the request.
    #[test]
    fn an_unreachable_api_server_is_said_with_the_request_and_the_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (SendRequest)")]
        struct SendRequest(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let error = kube::Error::Service(Box::new(SendRequest(refused)));
        let said = request("GET", "/api/v1/namespaces/shop/pods".into())(error);
        let Error::Unreachable(text) = said else { panic!("not unreachable: {said:?}") };
        assert_eq!(
            text,
            "GET /api/v1/namespaces/shop/pods: cannot reach the API server: ServiceError: client error \
             (SendRequest): Connection refused (os error 111)"
        );
    }

    /// The server's own answers stay as it said them: they are verdicts, not outages.
    #[test]
    fn an_answer_of_the_server_is_not_unreachable() {
        let status = kube::core::Status::failure("pods \"web\" not found", "NotFound").with_code(404);
        let said = request("GET", "/api/v1/namespaces/shop/pods/web".into())(kube::Error::Api(status.boxed()));
        assert!(matches!(&said, Error::Api(text) if text.contains("not found")), "{said:?}");
    }

    /// A run of unanswered checks is retried, and a give-up says for how long.
    #[test]
    fn unanswered_checks_are_retried_then_said() {
        let mut unreachable = Unreachable::default();
        let outage = || Err(Error::Unreachable("GET /api/v1/pods: cannot reach the API server: reset".into()));
        assert!(matches!(unreachable.retried(outage()), Ok(None)));
        assert!(matches!(unreachable.retried(Ok(Holds::Yes)), Ok(Some(Holds::Yes))));
        assert!(matches!(unreachable.retried(outage()), Ok(None)));
        assert!(matches!(unreachable.retried(Err(Error::Api("409".into()))), Err(Error::Api(_))));
        let Error::Unreachable(text) = unreachable.gave_up(Instant::now()) else { panic!("not unreachable") };
        assert!(text.starts_with("GET /api/v1/pods: cannot reach the API server: reset (tried again for "), "{text}");
    }
}
