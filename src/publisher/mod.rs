//! Delivery to RabbitMQ with publisher confirms.
//!
//! - [`Publisher::deliver`] publishes one envelope and waits for its
//!   confirms (`DURABILITY=confirm`).
//! - [`Publisher::drain`] is the background task of `DURABILITY=spool`: it
//!   publishes pending spool entries in order with a window of many visits in
//!   flight, removes an entry only when all its messages are confirmed, and
//!   retries nacked, returned or timed-out entries with their own backoff
//!   (capped at five minutes) without holding back the others.
//!
//! A publish that times out while the broker has not answered anything
//! (confirm, nack or return) for a whole `PUBLISH_TIMEOUT` means the link is
//! silent — a partition, a frozen node — rather than slow: the session is
//! dropped and the link reconnects, to the next node first. The broker's own
//! resource alarm (`connection.blocked`) is the exception: it is waited out.
//!
//! Only this module (and its children) uses lapin.

pub mod link;
pub mod message;
pub mod topology;
pub mod waiters;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use lapin::{Channel, Confirmation, PublisherConfirm, options::BasicPublishOptions};
use tokio_util::sync::CancellationToken;

use crate::metrics::{ExchangeLabel, Metrics, PublishFailure};
use crate::spool::{Pending, Spool};
use crate::visit::Envelope;
use link::Link;
use message::Prepared;
use topology::Topology;
use waiters::ConfirmWaiters;

/// Visits published but not yet confirmed, at most.
const CONFIRM_WINDOW: usize = 512;
/// Bytes of visits published but not yet confirmed, at most (a visit counts
/// twice its body: raw and normalized). Keeps memory flat with large bodies;
/// one visit is always allowed, whatever its size.
const CONFIRM_WINDOW_BYTES: usize = 8 << 20;
/// Backoff of one entry that the broker nacked or returned.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Why a publish did not end in confirms.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No broker connection right now.
    #[error("not connected to the broker")]
    NotConnected,
    /// The connection or channel failed.
    #[error("broker connection failed during publish")]
    Connection(#[source] lapin::Error),
    /// The broker nacked a message.
    #[error("the broker nacked the message")]
    Nack,
    /// The broker returned a message as unroutable (no queue, not even unrouted).
    #[error("the broker returned the message as unroutable ({0})")]
    Returned(String),
    /// No confirm within `PUBLISH_TIMEOUT`.
    #[error("no confirm within the publish timeout")]
    Timeout,
}

impl PublishError {
    /// What the broker's answer to a mandatory publish means: an ack without
    /// a returned message, or why not.
    ///
    /// # Errors
    /// The message was returned (unroutable) or nacked.
    pub fn check(confirmation: Confirmation) -> Result<(), Self> {
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Self::Returned(returned.reply_text.to_string()))
            }
            Confirmation::Nack(None) | Confirmation::NotRequested => Err(Self::Nack),
        }
    }

    /// The `publish_failures_total` reason.
    pub fn reason(&self) -> PublishFailure {
        match self {
            Self::NotConnected | Self::Connection(_) => PublishFailure::Connection,
            Self::Nack => PublishFailure::Nack,
            Self::Returned(_) => PublishFailure::Returned,
            Self::Timeout => PublishFailure::Timeout,
        }
    }
}

/// Publishes envelopes over the [`Link`]'s current session.
pub struct Publisher {
    link: Link,
    topology: Topology,
    metrics: Metrics,
    publish_timeout: Duration,
    waiters: ConfirmWaiters,
    last_answer: Arc<LastTime>,
    last_delivery: LastTime,
}

/// When something last happened (the broker answered a publish, a visit
/// was delivered); lock-free, read by the probes and the drain.
struct LastTime {
    base: Instant,
    millis: AtomicU64,
}

impl LastTime {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    fn record(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_max(now, Ordering::Relaxed);
    }

    fn elapsed(&self) -> Duration {
        let last = Duration::from_millis(self.millis.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

impl Publisher {
    /// A publisher over `link`.
    pub fn new(
        link: Link,
        topology: Topology,
        metrics: Metrics,
        publish_timeout: Duration,
    ) -> Self {
        Self {
            link,
            topology,
            metrics,
            publish_timeout,
            waiters: ConfirmWaiters::default(),
            last_answer: Arc::new(LastTime::new()),
            last_delivery: LastTime::new(),
        }
    }

    /// Time since a visit was last delivered (all its messages confirmed),
    /// or since start.
    pub fn since_last_delivery(&self) -> Duration {
        self.last_delivery.elapsed()
    }

    /// Whether a publish that timed out means the link is silent (see the
    /// module header), in which case the session is given up.
    fn link_is_silent(&self) -> bool {
        self.last_answer.elapsed() >= self.publish_timeout && !self.link.is_blocked()
    }

    /// The broker link (for readiness).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Requests waiting for their spool entry's confirms; [`Publisher::drain`]
    /// tells them (`DURABILITY=replicated`).
    pub fn waiters(&self) -> &ConfirmWaiters {
        &self.waiters
    }

    /// Publishes one envelope and waits for every confirm, within
    /// `PUBLISH_TIMEOUT` (confirm mode).
    ///
    /// # Errors
    /// See [`PublishError`]; the failure is counted in the metrics.
    pub async fn deliver(&self, envelope: &Envelope) -> Result<(), PublishError> {
        let result = match self.link.current() {
            None => Err(PublishError::NotConnected),
            Some(session) => {
                let mut prepared = message::prepare(envelope, &self.topology);
                let started = Instant::now();
                let outcome = tokio::time::timeout(self.publish_timeout, async {
                    let mut confirms = start_many(&session.channel, &mut [&mut prepared]).await?;
                    finish(confirms.pop().unwrap_or_default(), &self.last_answer).await
                })
                .await
                .unwrap_or(Err(PublishError::Timeout));
                match &outcome {
                    Err(PublishError::Connection(_)) => self.link.reset(session.generation),
                    Err(PublishError::Timeout) if self.link_is_silent() => {
                        tracing::warn!(
                            timeout_ms = self.publish_timeout.as_millis() as u64,
                            "no answer from the broker within PUBLISH_TIMEOUT; reconnecting"
                        );
                        self.link.reset(session.generation);
                    }
                    _ => {}
                }
                outcome.map(|()| self.record_success(envelope, &prepared, started))
            }
        };
        if let Err(error) = &result {
            self.metrics.publish_failed(error.reason());
        }
        result
    }

    fn record_success(&self, envelope: &Envelope, prepared: &Prepared, started: Instant) {
        self.last_delivery.record();
        self.metrics.confirm_latency(started.elapsed());
        for m in &prepared.messages {
            self.metrics.published(m.label, prepared.product);
            // Raw copies reach the archive by a product binding or, for
            // other products, through the unrouted fanout: every one lands.
            if m.label == ExchangeLabel::Raw && self.topology.archives() {
                self.metrics.archive_appended();
            }
        }
        for w in &prepared.warnings {
            self.metrics.normalization_warning(w.metric_field);
        }
        let since_receipt = jiff::Timestamp::now().duration_since(envelope.receipt.received_at);
        self.metrics
            .end_to_end(Duration::try_from(since_receipt).unwrap_or_default());
    }

    /// Delivers the spool until `stop` is cancelled. Entries stay in the
    /// spool until confirmed; `recovered_up_to` marks entries that a previous
    /// run may already have delivered (counted as redeliveries).
    pub async fn drain(
        self: Arc<Self>,
        spool: Spool,
        recovered_up_to: Option<u64>,
        stop: CancellationToken,
    ) {
        let mut link = self.link.clone();
        let mut retries = Retries::default();
        let mut last_generation = None;
        loop {
            let session = tokio::select! {
                session = link.next_session(last_generation) => match session {
                    Some(session) => session,
                    None => return,
                },
                () = stop.cancelled() => return,
            };
            last_generation = Some(session.generation);
            let mut round = Round {
                publisher: &self,
                spool: &spool,
                channel: &session.channel,
                retries: &mut retries,
                recovered_up_to,
                cursor: None,
                in_flight: HashSet::new(),
                in_flight_bytes: 0,
            };
            let lost = round.run(&mut link, session.generation, &stop).await;
            if lost == RoundEnd::Stopped {
                return;
            }
            link.reset(session.generation);
        }
    }
}

/// How often the spool backlog is checked for the log.
const BACKLOG_CHECK: Duration = Duration::from_secs(30);
/// A backlog older than this is worth a warning.
const BACKLOG_WARN_AGE: Duration = Duration::from_secs(60);

impl Publisher {
    /// Logs the spool backlog while it grows or ages, and once when it is
    /// drained again, until `stop` is cancelled.
    pub async fn watch_backlog(self: Arc<Self>, spool: Spool, stop: CancellationToken) {
        let mut previous = 0u64;
        let mut warned = false;
        let mut ticks = tokio::time::interval(BACKLOG_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let stats = spool.stats();
            let age = stats.oldest_age(jiff::Timestamp::now());
            let growing = stats.entries > previous;
            if stats.entries > 0 && (growing || age >= BACKLOG_WARN_AGE) {
                tracing::warn!(
                    entries = stats.entries,
                    bytes = stats.bytes,
                    oldest_age_s = age.as_secs(),
                    growing,
                    broker_connected = self.link.is_connected(),
                    "spool backlog: visits are waiting for the broker"
                );
                warned = true;
            } else if stats.entries == 0 && warned {
                tracing::info!("spool backlog drained");
                warned = false;
            }
            previous = stats.entries;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RoundEnd {
    /// The session failed; start again on the next one.
    SessionLost,
    /// Shutdown.
    Stopped,
}

/// Per-entry retry schedule for nacked, returned or timed-out entries.
#[derive(Default)]
struct Retries {
    attempts: HashMap<u64, u32>,
    waiting: BTreeMap<(Instant, u64), ()>,
    waiting_seqs: HashSet<u64>,
}

impl Retries {
    fn schedule(&mut self, seq: u64) -> Duration {
        let attempt = self.attempts.entry(seq).or_insert(0);
        *attempt += 1;
        let exponent = (*attempt - 1).min(16);
        let base = RETRY_MIN.saturating_mul(1 << exponent).min(RETRY_MAX);
        let jitter = base.mul_f64(0.2 * f64::from(uuid::Uuid::now_v7().as_bytes()[15]) / 255.0);
        let delay = (base + jitter).min(RETRY_MAX);
        self.waiting.insert((Instant::now() + delay, seq), ());
        self.waiting_seqs.insert(seq);
        delay
    }

    fn is_waiting(&self, seq: u64) -> bool {
        self.waiting_seqs.contains(&seq)
    }

    fn next_due(&self) -> Option<Instant> {
        self.waiting.keys().next().map(|(at, _)| *at)
    }

    /// Entries whose wait is over.
    fn take_due(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, seq)) = self.waiting.keys().next() {
            if at > now {
                break;
            }
            self.waiting.remove(&(at, seq));
            self.waiting_seqs.remove(&seq);
            due.push(seq);
        }
        due
    }

    fn attempted(&self, seq: u64) -> bool {
        self.attempts.contains_key(&seq)
    }

    fn forget(&mut self, seq: u64) {
        self.attempts.remove(&seq);
    }
}

type Confirms = Vec<PublisherConfirm>;
type InFlight = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Pending, Prepared, Instant, Result<(), PublishError>)>
            + Send,
    >,
>;

/// Draining over one session.
struct Round<'a> {
    publisher: &'a Publisher,
    spool: &'a Spool,
    channel: &'a Channel,
    retries: &'a mut Retries,
    recovered_up_to: Option<u64>,
    cursor: Option<u64>,
    in_flight: HashSet<u64>,
    in_flight_bytes: usize,
}

/// What an entry weighs against [`CONFIRM_WINDOW_BYTES`].
fn window_cost(pending: &Pending) -> usize {
    pending.envelope.body.len() * 2
}

impl Round<'_> {
    async fn run(
        &mut self,
        link: &mut Link,
        generation: u64,
        stop: &CancellationToken,
    ) -> RoundEnd {
        let mut confirms: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut due: Vec<u64> = Vec::new();
        loop {
            if let Err(error) = self.fill(&mut confirms, &mut due).await {
                tracing::warn!(%error, "publish failed; will resume on the next connection");
                self.publisher.metrics.publish_failed(error.reason());
                return RoundEnd::SessionLost;
            }
            let next_due = self.retries.next_due();
            tokio::select! {
                Some(first) = confirms.next(), if !confirms.is_empty() => {
                    // Confirms often come in groups (multiple=true): settle all
                    // that are ready, then refill the window in one batch.
                    let mut ready = vec![first];
                    while let Some(Some(next)) = confirms.next().now_or_never() {
                        ready.push(next);
                    }
                    let mut confirmed = Vec::with_capacity(ready.len());
                    let mut lost = false;
                    for (pending, prepared, started, result) in ready {
                        self.in_flight.remove(&pending.seq);
                        self.in_flight_bytes -= window_cost(&pending);
                        match self.settle(pending, prepared, started, result) {
                            Ok(Some(seq)) => confirmed.push(seq),
                            Ok(None) => {}
                            Err(_) => lost = true,
                        }
                    }
                    self.spool.remove_many(&confirmed);
                    if lost {
                        return RoundEnd::SessionLost;
                    }
                }
                () = self.spool.appended() => {}
                () = sleep_until(next_due), if next_due.is_some() => {
                    due.extend(self.retries.take_due(Instant::now()));
                }
                () = link.lost(generation) => return RoundEnd::SessionLost,
                () = stop.cancelled() => return RoundEnd::Stopped,
            }
        }
    }

    /// Publishes entries until the window is full or nothing is pending.
    async fn fill(
        &mut self,
        confirms: &mut FuturesUnordered<InFlight>,
        due: &mut Vec<u64>,
    ) -> Result<(), PublishError> {
        while confirms.len() < CONFIRM_WINDOW && self.in_flight_bytes < CONFIRM_WINDOW_BYTES {
            let room = CONFIRM_WINDOW - confirms.len();
            let mut batch = Vec::new();
            while batch.len() < room {
                let Some(seq) = due.pop() else { break };
                if let Ok(Some(p)) = self.spool.get(seq) {
                    batch.push(p);
                }
            }
            let from_due = batch.len();
            if batch.len() < room {
                let fresh = match self.spool.pending_after(self.cursor, room - batch.len()) {
                    Ok(fresh) => fresh,
                    Err(error) => {
                        // Disk trouble: say so, and try again on the next wake-up
                        // (a confirm, an append or a retry coming due).
                        tracing::error!(%error, "cannot read pending entries from the spool");
                        Vec::new()
                    }
                };
                if let Some(last) = fresh.last() {
                    self.cursor = Some(last.seq);
                }
                batch.extend(fresh.into_iter().filter(|p| {
                    !self.retries.is_waiting(p.seq) && !self.in_flight.contains(&p.seq)
                }));
            }
            self.trim_to_byte_budget(&mut batch, from_due, due);
            if batch.is_empty() {
                return Ok(());
            }
            let mut prepared: Vec<(Pending, Prepared)> = batch
                .into_iter()
                .map(|pending| {
                    let redelivery = self.retries.attempted(pending.seq)
                        || self.recovered_up_to.is_some_and(|r| pending.seq <= r);
                    if redelivery {
                        self.publisher.metrics.redelivered(1);
                    }
                    let prepared = message::prepare(&pending.envelope, &self.publisher.topology);
                    (pending, prepared)
                })
                .collect();
            let started = Instant::now();
            let mut visits: Vec<&mut Prepared> = prepared.iter_mut().map(|(_, p)| p).collect();
            let sent = start_many(self.channel, &mut visits).await?;
            let timeout = self.publisher.publish_timeout;
            for ((pending, prepared), sent) in prepared.into_iter().zip(sent) {
                self.in_flight.insert(pending.seq);
                self.in_flight_bytes += window_cost(&pending);
                let answered = self.publisher.last_answer.clone();
                confirms.push(Box::pin(async move {
                    let result = tokio::time::timeout(timeout, finish(sent, &answered))
                        .await
                        .unwrap_or(Err(PublishError::Timeout));
                    (pending, prepared, started, result)
                }));
            }
        }
        Ok(())
    }

    /// Drops the tail of `batch` that would exceed the byte budget, so those
    /// entries are fetched again later: the first `from_due` came from the
    /// retry queue and go back to it, the rest by moving the cursor back.
    fn trim_to_byte_budget(
        &mut self,
        batch: &mut Vec<Pending>,
        from_due: usize,
        due: &mut Vec<u64>,
    ) {
        let mut used = self.in_flight_bytes;
        let keep = batch
            .iter()
            .enumerate()
            .take_while(|(i, p)| {
                let fits = used + window_cost(p) <= CONFIRM_WINDOW_BYTES || (used == 0 && *i == 0);
                used += window_cost(p);
                fits
            })
            .count();
        for (i, dropped) in batch.drain(keep..).enumerate() {
            if keep + i < from_due {
                due.push(dropped.seq);
            } else if keep + i == from_due.max(keep) {
                // Fresh entries are in order: rewind to just before the first dropped.
                self.cursor = dropped.seq.checked_sub(1);
            }
        }
    }

    /// Acts on one entry's confirms; returns the sequence number to remove
    /// from the spool when it was confirmed.
    fn settle(
        &mut self,
        pending: Pending,
        prepared: Prepared,
        started: Instant,
        result: Result<(), PublishError>,
    ) -> Result<Option<u64>, RoundEnd> {
        match result {
            Ok(()) => {
                self.retries.forget(pending.seq);
                self.publisher
                    .waiters
                    .confirmed(pending.envelope.receipt.id);
                self.publisher
                    .record_success(&pending.envelope, &prepared, started);
                Ok(Some(pending.seq))
            }
            Err(error @ PublishError::Connection(_)) | Err(error @ PublishError::NotConnected) => {
                tracing::warn!(%error, seq = pending.seq, "confirm lost with the connection; will publish again");
                self.publisher.metrics.publish_failed(error.reason());
                Err(RoundEnd::SessionLost)
            }
            Err(error @ PublishError::Timeout) if self.publisher.link_is_silent() => {
                tracing::warn!(
                    seq = pending.seq,
                    timeout_ms = self.publisher.publish_timeout.as_millis() as u64,
                    "no answer from the broker within PUBLISH_TIMEOUT; reconnecting, unconfirmed visits will be published again"
                );
                self.publisher.metrics.publish_failed(error.reason());
                Err(RoundEnd::SessionLost)
            }
            Err(error) => {
                let delay = self.retries.schedule(pending.seq);
                tracing::warn!(
                    %error, seq = pending.seq, visit_id = prepared.visit_id.as_deref().unwrap_or(""),
                    retry_in_ms = delay.as_millis() as u64,
                    "broker did not take the visit; it stays in the spool and will be retried"
                );
                self.publisher.metrics.publish_failed(error.reason());
                Ok(None)
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends every message of `visits` (mandatory, persistent) and returns each
/// visit's pending confirms. The messages' properties are handed to lapin
/// (taken, not cloned: a header table per message is a dozen allocations).
///
/// lapin's `basic_publish` resolves only once its IO loop has written the
/// frames, so awaiting publishes one by one costs a thread hand-off per
/// message. Polling them all together queues every frame at once (in order:
/// delivery tags follow the order of first poll) and pays the hand-off once
/// per batch.
async fn start_many(
    channel: &Channel,
    visits: &mut [&mut Prepared],
) -> Result<Vec<Confirms>, PublishError> {
    let publishes = visits.iter_mut().flat_map(|prepared| {
        prepared.messages.iter_mut().map(|m| {
            channel.basic_publish(
                m.exchange.as_str().into(),
                m.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &m.body,
                std::mem::take(&mut m.properties),
            )
        })
    });
    let mut sent = futures_util::future::join_all(publishes).await.into_iter();
    let mut grouped = Vec::with_capacity(visits.len());
    for prepared in visits.iter() {
        let confirms = sent
            .by_ref()
            .take(prepared.messages.len())
            .collect::<Result<Confirms, _>>()
            .map_err(PublishError::Connection)?;
        grouped.push(confirms);
    }
    Ok(grouped)
}

/// Waits for every confirm; any nack or return fails the whole visit.
/// Each answer is recorded in `answered`.
async fn finish(confirms: Confirms, answered: &LastTime) -> Result<(), PublishError> {
    let mut outcome = Ok(());
    for confirm in confirms {
        let confirmation = confirm.await.map_err(PublishError::Connection)?;
        answered.record();
        let result = PublishError::check(confirmation);
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap_at_five_minutes() {
        let mut retries = Retries::default();
        let first = retries.schedule(7);
        assert!(
            first >= RETRY_MIN && first <= RETRY_MIN.mul_f64(1.2),
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            retries.take_due(Instant::now() + RETRY_MAX * 2);
            last = retries.schedule(7);
        }
        assert_eq!(last, RETRY_MAX);
        assert!(retries.attempted(7));
        retries.forget(7);
        assert!(!retries.attempted(7));
    }

    #[test]
    fn only_due_entries_are_taken() {
        let mut retries = Retries::default();
        retries.schedule(1);
        assert!(retries.is_waiting(1));
        assert!(retries.take_due(Instant::now()).is_empty());
        assert_eq!(
            retries.take_due(Instant::now() + Duration::from_secs(2)),
            vec![1]
        );
        assert!(!retries.is_waiting(1));
    }
}
