//! Producer spans, while spans are exported: one per message, from its
//! publish until the broker's answer, named as the OpenTelemetry messaging
//! conventions name a RabbitMQ publish. Each message's `traceparent` then
//! names its own span, so a consumer's span is the publish's child.
//!
//! A span's parent is the visit's trace as the envelope carries it (also
//! after a restart, from the spool); a replay starts a trace of its own
//! and links the original instead.

use opentelemetry::{
    KeyValue,
    trace::{Status, TraceContextExt},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::PublishError;
use super::message::{Outgoing, Prepared, set_trace};
use crate::telemetry;
use crate::visit::Envelope;

/// How a publish relates to the trace the envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The visit's own publish: a child of the accepting span.
    Accepted,
    /// `kobra-relay replay`: a new trace, linked to the original.
    Replayed,
}

/// Starts the spans of a visit's messages and writes each one's
/// `traceparent`. Does nothing while spans are not exported.
pub fn start(prepared: &mut Prepared, envelope: &Envelope, origin: Origin) {
    if !telemetry::is_exporting() {
        return;
    }
    for message in &mut prepared.messages {
        start_one(message, envelope, prepared.visit_id.as_deref(), origin);
    }
}

/// [`start`] for one message.
pub fn start_one(
    message: &mut Outgoing,
    envelope: &Envelope,
    visit_id: Option<&str>,
    origin: Origin,
) {
    if !telemetry::is_exporting() {
        return;
    }
    let destination = if message.exchange.is_empty() {
        message.routing_key.clone()
    } else {
        format!("{}:{}", message.exchange, message.routing_key)
    };
    let span = tracing::info_span!(
        parent: None,
        "publish",
        otel.name = %format_args!("publish {}", if message.exchange.is_empty() { "(default)" } else { &message.exchange }),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "publish",
        messaging.operation.name = "publish",
        messaging.destination.name = %destination,
        messaging.rabbitmq.destination.routing_key = %message.routing_key,
        messaging.message.id = %envelope.message_id(),
        messaging.message.body.size = message.body.len(),
        kobra.receipt_id = %envelope.receipt.id,
        kobra.visit_id = tracing::field::Empty,
    );
    if let Some(visit_id) = visit_id {
        span.record("kobra.visit_id", visit_id);
    }
    if let Some(original) = &envelope.trace {
        match origin {
            Origin::Accepted => {
                let _ = span.set_parent(telemetry::remote(original));
            }
            Origin::Replayed => span.add_link(original.clone()),
        }
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    let mut headers = message.properties.headers().clone().unwrap_or_default();
    set_trace(&mut headers, &own);
    message.properties = std::mem::take(&mut message.properties).with_headers(headers);
    message.span = span;
}

/// Records the broker's answer on the spans of `messages`, which end when
/// the messages are dropped.
pub fn settled(messages: &[Outgoing], result: &Result<(), PublishError>) {
    for message in messages {
        settled_one(&message.span, result);
    }
}

/// [`settled`] for one message's span.
pub fn settled_one(span: &tracing::Span, result: &Result<(), PublishError>) {
    if !telemetry::is_exporting() {
        return;
    }
    match result {
        Ok(()) => span.add_event("confirmed", vec![KeyValue::new("outcome", "ack")]),
        Err(error) => {
            span.add_event(
                "not confirmed",
                vec![
                    KeyValue::new("outcome", error.reason().as_str()),
                    KeyValue::new("error", error.to_string()),
                ],
            );
            span.set_status(Status::error(error.to_string()));
        }
    }
}

/// Records that the visit will be published again in `delay`.
pub fn retry_scheduled(messages: &[Outgoing], delay: std::time::Duration) {
    if !telemetry::is_exporting() {
        return;
    }
    for message in messages {
        message.span.add_event(
            "retry scheduled",
            vec![KeyValue::new(
                "retry_in_ms",
                i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            )],
        );
    }
}
