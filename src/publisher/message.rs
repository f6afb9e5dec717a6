//! Envelope -> the AMQP messages that carry it (CONTRACT.md §4): exchange,
//! routing key, body, properties and headers. No I/O.
//!
//! Everything here is a pure function of the envelope, so a retry after a
//! restart produces byte-identical messages with the same `message_id`
//! (while spans are exported, `publisher::spans` then names each attempt's
//! own span in `traceparent`).

use bytes::Bytes;
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use opentelemetry::trace::SpanContext;

use super::headers as header;
use super::topology::Topology;
use crate::metrics::ExchangeLabel;
use crate::telemetry;
use crate::visit::{Document, Envelope, Kind, Product, RejectionReason, SCHEMA_VERSION, Warning};

/// Header values longer than this are left out, so no message can exceed a
/// frame; the document still carries the value whole.
pub const MAX_HEADER_CHARS: usize = 256;
/// The `app_id` property.
pub const APP_ID: &str = "kobra-relay";
/// `type` of raw and normalized visit messages.
pub const VISIT_TYPE: &str = "kobra.visit.finished";
/// `type` of rejected bodies.
pub const REJECTED_TYPE: &str = "kobra.visit.rejected";

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Metric label of the exchange.
    pub label: ExchangeLabel,
    /// Where it is published (empty: the default exchange).
    pub exchange: String,
    /// `visit.finished.<product>`, or a queue name on the default exchange.
    pub routing_key: String,
    /// The raw body, the normalized document, or the rejected bytes.
    pub body: Bytes,
    /// Properties and headers.
    pub properties: BasicProperties,
    /// Its producer span while spans are exported (`publisher::spans`),
    /// else a span that records nothing.
    pub span: tracing::Span,
}

/// The messages of one envelope, plus what the metrics need to know.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Product of the visit (`Unknown` for rejected bodies).
    pub product: Product,
    /// Raw and normalized, or the single rejected message.
    pub messages: Vec<Outgoing>,
    /// Normalization warnings (empty for rejected bodies).
    pub warnings: Vec<Warning>,
    /// Visit id, for logs.
    pub visit_id: Option<String>,
}

/// Builds the messages for an envelope.
pub fn prepare(envelope: &Envelope, topology: &Topology) -> Prepared {
    match envelope.kind {
        // The document the ingress made, or (read back from disk, replayed)
        // the same document made again from the body.
        Kind::Visit => match &envelope.document {
            Some(document) => prepare_visit(envelope, document, topology),
            None => match Document::of(envelope) {
                Ok(document) => prepare_visit(envelope, &document, topology),
                // Unreachable for bodies the ingress classified, but a body is
                // never dropped: it goes to the rejected exchange instead.
                Err(_) => prepare_rejected(envelope, RejectionReason::InvalidJson, topology),
            },
        },
        Kind::Rejected(reason) => prepare_rejected(envelope, reason, topology),
    }
}

fn prepare_visit(envelope: &Envelope, document: &Document, topology: &Topology) -> Prepared {
    let product = document.routing_product();
    let routing_key = Topology::routing_key(product);
    let mut headers = common_headers(envelope);
    if let Some(id) = document.product.id.and_then(|id| i64::try_from(id).ok()) {
        headers.insert(header::PRODUCT_ID.into(), AMQPValue::LongLongInt(id));
    }
    insert_text(&mut headers, header::PRODUCT, Some(&document.product.slug));
    insert_text(&mut headers, header::VISIT_ID, document.visit_id.as_deref());
    insert_text(&mut headers, header::AGENT_ID, document.agent_id.as_deref());
    insert_text(
        &mut headers,
        header::EXTERNAL_ID,
        document.external_id.as_deref(),
    );
    insert_text(&mut headers, header::TAG, document.tag.as_deref());

    let raw = Outgoing {
        label: ExchangeLabel::Raw,
        exchange: topology.raw_exchange(),
        routing_key: routing_key.clone(),
        body: envelope.body.clone(),
        properties: properties(envelope, VISIT_TYPE, "application/json", headers.clone()),
        span: tracing::Span::none(),
    };
    let mut normalized_headers = headers;
    normalized_headers.insert(
        header::SCHEMA_VERSION.into(),
        AMQPValue::LongInt(SCHEMA_VERSION as i32),
    );
    let normalized = Outgoing {
        label: ExchangeLabel::Normalized,
        exchange: topology.visits_exchange(),
        routing_key,
        body: document.json.clone(),
        properties: properties(envelope, VISIT_TYPE, "application/json", normalized_headers),
        span: tracing::Span::none(),
    };
    Prepared {
        product,
        messages: vec![raw, normalized],
        warnings: document.warnings.clone(),
        visit_id: document.visit_id.clone(),
    }
}

fn prepare_rejected(envelope: &Envelope, reason: RejectionReason, topology: &Topology) -> Prepared {
    let mut headers = common_headers(envelope);
    insert_text(
        &mut headers,
        header::REJECTION_REASON,
        Some(reason.as_str()),
    );
    Prepared {
        product: Product::Unknown,
        messages: vec![Outgoing {
            label: ExchangeLabel::Rejected,
            exchange: topology.rejected_exchange(),
            routing_key: "visit.rejected".into(),
            body: envelope.body.clone(),
            properties: properties(envelope, REJECTED_TYPE, "application/octet-stream", headers),
            span: tracing::Span::none(),
        }],
        warnings: Vec::new(),
        visit_id: None,
    }
}

fn common_headers(envelope: &Envelope) -> FieldTable {
    let mut headers = FieldTable::default();
    if let Some(span) = &envelope.trace {
        set_trace(&mut headers, span);
    }
    let received_at = envelope.receipt.received_at.to_string();
    insert_text(&mut headers, header::RECEIVED_AT, Some(&received_at));
    insert_text(
        &mut headers,
        header::API_KEY_LABEL,
        Some(&envelope.receipt.key_label),
    );
    headers
}

/// Names `span` as the parent of whoever continues the trace from the message.
pub fn set_trace(headers: &mut FieldTable, span: &SpanContext) {
    let trace = telemetry::headers(span);
    insert_text(headers, header::TRACEPARENT, Some(&trace.traceparent));
    if trace.tracestate.is_empty() {
        if headers.contains_key(header::TRACESTATE) {
            let mut rest = headers.inner().clone();
            rest.remove(header::TRACESTATE);
            *headers = FieldTable::from(rest);
        }
    } else {
        insert_text(headers, header::TRACESTATE, Some(&trace.tracestate));
    }
}

fn insert_text(headers: &mut FieldTable, name: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| v.chars().count() <= MAX_HEADER_CHARS) {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        );
    }
}

fn properties(
    envelope: &Envelope,
    kind: &str,
    content_type: &str,
    headers: FieldTable,
) -> BasicProperties {
    let timestamp = u64::try_from(envelope.receipt.received_at.as_second()).unwrap_or_default();
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(content_type.into())
        .with_app_id(APP_ID.into())
        .with_type(kind.into())
        .with_timestamp(timestamp)
        .with_message_id(envelope.message_id().into())
        .with_correlation_id(envelope.receipt.id.to_string().into())
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType;
    use crate::visit::Receipt;

    fn envelope(body: &str) -> Envelope {
        Envelope::new(
            Receipt {
                id: uuid::Uuid::now_v7(),
                received_at: "2026-11-26T10:00:00Z".parse().expect("timestamp"),
                key_label: "kobra".into(),
            },
            Bytes::from(body.to_owned()),
        )
    }

    fn header<'a>(m: &'a Outgoing, name: &str) -> Option<&'a AMQPValue> {
        m.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
    }

    fn text(v: Option<&AMQPValue>) -> Option<String> {
        match v {
            Some(AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            _ => None,
        }
    }

    #[test]
    fn a_visit_becomes_a_raw_and_a_normalized_message_with_the_same_ids() {
        let topology = Topology::new("t", QueueType::Quorum, true);
        let env = envelope(r#"{"productID":2,"visitID":"V1","agentID":7,"tagName":"ok"}"#);
        let prepared = prepare(&env, &topology);
        assert_eq!(prepared.product, Product::AddressValidation);
        let [raw, normalized] = &prepared.messages[..] else {
            panic!("two messages expected");
        };
        assert_eq!(raw.exchange, "t.visits.raw");
        assert_eq!(normalized.exchange, "t.visits");
        assert_eq!(raw.body, env.body, "raw body is byte-identical");
        for m in [raw, normalized] {
            assert_eq!(m.routing_key, "visit.finished.address_validation");
            let p = &m.properties;
            assert_eq!(*p.delivery_mode(), Some(2));
            assert_eq!(
                p.content_type().as_ref().map(|s| s.as_str()),
                Some("application/json")
            );
            assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("kobra-relay"));
            assert_eq!(
                p.kind().as_ref().map(|s| s.as_str()),
                Some("kobra.visit.finished")
            );
            assert_eq!(
                p.message_id().as_ref().map(|s| s.to_string()),
                Some(env.message_id())
            );
            assert_eq!(
                p.correlation_id().as_ref().map(|s| s.to_string()),
                Some(env.receipt.id.to_string())
            );
            assert_eq!(*p.timestamp(), Some(1_795_687_200));
            assert_eq!(header(m, "x-product-id"), Some(&AMQPValue::LongLongInt(2)));
            assert_eq!(
                text(header(m, "x-product")).as_deref(),
                Some("address_validation")
            );
            assert_eq!(text(header(m, "x-visit-id")).as_deref(), Some("V1"));
            assert_eq!(text(header(m, "x-agent-id")).as_deref(), Some("7"));
            assert_eq!(text(header(m, "x-tag")).as_deref(), Some("ok"));
            assert_eq!(text(header(m, "x-external-id")), None);
            assert_eq!(
                text(header(m, "x-received-at")).as_deref(),
                Some("2026-11-26T10:00:00Z")
            );
            assert_eq!(text(header(m, "x-api-key-label")).as_deref(), Some("kobra"));
        }
        assert_eq!(header(raw, "x-schema-version"), None);
        assert_eq!(
            header(normalized, "x-schema-version"),
            Some(&AMQPValue::LongInt(1))
        );
    }

    /// What a consumer reads of each message: exchange, routing key, body,
    /// properties and headers.
    fn delivered(prepared: &Prepared) -> Vec<(String, String, Bytes, BasicProperties)> {
        prepared
            .messages
            .iter()
            .map(|m| {
                let (exchange, key) = (m.exchange.clone(), m.routing_key.clone());
                (exchange, key, m.body.clone(), m.properties.clone())
            })
            .collect()
    }

    #[test]
    fn the_ingress_document_gives_the_messages_a_restart_would() {
        let topology = Topology::new("t", QueueType::Quorum, true);
        let fixture = include_bytes!("../../tests/fixtures/finish-visit-example.json");
        let receipt = crate::visit::Receipt {
            id: uuid::Uuid::now_v7(),
            received_at: "2026-11-26T10:00:00Z".parse().expect("timestamp"),
            key_label: "kobra".into(),
        };
        let (accepted, _) = crate::visit::receive(receipt, Bytes::from_static(fixture), 64, true);
        assert!(accepted.document.is_some(), "the ingress made the document");
        let after_restart = Envelope {
            document: None,
            ..accepted.clone()
        };
        let (from_ingress, from_body) = (
            prepare(&accepted, &topology),
            prepare(&after_restart, &topology),
        );
        assert_eq!(delivered(&from_ingress), delivered(&from_body));
        assert_eq!(from_ingress.product, from_body.product);
        assert_eq!(from_ingress.visit_id, from_body.visit_id);
        assert_eq!(from_ingress.warnings, from_body.warnings);
    }

    #[test]
    fn unknown_products_have_no_product_id_header() {
        let topology = Topology::new("t", QueueType::Quorum, true);
        let prepared = prepare(&envelope(r#"{"visitID":"V"}"#), &topology);
        let m = &prepared.messages[0];
        assert_eq!(m.routing_key, "visit.finished.unknown");
        assert_eq!(header(m, "x-product-id"), None);
        assert_eq!(text(header(m, "x-product")).as_deref(), Some("unknown"));
    }

    #[test]
    fn long_header_values_are_left_out() {
        let topology = Topology::new("t", QueueType::Quorum, true);
        let long = "x".repeat(MAX_HEADER_CHARS + 1);
        let prepared = prepare(
            &envelope(&format!(r#"{{"productID":1,"visitID":"{long}"}}"#)),
            &topology,
        );
        assert_eq!(header(&prepared.messages[0], "x-visit-id"), None);
        let doc: serde_json::Value =
            serde_json::from_slice(&prepared.messages[1].body).expect("json");
        assert_eq!(doc["visitId"], long.as_str(), "the document keeps it whole");
    }

    #[test]
    fn rejected_bodies_go_to_the_rejected_exchange_as_octets() {
        let topology = Topology::new("t", QueueType::Quorum, true);
        let mut env = envelope("[1,2]");
        env.kind = Kind::Rejected(RejectionReason::NotAnObject);
        let prepared = prepare(&env, &topology);
        let [m] = &prepared.messages[..] else {
            panic!("one message expected");
        };
        assert_eq!(m.exchange, "t.visits.rejected");
        assert_eq!(m.body, env.body);
        assert_eq!(
            m.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/octet-stream")
        );
        assert_eq!(
            m.properties.kind().as_ref().map(|s| s.as_str()),
            Some("kobra.visit.rejected")
        );
        assert_eq!(
            text(header(m, "x-rejection-reason")).as_deref(),
            Some("not_an_object")
        );
        assert_eq!(text(header(m, "x-api-key-label")).as_deref(), Some("kobra"));
    }
}
