//! The writer thread: group commit. Appends arrive over a channel; the
//! thread takes everything queued, writes it with one `write`, calls
//! `fdatasync` once for the batch, and only then answers every append in it.
//! It also rotates segments, so a segment never holds a record after damage.

use std::{
    fs::File,
    io::{self, Write},
    sync::{Arc, atomic::Ordering},
};

use tokio::sync::{mpsc, oneshot};

use super::segment::{create_segment, delete_segment, segment_path};
use super::{EntryMeta, Segment, Shared, SpoolError, cache_weight, record};
use crate::visit::Envelope;

/// A new segment is started once the active one reaches this size.
const SEGMENT_TARGET_BYTES: u64 = 16 << 20;
/// Recent appends kept in memory (records and the documents the ingress
/// made), so the publisher rarely reads disk while it keeps up; a backlog
/// beyond it is read back from the segments.
pub(super) const CACHE_MAX_BYTES: u64 = 8 << 20;
/// Upper bound of one group commit.
const MAX_BATCH_RECORDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 16 << 20;

/// One append waiting for its group commit.
pub(super) struct WriteRequest {
    pub(super) envelope: Envelope,
    pub(super) len: u64,
    pub(super) done: oneshot::Sender<Result<u64, SpoolError>>,
}

/// Owns the writer thread: when the last [`super::Spool`] clone goes, the thread
/// finishes its batch and is joined, so the directory lock is released
/// before the drop returns (a restart in the same process can reopen it).
pub(super) struct WriterHandle {
    pub(super) requests: Option<mpsc::UnboundedSender<WriteRequest>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's state: the active segment and the next sequence number.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) file: File,
    pub(super) segment: u64,
    pub(super) segment_len: u64,
    pub(super) next_seq: u64,
}

impl Writer {
    pub(super) fn run(mut self, mut requests: mpsc::UnboundedReceiver<WriteRequest>) {
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
        self.shared.health.succeeded();
        self.segment_len += buf.len() as u64;
        self.next_seq += batch.len() as u64;

        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = Vec::with_capacity(batch.len());
        for (i, request) in batch.drain(..).enumerate() {
            let seq = first_seq + i as u64;
            let weight = cache_weight(request.len, &request.envelope);
            let cache = state.cached_bytes + weight <= CACHE_MAX_BYTES;
            let received_at = request.envelope.receipt.received_at;
            let cached = cache.then(|| Arc::new(request.envelope));
            if cache {
                state.cached_bytes += weight;
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
        if let SpoolError::Io { source, .. } = &error {
            self.shared.health.failed(source);
        }
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "spool write failed; requests answered 503 and /readyz fails until a write succeeds");
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
            delete_segment(&self.shared.dir, previous);
        }
        self.file = file;
        self.segment = next;
        self.segment_len = 0;
        Ok(())
    }
}
