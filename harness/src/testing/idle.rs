//! Whether this process's async runtime sat idle over a window: the virtual clock's
//! second witness that an in-process cluster has nothing left in progress.
//!
//! A virtual clock may only run ahead once every component has done what the present
//! instant asks of it, as a discrete-event simulator advances only when every process is
//! blocked. The store's revision standing still says no component *wrote*; it cannot say
//! none is still *working*. Under a burst (10,000 pods bound at once) a component starved
//! of the two cores, or decoding a relist, can go past the quiet window without a write,
//! and a clock pushed then would run ahead of it (leases late, pods ready later in
//! cluster time than they would be). This is a safeguard: no test has been seen to fail
//! for want of it (the failures once blamed on it were the node agent's, see
//! docs/controlplane.md). Every component of an in-process cluster runs on this one runtime, and a
//! component with anything to do has a task to poll, so workers that parked during the
//! window and were busy for little of it are the evidence that nothing is in progress.
//! (A task waiting on the virtual clock, on a socket or on a channel is not polled, and so
//! costs nothing here: that is waiting, not working.)

use std::time::Duration;

use tokio::runtime::{Handle, RuntimeMetrics};

/// What the runtime's workers had done by one instant.
pub struct Idle {
    metrics: RuntimeMetrics,
    workers: Vec<Worker>,
}

#[derive(Clone, Copy)]
struct Worker {
    busy: Duration,
    parks: u64,
    parked_now: bool,
}

impl Idle {
    /// The runtime's workers now (`None` outside a runtime).
    pub fn now() -> Option<Idle> {
        let metrics = Handle::try_current().ok()?.metrics();
        let workers = read(&metrics);
        Some(Idle { metrics, workers })
    }

    /// Whether the workers sat idle since `self` was taken: each parked at some point (a
    /// worker that never parked ran tasks the whole window, our own task's included), and
    /// all together were busy for at most a quarter of the window's worker time (the
    /// waiting task's own checks and a progress line are a few microseconds; a component
    /// at work keeps a worker busy throughout).
    pub fn held_for(&self, window: Duration) -> bool {
        let now = read(&self.metrics);
        let capacity = window * u32::try_from(now.len()).unwrap_or(u32::MAX);
        idle(&self.workers, &now, capacity / 4)
    }
}

fn read(metrics: &RuntimeMetrics) -> Vec<Worker> {
    (0..metrics.num_workers())
        .map(|w| Worker {
            busy: metrics.worker_total_busy_duration(w),
            parks: metrics.worker_park_count(w),
            // Odd: parked (the count goes up on parking and again on waking).
            parked_now: metrics.worker_park_unpark_count(w) % 2 == 1,
        })
        .collect()
}

fn idle(before: &[Worker], after: &[Worker], most_busy: Duration) -> bool {
    let busy: Duration = before.iter().zip(after).map(|(b, a)| a.busy.saturating_sub(b.busy)).sum();
    let every_parked = before.iter().zip(after).all(|(b, a)| a.parks > b.parks || a.parked_now);
    every_parked && busy <= most_busy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(busy_ms: u64, parks: u64, parked_now: bool) -> Worker {
        Worker { busy: Duration::from_millis(busy_ms), parks, parked_now }
    }

    #[test]
    fn idle_only_when_every_worker_parked_and_little_was_done() {
        let before = [worker(100, 10, true), worker(200, 20, false)];
        let quarter = Duration::from_millis(7);
        // Both parked in the window, 2 ms of work between them: idle.
        assert!(idle(&before, &[worker(101, 11, true), worker(201, 21, false)], quarter));
        // One worker parked the whole window (count unchanged, parked now): idle.
        assert!(idle(&before, &[worker(100, 10, true), worker(201, 21, false)], quarter));
        // A worker that never parked ran something the whole window (a long poll
        // submits no busy time until it ends): not idle.
        assert!(!idle(&before, &[worker(100, 11, true), worker(200, 20, false)], quarter));
        // Both parked, but busy for most of the window in between: not idle.
        assert!(!idle(&before, &[worker(110, 12, true), worker(210, 23, false)], quarter));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_runtime_is_not_idle_and_a_waiting_one_is() {
        let window = Duration::from_millis(30);
        let spin = tokio::spawn(async move {
            let started = std::time::Instant::now();
            while started.elapsed() < window * 3 {
                std::hint::spin_loop();
            }
        });
        let busy = Idle::now().expect("in a runtime");
        tokio::time::sleep(window).await;
        assert!(!busy.held_for(window), "a worker spun the whole window");
        spin.await.expect("no panic");
        // Settled: nothing to do but our sleep. Tried a few times, since the test
        // harness's own threads share the machine.
        let mut seen_idle = false;
        for _ in 0..20 {
            let quiet = Idle::now().expect("in a runtime");
            tokio::time::sleep(window).await;
            if quiet.held_for(window) {
                seen_idle = true;
                break;
            }
        }
        assert!(seen_idle, "an idle runtime is seen idle");
    }
}
