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
//! This module is the only one that touches the disk.

pub mod record;

use std::{
    collections::{BTreeMap, HashSet},
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

use crate::visit::Envelope;

/// A new segment is started once the active one reaches this size.
const SEGMENT_TARGET_BYTES: u64 = 16 << 20;
/// Bodies of recent appends kept in memory, so the publisher rarely reads
/// disk while it keeps up; a backlog beyond it is read back from the segments.
const CACHE_MAX_BYTES: u64 = 8 << 20;
/// Upper bound of one group commit.
const MAX_BATCH_RECORDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 16 << 20;

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
}

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
    _lock: File,
}

struct WriteRequest {
    envelope: Envelope,
    len: u64,
    done: oneshot::Sender<Result<u64, SpoolError>>,
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

/// Owns the writer thread: when the last [`Spool`] clone goes, the thread
/// finishes its batch and is joined, so the directory lock is released
/// before the drop returns (a restart in the same process can reopen it).
struct WriterHandle {
    requests: Option<mpsc::UnboundedSender<WriteRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
        for (seq, located) in wanted {
            let envelope = match located {
                Located::Memory(env) => env,
                Located::Disk(file, offset, len) => Arc::new(self.read_at(&file, offset, len)?),
            };
            out.push(Pending { seq, envelope });
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

    fn read_at(&self, file: &File, offset: u64, len: u64) -> Result<Envelope, SpoolError> {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        let path = self.shared.dir.clone();
        file.read_exact_at(&mut buf, offset)
            .map_err(SpoolError::io(&path))?;
        record::decode(&buf)
            .map(|(_, env, _)| env)
            .map_err(|e| SpoolError::Io {
                path,
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
            if meta.cached.is_some() {
                state.cached_bytes -= meta.len;
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
            self.delete_segment(id);
        }
    }

    fn delete_segment(&self, id: u64) {
        for path in [
            segment_path(&self.shared.dir, id),
            acks_path(&self.shared.dir, id),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "could not delete a drained spool segment")
                }
            }
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

struct Writer {
    shared: Arc<Shared>,
    file: File,
    segment: u64,
    segment_len: u64,
    next_seq: u64,
}

impl Writer {
    fn run(mut self, mut requests: mpsc::UnboundedReceiver<WriteRequest>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut batch = Vec::with_capacity(256);
        while let Some(first) = requests.blocking_recv() {
            let mut bytes = first.len as usize;
            batch.push(first);
            while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
                match requests.try_recv() {
                    Ok(next) => {
                        bytes += next.len as usize;
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, &mut buf);
        }
    }

    /// Writes and fsyncs one batch, then publishes it to the index and
    /// answers every waiting append.
    fn commit(&mut self, batch: &mut Vec<WriteRequest>, buf: &mut Vec<u8>) {
        buf.clear();
        if self.segment_len >= SEGMENT_TARGET_BYTES
            && let Err(e) = self.rotate()
        {
            self.fail(batch, e);
            return;
        }
        let first_seq = self.next_seq;
        let mut offsets = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter().enumerate() {
            offsets.push(self.segment_len + buf.len() as u64);
            record::encode(first_seq + i as u64, &request.envelope, buf);
        }
        let path = segment_path(&self.shared.dir, self.segment);
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // The segment may now end in a partial record: continue in a new
            // one so good records never follow damage in the same file.
            let _ = self.rotate();
            self.fail(batch, SpoolError::Io { path, source });
            return;
        }
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.segment_len += buf.len() as u64;
        self.next_seq += batch.len() as u64;

        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = Vec::with_capacity(batch.len());
        for (i, request) in batch.drain(..).enumerate() {
            let seq = first_seq + i as u64;
            let cache = state.cached_bytes + request.len <= CACHE_MAX_BYTES;
            let received_at = request.envelope.receipt.received_at;
            let cached = cache.then(|| Arc::new(request.envelope));
            if cache {
                state.cached_bytes += request.len;
            }
            state.entries.insert(
                seq,
                EntryMeta {
                    segment: self.segment,
                    offset: offsets[i],
                    len: request.len,
                    received_at,
                    cached,
                },
            );
            state.live_bytes += request.len;
            self.shared
                .reserved
                .fetch_sub(request.len, Ordering::AcqRel);
            if let Some(segment) = state.segments.get_mut(&self.segment) {
                segment.live += 1;
            }
            done.push((request.done, seq));
        }
        drop(state);
        self.shared.appended.notify_one();
        for (tx, seq) in done {
            let _ = tx.send(Ok(seq));
        }
    }

    fn fail(&self, batch: &mut Vec<WriteRequest>, error: SpoolError) {
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "spool write failed; requests answered 503");
        for request in batch.drain(..) {
            self.shared
                .reserved
                .fetch_sub(request.len, Ordering::AcqRel);
            let copy = SpoolError::Io {
                path: self.shared.dir.clone(),
                source: io::Error::other(error.to_string()),
            };
            let _ = request.done.send(Err(copy));
        }
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let next = self.segment + 1;
        let file = create_segment(&self.shared.dir, next)?;
        let handle = Arc::new(file.try_clone().map_err(SpoolError::io(&self.shared.dir))?);
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.segment;
        state.segments.insert(
            next,
            Segment {
                file: handle,
                acks: None,
                live: 0,
            },
        );
        state.active_segment = next;
        let drained = state.segments.get(&previous).is_some_and(|s| s.live == 0);
        if drained {
            state.segments.remove(&previous);
        }
        drop(state);
        if drained {
            for path in [
                segment_path(&self.shared.dir, previous),
                acks_path(&self.shared.dir, previous),
            ] {
                let _ = fs::remove_file(path);
            }
        }
        self.file = file;
        self.segment = next;
        self.segment_len = 0;
        Ok(())
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

fn acks_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.acks"))
}

/// Ids of the segment files in `dir`, oldest first.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids: Vec<u64> = fs::read_dir(dir)
        .map_err(SpoolError::io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Creates a segment file and makes its directory entry durable.
fn create_segment(dir: &Path, id: u64) -> Result<File, SpoolError> {
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

/// Reads every segment: pending entries into the index, confirmed ones
/// skipped, damaged regions logged and skipped. Also returns the next
/// sequence number and segment id to use.
fn recover(dir: &Path) -> Result<(State, RecoveryReport, u64, u64), SpoolError> {
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
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(acks_path(dir, id));
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
struct SegmentScan {
    max_seq: u64,
    acknowledged: u64,
    damaged: Vec<(PathBuf, u64, u64)>,
}

/// Decodes every record of a segment, calls `pending(seq, offset, len,
/// envelope)` for each one not in `acked`, and logs and skips damage.
fn scan_segment(
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
        let scan = scan_segment(&path, &bytes, &acked, |seq, _, len, envelope| {
            stats.entries += 1;
            stats.bytes += len;
            let at = envelope.receipt.received_at;
            stats.oldest = Some(stats.oldest.map_or(at, |o| o.min(at)));
            if oldest.len() < keep {
                oldest.push((seq, envelope));
            }
        });
        inspection.acknowledged += scan.acknowledged;
        inspection.damaged.extend(scan.damaged);
    }
    Ok(inspection)
}

fn held_by_another_process(lock_path: &Path) -> bool {
    let Ok(file) = File::open(lock_path) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
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

fn read_acks(path: &Path) -> HashSet<u64> {
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

#[cfg(test)]
mod tests;
