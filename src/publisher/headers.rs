//! The AMQP headers of the relay's messages (CONTRACT.md §4), named once:
//! `message` writes them, and `tail` and `replay` read them back.

use lapin::{BasicProperties, types::AMQPValue};

/// When the relay received the visit (RFC 3339).
pub const RECEIVED_AT: &str = "x-received-at";
/// The label of the API key the request carried (never the key).
pub const API_KEY_LABEL: &str = "x-api-key-label";
/// The visit's `productID`, when it has one.
pub const PRODUCT_ID: &str = "x-product-id";
/// The product's slug (`debt_collection`, `product_7`, `unknown`).
pub const PRODUCT: &str = "x-product";
/// The visit's id.
pub const VISIT_ID: &str = "x-visit-id";
/// The agent's id.
pub const AGENT_ID: &str = "x-agent-id";
/// The customer's external id.
pub const EXTERNAL_ID: &str = "x-external-id";
/// The visit's tag.
pub const TAG: &str = "x-tag";
/// The normalized schema's version; only normalized documents have it.
pub const SCHEMA_VERSION: &str = "x-schema-version";
/// Why a body was rejected; only rejected bodies have it.
pub const REJECTION_REASON: &str = "x-rejection-reason";
/// `true` on messages that `kobra-relay replay` published.
pub const REPLAYED: &str = "x-replayed";
/// W3C trace context: the span a consumer continues (the publish's span
/// while spans are exported, else the caller's as received).
pub const TRACEPARENT: &str = crate::telemetry::TRACEPARENT;
/// W3C vendor trace state, when the trace has any.
pub const TRACESTATE: &str = crate::telemetry::TRACESTATE;
/// The offset RabbitMQ gives each delivery from a stream; also the
/// consume argument that says where to start reading one.
pub const STREAM_OFFSET: &str = "x-stream-offset";

/// The header `name` of a message, if present.
pub fn get<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

/// The header `name` as text, when it is a string.
pub fn text(properties: &BasicProperties, name: &str) -> Option<String> {
    match get(properties, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
