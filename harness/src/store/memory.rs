//! The embedded store: a sorted map under one lock, a history of events for watchers
//! bounded by count and by bytes, and, with a data directory, a write-ahead log that
//! every write reaches (fsynced) before it is acknowledged or seen by a watcher.
//!
//! Watchers read the history itself, each from its own position, as the API server's
//! watch cache does: a watcher that stops reading holds a few events, never a growing
//! queue, and one that falls out of the history gets `Compacted` (410 Expired) and starts
//! over with a list.

use super::wal::{Recovered, Wal};
use super::{Entry, Event, EventKind, Listing, Store, StoreError, Watch};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot, watch};

/// Events kept for watchers that start from an older revision (etcd keeps about five
/// minutes; a count is simpler to reason about and bounds memory).
pub const DEFAULT_HISTORY: usize = 100_000;
/// The history's memory budget. A count alone let 200 updates of a 2 MiB ConfigMap hold
/// a gigabyte. 1 GiB keeps 100,000 small events (a small ConfigMap's update costs about
/// 4 KB) and about 95,000 of a pod's (11 KB, its two sides' selector attributes counted):
/// the seconds of history a watcher that fell behind under load resumes from instead of
/// listing every pod again. 256 MiB kept 19,000 pod events, and at 30,000 pods the
/// scheduler, the node agents and the controllers' pod cache all fell out of it and listed
/// every pod again, several times each.
pub const DEFAULT_HISTORY_BYTES: usize = 1 << 30;

/// How much watch history the embedded store keeps: at most `events` events and at most
/// `bytes` bytes of them (as `event_cost` counts), whichever comes first. The newest
/// event is always kept, however large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    pub events: usize,
    pub bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { events: DEFAULT_HISTORY, bytes: DEFAULT_HISTORY_BYTES }
    }
}

/// What the history holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryUsage {
    pub events: usize,
    pub bytes: usize,
    /// Watches from this revision or later can still be served.
    pub oldest: u64,
    /// Watchers that fell out of the history (410 Expired) so far.
    pub expired: u64,
}

/// What one event counts against the history's byte budget: its key; the object it
/// shows (the value written, or for a deletion the one it removed); the value an update
/// replaced (the same bytes as the previous event's value while that is kept, its own
/// once that is gone); 1.5 KB for each of its objects' selector attributes
/// (`SharedAttributes`: the selectable fields and labels, cached once a watcher with a
/// selector reads them; labels beyond about a kilobyte are not counted); and the
/// bookkeeping around them. Values are counted as if nothing but the history held them.
/// Watchers add no copies: they send the stored bytes with the revision written in as
/// they go (`RevisionAt` keeps only where, and the field's few bytes), and a watch that needs another form makes it
/// for itself and lets it go once sent.
pub fn event_cost(event: &Event) -> usize {
    const OVERHEAD: usize = 384;
    const ATTRIBUTES: usize = 1536;
    let len = |bytes: &Option<Bytes>| bytes.as_ref().map_or(0, Bytes::len);
    let sides = usize::from(event.value.is_some()) + usize::from(event.prev.is_some());
    let (shown, replaced) = match &event.value {
        Some(value) => (value.len(), len(&event.prev)),
        None => (len(&event.prev), 0),
    };
    OVERHEAD + event.key.len() + sides * ATTRIBUTES + shown + replaced
}

pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    hub: Arc<Hub>,
    wal: Option<Wal>,
}

pub(super) struct State {
    pub(super) map: BTreeMap<String, (Bytes, u64)>,
    pub(super) revision: u64,
    /// Set when the log could not be written: from then on nothing is acknowledged.
    pub(super) failed: Option<String>,
}

impl State {
    /// The value of a key that must exist, at `expected` if given.
    fn at(&self, key: &str, expected: Option<u64>) -> Result<Bytes, StoreError> {
        let Some((value, current)) = self.map.get(key) else {
            return Err(StoreError::NotFound(key.to_string()));
        };
        match expected {
            Some(expected) if expected != *current => {
                Err(StoreError::Conflict { key: key.to_string(), expected, current: *current })
            }
            _ => Ok(value.clone()),
        }
    }
}

impl MemoryStore {
    /// A store that forgets everything when the process ends.
    pub fn new() -> MemoryStore {
        MemoryStore::with_limits(HistoryLimits::default())
    }

    /// A store keeping at most `history` events (and the default byte budget).
    pub fn with_history(history: usize) -> MemoryStore {
        MemoryStore::with_limits(HistoryLimits { events: history, ..HistoryLimits::default() })
    }

    pub fn with_limits(limits: HistoryLimits) -> MemoryStore {
        let state = State { map: BTreeMap::new(), revision: 1, failed: None };
        MemoryStore { state: Arc::new(Mutex::new(state)), hub: Arc::new(Hub::with_limits(limits, 1)), wal: None }
    }

    /// A store whose every acknowledged write survives a crash: state is recovered from
    /// `dir` (snapshot, then the log after it) and each write is logged and fsynced
    /// before it is acknowledged.
    pub fn open(dir: &Path, history: usize) -> Result<MemoryStore, StoreError> {
        MemoryStore::open_with(dir, HistoryLimits { events: history, ..HistoryLimits::default() })
    }

    /// `open`, with the history's limits.
    pub fn open_with(dir: &Path, limits: HistoryLimits) -> Result<MemoryStore, StoreError> {
        let Recovered { map, revision } = super::wal::recover(dir)?;
        let state = Arc::new(Mutex::new(State { map, revision, failed: None }));
        let hub = Arc::new(Hub::with_limits(limits, revision));
        let wal = Wal::start(dir, Arc::clone(&state), Arc::clone(&hub))?;
        Ok(MemoryStore { state, hub, wal: Some(wal) })
    }

    /// What the watch history holds now.
    pub fn history(&self) -> HistoryUsage {
        self.hub.usage()
    }

    /// The keys stored now, and the bytes of their keys and values (what the live state
    /// costs, before the map's own overhead).
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.map.len(), state.map.iter().map(|(key, (value, _))| key.len() + value.len()).sum())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &state.failed {
            Some(reason) => Err(StoreError::Io(reason.clone())),
            None => Ok(state),
        }
    }

    /// Applies a write already checked against the state, under the state's lock, so
    /// the log and the watchers get writes in revision order.
    fn commit(&self, state: &mut State, event: Event) -> Option<oneshot::Receiver<Result<(), String>>> {
        state.revision = event.revision;
        match event.kind {
            EventKind::Put => {
                let value = event.value.clone().unwrap_or_default();
                state.map.insert(event.key.clone(), (value, event.revision));
            }
            EventKind::Delete => {
                state.map.remove(&event.key);
            }
        }
        let event = Arc::new(event);
        match &self.wal {
            Some(wal) => Some(wal.append(event)),
            None => {
                self.hub.publish(event);
                None
            }
        }
    }

    fn range(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<Listing, StoreError> {
        let state = self.lock()?;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let limit = limit.filter(|&n| n > 0).unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        let mut more = false;
        for (key, (value, revision)) in state.map.range((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(Entry { key: key.clone(), value: value.clone(), revision: *revision });
        }
        Ok(Listing { entries, revision: state.revision, more })
    }

    /// Reads may show only what is on disk: a write not yet fsynced could be gone after
    /// a crash, and its revision given to another write.
    async fn durable(&self, revision: u64) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let mut durable = wal.durable.clone();
        durable
            .wait_for(|&d| d >= revision)
            .await
            .map(drop)
            .map_err(|_| StoreError::Io("the log writer stopped".into()))
    }

    async fn acknowledged(pending: Option<oneshot::Receiver<Result<(), String>>>) -> Result<(), StoreError> {
        match pending {
            None => Ok(()),
            Some(done) => match done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(StoreError::Io(reason)),
                Err(_) => Err(StoreError::Io("the log writer stopped".into())),
            },
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn revision(&self) -> Result<u64, StoreError> {
        let revision = self.lock()?.revision;
        self.durable(revision).await?;
        Ok(revision)
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let entry = self.lock()?.map.get(key).map(|(value, revision)| Entry {
            key: key.to_string(),
            value: value.clone(),
            revision: *revision,
        });
        if let Some(entry) = &entry {
            self.durable(entry.revision).await?;
        }
        Ok(entry)
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<Listing, StoreError> {
        let listing = self.range(prefix, after, limit)?;
        self.durable(listing.revision).await?;
        Ok(listing)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        let (revision, pending) = {
            let mut state = self.lock()?;
            if state.map.contains_key(key) {
                return Err(StoreError::Exists(key.to_string()));
            }
            let revision = state.revision + 1;
            let event = Event::new(EventKind::Put, key.to_string(), Some(value), None, revision);
            (revision, self.commit(&mut state, event))
        };
        Self::acknowledged(pending).await?;
        Ok(revision)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<u64>) -> Result<u64, StoreError> {
        let (revision, pending) = {
            let mut state = self.lock()?;
            let prev = Some(state.at(key, expected)?);
            let revision = state.revision + 1;
            let event = Event::new(EventKind::Put, key.to_string(), Some(value), prev, revision);
            (revision, self.commit(&mut state, event))
        };
        Self::acknowledged(pending).await?;
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Entry, StoreError> {
        let (entry, pending) = {
            let mut state = self.lock()?;
            let prev = state.at(key, expected)?;
            let revision = state.revision + 1;
            let entry = Entry { key: key.to_string(), value: prev.clone(), revision };
            let event = Event::new(EventKind::Delete, key.to_string(), None, Some(prev), revision);
            (entry, self.commit(&mut state, event))
        };
        Self::acknowledged(pending).await?;
        Ok(entry)
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<Watch, StoreError> {
        drop(self.lock()?);
        self.hub.watch(prefix, after)
    }
}

/// Watchers' side: the recent history, and the newest revision for watchers to wait on.
pub(super) struct Hub {
    inner: Mutex<HubInner>,
    newest: watch::Sender<u64>,
}

struct HubInner {
    /// Events in revision order, each with its `event_cost`.
    history: VecDeque<(Arc<Event>, usize)>,
    limits: HistoryLimits,
    /// The sum of the history's costs.
    bytes: usize,
    /// Events up to this revision are gone from the history.
    compacted: u64,
    /// Watchers told their position is gone from the history (410 Expired): each lists
    /// everything again, the costliest thing a watcher can do.
    expired: u64,
}

/// Events queued for one watcher's reader, at most, and their cost at most (the first
/// event is sent whatever its size). Events are shared with the history (an `Arc` and
/// `Bytes`), so this bounds what a watcher that stops reading keeps alive after the
/// history lets go of it: with the batch it is reading, twice this.
const WATCHER_BUFFER: usize = 1024;
const WATCHER_BYTES: usize = 4 << 20;
/// Events looked at per hold of the history's lock, so that a watcher far behind does
/// not stall writers.
const SCAN: usize = 4096;

impl Hub {
    /// A hub keeping `capacity` events and the default byte budget; `revision` is the
    /// store's, and watches from before it are refused.
    #[allow(dead_code, reason = "the log's tests make hubs so")]
    pub(super) fn new(capacity: usize, revision: u64) -> Hub {
        Hub::with_limits(HistoryLimits { events: capacity, ..HistoryLimits::default() }, revision)
    }

    pub(super) fn with_limits(limits: HistoryLimits, revision: u64) -> Hub {
        let limits = HistoryLimits { events: limits.events.max(1), bytes: limits.bytes };
        Hub {
            inner: Mutex::new(HubInner { history: VecDeque::new(), limits, bytes: 0, compacted: revision, expired: 0 }),
            newest: watch::Sender::new(revision),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usage(&self) -> HistoryUsage {
        let inner = self.lock();
        HistoryUsage {
            events: inner.history.len(),
            bytes: inner.bytes,
            oldest: inner.compacted,
            expired: inner.expired,
        }
    }

    /// Adds a write to the history (callers publish in revision order) and wakes the
    /// watchers.
    pub(super) fn publish(&self, event: Arc<Event>) {
        let revision = event.revision;
        let evicted = {
            let mut inner = self.lock();
            let cost = event_cost(&event);
            inner.bytes += cost;
            inner.history.push_back((event, cost));
            let mut evicted = Vec::new();
            while inner.history.len() > 1
                && (inner.history.len() > inner.limits.events || inner.bytes > inner.limits.bytes)
                && let Some((oldest, cost)) = inner.history.pop_front()
            {
                inner.bytes -= cost;
                inner.compacted = oldest.revision;
                evicted.push(oldest);
            }
            evicted
        };
        // Large values are freed outside the lock watchers read under.
        drop(evicted);
        self.newest.send_replace(revision);
    }

    /// The next events under `prefix` after `last` into `batch` (at most a watcher's
    /// budget of them), moving `last` past what was looked at; `Compacted` when the
    /// history no longer holds what follows `last`.
    fn read(&self, prefix: &str, last: &mut u64, batch: &mut Vec<(Arc<Event>, usize)>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if *last < inner.compacted {
            inner.expired += 1;
            return Err(StoreError::Compacted { requested: *last, oldest: inner.compacted + 1 });
        }
        let start = inner.history.partition_point(|(e, _)| e.revision <= *last);
        let mut bytes = 0;
        for (event, cost) in inner.history.range(start..).take(SCAN) {
            *last = event.revision;
            if event.key.starts_with(prefix) {
                batch.push((Arc::clone(event), *cost));
                bytes += cost;
                if batch.len() == WATCHER_BUFFER || bytes >= WATCHER_BYTES {
                    break;
                }
            }
        }
        Ok(())
    }

    fn watch(self: &Arc<Self>, prefix: &str, after: u64) -> Result<Watch, StoreError> {
        let compacted = self.lock().compacted;
        if after < compacted {
            self.lock().expired += 1;
            return Err(StoreError::Compacted { requested: after, oldest: compacted + 1 });
        }
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let mut newest = self.newest.subscribe();
        let hub = Arc::clone(self);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = after;
            let mut batch = Vec::new();
            let mut queued = Queued::default();
            loop {
                // Marked seen before reading: a write after the read still wakes us.
                newest.borrow_and_update();
                if let Err(error) = hub.read(&prefix, &mut last, &mut batch) {
                    // Fell out of the history (a reader too slow for the write rate):
                    // after what is queued, the watcher learns it must start over.
                    let _ = tx.send(Err(error)).await;
                    return;
                }
                if batch.is_empty() {
                    tokio::select! {
                        changed = newest.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        // The watcher is gone: stop, even when nothing is being written.
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                for (event, cost) in batch.drain(..) {
                    if queued.send(&tx, Event::clone(&event), cost).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

type Sender = mpsc::Sender<Result<Event, StoreError>>;

/// The costs of the events a watcher's channel holds, oldest first: its reader has not
/// taken them yet.
#[derive(Default)]
struct Queued {
    costs: VecDeque<usize>,
    bytes: usize,
}

impl Queued {
    /// Forgets what the reader took: only this task sends, so the channel's used slots
    /// are the newest of the events sent.
    fn settle(&mut self, tx: &Sender) {
        let waiting = tx.max_capacity() - tx.capacity();
        while self.costs.len() > waiting
            && let Some(cost) = self.costs.pop_front()
        {
            self.bytes -= cost;
        }
    }

    /// Sends an event once the channel has room for it, in slots and in bytes; `Err`
    /// when the reader is gone.
    async fn send(&mut self, tx: &Sender, event: Event, cost: usize) -> Result<(), ()> {
        loop {
            self.settle(tx);
            if self.costs.is_empty() || self.bytes + cost <= WATCHER_BYTES {
                break;
            }
            // Over budget: wait until the reader takes one more event, that is until one
            // more slot than now is free (at most all of them, as one is taken).
            let free = tx.capacity();
            drop(tx.reserve_many(free + 1).await.map_err(drop)?);
        }
        tx.send(Ok(event)).await.map_err(drop)?;
        self.costs.push_back(cost);
        self.bytes += cost;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::from(text.to_string())
    }

    #[tokio::test]
    async fn revisions_count_every_write() {
        let store = MemoryStore::new();
        let r1 = store.create("/a/1", b("one")).await.unwrap();
        let r2 = store.create("/a/2", b("two")).await.unwrap();
        assert_eq!(r2, r1 + 1);
        assert_eq!(store.create("/a/1", b("again")).await, Err(StoreError::Exists("/a/1".into())));
        let r3 = store.update("/a/1", b("uno"), Some(r1)).await.unwrap();
        assert_eq!(
            store.update("/a/1", b("stale"), Some(r1)).await,
            Err(StoreError::Conflict { key: "/a/1".into(), expected: r1, current: r3 })
        );
        assert_eq!(store.get("/a/1").await.unwrap().unwrap().value, b("uno"));
        let deleted = store.delete("/a/1", None).await.unwrap();
        assert_eq!((deleted.value, deleted.revision), (b("uno"), r3 + 1));
        assert_eq!(store.get("/a/1").await.unwrap(), None);
        assert_eq!(store.revision().await.unwrap(), r3 + 1);
    }

    #[tokio::test]
    async fn lists_are_ranges_in_key_order_with_pages() {
        let store = MemoryStore::new();
        for key in ["/p/c", "/p/a", "/q/a", "/p/b", "/pa/x"] {
            store.create(key, b(key)).await.unwrap();
        }
        let all = store.list("/p/", None, None).await.unwrap();
        let keys: Vec<_> = all.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["/p/a", "/p/b", "/p/c"]);
        let first = store.list("/p/", None, Some(2)).await.unwrap();
        assert!(first.more);
        let rest = store.list("/p/", Some(&first.entries[1].key), Some(2)).await.unwrap();
        assert_eq!(rest.entries.len(), 1);
        assert!(!rest.more);
    }

    #[tokio::test]
    async fn a_watch_sees_exactly_the_writes_after_its_revision() {
        let store = MemoryStore::new();
        let start = store.create("/w/0", b("0")).await.unwrap();
        let mut watch = store.watch("/w/", start).await.unwrap();
        let mut written = Vec::new();
        for i in 1..=50 {
            written.push(store.create(&format!("/w/{i}"), b("x")).await.unwrap());
            store.create(&format!("/other/{i}"), b("x")).await.unwrap();
        }
        for expected in written {
            let event = watch.recv().await.unwrap().unwrap();
            assert_eq!(event.revision, expected);
        }
        // A watch from the past replays the history.
        let mut replay = store.watch("/w/", start - 1).await.unwrap();
        assert_eq!(replay.recv().await.unwrap().unwrap().revision, start);
    }

    #[tokio::test]
    async fn a_watch_older_than_the_history_is_refused() {
        let store = MemoryStore::with_history(3);
        let first = store.create("/k/1", b("1")).await.unwrap();
        for i in 2..=5 {
            store.create(&format!("/k/{i}"), b("x")).await.unwrap();
        }
        assert!(matches!(store.watch("/k/", first).await, Err(StoreError::Compacted { .. })));
        assert!(store.watch("/k/", first + 2).await.is_ok());
    }

    #[tokio::test]
    async fn a_slow_watcher_reads_on_from_the_history() {
        let store = MemoryStore::new();
        let mut watch = store.watch("/s/", 1).await.unwrap();
        let count = 3 * WATCHER_BUFFER + SCAN + 500;
        for i in 0..count {
            store.create(&format!("/s/{i:06}"), b("x")).await.unwrap();
            store.create(&format!("/t/{i:06}"), b("x")).await.unwrap();
        }
        let mut last = 0;
        for _ in 0..count {
            let event = watch.recv().await.unwrap().unwrap();
            assert!(event.key.starts_with("/s/") && event.revision > last, "{event:?}");
            last = event.revision;
        }
    }

    /// Values of this size, counted while alive.
    static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    struct Counted(Vec<u8>);

    impl Counted {
        fn bytes(size: usize) -> Bytes {
            LIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Bytes::from_owner(Counted(vec![b'x'; size]))
        }
    }

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_history_is_bounded_by_bytes_and_a_watch_from_before_it_expires() {
        let limits = HistoryLimits { events: 1_000, bytes: 16 << 20 };
        let store = MemoryStore::with_limits(limits);
        let first = store.create("/big/a", Bytes::from(vec![b'x'; 1 << 20])).await.unwrap();
        for _ in 0..200 {
            store.update("/big/a", Bytes::from(vec![b'y'; 1 << 20]), None).await.unwrap();
        }
        let usage = store.history();
        assert!(usage.bytes <= limits.bytes, "{usage:?}");
        // Each update counts its value and the one it replaced: 2 MiB (watchers keep no
        // encodings of their own with it).
        assert_eq!(usage.events, 7, "{usage:?}");
        assert_eq!(usage.expired, 0);
        let mut expired = store.watch("/big/", first).await;
        assert!(matches!(expired, Err(StoreError::Compacted { requested, .. }) if requested == first), "{expired:?}");
        assert_eq!(store.history().expired, 1, "a watcher that fell out of the history is counted");
        expired = store.watch("/big/", usage.oldest).await;
        assert!(expired.is_ok());
        // A count limit still holds for small events, and one event larger than the
        // budget is kept: a watcher at the revision before it can still be served.
        let store = MemoryStore::with_limits(HistoryLimits { events: 10, bytes: 1 << 20 });
        for i in 0..50 {
            store.create(&format!("/small/{i}"), b("x")).await.unwrap();
        }
        assert_eq!(store.history().events, 10);
        let before = store.revision().await.unwrap();
        store.create("/huge", Bytes::from(vec![b'z'; 2 << 20])).await.unwrap();
        assert_eq!(store.history().events, 1);
        let mut watch = store.watch("/huge", before).await.unwrap();
        assert_eq!(watch.recv().await.unwrap().unwrap().key, "/huge");
    }

    #[tokio::test]
    async fn a_watcher_that_never_reads_keeps_little_alive_then_expires() {
        let store = MemoryStore::with_limits(HistoryLimits { events: 1_000, bytes: 8 << 20 });
        let start = store.create("/slow/a", Counted::bytes(1 << 20)).await.unwrap();
        let mut watch = store.watch("/slow/", start).await.unwrap();
        for _ in 0..50 {
            store.update("/slow/a", Counted::bytes(1 << 20), None).await.unwrap();
            // Let the watcher's task run, as it would between writes on a busy server.
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The store's value, the history (two events of 3 MiB counted, three values) and the
        // watcher's few events: not the fifty written.
        let live = LIVE.load(std::sync::atomic::Ordering::SeqCst);
        assert!(live <= 8, "{live} values of 1 MiB alive");
        let mut received = 0;
        let error = loop {
            match watch.recv().await {
                Some(Ok(_)) => received += 1,
                Some(Err(error)) => break error,
                None => panic!("the watch ended without an error after {received} events"),
            }
        };
        assert!(received < 5, "{received} events");
        assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");
        assert!(watch.recv().await.is_none());
    }
}
