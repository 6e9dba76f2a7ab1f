//! Watches: newline-delimited JSON events from a revision on, as long as the client
//! stays (or `timeoutSeconds`), with bookmarks when asked. A revision older than the
//! store's history is answered, as Kubernetes does, with an `ERROR` event carrying a
//! 410 `Status` in the stream; so is a watcher that fell out of the history because it
//! read too slowly.
//!
//! Memory per watch is bounded: lines wait for the client in an outbox of at most
//! `CLIENT_BYTES`, and the store stops handing events to a watch whose outbox is full
//! (its watcher then lags, and expires once the history lets go of its position). A JSON
//! watch of a kind served as it is stored sends the stored bytes themselves, the revision
//! written in between two slices of them as they are sent (`stored::revision_at`; where,
//! and the field written there, made once per event for every watch and kept in the
//! event's `RevisionAt`): no watch decodes or encodes an object for it (a selector reads
//! only the fields it compares), and a large one goes out as slices of the store's copy. Other kinds are encoded by each
//! watch; the encodings of large objects are shared while any watch holds one
//! (`SharedObjects`), and none is kept with the history.

use super::objects::{Filter, flag, from_bytes, from_entry, store_error, with_type};
use super::resources::Resource;
use super::status::ApiError;
use super::stored;
use super::table::{self, Include};
use super::{ApiServer, Query, Representation, Target};
use crate::store::{Entry, Event, EventKind, Side, StoreError, Watch};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Lines waiting for a slow client, at most, and their bytes at most (a larger line
/// waits alone). Past that the watch stops reading the store's events.
const CLIENT_BUFFER: usize = 256;
const CLIENT_BYTES: usize = 4 << 20;
/// Objects this large go out as their own chunks, never copied: the store's bytes, or an
/// encoding shared by the watches sending it; smaller lines are copied whole into a frame,
/// which costs less than a chunk each.
const SPLIT_FROM: usize = 16 << 10;
/// Small lines already waiting go out together, in one chunk of about this much at most.
/// A chunk per line made the client's connection hand its reader one line per turn, so a
/// watcher of a busy kind fell behind the writers and out of the history (a 100,000-pod
/// run: every watcher of pods, some more than once, each then listing everything again).
const FRAME_BYTES: usize = 64 << 10;

/// The type of an event a watcher is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }

    /// What comes before the object in the event's line, as Kubernetes writes it.
    fn head(self) -> &'static [u8] {
        match self {
            Kind::Added => br#"{"type":"ADDED","object":"#,
            Kind::Modified => br#"{"type":"MODIFIED","object":"#,
            Kind::Deleted => br#"{"type":"DELETED","object":"#,
        }
    }
}

const TAIL: &[u8] = b"}\n";

/// One line of the stream.
enum Line {
    /// A whole line made for this watch (bookmarks, errors, tables, metadata).
    Text(Bytes),
    /// An event around an object's JSON, which may be shared with other watches.
    Event(Kind, Bytes),
    /// An event around an object's stored bytes, the revision written in as it is sent.
    Stored(Kind, Stored),
}

/// A stored object as a watch sends it: `bytes[..at]`, `field`, `bytes[at..]`, where
/// `field` is `"resourceVersion":"<revision>"` (and a comma): the same JSON as decoding
/// the object and encoding it again (`stored::revised`), sharing the store's bytes.
struct Stored {
    bytes: Bytes,
    at: usize,
    field: Bytes,
}

impl Stored {
    /// `at` is where `stored::revision_at` says the bytes take their revision.
    fn new(bytes: Bytes, at: usize, revision: u64) -> Stored {
        let field = Stored::field(&bytes, at, revision);
        Stored { bytes, at, field }
    }

    /// What goes into `bytes` at `at`: made once per event, shared by its watches.
    fn field(bytes: &[u8], at: usize, revision: u64) -> Bytes {
        let mut field = Vec::with_capacity(40);
        stored::write_revision(bytes, at, revision, &mut field);
        Bytes::from(field)
    }

    fn len(&self) -> usize {
        self.bytes.len() + self.field.len()
    }
}

impl Line {
    fn len(&self) -> usize {
        match self {
            Line::Text(text) => text.len(),
            Line::Event(kind, object) => kind.head().len() + object.len() + TAIL.len(),
            Line::Stored(kind, object) => kind.head().len() + object.len() + TAIL.len(),
        }
    }

    /// A line sent as chunks of its own, never copied into a frame: an event around a
    /// large shared object, or a large line made for this watch.
    fn is_split(&self) -> bool {
        match self {
            Line::Text(text) => text.len() >= SPLIT_FROM,
            Line::Event(_, object) => object.len() >= SPLIT_FROM,
            Line::Stored(_, object) => object.len() >= SPLIT_FROM,
        }
    }

    /// The chunks of the body, last first.
    fn chunks(self) -> Vec<Bytes> {
        match self {
            Line::Event(kind, object) if object.len() >= SPLIT_FROM => {
                vec![Bytes::from_static(TAIL), object, Bytes::from_static(kind.head())]
            }
            Line::Stored(kind, Stored { bytes, at, field }) if bytes.len() + field.len() >= SPLIT_FROM => vec![
                Bytes::from_static(TAIL),
                bytes.slice(at..),
                field,
                bytes.slice(..at),
                Bytes::from_static(kind.head()),
            ],
            Line::Text(text) => vec![text],
            line => {
                let mut frame = Vec::with_capacity(line.len());
                line.append_to(&mut frame);
                vec![Bytes::from(frame)]
            }
        }
    }

    /// Copies the whole line onto the end of `frame`.
    fn append_to(&self, frame: &mut Vec<u8>) {
        match self {
            Line::Text(text) => frame.extend_from_slice(text),
            Line::Event(kind, object) => {
                frame.extend_from_slice(kind.head());
                frame.extend_from_slice(object);
                frame.extend_from_slice(TAIL);
            }
            Line::Stored(kind, Stored { bytes, at, field }) => {
                frame.extend_from_slice(kind.head());
                frame.extend_from_slice(&bytes[..*at]);
                frame.extend_from_slice(field);
                frame.extend_from_slice(&bytes[*at..]);
                frame.extend_from_slice(TAIL);
            }
        }
    }
}

/// The body's next chunk: what is left of a split line, else the next line together with
/// the small lines already waiting behind it (up to about `FRAME_BYTES`). `rest` holds
/// chunks still to send, last first.
async fn next_chunk(rx: &mut mpsc::Receiver<(Line, OwnedSemaphorePermit)>, rest: &mut Vec<Bytes>) -> Option<Bytes> {
    if let Some(chunk) = rest.pop() {
        return Some(chunk);
    }
    // Each line's permit goes back to the outbox's budget as the line is taken.
    let (line, _permit) = rx.recv().await?;
    if line.is_split() {
        *rest = line.chunks();
        return rest.pop();
    }
    let mut size = line.len();
    let mut lines = vec![line];
    while size < FRAME_BYTES {
        let Ok((line, _permit)) = rx.try_recv() else { break };
        if line.is_split() {
            // The frame goes first, then the large line's own chunks.
            *rest = line.chunks();
            break;
        }
        size += line.len();
        lines.push(line);
    }
    if let [Line::Text(text)] = lines.as_slice() {
        return Some(text.clone());
    }
    let mut frame = Vec::with_capacity(size);
    for line in &lines {
        line.append_to(&mut frame);
    }
    Some(Bytes::from(frame))
}

/// The watch's side of its lines' way to the client.
struct Outbox {
    tx: mpsc::Sender<(Line, OwnedSemaphorePermit)>,
    /// One permit per byte queued.
    budget: Arc<Semaphore>,
}

/// The client is gone.
struct Gone;

fn outbox() -> (Outbox, mpsc::Receiver<(Line, OwnedSemaphorePermit)>) {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    (Outbox { tx, budget: Arc::new(Semaphore::new(CLIENT_BYTES)) }, rx)
}

impl Outbox {
    /// Queues a line once there is room for it; a client that hangs up meanwhile ends
    /// the wait.
    async fn send(&self, line: Line) -> Result<(), Gone> {
        let bytes = u32::try_from(line.len().min(CLIENT_BYTES)).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            permit = Arc::clone(&self.budget).acquire_many_owned(bytes) => permit.map_err(|_| Gone)?,
            _ = self.tx.closed() => return Err(Gone),
        };
        self.tx.send((line, permit)).await.map_err(|_| Gone)
    }
}

/// Encodings of stored objects for initial events, shared while any watch still holds
/// one: a thousand watches starting on a namespace that holds a 3 MiB object hold one
/// copy of it, not a thousand. Held weakly, so it keeps nothing alive by itself.
#[derive(Default)]
pub(super) struct SharedObjects {
    map: Mutex<HashMap<ObjectId, Weak<Vec<u8>>>>,
}

/// A stored object at a revision, in one form (see `Encoder::form`).
/// A stored object at a revision, which side of its event (an update leaving a selection
/// shows the value it replaced, at the update's revision), in one form (see
/// `Encoder::form`).
type ObjectId = (String, u64, usize, usize);

/// Objects smaller than this are encoded by each watch: not worth an entry.
const SHARE_FROM: usize = 16 << 10;
/// Entries at which dead ones are swept.
const SWEEP_AT: usize = 256;

/// A shared encoding as the `Bytes` a body sends.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SharedObjects {
    /// The encoding of the object `id` names (key, revision, side, length of its stored
    /// bytes, form), made by `encode` unless a watch holds it already.
    fn get_or_try(
        &self,
        (key, revision, side, len, form): (&str, u64, Side, usize, usize),
        encode: impl FnOnce() -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        if len < SHARE_FROM {
            return encode();
        }
        let id = (key.to_string(), revision, side as usize, form);
        let lock = || self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shared) = lock().get(&id).and_then(Weak::upgrade) {
            return Ok(Bytes::from_owner(SharedBytes(shared)));
        }
        let encoded = Arc::new(encode()?.to_vec());
        let mut map = lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, weak| weak.strong_count() > 0);
        }
        map.insert(id, Arc::downgrade(&encoded));
        Ok(Bytes::from_owner(SharedBytes(encoded)))
    }
}

struct Encoder {
    resource: &'static Resource,
    representation: Representation,
    include: Include,
    /// JSON of a kind served as it is stored (`conversion::served_as_stored`): objects go
    /// out as their stored bytes.
    as_stored: bool,
}

impl Encoder {
    /// Which encodings of an object this watch can share: every served kind is one
    /// static row, so its address names it.
    fn form(&self) -> usize {
        std::ptr::from_ref(self.resource) as usize
    }

    /// An object's JSON as JSON watches send it, in the watched version.
    fn object(&self, mut object: Value) -> Bytes {
        super::conversion::rename(self.resource, &mut object);
        Bytes::from(with_type(self.resource, object).to_string())
    }

    /// A whole line, for the representations made per watch.
    fn line(&self, kind: Kind, object: Value) -> Line {
        let object = match self.representation {
            Representation::Json => return Line::Event(kind, self.object(object)),
            Representation::Metadata => super::partial(&object),
            Representation::Table => table::table(self.resource, &[object], None, None, self.include),
        };
        let mut line = json!({"type": kind.name(), "object": object}).to_string();
        line.push('\n');
        Line::Text(Bytes::from(line))
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Line {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        let mut line = json!({"type": "BOOKMARK", "object": object}).to_string();
        line.push('\n');
        Line::Text(Bytes::from(line))
    }
}

fn error_line(error: &ApiError) -> Line {
    let mut line = json!({"type": "ERROR", "object": error.to_status()}).to_string();
    line.push('\n');
    Line::Text(Bytes::from(line))
}

/// What a store event means to a watcher: the type it is sent as, and which of the
/// event's objects. With a selector an object entering the selection is ADDED, one
/// leaving it DELETED.
type Meaning = Option<(Kind, Side)>;

fn translate(filter: &Filter, everything: bool, event: &Event) -> Result<Meaning, ApiError> {
    match event.kind {
        EventKind::Put if everything => {
            let kind = if event.prev.is_some() { Kind::Modified } else { Kind::Added };
            Ok(Some((kind, Side::Value)))
        }
        EventKind::Delete if everything => Ok(Some((Kind::Deleted, Side::Prev))),
        EventKind::Put => {
            let now = selected(filter, event, Side::Value)?;
            let before = event.prev.is_some() && selected(filter, event, Side::Prev)?;
            Ok(match (now, before) {
                (true, true) => Some((Kind::Modified, Side::Value)),
                (true, false) => Some((Kind::Added, Side::Value)),
                // Leaving the selection: the last state that matched, at this revision.
                (false, true) => Some((Kind::Deleted, Side::Prev)),
                (false, false) => None,
            })
        }
        EventKind::Delete => Ok(selected(filter, event, Side::Prev)?.then_some((Kind::Deleted, Side::Prev))),
    }
}

/// Whether the object on `side` of the event is in the filter's selection, from its
/// attributes: read by the first watcher with a selector, shared by all (the watchers of a
/// kind share its selectable fields). Only what selectors compare is decoded
/// (`Filter::peek`): a watch sends the stored bytes, and one that sends another form
/// decodes the object for that.
fn selected(filter: &Filter, event: &Event, side: Side) -> Result<bool, ApiError> {
    let attributes = event.attributes.get_or_try(side, filter.kind(), || {
        Ok::<_, ApiError>(filter.attributes(&filter.peek(&side_of(event, side))?))
    })?;
    Ok(filter.matches_attributes(&attributes))
}

/// The event's object on `side` (the store's bytes, shared).
fn side_of(event: &Event, side: Side) -> Bytes {
    let bytes = match side {
        Side::Value => &event.value,
        Side::Prev => &event.prev,
    };
    bytes.clone().unwrap_or_default()
}

/// One watch's stream, made by its own task.
struct Watcher {
    server: Arc<ApiServer>,
    encoder: Encoder,
    filter: Filter,
    /// No selector: every event is sent, and decided without decoding it.
    everything: bool,
    /// Objects change version through a conversion webhook: each is decoded, converted
    /// and encoded for this watch alone.
    webhook: bool,
    bookmarks: bool,
    send_initial: bool,
    from: u64,
    /// Who watches (its field manager name, from its user agent), for the profile's count
    /// of watchers that fell out of the history.
    client: String,
}

/// Counts, in the control plane's profile, a watcher that fell out of the history (it
/// lists everything again): which client and which resource, since at scale one that
/// lags is the cost to find.
fn count_expired(server: &ApiServer, resource: &Resource, client: &str) {
    if let Some(profile) = &server.options.profile {
        let row = format!("{}{} {client}", crate::profile::WATCH_EXPIRED, resource.plural);
        profile.component(&row).record(Duration::ZERO, true);
    }
}

impl Watcher {
    /// An initial event: the stored object as ADDED, if the selector takes it.
    fn initial_line(&self, entry: &Entry) -> Result<Option<Line>, ApiError> {
        if self.encoder.as_stored {
            // What the selector leaves out is not scanned for its revision's place.
            if !self.everything && !self.filter.matches_stored(&entry.value)? {
                return Ok(None);
            }
            if let Some(at) = stored::revision_at(&entry.value) {
                return Ok(Some(Line::Stored(Kind::Added, Stored::new(entry.value.clone(), at, entry.revision))));
            }
        }
        let json = self.encoder.representation == Representation::Json;
        let (shared, form) = (&self.server.shared_objects, self.encoder.form());
        let id = (entry.key.as_str(), entry.revision, Side::Value, entry.value.len(), form);
        if self.everything && json {
            let object = shared.get_or_try(id, || Ok(self.encoder.object(from_entry(entry)?)))?;
            return Ok(Some(Line::Event(Kind::Added, object)));
        }
        let object = from_entry(entry)?;
        if !self.filter.matches(&object) {
            return Ok(None);
        }
        if json {
            let object = shared.get_or_try(id, || Ok(self.encoder.object(object)))?;
            return Ok(Some(Line::Event(Kind::Added, object)));
        }
        Ok(Some(self.encoder.line(Kind::Added, object)))
    }

    /// A line for a kind converted by a webhook: the object decoded, sent to the webhook
    /// and encoded for this watch.
    async fn converted_line(&self, kind: Kind, object: Value) -> Result<Option<Line>, ApiError> {
        if !self.filter.matches(&object) {
            return Ok(None);
        }
        let mut objects = [object];
        super::conversion::to_request(&self.server, self.encoder.resource, &mut objects).await?;
        let [object] = objects;
        Ok(Some(self.encoder.line(kind, object)))
    }

    async fn converted_event_line(&self, event: &Event) -> Result<Option<Line>, ApiError> {
        let Some((kind, side)) = translate(&self.filter, self.everything, event)? else {
            return Ok(None);
        };
        let mut objects = [from_bytes(&side_of(event, side), event.revision)?];
        super::conversion::to_request(&self.server, self.encoder.resource, &mut objects).await?;
        let [object] = objects;
        Ok(Some(self.encoder.line(kind, object)))
    }

    /// A store event's line, if this watcher is sent one.
    fn event_line(&self, event: &Event) -> Result<Option<Line>, ApiError> {
        let Some((kind, side)) = translate(&self.filter, self.everything, event)? else {
            return Ok(None);
        };
        let bytes = side_of(event, side);
        if self.encoder.as_stored
            && let Some((at, field)) = event.revision_at.get_or_find(side, || {
                stored::revision_at(&bytes).map(|at| (at, Stored::field(&bytes, at, event.revision)))
            })
        {
            return Ok(Some(Line::Stored(kind, Stored { bytes, at, field })));
        }
        if self.encoder.representation == Representation::Json {
            // Another version, or bytes not in the stored form: encoded by this watch, a
            // large object shared with the others sending it.
            let id = (event.key.as_str(), event.revision, side, bytes.len(), self.encoder.form());
            let object = self
                .server
                .shared_objects
                .get_or_try(id, || Ok(self.encoder.object(from_bytes(&bytes, event.revision)?)))?;
            return Ok(Some(Line::Event(kind, object)));
        }
        Ok(Some(self.encoder.line(kind, from_bytes(&bytes, event.revision)?)))
    }

    async fn run(self, initial: Vec<Entry>, mut events: Watch, outbox: Outbox) -> Result<(), Gone> {
        // Each entry let go once sent: a watch its client does not read keeps no more
        // than the rest of its listing, which the store shares.
        for entry in initial {
            let line = if self.webhook {
                match from_entry(&entry) {
                    Ok(object) => self.converted_line(Kind::Added, object).await,
                    Err(error) => Err(error),
                }
            } else {
                self.initial_line(&entry)
            };
            match line {
                Ok(Some(line)) => outbox.send(line).await?,
                Ok(None) => {}
                Err(error) => return outbox.send(error_line(&error)).await,
            }
        }
        if self.send_initial {
            outbox.send(self.encoder.bookmark(self.from, true)).await?;
        }
        let mut last = self.from;
        let interval = self.server.options.bookmark_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let line = tokio::select! {
                _ = ticker.tick(), if self.bookmarks => self.encoder.bookmark(last, false),
                // A client that hung up ends the watch at once.
                _ = outbox.tx.closed() => return Err(Gone),
                event = events.recv() => match event {
                    None => return Ok(()),
                    // Too old, or fell behind the history: the client lists again.
                    Some(Err(error)) => {
                        let resource = self.encoder.resource;
                        if matches!(error, StoreError::Compacted { .. }) {
                            count_expired(&self.server, resource, &self.client);
                        }
                        return outbox.send(error_line(&store_error(resource, "", error))).await;
                    }
                    Some(Ok(event)) => {
                        last = event.revision;
                        let line = if self.webhook {
                            self.converted_event_line(&event).await
                        } else {
                            self.event_line(&event)
                        };
                        match line {
                            Ok(Some(line)) => line,
                            Ok(None) => continue,
                            Err(error) => return outbox.send(error_line(&error)).await,
                        }
                    }
                },
            };
            outbox.send(line).await?;
        }
    }
}

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    target: &Target,
    query: &Query,
    representation: Representation,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let filter = Filter::from_query(resource, query)?;
    let everything = filter.is_everything();
    let prefix = resource.prefix(target.namespace.as_deref());
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = match query.get("timeoutSeconds") {
        Some(seconds) => Duration::from_secs(
            seconds.parse().map_err(|_| ApiError::bad_request("timeoutSeconds must be a whole number"))?,
        ),
        None => server.options.watch_timeout,
    };
    let webhook = super::conversion::needs_webhook(server, resource);
    let as_stored = representation == Representation::Json && super::conversion::served_as_stored(resource);
    let encoder = Encoder { resource, representation, include: Include::from_query(query), as_stored };
    let requested = query.get("resourceVersion").map(String::as_str).filter(|v| !v.is_empty() && *v != "0");
    // With no revision (or "0"), a watch starts with the current state as ADDED events,
    // decoded and encoded one at a time as the client takes them.
    let mut initial = Vec::new();
    let from = match requested {
        Some(text) if !send_initial => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("resourceVersion \"{text}\" is not valid")))?,
        _ => {
            let listing = server.store.list(&prefix, None, None).await.map_err(|e| store_error(resource, "", e))?;
            initial = listing.entries;
            listing.revision
        }
    };
    let (outbox, rx) = outbox();
    let client = super::objects::FIELD_MANAGER.try_with(Clone::clone).unwrap_or_default();
    match server.store.watch(&prefix, from).await {
        Ok(events) => {
            let watcher = Watcher {
                server: Arc::clone(server),
                encoder,
                filter,
                everything,
                webhook,
                bookmarks,
                send_initial,
                from,
                client,
            };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, watcher.run(initial, events, outbox)).await;
            });
        }
        Err(error @ StoreError::Compacted { .. }) => {
            count_expired(server, resource, &client);
            let line = error_line(&store_error(resource, "", error));
            let _ = outbox.send(line).await;
        }
        Err(error) => return Err(store_error(resource, "", error)),
    }
    // Lines leave the outbox's budget as they are taken: past it, the body holds at most
    // a frame and the split line that ended it.
    let stream = futures_util::stream::unfold((rx, Vec::new()), |(mut rx, mut rest)| async move {
        let chunk = next_chunk(&mut rx, &mut rest).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), (rx, rest)))
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_objects_are_encoded_once_for_every_watch_that_holds_them() {
        let shared = SharedObjects::default();
        let big = ("/cm/big", 7, Side::Value, SHARE_FROM, 1);
        let encode = || Ok(Bytes::from(vec![b'y'; SHARE_FROM]));
        let first = shared.get_or_try(big, encode).ok().unwrap();
        let again = shared.get_or_try(big, || panic!("encoded twice")).ok().unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr());
        // Another form, another revision or the other side of an event is another encoding.
        let other = shared.get_or_try(("/cm/big", 7, Side::Value, SHARE_FROM, 2), encode).ok().unwrap();
        assert_ne!(first.as_ptr(), other.as_ptr());
        let prev = shared.get_or_try(("/cm/big", 7, Side::Prev, SHARE_FROM, 1), encode).ok().unwrap();
        assert_ne!(first.as_ptr(), prev.as_ptr());
        // Held weakly: once no watch holds it, it is gone.
        drop((first, again));
        let fresh = shared.get_or_try(big, encode).ok().unwrap();
        assert_eq!(fresh.len(), SHARE_FROM);
        // Small objects are not worth sharing.
        shared.get_or_try(("/cm/small", 7, Side::Value, 2, 1), || Ok(Bytes::from_static(b"{}"))).ok().unwrap();
        assert_eq!(shared.map.lock().unwrap().len(), 3);
    }

    #[test]
    fn large_lines_go_out_as_the_shared_object_between_head_and_tail() {
        let object = Bytes::from(vec![b'o'; SPLIT_FROM]);
        let chunks = Line::Event(Kind::Modified, object.clone()).chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), object.as_ptr());
        let line: Vec<u8> = chunks.iter().rev().flat_map(|c| c.iter().copied()).collect();
        assert!(line.starts_with(br#"{"type":"MODIFIED","object":ooo"#) && line.ends_with(b"o}\n"));
        let small = Line::Event(Kind::Added, Bytes::from_static(b"{}"));
        assert_eq!(small.len(), r#"{"type":"ADDED","object":{}}"#.len() + 1);
        assert_eq!(small.chunks(), [Bytes::from_static(b"{\"type\":\"ADDED\",\"object\":{}}\n")]);
    }

    /// What a stored object's line reads as, whole.
    fn whole(line: Line) -> Vec<u8> {
        line.chunks().iter().rev().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn a_stored_object_goes_out_as_its_bytes_with_the_revision_written_in() {
        for (bytes, at_end) in [
            (br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}"#.to_vec(), false),
            (br#"{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":{}}"#.to_vec(), true),
        ] {
            let bytes = Bytes::from(bytes);
            let at = stored::revision_at(&bytes).unwrap();
            assert_eq!(bytes[at] == b'}', at_end);
            let mut revised = Vec::new();
            assert!(stored::revised(&bytes, 42, &mut revised));
            let mut expected = Kind::Modified.head().to_vec();
            expected.extend_from_slice(&revised);
            expected.extend_from_slice(TAIL);
            let line = Line::Stored(Kind::Modified, Stored::new(bytes.clone(), at, 42));
            assert_eq!(line.len(), expected.len());
            assert_eq!(whole(line), expected);
            let object: Value = serde_json::from_slice(&revised).unwrap();
            assert_eq!(object["metadata"]["resourceVersion"], "42");
        }
        // A large one is sent as slices of the store's bytes, never copied.
        let mut large = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":""#.to_vec();
        large.extend(std::iter::repeat_n(b'x', SPLIT_FROM));
        large.extend_from_slice(br#""}}"#);
        let large = Bytes::from(large);
        let at = stored::revision_at(&large).unwrap();
        let line = Line::Stored(Kind::Added, Stored::new(large.clone(), at, 7));
        assert!(line.is_split());
        let chunks = line.chunks();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[3].as_ptr(), large.as_ptr());
        assert_eq!(chunks[1].as_ptr(), large[at..].as_ptr());
        let sent: Vec<u8> = chunks.iter().rev().flat_map(|c| c.iter().copied()).collect();
        let event: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["metadata"], serde_json::json!({"name": "c", "resourceVersion": "7"}));
    }

    #[tokio::test]
    async fn waiting_lines_go_out_in_one_chunk_and_large_objects_stay_shared() {
        let (outbox, mut rx) = outbox();
        let large = Bytes::from(vec![b'o'; SPLIT_FROM]);
        for line in [
            Line::Event(Kind::Added, Bytes::from_static(b"{\"a\":1}")),
            Line::Text(Bytes::from_static(b"{\"type\":\"BOOKMARK\"}\n")),
            Line::Event(Kind::Modified, large.clone()),
            Line::Event(Kind::Deleted, Bytes::from_static(b"{}")),
        ] {
            outbox.send(line).await.ok().unwrap();
        }
        drop(outbox);
        let mut rest = Vec::new();
        let mut chunks = Vec::new();
        while let Some(chunk) = next_chunk(&mut rx, &mut rest).await {
            chunks.push(chunk);
        }
        // The two small lines together, the large one as head, shared object and tail
        // (it ends the frame before it), then the last line.
        assert_eq!(chunks.len(), 5);
        assert_eq!(
            chunks[0],
            Bytes::from_static(b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n{\"type\":\"BOOKMARK\"}\n")
        );
        assert_eq!(chunks[1], Bytes::from_static(Kind::Modified.head()));
        assert_eq!(chunks[2].as_ptr(), large.as_ptr());
        assert_eq!(chunks[3], Bytes::from_static(TAIL));
        assert_eq!(chunks[4], Bytes::from_static(b"{\"type\":\"DELETED\",\"object\":{}}\n"));
    }

    #[tokio::test]
    async fn a_frame_stops_near_its_size_and_every_permit_goes_back() {
        let (outbox, mut rx) = outbox();
        let budget = Arc::clone(&outbox.budget);
        let object = Bytes::from(vec![b'x'; 1000]);
        let line = Kind::Added.head().len() + 1000 + TAIL.len();
        let per_frame = FRAME_BYTES.div_ceil(line);
        let lines = 2 * per_frame + 3;
        for _ in 0..lines {
            outbox.send(Line::Event(Kind::Added, object.clone())).await.ok().unwrap();
        }
        // A large line made for this watch goes out whole, not copied into a frame.
        let large = Bytes::from(vec![b't'; SPLIT_FROM]);
        outbox.send(Line::Text(large.clone())).await.ok().unwrap();
        drop(outbox);
        let mut rest = Vec::new();
        let mut chunks = Vec::new();
        while let Some(chunk) = next_chunk(&mut rx, &mut rest).await {
            chunks.push(chunk);
        }
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [per_frame * line, per_frame * line, 3 * line, SPLIT_FROM]);
        assert_eq!(chunks[3].as_ptr(), large.as_ptr());
        assert_eq!(budget.available_permits(), CLIENT_BYTES, "every line's permit is back");
    }
}
