//! The test format: a `kubeyard.dev/v1alpha1 Test` document (its JSON Schema is
//! `schemas/kubeyard.dev/v1alpha1/test.json`, and the compiler validates it like any
//! manifest, so a mistake is reported with its file, line and field), read into the steps
//! the runner carries out.

use super::cluster::NodeFault;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestSpec {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub timeout: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default)]
    pub nodes: Vec<NodeGroup>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// How long a node may go silent before it is NotReady (`50s`, Kubernetes 1.32's
    /// default); the kubelets renew their leases at a quarter of it, at most every 10 s.
    #[serde(default)]
    pub node_monitor_grace_period: Option<String>,
    /// How long pods stay on a node that is not ready or unreachable before they are
    /// evicted, unless they say (`300`, the DefaultTolerationSeconds plugin's default).
    #[serde(default)]
    pub default_toleration_seconds: Option<u64>,
    /// On a container cluster, pods whose images the engine does not have are simulated
    /// instead of failing to pull.
    #[serde(default)]
    pub simulate_absent_images: bool,
    /// On a container cluster: etcd's members (1 by default).
    #[serde(default)]
    pub etcd_members: Option<usize>,
    /// On a container cluster: API servers behind a load balancer (1 by default).
    #[serde(default)]
    pub api_servers: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroup {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub capacity: BTreeMap<String, Value>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Apply {
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub objects: Vec<Value>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub values: Option<Value>,
}

/// `helm`: a chart installed as `helm install` would.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmStep {
    pub chart: String,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
}

/// One object named by kind and name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchStep {
    #[serde(flatten)]
    pub target: Target,
    #[serde(default, rename = "type")]
    pub patch_type: Option<String>,
    pub patch: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteStep {
    #[serde(flatten)]
    pub target: Target,
    #[serde(default)]
    pub propagation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleStep {
    #[serde(flatten)]
    pub target: Target,
    pub replicas: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrashPod {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(default)]
    pub stop_node: Option<String>,
    #[serde(default)]
    pub start_node: Option<String>,
    #[serde(default)]
    pub cordon: Option<String>,
    #[serde(default)]
    pub uncordon: Option<String>,
    #[serde(default)]
    pub crash_pod: Option<CrashPod>,
    #[serde(default)]
    pub restart_api_server: bool,
    #[serde(default)]
    pub add_node: Option<NodeGroup>,
    /// SIGKILL to the node (in-process: its agent stops, as with stopNode).
    #[serde(default)]
    pub kill_node: Option<String>,
    /// The node freezes (`docker pause`; in-process: its agent stops).
    #[serde(default)]
    pub pause_node: Option<String>,
    #[serde(default)]
    pub unpause_node: Option<String>,
    /// The node is cut off the cluster network (in-process: its agent falls silent).
    #[serde(default)]
    pub disconnect_node: Option<String>,
    #[serde(default)]
    pub reconnect_node: Option<String>,
    /// etcd restarts (container clusters only: in-process there is no etcd).
    #[serde(default)]
    pub restart_etcd: bool,
    /// SIGKILL to one etcd member (container clusters only).
    #[serde(default)]
    pub kill_etcd_member: Option<EtcdMember>,
    /// A killed etcd member starts again (container clusters only).
    #[serde(default)]
    pub start_etcd_member: Option<EtcdMember>,
}

/// Which etcd member a step means: by its index (0 is the first), `leader` (the one that
/// leads when the step runs) or `killed` (those the test killed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum EtcdMember {
    Index(usize),
    Named(String),
}

impl std::fmt::Display for EtcdMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdMember::Index(index) => write!(f, "{index}"),
            EtcdMember::Named(name) => f.write_str(name),
        }
    }
}

impl Fault {
    /// The node faults the step names, each with its node.
    pub fn node_faults(&self) -> impl Iterator<Item = (NodeFault, &str)> {
        [
            (NodeFault::Kill, &self.kill_node),
            (NodeFault::Pause, &self.pause_node),
            (NodeFault::Unpause, &self.unpause_node),
            (NodeFault::Disconnect, &self.disconnect_node),
            (NodeFault::Reconnect, &self.reconnect_node),
        ]
        .into_iter()
        .filter_map(|(fault, node)| Some((fault, node.as_deref()?)))
    }
}

/// A command run in a pod's container, through `pods/exec` as kubectl runs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecStep {
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    pub command: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
}

/// A program run on this machine with the test's kubeconfig (chainsaw's `script`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandStep {
    /// The program and its arguments, no shell.
    #[serde(default)]
    pub run: Vec<String>,
    /// A shell script, run with `sh -c`.
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// From the test's folder.
    #[serde(default)]
    pub working_dir: Option<String>,
}

impl CommandStep {
    /// The argv to start.
    pub fn argv(&self) -> Vec<String> {
        match &self.script {
            Some(script) => vec!["sh".into(), "-c".into(), script.clone()],
            None => self.run.clone(),
        }
    }
}

/// A request to a Service or a pod from inside the cluster, through the API server's proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpStep {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// A port number or name.
    #[serde(default)]
    pub port: Option<Value>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// What the answer of an exec or http step must be.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expect {
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stdout_contains: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
    #[serde(default)]
    pub stderr_contains: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_contains: Option<String>,
}

impl Expect {
    /// The fields only an http step's answer has, and those only an exec's has, that are set.
    fn set_fields(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let http = [
            ("status", self.status.is_some()),
            ("body", self.body.is_some()),
            ("bodyContains", self.body_contains.is_some()),
        ];
        let exec = [
            ("exitCode", self.exit_code.is_some()),
            ("stdout", self.stdout.is_some()),
            ("stdoutContains", self.stdout_contains.is_some()),
            ("stderr", self.stderr.is_some()),
            ("stderrContains", self.stderr_contains.is_some()),
        ];
        let set =
            |fields: &[(&'static str, bool)]| fields.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
        (set(&http), set(&exec))
    }
}

/// A step as written: a name, one operation, and the assertion modifiers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub apply: Option<Apply>,
    #[serde(default)]
    pub helm: Option<HelmStep>,
    #[serde(default)]
    pub patch: Option<PatchStep>,
    #[serde(default)]
    pub delete: Option<DeleteStep>,
    #[serde(default)]
    pub scale: Option<ScaleStep>,
    #[serde(default)]
    pub wait: Option<String>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub exec: Option<ExecStep>,
    #[serde(default)]
    pub http: Option<HttpStep>,
    #[serde(default)]
    pub command: Option<CommandStep>,
    #[serde(default)]
    pub expect: Option<Expect>,
    #[serde(default)]
    pub assert: Option<Value>,
    #[serde(default)]
    pub consistently: Option<Value>,
    #[serde(default)]
    pub absent: Option<Value>,
    #[serde(default)]
    pub count: Option<Value>,
    #[serde(default)]
    pub converged: Option<Value>,
    #[serde(default)]
    pub that: Vec<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub ordered: bool,
    #[serde(default)]
    pub within: Option<String>,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub exactly: Option<usize>,
    #[serde(default)]
    pub at_least: Option<usize>,
    #[serde(default)]
    pub at_most: Option<usize>,
}

/// What a step does, once read.
#[derive(Debug, Clone)]
pub enum Action {
    Apply(Apply),
    Helm(HelmStep),
    Patch(PatchStep),
    Delete(DeleteStep),
    Scale(ScaleStep),
    Wait(Duration),
    Fault(Box<Fault>),
    Exec(Box<ExecStep>, Expect),
    Command(Box<CommandStep>, Expect),
    Http(Box<HttpStep>, Expect),
    Assert(Value),
    Consistently(Value, Duration),
    Absent(Value),
    Count(Value, Bounds),
    Converged,
}

/// How many objects a `count` step allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub exactly: Option<usize>,
    pub at_least: Option<usize>,
    pub at_most: Option<usize>,
}

impl Bounds {
    pub fn allow(&self, n: usize) -> bool {
        self.exactly.is_none_or(|e| n == e)
            && self.at_least.is_none_or(|l| n >= l)
            && self.at_most.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.exactly {
            parts.push(format!("exactly {n}"));
        }
        if let Some(n) = self.at_least {
            parts.push(format!("at least {n}"));
        }
        if let Some(n) = self.at_most {
            parts.push(format!("at most {n}"));
        }
        f.write_str(&parts.join(" and "))
    }
}

pub fn duration(text: &str) -> Result<Duration, String> {
    let parsed: kubeyard_compiler::duration::Duration = text.parse().map_err(|e| {
        // A bare number is the usual slip: say the fix (the parser's words name the text).
        if text.trim().parse::<f64>().is_ok() {
            format!("\"{text}\" has no unit: write {}s (or ms, m, h)", text.trim())
        } else {
            format!("{e}")
        }
    })?;
    if parsed.0 < 0 {
        return Err(format!("\"{text}\" is negative"));
    }
    Ok(parsed.as_std())
}

impl Step {
    /// The one operation of the step; more or fewer than one is a mistake.
    pub fn action(&self) -> Result<Action, String> {
        let mut actions = Vec::new();
        let within_or_for = |field: &Option<String>| field.as_deref().map(duration).transpose();
        if let Some(apply) = &self.apply {
            actions.push(("apply", Action::Apply(apply.clone())));
        }
        if let Some(helm) = &self.helm {
            actions.push(("helm", Action::Helm(helm.clone())));
        }
        if let Some(patch) = &self.patch {
            actions.push(("patch", Action::Patch(patch.clone())));
        }
        if let Some(delete) = &self.delete {
            actions.push(("delete", Action::Delete(delete.clone())));
        }
        if let Some(scale) = &self.scale {
            actions.push(("scale", Action::Scale(scale.clone())));
        }
        if let Some(wait) = &self.wait {
            actions.push(("wait", Action::Wait(duration(wait)?)));
        }
        if let Some(fault) = &self.fault {
            actions.push(("fault", Action::Fault(Box::new(fault.clone()))));
        }
        let expect = self.expect.clone().unwrap_or_default();
        let (http_only, exec_only) = expect.set_fields();
        if let Some(exec) = &self.exec {
            match (&exec.pod, &exec.selector) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => return Err("an exec step names its pod with exactly one of pod and selector".into()),
            }
            if exec.command.is_empty() {
                return Err("an exec step needs a command, as in `command: [cat, /etc/hostname]`".into());
            }
            if let Some(field) = http_only.first() {
                return Err(format!(
                    "expect.{field} is for http steps: an exec step's answer has exitCode, stdout and stderr"
                ));
            }
            actions.push(("exec", Action::Exec(Box::new(exec.clone()), expect.clone())));
        }
        if let Some(http) = &self.http {
            if http.service.is_some() == http.pod.is_some() {
                return Err("an http step requests exactly one of service and pod".into());
            }
            if let Some(field) = exec_only.first() {
                return Err(format!("expect.{field} is for exec steps: an http step's answer has status and body"));
            }
            if http.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                return Err("an http step's path starts with /".into());
            }
            actions.push(("http", Action::Http(Box::new(http.clone()), expect.clone())));
        }
        if let Some(command) = &self.command {
            if command.run.is_empty() == command.script.is_none() {
                return Err("a command step gives exactly one of run (a program and its arguments) and script".into());
            }
            if let Some(field) = http_only.first() {
                return Err(format!(
                    "expect.{field} is for http steps: a command's answer has exitCode, stdout and stderr"
                ));
            }
            actions.push(("command", Action::Command(Box::new(command.clone()), expect.clone())));
        }
        if self.expect.is_some() && self.exec.is_none() && self.http.is_none() && self.command.is_none() {
            return Err("expect belongs to an exec, command or http step".into());
        }
        if let Some(object) = &self.assert {
            actions.push(("assert", Action::Assert(object.clone())));
        }
        if let Some(object) = &self.consistently {
            let for_ = within_or_for(&self.for_)?.ok_or("a consistently step needs `for`, as in `for: 10s`")?;
            actions.push(("consistently", Action::Consistently(object.clone(), for_)));
        }
        if let Some(object) = &self.absent {
            actions.push(("absent", Action::Absent(object.clone())));
        }
        if let Some(object) = &self.count {
            let bounds = Bounds { exactly: self.exactly, at_least: self.at_least, at_most: self.at_most };
            if bounds == Bounds::default() {
                return Err("a count step needs exactly, atLeast or atMost".into());
            }
            actions.push(("count", Action::Count(object.clone(), bounds)));
        }
        if self.converged.is_some() {
            actions.push(("converged", Action::Converged));
        }
        within_or_for(&self.within)?;
        match actions.len() {
            1 => Ok(actions.remove(0).1),
            0 => Err("the step does nothing: give it one of apply, patch, delete, scale, wait, fault, exec, http, \
                      assert, consistently, absent, count or converged"
                .into()),
            _ => {
                let names: Vec<&str> = actions.iter().map(|(name, _)| *name).collect();
                Err(format!("the step does {}: one operation a step (split it into steps)", names.join(" and ")))
            }
        }
    }

    /// What the step is called in reports.
    pub fn title(&self, index: usize) -> String {
        match (&self.name, self.action()) {
            (Some(name), _) => name.clone(),
            (None, Ok(action)) => format!("{} {}", index + 1, describe(&action)),
            (None, Err(_)) => format!("step {}", index + 1),
        }
    }
}

fn object_name(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("object");
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind}/{name}"),
        None => kind.to_string(),
    }
}

/// A few words on what an action does.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Apply(apply) if !apply.files.is_empty() => format!("apply {}", apply.files.join(", ")),
        Action::Apply(apply) => format!("apply {} object(s)", apply.objects.len()),
        Action::Helm(helm) => {
            format!("helm install {} {}", helm.release.as_deref().unwrap_or("release-name"), helm.chart)
        }
        Action::Patch(p) => format!("patch {}/{}", p.target.kind, p.target.name.as_deref().unwrap_or_default()),
        Action::Delete(d) => match &d.target.name {
            Some(name) => format!("delete {}/{name}", d.target.kind),
            None => format!("delete {}s", d.target.kind),
        },
        Action::Scale(s) => {
            format!("scale {}/{} to {}", s.target.kind, s.target.name.as_deref().unwrap_or_default(), s.replicas)
        }
        Action::Wait(d) => format!("wait {}", kubeyard_compiler::duration::Duration(d.as_nanos() as i64)),
        Action::Fault(f) => {
            let what = [
                f.stop_node.as_ref().map(|n| format!("stop node {n}")),
                f.start_node.as_ref().map(|n| format!("start node {n}")),
                f.cordon.as_ref().map(|n| format!("cordon {n}")),
                f.uncordon.as_ref().map(|n| format!("uncordon {n}")),
                f.crash_pod
                    .as_ref()
                    .map(|p| format!("crash pod {}", p.name.as_deref().or(p.selector.as_deref()).unwrap_or(""))),
                f.restart_api_server.then(|| "restart the API server".to_string()),
                f.add_node.as_ref().map(|n| format!("add node {}", n.name.as_deref().unwrap_or("node"))),
            ];
            let nodes = f.node_faults().map(|(fault, node)| format!("{} node {node}", fault.verb()));
            let etcd = [
                f.restart_etcd.then(|| "restart etcd".to_string()),
                f.kill_etcd_member.as_ref().map(|m| format!("kill etcd member {m}")),
                f.start_etcd_member.as_ref().map(|m| format!("start etcd member {m}")),
            ]
            .into_iter()
            .flatten();
            what.into_iter().flatten().chain(nodes).chain(etcd).collect::<Vec<_>>().join(", ")
        }
        Action::Exec(exec, _) => {
            let pod =
                exec.pod.clone().or_else(|| exec.selector.as_ref().map(|s| format!("-l {s}"))).unwrap_or_default();
            format!("exec {pod} -- {}", exec.command.join(" "))
        }
        Action::Command(command, _) => {
            let shown = match &command.script {
                Some(script) => script.lines().next().unwrap_or_default().to_string(),
                None => command.run.join(" "),
            };
            format!("command {shown}")
        }
        Action::Http(http, _) => {
            let target = match (&http.service, &http.pod) {
                (Some(service), _) => format!("service/{service}"),
                (None, pod) => format!("pod/{}", pod.as_deref().unwrap_or_default()),
            };
            format!("http {} {target}{}", http.method.as_deref().unwrap_or("GET"), http.path.as_deref().unwrap_or("/"))
        }
        Action::Assert(object) => format!("assert {}", object_name(object)),
        Action::Consistently(object, _) => format!("consistently {}", object_name(object)),
        Action::Absent(object) => format!("absent {}", object_name(object)),
        Action::Count(object, bounds) => format!("count {} ({bounds})", object_name(object)),
        Action::Converged => "converged".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(value: Value) -> Step {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_step_does_exactly_one_thing() {
        assert!(matches!(step(json!({"wait": "5s"})).action(), Ok(Action::Wait(d)) if d == Duration::from_secs(5)));
        let both = step(json!({"wait": "5s", "converged": {}})).action().unwrap_err();
        assert!(both.contains("wait and converged"), "{both}");
        assert!(step(json!({"name": "x"})).action().unwrap_err().contains("does nothing"));
        assert!(step(json!({"consistently": {"kind": "Pod"}})).action().unwrap_err().contains("needs `for`"));
        assert!(step(json!({"count": {"kind": "Pod"}})).action().unwrap_err().contains("exactly, atLeast or atMost"));
        assert!(step(json!({"wait": "soon"})).action().unwrap_err().contains("not a duration"));
        let count = step(json!({"count": {"kind": "Pod"}, "atLeast": 2, "atMost": 3}));
        let Ok(Action::Count(_, bounds)) = count.action() else { panic!() };
        assert!(bounds.allow(2) && bounds.allow(3) && !bounds.allow(4) && !bounds.allow(1));
        assert_eq!(bounds.to_string(), "at least 2 and at most 3");
        let exec =
            step(json!({"exec": {"selector": "app=db", "command": ["cat", "/data/key"]}, "expect": {"stdout": "k"}}));
        let Ok(Action::Exec(_, expect)) = exec.action() else { panic!() };
        assert_eq!(expect.stdout.as_deref(), Some("k"));
        assert_eq!(exec.title(0), "1 exec -l app=db -- cat /data/key");
        let both = step(json!({"exec": {"pod": "a", "selector": "b", "command": ["true"]}})).action().unwrap_err();
        assert!(both.contains("exactly one of pod and selector"), "{both}");
        assert!(step(json!({"exec": {"pod": "a", "command": []}})).action().unwrap_err().contains("needs a command"));
        let command = step(json!({"command": {"script": "kubectl get pods"}, "expect": {"exitCode": 0}}));
        let Ok(Action::Command(command, _)) = command.action() else { panic!() };
        assert_eq!(command.argv(), ["sh", "-c", "kubectl get pods"]);
        let both = step(json!({"command": {"run": ["true"], "script": "true"}})).action().unwrap_err();
        assert!(both.contains("exactly one of run"), "{both}");
        assert!(step(json!({"command": {}})).action().unwrap_err().contains("exactly one of run"));
        let wrong = step(json!({"command": {"run": ["true"]}, "expect": {"status": 200}})).action().unwrap_err();
        assert!(wrong.contains("expect.status is for http steps"), "{wrong}");
        let mixed = step(json!({"exec": {"pod": "a", "command": ["true"]}, "expect": {"status": 200}}));
        assert!(mixed.action().unwrap_err().contains("expect.status is for http steps"));
        let http = step(json!({"http": {"service": "web", "path": "/key"}, "expect": {"body": "v"}}));
        assert!(matches!(http.action(), Ok(Action::Http(..))));
        assert_eq!(http.title(1), "2 http GET service/web/key");
        assert!(step(json!({"http": {"service": "a", "pod": "b"}})).action().unwrap_err().contains("exactly one"));
        assert!(step(json!({"http": {"pod": "b", "path": "x"}})).action().unwrap_err().contains("starts with /"));
        let stray = step(json!({"wait": "1s", "expect": {"status": 200}})).action().unwrap_err();
        assert!(stray.contains("expect belongs to an exec, command or http step"), "{stray}");
        assert_eq!(
            step(json!({"assert": {"kind": "Deployment", "metadata": {"name": "web"}}})).title(2),
            "3 assert Deployment/web"
        );
    }
}
