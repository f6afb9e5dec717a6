//! `kobra-relay topology`: print what the relay declares, or declare it.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use clap::{Args, ValueEnum};

use super::{FAILED, fail};
use crate::config::Settings;
use crate::publisher::{
    self,
    topology::{QueueKind, Topology},
};

/// How `topology` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Exchanges, queues and bindings, one per line.
    Text,
    /// A RabbitMQ definitions document (`rabbitmqctl import_definitions`).
    Definitions,
}

/// Arguments of `topology`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Declare it on the broker (AMQP_URL) instead of printing it, as the
    /// relay does at connect; idempotent.
    #[arg(long)]
    pub declare: bool,
    /// Virtual host named in the definitions document.
    #[arg(long, default_value = "/", value_name = "VHOST")]
    pub vhost: String,
}

/// Prints or declares the topology of `settings`.
pub fn run(args: &TopologyArgs, settings: &Settings) -> ExitCode {
    let topology = Topology::from_settings(&settings.topology);
    if args.declare {
        return declare(&topology, settings);
    }
    match args.format {
        Format::Text => print!("{}", render_text(&topology)),
        Format::Definitions => {
            let document = topology.definitions(&args.vhost);
            println!(
                "{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

/// The topology as an operator reads it.
pub fn render_text(topology: &Topology) -> String {
    let mut out = String::from("exchanges\n");
    for e in topology.exchanges() {
        let _ = write!(out, "  {:<40} {:<7} durable", e.name, e.kind.as_str());
        if let Some(ae) = e.alternate_exchange {
            let _ = write!(out, " alternate-exchange={ae}");
        }
        out.push('\n');
    }
    if !topology.declares_queues() {
        out.push_str("queues and bindings: left to operators (DECLARE_QUEUES=false)\n");
        return out;
    }
    out.push_str("queues\n");
    for q in topology.queues() {
        let _ = write!(out, "  {:<40} {:<7} durable", q.name, q.kind.queue_type());
        if let Some(dlx) = &q.dead_letter_exchange {
            let _ = write!(out, " x-dead-letter-exchange={dlx}");
        }
        if let QueueKind::Stream(retention) = q.kind {
            let _ = write!(
                out,
                " x-max-age={} x-max-length-bytes={}",
                retention.max_age_argument(),
                retention.max_bytes
            );
        }
        out.push('\n');
    }
    out.push_str("bindings\n");
    for b in topology.bindings() {
        let key = if b.routing_key.is_empty() {
            "(fanout)"
        } else {
            &b.routing_key
        };
        let _ = writeln!(out, "  {} -> {}  key {key}", b.exchange, b.queue);
    }
    out
}

/// How long declaring may take once connected: a broker that accepts the
/// connection but never answers must not hang the tool.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(15);

fn declare(topology: &Topology, settings: &Settings) -> ExitCode {
    let runtime = match super::runtime("topology") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let (connection, shown) = match super::broker(settings, "topology").await {
            Ok(opened) => opened,
            Err(code) => return code,
        };
        let declared = tokio::time::timeout(DECLARE_TIMEOUT, async {
            let channel = connection.create_channel().await?;
            publisher::declare(&connection, &channel, topology).await
        })
        .await;
        let _ = connection.close(200, "declared".into()).await;
        match declared {
            Ok(Ok(())) => {
                println!(
                    "declared {} exchanges, {} queues, {} bindings on {shown}",
                    topology.exchanges().len(),
                    topology.queues().len(),
                    topology.bindings().len()
                );
                ExitCode::SUCCESS
            }
            Ok(Err(error)) => fail("topology", FAILED, format!("{shown}: {error}")),
            Err(_) => fail("topology", FAILED, format!("{shown}: declaring timed out")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType;
    use crate::config::Retention;

    #[test]
    fn the_text_form_lists_every_name_once() {
        let topology =
            Topology::new("kobra", QueueType::Quorum, true).with_archive(Some(Retention {
                max_age: Duration::from_secs(30 * 86_400),
                max_bytes: 1 << 30,
            }));
        let text = render_text(&topology);
        let section = |name: &str| -> Vec<String> {
            text.split_once(&format!("{name}\n"))
                .map(|(_, rest)| rest)
                .unwrap_or_default()
                .lines()
                .take_while(|l| l.starts_with("  "))
                .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(
            section("exchanges"),
            topology
                .exchanges()
                .into_iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            section("queues"),
            topology
                .queues()
                .into_iter()
                .map(|q| q.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(section("bindings").len(), topology.bindings().len());
        assert!(text.contains(
            "kobra.visits -> kobra.visits.debt_collection  key visit.finished.debt_collection"
        ));
        assert!(text.contains("x-dead-letter-exchange=kobra.visits.dead-letter"));
        assert!(text.contains(
            "kobra.visits.archive                     stream  durable x-max-age=30D x-max-length-bytes=1073741824"
        ));

        let operators = render_text(&Topology::new("kobra", QueueType::Quorum, false));
        assert!(operators.contains("left to operators"));
        assert!(!operators.contains("bindings\n"));
    }
}
