//! `kobra-relay spool`'s view: a read-only snapshot of a spool directory,
//! taken without its lock and without changing any file.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
};

use super::recovery::{quarantine_dir, scan_segment};
use super::segment::{acks_path, read_acks, segment_ids, segment_path};
use super::{SpoolError, SpoolStats};
use crate::visit::Envelope;

/// What `kobra-relay spool` shows: a read-only snapshot of a spool
/// directory, taken without its lock and without changing any file.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Whether a running relay holds the directory (the snapshot may then
    /// end in a record still being written, reported as damage).
    pub in_use: bool,
    /// Segment files present.
    pub segments: u64,
    /// Pending entries and their encoded bytes, as `/readyz` counts them.
    pub stats: SpoolStats,
    /// Entries confirmed but still in their segment.
    pub acknowledged: u64,
    /// Damaged regions: (segment file, byte offset, bytes skipped).
    pub damaged: Vec<(PathBuf, u64, u64)>,
    /// Copies of damaged acknowledged records kept by recovery, with their
    /// sizes: `quarantine/<segment>-<offset>.damaged`.
    pub quarantined: Vec<(PathBuf, u64)>,
    /// The oldest pending entries, up to the `keep` asked for, with their
    /// sequence numbers.
    pub oldest: Vec<(u64, Envelope)>,
}

/// Reads the spool in `dir` without opening it: no lock is taken, nothing
/// is written, and a relay may be running on it meanwhile.
///
/// # Errors
/// The directory or a segment cannot be read.
pub fn inspect(dir: &Path, keep: usize) -> Result<Inspection, SpoolError> {
    let ids = segment_ids(dir)?;
    let mut inspection = Inspection {
        in_use: held_by_another_process(&dir.join("LOCK")),
        segments: ids.len() as u64,
        ..Inspection::default()
    };
    for id in ids {
        let path = segment_path(dir, id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed by a running relay since the listing: nothing pending.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SpoolError::Io { path, source }),
        };
        let acked = read_acks(&acks_path(dir, id));
        let stats = &mut inspection.stats;
        let oldest = &mut inspection.oldest;
        let scan = scan_segment(&bytes, &acked, |seq, _, len, envelope| {
            stats.entries += 1;
            stats.bytes += len;
            let at = envelope.receipt.received_at;
            stats.oldest = Some(stats.oldest.map_or(at, |o| o.min(at)));
            if oldest.len() < keep {
                oldest.push((seq, envelope));
            }
        });
        inspection.acknowledged += scan.acknowledged;
        let damaged = scan.damaged.iter().map(|d| (path.clone(), d.offset, d.len));
        inspection.damaged.extend(damaged);
    }
    inspection.quarantined = quarantined(dir);
    Ok(inspection)
}

/// The files in the quarantine directory, oldest name first.
fn quarantined(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(quarantine_dir(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    files.sort();
    files
}

fn held_by_another_process(lock_path: &Path) -> bool {
    let Ok(file) = File::open(lock_path) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
}
