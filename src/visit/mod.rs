//! The visit as the relay sees it: an accepted request (`Envelope`) and what
//! can be derived from it without any I/O.
//!
//! This module owns the data model and the pure rules (body classification,
//! product mapping, normalization). It must not touch the network or the disk,
//! so every rule here is unit tested directly.

mod answer;
mod checklist;
mod depth;
mod document;
mod fields;
mod id;
mod normalize;
mod product;
mod raw;
mod time;

use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;
use opentelemetry::trace::SpanContext;
use uuid::Uuid;

pub use depth::{DEFAULT_MAX_DEPTH, DEPTH_CEILING, nests_deeper_than};
pub use document::Document;
pub use normalize::{
    NormalizedVisit, ProductInfo, SCHEMA_VERSION, WARNING_FIELDS, Warning, normalize,
};
pub use product::Product;

/// Everything the relay knows about one accepted request besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// UUID v7 assigned at receipt; the `receiptId` of the 202 and the
    /// `correlation_id` of both messages.
    pub id: Uuid,
    /// When the request was received (UTC).
    pub received_at: Timestamp,
    /// Label of the API key that authenticated the request (never the key).
    pub key_label: String,
}

/// Why an authenticated body was not relayed as a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    /// Valid UTF-8 but not parseable JSON.
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// Not valid UTF-8.
    InvalidUtf8,
}

impl RejectionReason {
    /// Every reason, in a fixed order (for metrics that start at zero).
    pub const ALL: [RejectionReason; 3] = [Self::InvalidJson, Self::NotAnObject, Self::InvalidUtf8];

    /// The `x-rejection-reason` header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::InvalidUtf8 => "invalid_utf8",
        }
    }

    /// Stable one-byte code used by the spool format.
    pub fn code(self) -> u8 {
        match self {
            Self::InvalidJson => 1,
            Self::NotAnObject => 2,
            Self::InvalidUtf8 => 3,
        }
    }

    /// Inverse of [`RejectionReason::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What kind of message an accepted body becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON object: published raw and normalized.
    Visit,
    /// Anything else an authenticated sender sent: kept on the rejected exchange.
    Rejected(RejectionReason),
}

/// An accepted request: the unit the spool stores and the publisher delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// When and with which key the request was accepted.
    pub receipt: Receipt,
    /// How the body is relayed.
    pub kind: Kind,
    /// SHA-256 of the body; its lowercase hex is the AMQP `message_id`.
    pub digest: [u8; 32],
    /// The body exactly as received.
    pub body: Bytes,
    /// The span that accepted the request (or the caller's, passed
    /// through while spans are not exported): the parent of its publishes,
    /// also after a restart. `None` when nothing names a trace.
    pub trace: Option<SpanContext>,
    /// A visit's normalized document, when the ingress made it while
    /// reading the body; held in memory only (the spool stores the body,
    /// and the document is made again from it after a restart).
    pub document: Option<Arc<Document>>,
}

impl Envelope {
    /// Builds an envelope, classifying (within [`DEPTH_CEILING`]) and
    /// hashing the body once.
    pub fn new(receipt: Receipt, body: Bytes) -> Self {
        let kind = inspect(&body, DEPTH_CEILING).kind;
        Self::with_kind(receipt, body, kind)
    }

    /// Builds an envelope for a body already inspected.
    pub fn with_kind(receipt: Receipt, body: Bytes, kind: Kind) -> Self {
        let digest = sha256(&body);
        Self {
            receipt,
            kind,
            digest,
            body,
            trace: None,
            document: None,
        }
    }

    /// The envelope, belonging to the trace of `span`.
    pub fn in_trace(self, span: Option<SpanContext>) -> Self {
        Self {
            trace: span.filter(SpanContext::is_valid),
            ..self
        }
    }

    /// Lowercase hex SHA-256 of the body: identical for identical bodies, so
    /// consumers can de-duplicate redeliveries on it.
    pub fn message_id(&self) -> String {
        // Into a fixed buffer: `hex::encode` goes char by char through an
        // iterator, several times the work for the four uses per visit.
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.digest, &mut hex).expect("64 hex digits for 32 bytes");
        std::str::from_utf8(&hex).expect("hex is ASCII").to_owned()
    }
}

/// SHA-256 of `bytes`. ring's implementation uses the CPU's SIMD and SHA
/// extensions (several times faster than a portable one on a 3 KB body),
/// and ring is already in the build for TLS.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// What the ingress learns from a body in one pass: how to relay it, and
/// the product and visit id for metrics and the request's log span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Visit or rejection.
    pub kind: Kind,
    /// Product, `Unknown` for rejections.
    pub product: Product,
    /// Visit id when readable.
    pub visit_id: Option<String>,
}

/// The ingress's reading of a request body: the envelope to keep and what
/// the request's log span and metrics say of it. With `make_document`, a
/// JSON object is normalized right away and the envelope carries its
/// document to the publisher, so a visit's body is parsed once; anything
/// else (or an object that cannot be normalized, or no `make_document`) is
/// classified by [`inspect`].
pub fn receive(
    receipt: Receipt,
    body: Bytes,
    max_depth: usize,
    make_document: bool,
) -> (Envelope, Inspection) {
    let object = make_document
        && std::str::from_utf8(&body).is_ok_and(|text| text.trim_start().starts_with('{'))
        && !nests_deeper_than(&body, max_depth.min(DEPTH_CEILING));
    let mut envelope = Envelope::with_kind(receipt, body, Kind::Visit);
    if object && let Ok(document) = Document::of(&envelope) {
        let inspection = Inspection {
            kind: Kind::Visit,
            product: document.routing_product(),
            visit_id: document.visit_id.clone(),
        };
        envelope.document = Some(Arc::new(document));
        return (envelope, inspection);
    }
    let inspection = inspect(&envelope.body, max_depth);
    envelope.kind = inspection.kind;
    (envelope, inspection)
}

/// The few fields the ingress needs; everything else is validated and
/// skipped without allocating.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "productID")]
    product_id: Option<serde_json::Value>,
    #[serde(rename = "visitID")]
    visit_id: Option<serde_json::Value>,
    #[serde(rename = "visitId")]
    visit_id_alt: Option<serde_json::Value>,
}

/// Classifies a body and reads its product and visit id, parsing it once
/// on the common path. A body that nests objects or arrays deeper than
/// `max_depth` (at most [`DEPTH_CEILING`]) is `invalid_json`, so nothing
/// nested deeper reaches a consumer.
pub fn inspect(body: &[u8], max_depth: usize) -> Inspection {
    let rejected = |reason| Inspection {
        kind: Kind::Rejected(reason),
        product: Product::Unknown,
        visit_id: None,
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return rejected(RejectionReason::InvalidUtf8);
    };
    if nests_deeper_than(body, max_depth.min(DEPTH_CEILING)) {
        return rejected(RejectionReason::InvalidJson);
    }
    let probe = match serde_json::from_str::<Probe>(text) {
        Ok(probe) => probe,
        // Not an object, not JSON, or a duplicated probe key: decide with a
        // full parse (rare).
        Err(_) => match serde_json::from_str::<serde_json::Value>(text) {
            Err(_) => return rejected(RejectionReason::InvalidJson),
            Ok(serde_json::Value::Object(map)) => Probe {
                product_id: map.get("productID").cloned(),
                visit_id: map.get("visitID").cloned(),
                visit_id_alt: map.get("visitId").cloned(),
            },
            Ok(_) => return rejected(RejectionReason::NotAnObject),
        },
    };
    if !text.trim_start().starts_with('{') {
        // A struct also deserializes from a JSON array; only objects are visits.
        return rejected(RejectionReason::NotAnObject);
    }
    let visit_id = probe
        .visit_id
        .or(probe.visit_id_alt)
        .and_then(|v| fields::id_string(&v).ok().flatten());
    Inspection {
        kind: Kind::Visit,
        product: Product::from_json(probe.product_id.as_ref()).0,
        visit_id,
    }
}

/// A human-readable explanation of why a body was rejected, for the 400
/// body; `max_depth` as given to [`inspect`].
pub fn rejection_detail(body: &[u8], max_depth: usize) -> String {
    let limit = max_depth.min(DEPTH_CEILING);
    match std::str::from_utf8(body) {
        Err(e) => format!("body is not valid UTF-8: {e}"),
        Ok(_) if nests_deeper_than(body, limit) => format!(
            "body nests objects or arrays deeper than {limit} levels (KOBRA_RELAY_MAX_JSON_DEPTH)"
        ),
        Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Err(e) => format!("body is not valid JSON: {e}"),
            Ok(v) => format!("body must be a JSON object, got {}", json_type_name(&v)),
        },
    }
}

/// The JSON type of a value, as a word for messages.
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(body: &[u8]) -> Kind {
        inspect(body, DEFAULT_MAX_DEPTH).kind
    }

    #[test]
    fn receiving_a_visit_makes_its_document_and_anything_else_is_inspected() {
        let receipt = || Receipt {
            id: Uuid::now_v7(),
            received_at: Timestamp::UNIX_EPOCH,
            key_label: "default".into(),
        };
        let body = Bytes::from_static(br#" {"productID": "2", "visitID": 77}"#);
        let (visit, inspection) = receive(receipt(), body.clone(), DEFAULT_MAX_DEPTH, true);
        assert_eq!(inspection.kind, Kind::Visit);
        assert_eq!(inspection.product, Product::AddressValidation);
        assert_eq!(inspection.visit_id.as_deref(), Some("77"));
        let document = visit.document.as_deref().expect("a document");
        assert_eq!(*document, Document::of(&visit).expect("normalizes"));
        let (later, inspected) = receive(receipt(), body, DEFAULT_MAX_DEPTH, false);
        assert_eq!(inspected, inspection, "without a document: inspected alike");
        assert!(later.kind == Kind::Visit && later.document.is_none());

        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        for body in [
            b"[1, 2]".to_vec(),
            b"{\"a\": ".to_vec(),
            b"\xff{}".to_vec(),
            b"\"text\"".to_vec(),
            deep.into_bytes(),
        ] {
            let (envelope, inspection) = receive(receipt(), Bytes::from(body.clone()), 16, true);
            assert_eq!(inspection, inspect(&body, 16), "{body:?}");
            assert_eq!(envelope.kind, inspection.kind);
            assert!(matches!(envelope.kind, Kind::Rejected(_)), "{body:?}");
            assert!(envelope.document.is_none());
        }
    }

    #[test]
    fn inspection_reads_product_and_visit_id() {
        let i = inspect(
            br#"{"visitId": 77, "productID": "3", "x": [1, {"y": null}]}"#,
            DEFAULT_MAX_DEPTH,
        );
        assert_eq!(i.kind, Kind::Visit);
        assert_eq!(i.product, Product::BusinessValidation);
        assert_eq!(i.visit_id.as_deref(), Some("77"));
        let dup = inspect(br#"{"productID": 1, "productID": 2}"#, DEFAULT_MAX_DEPTH);
        assert_eq!(
            dup.kind,
            Kind::Visit,
            "duplicate keys are still a JSON object"
        );
        assert_eq!(
            dup.product,
            Product::AddressValidation,
            "the last one wins, as in normalization"
        );
    }

    #[test]
    fn classify_accepts_objects_only() {
        assert_eq!(classify(br#" {"a":1} "#), Kind::Visit);
        assert_eq!(
            classify(b"[1,2]"),
            Kind::Rejected(RejectionReason::NotAnObject)
        );
        assert_eq!(
            classify(b"\"x\""),
            Kind::Rejected(RejectionReason::NotAnObject)
        );
        assert_eq!(
            classify(br#"{"a":"#),
            Kind::Rejected(RejectionReason::InvalidJson)
        );
        assert_eq!(classify(b""), Kind::Rejected(RejectionReason::InvalidJson));
        assert_eq!(
            classify(b"{\"a\":NaN}"),
            Kind::Rejected(RejectionReason::InvalidJson)
        );
        assert_eq!(
            classify(b"{\"a\":\"\xff\"}"),
            Kind::Rejected(RejectionReason::InvalidUtf8)
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let body = "[".repeat(100_000);
        assert_eq!(
            classify(body.as_bytes()),
            Kind::Rejected(RejectionReason::InvalidJson)
        );
        assert!(rejection_detail(body.as_bytes(), DEFAULT_MAX_DEPTH).contains("deeper than 64"));
    }

    #[test]
    fn objects_nested_too_deep_are_refused_on_the_fast_path_too() {
        // The probe skips fields it does not read without serde's recursion
        // limit; the depth count catches them.
        let deep = format!(
            r#"{{"productID":1,"deep":{}1{}}}"#,
            r#"{"a":"#.repeat(200),
            "}".repeat(200)
        );
        assert_eq!(
            classify(deep.as_bytes()),
            Kind::Rejected(RejectionReason::InvalidJson)
        );
        let within = format!(
            r#"{{"productID":1,"deep":{}1{}}}"#,
            r#"{"a":"#.repeat(63),
            "}".repeat(63)
        );
        assert_eq!(classify(within.as_bytes()), Kind::Visit);
        let strict = inspect(within.as_bytes(), 10).kind;
        assert_eq!(strict, Kind::Rejected(RejectionReason::InvalidJson));
        assert!(rejection_detail(within.as_bytes(), 10).contains("deeper than 10 levels"));
    }

    #[test]
    fn message_id_is_the_hex_sha256_of_the_body() {
        let receipt = Receipt {
            id: Uuid::now_v7(),
            received_at: Timestamp::UNIX_EPOCH,
            key_label: "default".into(),
        };
        let env = Envelope::new(receipt, Bytes::from_static(b"abc"));
        assert_eq!(
            env.message_id(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejection_reason_codes_round_trip() {
        for r in RejectionReason::ALL {
            assert_eq!(RejectionReason::from_code(r.code()), Some(r));
        }
        assert_eq!(RejectionReason::from_code(0), None);
    }
}
