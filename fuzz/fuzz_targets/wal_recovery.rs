//! The embedded store's write-ahead log recovery (`kubeyard_harness::store::wal::recover_bytes`)
//! on any bytes, and on valid logs damaged the ways disks and crashes damage them. The first
//! input byte picks the mode:
//!
//! - 0: arbitrary bytes. Nothing may panic; what is kept is exactly the log's first bytes
//!   (re-encoding the records gives them back), and a log that is not read to its end says
//!   where and why it stops.
//! - 1: a valid log built from the input, with one byte changed. Every record comes back, or
//!   the outcome says so: the log is refused as damaged (the store does not start), or the
//!   last group commit is cut as torn (a crash leaves the same bytes; the store keeps a copy
//!   and prints it). Damage before the last group commit is always refused.
//! - 2: a valid log cut anywhere (a crash mid-write): every whole record comes back.
//! - 3: a valid log with zeros after it (what some file systems leave): every record comes
//!   back and the zeros are a torn tail.

#![no_main]

use kubeyard_harness::store::EventKind;
use kubeyard_harness::store::wal::{LogEnd, LogFormat, LogRecord, RecoveryOutcome, encode_log, recover_bytes};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Up to 12 records with increasing revisions, in group commits; the last ends one (a
/// log whose last batch was fsynced).
fn records(u: &mut Unstructured) -> Result<Vec<LogRecord>> {
    let count = u.int_in_range(0..=12)?;
    let mut revision = u.int_in_range(1..=1000u64)?;
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let kind = if u.ratio(1, 4)? { EventKind::Delete } else { EventKind::Put };
        let key: String = u.arbitrary()?;
        let value = match kind {
            EventKind::Put => u.arbitrary::<Vec<u8>>()?,
            EventKind::Delete => Vec::new(),
        };
        let batch_end = i + 1 == count || u.arbitrary()?;
        records.push(LogRecord { kind, revision, key, value, batch_end });
        revision += u.int_in_range(1..=3u64)?;
    }
    Ok(records)
}

/// Where each record of `records`' log ends.
fn ends(records: &[LogRecord]) -> Vec<usize> {
    (1..=records.len()).map(|n| encode_log(&records[..n]).len()).collect()
}

/// True of every outcome: the offsets are inside the log, the records are what its first
/// bytes hold, and fewer records than bytes is never "clean".
fn consistent(log: &[u8], outcome: &RecoveryOutcome) {
    let stop = match outcome.end {
        LogEnd::Clean => log.len(),
        LogEnd::Torn { offset } => offset as usize,
        LogEnd::Damaged { offset, next } => {
            assert!(offset < next && (next as usize) < log.len(), "{outcome:?}");
            offset as usize
        }
    };
    assert!(stop <= log.len());
    match outcome.format {
        LogFormat::Current => {
            let kept = if log.is_empty() { Vec::new() } else { encode_log(&outcome.records) };
            assert_eq!(kept, &log[..stop], "the records are not the log's first bytes");
        }
        LogFormat::Unknown => assert!(outcome.records.is_empty() && stop == 0 && !log.is_empty()),
        LogFormat::Old => assert!(!outcome.records.is_empty()),
    }
    if let LogEnd::Torn { .. } | LogEnd::Damaged { .. } = outcome.end {
        assert!(stop < log.len(), "a cut or damage at the very end: {outcome:?}");
    }
}

fn run(data: &[u8]) -> Result<()> {
    let Some((&mode, rest)) = data.split_first() else { return Ok(()) };
    if mode % 4 == 0 {
        consistent(rest, &recover_bytes(rest));
        return Ok(());
    }
    let mut u = Unstructured::new(rest);
    let records = records(&mut u)?;
    let log = encode_log(&records);
    let ends = ends(&records);
    match mode % 4 {
        1 => {
            let at = u.choose_index(log.len())?;
            let flip = u.int_in_range(1..=255u8)?;
            let mut changed = log.clone();
            changed[at] ^= flip;
            let outcome = recover_bytes(&changed);
            consistent(&changed, &outcome);
            let kept = outcome.records.len();
            assert_eq!(outcome.records, records[..kept], "the records kept are not the log's");
            // The last group commit starts after the last batch end before the last record.
            let last_batch =
                records[..records.len().saturating_sub(1)].iter().rposition(|r| r.batch_end).map_or(0, |i| i + 1);
            let last_batch_at = if last_batch == 0 { 8 } else { ends[last_batch - 1] };
            match outcome.end {
                LogEnd::Clean => panic!("byte {at} ^ {flip:#x} went unseen"),
                // (With no records nothing can be lost: a bad header alone may be cut.)
                LogEnd::Torn { .. } => {
                    assert!(
                        records.is_empty() || (at >= last_batch_at && kept >= last_batch),
                        "byte {at} ^ {flip:#x}: cut before the last group commit: {outcome:?}"
                    )
                }
                LogEnd::Damaged { .. } => {}
            }
            if at < last_batch_at && !records.is_empty() {
                assert!(
                    matches!(outcome.end, LogEnd::Damaged { .. }),
                    "byte {at} ^ {flip:#x}: not refused: {outcome:?}"
                );
            }
        }
        2 => {
            let cut = u.choose_index(log.len() + 1)?;
            let outcome = recover_bytes(&log[..cut]);
            consistent(&log[..cut], &outcome);
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(outcome.records, records[..whole], "cut at {cut}: {outcome:?}");
        }
        _ => {
            let zeros = u.int_in_range(1..=8192usize)?;
            let mut padded = log.clone();
            padded.resize(log.len() + zeros, 0);
            let outcome = recover_bytes(&padded);
            assert_eq!(outcome.records, records);
            assert_eq!(outcome.end, LogEnd::Torn { offset: log.len() as u64 });
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Running out of input to build a log from is not a finding.
    let _ = run(data);
});
