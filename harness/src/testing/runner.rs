//! Finding tests and running them: each test on a fresh cluster (in process, or a
//! namespace of its own on a kubeconfig's cluster), its steps in order until one fails,
//! then the cleanup, which always runs and whose failure fails the test.

use super::cluster::{Cluster, Error};
use super::expect::{Expectation, Failure};
use super::spec::{self, Action, ClusterSpec, Step, TestSpec};
use crate::discover::{Input, discover};
use crate::kubelet::NodeConfig;
use kubeyard_compiler::schema::{CatalogOptions, KUBEYARD_GROUP};
use kubeyard_compiler::yaml::Documents;
use kubeyard_compiler::{FileReport, LintOptions, Linter, SourceFile, Verdict};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A test found on disk: its spec, or why it cannot be read (already rendered).
#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    pub file: PathBuf,
    /// Where the files it applies are looked up.
    pub dir: PathBuf,
    pub spec: Result<TestSpec, String>,
}

/// Where tests run.
#[derive(Debug, Clone)]
pub enum Target {
    InProcess,
    /// A fresh cluster of containers for each test, in real time.
    Containers {
        /// The etcd binary of the etcd image [default: `etcd` on the PATH].
        etcd_binary: Option<PathBuf>,
    },
    /// A kubeconfig's cluster: each test in a namespace of its own, in real time.
    Kubeconfig {
        /// `None`: the kubeconfig kubectl reads (`$KUBECONFIG`, else `~/.kube/config`).
        path: Option<PathBuf>,
        context: Option<String>,
    },
}

/// Every `kubeyard.dev/v1alpha1 Test` in the files and directories named, validated
/// against its schema; and the paths that could not be read.
/// The fields of a test that are durations.
const DURATIONS: [&str; 5] = ["within", "for", "timeout", "wait", "nodeMonitorGracePeriod"];

/// A number where a duration goes: the schema's help (quote it) would only lead to the
/// next refusal; the fix is a unit.
fn unit_help(diagnostic: &mut kubeyard_compiler::Diagnostic) {
    let field = diagnostic.path.as_deref().and_then(|p| p.rsplit('.').next()).unwrap_or_default();
    if diagnostic.code == kubeyard_compiler::Code::WrongType
        && DURATIONS.contains(&field)
        && let Some(number) = diagnostic.message.rsplit(' ').next().filter(|n| n.parse::<f64>().is_ok())
    {
        diagnostic.help = Some(format!("a duration needs a unit: write {number}s (or ms, m, h)"));
    }
}

pub fn find(paths: &[String]) -> (Vec<Test>, Vec<String>) {
    let (inputs, unreadable) = discover(paths);
    let mut problems: Vec<String> = unreadable.into_iter().map(|u| format!("{}: {}", u.path, u.reason)).collect();
    let linter = match Linter::new(LintOptions { catalog: CatalogOptions::default(), ..LintOptions::default() }) {
        Ok(linter) => linter,
        Err(error) => return (Vec::new(), vec![error.to_string()]),
    };
    let mut tests = Vec::new();
    for input in inputs {
        let Input::File(path) = input else { continue };
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!("{}: cannot be read", path.display()));
            continue;
        };
        if !(text.contains(KUBEYARD_GROUP) && text.contains("Test")) {
            continue;
        }
        let Ok(source) = SourceFile::new(path.display().to_string(), text) else { continue };
        let documents: Vec<Option<Value>> =
            Documents::new(&source).map(|d| d.ok().and_then(|d| d.root).map(|r| r.to_json())).collect();
        let report = linter.lint_source(source);
        let render = |object: &kubeyard_compiler::ObjectReport| {
            let mut object = object.clone();
            for diagnostic in &mut object.diagnostics {
                unit_help(diagnostic);
            }
            let only = FileReport { name: report.name.clone(), source: report.source.clone(), objects: vec![object] };
            crate::report::text::render_diagnostics(&only)
        };
        // A test without a readable name is called after its file, or its folder when the
        // file is the conventional `test.yaml`.
        let stem = || {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            match path.parent().and_then(Path::file_name) {
                Some(folder) if stem == "test" => folder.to_string_lossy().into_owned(),
                _ => stem,
            }
        };
        for object in &report.objects {
            let Some(info) = &object.object else {
                // A document that is not even YAML, in a file that names the Test kind: a
                // test that cannot be read, not one that is not there.
                if object.verdict == Verdict::Invalid {
                    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    tests.push(Test { name: stem(), file: path.clone(), dir, spec: Err(render(object)) });
                }
                continue;
            };
            if info.gvk.group != KUBEYARD_GROUP || info.gvk.kind != "Test" {
                continue;
            }
            let value = object.document.and_then(|d| documents.get(d).cloned().flatten()).unwrap_or(Value::Null);
            let name = info.name.clone().unwrap_or_else(stem);
            let spec = if object.verdict == Verdict::Invalid {
                Err(render(object))
            } else {
                serde_json::from_value::<TestSpec>(value.get("spec").cloned().unwrap_or(Value::Null))
                    .map_err(|e| format!("{}: spec: {e}", path.display()))
                    .and_then(|spec| {
                        for (i, step) in spec.steps.iter().enumerate() {
                            step.action().map_err(|e| format!("{}: spec.steps[{i}]: {e}", path.display()))?;
                        }
                        Ok(spec)
                    })
            };
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            tests.push(Test { name, file: path.clone(), dir, spec });
        }
    }
    (tests, problems)
}

/// How one step went.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub title: String,
    pub passed: bool,
    pub elapsed: Duration,
    /// Time that passed in the cluster (on a virtual clock, far more than `elapsed`).
    pub cluster_time: Duration,
    /// What the step printed (an apply's lines).
    pub output: Vec<String>,
    pub failure: Option<Failure>,
    /// With `--verbose`: the events of its time and the logs of the pods its failure names.
    pub detail: Vec<String>,
}

/// How tests are run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep a failed test's cluster for a look (`--keep-on-failure`).
    pub keep_on_failure: bool,
    /// Gather each step's detail (`--verbose`).
    pub verbose: bool,
}

/// A failed test's cluster, kept for a look (`--keep-on-failure`).
#[derive(Clone)]
pub struct Kept {
    /// What to tell the user: where the cluster is and how it goes.
    pub note: String,
    /// A cluster in this process, alive while this is held.
    pub in_process: Option<std::sync::Arc<Cluster>>,
    /// Its stopped clock following real time while it is looked at.
    pub following: Option<std::sync::Arc<crate::clock::FollowRealTime>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("note", &self.note).finish_non_exhaustive()
    }
}

/// How one test went.
#[derive(Debug, Clone, Default)]
pub struct TestResult {
    pub name: String,
    pub file: PathBuf,
    pub steps: Vec<StepResult>,
    /// Why the test could not run at all (an unreadable spec, a cluster that did not boot).
    pub error: Option<String>,
    /// Why cleaning up failed.
    pub cleanup: Option<String>,
    /// Its cluster, kept because it failed and `--keep-on-failure` asked.
    pub kept: Option<Kept>,
    pub elapsed: Duration,
    /// What its control plane's components did through the steps (a cluster of this
    /// process): `--profile` shows it.
    pub profile: Option<String>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.cleanup.is_none() && self.steps.iter().all(|s| s.passed)
    }
}

/// The default time an assertion may take (cluster time).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long cleaning up may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

fn nodes(spec: &ClusterSpec) -> Vec<NodeConfig> {
    if spec.nodes.is_empty() {
        return crate::controlplane::Config::with_nodes(3).nodes;
    }
    let mut nodes = Vec::new();
    for group in &spec.nodes {
        let prefix = group.name.clone().unwrap_or_else(|| "node".into());
        for i in 1..=group.count.unwrap_or(1) {
            let index = u32::try_from(nodes.len()).unwrap_or(0) + 1;
            let mut node = NodeConfig::new(&format!("{prefix}-{i}"), index);
            for (resource, quantity) in &group.capacity {
                let text = quantity.as_str().map_or_else(|| quantity.to_string(), str::to_string);
                node.capacity.insert(resource.clone(), text);
            }
            node.labels.extend(group.labels.clone());
            node.taints.clone_from(&group.taints);
            nodes.push(node);
        }
    }
    nodes
}

/// A node of the test's cluster as a container cluster takes it.
fn container_node(node: NodeConfig) -> crate::containers::NodeSpec {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let taints = node
        .taints
        .iter()
        .map(|t| match text(t, "value").as_str() {
            "" => format!("{}:{}", text(t, "key"), text(t, "effect")),
            value => format!("{}={value}:{}", text(t, "key"), text(t, "effect")),
        })
        .collect();
    crate::containers::NodeSpec { name: node.name, capacity: node.capacity, labels: node.labels, taints }
}

/// A namespace name of the test's own, on a shared cluster.
fn namespace_for(name: &str) -> String {
    let clean: String =
        name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(40).collect();
    format!("kubeyard-{}-{:04x}", clean.trim_matches('-'), fastrand::u16(..))
}

/// What a running test is doing, told as it happens (`kubeyard test`'s progress).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Its cluster is being made.
    Boot,
    /// A step begins: its title and how many steps the test has.
    Step { title: &'a str, of: usize },
    /// A step ended.
    StepDone(&'a StepResult),
    /// Its cluster is being cleaned up or removed.
    Cleanup,
}

/// Runs one test; `progress` hears what it does as it does it.
pub async fn run(
    test: &Test,
    target: &Target,
    options: Options,
    progress: &(dyn Fn(&Test, Event<'_>) + Sync),
) -> TestResult {
    let started = Instant::now();
    let mut result = TestResult {
        name: test.name.clone(),
        file: test.file.clone(),
        steps: Vec::new(),
        error: None,
        cleanup: None,
        kept: None,
        elapsed: Duration::ZERO,
        profile: None,
    };
    let spec = match &test.spec {
        Ok(spec) => spec,
        Err(problems) => {
            result.error = Some(problems.clone());
            return result;
        }
    };
    progress(test, Event::Boot);
    let cluster = match boot(test, spec, target).await {
        Ok(cluster) => cluster,
        Err(error) => {
            result.error = Some(error.to_string());
            result.elapsed = started.elapsed();
            return result;
        }
    };
    let timeout = match spec.timeout.as_deref().map(spec::duration).transpose() {
        Ok(timeout) => timeout.unwrap_or(DEFAULT_TIMEOUT),
        Err(error) => {
            result.error = Some(format!("spec.timeout: {error}"));
            return result;
        }
    };
    for (index, step) in spec.steps.iter().enumerate() {
        let title = step.title(index);
        progress(test, Event::Step { title: &title, of: spec.steps.len() });
        let marks = match options.verbose {
            true => Some(cluster.event_marks().await),
            false => None,
        };
        let step_started = Instant::now();
        let clock_started = cluster.clock().now();
        let outcome = run_step(&cluster, test, step, timeout).await;
        let cluster_time = cluster.clock().now().duration_since(clock_started).unwrap_or_default();
        let (passed, output, failure) = match outcome {
            Ok(output) => (true, output, None),
            Err(Error::Failed(failure)) => (false, Vec::new(), Some(*failure)),
            Err(Error::Unreachable(why)) => {
                let summary = cluster.explain_unreachable(&why).await;
                (false, Vec::new(), Some(Failure { summary, ..Failure::default() }))
            }
            Err(error) => (false, Vec::new(), Some(Failure { summary: error.to_string(), ..Failure::default() })),
        };
        let elapsed = step_started.elapsed();
        let detail = match &marks {
            Some(marks) => cluster.step_detail(marks, failure.as_ref()).await,
            None => Vec::new(),
        };
        let step_result = StepResult { title, passed, elapsed, cluster_time, output, failure, detail };
        progress(test, Event::StepDone(&step_result));
        result.steps.push(step_result);
        if !passed {
            break;
        }
    }
    // Through the steps, before cleanup adds its own work.
    result.profile = cluster.plane().map(|plane| plane.profile().summary());
    if options.keep_on_failure && !result.steps.iter().all(|s| s.passed) {
        result.kept = Some(keep(test, cluster, target));
        result.elapsed = started.elapsed();
        return result;
    }
    progress(test, Event::Cleanup);
    result.cleanup = match cleanup(&cluster, target).await {
        Ok(()) => None,
        Err(Error::Unreachable(why)) => Some(cluster.explain_unreachable(&why).await),
        Err(error) => Some(describe(&error)),
    };
    result.elapsed = started.elapsed();
    result
}

async fn boot(test: &Test, spec: &TestSpec, target: &Target) -> Result<Cluster, Error> {
    let grace = match &spec.cluster.node_monitor_grace_period {
        Some(text) => Some(spec::duration(text).map_err(Error::Manifests)?),
        None => None,
    };
    match target {
        Target::InProcess => {
            // In process there is no etcd and one API server: a test that needs more must
            // not pass without them.
            if spec.cluster.etcd_members.is_some_and(|m| m > 1) {
                return Err(Error::ContainersOnly("cluster.etcdMembers above 1"));
            }
            if spec.cluster.api_servers.is_some_and(|a| a > 1) {
                return Err(Error::ContainersOnly("cluster.apiServers above 1"));
            }
            let mut builder = Cluster::builder().seed(spec.cluster.seed.unwrap_or(0));
            if let Some(grace) = grace {
                builder = builder.node_monitor_grace_period(grace);
            }
            if let Some(seconds) = spec.cluster.default_toleration_seconds {
                builder = builder.default_toleration_seconds(seconds);
            }
            builder = builder.nodes(0);
            for node in nodes(&spec.cluster) {
                builder = builder.node(node);
            }
            if spec.cluster.time.as_deref() == Some("real") {
                builder = builder.real_time();
            }
            builder.build().await
        }
        Target::Containers { etcd_binary } => {
            let mut cluster = crate::containers::ClusterSpec::with_nodes(0);
            cluster.seed = spec.cluster.seed.unwrap_or(0);
            cluster.etcd_binary.clone_from(etcd_binary);
            if let Some(grace) = grace {
                cluster.node_grace = grace;
            }
            if let Some(seconds) = spec.cluster.default_toleration_seconds {
                cluster.default_toleration_seconds = seconds;
            }
            cluster.nodes = nodes(&spec.cluster).into_iter().map(container_node).collect();
            cluster.simulate_absent_images = spec.cluster.simulate_absent_images;
            cluster.etcd_members = spec.cluster.etcd_members.unwrap_or(1);
            cluster.api_servers = spec.cluster.api_servers.unwrap_or(1);
            Cluster::containers(&cluster).await
        }
        Target::Kubeconfig { path, context } => {
            let namespace = namespace_for(&test.name);
            let cluster = Cluster::connect(path.as_deref(), context.as_deref(), &namespace).await?;
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                                "labels": {"app.kubernetes.io/managed-by": "kubeyard-test"}}});
            let namespaces = cluster.api("v1", "Namespace", None).await?;
            let object: kube::api::DynamicObject =
                serde_json::from_value(object).map_err(|e| Error::Api(e.to_string()))?;
            namespaces.create(&kube::api::PostParams::default(), &object).await?;
            Ok(cluster)
        }
    }
}

fn within(step: &Step, default: Duration) -> Duration {
    step.within.as_deref().and_then(|w| spec::duration(w).ok()).unwrap_or(default)
}

fn expectation(object: Value, step: &Step) -> Result<Expectation, Error> {
    refine(Expectation::matching(object), step)
}

/// The step's selector, expressions and list matching added to an expectation.
fn refine(expectation: Expectation, step: &Step) -> Result<Expectation, Error> {
    let mut expectation = expectation.ordered(step.ordered);
    if let Some(selector) = &step.selector {
        expectation = expectation.selector(selector).map_err(Error::Manifests)?;
    }
    for expression in &step.that {
        expectation = expectation.that(expression).map_err(Error::Manifests)?;
    }
    Ok(expectation)
}

async fn run_step(cluster: &Cluster, test: &Test, step: &Step, timeout: Duration) -> Result<Vec<String>, Error> {
    let action = step.action().map_err(Error::Manifests)?;
    let wait = within(step, timeout);
    match action {
        Action::Apply(apply) => {
            let mut paths: Vec<PathBuf> = apply.files.iter().map(|f| test.dir.join(f)).collect();
            let inline = if apply.objects.is_empty() {
                None
            } else {
                let file = InlineObjects::write(&apply.objects)?;
                paths.push(file.path.clone());
                Some(file)
            };
            if paths.is_empty() {
                return Err(Error::Manifests("apply: name files or give objects".into()));
            }
            let lines = cluster.apply_paths(&paths, apply.env.as_deref(), apply.values.as_ref()).await;
            drop(inline);
            lines
        }
        Action::Helm(helm) => {
            let values: Vec<PathBuf> = helm.values.iter().map(|v| test.dir.join(v)).collect();
            cluster.install_chart(&test.dir.join(&helm.chart), helm.release.as_deref(), &values).await
        }
        Action::Patch(patch) => {
            let target = &patch.target;
            let name = target.name.as_deref().unwrap_or_default();
            let kind = patch.patch_type.as_deref().unwrap_or("strategic");
            cluster
                .patch(&target.api_version, &target.kind, target.namespace.as_deref(), name, kind, &patch.patch)
                .await?;
            Ok(vec![format!("{}/{name} patched", target.kind.to_lowercase())])
        }
        Action::Delete(delete) => {
            let target = &delete.target;
            cluster
                .delete(
                    &target.api_version,
                    &target.kind,
                    target.namespace.as_deref(),
                    target.name.as_deref(),
                    target.selector.as_deref(),
                    delete.propagation.as_deref(),
                )
                .await?;
            Ok(Vec::new())
        }
        Action::Scale(scale) => {
            let target = &scale.target;
            let name = target.name.as_deref().unwrap_or_default();
            cluster.scale(&target.api_version, &target.kind, target.namespace.as_deref(), name, scale.replicas).await?;
            Ok(vec![format!("{}/{name} scaled to {}", target.kind.to_lowercase(), scale.replicas)])
        }
        Action::Wait(duration) => {
            cluster.advance(duration).await;
            Ok(Vec::new())
        }
        Action::Fault(fault) => {
            if let Some(node) = &fault.stop_node {
                cluster.stop_node(node).await?;
            }
            if let Some(node) = &fault.start_node {
                cluster.start_node(node).await?;
            }
            if let Some(node) = &fault.cordon {
                cluster.cordon(node, true).await?;
            }
            if let Some(node) = &fault.uncordon {
                cluster.cordon(node, false).await?;
            }
            if let Some(pod) = &fault.crash_pod {
                let crashed =
                    cluster.crash_pods(pod.namespace.as_deref(), pod.name.as_deref(), pod.selector.as_deref()).await?;
                if crashed == 0 {
                    return Err(Error::Api("crashPod: no pod matches".into()));
                }
            }
            if fault.restart_api_server {
                cluster.restart_api_server().await?;
            }
            for (what, node) in fault.node_faults() {
                cluster.node_fault(node, what).await?;
            }
            if fault.restart_etcd {
                cluster.restart_etcd().await?;
            }
            if let Some(member) = &fault.kill_etcd_member {
                cluster.kill_etcd_member(member).await?;
            }
            if let Some(member) = &fault.start_etcd_member {
                cluster.start_etcd_member(member).await?;
            }
            if let Some(group) = &fault.add_node {
                let name = group.name.clone().ok_or_else(|| Error::Manifests("addNode needs a name".into()))?;
                let mut node = NodeConfig::new(&name, 0);
                for (resource, quantity) in &group.capacity {
                    node.capacity.insert(
                        resource.clone(),
                        quantity.as_str().map_or_else(|| quantity.to_string(), str::to_string),
                    );
                }
                node.labels.extend(group.labels.clone());
                node.taints.clone_from(&group.taints);
                cluster.add_node(node).await?;
            }
            Ok(Vec::new())
        }
        Action::Exec(exec, expect) => cluster.exec_step(&exec, &expect, wait).await.map(|answer| answer.lines()),
        Action::Http(http, expect) => cluster.http_step(&http, &expect, wait).await.map(|answer| answer.lines()),
        Action::Command(command, expect) => {
            // Run once unless the step gives `within`; one run may take the test's timeout.
            let within = step.within.as_deref().map(spec::duration).transpose().map_err(Error::Manifests)?;
            cluster
                .command_step(&command, &expect, (within, timeout), (&test.name, &test.dir))
                .await
                .map(|answer| answer.lines())
        }
        Action::Assert(object) => cluster.eventually(&expectation(object, step)?, wait).await.map(|()| Vec::new()),
        Action::Consistently(object, duration) => {
            cluster.consistently(&expectation(object, step)?, duration).await.map(|()| Vec::new())
        }
        Action::Absent(object) => {
            cluster.eventually(&refine(Expectation::absent(object), step)?, wait).await.map(|()| Vec::new())
        }
        Action::Count(object, bounds) => {
            cluster.eventually(&refine(Expectation::count(object, bounds), step)?, wait).await.map(|()| Vec::new())
        }
        Action::Converged => cluster.assert_converged(wait).await.map(|()| Vec::new()),
    }
}

/// Everything the test applied deleted (in reverse order) and gone; on a shared cluster
/// the test's namespace with it.
/// Keeps a failed test's cluster for a look: its kubeconfig written to a file of the
/// user's own, a container cluster left running, a cluster in this process held (the
/// command waits for Ctrl-C), a shared cluster's namespace left in place.
fn keep(test: &Test, mut cluster: Cluster, target: &Target) -> Kept {
    let clean: String = test.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let kubeconfig = cluster.kubeconfig().and_then(|text| {
        let path = std::env::temp_dir().join(format!("kubeyard-{clean}-{}.kubeconfig", std::process::id()));
        crate::apiserver::kubeconfig::write_text(&path, &text).ok()?;
        Some(path)
    });
    let look = match &kubeconfig {
        Some(path) => format!("kubectl --kubeconfig {} get all -A", path.display()),
        None => "kubectl get all -A".into(),
    };
    match target {
        Target::Containers { .. } => {
            let id = cluster.keep_containers().unwrap_or_default();
            Kept {
                note: format!("its cluster {id} is kept: {look}; remove it with: kubeyard down {id}"),
                in_process: None,
                following: None,
            }
        }
        Target::InProcess => {
            // Someone is going to look: its clock runs with real time from now on.
            let follow = cluster.clock().follow_real_time().map(std::sync::Arc::new);
            Kept {
                note: format!("its cluster is kept until you press Ctrl-C: {look}"),
                in_process: Some(std::sync::Arc::new(cluster)),
                following: follow,
            }
        }
        Target::Kubeconfig { .. } => Kept {
            note: format!("its namespace {} is kept: kubectl get all -n {}", cluster.namespace(), cluster.namespace()),
            in_process: None,
            following: None,
        },
    }
}

async fn cleanup(cluster: &Cluster, target: &Target) -> Result<(), Error> {
    if let Target::Kubeconfig { .. } = target {
        let namespace = cluster.namespace().to_string();
        cluster
            .delete("v1", "Namespace", None, Some(&namespace), None, None)
            .await
            .map_err(cleaning(&format!("deleting namespace {namespace}")))?;
        let gone =
            Expectation::absent(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}));
        return cluster
            .eventually(&gone, CLEANUP_TIMEOUT)
            .await
            .map_err(cleaning(&format!("namespace {namespace} not deleted")));
    }
    let applied = cluster.applied();
    for object in applied.iter().rev() {
        match cluster
            .delete(&object.api_version, &object.kind, object.namespace.as_deref(), Some(&object.name), None, None)
            .await
        {
            // Gone already (deleted by a step, or with its namespace).
            Ok(()) | Err(Error::Api(_)) => {}
            Err(error) => return Err(cleaning(&format!("deleting {} {}", object.kind, object.name))(error)),
        }
    }
    for object in applied.iter().rev() {
        let mut metadata = json!({"name": object.name});
        if let Some(namespace) = &object.namespace {
            metadata["namespace"] = json!(namespace);
        }
        let gone =
            Expectation::absent(json!({"apiVersion": object.api_version, "kind": object.kind, "metadata": metadata}));
        cluster
            .eventually(&gone, CLEANUP_TIMEOUT)
            .await
            .map_err(cleaning(&format!("{} {} was not deleted", object.kind, object.name)))?;
    }
    Ok(())
}

/// A cleanup failure said with what was being cleaned up; an unreachable API server
/// stays one, so the report can say which container is down.
fn cleaning(what: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |error| match error {
        Error::Unreachable(why) => Error::Unreachable(format!("{what}: {why}")),
        other => Error::Api(format!("{what}: {}", describe(&other))),
    }
}

fn describe(error: &Error) -> String {
    match error {
        Error::Failed(failure) => failure.summary.clone(),
        other => other.to_string(),
    }
}

/// Objects given inline, in a file of their own for the compiler, removed when dropped.
struct InlineObjects {
    path: PathBuf,
}

impl InlineObjects {
    fn write(objects: &[Value]) -> Result<InlineObjects, Error> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("kubeyard-test-objects-{}-{n}.yaml", std::process::id()));
        let text: Vec<String> = objects.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n---\n"))
            .map_err(|e| Error::Manifests(format!("cannot write {}: {e}", path.display())))?;
        Ok(InlineObjects { path })
    }
}

impl Drop for InlineObjects {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
