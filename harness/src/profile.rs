//! What the control plane's components did, to find which one a slow convergence waits
//! on: for each controller run through the scaffold (`controllers::Wiring`, named after
//! its file; the garbage collector, namespace, pod GC and other loops of their own are not
//! counted) and the scheduler, how many reconciles (or scheduling attempts) it ran, how
//! many failed, how long they took (p50, p99, max, and in all: its busy time, which counts
//! reconciles running side by side each in full, so it can pass the wall time), and, for
//! the scheduler, how deep its queue got. The API server counts its requests the same
//! way, one row per verb and resource (`apiserver/patch pods/status`; watches, which last
//! as long as their clients, are not counted): what every component waits on, and which
//! of them loads it most. `kubeyard up` prints it on exit, `kubeyard test --profile` under
//! each test.
//!
//! Recording is a few atomic adds per reconcile (a histogram of powers of two), and for
//! a request also the row's lookup under one lock, so it is always on. One profile per
//! control plane: components find theirs through the task they run in ([`scope`]), so
//! control planes sharing a process (tests) stay apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latency buckets: below 1 µs, below 2 µs, ... below 2^31 µs (36 minutes).
const BUCKETS: usize = 32;

/// The prefix of the API server's rows (its requests, by verb and resource).
pub const API_SERVER: &str = "apiserver/";
/// The prefix of the rows of watchers that fell out of the watch history.
pub const WATCH_EXPIRED: &str = "watch expired/";
/// The API server's most frequent kinds of request the summary shows one by one.
const REQUEST_ROWS: usize = 12;

/// One component's counts.
#[derive(Debug, Default)]
pub struct Component {
    runs: AtomicU64,
    failures: AtomicU64,
    busy_nanos: AtomicU64,
    max_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    /// The deepest queue seen, plus one (0: the component says nothing of a queue).
    queue_max: AtomicU64,
}

impl Component {
    /// One reconcile (or scheduling attempt) that took `elapsed`.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.runs.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        let micros = nanos / 1_000;
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The queue's depth now (the deepest is kept).
    pub fn queued(&self, depth: usize) {
        self.queue_max.fetch_max(depth as u64 + 1, Ordering::Relaxed);
    }

    /// The latency below which `quantile` of the runs took: a bucket's upper bound, or the
    /// slowest run when that is less.
    fn quantile(&self, quantile: f64) -> Duration {
        self.bucket_bound(quantile).min(Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed)))
    }

    fn bucket_bound(&self, quantile: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let wanted = ((total as f64) * quantile).ceil() as u64;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Duration::from_micros(1u64 << bucket);
            }
        }
        Duration::from_micros(1u64 << (BUCKETS - 1))
    }
}

/// A control plane's components.
#[derive(Debug)]
pub struct Profile {
    started: Instant,
    components: Mutex<BTreeMap<String, Arc<Component>>>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile { started: Instant::now(), components: Mutex::default() }
    }
}

tokio::task_local! {
    static CURRENT: Arc<Profile>;
}

/// Runs a component's future with `profile` as the one it records into.
pub async fn scope<F: std::future::Future>(profile: Arc<Profile>, future: F) -> F::Output {
    CURRENT.scope(profile, future).await
}

/// The profile of the control plane the calling task belongs to, if any.
pub fn current() -> Option<Arc<Profile>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// A duration as the summary prints it: `64µs`, `0.4ms`, `12ms`, `3.2s`.
fn shown(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1_000.0;
    match millis {
        m if m < 0.1 => format!("{}µs", duration.as_micros()),
        m if m < 10.0 => format!("{m:.1}ms"),
        m if m < 1_000.0 => format!("{m:.0}ms"),
        m => format!("{:.1}s", m / 1_000.0),
    }
}

impl Profile {
    /// The counts of a component, made on first use.
    pub fn component(&self, name: &str) -> Arc<Component> {
        let mut components = self.components.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Found without allocating: the API server asks for a row at every request.
        if let Some(component) = components.get(name) {
            return Arc::clone(component);
        }
        Arc::clone(components.entry(name.to_string()).or_default())
    }

    /// A table of the components that ran, the busiest first: the bottleneck on top.
    pub fn summary(&self) -> String {
        let components = self.components.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(&String, &Arc<Component>)> =
            components.iter().filter(|(_, c)| c.runs.load(Ordering::Relaxed) > 0).collect();
        rows.sort_by_key(|(name, c)| (std::cmp::Reverse(c.busy_nanos.load(Ordering::Relaxed)), name.to_string()));
        let width = rows.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0).max("component".len());
        let mut out = String::new();
        let _ = writeln!(out, "what the control plane did in {}:", shown(self.started.elapsed()));
        let _ = writeln!(
            out,
            "  {:<width$} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "component", "runs", "failed", "p50", "p99", "max", "busy", "queue max"
        );
        // Every component's row, but only the most frequent kinds of request, and of
        // watchers falling behind (each group its own): a test touches dozens of resources
        // once each, and clients name themselves; the rest of each group is folded into
        // one line.
        let mut kept = std::collections::HashSet::new();
        let mut folded_lines = Vec::new();
        for (prefix, what) in
            [(API_SERVER, "kinds of API server request"), (WATCH_EXPIRED, "watchers that fell out of the history")]
        {
            let mut frequent: Vec<(&String, u64)> = rows
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, component)| (*name, component.runs.load(Ordering::Relaxed)))
                .collect();
            frequent.sort_by_key(|(name, runs)| (std::cmp::Reverse(*runs), name.to_string()));
            kept.extend(frequent.iter().take(REQUEST_ROWS).map(|(name, _)| *name));
            if frequent.len() > REQUEST_ROWS {
                let runs: u64 = frequent.iter().skip(REQUEST_ROWS).map(|(_, runs)| runs).sum();
                folded_lines.push(format!("  ... and {} more {what} ({runs} in all)", frequent.len() - REQUEST_ROWS));
            }
        }
        let grouped = |name: &str| name.starts_with(API_SERVER) || name.starts_with(WATCH_EXPIRED);
        let rows: Vec<_> = rows.into_iter().filter(|(name, _)| !grouped(name) || kept.contains(name)).collect();
        for (name, component) in rows {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            let queue = match load(&component.queue_max) {
                0 => "-".to_string(),
                deepest => (deepest - 1).to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<width$} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
                name,
                load(&component.runs),
                load(&component.failures),
                format!("≤{}", shown(component.quantile(0.5))),
                format!("≤{}", shown(component.quantile(0.99))),
                shown(Duration::from_nanos(load(&component.max_nanos))),
                shown(Duration::from_nanos(load(&component.busy_nanos))),
                queue,
            );
        }
        for line in folded_lines {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_component_comes_first_with_its_latencies() {
        let profile = Profile::default();
        let deployment = profile.component("controller/deployment");
        for _ in 0..99 {
            deployment.record(Duration::from_micros(300), false);
        }
        deployment.record(Duration::from_millis(40), true);
        deployment.queued(12);
        deployment.queued(3);
        profile.component("scheduler").record(Duration::from_millis(1), false);
        profile.component("controller/idle");
        let summary = profile.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert!(lines[2].starts_with("  controller/deployment"), "{summary}");
        assert!(lines[3].starts_with("  scheduler"), "{summary}");
        assert_eq!(lines.len(), 4, "a component that never ran is left out: {summary}");
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&cells[1..], ["100", "1", "≤0.5ms", "≤0.5ms", "40ms", "70ms", "12"], "{summary}");
        assert!(lines[3].ends_with(" -"), "the scheduler here said nothing of its queue: {summary}");
        assert_eq!(deployment.bucket_bound(1.0), Duration::from_micros(65_536), "the slowest run's bucket");
        assert_eq!(deployment.quantile(1.0), Duration::from_millis(40), "no more than the slowest run");
    }

    #[test]
    fn only_the_busiest_kinds_of_request_get_a_row() {
        let profile = Profile::default();
        for i in 0..20u64 {
            let requests = profile.component(&format!("{API_SERVER}get kind{i:02}"));
            for _ in 0..=i {
                requests.record(Duration::from_millis(1), false);
            }
        }
        profile.component("controller/idle-but-ran").record(Duration::from_micros(1), false);
        // Watchers falling behind are a group of their own, never pushed out by requests.
        profile.component(&format!("{WATCH_EXPIRED}pods kube-scheduler")).record(Duration::ZERO, true);
        let summary = profile.summary();
        let requests: Vec<&str> = summary.lines().filter(|l| l.trim_start().starts_with(API_SERVER)).collect();
        assert_eq!(requests.len(), REQUEST_ROWS, "{summary}");
        assert!(requests[0].contains("kind19"), "the busiest first: {summary}");
        // kind00..kind07, the least frequent, are folded: 1 + 2 + ... + 8 requests.
        assert!(summary.ends_with("  ... and 8 more kinds of API server request (36 in all)\n"), "{summary}");
        assert!(summary.contains("controller/idle-but-ran"), "every component keeps its row: {summary}");
        assert!(summary.contains("watch expired/pods kube-scheduler"), "{summary}");
    }

    #[tokio::test]
    async fn a_task_finds_the_profile_it_runs_under() {
        assert!(current().is_none());
        let profile = Arc::new(Profile::default());
        let found = scope(Arc::clone(&profile), async { current() }).await;
        assert!(found.is_some_and(|p| Arc::ptr_eq(&p, &profile)));
    }
}
