//! Broker helpers shared by the integration tests and the load benchmark
//! (`benches/load` includes this file): a random topology prefix, a
//! connection, a queue's depth, and deleting what a relay declared.
//!
//! Each binary uses part of it.
#![allow(dead_code)]

use kobra_relay::publisher::topology::Topology;
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};

/// A random topology prefix starting with `tag`, so parallel runs never
/// share queues.
pub fn random_prefix(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// Opens a connection to the broker at `url`; panics saying which broker
/// did not answer.
pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("the broker at {url} answers: {e}"))
}

/// Ready messages in `queue` now, asked on a channel of its own.
pub async fn queue_depth(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("queue exists");
    let _ = channel.close(200, "depth".into()).await;
    declared.message_count()
}

/// Deletes every queue and exchange of `topology` that exists, each on a
/// channel of its own (a failed delete closes its channel).
pub async fn delete_topology(connection: &Connection, topology: &Topology) {
    for queue in topology.queues() {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in topology.exchanges() {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(
                    exchange.name.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
}
