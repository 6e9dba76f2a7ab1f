//! One suite for every `Store`: the embedded one in memory, the embedded one on disk,
//! and a real etcd. The API server relies on exactly this behaviour.

use crate::support;

use bytes::Bytes;
use kubeyard_harness::store::etcd::EtcdStore;
use kubeyard_harness::store::memory::{DEFAULT_HISTORY, MemoryStore};
use kubeyard_harness::store::{EventKind, Store, StoreError};
use std::sync::Arc;

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
