//! Declaring the topology on the broker, and asking whether a queue exists.

use lapin::{
    Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use super::topology::{Argument, ExchangeType, QueueKind, Topology};

/// Declares the topology. Idempotent: re-declaring with the same arguments
/// is a no-op on the broker; different arguments fail loudly, which is what
/// an operator wants to hear about.
///
/// # Errors
/// The broker refused a declaration (for instance, an existing queue with
/// another type).
pub async fn declare(
    connection: &Connection,
    channel: &Channel,
    topology: &Topology,
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for exchange in topology.exchanges() {
        let mut arguments = FieldTable::default();
        if let Some(ae) = &exchange.alternate_exchange {
            arguments.insert("alternate-exchange".into(), long_string(ae));
        }
        let kind = match exchange.kind {
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Fanout => ExchangeKind::Fanout,
        };
        channel
            .exchange_declare(exchange.name.as_str().into(), kind, durable, arguments)
            .await?;
    }
    for queue in topology.queues() {
        let arguments = queue_arguments(&queue.arguments());
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        if matches!(queue.kind, QueueKind::Stream(_)) {
            declare_stream(connection, &queue.name, options, arguments).await?;
            continue;
        }
        channel
            .queue_declare(queue.name.as_str().into(), options, arguments)
            .await?;
    }
    for binding in topology.bindings() {
        channel
            .queue_bind(
                binding.queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Asks the broker whether `queue` exists (a passive declaration).
///
/// # Errors
/// It does not (`NOT_FOUND`, and the broker closes `channel`), or the
/// connection failed.
pub async fn check_queue(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .map(|_| ())
}

/// Declares a stream on a channel of its own. A stream's retention is fixed
/// when it is created: redeclaring it after `ARCHIVE_MAX_AGE` changed is
/// refused (and closes the channel), which must not stop all delivery for
/// the sake of the archive, so an archive declared otherwise is kept as is.
/// Declaring rather than asking first keeps a healthy start free of the
/// broker's NOT_FOUND for a stream that does not exist yet.
async fn declare_stream(
    connection: &Connection,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    match channel.queue_declare(name.into(), options, arguments).await {
        Ok(_) => {
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
        Err(error) if error.is_amqp_soft_error() => {
            tracing::warn!(
                stream = name, %error,
                "the archive stream exists with other retention settings; it is kept as declared"
            );
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// A queue's declaration arguments as an AMQP table.
fn queue_arguments(arguments: &[(&'static str, Argument)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in arguments {
        let value = match value {
            Argument::Text(text) => long_string(text),
            Argument::Integer(n) => AMQPValue::LongLongInt(i64::try_from(*n).unwrap_or(i64::MAX)),
        };
        table.insert((*name).into(), value);
    }
    table
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}
