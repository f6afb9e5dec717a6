//! Recovery at open: every segment decoded, confirmed entries skipped,
//! damaged regions (a torn tail after a crash, or corruption) logged and
//! skipped, and drained segments deleted.

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
        let scan = scan_segment(&path, &bytes, &acked, |seq, offset, len, envelope| {
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
        report.damaged.extend(scan.damaged);
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

/// What one pass over a segment found besides its pending entries.
pub(super) struct SegmentScan {
    pub(super) max_seq: u64,
    pub(super) acknowledged: u64,
    pub(super) damaged: Vec<(PathBuf, u64, u64)>,
}

/// Decodes every record of a segment, calls `pending(seq, offset, len,
/// envelope)` for each one not in `acked`, and logs and skips damage.
pub(super) fn scan_segment(
    path: &Path,
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
                let skipped = (next - pos) as u64;
                tracing::warn!(
                    segment = %path.display(), offset = pos, skipped_bytes = skipped, %error,
                    "spool: skipping a damaged or torn record (a crash during a write leaves one; that request was never acknowledged)"
                );
                scan.damaged.push((path.to_owned(), pos as u64, skipped));
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
