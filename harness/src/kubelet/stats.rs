//! What a node's containers use, as the kubelet's Summary API reports it (`GET
//! /stats/summary`, which metrics-server scrapes, and which the API server's
//! `metrics.k8s.io` reads here): each running container's CPU, in cores used over the
//! last samples, and its working-set memory, and the node's.
//!
//! A container that runs as a process of this binary is measured from `/proc`: the CPU
//! time and resident memory of its process and of the processes it started. One in the
//! host's engine is measured from the engine's stats: its cgroup's CPU time, and its
//! memory less the inactive page cache (the working set, as cAdvisor counts it). Samples
//! are taken each second, as cAdvisor's housekeeping does, and a rate spans the samples of
//! the last ten seconds: a container measured once has memory but no CPU rate yet, as in
//! Kubernetes. The node uses what its agent's own process uses (proxy, DNS, the kubelet)
//! plus what its containers use: nothing else runs on a node kubeyard starts.

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often containers are measured.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How far back a rate reaches.
const WINDOW: Duration = Duration::from_secs(10);

/// A container of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
}

/// Where a running container's usage is read.
#[derive(Debug, Clone)]
pub enum Measure {
    /// A process of this binary (and what it started), by pid.
    Process(u32),
    /// A container of the host's engine, by name.
    Engine(String),
}

/// One reading: cumulative CPU time and memory in use.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_nanos: u64,
    memory: u64,
}

/// The readings of the last `WINDOW`.
#[derive(Debug, Default)]
struct Series(VecDeque<Sample>);

/// What a series says: CPU in nanocores (none before two readings), cumulative CPU time
/// and working-set bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub nano_cores: Option<u64>,
    pub cpu_nanos: u64,
    pub memory: u64,
}

impl Series {
    fn push(&mut self, sample: Sample) {
        // A restarted process counts from zero again: its earlier readings say nothing.
        if self.0.back().is_some_and(|last| last.cpu_nanos > sample.cpu_nanos) {
            self.0.clear();
        }
        self.0.push_back(sample);
        while self.0.len() > 2 && self.0.front().is_some_and(|first| sample.at.duration_since(first.at) > WINDOW) {
            self.0.pop_front();
        }
    }

    fn usage(&self) -> Option<Usage> {
        let (first, last) = (self.0.front()?, self.0.back()?);
        let elapsed = last.at.duration_since(first.at).as_nanos();
        let nano_cores = (elapsed > 0).then(|| {
            let used = u128::from(last.cpu_nanos - first.cpu_nanos) * 1_000_000_000 / elapsed;
            u64::try_from(used).unwrap_or(u64::MAX)
        });
        Some(Usage { nano_cores, cpu_nanos: last.cpu_nanos, memory: last.memory })
    }
}

#[derive(Debug)]
struct Tracked {
    measure: Measure,
    /// Which run of the container this is: a restart tracks it anew.
    run: u64,
    started: String,
    series: Series,
}

/// The usage of a node's running containers, shared by the runtime (which says what
/// runs), the sampler, and the kubelet's endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    node: String,
    containers: Mutex<HashMap<Key, Tracked>>,
    own: Mutex<Series>,
    runs: std::sync::atomic::AtomicU64,
}

/// A running container's place in [`Stats`]; dropping it (the container ended) forgets it.
#[derive(Debug)]
pub struct Tracking {
    stats: Arc<Stats>,
    key: Key,
    run: u64,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        let mut containers = self.stats.lock();
        if containers.get(&self.key).is_some_and(|t| t.run == self.run) {
            containers.remove(&self.key);
        }
    }
}

impl Stats {
    pub fn new(node: &str) -> Arc<Stats> {
        Arc::new(Stats { node: node.to_string(), ..Stats::default() })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Tracked>> {
        self.containers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Measures a container from now until the returned guard is dropped.
    pub fn track(self: &Arc<Self>, key: Key, measure: Measure, started: String) -> Tracking {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(key.clone(), Tracked { measure, run, started, series: Series::default() });
        Tracking { stats: Arc::clone(self), key, run }
    }

    /// Measures every running container, and this process, every [`INTERVAL`], until
    /// the task is dropped.
    pub async fn sample(self: Arc<Self>, docker: Option<Arc<super::docker::DockerRuntime>>) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sample_once(docker.as_deref()).await;
        }
    }

    async fn sample_once(&self, docker: Option<&super::docker::DockerRuntime>) {
        let tracked: Vec<(Key, u64, Measure)> =
            self.lock().iter().map(|(key, t)| (key.clone(), t.run, t.measure.clone())).collect();
        let processes = Processes::read();
        let mut readings = Vec::with_capacity(tracked.len());
        for (key, run, measure) in tracked {
            // Each reading is stamped with when it was taken: a rate's time is its own.
            let reading = match &measure {
                Measure::Process(pid) => processes.tree(*pid).map(|r| (r, processes.at)),
                Measure::Engine(name) => match docker {
                    Some(docker) => docker.docker.usage(name).await.ok().map(|r| (r, Instant::now())),
                    None => None,
                },
            };
            if let Some(((cpu_nanos, memory), at)) = reading {
                readings.push((key, run, Sample { at, cpu_nanos, memory }));
            }
        }
        let mut containers = self.lock();
        for (key, run, sample) in readings {
            if let Some(tracked) = containers.get_mut(&key).filter(|t| t.run == run) {
                tracked.series.push(sample);
            }
        }
        drop(containers);
        if let Some((cpu_nanos, memory)) = processes.one(std::process::id()) {
            let mut own = self.own.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            own.push(Sample { at: processes.at, cpu_nanos, memory });
        }
    }

    /// The Summary API's answer (`/stats/summary`): the node, and each pod with a
    /// measured container. `now` is the time the readings are stamped with.
    pub fn summary(&self, now: &str) -> Value {
        let stamped = |usage: Usage| {
            let mut cpu = json!({"time": now, "usageCoreNanoSeconds": usage.cpu_nanos});
            if let Some(nano_cores) = usage.nano_cores {
                cpu["usageNanoCores"] = json!(nano_cores);
            }
            (cpu, json!({"time": now, "workingSetBytes": usage.memory}))
        };
        // (namespace, pod, uid) to each measured container's (name, start, usage).
        type Containers<'a> = Vec<(&'a str, &'a str, Usage)>;
        let mut pods: HashMap<(&str, &str, &str), Containers> = HashMap::new();
        let containers = self.lock();
        for (key, tracked) in containers.iter() {
            if let Some(usage) = tracked.series.usage() {
                pods.entry((&key.namespace, &key.pod, &key.uid)).or_default().push((
                    &key.container,
                    &tracked.started,
                    usage,
                ));
            }
        }
        let mut node = self.own.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).usage().unwrap_or_default();
        let mut listed = Vec::new();
        let mut pods: Vec<_> = pods.into_iter().collect();
        pods.sort_by(|a, b| a.0.cmp(&b.0));
        for ((namespace, name, uid), mut measured) in pods {
            measured.sort_by(|a, b| a.0.cmp(b.0));
            let mut pod = Usage { nano_cores: Some(0), ..Usage::default() };
            let mut entries = Vec::new();
            for (container, started, usage) in measured {
                pod = add(pod, usage);
                let (cpu, memory) = stamped(usage);
                entries.push(json!({"name": container, "startTime": started, "cpu": cpu, "memory": memory}));
            }
            node = add(node, pod);
            let (cpu, memory) = stamped(pod);
            listed.push(json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "containers": entries,
                "cpu": cpu,
                "memory": memory,
            }));
        }
        let (cpu, memory) = stamped(node);
        json!({"node": {"nodeName": self.node, "cpu": cpu, "memory": memory}, "pods": listed})
    }
}

/// A sum of usages; a rate is known only when every part's is.
fn add(total: Usage, usage: Usage) -> Usage {
    Usage {
        nano_cores: total.nano_cores.zip(usage.nano_cores).map(|(a, b)| a.saturating_add(b)),
        cpu_nanos: total.cpu_nanos.saturating_add(usage.cpu_nanos),
        memory: total.memory.saturating_add(usage.memory),
    }
}

/// The processes of this machine, read once per sampling: each one's parent, CPU time
/// and resident memory.
struct Processes {
    /// pid to (parent, own CPU nanoseconds, its waited-for children's, resident bytes).
    by_pid: HashMap<u32, (u32, u64, u64, u64)>,
    /// When they were read.
    at: Instant,
}

impl Processes {
    fn read() -> Processes {
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let (ticks, page) = (u64::try_from(ticks).unwrap_or(100).max(1), u64::try_from(page).unwrap_or(4096));
        let mut by_pid = HashMap::new();
        let at = Instant::now();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let statm = std::fs::read_to_string(entry.path().join("statm")).unwrap_or_default();
            if let Some((parent, own, children)) = parse_stat(&stat) {
                let resident = statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
                let nanos = |t: u64| t.saturating_mul(1_000_000_000) / ticks;
                by_pid.insert(pid, (parent, nanos(own), nanos(children), resident * page));
            }
        }
        Processes { by_pid, at }
    }

    /// One process's own CPU time and memory (not its children's: the node agent's
    /// children are the containers, counted on their own).
    fn one(&self, pid: u32) -> Option<(u64, u64)> {
        self.by_pid.get(&pid).map(|&(_, cpu, _, memory)| (cpu, memory))
    }

    /// A container's CPU time and memory: its process's and its descendants', each with
    /// the time of the children it waited for (which a child's exit moves there, so the
    /// count never drops); `None` once it is gone.
    fn tree(&self, pid: u32) -> Option<(u64, u64)> {
        let &(_, own, waited, mut memory) = self.by_pid.get(&pid)?;
        let mut cpu = own.saturating_add(waited);
        let mut pending = vec![pid];
        while let Some(parent) = pending.pop() {
            for (&child, &(of, child_own, child_waited, child_memory)) in &self.by_pid {
                if of == parent && child != parent {
                    cpu = cpu.saturating_add(child_own).saturating_add(child_waited);
                    memory = memory.saturating_add(child_memory);
                    pending.push(child);
                }
            }
        }
        Some((cpu, memory))
    }
}

/// `/proc/<pid>/stat`'s parent pid, its own CPU time (user and system) and its waited-for
/// children's, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses: the fields after it start
/// after its last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): the parent is field 4, utime 14, stime 15, and the
    // waited-for children's cutime 16 and cstime 17 (so a child's exit does not take its
    // time out of the count).
    let parent = fields.get(1)?.parse().ok()?;
    let tick = |field: usize| fields.get(field)?.parse::<u64>().ok();
    let own = tick(11)?.saturating_add(tick(12)?);
    let children = tick(13)?.saturating_add(tick(14)?);
    Some((parent, own, children))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pod: &str, container: &str) -> Key {
        Key { namespace: "default".into(), pod: pod.into(), uid: format!("{pod}-uid"), container: container.into() }
    }

    #[test]
    fn the_stat_line_reads_past_a_command_with_parentheses() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 300 0 0 0 150 50 7 3 20 0 1 0 100 1000 200";
        assert_eq!(parse_stat(line), Some((1, 200, 10)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_rate_spans_the_window_and_a_restart_starts_it_again() {
        let start = Instant::now();
        let at =
            |seconds: u64, cpu_nanos: u64| Sample { at: start + Duration::from_secs(seconds), cpu_nanos, memory: 7 };
        let mut series = Series::default();
        series.push(at(0, 0));
        assert_eq!(series.usage().unwrap().nano_cores, None, "one reading: no rate yet");
        series.push(at(2, 1_000_000_000));
        assert_eq!(series.usage().unwrap().nano_cores, Some(500_000_000), "1 s of CPU in 2 s: half a core");
        for second in 3..=20 {
            series.push(at(second, second * 250_000_000));
        }
        // The first readings fell out of the window: the rate is the recent quarter core.
        assert_eq!(series.usage().unwrap().nano_cores, Some(250_000_000));
        series.push(at(21, 10));
        assert_eq!(series.usage().unwrap(), Usage { nano_cores: None, cpu_nanos: 10, memory: 7 });
    }

    #[test]
    fn this_process_is_measured_from_proc() {
        let processes = Processes::read();
        let (_, memory) = processes.one(std::process::id()).expect("this process is in /proc");
        assert!(memory > 0);
        let (_, tree_memory) = processes.tree(std::process::id()).unwrap();
        assert!(tree_memory >= memory);
        assert_eq!(processes.tree(u32::MAX), None);
    }

    #[tokio::test]
    async fn the_summary_lists_measured_pods_and_adds_them_to_the_node() {
        let stats = Stats::new("node-1");
        let web = stats.track(key("web", "app"), Measure::Process(std::process::id()), "2026-12-06T00:00:00Z".into());
        let gone = stats.track(key("old", "app"), Measure::Process(u32::MAX), "2026-12-06T00:00:00Z".into());
        stats.sample_once(None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats.sample_once(None).await;
        let summary = stats.summary("2026-12-06T00:00:05Z");
        assert_eq!(summary["node"]["nodeName"], "node-1");
        let pods = summary["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 1, "a process that is gone has no readings: {summary}");
        assert_eq!(pods[0]["podRef"]["name"], "web");
        let container = &pods[0]["containers"][0];
        assert_eq!(container["name"], "app");
        assert!(container["cpu"]["usageNanoCores"].is_u64(), "{container}");
        let memory = container["memory"]["workingSetBytes"].as_u64().unwrap();
        assert!(memory > 0);
        assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap() >= memory);
        drop(gone);
        drop(web);
        assert!(stats.summary("now")["pods"].as_array().unwrap().is_empty(), "ended containers are forgotten");
    }
}
