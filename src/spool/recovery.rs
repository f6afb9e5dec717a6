//! Recovery at open: every segment decoded, confirmed entries skipped,
//! damaged regions logged and skipped, and drained segments deleted.
//!
//! Damage comes in two kinds. A **torn tail** (the last record of a segment
//! cut short, or zeros where an unsynced write never landed) is what a crash
//! during a write leaves: that request was never acknowledged, and a
//! warning says so. Damage **anywhere else** is a record that was
//! acknowledged and can no longer be read: an error says so, and its bytes
//! are copied to `quarantine/` beside the segments before the segment can
//! be deleted, for an operator to look at.

use std::{
    collections::{BTreeMap, HashSet},
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::segment::{acks_path, delete_segment, read_acks, segment_ids, segment_path};
use super::{EntryMeta, RecoveryReport, Segment, SpoolError, State, record};
use crate::visit::Envelope;

/// Reads every segment: pending entries into the index, confirmed ones
/// skipped, damaged regions logged and skipped. Also returns the next
/// sequence number and segment id to use.
pub(super) fn recover(dir: &Path) -> Result<(State, RecoveryReport, u64, u64), SpoolError> {
    let ids = segment_ids(dir)?;
    let next_segment = ids.last().map_or(1, |id| id + 1);
    let mut max_seq = 0;

    let mut state = State {
        entries: BTreeMap::new(),
        segments: BTreeMap::new(),
        active_segment: 0,
        live_bytes: 0,
        cached_bytes: 0,
    };
    let mut report = RecoveryReport::default();
    for id in ids {
        let path = segment_path(dir, id);
        let bytes = fs::read(&path).map_err(SpoolError::io(&path))?;
        let acked = read_acks(&acks_path(dir, id));
        let mut live = 0;
        let scan = scan_segment(&bytes, &acked, |seq, offset, len, envelope| {
            state.entries.insert(
                seq,
                EntryMeta {
                    segment: id,
                    offset,
                    len,
                    received_at: envelope.receipt.received_at,
                    cached: None,
                },
            );
            state.live_bytes += len;
            live += 1;
        });
        max_seq = max_seq.max(scan.max_seq);
        report.acknowledged += scan.acknowledged;
        for damage in &scan.damaged {
            report_damage(dir, id, &path, &bytes, damage, &mut report)?;
        }
        if live == 0 {
            delete_segment(dir, id);
            continue;
        }
        let file = File::open(&path).map_err(SpoolError::io(&path))?;
        let acks = OpenOptions::new()
            .append(true)
            .open(acks_path(dir, id))
            .ok();
        state.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                acks,
                live,
            },
        );
    }
    report.pending = state.entries.len() as u64;
    report.last_pending_seq = state.entries.keys().next_back().copied();
    Ok((state, report, max_seq + 1, next_segment))
}

/// Logs one damaged region and, unless it is a torn tail, copies its bytes
/// to the quarantine directory.
fn report_damage(
    dir: &Path,
    id: u64,
    path: &Path,
    bytes: &[u8],
    damage: &Damage,
    report: &mut RecoveryReport,
) -> Result<(), SpoolError> {
    let (offset, len) = (damage.offset, damage.len);
    report.damaged.push((path.to_owned(), offset, len));
    if damage.torn_tail {
        tracing::warn!(
            segment = %path.display(), offset, skipped_bytes = len, error = %damage.error,
            "spool: skipping a torn record at the end of a segment (a crash during a write leaves one; that request was never acknowledged)"
        );
        return Ok(());
    }
    let quarantine = quarantine_dir(dir);
    let copy = quarantine.join(format!("{id:020}-{offset}.damaged"));
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    fs::create_dir_all(&quarantine)
        .and_then(|()| fs::write(&copy, &bytes[start..end.min(bytes.len())]))
        .and_then(|()| File::open(&copy)?.sync_all())
        .and_then(|()| File::open(&quarantine)?.sync_all())
        .map_err(SpoolError::io(&copy))?;
    tracing::error!(
        segment = %path.display(), offset, damaged_bytes = len, error = %damage.error,
        quarantined = %copy.display(),
        "spool: an accepted visit cannot be read (a record damaged in the middle of a segment); its bytes are kept in quarantine"
    );
    report.quarantined.push(copy);
    Ok(())
}

/// Where the bytes of damaged records are kept: `quarantine/` in the spool.
pub(super) fn quarantine_dir(dir: &Path) -> PathBuf {
    dir.join("quarantine")
}

/// What one pass over a segment found besides its pending entries.
pub(super) struct SegmentScan {
    pub(super) max_seq: u64,
    pub(super) acknowledged: u64,
    pub(super) damaged: Vec<Damage>,
}

/// One damaged region of a segment.
pub(super) struct Damage {
    pub(super) offset: u64,
    pub(super) len: u64,
    /// The region runs to the end of the file and is a record cut short or
    /// zeros: a write that a crash interrupted, never acknowledged.
    pub(super) torn_tail: bool,
    pub(super) error: record::DecodeError,
}

/// Decodes every record of a segment, calls `pending(seq, offset, len,
/// envelope)` for each one not in `acked`, and skips damage (returned, for
/// the caller to report).
pub(super) fn scan_segment(
    bytes: &[u8],
    acked: &HashSet<u64>,
    mut pending: impl FnMut(u64, u64, u64, Envelope),
) -> SegmentScan {
    let mut scan = SegmentScan {
        max_seq: 0,
        acknowledged: 0,
        damaged: Vec::new(),
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        match record::decode(&bytes[pos..]) {
            Ok((seq, envelope, len)) => {
                scan.max_seq = scan.max_seq.max(seq);
                if acked.contains(&seq) {
                    scan.acknowledged += 1;
                } else {
                    pending(seq, pos as u64, len as u64, envelope);
                }
                pos += len;
            }
            Err(error) => {
                let next = find_next_record(bytes, pos + 1);
                let torn_tail = next == bytes.len()
                    && (error == record::DecodeError::Truncated
                        || bytes[pos..].iter().all(|&b| b == 0));
                scan.damaged.push(Damage {
                    offset: pos as u64,
                    len: (next - pos) as u64,
                    torn_tail,
                    error,
                });
                pos = next;
            }
        }
    }
    scan
}

/// The offset of the next decodable record at or after `from`, or the end.
fn find_next_record(bytes: &[u8], from: usize) -> usize {
    let mut pos = from;
    while pos + record::HEADER_LEN <= bytes.len() {
        match bytes[pos..].windows(4).position(|w| w == record::MAGIC) {
            None => break,
            Some(offset) => {
                let candidate = pos + offset;
                if record::decode(&bytes[candidate..]).is_ok() {
                    return candidate;
                }
                pos = candidate + 1;
            }
        }
    }
    bytes.len()
}
