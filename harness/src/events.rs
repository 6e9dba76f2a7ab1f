//! Events, as every component records them (client-go's `EventRecorder`): a `v1` Event
//! about one object, with the reporting component and, for a kubelet, its node.
//!
//! Recording goes through the recorder's correlation, as in Kubernetes
//! (`tools/record/events_cache.go`), so a repeated event is one Event with a count:
//!
//! - the same event again (same source, object, type, reason and message) within the
//!   cache's memory patches the existing Event: `count` + 1, a new `lastTimestamp`;
//! - the tenth distinct message of one (source, object, type, reason) within ten minutes
//!   becomes `(combined from similar events): <message>`, counted from then on;
//! - each (source, object, type) may record 25 events at once, then one per five minutes
//!   (a token bucket on the control plane's clock); the rest are dropped.
//!
//! Writing is asynchronous and best effort, as the broadcaster's is: a few at a time, an
//! event that cannot be written dropped, never an error of the component's own work, and
//! past 1,000 events waiting to be written new ones dropped (under a heavy load, as on a
//! real cluster, events are lost before work is slowed). One Event's writes go one after
//! the other, the newest waiting one replacing older ones, so its count never goes back
//! (client-go's broadcaster writes in order from one goroutine).

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who reports: `default-scheduler`, `kubelet` (with its node), a controller.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// What `event` reads of an object (its `apiVersion`, `kind`, namespace, name and uid),
/// with a container's `fieldPath`: a few fields, where a copy of the whole object (a pod
/// of several kilobytes, for each of its containers' three events) cost the kubelet more
/// than the event itself.
pub fn reference(object: &Value, field_path: Option<String>) -> Value {
    let mut reference = json!({
        "apiVersion": text(object, "/apiVersion"),
        "kind": text(object, "/kind"),
        "metadata": {
            "namespace": text(object, "/metadata/namespace"),
            "name": text(object, "/metadata/name"),
            "uid": text(object, "/metadata/uid"),
        },
    });
    if let Some(path) = field_path {
        reference["fieldPath"] = json!(path);
    }
    reference
}

/// The Event recording `reason` and `message` about `object` (as the API returns it:
/// `apiVersion`, `kind` and `metadata`; a pod's kind is assumed when it says none) at
/// `timestamp` (the control plane's clock).
pub fn event(object: &Value, source: Source<'_>, kind: Type, reason: &str, message: &str, timestamp: &str) -> Value {
    let (namespace, name) = (text(object, "/metadata/namespace"), text(object, "/metadata/name"));
    let (api_version, kind_of) = match (text(object, "/apiVersion"), text(object, "/kind")) {
        ("", "") => ("v1", "Pod"),
        pair => pair,
    };
    // Cluster-scoped objects' events live in `default`, as the recorder puts them.
    let home = if namespace.is_empty() { "default" } else { namespace };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut involved =
        json!({"apiVersion": api_version, "kind": kind_of, "name": name, "uid": text(object, "/metadata/uid")});
    if !namespace.is_empty() {
        involved["namespace"] = json!(namespace);
    }
    // A container's events name it within the pod (`spec.containers{web}`).
    if let Some(path) = object.get("fieldPath").and_then(Value::as_str) {
        involved["fieldPath"] = json!(path);
    }
    let mut source_field = json!({"component": source.component});
    let mut event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": home},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": match kind { Type::Normal => "Normal", Type::Warning => "Warning" },
        "reportingComponent": source.component,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    });
    if let Some(host) = source.host {
        source_field["host"] = json!(host);
        event["reportingInstance"] = json!(host);
    }
    event["source"] = source_field;
    event
}

/// `maxQueuedEvents`: events waiting to be written past this are dropped.
const MAX_QUEUED: usize = 1000;
/// The dedupe cache's size (`maxLruCacheEntries`).
const CACHE: usize = 4096;
/// The spam filter's bucket: 25 at once, one more every 300 s.
const BURST: f64 = 25.0;
const REFILL_SECONDS: f64 = 300.0;
/// Distinct messages of one kind of event before they are combined, and within how long.
const SIMILAR: usize = 10;
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);

static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Events written at once: client-go's broadcaster writes one at a time per component; a
/// few for the process keep event writes from crowding out the components' own requests.
static WRITING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(WRITERS);
const WRITERS: usize = 4;
static CORRELATOR: LazyLock<Mutex<Correlator>> = LazyLock::new(Mutex::default);

/// What the recorder remembers (one for the process: the keys hold the object's uid, so
/// clusters in one process never share an entry).
#[derive(Default)]
struct Correlator {
    /// Event key → (the Event's name and namespace, its count, its first timestamp, when used).
    seen: HashMap<String, Seen>,
    /// Spam key → (tokens, last refill, when used).
    buckets: HashMap<String, (f64, SystemTime, u64)>,
    /// Aggregate key → (distinct messages, last seen, when used).
    similar: HashMap<String, (HashSet<String>, SystemTime, u64)>,
    uses: u64,
}

#[derive(Clone)]
struct Seen {
    name: String,
    count: i64,
    first: String,
    used: u64,
}

/// What to write for one recorded event.
#[derive(Debug, PartialEq)]
enum Write {
    Create(Value),
    /// Patch the Event `name` (in its namespace) to this count, or create `event` if it is gone.
    Count {
        name: String,
        count: i64,
        event: Value,
    },
}

impl Correlator {
    /// `EventCorrelate`: aggregate, dedupe, then filter spam. `None`: dropped.
    fn correlate(&mut self, mut event: Value, now: SystemTime) -> Option<Write> {
        self.uses += 1;
        let uses = self.uses;
        let involved = &event["involvedObject"];
        let object_key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            text(&event, "/source/component"),
            text(&event, "/source/host"),
            text(involved, "/kind"),
            text(involved, "/namespace"),
            text(involved, "/name"),
            text(involved, "/uid"),
            text(involved, "/apiVersion"),
        );
        let (kind, reason, message) = (
            text(&event, "/type").to_string(),
            text(&event, "/reason").to_string(),
            text(&event, "/message").to_string(),
        );
        // Similar events: the tenth distinct message within ten minutes is combined.
        let aggregate_key = format!("{object_key}\u{0}{kind}\u{0}{reason}");
        let record = self.similar.entry(aggregate_key.clone()).or_insert_with(|| (HashSet::new(), now, uses));
        if now.duration_since(record.1).unwrap_or_default() > SIMILAR_WINDOW {
            *record = (HashSet::new(), now, uses);
        }
        record.0.insert(message.clone());
        record.1 = now;
        record.2 = uses;
        let key = if record.0.len() >= SIMILAR {
            record.0.remove(&message);
            event["message"] = json!(format!("(combined from similar events): {message}"));
            aggregate_key
        } else {
            format!("{aggregate_key}\u{0}{}\u{0}{message}", text(&event, "/involvedObject/fieldPath"))
        };
        // Spam: a bucket per source and object.
        let spam_key = format!("{object_key}\u{0}{kind}");
        let bucket = self.buckets.entry(spam_key).or_insert((BURST, now, uses));
        let elapsed = now.duration_since(bucket.1).unwrap_or_default().as_secs_f64();
        bucket.0 = (bucket.0 + elapsed / REFILL_SECONDS).min(BURST);
        bucket.1 = now;
        bucket.2 = uses;
        let allowed = bucket.0 >= 1.0;
        if allowed {
            bucket.0 -= 1.0;
        }
        // Each of the three caches keeps at least the `CACHE` entries used last, as
        // Kubernetes' LRUs of `maxLruCacheEntries` do, pruned in batches: past twice
        // that, what was not used in the last `CACHE` calls goes. Unbounded, the spam
        // and aggregate keys (one per object and source) grew with every pod a cluster
        // ever ran.
        let cutoff = uses.saturating_sub(CACHE as u64);
        if self.similar.len() > 2 * CACHE {
            self.similar.retain(|_, (_, _, used)| *used > cutoff);
        }
        if self.buckets.len() > 2 * CACHE {
            self.buckets.retain(|_, (_, _, used)| *used > cutoff);
        }
        if !allowed {
            return None;
        }
        let write = match self.seen.get_mut(&key) {
            Some(seen) => {
                seen.count += 1;
                seen.used = uses;
                event["metadata"]["name"] = json!(seen.name);
                event["count"] = json!(seen.count);
                event["firstTimestamp"] = json!(seen.first);
                Write::Count { name: seen.name.clone(), count: seen.count, event }
            }
            None => {
                let seen = Seen {
                    name: text(&event, "/metadata/name").to_string(),
                    count: 1,
                    first: text(&event, "/firstTimestamp").to_string(),
                    used: uses,
                };
                self.seen.insert(key, seen);
                Write::Create(event)
            }
        };
        if self.seen.len() > 2 * CACHE {
            self.seen.retain(|_, seen| seen.used > cutoff);
        }
        Some(write)
    }
}

/// Records the event: correlated, then written into the object's namespace in the
/// background; a failure is dropped.
pub async fn record(
    client: &kube::Client,
    object: &Value,
    source: Source<'_>,
    kind: Type,
    reason: &str,
    message: &str,
    timestamp: &str,
) {
    let event = event(object, source, kind, reason, message, timestamp);
    let now = crate::clock::parse(timestamp).unwrap_or_else(SystemTime::now);
    let write = {
        let mut correlator = CORRELATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        correlator.correlate(event, now)
    };
    let Some(write) = write else { return };
    let key = write.key();
    let lanes = || LANES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((client, write)) = lanes().enter(&key, (client.clone(), write)) else { return };
    if QUEUED.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        lanes().forget(&key);
        return;
    }
    tokio::spawn(async move {
        // However the task ends (a runtime shut down under it), the lane closes and the
        // queue counts it out.
        let _done = LaneDone(key.clone());
        let mut next = Some((client, write));
        while let Some((client, write)) = next {
            if let Ok(_permit) = WRITING.acquire().await {
                send(&client, write).await;
            }
            next = lanes().next(&key);
        }
    });
}

/// Closes an Event's lane and counts its writer out of the queue when dropped.
struct LaneDone(String);

impl Drop for LaneDone {
    fn drop(&mut self) {
        LANES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).forget(&self.0);
        QUEUED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One lane per Event: a write in flight and at most one waiting. A later write of the
/// Event (its count grown) replaces the waiting one, so an Event's writes land in the
/// order they were made (a count never goes back) and a burst of repeats costs one write.
struct Lanes<T> {
    waiting: HashMap<String, Option<T>>,
}

impl<T> Lanes<T> {
    /// The write to send now, or `None` when the Event's lane is busy (then it waits,
    /// replacing what waited).
    fn enter(&mut self, key: &str, write: T) -> Option<T> {
        match self.waiting.get_mut(key) {
            Some(waiting) => {
                *waiting = Some(write);
                None
            }
            None => {
                self.waiting.insert(key.to_string(), None);
                Some(write)
            }
        }
    }

    /// After a write of the Event: the one that waited, or `None` (the lane closes).
    fn next(&mut self, key: &str) -> Option<T> {
        let waiting = self.waiting.get_mut(key).and_then(Option::take);
        if waiting.is_none() {
            self.waiting.remove(key);
        }
        waiting
    }

    fn forget(&mut self, key: &str) {
        self.waiting.remove(key);
    }
}

static LANES: LazyLock<Mutex<Lanes<(kube::Client, Write)>>> =
    LazyLock::new(|| Mutex::new(Lanes { waiting: HashMap::new() }));

impl Write {
    /// Which Event it writes: its namespace, name and object (two clusters in one process
    /// never share one).
    fn key(&self) -> String {
        let (event, name) = match self {
            Write::Create(event) => (event, text(event, "/metadata/name")),
            Write::Count { name, event, .. } => (event, name.as_str()),
        };
        format!("{}/{name}/{}", text(event, "/metadata/namespace"), text(event, "/involvedObject/uid"))
    }
}

async fn send(client: &kube::Client, write: Write) {
    let (event, patched) = match write {
        Write::Create(event) => (event, None),
        Write::Count { name, count, event } => (event, Some((name, count))),
    };
    let namespace = text(&event, "/metadata/namespace").to_string();
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Some((name, count)) = patched {
        let patch = json!({"count": count, "lastTimestamp": event["lastTimestamp"], "message": event["message"]});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            _ => return,
        }
    }
    if let Ok(event) = serde_json::from_value::<Event>(event) {
        let _ = api.create(&PostParams::default(), &event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_and_who_reported_it() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"}});
        let source = Source { component: "kubelet", host: Some("node-2") };
        let recorded = event(&pod, source, Type::Warning, "BackOff", "Back-off restarting", "2026-01-01T00:00:00Z");
        assert!(recorded["metadata"]["name"].as_str().unwrap().starts_with("web-1."));
        assert_eq!(recorded["metadata"]["namespace"], "shop");
        assert_eq!(
            recorded["involvedObject"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u-1"})
        );
        assert_eq!(recorded["source"], json!({"component": "kubelet", "host": "node-2"}));
        assert_eq!(
            (recorded["reportingInstance"].as_str(), recorded["type"].as_str()),
            (Some("node-2"), Some("Warning"))
        );
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
        let registered =
            event(&node, Source { component: "node-controller", host: None }, Type::Normal, "RegisteredNode", "", "t");
        assert_eq!(registered["metadata"]["namespace"], "default", "cluster objects' events go to default");
        assert!(registered.get("reportingInstance").is_none());
    }

    #[test]
    fn a_reference_makes_the_event_the_whole_object_makes() {
        let source = Source { component: "kubelet", host: Some("node-2") };
        let objects = [
            json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "web", "image": "nginx"}]}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "uid": "u-2"}, "status": {}}),
        ];
        for object in objects {
            for path in [None, Some("spec.containers{web}".to_string())] {
                let mut whole = object.clone();
                if let Some(path) = &path {
                    whole["fieldPath"] = json!(path);
                }
                let mut by_whole = event(&whole, source, Type::Normal, "Started", "Started container web", "t");
                let mut by_reference =
                    event(&reference(&object, path), source, Type::Normal, "Started", "Started container web", "t");
                // Names differ by the moment they were made.
                by_whole["metadata"]["name"] = json!("");
                by_reference["metadata"]["name"] = json!("");
                assert_eq!(by_reference, by_whole);
            }
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn pod_event(message: &str) -> Value {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"}});
        event(&pod, Source { component: "kubelet", host: Some("n") }, Type::Warning, "BackOff", message, "t")
    }

    #[test]
    fn repeats_count_similar_messages_combine_and_spam_is_dropped() {
        let mut correlator = Correlator::default();
        let first = correlator.correlate(pod_event("Back-off restarting"), at(0)).unwrap();
        let Write::Create(created) = first else { panic!("the first is created") };
        let again = correlator.correlate(pod_event("Back-off restarting"), at(10)).unwrap();
        assert_eq!(
            again,
            Write::Count {
                name: created["metadata"]["name"].as_str().unwrap().to_string(),
                count: 2,
                event: again_event(&again)
            }
        );
        // Eight more distinct messages are events of their own; the tenth is combined.
        for n in 0..8 {
            assert!(matches!(correlator.correlate(pod_event(&format!("m{n}")), at(20)), Some(Write::Create(_))));
        }
        let Some(Write::Create(combined)) = correlator.correlate(pod_event("m8"), at(21)) else { panic!("combined") };
        assert_eq!(combined["message"], "(combined from similar events): m8");
        let Some(Write::Count { count, .. }) = correlator.correlate(pod_event("m9"), at(22)) else { panic!("counted") };
        assert_eq!(count, 2, "later similar ones count on the combined event");
        // 12 written so far; 13 more fill the burst of 25, the next is dropped.
        for n in 0..13 {
            assert!(correlator.correlate(pod_event("Back-off restarting"), at(23 + n)).is_some());
        }
        assert!(correlator.correlate(pod_event("Back-off restarting"), at(40)).is_none(), "over the burst");
        assert!(correlator.correlate(pod_event("Back-off restarting"), at(40 + 300)).is_some(), "a token back");
    }

    #[test]
    fn every_cache_stays_bounded_as_kubernetes_lrus_are() {
        let mut correlator = Correlator::default();
        let started = |n: usize| {
            let pod = json!({"metadata": {"name": format!("web-{n}"), "namespace": "shop", "uid": format!("u-{n}")}});
            let source = Source { component: "kubelet", host: Some("n") };
            event(&pod, source, Type::Normal, "Started", "Started container web", "t")
        };
        for n in 0..5 * CACHE {
            assert!(matches!(correlator.correlate(started(n), at(n as u64)), Some(Write::Create(_))));
        }
        for (cache, len) in [
            ("seen", correlator.seen.len()),
            ("similar", correlator.similar.len()),
            ("buckets", correlator.buckets.len()),
        ] {
            assert!((CACHE..=2 * CACHE).contains(&len), "{cache} holds {len} entries, not {CACHE} to twice that");
        }
        // The newest are kept: a repeat of the last object's event is counted on it.
        let last = 5 * CACHE - 1;
        let again = correlator.correlate(started(last), at(last as u64 + 1));
        assert!(matches!(again, Some(Write::Count { count: 2, .. })), "{again:?}");
    }

    fn again_event(write: &Write) -> Value {
        match write {
            Write::Count { event, .. } | Write::Create(event) => event.clone(),
        }
    }

    #[test]
    fn an_events_writes_wait_their_turn_and_the_newest_count_wins() {
        let mut lanes = Lanes { waiting: HashMap::new() };
        assert_eq!(lanes.enter("a", 1), Some(1), "an idle lane sends at once");
        assert_eq!(lanes.enter("b", 10), Some(10), "another Event has its own lane");
        assert_eq!(lanes.enter("a", 2), None, "a busy lane keeps the write");
        assert_eq!(lanes.enter("a", 3), None);
        assert_eq!(lanes.next("a"), Some(3), "the newest count replaced the older one");
        assert_eq!(lanes.next("a"), None, "nothing waits: the lane closes");
        assert_eq!(lanes.enter("a", 4), Some(4));
        assert_eq!(lanes.next("b"), None);
        assert!(!lanes.waiting.contains_key("b"));
    }
}
