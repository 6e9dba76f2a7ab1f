//! The store: the only component that keeps state. Keys are strings, values bytes, and
//! every write takes the next revision of one counter, which the API server shows as
//! `resourceVersion` (as etcd's `mod_revision` is in Kubernetes).
//!
//! One trait, so the API server does not care where state lives: `memory::MemoryStore`
//! (in memory, and with a data directory, durable through `wal`) or `etcd::EtcdStore`.

pub mod etcd;
pub mod memory;
pub mod wal;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// A key's value and the revision that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Bytes,
    pub revision: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One write, as watchers see it. A delete carries the value that was deleted in
/// `prev`; a put carries the value it replaced, if any, so that watchers with a
/// selector can tell an object leaving their selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    pub value: Option<Bytes>,
    pub prev: Option<Bytes>,
    pub revision: u64,
    /// Where the API server writes the revision into the event's objects as it sends
    /// them, found by the first watcher that needs it.
    pub revision_at: RevisionAt,
    /// What selectors read of its objects, worked out by the first watcher with a
    /// selector: a thousand node agents each watching their own pods cost one decoding
    /// of each event, not a thousand.
    pub attributes: SharedAttributes,
}

impl Event {
    pub fn new(kind: EventKind, key: String, value: Option<Bytes>, prev: Option<Bytes>, revision: u64) -> Event {
        Event {
            kind,
            key,
            value,
            prev,
            revision,
            revision_at: RevisionAt::default(),
            attributes: SharedAttributes::default(),
        }
    }
}

/// What label and field selectors read of an object: its labels, and the value of each
/// field its kind can be selected by (Kubernetes' `GetAttrs`), as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub labels: std::collections::BTreeMap<String, String>,
    pub fields: Vec<(&'static str, String)>,
}

/// An event's objects' attributes, worked out once and shared by the clones of the event,
/// one per side. A cache, like `RevisionAt`: it never makes two events differ, and the
/// history counts it with the event (see `memory::event_cost`).
#[derive(Clone, Debug, Default)]
pub struct SharedAttributes(std::sync::Arc<[std::sync::OnceLock<ReadFor>; 2]>);

/// Attributes, with the kind they were read for.
type ReadFor = (&'static str, std::sync::Arc<Attributes>);

impl SharedAttributes {
    /// The attributes of `side` as read for `kind` (which fields are selectable), from
    /// `read` if no watcher of that kind has yet; failures are not kept. The watchers of
    /// one event are of one kind; one of another is served but not cached.
    pub fn get_or_try<E>(
        &self,
        side: Side,
        kind: &'static str,
        read: impl FnOnce() -> Result<Attributes, E>,
    ) -> Result<std::sync::Arc<Attributes>, E> {
        let slot = &self.0[side as usize];
        match slot.get() {
            Some((cached, attributes)) if *cached == kind => Ok(std::sync::Arc::clone(attributes)),
            Some(_) => Ok(std::sync::Arc::new(read()?)),
            None => {
                let attributes = std::sync::Arc::new(read()?);
                // Another watcher may have filled the slot meanwhile: its attributes serve
                // only if they were read for the same kind.
                let (cached, shared) = slot.get_or_init(|| (kind, std::sync::Arc::clone(&attributes)));
                Ok(if *cached == kind { std::sync::Arc::clone(shared) } else { attributes })
            }
        }
    }
}

impl PartialEq for SharedAttributes {
    fn eq(&self, _: &SharedAttributes) -> bool {
        true
    }
}

impl Eq for SharedAttributes {}

/// Which of an event's objects a line shows: the value written, or the one it replaced
/// (an update leaving a watcher's selection, a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Value,
    Prev,
}

/// Where each of an event's objects takes its `resourceVersion` when the API server sends
/// the stored bytes as they are (`apiserver::stored::revision_at`), found by the first
/// watcher that sends it, with the bytes written there: a hundred watchers scan each
/// object once and share one copy of its revision's field. A cache: it never makes two
/// events differ. What it holds is a position and a few dozen bytes per side, within
/// what the history's byte budget counts for an event's bookkeeping (see
/// `memory::event_cost`).
#[derive(Clone, Debug, Default)]
pub struct RevisionAt(std::sync::Arc<[std::sync::OnceLock<Option<Splice>>; 2]>);

/// Where in an object its revision goes, and the bytes written there.
pub type Splice = (usize, Bytes);

impl RevisionAt {
    /// Where the revision goes in the object on `side` and what is written there, found
    /// by `find` if no watcher has yet (`None`: the bytes are not in the form that can
    /// take it).
    pub fn get_or_find(&self, side: Side, find: impl FnOnce() -> Option<Splice>) -> Option<Splice> {
        self.0[side as usize].get_or_init(find).clone()
    }
}

impl PartialEq for RevisionAt {
    fn eq(&self, _: &RevisionAt) -> bool {
        true
    }
}

impl Eq for RevisionAt {}

/// A page of a range read. `revision` is the store's revision when it was read.
#[derive(Clone, Debug)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub revision: u64,
    /// More keys follow the last one returned.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{key} is at revision {current}, not {expected}")]
    Conflict { key: String, expected: u64, current: u64 },
    #[error("revision {requested} is no longer in the history; the oldest kept is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    #[error("storage failed: {0}")]
    Io(String),
}

/// Events after a revision, in revision order, until the receiver is dropped. A
/// watcher that falls out of the history window gets one `Compacted` error and then
/// the end of the stream.
pub type Watch = mpsc::Receiver<Result<Event, StoreError>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest acknowledged write.
    async fn revision(&self) -> Result<u64, StoreError>;

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Keys under `prefix`, in key order, strictly after `after`, at most `limit`.
    async fn list(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<Listing, StoreError>;

    /// Writes a key that must not exist; returns the write's revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError>;

    /// Replaces a key that must exist, and, with `expected`, must still be at that
    /// revision (compare-and-swap).
    async fn update(&self, key: &str, value: Bytes, expected: Option<u64>) -> Result<u64, StoreError>;

    /// Deletes a key (at `expected`, if given); returns the deleted value with the
    /// revision of the delete.
    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Entry, StoreError>;

    /// Every write under `prefix` with a revision above `after`.
    async fn watch(&self, prefix: &str, after: u64) -> Result<Watch, StoreError>;
}
