//! Durability for the embedded store: a write-ahead log of every write, and snapshots
//! that let the log start over.
//!
//! One thread owns the files. Writers hand it their write (in revision order, under the
//! store's lock) and wait; it writes everything waiting, fsyncs once for the batch
//! (group commit), then publishes the batch to watchers and acknowledges it. So an
//! acknowledged write is on disk, and a watcher never sees a write that a crash could
//! take back.
//!
//! Files in the data directory (created `0700`, every file `0600`: they hold Secrets in
//! plain text): `snapshot` (every key at one revision) and `wal` (writes after it).
//!
//! The log starts with `KYWAL002`, then one record per write:
//!
//! ```text
//! length u32 | payload CRC-32 u32 | header CRC-32 u32 (of the 8 bytes before it) | payload
//! payload: kind u8 (P, D) | flags u8 (1: last of its group commit) | revision u64
//!          | key length u32 | key | value length u32 | value          (all little-endian)
//! ```
//!
//! The header has its own checksum so that a damaged length is known to be damage, and
//! so that recovery can look for whole records after bad bytes cheaply. Recovery
//! ([`recover_bytes`]) reads records up to the first bad one, then decides:
//! - the rest is an unfinished write (a torn tail) when it is all zeros (what some file
//!   systems leave after a crash), or when no whole record ending a group commit follows
//!   it: it is cut, a copy is kept as `wal.torn-<offset>`, and one line on stderr says so;
//! - otherwise it is damage with acknowledged writes after it: the store refuses to start,
//!   naming the offset, and leaves the file as it is.
//!
//! Only a group commit's last record counts as "acknowledged after the damage" because a
//! crash in the middle of writing a batch can leave its pages on disk in any order: whole
//! records of an unfinished batch after a hole were never acknowledged, and refusing to
//! start for them would turn every such crash into a manual repair.

use super::memory::{Hub, State};
use super::{Event, EventKind, StoreError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

const SNAPSHOT: &str = "snapshot";
const LOG: &str = "wal";
const SNAPSHOT_MAGIC: &[u8; 8] = b"KYSNAP01";
/// The first bytes of a log in the current framing (its version is the last digits).
const LOG_MAGIC: &[u8; 8] = b"KYWAL002";
/// Length, payload checksum, header checksum.
const HEADER: usize = 12;
/// The payload flag of a group commit's last record.
const BATCH_END: u8 = 1;
/// Where a log in the old format is kept once its records are in a snapshot.
const OLD_LOG: &str = "wal.v1";
/// The log is folded into a snapshot once it is this large.
const SNAPSHOT_AFTER_BYTES: u64 = 64 << 20;
/// Writes fsynced together at most.
const BATCH: usize = 4096;
/// Only the owner may read or list what the store keeps: values are objects, Secrets too.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

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
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        let mut size = file.metadata().map_err(|e| io_error("reading", &path, e))?.len();
        if size == 0 {
            // A new log, or one whose only bytes were cut as torn: the header goes first,
            // durable along with the file's name, so a log without it is never ours.
            file.write_all(LOG_MAGIC)
                .and_then(|()| file.sync_all())
                .and_then(|()| sync_dir(dir))
                .map_err(|e| io_error("writing", &path, e))?;
            size = LOG_MAGIC.len() as u64;
        }
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
            for (i, pending) in batch.iter().enumerate() {
                // The last record marks the batch whole: recovery counts only such records
                // as proof that acknowledged writes follow damage.
                encode_record(&pending.event, i + 1 == batch.len(), &mut buffer);
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
        self.size = LOG_MAGIC.len() as u64;
        Ok(())
    }

    /// Writes the snapshot and an empty next log (opened, not yet in place).
    fn write_snapshot(&mut self) -> io::Result<(PathBuf, File)> {
        let (entries, revision) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.map.clone(), state.revision)
        };
        // With the snapshot in place the old log's records are all in it: the old log may
        // stay or go.
        write_snapshot_file(&self.dir, &entries, revision)?;
        let fresh = self.dir.join("wal.tmp");
        let mut file = create_private(&fresh)?;
        file.write_all(LOG_MAGIC)?;
        file.sync_all()?;
        let log = OpenOptions::new().append(true).open(&fresh)?;
        Ok((fresh, log))
    }
}

/// Replaces the snapshot with `entries` at `revision`, durably (temporary file, fsync,
/// rename, fsync of the directory).
fn write_snapshot_file(dir: &Path, entries: &BTreeMap<String, (Bytes, u64)>, revision: u64) -> io::Result<()> {
    let mut data = Vec::with_capacity(1 << 20);
    data.extend_from_slice(SNAPSHOT_MAGIC);
    data.extend_from_slice(&revision.to_le_bytes());
    data.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, (value, revision)) in entries {
        data.extend_from_slice(&revision.to_le_bytes());
        put_bytes(&mut data, key.as_bytes());
        put_bytes(&mut data, value);
    }
    let crc = crc32fast::hash(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    let temporary = dir.join("snapshot.tmp");
    let mut file = create_private(&temporary)?;
    file.write_all(&data)?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(SNAPSHOT))?;
    sync_dir(dir)
}

/// Creates (or empties) a file only its owner can read.
fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    // The mode applies only when the file is new: a leftover temporary from an older
    // version may be world-readable, and is about to hold every value.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Makes a file of the store's only its owner's: older versions made them world-readable.
fn keep_private(path: &Path) -> Result<(), StoreError> {
    let mode = fs::metadata(path).map_err(|e| io_error("reading", path, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
            .map_err(|e| io_error("making private (mode 0600)", path, e))?;
    }
    Ok(())
}

/// Creates the data directory (and any missing parent) `0700`. A directory that exists
/// already is the user's choice and keeps its mode: the files in it are `0600` anyway.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| io_error("creating", dir, e))
}

/// Writes `bytes` to a new file `<base>` in `dir` (or `<base>.1`, `<base>.2`, ... if taken:
/// an earlier copy is never overwritten), durably; returns its path.
fn keep_copy(dir: &Path, base: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 0..1000 {
        let path = if n == 0 { dir.join(base) } else { dir.join(format!("{base}.{n}")) };
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        sync_dir(dir)?;
        return Ok(path);
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{base} and 999 numbered copies exist")))
}

/// A name in `dir` for `base` that is not taken yet (`base`, `base.1`, ...).
fn free_name(dir: &Path, base: &str) -> io::Result<PathBuf> {
    for n in 0..1000 {
        let path = if n == 0 { dir.join(base) } else { dir.join(format!("{base}.{n}")) };
        match fs::symlink_metadata(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{base} and 999 numbered files exist")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_record(event: &Event, batch_end: bool, out: &mut Vec<u8>) {
    let value = event.value.as_deref().unwrap_or_default();
    encode(event.kind, event.revision, &event.key, value, batch_end, out);
}

/// Appends one framed record (see the module's documentation).
fn encode(kind: EventKind, revision: u64, key: &str, value: &[u8], batch_end: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(match kind {
        EventKind::Put => b'P',
        EventKind::Delete => b'D',
    });
    out.push(if batch_end { BATCH_END } else { 0 });
    out.extend_from_slice(&revision.to_le_bytes());
    put_bytes(out, key.as_bytes());
    put_bytes(out, value);
    let payload = &out[start + HEADER..];
    let mut header = [0; HEADER];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&header[..8]);
    header[8..].copy_from_slice(&header_crc.to_le_bytes());
    out[start..start + HEADER].copy_from_slice(&header);
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
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
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

/// One write as a log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub kind: EventKind,
    pub revision: u64,
    pub key: String,
    /// Empty for a delete.
    pub value: Vec<u8>,
    /// The last record of a group commit: every record of the log up to it was on disk
    /// before any write of the batch was acknowledged. (Always set in the old format,
    /// which did not record batches.)
    pub batch_end: bool,
}

/// The framing a log was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `KYWAL002` and checksummed headers (an empty log is one too: its header is
    /// written when it is opened).
    Current,
    /// The framing before the header: length, payload CRC, payload, no batches.
    Old,
    /// Neither: not a log of this store, or its first bytes are damaged.
    Unknown,
}

/// How a log ends after its last whole record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte belongs to a whole record.
    Clean,
    /// From `offset` on, an unfinished write: an incomplete or bad record with no whole
    /// record ending a group commit after it, or only zeros. Nothing acknowledged can be
    /// there unless the last batch itself was damaged, which no reader can tell from a
    /// write cut short; the store cuts it, keeping a copy, and says so.
    Torn { offset: u64 },
    /// Bad bytes at `offset`, with a whole record at `next` and a group commit's last
    /// record at or after it: acknowledged writes follow the damage, and the store must
    /// not start on this log.
    Damaged { offset: u64, next: u64 },
}

/// What recovery makes of a log's bytes, before anything is applied or cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryOutcome {
    pub format: LogFormat,
    /// The whole records before the first bad byte, in log order.
    pub records: Vec<LogRecord>,
    pub end: LogEnd,
}

/// The bytes of a current-format log holding `records` as the log writer frames them
/// (for tests and fuzzing: the store itself writes through its writer thread).
pub fn encode_log(records: &[LogRecord]) -> Vec<u8> {
    let mut out = LOG_MAGIC.to_vec();
    for record in records {
        encode(record.kind, record.revision, &record.key, &record.value, record.batch_end, &mut out);
    }
    out
}

/// Reads a log's bytes: its whole records, and whether what follows them is a torn
/// tail (to cut, keeping a copy) or damage with acknowledged writes after it (to refuse). Pure: the
/// store's recovery acts on the answer. Never panics, whatever the bytes.
///
/// A log's bytes are never "fewer records, all is well": when `records` stops before
/// the end, `end` says where and why.
pub fn recover_bytes(log: &[u8]) -> RecoveryOutcome {
    let (format, start) = if log.is_empty() || log.starts_with(LOG_MAGIC) {
        (LogFormat::Current, LOG_MAGIC.len().min(log.len()))
    } else if read_old(log).is_some() {
        (LogFormat::Old, 0)
    } else {
        (LogFormat::Unknown, 0)
    };
    let read: fn(&[u8]) -> Option<(LogRecord, usize)> = match format {
        LogFormat::Current => read_current,
        LogFormat::Old => read_old,
        LogFormat::Unknown => |_: &[u8]| None,
    };
    let mut records = Vec::new();
    let mut at = start;
    while let Some((record, len)) = read(&log[at..]) {
        records.push(record);
        at += len;
    }
    let end = if at == log.len() {
        LogEnd::Clean
    } else if log[at..].iter().all(|&byte| byte == 0) {
        LogEnd::Torn { offset: at as u64 }
    } else {
        let last = records.last().map(|record| record.revision);
        match find_acknowledged(log, at + 1, last, format) {
            Some(next) => LogEnd::Damaged { offset: at as u64, next: next as u64 },
            None => LogEnd::Torn { offset: at as u64 },
        }
    };
    RecoveryOutcome { format, records, end }
}

/// After bad bytes, scans byte by byte from `from` for a whole record newer than `last`
/// that ends a group commit; returns where the first whole newer record (of any batch)
/// starts, if such a one exists. The header checksum makes each position cost a few
/// bytes' work unless a record really starts there.
fn find_acknowledged(log: &[u8], from: usize, last: Option<u64>, format: LogFormat) -> Option<usize> {
    let mut first = None;
    for at in from..log.len() {
        let rest = &log[at..];
        let found = match format {
            LogFormat::Current => read_current(rest),
            LogFormat::Old => read_old(rest),
            // A log whose first bytes are bad could have been either.
            LogFormat::Unknown => read_current(rest).or_else(|| read_old(rest)),
        };
        let Some((record, _)) = found else { continue };
        if last.is_some_and(|last| record.revision <= last) {
            continue;
        }
        let start = *first.get_or_insert(at);
        if record.batch_end {
            return Some(start);
        }
    }
    None
}

/// A whole current-format record at the start of `data`, and its length.
fn read_current(data: &[u8]) -> Option<(LogRecord, usize)> {
    let mut frame = Cursor(data);
    let header = frame.take(8)?;
    if crc32fast::hash(header) != frame.u32()? {
        return None;
    }
    let mut fields = Cursor(header);
    let len = fields.u32()? as usize;
    let crc = fields.u32()?;
    let payload = frame.take(len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((read_payload(payload, true)?, HEADER + len))
}

/// A whole record of the old framing (length, payload CRC, payload without flags) at the
/// start of `data`, and its length.
fn read_old(data: &[u8]) -> Option<(LogRecord, usize)> {
    let mut frame = Cursor(data);
    let len = frame.u32()? as usize;
    let crc = frame.u32()?;
    let payload = frame.take(len)?;
    // The layout first: it costs nothing, and a scan over garbage that happens to give
    // a length that fits then does not checksum megabytes at every position.
    if !old_layout_fits(payload) || crc32fast::hash(payload) != crc {
        return None;
    }
    Some((read_payload(payload, false)?, 8 + len))
}

/// Whether an old payload's kind and lengths add up to exactly its size.
fn old_layout_fits(payload: &[u8]) -> bool {
    fn shaped(mut cursor: Cursor) -> Option<()> {
        if !matches!(cursor.u8()?, b'P' | b'D') {
            return None;
        }
        cursor.u64()?;
        cursor.bytes()?;
        cursor.bytes()?;
        cursor.0.is_empty().then_some(())
    }
    shaped(Cursor(payload)).is_some()
}

fn read_payload(payload: &[u8], flags: bool) -> Option<LogRecord> {
    let mut cursor = Cursor(payload);
    let kind = match cursor.u8()? {
        b'P' => EventKind::Put,
        b'D' => EventKind::Delete,
        _ => return None,
    };
    let batch_end = if flags {
        match cursor.u8()? {
            0 => false,
            BATCH_END => true,
            _ => return None,
        }
    } else {
        true
    };
    let revision = cursor.u64()?;
    let key = cursor.string()?;
    let value = cursor.bytes()?.to_vec();
    if !cursor.0.is_empty() {
        return None;
    }
    Some(LogRecord { kind, revision, key, value, batch_end })
}

/// State from the snapshot and the log after it; a torn tail of the log is cut off (a
/// copy kept), damage with acknowledged writes after it refused. Creates the directory.
pub(super) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    create_private_dir(dir)?;
    let mut recovered = Recovered { map: BTreeMap::new(), revision: 1 };
    let snapshot = dir.join(SNAPSHOT);
    match fs::read(&snapshot) {
        Ok(data) => {
            keep_private(&snapshot)?;
            read_snapshot(&data, &mut recovered).ok_or_else(|| {
                StoreError::Io(format!("{} is damaged: its checksum or layout is wrong", snapshot.display()))
            })?
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("reading", &snapshot, error)),
    }
    let log = dir.join(LOG);
    let data = match fs::read(&log) {
        Ok(data) => data,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(recovered),
        Err(error) => return Err(io_error("reading", &log, error)),
    };
    keep_private(&log)?;
    let outcome = recover_bytes(&data);
    if let LogEnd::Damaged { offset, next } = outcome.end {
        return Err(damaged(&log, &snapshot, &outcome, offset, next));
    }
    let count = outcome.records.len();
    for record in outcome.records {
        apply(record, &mut recovered);
    }
    match (outcome.format, outcome.end) {
        (LogFormat::Old, end) => migrate(dir, &log, &recovered, count, end)?,
        (_, LogEnd::Torn { offset }) => cut(dir, &log, &data, offset)?,
        (_, LogEnd::Clean | LogEnd::Damaged { .. }) => {}
    }
    Ok(recovered)
}

fn damaged(log: &Path, snapshot: &Path, outcome: &RecoveryOutcome, offset: u64, next: u64) -> StoreError {
    let what = match outcome.format {
        LogFormat::Current => "is damaged",
        LogFormat::Old => "(a log in the old format) is damaged",
        LogFormat::Unknown => "does not start with a kubeyard log header or record (damaged or not a log)",
    };
    let from =
        if snapshot.exists() { format!("the snapshot {}", snapshot.display()) } else { "an empty store".to_string() };
    StoreError::Io(format!(
        "{log} {what} at byte {offset}, and whole records follow from byte {next}: cutting it there would \
         lose acknowledged writes, so the store does not start, and has left the file as it is (the {records} \
         records before the damage are whole). Restore the data directory from a backup; or, to start from \
         {from} and lose the writes logged after it, move {log} out of the data directory (and keep it: the \
         writes after the damage are still in it)",
        log = log.display(),
        records = outcome.records.len(),
    ))
}

/// Cuts a torn tail off the log, after keeping a copy of it next to the log.
fn cut(dir: &Path, log: &Path, data: &[u8], offset: u64) -> Result<(), StoreError> {
    let at = usize::try_from(offset).unwrap_or(data.len()).min(data.len());
    let torn = &data[at..];
    // The bytes may be the last acknowledged batch, damaged (no reader can tell it from a
    // write cut short): never destroy them.
    let copy =
        keep_copy(dir, &format!("{LOG}.torn-{offset}"), torn).map_err(|e| io_error("keeping a copy of", log, e))?;
    let file = OpenOptions::new().write(true).open(log).map_err(|e| io_error("opening", log, e))?;
    file.set_len(offset).and_then(|()| file.sync_all()).map_err(|e| io_error("truncating", log, e))?;
    eprintln!(
        "kubeyard: {} ended in an unfinished write: cut {} bytes at byte {offset} (a copy is in {})",
        log.display(),
        torn.len(),
        copy.display()
    );
    Ok(())
}

/// Moves a log in the old framing out of the way: its records (and the snapshot's) go
/// into a new snapshot and the old file is kept as `wal.v1`; the writer then starts a
/// log in the current framing.
///
/// Why read it rather than refuse: the old framing is still enough to tell a torn tail
/// from damage with the same scan (a whole record after bad bytes has a CRC over its
/// payload that garbage matches one time in four billion; without batches, any such record
/// counts, so it refuses a little more often than a current log), and a user upgrading
/// keeps their cluster without a tool to convert it. The old file stays, so nothing
/// depends on this conversion being right.
fn migrate(dir: &Path, log: &Path, recovered: &Recovered, count: usize, end: LogEnd) -> Result<(), StoreError> {
    write_snapshot_file(dir, &recovered.map, recovered.revision)
        .map_err(|e| io_error("writing the snapshot in", dir, e))?;
    // From here the snapshot holds every record of the old log: a crash before the rename
    // reads the old log again and skips them all.
    let kept = free_name(dir, OLD_LOG).map_err(|e| io_error("moving", log, e))?;
    fs::rename(log, &kept).and_then(|()| sync_dir(dir)).map_err(|e| io_error("moving", log, e))?;
    let torn = match end {
        LogEnd::Torn { offset } => format!(" (from byte {offset} on, an unfinished write, left out)"),
        LogEnd::Clean | LogEnd::Damaged { .. } => String::new(),
    };
    eprintln!(
        "kubeyard: {} was in the old log format: its {count} records{torn} are now in {}, and the old file \
         is kept as {}",
        log.display(),
        dir.join(SNAPSHOT).display(),
        kept.display()
    );
    Ok(())
}

/// Applies a record newer than the state: writes the snapshot already holds come again
/// after it, and only newer ones count.
fn apply(record: LogRecord, into: &mut Recovered) {
    if record.revision <= into.revision {
        return;
    }
    into.revision = record.revision;
    match record.kind {
        EventKind::Put => {
            into.map.insert(record.key, (Bytes::from(record.value), record.revision));
        }
        EventKind::Delete => {
            into.map.remove(&record.key);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::super::memory::MemoryStore;
    use super::*;

    /// Where each record of a whole current-format log starts.
    fn record_starts(log: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut at = LOG_MAGIC.len();
        while let Some((_, len)) = read_current(&log[at..]) {
            starts.push(at);
            at += len;
        }
        assert_eq!(at, log.len(), "a whole log");
        starts
    }

    fn torn_copies(dir: &Path) -> Vec<PathBuf> {
        let mut copies: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("wal.torn-"))
            .collect();
        copies.sort();
        copies
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn put(revision: u64, key: &str, batch_end: bool) -> LogRecord {
        let value = format!("value of {key}").into_bytes();
        LogRecord { kind: EventKind::Put, revision, key: key.to_string(), value, batch_end }
    }

    /// A record in the framing before `KYWAL002`: length, payload CRC, payload.
    fn encode_old(kind: u8, revision: u64, key: &str, value: &[u8], out: &mut Vec<u8>) {
        let mut payload = vec![kind];
        payload.extend_from_slice(&revision.to_le_bytes());
        put_bytes(&mut payload, key.as_bytes());
        put_bytes(&mut payload, value);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }

    /// Writes `count` keys one at a time (so each is its own group commit); returns the
    /// last revision.
    async fn write_keys(dir: &Path, count: usize) -> u64 {
        let store = MemoryStore::open(dir, 100).unwrap();
        let mut last = 0;
        for i in 0..count {
            last = store.create(&format!("/k/{i:03}"), Bytes::from(format!("v{i}"))).await.unwrap();
        }
        last
    }

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
    async fn a_torn_record_at_the_end_is_cut_off_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = MemoryStore::open(dir.path(), 100).unwrap();
            store.create("/a", Bytes::from_static(b"1")).await.unwrap();
            store.create("/b", Bytes::from_static(b"2")).await.unwrap();
        }
        let log = dir.path().join(LOG);
        let full = fs::read(&log).unwrap();
        let last = *record_starts(&full).last().unwrap();
        fs::write(&log, &full[..full.len() - 3]).unwrap();
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert!(store.get("/a").await.unwrap().is_some());
        assert!(store.get("/b").await.unwrap().is_none());
        assert_eq!(fs::read(&log).unwrap(), &full[..last]);
        let copies = torn_copies(dir.path());
        assert_eq!(copies, [dir.path().join(format!("wal.torn-{last}"))]);
        assert_eq!(fs::read(&copies[0]).unwrap(), &full[last..full.len() - 3]);
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
        bytes[LOG_MAGIC.len() + HEADER + 3] ^= 0xff;
        fs::write(&log, &bytes).unwrap();
        let refused = MemoryStore::open(dir.path(), 100).err().expect("a damaged log is refused");
        assert!(refused.to_string().contains("is damaged at byte 8,"), "{refused}");
        assert_eq!(fs::read(&log).unwrap(), bytes, "the damaged log is left as it was");
    }

    #[tokio::test]
    async fn a_flipped_bit_in_a_middle_records_length_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), 200).await;
        let log = dir.path().join(LOG);
        let mut bytes = fs::read(&log).unwrap();
        let starts = record_starts(&bytes);
        assert_eq!(starts.len(), 200);
        let at = starts[98];
        // The length grows by 4 MiB, past the end of the file: what a torn record looks
        // like to a reader that trusts lengths.
        bytes[at + 2] ^= 0x40;
        fs::write(&log, &bytes).unwrap();
        let refused = MemoryStore::open(dir.path(), 100).err().expect("a damaged log is refused").to_string();
        assert!(refused.contains(&format!("is damaged at byte {at}, and whole records follow")), "{refused}");
        assert!(refused.contains("from a backup") && refused.contains("start from an empty store"), "{refused}");
        assert_eq!(fs::read(&log).unwrap(), bytes, "the damaged log is left as it was");
        assert!(torn_copies(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn zeros_after_the_last_record_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let last = write_keys(dir.path(), 20).await;
        let log = dir.path().join(LOG);
        let whole = fs::read(&log).unwrap();
        let mut zeroed = whole.clone();
        zeroed.extend_from_slice(&[0; 4096]);
        fs::write(&log, &zeroed).unwrap();
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert_eq!(store.revision().await.unwrap(), last);
        assert_eq!(store.list("/k/", None, None).await.unwrap().entries.len(), 20);
        assert_eq!(fs::read(&log).unwrap(), whole, "the zeros are cut");
        let copies = torn_copies(dir.path());
        assert_eq!(copies, [dir.path().join(format!("wal.torn-{}", whole.len()))]);
        assert_eq!(fs::read(&copies[0]).unwrap(), [0; 4096]);
        store.create("/after", Bytes::from_static(b"x")).await.unwrap();
        drop(store);
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert!(store.get("/after").await.unwrap().is_some());
    }

    #[test]
    fn zeros_before_whole_records_are_damage() {
        let records: Vec<_> = (2..6).map(|revision| put(revision, &format!("/z/{revision}"), true)).collect();
        let log = encode_log(&records);
        let starts = record_starts(&log);
        let mut holed = log[..starts[2]].to_vec();
        holed.extend_from_slice(&[0; 4096]);
        holed.extend_from_slice(&log[starts[2]..]);
        let outcome = recover_bytes(&holed);
        assert_eq!(outcome.records, records[..2]);
        let next = (starts[2] + 4096) as u64;
        assert_eq!(outcome.end, LogEnd::Damaged { offset: starts[2] as u64, next });
    }

    #[test]
    fn an_unfinished_group_commit_with_a_hole_is_a_torn_tail() {
        // Three writes acknowledged one by one, then a batch of four whose pages reached
        // the disk out of order: the first is zeros, the last never arrived.
        let mut records: Vec<_> = (2..5).map(|revision| put(revision, &format!("/a/{revision}"), true)).collect();
        records.extend((5..9).map(|revision| put(revision, &format!("/b/{revision}"), revision == 8)));
        let log = encode_log(&records);
        let starts = record_starts(&log);
        let mut crashed = log[..starts[6]].to_vec();
        crashed[starts[3]..starts[4]].fill(0);
        let outcome = recover_bytes(&crashed);
        assert_eq!(outcome.records, records[..3]);
        assert_eq!(outcome.end, LogEnd::Torn { offset: starts[3] as u64 });
        // With the batch's last record on disk, the batch was acknowledged: damage.
        let mut damaged = log.clone();
        damaged[starts[3]..starts[4]].fill(0);
        let outcome = recover_bytes(&damaged);
        assert_eq!(outcome.end, LogEnd::Damaged { offset: starts[3] as u64, next: starts[4] as u64 });
    }

    /// Every byte of a log changed, in several ways: the records come back whole, or the
    /// outcome says where they stop; only the last group commit may be cut as torn, since
    /// its damage is what a crash leaves too.
    #[test]
    fn any_single_changed_byte_gives_every_record_back_or_says_so() {
        let one_by_one: Vec<_> = (2..8).map(|revision| put(revision, &format!("/k/{revision}"), true)).collect();
        let batched: Vec<_> =
            (2..10).map(|revision| put(revision, &format!("/k/{revision}"), [4, 6, 9].contains(&revision))).collect();
        for (records, last_batch) in [(one_by_one, 5), (batched, 5)] {
            let log = encode_log(&records);
            let starts = record_starts(&log);
            assert_eq!(
                recover_bytes(&log),
                RecoveryOutcome { format: LogFormat::Current, records: records.clone(), end: LogEnd::Clean }
            );
            for at in 0..log.len() {
                for flip in [0x01, 0x02, 0x10, 0x80, 0xff] {
                    let mut changed = log.clone();
                    changed[at] ^= flip;
                    let outcome = recover_bytes(&changed);
                    let kept = outcome.records.len();
                    let context = format!("byte {at} ^ {flip:#x}: {:?}, {kept} records", outcome.end);
                    assert_eq!(outcome.records, records[..kept], "{context}");
                    let stop =
                        if outcome.format == LogFormat::Unknown { 0 } else { encode_log(&outcome.records).len() };
                    match outcome.end {
                        LogEnd::Clean => panic!("a changed byte went unseen: {context}"),
                        LogEnd::Torn { offset } => {
                            assert!(at >= starts[last_batch] && kept >= last_batch, "{context}");
                            assert_eq!(offset as usize, stop, "{context}");
                        }
                        LogEnd::Damaged { offset, next } => {
                            assert_eq!(offset as usize, stop, "{context}");
                            assert!(next > offset && (next as usize) < changed.len(), "{context}");
                        }
                    }
                    // Damage before the last group commit is always refused.
                    if at < starts[last_batch] {
                        assert!(matches!(outcome.end, LogEnd::Damaged { .. }), "{context}");
                    }
                }
            }
        }
    }

    /// The same on disk, through recovery: a refused log is left byte for byte; a cut one
    /// lost only its last record, and the cut bytes are kept.
    #[tokio::test]
    async fn any_single_changed_byte_on_disk_is_refused_untouched_or_cut_with_a_copy() {
        let source = tempfile::tempdir().unwrap();
        let last = write_keys(source.path(), 4).await;
        let log = fs::read(source.path().join(LOG)).unwrap();
        let last_start = *record_starts(&log).last().unwrap();
        for at in 0..log.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG);
            let mut changed = log.clone();
            changed[at] ^= 0x01;
            fs::write(&path, &changed).unwrap();
            match recover(dir.path()) {
                Err(refused) => {
                    assert!(at < last_start, "byte {at}: {refused}");
                    assert!(refused.to_string().contains("at byte"), "byte {at}: {refused}");
                    assert_eq!(fs::read(&path).unwrap(), changed, "byte {at}: the log is left as it was");
                    assert!(torn_copies(dir.path()).is_empty(), "byte {at}");
                }
                Ok(recovered) => {
                    assert!(at >= last_start, "byte {at}: cut before the last record");
                    assert_eq!(recovered.revision, last - 1, "byte {at}");
                    assert_eq!(fs::read(&path).unwrap(), &log[..last_start], "byte {at}");
                    let copies = torn_copies(dir.path());
                    assert_eq!(copies.len(), 1, "byte {at}");
                    assert_eq!(fs::read(&copies[0]).unwrap(), &changed[last_start..], "byte {at}");
                }
            }
        }
    }

    #[tokio::test]
    async fn the_data_directory_is_0700_and_its_files_0600() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data").join("store");
        write_keys(&dir, 3).await;
        assert_eq!(mode(&parent.path().join("data")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let log = dir.join(LOG);
        assert_eq!(mode(&log), 0o600);
        // A torn copy.
        let mut bytes = fs::read(&log).unwrap();
        bytes.extend_from_slice(b"torn");
        fs::write(&log, &bytes).unwrap();
        recover(&dir).unwrap();
        let copies = torn_copies(&dir);
        assert_eq!(copies.len(), 1);
        assert_eq!(mode(&copies[0]), 0o600);
        // A snapshot and the log after it, over a world-readable temporary left behind.
        fs::write(dir.join("snapshot.tmp"), b"stale").unwrap();
        fs::set_permissions(dir.join("snapshot.tmp"), Permissions::from_mode(0o644)).unwrap();
        let recovered = recover(&dir).unwrap();
        let state = Arc::new(Mutex::new(State { map: recovered.map, revision: recovered.revision, failed: None }));
        let hub = Arc::new(Hub::new(10, recovered.revision));
        let file = OpenOptions::new().append(true).open(&log).unwrap();
        let (durable, _) = tokio::sync::watch::channel(recovered.revision);
        let mut writer = Writer { dir: dir.clone(), file, size: 0, state, hub, durable };
        assert!(writer.snapshot().is_ok());
        assert_eq!(mode(&dir.join(SNAPSHOT)), 0o600);
        assert_eq!(mode(&log), 0o600);
        // Files an older version left world-readable are made private.
        fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dir.join(SNAPSHOT), Permissions::from_mode(0o644)).unwrap();
        assert_eq!(recover(&dir).unwrap().map.len(), 3);
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&dir.join(SNAPSHOT)), 0o600);
    }

    #[tokio::test]
    async fn an_old_format_log_is_read_into_a_snapshot_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        encode_old(b'P', 2, "/a", b"1", &mut old);
        encode_old(b'P', 3, "/b", b"2", &mut old);
        encode_old(b'D', 4, "/a", b"", &mut old);
        let whole = old.len();
        // And a torn record after them.
        encode_old(b'P', 5, "/torn", b"x", &mut old);
        old.truncate(old.len() - 2);
        let log = dir.path().join(LOG);
        fs::write(&log, &old).unwrap();
        let outcome = recover_bytes(&old);
        assert_eq!((outcome.format, outcome.records.len()), (LogFormat::Old, 3));
        assert_eq!(outcome.end, LogEnd::Torn { offset: whole as u64 });
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert_eq!(store.revision().await.unwrap(), 4);
        assert_eq!(store.get("/a").await.unwrap(), None);
        assert_eq!(store.get("/b").await.unwrap().unwrap().value, Bytes::from_static(b"2"));
        assert_eq!(fs::read(dir.path().join(OLD_LOG)).unwrap(), old, "the old log is kept whole");
        assert!(fs::read(&log).unwrap().starts_with(LOG_MAGIC));
        store.create("/c", Bytes::from_static(b"3")).await.unwrap();
        drop(store);
        let store = MemoryStore::open(dir.path(), 100).unwrap();
        assert_eq!(store.revision().await.unwrap(), 5);
        assert!(store.get("/b").await.unwrap().is_some());
        assert!(store.get("/c").await.unwrap().is_some());
    }

    #[test]
    fn a_damaged_old_format_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        let mut starts = Vec::new();
        for revision in 2..12 {
            starts.push(old.len());
            encode_old(b'P', revision, &format!("/k/{revision}"), b"value", &mut old);
        }
        old[starts[4] + 2] ^= 0x40;
        let log = dir.path().join(LOG);
        fs::write(&log, &old).unwrap();
        let refused = recover(dir.path()).err().expect("a damaged log is refused").to_string();
        assert!(refused.contains(&format!("(a log in the old format) is damaged at byte {}", starts[4])), "{refused}");
        assert_eq!(fs::read(&log).unwrap(), old);
    }

    #[test]
    fn a_log_with_a_damaged_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = encode_log(&[put(2, "/a", true), put(3, "/b", true)]);
        log[3] ^= 0x20;
        fs::write(dir.path().join(LOG), &log).unwrap();
        let refused = recover(dir.path()).err().expect("a damaged header is refused").to_string();
        assert!(refused.contains("does not start with a kubeyard log header"), "{refused}");
        assert!(refused.contains("at byte 0, and whole records follow from byte 8"), "{refused}");
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
            encode_record(&Event::new(kind, key.into(), value, None, revision), true, &mut records);
        }
        writer.file.write_all(&records).unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.revision, 6);
        assert!(recovered.map.contains_key("/x"));
        assert!(recovered.map.contains_key("/y"));
    }
}
