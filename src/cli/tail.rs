//! `kobra-relay tail PRODUCT`: watch visits as consumers receive them.
//!
//! By default a temporary queue (exclusive, deleted when `tail` exits) is
//! bound to the exchange with the product's routing key, so a copy of each
//! new visit is shown and nothing is taken from the real consumers.
//! `--from-queue` consumes the product's own queue instead and acknowledges
//! what it shows, which removes it: for draining, not for watching.

use std::process::ExitCode;

use clap::Args;
use futures_util::StreamExt;
use lapin::{
    Channel, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use serde_json::Value;

use super::{FAILED, USAGE, fail};
use crate::config::Settings;
use crate::publisher::{headers, topology::Topology};
use crate::visit::Product;

/// Arguments of `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Product: a slug (`debt_collection`, `product_7`, `unknown`), an id
    /// (`1`), or `all`.
    pub product: String,
    /// Raw bodies (the `.visits.raw` exchange) instead of normalized documents.
    #[arg(long)]
    pub raw: bool,
    /// Consume the product's own queue and acknowledge what is shown
    /// (removes it from the queue) instead of a temporary copy.
    #[arg(long)]
    pub from_queue: bool,
    /// Stop after this many visits.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// One compact JSON document per line (for jq) instead of the readable form.
    #[arg(long)]
    pub json: bool,
}

/// Where `tail` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A temporary queue bound to `exchange` with `routing_key`.
    Copy {
        exchange: String,
        routing_key: String,
    },
    /// An existing queue.
    Queue(String),
}

fn source(args: &TailArgs, topology: &Topology) -> Result<Source, String> {
    let exchange = if args.raw {
        topology.raw_exchange()
    } else {
        topology.visits_exchange()
    };
    let product = if args.product == "all" {
        None
    } else {
        Some(Product::parse(&args.product).ok_or_else(|| {
            format!(
                "{:?} is not a product: use a slug (debt_collection, product_7, unknown), an id (1) or all",
                args.product
            )
        })?)
    };
    if args.from_queue {
        let product = product.ok_or("--from-queue needs one product, not all")?;
        let queue = if args.raw {
            topology.raw_product_queue(product)
        } else {
            topology.product_queue(product)
        };
        return Ok(Source::Queue(queue));
    }
    let routing_key = product.map_or_else(|| "visit.finished.*".to_owned(), Topology::routing_key);
    Ok(Source::Copy {
        exchange,
        routing_key,
    })
}

/// Consumes until `--count` visits were shown or Ctrl-C.
pub fn run(args: &TailArgs, settings: &Settings) -> ExitCode {
    let topology = Topology::from_settings(&settings.topology);
    let source = match source(args, &topology) {
        Ok(source) => source,
        Err(message) => return fail("tail", USAGE, message),
    };
    let runtime = match super::runtime("tail") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let connection = match super::broker(settings, "tail").await {
            Ok((connection, _)) => connection,
            Err(code) => return code,
        };
        let outcome = tokio::select! {
            outcome = consume(&connection, &source, args) => outcome,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        let _ = connection.close(200, "tail done".into()).await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail("tail", FAILED, error),
        }
    })
}

async fn consume(connection: &Connection, source: &Source, args: &TailArgs) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .basic_qos(32, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let queue = open_queue(&channel, source).await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "kobra-relay-tail".into(),
            BasicConsumeOptions {
                no_ack: matches!(source, Source::Copy { .. }),
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match source {
        Source::Copy {
            exchange,
            routing_key,
        } => eprintln!("tailing {exchange} key {routing_key} (a temporary copy); Ctrl-C stops"),
        Source::Queue(queue) => {
            eprintln!("consuming {queue} (acknowledged: taken from the queue); Ctrl-C stops")
        }
    }
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        let Some(delivery) = consumer.next().await else {
            return Err("the broker closed the consumer".into());
        };
        let delivery = delivery.map_err(|e| e.to_string())?;
        println!("{}", render(&delivery, args.json));
        if !matches!(source, Source::Copy { .. }) {
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        shown += 1;
    }
    Ok(())
}

async fn open_queue(channel: &Channel, source: &Source) -> Result<String, String> {
    match source {
        Source::Queue(name) => Ok(name.clone()),
        Source::Copy {
            exchange,
            routing_key,
        } => {
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let queue = channel
                .queue_declare("".into(), options, FieldTable::default())
                .await
                .map_err(|e| e.to_string())?;
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    format!("cannot bind to {exchange}: {e} (is TOPOLOGY_PREFIX right, and has a relay or `kobra-relay topology --declare` declared it?)")
                })?;
            Ok(queue.name().to_string())
        }
    }
}

/// One delivery as `tail` prints it: a summary line and the pretty
/// document, or the compact document alone with `--json`.
fn render(delivery: &Delivery, compact: bool) -> String {
    let document: Option<Value> = serde_json::from_slice(&delivery.data).ok();
    if compact {
        return match &document {
            Some(doc) => doc.to_string(),
            None => String::from_utf8_lossy(&delivery.data).into_owned(),
        };
    }
    let header = |name: &str| headers::text(&delivery.properties, name);
    let mut summary = format!(
        "── {} {}",
        header(headers::RECEIVED_AT).unwrap_or_default(),
        header(headers::PRODUCT).unwrap_or_else(|| "?".into()),
    );
    for (label, name) in [
        ("visit", headers::VISIT_ID),
        ("agent", headers::AGENT_ID),
        ("key", headers::API_KEY_LABEL),
    ] {
        if let Some(value) = header(name) {
            summary.push_str(&format!("  {label} {value}"));
        }
    }
    if let Some(warnings) = document
        .as_ref()
        .and_then(|d| d.get("warnings"))
        .and_then(Value::as_array)
        .filter(|w| !w.is_empty())
    {
        summary.push_str(&format!("  warnings {}", warnings.len()));
    }
    if delivery.redelivered {
        summary.push_str("  (redelivered)");
    }
    let body = match &document {
        Some(doc) => serde_json::to_string_pretty(doc).unwrap_or_default(),
        None => String::from_utf8_lossy(&delivery.data).into_owned(),
    };
    format!("{summary}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType;

    fn args(product: &str, raw: bool, from_queue: bool) -> TailArgs {
        TailArgs {
            product: product.to_owned(),
            raw,
            from_queue,
            count: None,
            json: false,
        }
    }

    #[test]
    fn a_copy_is_bound_with_the_product_routing_key() {
        let t = Topology::new("k", QueueType::Quorum, true);
        assert_eq!(
            source(&args("1", false, false), &t),
            Ok(Source::Copy {
                exchange: "k.visits".into(),
                routing_key: "visit.finished.debt_collection".into()
            })
        );
        assert_eq!(
            source(&args("all", true, false), &t),
            Ok(Source::Copy {
                exchange: "k.visits.raw".into(),
                routing_key: "visit.finished.*".into()
            })
        );
        assert_eq!(
            source(&args("address_validation", true, true), &t),
            Ok(Source::Queue("k.visits.raw.address_validation".into()))
        );
        assert!(source(&args("all", false, true), &t).is_err());
        assert!(source(&args("nope", false, false), &t).is_err());
    }
}
