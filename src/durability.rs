//! Making an accepted request durable before it is acknowledged, as
//! `DURABILITY` says: fsynced to the spool, confirmed by the broker, or
//! both when the confirms come in time (`replicated`).
//!
//! This module decides where a visit is durable, or why nothing durable is
//! available; it knows nothing of HTTP. The ingress turns an
//! [`Unavailable`] into a 503.

use std::{sync::Arc, time::Duration};

use opentelemetry::trace::Status;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use crate::metrics::DurableIn;
use crate::publisher::{PublishError, Publisher};
use crate::spool::{Spool, SpoolError};
use crate::telemetry;
use crate::visit::{Envelope, Kind};

/// Why a request cannot be made durable now; its text says which setting
/// or part is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Shutdown began: nothing new is taken.
    #[error("the relay is shutting down")]
    ShuttingDown,
    /// `SPOOL_MAX_BYTES` is reached.
    #[error("the local spool is full (KOBRA_RELAY_SPOOL_MAX_BYTES); the broker is not draining it")]
    SpoolFull,
    /// The spool's disk failed.
    #[error("the local spool cannot be written (KOBRA_RELAY_SPOOL_DIR)")]
    SpoolUnwritable,
    /// `DURABILITY=confirm` without a broker connection.
    #[error("not connected to the broker (DURABILITY=confirm)")]
    NotConnected,
    /// `DURABILITY=confirm` and the broker did not confirm.
    #[error("the broker did not confirm the visit: {0}")]
    NotConfirmed(#[source] PublishError),
}

/// Where accepted requests go before they are acknowledged.
#[derive(Clone)]
pub struct Sink {
    target: Target,
    publisher: Arc<Publisher>,
}

#[derive(Clone)]
enum Target {
    /// `DURABILITY=spool`: the local spool; a background task publishes.
    Spool(Spool),
    /// `DURABILITY=replicated`: the local spool, and the answer waits up to
    /// `deadline` for the background task's confirms.
    Replicated { spool: Spool, deadline: Duration },
    /// `DURABILITY=confirm`: straight to the broker.
    Confirm,
}

impl Sink {
    /// `DURABILITY=spool`.
    pub fn spooled(spool: Spool, publisher: Arc<Publisher>) -> Self {
        Self {
            target: Target::Spool(spool),
            publisher,
        }
    }

    /// `DURABILITY=replicated`, waiting up to `deadline` for confirms.
    pub fn replicated(spool: Spool, deadline: Duration, publisher: Arc<Publisher>) -> Self {
        Self {
            target: Target::Replicated { spool, deadline },
            publisher,
        }
    }

    /// `DURABILITY=confirm`.
    pub fn confirmed(publisher: Arc<Publisher>) -> Self {
        Self {
            target: Target::Confirm,
            publisher,
        }
    }

    /// The spool, in the modes that have one.
    pub fn spool(&self) -> Option<&Spool> {
        match &self.target {
            Target::Spool(spool) | Target::Replicated { spool, .. } => Some(spool),
            Target::Confirm => None,
        }
    }

    /// Whether the answer says where the visit is durable (it varies only
    /// in `replicated` mode).
    pub fn is_replicated(&self) -> bool {
        matches!(self.target, Target::Replicated { .. })
    }

    /// Whether a visit's document made at the ingress would reach the
    /// publisher: always when publishing straight away, and while the
    /// spool keeps appends in memory (past that, the drain reads the body
    /// back from disk and makes the document then).
    pub fn keeps_documents(&self) -> bool {
        match &self.target {
            Target::Spool(spool) | Target::Replicated { spool, .. } => spool.caches_appends(),
            Target::Confirm => true,
        }
    }

    /// Checked before a body is read, so a relay that could not keep it
    /// refuses without consuming the upload.
    ///
    /// # Errors
    /// The spool has no room for `declared_len` bytes or its last write
    /// failed, or (confirm mode) no broker is connected.
    pub fn check_room(&self, declared_len: u64) -> Result<(), Unavailable> {
        match &self.target {
            Target::Spool(spool) | Target::Replicated { spool, .. } if spool.is_unwritable() => {
                Err(Unavailable::SpoolUnwritable)
            }
            Target::Spool(spool) | Target::Replicated { spool, .. }
                if !spool.has_room_for(declared_len) =>
            {
                Err(Unavailable::SpoolFull)
            }
            Target::Confirm if !self.publisher.link().is_connected() => {
                Err(Unavailable::NotConnected)
            }
            _ => Ok(()),
        }
    }

    /// Makes the envelope durable and says where it is durable now. Bodies
    /// that are not visits are kept in the spool and not waited for in
    /// `replicated` mode: their refusal promises only that they are kept.
    ///
    /// # Errors
    /// See [`Unavailable`]; nothing is left half-written.
    pub async fn make_durable(&self, envelope: Envelope) -> Result<DurableIn, Unavailable> {
        if !telemetry::is_exporting() {
            return self.write(envelope).await;
        }
        let span = tracing::info_span!(
            "durable write",
            durability = self.mode_name(),
            durable_in = tracing::field::Empty,
            kobra.receipt_id = %envelope.receipt.id,
        );
        let outcome = self.write(envelope).instrument(span.clone()).await;
        match &outcome {
            Ok(durable_in) => {
                span.record("durable_in", durable_in.as_str());
            }
            Err(error) => span.set_status(Status::error(error.to_string())),
        }
        outcome
    }

    /// The `DURABILITY` value, for the durable-write span.
    fn mode_name(&self) -> &'static str {
        match self.target {
            Target::Spool(_) => "spool",
            Target::Replicated { .. } => "replicated",
            Target::Confirm => "confirm",
        }
    }

    async fn write(&self, envelope: Envelope) -> Result<DurableIn, Unavailable> {
        match &self.target {
            Target::Spool(spool) => {
                append(spool, envelope).await?;
                Ok(DurableIn::Spool)
            }
            Target::Replicated { spool, deadline } => {
                // Registered before the append, so that no confirm can be missed.
                let waiting = (envelope.kind == Kind::Visit)
                    .then(|| self.publisher.waiters().register(envelope.receipt.id));
                append(spool, envelope).await?;
                let Some(mut waiting) = waiting else {
                    return Ok(DurableIn::Spool);
                };
                match tokio::time::timeout(*deadline, waiting.confirmed()).await {
                    Ok(true) => Ok(DurableIn::Broker),
                    Ok(false) | Err(_) => Ok(DurableIn::Spool),
                }
            }
            Target::Confirm => match self.publisher.deliver(&envelope).await {
                Ok(()) => Ok(DurableIn::Broker),
                Err(error) => {
                    tracing::warn!(%error, "broker did not confirm (DURABILITY=confirm)");
                    Err(Unavailable::NotConfirmed(error))
                }
            },
        }
    }
}

async fn append(spool: &Spool, envelope: Envelope) -> Result<(), Unavailable> {
    spool.append(envelope).await.map(drop).map_err(|error| match error {
        SpoolError::Full { .. } => Unavailable::SpoolFull,
        SpoolError::Closed => Unavailable::ShuttingDown,
        _ => {
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "spool append failed");
            Unavailable::SpoolUnwritable
        }
    })
}
