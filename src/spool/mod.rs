//! The local spool: accepted requests on disk until the broker confirms them.
//!
//! A small append-only segment log rather than an embedded database: the
//! workload is a FIFO (append, read in order, delete when confirmed), which a
//! log serves with one sequential write and one `fdatasync` per batch, and
//! recovery after a crash is a checksum scan we control (see
//! `docs/durability.md` for the measurements behind the choice).
//!
//! - **Group commit.** Appends go to one writer thread over a channel; it takes
//!   everything queued, writes it with one `write`, and calls `fdatasync` once
//!   for the whole batch. Only then does any of those appends return, so
//!   concurrent requests share one fsync.
//! - **Removal** marks the sequence number in the segment's `.acks` sidecar
//!   (not fsynced: a lost mark means a duplicate delivery, never a loss) and
//!   deletes a segment once nothing in it is pending.
//! - **Recovery** reads every segment, skips records whose checksum fails
//!   (a torn tail after a crash, or corruption), logs what it skipped, and
//!   starts a fresh segment, so nothing is ever appended after damage.
//!
//! - `writer`: the group-commit thread; `recovery`: the scan at open;
//!   `segment`: segment files; `record`: the record format; `inspect`: the
//!   read-only view of `kobra-relay spool`.
//!
//! The relay's visits touch the disk only here.

mod health;
mod inspect;
pub mod record;
mod recovery;
mod segment;
mod writer;

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use health::Health;
pub use health::{WriteFailure, WriteFailureKind};
pub use inspect::{Inspection, inspect};
use recovery::recover;
use segment::{acks_path, create_segment, delete_segment};
use writer::{WriteRequest, Writer, WriterHandle};

use crate::visit::Envelope;

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Accepting the entry would exceed `SPOOL_MAX_BYTES`.
    #[error("spool is full ({used} of {max} bytes pending)")]
    Full {
        /// Bytes pending or being written.
        used: u64,
        /// The configured limit.
        max: u64,
    },
    /// The spool has been closed (shutting down).
    #[error("spool is closed")]
    Closed,
    /// Another process holds the spool directory.
    #[error("spool directory {0} is in use by another kobra-relay process")]
    Locked(PathBuf),
    /// A disk operation failed.
    #[error("spool I/O on {path} failed")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SpoolError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A pending entry handed to the publisher.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Position in the spool; pass it to [`Spool::remove`] once confirmed.
    pub seq: u64,
    /// The accepted request.
    pub envelope: Arc<Envelope>,
}

/// Spool occupancy, for `/readyz` and the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Pending entries.
    pub entries: u64,
    /// Encoded bytes of pending entries.
    pub bytes: u64,
    /// Receipt time of the oldest pending entry.
    pub oldest: Option<Timestamp>,
    /// An append was refused for space and nothing has been removed since.
    pub full: bool,
    /// The last write failed and none has succeeded since.
    pub unwritable: bool,
    /// Failed writes so far, in the order of [`WriteFailureKind::ALL`].
    pub write_failures: [u64; 3],
}

impl SpoolStats {
    /// How long the oldest pending entry has waited at `now`; zero when the
    /// spool is empty (or the clock went back).
    pub fn oldest_age(&self, now: Timestamp) -> std::time::Duration {
        self.oldest
            .map(|t| std::time::Duration::try_from(now.duration_since(t)).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// What recovery found at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries still to be delivered.
    pub pending: u64,
    /// Entries already confirmed in a previous run (skipped).
    pub acknowledged: u64,
    /// Highest sequence number still pending: entries up to it may have
    /// reached the broker before the restart.
    pub last_pending_seq: Option<u64>,
    /// Damaged regions skipped: (segment file, byte offset, bytes skipped).
    pub damaged: Vec<(PathBuf, u64, u64)>,
    /// Copies of damaged records that had been acknowledged (not torn
    /// tails), in `SPOOL_DIR/quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// The most bytes of consecutive records [`Spool::pending_after`] reads
/// from disk at once.
const READ_RUN_MAX_BYTES: u64 = 64 << 10;

/// Where a pending entry's bytes are: the memory cache or a segment range.
enum Located {
    Memory(Arc<Envelope>),
    Disk(Arc<File>, u64, u64),
}

struct EntryMeta {
    segment: u64,
    offset: u64,
    len: u64,
    received_at: Timestamp,
    cached: Option<Arc<Envelope>>,
}

/// What a cached entry holds in memory: its record's bytes, plus the
/// normalized document the ingress made for it.
fn cache_weight(len: u64, envelope: &Envelope) -> u64 {
    len + envelope.document.as_ref().map_or(0, |d| d.weight())
}

struct Segment {
    file: Arc<File>,
    acks: Option<File>,
    live: u64,
}

struct State {
    entries: BTreeMap<u64, EntryMeta>,
    segments: BTreeMap<u64, Segment>,
    active_segment: u64,
    live_bytes: u64,
    cached_bytes: u64,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Bytes accepted by `append` but not yet in `state` (being written).
    reserved: AtomicU64,
    appended: Notify,
    closed: AtomicBool,
    /// Set when an append is refused for space, cleared by the next removal.
    full: AtomicBool,
    /// Group commits so far (one fdatasync each).
    commits: AtomicU64,
    /// Whether writes work, and how often they failed.
    health: Health,
    _lock: File,
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run
    /// left, and starts the writer thread.
    ///
    /// # Errors
    /// The directory cannot be created, locked or written.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, RecoveryReport), SpoolError> {
        fs::create_dir_all(dir).map_err(SpoolError::io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(SpoolError::io(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => SpoolError::Locked(dir.to_owned()),
            fs::TryLockError::Error(source) => SpoolError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;

        let (mut state, report, next_seq, next_segment) = recover(dir)?;
        let active = create_segment(dir, next_segment)?;
        state.active_segment = next_segment;
        state.segments.insert(
            next_segment,
            Segment {
                file: Arc::new(active.try_clone().map_err(SpoolError::io(dir))?),
                acks: None,
                live: 0,
            },
        );

        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(state),
            reserved: AtomicU64::new(0),
            appended: Notify::new(),
            closed: AtomicBool::new(false),
            full: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            health: Health::default(),
            _lock: lock,
        });
        let (sender, requests) = mpsc::unbounded_channel();
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                Writer {
                    shared: writer_shared,
                    file: active,
                    segment: next_segment,
                    segment_len: 0,
                    next_seq,
                }
                .run(requests)
            })
            .map_err(SpoolError::io(dir))?;
        let writer = Arc::new(WriterHandle {
            requests: Some(sender),
            thread: Some(thread),
        });
        Ok((Self { shared, writer }, report))
    }

    /// Makes `envelope` durable and returns its sequence number. Returns
    /// only after the record is fsynced (shared with concurrent appends).
    ///
    /// # Errors
    /// [`SpoolError::Full`] beyond `SPOOL_MAX_BYTES` (nothing written),
    /// [`SpoolError::Closed`] after shutdown, [`SpoolError::Io`] when the
    /// disk failed (the entry is not acknowledged).
    pub async fn append(&self, envelope: Envelope) -> Result<u64, SpoolError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SpoolError::Closed);
        }
        let len = record::encoded_len(&envelope) as u64;
        self.reserve(len)?;
        let (done, result) = oneshot::channel();
        let request = WriteRequest {
            envelope,
            len,
            done,
        };
        let sent = self
            .writer
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send(request).is_ok());
        if !sent {
            self.shared.reserved.fetch_sub(len, Ordering::AcqRel);
            return Err(SpoolError::Closed);
        }
        result.await.unwrap_or(Err(SpoolError::Closed))
    }

    fn reserve(&self, len: u64) -> Result<(), SpoolError> {
        let before = self.shared.reserved.fetch_add(len, Ordering::AcqRel);
        let used = self.lock().live_bytes + before;
        if used + len > self.shared.max_bytes {
            self.shared.reserved.fetch_sub(len, Ordering::AcqRel);
            self.shared.full.store(true, Ordering::Release);
            return Err(SpoolError::Full {
                used,
                max: self.shared.max_bytes,
            });
        }
        Ok(())
    }

    /// Whether an append made now is likely to be kept in the memory cache
    /// (which a backlog fills): only then is a document made for it at the
    /// ingress worth keeping, since an entry read back from disk gets its
    /// document made again.
    pub fn caches_appends(&self) -> bool {
        let pending = self.shared.reserved.load(Ordering::Acquire);
        self.lock().cached_bytes + pending < writer::CACHE_MAX_BYTES
    }

    /// Whether an entry of `len` bytes would fit now. Checked before a body
    /// is read, so a full spool answers 503 without consuming the upload; a
    /// refusal marks the spool full (see [`SpoolStats::full`]).
    pub fn has_room_for(&self, len: u64) -> bool {
        let used = self.lock().live_bytes + self.shared.reserved.load(Ordering::Acquire);
        let fits = used + len <= self.shared.max_bytes;
        if !fits {
            self.shared.full.store(true, Ordering::Release);
        }
        fits
    }

    /// Up to `limit` pending entries with a sequence number above `after`,
    /// in order. Entries not cached in memory are read back from disk.
    ///
    /// # Errors
    /// A segment could not be read.
    pub fn pending_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Pending>, SpoolError> {
        let start = after.map_or(0, |s| s.saturating_add(1));
        let wanted: Vec<(u64, Located)> = {
            let state = self.lock();
            state
                .entries
                .range(start..)
                .take(limit)
                .filter_map(|(&seq, meta)| {
                    let located = match &meta.cached {
                        Some(env) => Located::Memory(env.clone()),
                        None => {
                            let file = state.segments.get(&meta.segment)?.file.clone();
                            Located::Disk(file, meta.offset, meta.len)
                        }
                    };
                    Some((seq, located))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        let mut buf = Vec::new();
        let mut wanted = wanted.into_iter().peekable();
        while let Some((seq, located)) = wanted.next() {
            let (file, offset, len) = match located {
                Located::Memory(envelope) => {
                    out.push(Pending { seq, envelope });
                    continue;
                }
                Located::Disk(file, offset, len) => (file, offset, len),
            };
            // Records written one after another (a backlog read back in
            // order) come in with one read instead of one each.
            let mut run = vec![(seq, len)];
            let mut end = offset + len;
            while let Some((next, Located::Disk(next_file, next_offset, next_len))) = wanted.peek()
                && Arc::ptr_eq(next_file, &file)
                && *next_offset == end
                && end - offset + next_len <= READ_RUN_MAX_BYTES
            {
                run.push((*next, *next_len));
                end += next_len;
                wanted.next();
            }
            self.read_at(&file, offset, end - offset, &mut buf)?;
            let mut records = buf.as_slice();
            for (seq, len) in run {
                let (record, rest) = records.split_at(usize::try_from(len).unwrap_or(usize::MAX));
                records = rest;
                let envelope = Arc::new(self.decode(record)?);
                out.push(Pending { seq, envelope });
            }
        }
        Ok(out)
    }

    /// The pending entry `seq`, if it is still pending.
    ///
    /// # Errors
    /// Its segment could not be read.
    pub fn get(&self, seq: u64) -> Result<Option<Pending>, SpoolError> {
        Ok(self
            .pending_after(seq.checked_sub(1), 1)?
            .into_iter()
            .find(|p| p.seq == seq))
    }

    /// Fills `buf` with the `len` bytes at `offset` of a segment.
    fn read_at(
        &self,
        file: &File,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), SpoolError> {
        buf.clear();
        buf.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        file.read_exact_at(buf, offset)
            .map_err(SpoolError::io(&self.shared.dir))
    }

    fn decode(&self, record: &[u8]) -> Result<Envelope, SpoolError> {
        record::decode(record)
            .map(|(_, env, _)| env)
            .map_err(|e| SpoolError::Io {
                path: self.shared.dir.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })
    }

    /// Forgets a confirmed entry. Deletes its segment once nothing in it is
    /// pending. Removing an unknown sequence number is a no-op.
    pub fn remove(&self, seq: u64) {
        self.remove_many(&[seq]);
    }

    /// Forgets confirmed entries: one `.acks` write per segment touched,
    /// and drained segments deleted.
    pub fn remove_many(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let mut acks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut state = self.lock();
        for &seq in seqs {
            let Some(meta) = state.entries.remove(&seq) else {
                continue;
            };
            state.live_bytes -= meta.len;
            if let Some(envelope) = &meta.cached {
                state.cached_bytes -= cache_weight(meta.len, envelope);
            }
            if let Some(segment) = state.segments.get_mut(&meta.segment) {
                segment.live -= 1;
                acks.entry(meta.segment)
                    .or_default()
                    .extend_from_slice(&seq.to_le_bytes());
            }
        }
        self.shared.full.store(false, Ordering::Release);
        let active = state.active_segment;
        let mut drained = Vec::new();
        for (id, marks) in acks {
            let Some(segment) = state.segments.get_mut(&id) else {
                continue;
            };
            if segment.live == 0 && id != active {
                state.segments.remove(&id);
                drained.push(id);
                continue;
            }
            if segment.acks.is_none() {
                segment.acks = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(acks_path(&self.shared.dir, id))
                    .ok();
            }
            if let Some(file) = &mut segment.acks
                && let Err(e) = file.write_all(&marks)
            {
                tracing::warn!(error = %e, segment = id, "could not record confirmed entries; they may be delivered again after a restart");
            }
        }
        drop(state);
        for id in drained {
            delete_segment(&self.shared.dir, id);
        }
    }

    /// Current occupancy.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            entries: state.entries.len() as u64,
            bytes: state.live_bytes,
            oldest: state.entries.values().next().map(|m| m.received_at),
            full: self.shared.full.load(Ordering::Acquire),
            unwritable: self.shared.health.is_failing(),
            write_failures: self.shared.health.counts(),
        }
    }

    /// Completes when entries were appended since the last call (or now).
    pub async fn appended(&self) {
        self.shared.appended.notified().await;
    }

    /// Group commits (fdatasync calls) since open: fewer than appends when
    /// concurrent requests share them.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The write failure in force: set when a group commit fails, cleared
    /// when one succeeds or [`Spool::recheck_writes`] finds the disk
    /// writable again.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.shared.health.current()
    }

    /// Whether a write failure is in force: [`Spool::write_failure`]
    /// without its message, cheap enough for every request.
    pub fn is_unwritable(&self) -> bool {
        self.shared.health.is_failing()
    }

    /// While a write failure is in force, probes the disk every `every`
    /// until `stop` is cancelled: nothing is appended meanwhile (requests
    /// are refused early and load balancers stop sending), so without the
    /// probe a disk that has room again would never be noticed.
    pub async fn recheck_writes(&self, every: std::time::Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            if !self.shared.health.is_failing() {
                continue;
            }
            let dir = self.shared.dir.clone();
            match tokio::task::spawn_blocking(move || health::probe(&dir)).await {
                Ok(Ok(())) => self.shared.health.succeeded(),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "the spool still cannot be written")
                }
                Err(_) => {}
            }
        }
    }

    /// Refuses further appends; pending entries stay on disk for the next start.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
