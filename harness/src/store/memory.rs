//! The embedded store: a sorted map under one lock, a bounded history of events for
//! watchers, and, with a data directory, a write-ahead log that every write reaches
//! (fsynced) before it is acknowledged or seen by a watcher.

use super::wal::{Recovered, Wal};
use super::{Entry, Event, EventKind, Listing, Store, StoreError, Watch};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Events kept for watchers that start from an older revision (etcd keeps about five
/// minutes; a count is simpler to reason about and bounds memory).
pub const DEFAULT_HISTORY: usize = 100_000;

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
        MemoryStore::with_history(DEFAULT_HISTORY)
    }

    pub fn with_history(history: usize) -> MemoryStore {
        let state = State { map: BTreeMap::new(), revision: 1, failed: None };
        MemoryStore { state: Arc::new(Mutex::new(state)), hub: Arc::new(Hub::new(history, 1)), wal: None }
    }

    /// A store whose every acknowledged write survives a crash: state is recovered from
    /// `dir` (snapshot, then the log after it) and each write is logged and fsynced
    /// before it is acknowledged.
    pub fn open(dir: &Path, history: usize) -> Result<MemoryStore, StoreError> {
        let Recovered { map, revision } = super::wal::recover(dir)?;
        let state = Arc::new(Mutex::new(State { map, revision, failed: None }));
        let hub = Arc::new(Hub::new(history, revision));
        let wal = Wal::start(dir, Arc::clone(&state), Arc::clone(&hub))?;
        Ok(MemoryStore { state, hub, wal: Some(wal) })
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

/// Watchers' side: the recent history and a broadcast of new events.
pub(super) struct Hub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    /// Events up to this revision are gone from the history.
    compacted: u64,
    live: broadcast::Sender<Arc<Event>>,
}

/// The history a new watcher replays, and its subscription to what follows.
type CatchUp = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Events a slow watcher may fall behind by before it re-reads the history.
const BROADCAST_BUFFER: usize = 4096;
/// Events queued for one watcher's connection.
const WATCHER_BUFFER: usize = 1024;

impl Hub {
    pub(super) fn new(capacity: usize, revision: u64) -> Hub {
        let (live, _) = broadcast::channel(BROADCAST_BUFFER);
        Hub {
            inner: Mutex::new(HubInner {
                history: VecDeque::new(),
                capacity: capacity.max(1),
                compacted: revision,
                live,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn publish(&self, event: Arc<Event>) {
        let mut inner = self.lock();
        if inner.history.len() == inner.capacity
            && let Some(oldest) = inner.history.pop_front()
        {
            inner.compacted = oldest.revision;
        }
        inner.history.push_back(Arc::clone(&event));
        // No receivers is not an error: nobody is watching.
        let _ = inner.live.send(event);
    }

    /// The events after `after` still in the history, and a subscription to what comes
    /// next, taken under one lock so nothing falls between them.
    fn catch_up(&self, prefix: &str, after: u64) -> Result<CatchUp, StoreError> {
        let inner = self.lock();
        if after < inner.compacted {
            return Err(StoreError::Compacted { requested: after, oldest: inner.compacted + 1 });
        }
        let start = inner.history.partition_point(|e| e.revision <= after);
        let replay = inner.history.range(start..).filter(|e| e.key.starts_with(prefix)).cloned().collect();
        Ok((replay, inner.live.subscribe()))
    }

    fn watch(self: &Arc<Self>, prefix: &str, after: u64) -> Result<Watch, StoreError> {
        let (mut replay, mut live) = self.catch_up(prefix, after)?;
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let hub = Arc::clone(self);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = after;
            loop {
                for event in replay.drain(..) {
                    if event.revision <= last {
                        continue;
                    }
                    last = event.revision;
                    if tx.send(Ok(Event::clone(&event))).await.is_err() {
                        return;
                    }
                }
                let received = tokio::select! {
                    received = live.recv() => received,
                    // The watcher is gone: stop, even when nothing is being written.
                    _ = tx.closed() => return,
                };
                match received {
                    Ok(event) => {
                        if event.revision > last {
                            if event.key.starts_with(&prefix) {
                                replay.push(event);
                            } else {
                                // Seen and not wanted: a catch-up after a lag starts after it.
                                last = event.revision;
                            }
                        }
                    }
                    // Fell behind the broadcast: read the rest from the history, if it
                    // still holds it.
                    Err(broadcast::error::RecvError::Lagged(_)) => match hub.catch_up(&prefix, last) {
                        Ok((events, receiver)) => {
                            replay = events;
                            live = receiver;
                        }
                        Err(error) => {
                            let _ = tx.send(Err(error)).await;
                            return;
                        }
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
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
    async fn a_slow_watcher_catches_up_from_the_history() {
        let store = MemoryStore::new();
        let mut watch = store.watch("/s/", 1).await.unwrap();
        let count = BROADCAST_BUFFER + WATCHER_BUFFER + 500;
        for i in 0..count {
            store.create(&format!("/s/{i:06}"), b("x")).await.unwrap();
        }
        let mut last = 1;
        for _ in 0..count {
            let event = watch.recv().await.unwrap().unwrap();
            assert_eq!(event.revision, last + 1);
            last = event.revision;
        }
    }
}
