//! One suite for every `Store`: the embedded one in memory, the embedded one on disk,
//! and a real etcd. The API server relies on exactly this behaviour.

use crate::support;

use bytes::Bytes;
use kubeyard_harness::store::etcd::EtcdStore;
use kubeyard_harness::store::memory::{DEFAULT_HISTORY, MemoryStore};
use kubeyard_harness::store::{EventKind, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

fn b(text: &str) -> Bytes {
    Bytes::from(text.to_string())
}

async fn conformance(store: Arc<dyn Store>) {
    // Writes take increasing revisions; create, update and delete are conditional.
    let r1 = store.create("/t/a", b("1")).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), r1);
    assert_eq!(store.create("/t/a", b("again")).await, Err(StoreError::Exists("/t/a".into())));
    let r2 = store.update("/t/a", b("2"), Some(r1)).await.unwrap();
    assert!(r2 > r1);
    assert!(
        matches!(store.update("/t/a", b("stale"), Some(r1)).await, Err(StoreError::Conflict { current, .. }) if current == r2)
    );
    assert!(matches!(store.update("/t/missing", b("x"), None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete("/t/missing", None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete("/t/a", Some(r1)).await, Err(StoreError::Conflict { .. })));
    let got = store.get("/t/a").await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (b("2"), r2));

    // Ranges: in key order, only under the prefix, in pages.
    for key in ["/t/c", "/t/b", "/u/a", "/tt/a"] {
        store.create(key, b(key)).await.unwrap();
    }
    let all = store.list("/t/", None, None).await.unwrap();
    let keys: Vec<&str> = all.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["/t/a", "/t/b", "/t/c"]);
    assert!(!all.more);
    let page = store.list("/t/", None, Some(2)).await.unwrap();
    assert_eq!((page.entries.len(), page.more), (2, true));
    let rest = store.list("/t/", Some(&page.entries[1].key), Some(2)).await.unwrap();
    assert_eq!((rest.entries.len(), rest.more), (1, false));

    // A watch sees exactly the writes after its revision, in order, with what they replaced.
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/w/", start).await.unwrap();
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..25 {
                    revisions.push(store.create(&format!("/w/{writer}-{i}"), b("x")).await.unwrap());
                    // Writes elsewhere must not show up.
                    store.create(&format!("/x/{writer}-{i}"), b("x")).await.unwrap();
                }
                revisions
            })
        })
        .collect();
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    written.sort_unstable();
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let event = watch.recv().await.unwrap().unwrap();
        assert!(event.key.starts_with("/w/"), "{event:?}");
        seen.push(event.revision);
    }
    assert_eq!(seen, written);
    let updated = store.update("/w/0-0", b("y"), None).await.unwrap();
    let deleted = store.delete("/w/0-0", Some(updated)).await.unwrap();
    assert_eq!((deleted.value.clone(), deleted.revision > updated), (b("y"), true));
    let update = watch.recv().await.unwrap().unwrap();
    assert_eq!((update.kind, update.prev, update.revision), (EventKind::Put, Some(b("x")), updated));
    let delete = watch.recv().await.unwrap().unwrap();
    assert_eq!(
        (delete.kind, delete.prev, delete.value, delete.revision),
        (EventKind::Delete, Some(b("y")), None, deleted.revision)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_in_memory() {
    conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(MemoryStore::open(dir.path(), DEFAULT_HISTORY).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_etcd() {
    let etcd = support::etcd::Etcd::start();
    let store = Arc::new(EtcdStore::connect(&etcd.url).await.unwrap());
    conformance(store.clone()).await;
    // After a compaction, a watch from before it is refused as the embedded store's is.
    let before = store.create("/c/1", b("1")).await.unwrap();
    let after = store.create("/c/2", b("2")).await.unwrap();
    store.compact(after).await.unwrap();
    let mut watch = store.watch("/c/", before - 1).await.unwrap();
    assert!(matches!(watch.recv().await, Some(Err(StoreError::Compacted { .. }))));
}

/// The store on a three-member etcd loses its leader while writers write and a watch
/// watches: every write the store acknowledged is in etcd afterwards, the watch sees each
/// of them once, in order, with no gap, and writes go on once a new leader is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_loses_its_leader_and_no_acknowledged_write() {
    let mut etcd = support::etcd::EtcdCluster::start(3);
    let probe = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let leader = probe.leader().await.expect("the members agree on a leader");
    // The leader's endpoint first: the writes and the watch start on the member that dies.
    let mut endpoints = probe.endpoints().to_vec();
    endpoints.rotate_left(leader);
    let store = Arc::new(EtcdStore::connect(&endpoints.join(",")).await.unwrap());
    assert_eq!(store.leader().await, Some(0));
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/ha/", start).await.unwrap();

    // Two writers, each writing its own keys one after the other until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut failed) = (Vec::new(), 0);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("/ha/w{w}-{i:05}");
                    match store.create(&key, b("v")).await {
                        Ok(revision) => acknowledged.push((key, revision)),
                        // Not acknowledged: the writer cannot know, and does not count it.
                        Err(_) => failed += 1,
                    }
                    i += 1;
                }
                (acknowledged, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.kill(leader);
    let killed_at = std::time::Instant::now();
    // Writes go on after the election: wait for one acknowledged after the kill.
    let probe = loop {
        if let Ok(revision) = store.create(&format!("/ha/probe-{}", killed_at.elapsed().as_millis()), b("p")).await {
            break revision;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(30), "no write succeeded within 30 s of the leader's death");
    };
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (mine, _failed) = writer.await.unwrap();
        acknowledged.extend(mine);
    }
    assert!(acknowledged.iter().any(|(_, r)| *r > probe), "writes went on after the new leader");
    // Every acknowledged write is there, at its revision.
    let listing = store.list("/ha/", None, None).await.unwrap();
    let stored: std::collections::HashMap<_, _> = listing.entries.iter().map(|e| (e.key.clone(), e.revision)).collect();
    let lost: Vec<_> = acknowledged.iter().filter(|(k, r)| stored.get(k) != Some(r)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The watch saw every write in the store, once each, in revision order.
    let mut seen = Vec::new();
    while seen.len() < listing.entries.len() {
        match tokio::time::timeout(Duration::from_secs(20), watch.recv()).await {
            Ok(Some(Ok(event))) => seen.push((event.key, event.revision)),
            other => {
                panic!("the watch ended or stalled after {} of {} events: {other:?}", seen.len(), listing.entries.len())
            }
        }
    }
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "the watch repeated or reordered an event");
    let mut expected: Vec<_> = listing.entries.iter().map(|e| (e.key.clone(), e.revision)).collect();
    expected.sort_by_key(|(_, r)| *r);
    assert_eq!(seen, expected, "the watch missed an event");
    // The killed member comes back and catches up.
    etcd.restart(leader);
    eprintln!(
        "leader killed: {} acknowledged writes, none lost; writes went on {recovered:.1?} after the kill",
        acknowledged.len()
    );
}
