use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use lapin::{BasicProperties, types::AMQPValue};

use super::ReplayArgs;
use super::plan::{matches, plan, republish};
use crate::config::QueueType;
use crate::publisher::archive::{Archived, Start, read_archived};
use crate::publisher::{headers, message, topology::Topology};
use crate::visit::{Envelope, Receipt};

fn args(since: Option<&str>, offset: Option<u64>) -> ReplayArgs {
    ReplayArgs {
        since: since.map(str::to_owned),
        offset,
        until: None,
        product: None,
        visit_ids: Vec::new(),
        raw: false,
        to_queue: None,
        dry_run: false,
        idle_timeout: Duration::from_secs(2),
    }
}

fn now() -> Timestamp {
    "2026-12-01T12:00:00Z".parse().expect("time")
}

#[test]
fn the_start_is_a_time_the_first_visit_or_an_offset() {
    let p = plan(&args(Some("2026-11-01T00:00:00Z"), None), now()).expect("plan");
    let since: Timestamp = "2026-11-01T00:00:00Z".parse().expect("time");
    assert_eq!(
        (p.start, p.since, p.until),
        (Start::Time(since), Some(since), now())
    );
    assert_eq!(
        Start::Time(since).argument(),
        AMQPValue::Timestamp(1_793_491_200)
    );
    let p = plan(&args(Some("first"), None), now()).expect("plan");
    assert_eq!((p.start, p.since), (Start::First, None));
    assert_eq!(p.start.argument(), AMQPValue::LongString("first".into()));
    let p = plan(&args(None, Some(42)), now()).expect("plan");
    assert_eq!(p.start.argument(), AMQPValue::LongLongInt(42));
}

#[test]
fn bad_times_and_products_say_which_flag() {
    let err = plan(&args(Some("yesterday"), None), now()).unwrap_err();
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
    let mut a = args(Some("2026-11-02T00:00:00Z"), None);
    a.until = Some("2026-11-01T00:00:00Z".into());
    assert!(plan(&a, now()).unwrap_err().contains("after --until"));
    let mut a = args(Some("first"), None);
    a.product = Some("bananas".into());
    assert!(plan(&a, now()).unwrap_err().contains("--product"));
}

fn published(body: &str) -> (BasicProperties, Vec<u8>) {
    let envelope = Envelope::new(
        Receipt {
            id: uuid::Uuid::now_v7(),
            received_at: "2026-11-20T08:30:00.25Z".parse().expect("time"),
            key_label: "kobra".into(),
        },
        Bytes::from(body.to_owned()),
    );
    let topology = Topology::new("t", QueueType::Quorum, true);
    let raw = message::prepare(&envelope, &topology).messages.remove(0);
    (raw.properties, raw.body.to_vec())
}

#[test]
fn an_archived_raw_message_gives_back_the_envelope_it_was_made_from() {
    let body = r#"{"productID":1,"visitID":"V1"}"#;
    let (properties, data) = published(body);
    let Archived::Visit(envelope) = read_archived(&properties, &data) else {
        panic!("a visit");
    };
    assert_eq!(envelope.body, body.as_bytes());
    assert_eq!(envelope.receipt.key_label, "kobra");
    assert_eq!(
        envelope.receipt.received_at.to_string(),
        "2026-11-20T08:30:00.25Z"
    );
    assert_eq!(
        Some(envelope.receipt.id.to_string()),
        properties.correlation_id().as_ref().map(|s| s.to_string())
    );

    let topology = Topology::new("t", QueueType::Quorum, true);
    let original = message::prepare(&envelope, &topology);
    let plan = plan(&args(Some("first"), None), now()).expect("plan");
    let (again, _) = republish(&envelope, &topology, &plan);
    assert_eq!(again.exchange, "t.visits");
    assert_eq!(again.body, original.messages[1].body, "same document");
    assert_eq!(
        again.properties.message_id(),
        original.messages[1].properties.message_id()
    );
    assert_eq!(
        headers::get(&again.properties, "x-replayed"),
        Some(&AMQPValue::Boolean(true))
    );
}

#[test]
fn corrupt_and_foreign_messages_are_skipped_with_a_reason() {
    let (properties, _) = published(r#"{"productID":1}"#);
    let corrupt = |props: &BasicProperties, data: &[u8]| match read_archived(props, data) {
        Archived::Corrupt(why) => why,
        other => panic!("{other:?}"),
    };
    assert!(corrupt(&properties, br#"{"productID":2}"#).contains("message_id"));
    assert!(corrupt(&properties, b"{\"productID\":").contains("invalid_json"));
    assert!(corrupt(&BasicProperties::default(), b"{}").contains("correlation_id"));

    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert("x-schema-version".into(), AMQPValue::LongInt(1));
    let normalized = properties.clone().with_headers(headers);
    assert!(matches!(
        read_archived(&normalized, b"{}"),
        Archived::PassedOver
    ));
}

#[test]
fn filters_pick_by_product_and_visit_id() {
    let envelope = |body: &str| {
        let (properties, data) = published(body);
        match read_archived(&properties, &data) {
            Archived::Visit(envelope) => envelope,
            other => panic!("{other:?}"),
        }
    };
    let mut a = args(Some("first"), None);
    a.product = Some("address_validation".into());
    a.visit_ids = vec!["V2".into()];
    let p = plan(&a, now()).expect("plan");
    assert!(matches(&p, &envelope(r#"{"productID":2,"visitID":"V2"}"#)));
    assert!(!matches(&p, &envelope(r#"{"productID":2,"visitID":"V3"}"#)));
    assert!(!matches(&p, &envelope(r#"{"productID":1,"visitID":"V2"}"#)));
}

#[test]
fn to_queue_goes_through_the_default_exchange() {
    let (properties, data) = published(r#"{"productID":3}"#);
    let Archived::Visit(envelope) = read_archived(&properties, &data) else {
        panic!("a visit");
    };
    let mut a = args(Some("first"), None);
    a.raw = true;
    a.to_queue = Some("audit".into());
    let p = plan(&a, now()).expect("plan");
    let topology = Topology::new("t", QueueType::Quorum, true);
    let (outgoing, _) = republish(&envelope, &topology, &p);
    assert_eq!(
        (outgoing.exchange.as_str(), outgoing.routing_key.as_str()),
        ("", "audit")
    );
    assert_eq!(outgoing.body, envelope.body, "raw: byte-identical");
}
