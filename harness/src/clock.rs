//! The control plane's one clock, and timestamps as the API writes them (RFC 3339, UTC,
//! whole seconds; micro-time for leases) and ages as kubectl shows them (`5s`, `3m12s`).
//!
//! Every period a component waits for (lease renewal, node grace, toleration, back-off,
//! simulated container delays) is slept on a [`Clock`]. A virtual clock runs with real time
//! but can be pushed ahead: a test that calls [`Clock::advance`] wakes every sleeper whose
//! deadline has passed, so a 40-second node grace period passes at once while everything
//! in between (watches, requeues, HTTP) keeps its real, short timing.
//!
//! A manual clock knows when each of its sleepers is due ([`Clock::next_deadline`]), so
//! whoever pushes it never jumps past one: a kubelet due to renew its lease at 10 s renews
//! at 10 s, before the node controller's check at 12 s reads the lease, as on a real
//! cluster. Jumping over deadlines would wake both at once and let the race decide
//! (healthy nodes marked unreachable, a different outcome on every run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Real time, or real time plus however far a test has pushed it. Cheap to clone; clones
/// share one offset.
#[derive(Clone, Default)]
pub struct Clock {
    ahead: Option<Arc<Ahead>>,
}

struct Ahead {
    /// A stopped clock's time: where it started, not real time (see [`Clock::stopped`]).
    stopped_at: Option<SystemTime>,
    nanos: AtomicU64,
    moved: tokio::sync::watch::Sender<()>,
    /// The deadlines of the sleepers, each under a number of its own.
    sleepers: Mutex<BTreeMap<(SystemTime, u64), ()>>,
    numbers: AtomicU64,
}

/// Stops following real time when dropped.
pub struct FollowRealTime(tokio::task::JoinHandle<()>);

impl Drop for FollowRealTime {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A sleeper's deadline, struck off when it wakes or is dropped (its task aborted).
struct Due<'a> {
    ahead: &'a Ahead,
    key: (SystemTime, u64),
}

impl Drop for Due<'_> {
    fn drop(&mut self) {
        self.ahead.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.key);
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ahead {
            None => f.write_str("Clock::real"),
            Some(ahead) => write!(f, "Clock::virtual(+{:?})", Duration::from_nanos(ahead.nanos.load(Ordering::SeqCst))),
        }
    }
}

impl Clock {
    pub fn real() -> Clock {
        Clock { ahead: None }
    }

    /// A clock a test can push ahead with [`Clock::advance`], running with real time
    /// in between.
    pub fn manual() -> Clock {
        Clock::pushed(None)
    }

    /// A clock that moves only when pushed: everything done between two pushes happens at
    /// one instant (one creation timestamp for a burst of pods, however long its HTTP
    /// took), so what a run does depends on the order of deadlines, not on how fast this
    /// machine is. `kubeyard test` runs its clusters on one; while something outside the
    /// cluster works in real time (a `command` step, a kept cluster) it follows real time
    /// ([`Clock::follow_real_time`]).
    pub fn stopped() -> Clock {
        // Whole seconds: the API's timestamps are, so none is rounded differently.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Clock::pushed(Some(UNIX_EPOCH + Duration::from_secs(now)))
    }

    fn pushed(stopped_at: Option<SystemTime>) -> Clock {
        let (moved, _) = tokio::sync::watch::channel(());
        let ahead = Ahead {
            stopped_at,
            nanos: AtomicU64::new(0),
            moved,
            sleepers: Mutex::default(),
            numbers: AtomicU64::new(0),
        };
        Clock { ahead: Some(Arc::new(ahead)) }
    }

    /// While the guard lives, a pushed clock is also pushed along with real time (every
    /// 10 ms), so whatever runs in real time outside the cluster sees it move.
    pub fn follow_real_time(&self) -> Option<FollowRealTime> {
        let clock = self.clone();
        self.ahead.as_ref()?.stopped_at?;
        Some(FollowRealTime(tokio::spawn(async move {
            let mut last = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = std::time::Instant::now();
                clock.advance(clock.step_towards(now - last));
                last = now;
            }
        })))
    }

    pub fn is_manual(&self) -> bool {
        self.ahead.is_some()
    }

    /// Whether time moves only when pushed ([`Clock::stopped`]).
    pub fn is_stopped(&self) -> bool {
        self.ahead.as_ref().is_some_and(|a| a.stopped_at.is_some())
    }

    pub fn now(&self) -> SystemTime {
        match &self.ahead {
            None => SystemTime::now(),
            Some(ahead) => {
                ahead.stopped_at.unwrap_or_else(SystemTime::now)
                    + Duration::from_nanos(ahead.nanos.load(Ordering::SeqCst))
            }
        }
    }

    /// `now` as the API writes a `Time`.
    pub fn timestamp(&self) -> String {
        format(self.now())
    }

    /// `now` as the API writes a `MicroTime` (a Lease's `renewTime`, an Event's `eventTime`).
    pub fn micro_timestamp(&self) -> String {
        let now = self.now();
        let micros = now.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_micros();
        let whole = format(now);
        format!("{}.{micros:06}Z", whole.trim_end_matches('Z'))
    }

    /// Pushes a manual clock ahead, waking every sleeper whose deadline has come. A real
    /// clock cannot be pushed: it is left alone.
    pub fn advance(&self, by: Duration) {
        if let Some(ahead) = &self.ahead {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            ahead.nanos.fetch_add(by, Ordering::SeqCst);
            ahead.moved.send_replace(());
        }
    }

    /// Sleeps until `for_` has passed on this clock.
    pub async fn sleep(&self, for_: Duration) {
        let Some(ahead) = &self.ahead else { return tokio::time::sleep(for_).await };
        let deadline = self.now() + for_;
        let key = (deadline, ahead.numbers.fetch_add(1, Ordering::Relaxed));
        ahead.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, ());
        let _due = Due { ahead, key };
        let mut moved = ahead.moved.subscribe();
        loop {
            let Ok(left) = deadline.duration_since(self.now()) else { return };
            if left.is_zero() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = moved.changed() => {}
            }
        }
    }

    /// When the next sleeper on a manual clock is due (`None`: nobody sleeps, or the clock
    /// is real). A clock pushed no further than this wakes sleepers one instant at a time.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let ahead = self.ahead.as_ref()?;
        let sleepers = ahead.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sleepers.keys().next().map(|(deadline, _)| *deadline)
    }

    /// How far a manual clock may be pushed now, at most `wanted`: up to the next
    /// sleeper's deadline (zero while one is due and waking).
    pub fn step_towards(&self, wanted: Duration) -> Duration {
        match self.next_deadline() {
            Some(deadline) => wanted.min(deadline.duration_since(self.now()).unwrap_or_default()),
            None => wanted,
        }
    }

    /// How long ago `timestamp` was on this clock (zero for the future or the unreadable).
    pub fn since(&self, timestamp: &str) -> Option<Duration> {
        parse(timestamp).map(|then| self.now().duration_since(then).unwrap_or_default())
    }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn format(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (year, month, day) = civil(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Real time as the API writes a `Time`; components with a [`Clock`] use its `timestamp`.
pub fn now() -> String {
    format(SystemTime::now())
}

/// Reads `2026-11-29T14:30:00Z` (fractions and offsets other than `Z` are not written
/// by this server, and read as unknown).
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let time = time.split('.').next()?;
    let mut time = time.split(':').map(str::parse::<i64>);
    let (hour, minute, second) = (time.next()?.ok()?, time.next()?.ok()?, time.next()?.ok()?);
    let days = days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// kubectl's short age (`duration.HumanDuration`).
pub fn age(since: Option<&str>) -> String {
    let Some(then) = since.and_then(parse) else { return "<unknown>".into() };
    human_duration(SystemTime::now().duration_since(then).unwrap_or_default().as_secs())
}

/// apimachinery's `HumanDuration` of a span in seconds (`45s`, `3m20s`, `2d4h`).
pub fn human_duration(seconds: u64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        let s = seconds % 60;
        if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") }
    } else if hours < 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 {
        let h = hours % 24;
        if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for seconds in [0, 951_782_400, 1_795_969_800, 4_102_444_799] {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(parse(&format(time)), Some(time), "{}", format(time));
        }
        assert_eq!(format(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(parse("2026-11-29T14:30:00.123456Z"), parse("2026-11-29T14:30:00Z"));
        assert_eq!(parse("yesterday"), None);
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_pushed() {
        let clock = Clock::manual();
        let start = clock.now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(40)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished(), "forty seconds have not passed");
        clock.advance(Duration::from_secs(41));
        tokio::time::timeout(Duration::from_secs(2), sleeper).await.expect("woken at once").expect("no panic");
        assert!(clock.now().duration_since(start).unwrap() >= Duration::from_secs(41));
        assert!(clock.since(&format(start)).unwrap() >= Duration::from_secs(40));
        assert!(clock.micro_timestamp().ends_with('Z') && clock.micro_timestamp().contains('.'));
        assert!(parse(&clock.micro_timestamp()).is_some());
    }

    #[tokio::test]
    async fn a_manual_clock_knows_when_its_sleepers_are_due() {
        let clock = Clock::manual();
        assert_eq!(clock.next_deadline(), None);
        let start = clock.now();
        let sleep = |seconds| {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(seconds)).await })
        };
        let (soon, later) = (sleep(10), sleep(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let due = clock.next_deadline().expect("two sleep");
        assert!(due.duration_since(start).unwrap() >= Duration::from_secs(10));
        // Pushed no further than the first deadline: the second sleeper sleeps on.
        let step = clock.step_towards(Duration::from_secs(60));
        assert!(step <= Duration::from_secs(10) && step > Duration::from_secs(9), "{step:?}");
        clock.advance(step);
        tokio::time::timeout(Duration::from_secs(2), soon).await.expect("woken").expect("no panic");
        assert!(!later.is_finished());
        assert!(clock.next_deadline().unwrap().duration_since(start).unwrap() >= Duration::from_secs(30));
        // A sleeper whose task is dropped is struck off.
        later.abort();
        let _ = later.await;
        assert_eq!(clock.next_deadline(), None);
        assert_eq!(clock.step_towards(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_real_clock_is_not_pushed() {
        let clock = Clock::real();
        clock.advance(Duration::from_secs(3600));
        let gap = clock.now().duration_since(SystemTime::now()).unwrap_or_default();
        assert!(gap < Duration::from_secs(1), "{gap:?}");
    }
}
