//! The shipped message-contract documents agree with what the relay does.

use kobra_relay::{config::QueueType, publisher::message, publisher::topology::Topology};
use serde_json::Value;

fn asyncapi() -> Value {
    let text = include_str!("../../docs/asyncapi.yaml");
    serde_yaml_ng::from_str(text).expect("docs/asyncapi.yaml is YAML")
}

#[test]
fn the_asyncapi_channels_are_the_exchanges_the_relay_declares() {
    let doc = asyncapi();
    let topology = Topology::new("kobra", QueueType::Quorum, true);
    let mut documented: Vec<(String, String)> = doc["channels"]
        .as_object()
        .expect("channels")
        .values()
        .filter(|c| c["bindings"]["amqp"]["is"] == "routingKey")
        .map(|c| {
            let address = c["address"]
                .as_str()
                .expect("address")
                .replace("{prefix}", "kobra");
            let kind = c["bindings"]["amqp"]["exchange"]["type"]
                .as_str()
                .expect("type")
                .to_owned();
            (address, kind)
        })
        .collect();
    documented.sort();
    let mut declared: Vec<(String, String)> = topology
        .exchanges()
        .into_iter()
        .map(|e| (e.name, e.kind.as_str().to_owned()))
        .collect();
    declared.sort();
    assert_eq!(documented, declared);

    let queues: Vec<String> = doc["channels"]
        .as_object()
        .expect("channels")
        .values()
        .filter(|c| c["bindings"]["amqp"]["is"] == "queue")
        .map(|c| {
            c["bindings"]["amqp"]["queue"]["name"]
                .as_str()
                .expect("name")
                .replace("{prefix}", "kobra")
        })
        .collect();
    assert_eq!(
        queues,
        [topology.archive_queue()],
        "the archive stream is documented"
    );
}

#[test]
fn the_asyncapi_messages_carry_the_relays_types_and_the_shipped_schema() {
    let doc = asyncapi();
    let messages = &doc["components"]["messages"];
    assert_eq!(
        messages["normalizedVisit"]["bindings"]["amqp"]["messageType"],
        message::VISIT_TYPE
    );
    assert_eq!(
        messages["rawVisit"]["bindings"]["amqp"]["messageType"],
        message::VISIT_TYPE
    );
    assert_eq!(
        messages["rejectedBody"]["bindings"]["amqp"]["messageType"],
        message::REJECTED_TYPE
    );
    let schema_ref = messages["normalizedVisit"]["payload"]["$ref"]
        .as_str()
        .expect("$ref");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(schema_ref);
    assert!(path.exists(), "{} exists", path.display());
    let reasons =
        doc["components"]["schemas"]["rejectedHeaders"]["properties"]["x-rejection-reason"]["enum"]
            .clone();
    assert_eq!(
        reasons,
        serde_json::json!(["invalid_json", "not_an_object", "invalid_utf8"])
    );
}
