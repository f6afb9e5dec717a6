//! Everything the relay does with a body after reading it: classify, hash,
//! normalize, build the AMQP messages. For any bytes: no panic, the raw
//! message carries the body unchanged, and the normalized document is a
//! JSON object of schema version 1.
#![no_main]

use bytes::Bytes;
use kobra_relay::config::QueueType;
use kobra_relay::{
    metrics::ExchangeLabel,
    publisher::{message::prepare, topology::Topology},
    visit::{Envelope, Kind, Receipt},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let receipt = Receipt {
        id: uuid::Uuid::nil(),
        received_at: jiff::Timestamp::UNIX_EPOCH,
        key_label: "fuzz".into(),
    };
    let envelope = Envelope::new(receipt, Bytes::copy_from_slice(body));
    let topology = Topology::new("fuzz", QueueType::Quorum, true);
    let prepared = prepare(&envelope, &topology);
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
