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

/// Lines that break a Markdown table: text between its rows, before the
/// blank line that ends it (a benchmark's log line pasted into its figures).
fn broken_table_lines(text: &str) -> Vec<String> {
    let mut in_table = false;
    let mut in_code = false;
    let mut broken = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            in_table = false;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('|') {
            in_table = true;
        } else if line.trim().is_empty() {
            in_table = false;
        } else if in_table {
            broken.push(format!("line {}: {line}", number + 1));
        }
    }
    broken
}

#[test]
fn every_markdown_table_in_the_docs_is_rows_only() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let broken = broken_table_lines(&text);
        assert!(broken.is_empty(), "{}: {broken:#?}", file.display());
    }
    assert_eq!(
        broken_table_lines("| a |\n|---|\nrelay pid 1: log\n| 1 |\n"),
        ["line 3: relay pid 1: log"]
    );
}
