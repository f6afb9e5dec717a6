//! Publisher confirms: how many publishes may await theirs, sending a batch
//! of messages at once, and reading what the broker answered. The relay's
//! drain and `kobra-relay replay` both publish through here.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use lapin::{Channel, Confirmation, PublisherConfirm, options::BasicPublishOptions};

use super::message::{Outgoing, Prepared};
use crate::metrics::PublishFailure;

/// Visits published but not yet confirmed, at most.
pub const CONFIRM_WINDOW: usize = 512;
/// Bytes of visits published but not yet confirmed, at most (a visit counts
/// twice its body: raw and normalized). Keeps memory flat with large bodies;
/// one visit is always allowed, whatever its size.
pub(super) const CONFIRM_WINDOW_BYTES: usize = 8 << 20;
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

/// When something last happened (the broker answered a publish, a visit
/// was delivered); lock-free, read by the probes and the drain.
pub(super) struct LastTime {
    base: Instant,
    millis: AtomicU64,
}

impl LastTime {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_max(now, Ordering::Relaxed);
    }

    pub(super) fn elapsed(&self) -> Duration {
        let last = Duration::from_millis(self.millis.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// Sends `messages` (mandatory, persistent) and returns their pending
/// confirms, in order. The messages' properties are handed to lapin (taken,
/// not cloned: a header table per message is a dozen allocations).
///
/// lapin's `basic_publish` resolves only once its IO loop has written the
/// frames, so awaiting publishes one by one costs a thread hand-off per
/// message. Polling them all together queues every frame at once (in order:
/// delivery tags follow the order of first poll) and pays the hand-off once
/// per batch.
///
/// # Errors
/// [`PublishError::Connection`]: the channel failed while sending.
pub async fn send<'m>(
    channel: &Channel,
    messages: impl IntoIterator<Item = &'m mut Outgoing>,
) -> Result<Vec<PublisherConfirm>, PublishError> {
    let publishes = messages.into_iter().map(|m| {
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
    });
    futures_util::future::join_all(publishes)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(PublishError::Connection)
}

/// [`send`] for whole visits: each visit's pending confirms, grouped.
pub(super) async fn send_visits(
    channel: &Channel,
    visits: &mut [&mut Prepared],
) -> Result<Vec<Vec<PublisherConfirm>>, PublishError> {
    let counts: Vec<usize> = visits.iter().map(|p| p.messages.len()).collect();
    let messages = visits.iter_mut().flat_map(|p| p.messages.iter_mut());
    let mut sent = send(channel, messages).await?.into_iter();
    Ok(counts
        .into_iter()
        .map(|count| sent.by_ref().take(count).collect())
        .collect())
}

/// Waits for one confirm and reads it.
///
/// # Errors
/// The connection failed first, or the broker nacked or returned the message.
pub async fn settle(confirm: PublisherConfirm) -> Result<(), PublishError> {
    let confirmation = confirm.await.map_err(PublishError::Connection)?;
    PublishError::check(confirmation)
}

/// Waits for every confirm of a visit; any nack or return fails the whole
/// visit. Each answer is recorded in `answered`.
pub(super) async fn settle_all(
    confirms: Vec<PublisherConfirm>,
    answered: &LastTime,
) -> Result<(), PublishError> {
    let mut outcome = Ok(());
    for confirm in confirms {
        let result = settle(confirm).await;
        if let Err(PublishError::Connection(_)) = result {
            return result;
        }
        answered.record();
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}
