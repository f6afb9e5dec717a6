//! The drain of `DURABILITY=spool` and `replicated`: pending spool entries
//! published in order with a window of many visits in flight, an entry
//! removed only when all its messages are confirmed, nacked, returned or
//! timed-out entries retried on their own schedule. Also the backlog log.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::Publisher;
use super::confirm::{self, CONFIRM_WINDOW, CONFIRM_WINDOW_BYTES, PublishError};
use super::link::Link;
use super::message::{self, Prepared};
use super::retries::Retries;
use super::spans::{self, Origin};
use crate::spool::{Pending, Spool};

impl Publisher {
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
                    let mut prepared =
                        message::prepare(&pending.envelope, &self.publisher.topology);
                    spans::start(&mut prepared, &pending.envelope, Origin::Accepted);
                    (pending, prepared)
                })
                .collect();
            let started = Instant::now();
            let mut visits: Vec<&mut Prepared> = prepared.iter_mut().map(|(_, p)| p).collect();
            let sent = confirm::send_visits(self.channel, &mut visits).await?;
            let timeout = self.publisher.publish_timeout;
            for ((pending, prepared), sent) in prepared.into_iter().zip(sent) {
                self.in_flight.insert(pending.seq);
                self.in_flight_bytes += window_cost(&pending);
                let answered = self.publisher.last_answer.clone();
                confirms.push(Box::pin(async move {
                    let result =
                        tokio::time::timeout(timeout, confirm::settle_all(sent, &answered))
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
        spans::settled(&prepared.messages, &result);
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
                spans::retry_scheduled(&prepared.messages, delay);
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
