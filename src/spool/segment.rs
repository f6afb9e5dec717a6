//! Segment files: where they live, how they are named, created (with a
//! durable directory entry) and deleted, and the `.acks` sidecar that marks
//! confirmed entries.

use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use super::SpoolError;

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

pub(super) fn acks_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.acks"))
}

/// Ids of the segment files in `dir`, oldest first.
pub(super) fn segment_ids(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids: Vec<u64> = fs::read_dir(dir)
        .map_err(SpoolError::io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Creates a segment file and makes its directory entry durable.
pub(super) fn create_segment(dir: &Path, id: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(SpoolError::io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io(dir))?;
    Ok(file)
}

/// Deletes a drained segment and its sidecar; one already gone is fine.
pub(super) fn delete_segment(dir: &Path, id: u64) {
    for path in [segment_path(dir, id), acks_path(dir, id)] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "could not delete a drained spool segment")
            }
        }
    }
}

/// The sequence numbers a segment's `.acks` sidecar marks as confirmed
/// (none when it is missing or unreadable).
pub(super) fn read_acks(path: &Path) -> HashSet<u64> {
    let Ok(bytes) = fs::read(path) else {
        return HashSet::new();
    };
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}
