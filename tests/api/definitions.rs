//! deploy/rabbitmq/definitions.json describes exactly what the relay
//! declares, both as data and on the real broker.

use std::collections::{BTreeMap, BTreeSet};

use kobra_relay::{
    config::Settings,
    publisher::topology::{Argument, Topology},
};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

type Arguments = BTreeMap<String, String>;
type Exchange = (String, String, Arguments);
type Queue = (String, Arguments);

/// Arguments as name -> value text, from a JSON object or from rabbitmqctl's
/// list of `[name, type, value]` (or `{name: value}`) entries.
fn arguments(v: &Value) -> Arguments {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match v {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(entries) => entries
            .iter()
            .flat_map(|entry| match entry {
                Value::Array(triple) => vec![(
                    text(&triple[0]),
                    text(triple.last().unwrap_or(&Value::Null)),
                )],
                Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Arguments::new(),
    }
}
type Binding = (String, String, String);

fn from_topology(topology: &Topology) -> (BTreeSet<Exchange>, BTreeSet<Queue>, BTreeSet<Binding>) {
    let exchanges = topology
        .exchanges()
        .into_iter()
        .map(|e| {
            let arguments = match e.alternate_exchange {
                Some(ae) => json!({"alternate-exchange": ae}),
                None => json!({}),
            };
            (
                e.name,
                e.kind.as_str().to_owned(),
                self::arguments(&arguments),
            )
        })
        .collect();
    let queues = topology
        .queues()
        .into_iter()
        .map(|q| {
            let arguments = q
                .arguments()
                .into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        Argument::Text(text) => text,
                        Argument::Integer(n) => n.to_string(),
                    };
                    (name.to_owned(), value)
                })
                .collect();
            (q.name, arguments)
        })
        .collect();
    let bindings = topology
        .bindings()
        .into_iter()
        .map(|b| (b.exchange, b.queue, b.routing_key))
        .collect();
    (exchanges, queues, bindings)
}

fn from_definitions(
    doc: &Value,
    prefix: &str,
) -> (BTreeSet<Exchange>, BTreeSet<Queue>, BTreeSet<Binding>) {
    let text = |v: &Value| v.as_str().expect("string").replacen("kobra", prefix, 1);
    let renamed = |args: &Value| -> Value {
        let mut out = args.clone();
        if let Some(map) = out.as_object_mut() {
            for key in ["alternate-exchange", "x-dead-letter-exchange"] {
                if let Some(v) = map.get(key).cloned() {
                    map.insert(key.to_owned(), text(&v).into());
                }
            }
        }
        out
    };
    let items = |key: &str| doc[key].as_array().expect("array").clone();
    let exchanges = items("exchanges")
        .iter()
        .map(|e| {
            assert_eq!(
                (e["durable"].clone(), e["auto_delete"].clone()),
                (json!(true), json!(false))
            );
            (
                text(&e["name"]),
                text(&e["type"]),
                arguments(&renamed(&e["arguments"])),
            )
        })
        .collect();
    let queues = items("queues")
        .iter()
        .map(|q| {
            assert_eq!(
                (q["durable"].clone(), q["auto_delete"].clone()),
                (json!(true), json!(false))
            );
            (text(&q["name"]), arguments(&renamed(&q["arguments"])))
        })
        .collect();
    let bindings = items("bindings")
        .iter()
        .map(|b| {
            (
                text(&b["source"]),
                text(&b["destination"]),
                b["routing_key"].as_str().expect("key").to_owned(),
            )
        })
        .collect();
    (exchanges, queues, bindings)
}

fn definitions() -> Value {
    serde_json::from_str(include_str!("../../deploy/rabbitmq/definitions.json"))
        .expect("definitions.json is JSON")
}

#[test]
fn the_definitions_file_is_the_topology_the_relay_declares() {
    let defaults = Settings::from_sources(None, [("KOBRA_RELAY_API_KEYS".into(), "k".into())])
        .expect("the defaults load");
    let topology = Topology::from_settings(&defaults.topology);
    assert!(topology.archive().is_some(), "the archive is on by default");
    assert_eq!(
        from_definitions(&definitions(), "kobra"),
        from_topology(&topology)
    );
}

/// Rows of `rabbitmqctl list_* --formatter json`.
fn rabbitmqctl(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .args(["--formatter", "json", "-q"])
        .output()
        .expect("rabbitmqctl (installed with RabbitMQ)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rabbitmqctl JSON")
}

#[tokio::test]
async fn what_the_relay_declares_on_the_broker_matches_the_definitions_file() {
    let app = spawn_app().await;
    let prefix = app.prefix.clone();
    let mine = |name: &str| name.starts_with(&format!("{prefix}."));

    let exchanges: BTreeSet<Exchange> =
        rabbitmqctl(&["list_exchanges", "name", "type", "durable", "arguments"])
            .into_iter()
            .filter(|e| mine(e["name"].as_str().unwrap_or_default()))
            .map(|e| {
                assert_eq!(e["durable"], true);
                (
                    e["name"].as_str().expect("name").to_owned(),
                    e["type"].as_str().expect("type").to_owned(),
                    arguments(&e["arguments"]),
                )
            })
            .collect();
    let queues: BTreeSet<Queue> = rabbitmqctl(&["list_queues", "name", "durable", "arguments"])
        .into_iter()
        .filter(|q| mine(q["name"].as_str().unwrap_or_default()))
        .map(|q| {
            assert_eq!(q["durable"], true);
            (
                q["name"].as_str().expect("name").to_owned(),
                arguments(&q["arguments"]),
            )
        })
        .collect();
    let bindings: BTreeSet<Binding> = rabbitmqctl(&[
        "list_bindings",
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .into_iter()
    .filter(|b| mine(b["source_name"].as_str().unwrap_or_default()))
    .map(|b| {
        (
            b["source_name"].as_str().expect("source").to_owned(),
            b["destination_name"]
                .as_str()
                .expect("destination")
                .to_owned(),
            b["routing_key"].as_str().expect("key").to_owned(),
        )
    })
    .collect();

    let (want_exchanges, want_queues, want_bindings) = from_definitions(&definitions(), &prefix);
    assert_eq!(exchanges, want_exchanges);
    assert_eq!(queues, want_queues);
    assert_eq!(bindings, want_bindings);
}
