//! Delivery to RabbitMQ with publisher confirms.
//!
//! - [`Publisher::deliver`] publishes one envelope and waits for its
//!   confirms (`DURABILITY=confirm`).
//! - [`Publisher::drain`] (`drain`) is the background task of
//!   `DURABILITY=spool` and `replicated`: it publishes the spool in order
//!   and removes each entry once confirmed; `retries` schedules the ones the
//!   broker did not take.
//! - `confirm`: sending batches and reading confirms, shared with `replay`;
//!   `message`: envelope to messages; `headers`: their header names;
//!   `topology`: names and declarations as data; `declare`: declaring them;
//!   `connect`: opening connections; `link`: the relay's one connection,
//!   kept up; `archive`: reading the archive stream back; `waiters`: the
//!   requests of `replicated` mode waiting for their confirms; `spans`: the
//!   producer spans while spans are exported.
//!
//! A publish that times out while the broker has not answered anything
//! (confirm, nack or return) for a whole `PUBLISH_TIMEOUT` means the link is
//! silent — a partition, a frozen node — rather than slow: the session is
//! dropped and the link reconnects, to the next node first. The broker's own
//! resource alarm (`connection.blocked`) is the exception: it is waited out.
//!
//! This module speaks AMQP for the relay; the operator tools in `cli`
//! (`tail`, `replay`, `topology`) also use lapin for their own consumers.

pub mod archive;
mod confirm;
pub mod connect;
mod declare;
mod drain;
pub mod headers;
pub mod link;
pub mod message;
mod retries;
pub mod spans;
pub mod topology;
mod waiters;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::metrics::{ExchangeLabel, Metrics};
use crate::visit::Envelope;
use confirm::LastTime;
pub use confirm::{CONFIRM_WINDOW, PublishError, send, settle};
pub use declare::{check_queue, declare};
use link::Link;
use message::Prepared;
use topology::Topology;
pub use waiters::{ConfirmWaiters, Waiting};

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
                spans::start(&mut prepared, envelope, spans::Origin::Accepted);
                let started = Instant::now();
                let outcome = tokio::time::timeout(self.publish_timeout, async {
                    let mut confirms =
                        confirm::send_visits(&session.channel, &mut [&mut prepared]).await?;
                    confirm::settle_all(confirms.pop().unwrap_or_default(), &self.last_answer).await
                })
                .await
                .unwrap_or(Err(PublishError::Timeout));
                spans::settled(&prepared.messages, &outcome);
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
}
