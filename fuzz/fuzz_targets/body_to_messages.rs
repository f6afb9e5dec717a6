//! Everything the relay does with a body after reading it: classify, hash,
//! normalize, build the AMQP messages. For any bytes: no panic, the raw
//! message carries the body unchanged, the normalized document is a JSON
//! object of schema version 1, and the ingress's reading of the body (with
//! its document) gives the same messages as an envelope read back from the
//! spool.
#![no_main]

use bytes::Bytes;
use kobra_relay::config::QueueType;
use kobra_relay::{
    metrics::ExchangeLabel,
    publisher::{message::prepare, topology::Topology},
    visit::{self, Envelope, Kind, Receipt},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let receipt = Receipt {
        id: uuid::Uuid::nil(),
        received_at: jiff::Timestamp::UNIX_EPOCH,
        key_label: "fuzz".into(),
    };
    let envelope = Envelope::new(receipt.clone(), Bytes::copy_from_slice(body));
    let topology = Topology::new("fuzz", QueueType::Quorum, true);
    let prepared = prepare(&envelope, &topology);
    let (received, _) = visit::receive(
        receipt,
        Bytes::copy_from_slice(body),
        visit::DEPTH_CEILING,
        true,
    );
    assert_eq!(received.kind, envelope.kind);
    let from_ingress = prepare(&received, &topology);
    let read_back = prepare(
        &Envelope {
            document: None,
            ..received
        },
        &topology,
    );
    for (a, b) in from_ingress.messages.iter().zip(&read_back.messages) {
        assert_eq!(
            (&a.exchange, &a.routing_key, &a.body),
            (&b.exchange, &b.routing_key, &b.body)
        );
        assert_eq!(a.properties.headers(), b.properties.headers());
    }
    match envelope.kind {
        Kind::Visit => assert_eq!(prepared.messages.len(), 2),
        Kind::Rejected(_) => assert_eq!(prepared.messages.len(), 1),
    }
    for message in &prepared.messages {
        match message.label {
            ExchangeLabel::Raw | ExchangeLabel::Rejected => assert_eq!(&message.body[..], body),
            ExchangeLabel::Normalized => {
                let document: serde_json::Value =
                    serde_json::from_slice(&message.body).expect("the document is JSON");
                assert_eq!(document["schemaVersion"], 1);
                assert!(document["warnings"].is_array());
            }
        }
    }
});
