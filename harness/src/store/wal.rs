//! Durability for the embedded store: a write-ahead log of every write, and snapshots
//! that let the log start over.
//!
//! One thread owns the files. Writers hand it their write (in revision order, under the
//! store's lock) and wait; it writes everything waiting, fsyncs once for the batch
//! (group commit), then publishes the batch to watchers and acknowledges it. So an
//! acknowledged write is on disk, and a watcher never sees a write that a crash could
//! take back.
//!
//! Files in the data directory: `snapshot` (every key at one revision) and `wal`
//! (writes after it). Each log record is framed as length, CRC-32 and payload; a torn
//! record at the end (a crash mid-write, never acknowledged) is cut off on recovery.

use super::memory::{Hub, State};
use super::{Event, EventKind, StoreError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

const SNAPSHOT: &str = "snapshot";
const LOG: &str = "wal";
const SNAPSHOT_MAGIC: &[u8; 8] = b"KYSNAP01";
/// The log is folded into a snapshot once it is this large.
const SNAPSHOT_AFTER_BYTES: u64 = 64 << 20;
/// Writes fsynced together at most.
const BATCH: usize = 4096;

pub(super) struct Wal {
    tx: Mutex<Sender<Pending>>,
    /// The revision up to which every write is on disk.
    pub(super) durable: tokio::sync::watch::Receiver<u64>,
}

struct Pending {
    event: Arc<Event>,
    done: oneshot::Sender<Result<(), String>>,
}

pub(super) struct Recovered {
    pub map: BTreeMap<String, (Bytes, u64)>,
    pub revision: u64,
}

fn io_error(what: &str, path: &Path, error: io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {error}", path.display()))
}

impl Wal {
    pub(super) fn start(dir: &Path, state: Arc<Mutex<State>>, hub: Arc<Hub>) -> Result<Wal, StoreError> {
        let path = dir.join(LOG);
        let file =
            OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_error("opening", &path, e))?;
        let size = file.metadata().map_err(|e| io_error("reading", &path, e))?.len();
        let (tx, rx) = mpsc::channel();
        let revision = state.lock().unwrap_or_else(|p| p.into_inner()).revision;
        let (durable_tx, durable) = tokio::sync::watch::channel(revision);
        let writer = Writer { dir: dir.to_path_buf(), file, size, state, hub, durable: durable_tx };
        std::thread::Builder::new()
            .name("kubeyard-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io(format!("starting the log writer: {e}")))?;
        Ok(Wal { tx: Mutex::new(tx), durable })
    }

    /// Queues a write; the receiver resolves once it is durable.
    pub(super) fn append(&self, event: Arc<Event>) -> oneshot::Receiver<Result<(), String>> {
        let (done, receiver) = oneshot::channel();
        let tx = self.tx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A send fails only when the writer is gone; the dropped `done` then says so.
        let _ = tx.send(Pending { event, done });
        receiver
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    state: Arc<Mutex<State>>,
    hub: Arc<Hub>,
    durable: tokio::sync::watch::Sender<u64>,
}

/// A snapshot that failed, and whether the log can still be trusted after it.
struct SnapshotFailed {
    error: io::Error,
    fatal: bool,
}

impl Writer {
    fn fail(&self, reason: String) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).failed = Some(reason);
    }

    fn run(mut self, rx: Receiver<Pending>) {
        let mut buffer = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            buffer.clear();
            for pending in &batch {
                encode_record(&pending.event, &mut buffer);
            }
            let written = self.file.write_all(&buffer).and_then(|()| self.file.sync_data());
            match written {
                Ok(()) => {
                    self.size += buffer.len() as u64;
                    if let Some(last) = batch.last() {
                        self.durable.send_replace(last.event.revision);
                    }
                    for pending in batch {
                        self.hub.publish(pending.event);
                        let _ = pending.done.send(Ok(()));
                    }
                }
                Err(error) => {
                    // What is in memory is now ahead of the disk: refuse everything from
                    // here on rather than acknowledge writes a restart would lose.
                    let reason = format!("writing the log in {}: {error}", self.dir.display());
                    self.fail(reason.clone());
                    for pending in batch {
                        let _ = pending.done.send(Err(reason.clone()));
                    }
                    while let Ok(pending) = rx.recv() {
                        let _ = pending.done.send(Err(reason.clone()));
                    }
                    return;
                }
            }
            if self.size > SNAPSHOT_AFTER_BYTES
                && let Err(failed) = self.snapshot()
            {
                if failed.fatal {
                    // The new log may not survive a crash: acknowledge nothing more.
                    let reason = format!("starting a new log in {}: {}", self.dir.display(), failed.error);
                    self.fail(reason.clone());
                    while let Ok(pending) = rx.recv() {
                        let _ = pending.done.send(Err(reason.clone()));
                    }
                    return;
                }
                // The old log is still whole, so nothing is lost; the next batch tries again.
                eprintln!("kubeyard: snapshot failed, the log keeps growing: {}", failed.error);
            }
        }
    }

    /// Writes every key at the current revision, then starts an empty log. Writes the
    /// snapshot already holds may still arrive for the new log; recovery skips them.
    fn snapshot(&mut self) -> Result<(), SnapshotFailed> {
        let harmless = |error| SnapshotFailed { error, fatal: false };
        let (snapshotted, log) = self.write_snapshot().map_err(harmless)?;
        // Until the rename, the old log is the log; after it, the new one must be durable.
        fs::rename(&snapshotted, self.dir.join(LOG)).map_err(harmless)?;
        sync_dir(&self.dir).map_err(|error| SnapshotFailed { error, fatal: true })?;
        self.file = log;
        self.size = 0;
        Ok(())
    }

    /// Writes the snapshot and an empty next log (opened, not yet in place).
    fn write_snapshot(&mut self) -> io::Result<(PathBuf, File)> {
        let (entries, revision) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.map.clone(), state.revision)
        };
        let mut data = Vec::with_capacity(1 << 20);
        data.extend_from_slice(SNAPSHOT_MAGIC);
        data.extend_from_slice(&revision.to_le_bytes());
        data.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (key, (value, revision)) in &entries {
            data.extend_from_slice(&revision.to_le_bytes());
            put_bytes(&mut data, key.as_bytes());
            put_bytes(&mut data, value);
        }
        let crc = crc32fast::hash(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        let temporary = self.dir.join("snapshot.tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&data)?;
        file.sync_all()?;
        let fresh = self.dir.join("wal.tmp");
        File::create(&fresh)?.sync_all()?;
        let log = OpenOptions::new().append(true).open(&fresh)?;
        // With the snapshot in place the old log's records are all in it: the old log may
        // stay or go.
        fs::rename(&temporary, self.dir.join(SNAPSHOT))?;
        sync_dir(&self.dir)?;
        Ok((fresh, log))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_record(event: &Event, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(32 + event.key.len() + event.value.as_ref().map_or(0, Bytes::len));
    payload.push(match event.kind {
        EventKind::Put => b'P',
        EventKind::Delete => b'D',
    });
    payload.extend_from_slice(&event.revision.to_le_bytes());
    put_bytes(&mut payload, event.key.as_bytes());
    put_bytes(&mut payload, event.value.as_deref().unwrap_or_default());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Reads little-endian fields off a byte slice; `None` when it runs out.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// State from the snapshot and the log after it; a torn tail of the log is cut off.
pub(super) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let mut recovered = Recovered { map: BTreeMap::new(), revision: 1 };
    let snapshot = dir.join(SNAPSHOT);
    match fs::read(&snapshot) {
        Ok(data) => read_snapshot(&data, &mut recovered).ok_or_else(|| {
            StoreError::Io(format!("{} is damaged: its checksum or layout is wrong", snapshot.display()))
        })?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("reading", &snapshot, error)),
    }
    let log = dir.join(LOG);
    let file = match File::open(&log) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(recovered),
        Err(error) => return Err(io_error("reading", &log, error)),
    };
    let mut data = Vec::new();
    BufReader::new(file).read_to_end(&mut data).map_err(|e| io_error("reading", &log, e))?;
    let mut at = 0;
    while let Some(next) = read_record(&data[at..], &mut recovered) {
        at += next;
    }
    // A bad record with whole records after it is damage, not a write cut short by a
    // crash: cutting there would drop acknowledged writes, so refuse to start.
    let rest = &data[at..];
    if rest.len() >= 8 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if 8 + len < rest.len() {
            return Err(StoreError::Io(format!(
                "{} is damaged at byte {at}, with records after the damage: restore it, or move it away to start from the snapshot",
                log.display()
            )));
        }
    }
    if at < data.len() {
        let file = OpenOptions::new().write(true).open(&log).map_err(|e| io_error("opening", &log, e))?;
        file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(|e| io_error("truncating", &log, e))?;
    }
    Ok(recovered)
}

fn read_snapshot(data: &[u8], into: &mut Recovered) -> Option<()> {
    let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut cursor = Cursor(body);
    if cursor.take(8)? != SNAPSHOT_MAGIC {
        return None;
    }
    into.revision = cursor.u64()?;
    let count = cursor.u64()?;
    for _ in 0..count {
        let revision = cursor.u64()?;
        let key = cursor.string()?;
        let value = Bytes::copy_from_slice(cursor.bytes()?);
        into.map.insert(key, (value, revision));
    }
    Some(())
}

/// Applies one record; returns its length, or `None` at the end or at a torn record.
fn read_record(data: &[u8], into: &mut Recovered) -> Option<usize> {
    let mut frame = Cursor(data);
    let len = frame.u32()? as usize;
    let crc = frame.u32()?;
    let payload = frame.take(len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut cursor = Cursor(payload);
    let kind = cursor.take(1)?[0];
    let revision = cursor.u64()?;
    let key = cursor.string()?;
    let value = cursor.bytes()?;
    // Writes the snapshot already holds come again after it; only newer ones count.
    if revision > into.revision {
        into.revision = revision;
        match kind {
            b'P' => {
                into.map.insert(key, (Bytes::copy_from_slice(value), revision));
            }
            b'D' => {
                into.map.remove(&key);
            }
            _ => return None,
        }
    }
    Some(8 + len)
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::super::memory::MemoryStore;
    use super::*;

    #[tokio::test]
    async fn a_reopened_store_has_every_acknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let store = MemoryStore::open(dir.path(), 100).unwrap();
            for i in 0..100 {
                store.create(&format!("/k/{i:03}"), Bytes::from(format!("v{i}"))).await.unwrap();
            }
            store.update("/k/007", Bytes::from_static(b"seven"), None).await.unwrap();
            store.delete("/k/050", None).await.unwrap().revision
        };
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert_eq!(store.revision().await.unwrap(), last);
        assert_eq!(store.get("/k/007").await.unwrap().unwrap().value, Bytes::from_static(b"seven"));
        assert_eq!(store.get("/k/050").await.unwrap(), None);
        assert_eq!(store.list("/k/", None, None).await.unwrap().entries.len(), 99);
        // The history did not survive, so a watch from before the restart is refused.
        assert!(matches!(store.watch("/k/", 5).await, Err(StoreError::Compacted { .. })));
        assert!(store.watch("/k/", last).await.is_ok());
    }

    #[tokio::test]
    async fn a_torn_record_at_the_end_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = MemoryStore::open(dir.path(), 100).unwrap();
            store.create("/a", Bytes::from_static(b"1")).await.unwrap();
            store.create("/b", Bytes::from_static(b"2")).await.unwrap();
        }
        let log = dir.path().join(LOG);
        let full = fs::read(&log).unwrap();
        fs::write(&log, &full[..full.len() - 3]).unwrap();
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert!(store.get("/a").await.unwrap().is_some());
        assert!(store.get("/b").await.unwrap().is_none());
        // New writes go after the cut, and survive another restart.
        store.create("/c", Bytes::from_static(b"3")).await.unwrap();
        drop(store);
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert!(store.get("/c").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn damage_in_the_middle_of_the_log_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = MemoryStore::open(dir.path(), 100).unwrap();
            for key in ["/a", "/b", "/c"] {
                store.create(key, Bytes::from_static(b"value")).await.unwrap();
            }
        }
        let log = dir.path().join(LOG);
        let mut bytes = fs::read(&log).unwrap();
        // The first record's payload: a flipped byte there fails its checksum.
        bytes[12] ^= 0xff;
        fs::write(&log, &bytes).unwrap();
        let refused = MemoryStore::open(dir.path(), 100).err().expect("a damaged log is refused");
        assert!(refused.to_string().contains("damaged"), "{refused}");
        assert_eq!(fs::read(&log).unwrap(), bytes, "the damaged log is left as it was");
    }

    #[test]
    fn snapshots_and_the_log_after_them_recover_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = BTreeMap::new();
        map.insert("/x".to_string(), (Bytes::from_static(b"old"), 5));
        let state = Arc::new(Mutex::new(State { map, revision: 5, failed: None }));
        let hub = Arc::new(Hub::new(10, 5));
        let file = OpenOptions::new().create(true).append(true).open(dir.path().join(LOG)).unwrap();
        let (durable, _) = tokio::sync::watch::channel(5);
        let mut writer = Writer { dir: dir.path().to_path_buf(), file, size: 0, state, hub, durable };
        assert!(writer.snapshot().is_ok());
        let mut records = Vec::new();
        // Revision 5 is in the snapshot already and must not be applied twice.
        for (revision, kind, key) in [(5, EventKind::Delete, "/x"), (6, EventKind::Put, "/y")] {
            let value = (kind == EventKind::Put).then(|| Bytes::from_static(b"new"));
            encode_record(&Event::new(kind, key.into(), value, None, revision), &mut records);
        }
        writer.file.write_all(&records).unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.revision, 6);
        assert!(recovered.map.contains_key("/x"));
        assert!(recovered.map.contains_key("/y"));
    }
}
