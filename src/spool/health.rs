//! Whether the spool can be written: the last write that failed (a full
//! disk, a read-only or broken filesystem), counted by kind, and a small
//! probe write that finds out when writing works again, so the relay
//! recovers without a restart once space comes back.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

/// What the probe writes and syncs: about one typical visit's record, so a
/// disk with a few bytes left does not pass for writable.
const PROBE_BYTES: usize = 64 << 10;
/// The probe's file in the spool directory (not a segment: never read).
const PROBE_FILE: &str = "write-probe";

/// Why a spool write failed, as the `kind` label of
/// `spool_write_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailureKind {
    /// ENOSPC or a quota: the disk is full.
    NoSpace,
    /// EROFS: the filesystem was remounted read-only.
    ReadOnly,
    /// Any other I/O error (EIO, a vanished directory, …).
    Io,
}

impl WriteFailureKind {
    /// Every kind, for metrics that start at zero.
    pub const ALL: [Self; 3] = [Self::NoSpace, Self::ReadOnly, Self::Io];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSpace => "no_space",
            Self::ReadOnly => "read_only",
            Self::Io => "io",
        }
    }

    fn of(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::NoSpace,
            io::ErrorKind::ReadOnlyFilesystem => Self::ReadOnly,
            _ => Self::Io,
        }
    }
}

/// The failure in force: what `/readyz` reports until a write succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// Its kind.
    pub kind: WriteFailureKind,
    /// The operating system's words for it.
    pub message: String,
}

/// Shared between the writer thread, the probe and the readers.
#[derive(Default)]
pub(super) struct Health {
    /// Mirrors `failure.is_some()`, so the request path and every commit
    /// check it without taking the lock.
    failing: AtomicBool,
    failure: Mutex<Option<WriteFailure>>,
    counts: [AtomicU64; 3],
}

impl Health {
    pub(super) fn failed(&self, error: &io::Error) {
        let kind = WriteFailureKind::of(error);
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        *self.lock() = Some(WriteFailure {
            kind,
            message: error.to_string(),
        });
        self.failing.store(true, Ordering::Release);
    }

    pub(super) fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        self.failing.store(false, Ordering::Release);
        if self.lock().take().is_some() {
            tracing::info!("the spool can be written again; accepting visits");
        }
    }

    pub(super) fn current(&self) -> Option<WriteFailure> {
        self.lock().clone()
    }

    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Failed writes so far, in the order of [`WriteFailureKind::ALL`].
    pub(super) fn counts(&self) -> [u64; 3] {
        self.counts.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<WriteFailure>> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes, syncs and deletes a probe file in `dir`.
pub(super) fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&[0u8; PROBE_BYTES])?;
            file.sync_data()
        });
    let _ = fs::remove_file(&path);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_kept_until_a_write_succeeds_and_counted_by_kind() {
        let health = Health::default();
        assert!(!health.is_failing());
        health.failed(&io::Error::from(io::ErrorKind::StorageFull));
        health.failed(&io::Error::from(io::ErrorKind::StorageFull));
        health.failed(&io::Error::from(io::ErrorKind::ReadOnlyFilesystem));
        assert_eq!(
            health.current().map(|f| f.kind),
            Some(WriteFailureKind::ReadOnly)
        );
        assert_eq!(health.counts(), [2, 1, 0]);
        health.succeeded();
        assert!(!health.is_failing());
        assert_eq!(health.counts(), [2, 1, 0], "counts only grow");
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        probe(dir.path()).expect("a writable directory");
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 0);
        assert!(probe(&dir.path().join("missing")).is_err());
    }
}
