//! One pod's life on a simulated node: the phases, conditions and container states the
//! real kubelet reports, in its order. Pending with `ContainerCreating`, init containers
//! one by one, Running, Ready after the readiness delay; crashes restart with
//! CrashLoopBackOff's doubling back-off unless the restart policy says not to; containers
//! of run-to-completion pods exit, and the pod Succeeds or Fails.
//!
//! The task is aborted when the pod is deleted or its simulation changes, and a new one
//! resumes from the status the pod already shows, so nothing restarts that was running.

use super::simulate::{self, Delays, Simulation};
use crate::clock::Clock;
use crate::events;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use std::time::Duration;

pub struct Context {
    pub client: kube::Client,
    pub pods: Api<Pod>,
    pub pod: Value,
    pub host_ip: String,
    pub pod_ip: String,
    pub clock: Clock,
    pub rng: fastrand::Rng,
    pub delays: Delays,
    pub simulation: Simulation,
    pub node: String,
    /// The status to report, not yet sent (the kubelet's status manager sends the latest
    /// of the changes made since its last report, so changes with no time between them
    /// are one report).
    pub pending: Option<Value>,
    /// The pod was gone when a status was sent.
    pub gone: bool,
    /// The status last sent (set before it is sent), for the agent to send again when
    /// someone else changed the pod's readiness (see `resync` in `mod.rs`).
    pub reported: Reported,
    /// The agent's status requests for its pods in flight at once (see `POD_REQUESTS`).
    pub requests: std::sync::Arc<tokio::sync::Semaphore>,
    /// The wait before a status the API server did not take is sent again.
    pub retry: Duration,
}

/// The status requests one node agent's pods make at once. Every pod has a task of its
/// own, and pods started together report at the same instant, each request in flight a
/// connection of its own over HTTP/1.1 (the API server takes 4,096). A real node's
/// kubelet sends its requests over one HTTP/2 connection at a bounded rate
/// (`kubeAPIQPS`); this is the simulated agent's bound, over the many nodes it hosts.
/// (Events have their recorder's own bound.)
pub const POD_REQUESTS: usize = 128;

/// The first wait before a status the API server did not take is sent again, doubled
/// each time up to the status manager's sync period (`syncPeriod`, 10 s, at which the
/// kubelet tries again; sooner at first, so a blip costs a pod's readiness little).
pub const STATUS_RETRY: Duration = Duration::from_secs(1);
const STATUS_SYNC: Duration = Duration::from_secs(10);

/// Whether the API server failed a request for a passing reason, so that it is worth
/// sending again: a 5xx, a 429, a 408, or no answer at all (an API server restarting or
/// out of connections). Other 4xx say what is wrong with the request itself.
fn passing(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => !(400..500).contains(&status.code) || [408, 429].contains(&status.code),
        _ => true,
    }
}

/// Confirms a terminated pod's deletion (grace period 0, on the condition that it is
/// still this pod, by uid), as the kubelet's status manager does once the containers are
/// stopped; sent again after a passing failure, after 1 s doubling to the status sync's
/// 10 s, as the status manager tries again at each sync until the pod is gone. It ends
/// when the pod is deleted, gone (404), or made anew under the same name (another uid);
/// any other refusal ends it too, as one said again would be refused again.
pub(super) async fn confirm_deletion(clock: &Clock, pods: &Api<Pod>, pod: &Value) {
    let params = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(text(pod, "/metadata/uid").to_string()),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    let name = text(pod, "/metadata/name");
    let mut retry = STATUS_RETRY;
    loop {
        match pods.delete(name, &params).await {
            Err(error) if passing(&error) => {}
            // A conflict is the uid precondition failing (another pod now) or writers
            // colliding on this one: only the first ends it.
            Err(kube::Error::Api(status)) if status.code == 409 => match pods.get_opt(name).await {
                Ok(Some(now)) if now.metadata.uid.as_deref() == Some(text(pod, "/metadata/uid")) => {}
                Ok(_) => return,
                Err(_) => {}
            },
            _ => return,
        }
        clock.sleep(retry).await;
        retry = (retry * 2).min(STATUS_SYNC);
    }
}

/// The status a pod's task sent last, shared with the agent.
pub type Reported = std::sync::Arc<std::sync::Mutex<Option<Value>>>;

#[derive(Clone)]
pub(super) enum State {
    Waiting(&'static str, String),
    Running(String),
    Terminated { code: i32, reason: &'static str, started: String, finished: String },
}

#[derive(Clone)]
pub(super) struct Container {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) state: State,
    pub(super) last: Option<State>,
    pub(super) ready: bool,
    pub(super) restarts: u32,
}

impl Container {
    fn json(&self, uid: &str) -> Value {
        let state = |state: &State| match state {
            State::Waiting(reason, message) if message.is_empty() => json!({"waiting": {"reason": reason}}),
            State::Waiting(reason, message) => json!({"waiting": {"reason": reason, "message": message}}),
            State::Running(started) => json!({"running": {"startedAt": started}}),
            State::Terminated { code, reason, started, finished } => json!({"terminated": {
                "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished,
                "containerID": format!("kubeyard://{uid}-{}", self.name),
            }}),
        };
        let mut status = json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("kubeyard://image/{}", self.image),
            "ready": self.ready,
            "started": matches!(self.state, State::Running(_)),
            "restartCount": self.restarts,
            "state": state(&self.state),
            "lastState": self.last.as_ref().map(state).unwrap_or_else(|| json!({})),
        });
        if !matches!(self.state, State::Waiting(..)) || self.restarts > 0 {
            status["containerID"] = json!(format!("kubeyard://{uid}-{}-{}", self.name, self.restarts));
        }
        status
    }
}

pub(super) struct Status {
    pub(super) phase: &'static str,
    pub(super) start_time: String,
    pub(super) initialized: bool,
    pub(super) init: Vec<Container>,
    pub(super) containers: Vec<Container>,
    /// When each condition last changed, so an unchanged one keeps its time.
    pub(super) transitions: Map<String, Value>,
    pub(super) completed: bool,
}

impl Status {
    /// The phase of a pod past its init containers and not finished, as the kubelet's
    /// `getPhase` tells it: Pending while a container has never started (its image still
    /// pulling, say), Running once each has.
    pub(super) fn phase_after_init(&self) -> &'static str {
        let never_started = self
            .containers
            .iter()
            .any(|c| matches!(c.state, State::Waiting(..)) && c.last.is_none() && c.restarts == 0);
        if never_started { "Pending" } else { "Running" }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn containers(pod: &Value, field: &str) -> Vec<Container> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| Container {
            name: text(c, "/name").to_string(),
            image: text(c, "/image").to_string(),
            state: State::Waiting(
                if field == "initContainers" { "PodInitializing" } else { "ContainerCreating" },
                String::new(),
            ),
            last: None,
            ready: false,
            restarts: 0,
        })
        .collect()
}

impl Context {
    pub(super) fn restart_policy(&self) -> &str {
        match text(&self.pod, "/spec/restartPolicy") {
            "" => "Always",
            policy => policy,
        }
    }

    /// The longest `initialDelaySeconds` of the containers' readiness probes.
    fn probe_delay(&self) -> Duration {
        let seconds = self
            .pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/readinessProbe/initialDelaySeconds").and_then(Value::as_u64))
            .max()
            .unwrap_or(0);
        Duration::from_secs(seconds)
    }

    /// Records the status to report; false once the pod is known to be gone.
    pub(super) async fn write(&mut self, status: &mut Status) -> bool {
        let now = self.clock.timestamp();
        let uid = text(&self.pod, "/metadata/uid");
        let ready = status.containers.iter().all(|c| c.ready) && !status.containers.is_empty();
        let not_ready: Vec<&str> = status.containers.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
        let unready_message = format!("containers with unready status: [{}]", not_ready.join(" "));
        let reason = if status.completed { "PodCompleted" } else { "ContainersNotReady" };
        let mut condition = |kind: &str, on: bool, reason: &str, message: &str| {
            let value = if on { "True" } else { "False" };
            let key = format!("{kind}={value}");
            let since = status.transitions.get(kind).and_then(|v| v.get(&key)).cloned();
            let since = since.unwrap_or_else(|| json!(now));
            status.transitions.insert(kind.into(), json!({key: since.clone()}));
            let mut condition =
                json!({"type": kind, "status": value, "lastTransitionTime": since, "lastProbeTime": null});
            if !on && !reason.is_empty() {
                condition["reason"] = json!(reason);
                condition["message"] = json!(message);
            }
            condition
        };
        let init_pending: Vec<&str> = status
            .init
            .iter()
            .filter(|c| !matches!(c.state, State::Terminated { .. }))
            .map(|c| c.name.as_str())
            .collect();
        let conditions = vec![
            condition("PodReadyToStartContainers", true, "", ""),
            condition(
                "Initialized",
                status.initialized,
                "ContainersNotInitialized",
                &format!("containers with incomplete status: [{}]", init_pending.join(" ")),
            ),
            condition("Ready", ready, reason, &unready_message),
            condition("ContainersReady", ready, reason, &unready_message),
            condition("PodScheduled", true, "", ""),
        ];
        let mut body = json!({
            "phase": status.phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": status.start_time,
            "conditions": conditions,
            "containerStatuses": status.containers.iter().map(|c| c.json(uid)).collect::<Vec<_>>(),
        });
        if !status.init.is_empty() {
            body["initContainerStatuses"] = json!(status.init.iter().map(|c| c.json(uid)).collect::<Vec<_>>());
        }
        self.pending = Some(body);
        !self.gone
    }

    /// Sends the status recorded last, if any, once. A status the API server did not
    /// take for a passing reason (a 5xx, a 429, a timeout, no connection: an API server
    /// restarting or out of connections) stays to send again, unless a newer one
    /// replaces it first; one it refused for what it says (another 4xx) is dropped, and
    /// a 404 means the pod is gone. The kubelet's status manager likewise keeps a status
    /// until the API server has it (it tries again at its next sync).
    pub(super) async fn flush(&mut self) -> bool {
        if let Some(body) = self.pending.take() {
            if let Ok(mut reported) = self.reported.lock() {
                *reported = Some(body.clone());
            }
            let name = text(&self.pod, "/metadata/name");
            // The pod's uid rides along as a precondition, as the kubelet's status manager
            // sends it: a status sent again must not land on a pod made anew under the
            // same name (the API server refuses a changed uid with a 422).
            let uid = text(&self.pod, "/metadata/uid");
            let patch = Patch::Merge(json!({"metadata": {"uid": uid}, "status": body}));
            let sent = {
                let _permit = self.requests.acquire().await;
                self.pods.patch_status(name, &PatchParams::default(), &patch).await
            };
            match sent {
                Ok(_) => self.retry = STATUS_RETRY,
                // A pod deleted meanwhile has nothing more to report.
                Err(kube::Error::Api(status)) if status.code == 404 => self.gone = true,
                // Nor one whose name is now another pod's (the uid the patch carries).
                Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains("metadata.uid") => {
                    self.gone = true
                }
                Err(error) if passing(&error) => {
                    if let Patch::Merge(patch) = patch {
                        self.pending = patch.get("status").cloned();
                    }
                }
                Err(_) => {}
            }
        }
        !self.gone
    }

    /// Sends again, after a back-off on the cluster's clock, a status the API server did
    /// not take, for at most `within` (all the time it takes when `None`).
    async fn resend(&mut self, within: Option<Duration>) {
        let until = within.map(|within| self.clock.now() + within);
        while self.pending.is_some() && !self.gone {
            let left = until.map(|until| until.duration_since(self.clock.now()).unwrap_or_default());
            if left.is_some_and(|left| left.is_zero()) {
                return;
            }
            let wait = left.map_or(self.retry, |left| left.min(self.retry));
            self.clock.sleep(wait).await;
            self.retry = (self.retry * 2).min(STATUS_SYNC);
            self.flush().await;
        }
    }

    /// Sends the status recorded last until the API server has it (or the pod is gone):
    /// a pod's last word.
    async fn settle(&mut self) {
        self.flush().await;
        self.resend(None).await;
    }

    /// Time passes: what changed before it is reported first (and sent again meanwhile,
    /// should the API server not take it).
    async fn pause(&mut self, duration: Duration) {
        if duration.is_zero() {
            return self.clock.sleep(duration).await;
        }
        let until = self.clock.now() + duration;
        self.flush().await;
        self.resend(Some(duration)).await;
        self.clock.sleep(until.duration_since(self.clock.now()).unwrap_or_default()).await;
    }

    pub(super) async fn event(&mut self, reason: &str, message: &str, warning: bool) {
        self.flush().await;
        self.say(reason, message, warning, None).await;
    }

    /// An event, about one container when `field_path` names it (`spec.containers{web}`).
    async fn say(&self, reason: &str, message: &str, warning: bool, field_path: Option<String>) {
        let kind = if warning { events::Type::Warning } else { events::Type::Normal };
        let source = events::Source { component: "kubelet", host: Some(&self.node) };
        let object = events::reference(&self.pod, field_path);
        events::record(&self.client, &object, source, kind, reason, message, &self.clock.timestamp()).await;
    }

    /// What the kubelet says as it starts a container whose image is on the node (the
    /// simulated runtime has every image): `Pulled`, `Created`, `Started`.
    async fn started(&self, field: &str, name: &str, image: &str) {
        let path = || Some(format!("spec.{field}{{{name}}}"));
        self.say("Pulled", &format!("Container image \"{image}\" already present on machine"), false, path()).await;
        self.say("Created", &format!("Created container {name}"), false, path()).await;
        self.say("Started", &format!("Started container {name}"), false, path()).await;
    }

    /// Picks up where the pod's status left off: containers already running stay so.
    fn resume(&self) -> Option<Status> {
        let status = self.pod.get("status")?;
        if text(status, "/phase") != "Running" {
            return None;
        }
        let started = |c: &Container| {
            status
                .pointer("/containerStatuses")
                .and_then(Value::as_array)?
                .iter()
                .find(|s| text(s, "/name") == c.name)
                .cloned()
        };
        let mut running = Vec::new();
        for mut container in containers(&self.pod, "containers") {
            let seen = started(&container)?;
            let since = seen.pointer("/state/running/startedAt").and_then(Value::as_str)?;
            container.state = State::Running(since.to_string());
            container.restarts = seen.pointer("/restartCount").and_then(Value::as_u64).unwrap_or(0) as u32;
            container.ready = seen.pointer("/ready").and_then(Value::as_bool).unwrap_or(false);
            running.push(container);
        }
        let mut init = containers(&self.pod, "initContainers");
        let now = self.clock.timestamp();
        for container in &mut init {
            container.state =
                State::Terminated { code: 0, reason: "Completed", started: now.clone(), finished: now.clone() };
        }
        Some(Status {
            phase: "Running",
            start_time: text(status, "/startTime").to_string(),
            initialized: true,
            init,
            containers: running,
            transitions: Map::new(),
            completed: false,
        })
    }
}

/// Runs the pod until it is finished or for ever; aborted from outside.
pub async fn run(mut context: Context) {
    let (status, resumed) = match context.resume() {
        Some(status) => (status, true),
        None => (
            Status {
                phase: "Pending",
                start_time: context.clock.timestamp(),
                initialized: context
                    .pod
                    .pointer("/spec/initContainers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty),
                init: containers(&context.pod, "initContainers"),
                containers: containers(&context.pod, "containers"),
                transitions: Map::new(),
                completed: false,
            },
            false,
        ),
    };
    let mut status = status;
    // A kubelet back from a stop reports what it has at once, as its status manager does
    // on start: what others changed while it was silent (the node controller's
    // Ready=False on its pods) is set right.
    if resumed && !context.write(&mut status).await {
        return;
    }
    if !resumed && !start(&mut context, &mut status).await {
        context.settle().await;
        return;
    }
    live(&mut context, &mut status, resumed).await;
    context.settle().await;
}

/// From scheduled to running: sandbox, image pull, init containers, containers started.
/// False when the pod never gets there (its image cannot be pulled, or it is gone).
async fn start(context: &mut Context, status: &mut Status) -> bool {
    if !context.write(status).await {
        return false;
    }
    let delay = simulate::draw(context.delays.create, &mut context.rng);
    context.pause(delay).await;
    if context.simulation.image_pull_error {
        for container in &mut status.containers {
            let message = format!("failed to pull image \"{}\": simulated by kubeyard.dev/simulate", container.image);
            container.state = State::Waiting("ErrImagePull", message);
        }
        context.write(status).await;
        let image = status.containers.first().map(|c| c.image.clone()).unwrap_or_default();
        context.event("Failed", &format!("Failed to pull image \"{image}\": simulated image pull error"), true).await;
        context.pause(Duration::from_secs(1)).await;
        for container in &mut status.containers {
            let message = format!("Back-off pulling image \"{}\"", container.image);
            container.state = State::Waiting("ImagePullBackOff", message);
        }
        context.write(status).await;
        return false;
    }
    for index in 0..status.init.len() {
        let started = context.clock.timestamp();
        status.init[index].state = State::Running(started.clone());
        context.write(status).await;
        let (name, image) = (status.init[index].name.clone(), status.init[index].image.clone());
        context.started("initContainers", &name, &image).await;
        let delay = simulate::draw(context.delays.create, &mut context.rng);
        context.pause(delay).await;
        let finished = context.clock.timestamp();
        status.init[index].state = State::Terminated { code: 0, reason: "Completed", started, finished };
    }
    status.initialized = true;
    let now = context.clock.timestamp();
    for container in &mut status.containers {
        container.state = State::Running(now.clone());
    }
    status.phase = "Running";
    let written = context.write(status).await;
    if written {
        for container in &status.containers {
            context.started("containers", &container.name, &container.image).await;
        }
    }
    written
}

enum Moment {
    Ready,
    Unready,
    Exit(i32, &'static str),
}

/// Running: readiness comes and goes as simulated, containers exit and restart with
/// back-off, or the pod finishes.
async fn live(context: &mut Context, status: &mut Status, resumed: bool) {
    let policy = context.restart_policy().to_string();
    let mut first = !resumed;
    loop {
        let simulation = context.simulation.clone();
        let mut moments: Vec<(Duration, Moment)> = Vec::new();
        if simulation.never_ready {
            moments.push((Duration::ZERO, Moment::Unready));
        } else {
            let delay = if first {
                simulate::draw(context.delays.ready, &mut context.rng) + context.probe_delay()
            } else {
                context.probe_delay()
            };
            moments.push((delay, Moment::Ready));
        }
        if let Some(after) = simulation.unready_after {
            moments.push((after, Moment::Unready));
        }
        let exit = match (simulation.crash_after, simulation.liveness_fail_after, policy.as_str()) {
            (Some(after), _, _) => Some((after, Moment::Exit(1, "Error"))),
            (None, Some(after), _) => Some((after, Moment::Exit(137, "Error"))),
            (None, None, "Always") => None,
            (None, None, _) => {
                let after = simulation.complete_after.unwrap_or(simulate::DEFAULT_RUN);
                let code = simulation.exit_code.unwrap_or(0);
                Some((after, Moment::Exit(code, if code == 0 { "Completed" } else { "Error" })))
            }
        };
        moments.extend(exit);
        moments.sort_by_key(|(at, _)| *at);
        first = false;

        let mut elapsed = Duration::ZERO;
        let mut exited = None;
        for (at, moment) in moments {
            context.pause(at.saturating_sub(elapsed)).await;
            elapsed = elapsed.max(at);
            match moment {
                Moment::Ready | Moment::Unready => {
                    let ready = matches!(moment, Moment::Ready);
                    if status.containers.iter().any(|c| c.ready != ready) {
                        status.containers.iter_mut().for_each(|c| c.ready = ready);
                        if !context.write(status).await {
                            return;
                        }
                        if !ready {
                            context
                                .event("Unhealthy", "Readiness probe failed: simulated by kubeyard.dev/simulate", true)
                                .await;
                        }
                    }
                }
                Moment::Exit(code, reason) => {
                    exited = Some((code, reason));
                    break;
                }
            }
        }
        let Some((code, reason)) = exited else { return };
        let finished = context.clock.timestamp();
        for container in &mut status.containers {
            let started = match &container.state {
                State::Running(since) => since.clone(),
                _ => finished.clone(),
            };
            container.state = State::Terminated { code, reason, started, finished: finished.clone() };
            container.ready = false;
        }
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !restart {
            status.phase = if code == 0 { "Succeeded" } else { "Failed" };
            status.completed = true;
            context.write(status).await;
            return;
        }
        if code == 137 {
            context.event("Killing", "Container failed liveness probe, will be restarted", false).await;
        }
        let restarts = status.containers.first().map(|c| c.restarts + 1).unwrap_or(1);
        let wait = simulate::back_off(restarts);
        for container in &mut status.containers {
            container.last = Some(container.state.clone());
            container.restarts = restarts;
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}",
                kubeyard_compiler::duration::Duration(wait.as_nanos() as i64),
                container.name,
                text(&context.pod, "/metadata/name"),
                text(&context.pod, "/metadata/namespace"),
            );
            container.state = State::Waiting("CrashLoopBackOff", message);
        }
        if !context.write(status).await {
            return;
        }
        context.event("BackOff", "Back-off restarting failed container", true).await;
        context.pause(wait).await;
        let now = context.clock.timestamp();
        for container in &mut status.containers {
            container.state = State::Running(now.clone());
        }
        if !context.write(status).await {
            return;
        }
    }
}
