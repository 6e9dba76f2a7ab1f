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
    /// The deadlines of the sleepers, each under a number of its own, with what wakes it.
    /// A push wakes only the sleepers it made due: a cluster of 30,000 pods has as many
    /// sleepers, and waking them all on every push was most of a test's CPU.
    sleepers: Mutex<BTreeMap<(SystemTime, u64), Arc<tokio::sync::Notify>>>,
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
        let ahead =
            Ahead { stopped_at, nanos: AtomicU64::new(0), sleepers: Mutex::default(), numbers: AtomicU64::new(0) };
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
            let now = self.now();
            let sleepers = ahead.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // A due sleeper stays listed until it has woken (so `step_towards` does not push
            // past it meanwhile); told again, it keeps one wake-up, not two. On a clock
            // that also follows real time every sleeper is told, to set its real-time
            // timer to what is left now (the push shortened it); a stopped clock's
            // sleepers have none, and only those due are woken.
            let told: Box<dyn Iterator<Item = _>> = if ahead.stopped_at.is_some() {
                Box::new(sleepers.range(..=(now, u64::MAX)))
            } else {
                Box::new(sleepers.iter())
            };
            for (_, woken) in told {
                woken.notify_one();
            }
        }
    }

    /// Sleeps until `for_` has passed on this clock.
    pub async fn sleep(&self, for_: Duration) {
        let Some(ahead) = &self.ahead else { return tokio::time::sleep(for_).await };
        let deadline = self.now() + for_;
        let key = (deadline, ahead.numbers.fetch_add(1, Ordering::Relaxed));
        let woken = Arc::new(tokio::sync::Notify::new());
        ahead.sleepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, Arc::clone(&woken));
        let _due = Due { ahead, key };
        loop {
            let Ok(left) = deadline.duration_since(self.now()) else { return };
            if left.is_zero() {
                return;
            }
            // A push between reading the time and waiting leaves its wake-up stored.
            if ahead.stopped_at.is_some() {
                // A stopped clock moves only when pushed: real time cannot make it due.
                woken.notified().await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = woken.notified() => {}
                }
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
    /// sleeper's deadline, rounded up to its whole millisecond (zero while one is due and
    /// waking). Sleepers due within one millisecond wake together: 30,000 pods starting
    /// draw as many delays within a tenth of a second, and waking them one by one, each
    /// time waiting for the cluster to settle, took minutes. A millisecond is far finer
    /// than any period the control plane keeps (leases, grace periods, probes).
    pub fn step_towards(&self, wanted: Duration) -> Duration {
        let Some(deadline) = self.next_deadline() else { return wanted };
        let now = self.now();
        if deadline <= now {
            return Duration::ZERO;
        }
        let since_epoch = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
        let past_millisecond = since_epoch - Duration::from_millis(u64::try_from(since_epoch.as_millis()).unwrap_or(0));
        let rounded = if past_millisecond.is_zero() {
            deadline
        } else {
            deadline + (Duration::from_millis(1) - past_millisecond)
        };
        wanted.min(rounded.duration_since(now).unwrap_or_default())
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
        assert!(step <= Duration::from_millis(10_001) && step > Duration::from_secs(9), "{step:?}");
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
    async fn a_stopped_clock_wakes_only_the_sleepers_a_push_makes_due() {
        let clock = Clock::stopped();
        let sleep = |millis| {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_millis(millis)).await })
        };
        let (short, long) = (sleep(10), sleep(30_000));
        // Real time does not move a stopped clock: 50 ms pass, the 10 ms sleeper sleeps on.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!short.is_finished(), "a stopped clock moved with real time");
        clock.advance(Duration::from_millis(10));
        tokio::time::timeout(Duration::from_secs(2), short).await.expect("woken by the push").expect("no panic");
        assert!(!long.is_finished());
        // Pushes short of its deadline leave it asleep; the one that reaches it wakes it.
        for _ in 0..29 {
            clock.advance(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!long.is_finished(), "woken before its deadline");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(2), long).await.expect("woken at its deadline").expect("no panic");
        assert_eq!(clock.next_deadline(), None);
    }

    #[tokio::test]
    async fn sleepers_due_within_one_millisecond_wake_together() {
        let clock = Clock::stopped();
        let sleep = |micros| {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_micros(micros)).await })
        };
        // A stopped clock starts on a whole second: these are due in its 21st millisecond,
        // and the third in the 22nd.
        let (first, second, third) = (sleep(20_100), sleep(20_900), sleep(21_000 + 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let step = clock.step_towards(Duration::from_secs(1));
        assert_eq!(step, Duration::from_millis(21), "up to the end of the first one's millisecond");
        clock.advance(step);
        for sleeper in [first, second] {
            tokio::time::timeout(Duration::from_secs(2), sleeper).await.expect("woken").expect("no panic");
        }
        assert!(!third.is_finished(), "due in the next millisecond");
        assert_eq!(clock.step_towards(Duration::from_secs(1)), Duration::from_millis(1));
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(2), third).await.expect("woken").expect("no panic");
    }

    #[tokio::test]
    async fn a_real_clock_is_not_pushed() {
        let clock = Clock::real();
        clock.advance(Duration::from_secs(3600));
        let gap = clock.now().duration_since(SystemTime::now()).unwrap_or_default();
        assert!(gap < Duration::from_secs(1), "{gap:?}");
    }
}
