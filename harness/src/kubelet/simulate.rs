//! What a simulated pod does, read from its `kubeyard.dev/simulate` annotation, and the
//! seeded delays of the simulated runtime.
//!
//! The annotation is a comma-separated list, so a test picks a failure path per pod:
//! `crash-after=3s` (the containers exit with code 1 after running that long),
//! `never-ready` (readiness probes fail), `unready-after=5s` (they start failing then),
//! `image-pull-error` (the image never pulls), `liveness-fail-after=5s` (the liveness probe
//! fails and the container is killed), `complete-after=2s` and `exit-code=N` (when a
//! run-to-completion container exits, and how).

use std::time::Duration;

pub const ANNOTATION: &str = "kubeyard.dev/simulate";

/// What each container of a simulated pod uses, for the resource metrics API (`kubectl
/// top`, HorizontalPodAutoscalers): `cpu=250m,memory=64Mi`. Absent, a container uses
/// nothing.
pub const USAGE: &str = "kubeyard.dev/usage";

/// Reads a `kubeyard.dev/usage` value: `resource=quantity` pairs.
pub fn usage(text: &str) -> Result<std::collections::BTreeMap<String, kubeyard_compiler::quantity::Quantity>, String> {
    let mut usage = std::collections::BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, quantity) =
            pair.split_once('=').ok_or_else(|| format!("{USAGE}: `{pair}` is not resource=quantity"))?;
        let quantity = quantity.trim().parse().map_err(|e| format!("{USAGE}: {pair}: {e}"))?;
        usage.insert(name.trim().to_string(), quantity);
    }
    Ok(usage)
}

/// A container of a pod whose restart policy is not `Always` runs this long unless told.
pub const DEFAULT_RUN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulation {
    pub crash_after: Option<Duration>,
    pub never_ready: bool,
    pub unready_after: Option<Duration>,
    pub image_pull_error: bool,
    pub liveness_fail_after: Option<Duration>,
    pub complete_after: Option<Duration>,
    pub exit_code: Option<i32>,
}

impl Simulation {
    /// Reads the annotation's value; a word it does not know is an error naming it, so a
    /// typo in a test does not silently simulate a healthy pod.
    pub fn parse(text: &str) -> Result<Simulation, String> {
        let mut simulation = Simulation::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (key, value) = match word.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (word, None),
            };
            let duration = || -> Result<Duration, String> {
                let value = value.ok_or_else(|| format!("`{key}` needs a duration, as in `{key}=3s`"))?;
                let parsed: kubeyard_compiler::duration::Duration =
                    value.parse().map_err(|e| format!("`{key}={value}`: {e}"))?;
                if parsed.0 < 0 {
                    return Err(format!("`{key}={value}` is negative"));
                }
                Ok(parsed.as_std())
            };
            match key {
                "crash-after" => simulation.crash_after = Some(duration()?),
                "never-ready" => simulation.never_ready = true,
                "unready-after" => simulation.unready_after = Some(duration()?),
                "image-pull-error" => simulation.image_pull_error = true,
                "liveness-fail-after" => simulation.liveness_fail_after = Some(duration()?),
                "complete-after" => simulation.complete_after = Some(duration()?),
                "exit-code" => {
                    let value = value.ok_or("`exit-code` needs a number, as in `exit-code=1`")?;
                    simulation.exit_code =
                        Some(value.parse().map_err(|_| format!("`exit-code={value}` is not a number"))?);
                }
                other => {
                    return Err(format!(
                        "unknown simulation `{other}`: expected crash-after, never-ready, unready-after, \
                         image-pull-error, liveness-fail-after, complete-after or exit-code"
                    ));
                }
            }
        }
        Ok(simulation)
    }
}

/// How long the simulated runtime takes over each step, each drawn from a range by a
/// generator seeded per pod, so a seed replays the same timings.
#[derive(Debug, Clone)]
pub struct Delays {
    /// Pulling the image and creating the sandbox (ContainerCreating).
    pub create: (Duration, Duration),
    /// From running to passing its first readiness probe.
    pub ready: (Duration, Duration),
    /// Stopping a container when its pod is deleted (bounded by the grace period).
    pub stop: (Duration, Duration),
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            create: (Duration::from_millis(20), Duration::from_millis(120)),
            ready: (Duration::from_millis(0), Duration::from_millis(60)),
            stop: (Duration::from_millis(0), Duration::from_millis(40)),
        }
    }
}

impl Delays {
    /// No waiting at all: for benchmarks of the control plane rather than of the runtime.
    pub fn none() -> Delays {
        Delays {
            create: (Duration::ZERO, Duration::ZERO),
            ready: (Duration::ZERO, Duration::ZERO),
            stop: (Duration::ZERO, Duration::ZERO),
        }
    }
}

pub fn draw(range: (Duration, Duration), rng: &mut fastrand::Rng) -> Duration {
    let (low, high) = range;
    if high <= low {
        return low;
    }
    let span = high - low;
    if span < DELAY_STEP {
        let span = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
        return low + Duration::from_micros(rng.u64(0..=span));
    }
    // Steps to the top rounded up, the last one cut to `high`: the top is drawn too.
    let steps = u64::try_from(span.as_nanos().div_ceil(DELAY_STEP.as_nanos())).unwrap_or(u64::MAX);
    (low + DELAY_STEP * u32::try_from(rng.u64(0..=steps)).unwrap_or(u32::MAX)).min(high)
}

/// Simulated delays are drawn in whole steps of this: pods started together share a
/// dozen instants instead of each its own millisecond, and a virtual clock, which waits
/// for the cluster to settle at every instant someone sleeps until, stops a dozen times
/// rather than a hundred. Ten milliseconds is finer than anything a test can observe of
/// a pod's start (statuses, events and conditions have second precision).
const DELAY_STEP: Duration = Duration::from_millis(10);

/// The CrashLoopBackOff wait before restart number `restarts` (10 s doubling, at most 5 min).
pub fn back_off(restarts: u32) -> Duration {
    let seconds = 10u64.saturating_mul(1u64 << restarts.saturating_sub(1).min(5));
    Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_read_as_simulations() {
        let s = Simulation::parse("crash-after=3s, never-ready").unwrap();
        assert_eq!(s.crash_after, Some(Duration::from_secs(3)));
        assert!(s.never_ready && !s.image_pull_error);
        let s = Simulation::parse("complete-after=500ms,exit-code=2").unwrap();
        assert_eq!((s.complete_after, s.exit_code), (Some(Duration::from_millis(500)), Some(2)));
        assert_eq!(Simulation::parse("").unwrap(), Simulation::default());
        assert!(Simulation::parse("crash-after").unwrap_err().contains("needs a duration"));
        assert!(Simulation::parse("explode").unwrap_err().contains("unknown simulation `explode`"));
        assert!(Simulation::parse("exit-code=x").unwrap_err().contains("not a number"));
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|n| back_off(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn delays_stay_in_range_and_replay_by_seed() {
        let range = (Duration::from_millis(10), Duration::from_millis(20));
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..50).map(|_| draw(range, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert!(draws(7).iter().all(|d| *d >= range.0 && *d <= range.1));
        // Whole steps: 10 ms and 20 ms, both seen.
        let drawn: std::collections::BTreeSet<Duration> = draws(7).into_iter().collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), [range.0, range.1]);
        // A span that is no whole number of steps still reaches its top.
        let odd = (Duration::from_millis(0), Duration::from_millis(25));
        let mut rng = fastrand::Rng::with_seed(7);
        let drawn: std::collections::BTreeSet<Duration> = (0..200).map(|_| draw(odd, &mut rng)).collect();
        let millis: Vec<u128> = drawn.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [0, 10, 20, 25]);
        // A range narrower than a step is drawn finely, within it.
        let narrow = (Duration::from_millis(1), Duration::from_millis(3));
        let mut rng = fastrand::Rng::with_seed(7);
        let fine: Vec<Duration> = (0..50).map(|_| draw(narrow, &mut rng)).collect();
        assert!(fine.iter().all(|d| *d >= narrow.0 && *d <= narrow.1));
        assert!(fine.iter().any(|d| d.subsec_micros() % 1000 != 0));
    }
}
