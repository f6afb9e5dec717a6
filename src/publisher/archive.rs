//! The archive stream read back: where to start reading it, and each
//! archived raw message turned into the envelope it was published from.
//! `kobra-relay replay` is its reader.

use bytes::Bytes;
use jiff::Timestamp;
use lapin::{
    BasicProperties, Connection, Consumer,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable},
};

use super::declare::check_queue;
use super::headers;
use super::topology::Topology;
use crate::visit::{DEPTH_CEILING, Envelope, Kind, Receipt, inspect};

/// Messages the broker hands a stream consumer before it acknowledges
/// (a stream consumer needs a prefetch; acknowledgements only grant credit).
const PREFETCH: u16 = 500;

/// Where reading the stream starts: the `x-stream-offset` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest message the stream keeps.
    First,
    /// A stream offset.
    Offset(u64),
    /// The stream starts from the chunk appended at that second, which may
    /// hold somewhat older visits: those are passed over.
    Time(Timestamp),
}

impl Start {
    /// The `x-stream-offset` consume argument.
    pub fn argument(self) -> AMQPValue {
        match self {
            Self::First => AMQPValue::LongString("first".into()),
            Self::Offset(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
            Self::Time(at) => AMQPValue::Timestamp(u64::try_from(at.as_second()).unwrap_or(0)),
        }
    }
}

/// One archived message, read back.
#[derive(Debug)]
pub enum Archived {
    /// A raw visit as the relay published it.
    Visit(Envelope),
    /// Not for replay: a normalized copy (other products' visits reach the
    /// archive through the unrouted fanout with both copies) or the raw copy
    /// an earlier `replay --raw` appended.
    PassedOver,
    /// Cannot be replayed, and why.
    Corrupt(String),
}

/// The receipt time: `x-received-at`, else the `timestamp` property.
pub fn received_at(properties: &BasicProperties) -> Option<Timestamp> {
    headers::text(properties, headers::RECEIVED_AT)
        .and_then(|text| text.parse().ok())
        .or_else(|| {
            properties
                .timestamp()
                .and_then(|s| Timestamp::from_second(i64::try_from(s).ok()?).ok())
        })
}

/// The offset RabbitMQ gave a delivery from the stream.
pub fn stream_offset(properties: &BasicProperties) -> Option<u64> {
    match headers::get(properties, headers::STREAM_OFFSET)? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Reads one archived message back into the envelope it was published
/// from, checking that the body still matches its `message_id`.
pub fn read_archived(properties: &BasicProperties, body: &[u8]) -> Archived {
    if headers::get(properties, headers::SCHEMA_VERSION).is_some()
        || headers::get(properties, headers::REPLAYED).is_some()
    {
        return Archived::PassedOver;
    }
    let Some(id) = properties
        .correlation_id()
        .as_ref()
        .and_then(|id| id.as_str().parse().ok())
    else {
        return Archived::Corrupt(
            "no receipt id (correlation_id): not published by the relay".into(),
        );
    };
    let Some(received_at) = received_at(properties) else {
        return Archived::Corrupt("no receipt time (x-received-at)".into());
    };
    let body = Bytes::copy_from_slice(body);
    // What any relay could have accepted, whatever this one allows.
    let kind = inspect(&body, DEPTH_CEILING).kind;
    if let Kind::Rejected(reason) = kind {
        return Archived::Corrupt(format!(
            "the body is not a JSON object ({})",
            reason.as_str()
        ));
    }
    let receipt = Receipt {
        id,
        received_at,
        key_label: headers::text(properties, headers::API_KEY_LABEL).unwrap_or_default(),
    };
    // The trace the visit was first published in, for replay's link.
    let trace = crate::telemetry::extract(
        headers::text(properties, headers::TRACEPARENT).as_deref(),
        headers::text(properties, headers::TRACESTATE).as_deref(),
    );
    let envelope = Envelope::with_kind(receipt, body, kind).in_trace(trace.parent().cloned());
    let recorded = properties.message_id().as_ref().map(|id| id.to_string());
    if recorded.as_deref() != Some(envelope.message_id().as_str()) {
        return Archived::Corrupt("the body does not match its message_id (SHA-256)".into());
    }
    Archived::Visit(envelope)
}

/// A consumer on the archive of `topology` from `start`, on a channel of
/// its own.
///
/// # Errors
/// The archive does not exist or cannot be read; the message says what to
/// check.
pub async fn consume(
    connection: &Connection,
    topology: &Topology,
    start: Start,
) -> Result<Consumer, String> {
    let archive = topology.archive_queue();
    let reader = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    check_queue(&reader, &archive).await.map_err(|e| {
        format!("no archive {archive}: {e} (is TOPOLOGY_PREFIX right, and does a relay with ARCHIVE=true declare its queues?)")
    })?;
    reader
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut arguments = FieldTable::default();
    arguments.insert(headers::STREAM_OFFSET.into(), start.argument());
    reader
        .basic_consume(
            archive.as_str().into(),
            "kobra-relay-replay".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .map_err(|e| format!("cannot read {archive}: {e}"))
}
