//! RabbitMQ names and declarations (CONTRACT.md §4), as plain data.
//!
//! Keeping the topology as data lets the publisher declare it, the CLI print
//! it and the tests compare it with the broker and with
//! `deploy/rabbitmq/definitions.json`, all from one definition.

use crate::config::{QueueType, Retention, TopologySettings};
use crate::visit::Product;

/// Exchange types used by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    /// Routed by `visit.finished.<product>`.
    Topic,
    /// Every bound queue gets every message.
    Fanout,
}

impl ExchangeType {
    /// The AMQP type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Fanout => "fanout",
        }
    }
}

/// A durable exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// The exchange's name, prefix included.
    pub name: String,
    /// Topic (routed by product) or fanout.
    pub kind: ExchangeType,
    /// `alternate-exchange` argument.
    pub alternate_exchange: Option<String>,
}

/// A durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name, prefix included.
    pub name: String,
    /// `x-dead-letter-exchange` argument.
    pub dead_letter_exchange: Option<String>,
    /// What kind of queue.
    pub kind: QueueKind,
}

impl QueueSpec {
    /// The declaration arguments, in a fixed order.
    pub fn arguments(&self) -> Vec<(&'static str, Argument)> {
        let mut arguments = vec![(
            "x-queue-type",
            Argument::Text(self.kind.queue_type().to_owned()),
        )];
        if let Some(dlx) = &self.dead_letter_exchange {
            arguments.push(("x-dead-letter-exchange", Argument::Text(dlx.clone())));
        }
        if let QueueKind::Stream(retention) = self.kind {
            arguments.push(("x-max-age", Argument::Text(retention.max_age_argument())));
            arguments.push(("x-max-length-bytes", Argument::Integer(retention.max_bytes)));
        }
        arguments
    }
}

/// A queue argument's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    /// A string (an AMQP long string).
    Text(String),
    /// A number (an AMQP signed 64-bit integer).
    Integer(u64),
}

/// The `x-queue-type` of a queue and the arguments that come with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// A work queue: consumed and emptied.
    Work(QueueType),
    /// An append-only stream, read from any offset, trimmed by retention.
    Stream(Retention),
}

impl QueueKind {
    /// The `x-queue-type` argument.
    pub fn queue_type(self) -> &'static str {
        match self {
            Self::Work(queue_type) => queue_type.as_str(),
            Self::Stream(_) => "stream",
        }
    }
}

/// A queue binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// The exchange messages come from.
    pub exchange: String,
    /// The queue they are routed to.
    pub queue: String,
    /// Routing key (empty on fanouts).
    pub routing_key: String,
}

/// The relay's names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    queue_type: QueueType,
    declare_queues: bool,
    archive: Option<Retention>,
}

impl Topology {
    /// Names under `prefix`, without the archive stream.
    pub fn new(prefix: &str, queue_type: QueueType, declare_queues: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            queue_type,
            declare_queues,
            archive: None,
        }
    }

    /// The topology `settings` describe, archive included when `ARCHIVE` is on.
    pub fn from_settings(settings: &TopologySettings) -> Self {
        Self::new(
            &settings.prefix,
            settings.queue_type,
            settings.declare_queues,
        )
        .with_archive(settings.archive)
    }

    /// Adds (or, with `None`, removes) the archive stream.
    #[must_use]
    pub fn with_archive(mut self, retention: Option<Retention>) -> Self {
        self.archive = retention;
        self
    }

    /// Normalized visits (topic).
    pub fn visits_exchange(&self) -> String {
        format!("{}.visits", self.prefix)
    }

    /// Raw bodies (topic).
    pub fn raw_exchange(&self) -> String {
        format!("{}.visits.raw", self.prefix)
    }

    /// Alternate exchange of both topics (fanout).
    pub fn unrouted_exchange(&self) -> String {
        format!("{}.visits.unrouted", self.prefix)
    }

    /// Bodies that were not a JSON object (fanout).
    pub fn rejected_exchange(&self) -> String {
        format!("{}.visits.rejected", self.prefix)
    }

    /// Consumers' rejected messages (fanout).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.visits.dead-letter", self.prefix)
    }

    /// `visit.finished.<slug>`.
    pub fn routing_key(product: Product) -> String {
        format!("visit.finished.{}", product.slug())
    }

    /// The normalized queue of a product: `<prefix>.visits.<slug>`.
    pub fn product_queue(&self, product: Product) -> String {
        format!("{}.visits.{}", self.prefix, product.slug())
    }

    /// The raw queue of a product: `<prefix>.visits.raw.<slug>`.
    pub fn raw_product_queue(&self, product: Product) -> String {
        format!("{}.visits.raw.{}", self.prefix, product.slug())
    }

    /// The stream every raw visit is appended to: `<prefix>.visits.archive`.
    pub fn archive_queue(&self) -> String {
        format!("{}.visits.archive", self.prefix)
    }

    /// Whether queues and bindings are declared.
    pub fn declares_queues(&self) -> bool {
        self.declare_queues
    }

    /// Whether raw visits are archived: `ARCHIVE` is on, whoever declares
    /// the stream (the relay, or operators from the definitions document
    /// when `DECLARE_QUEUES=false`).
    pub fn archives(&self) -> bool {
        self.archive.is_some()
    }

    /// The archive's retention, when the relay declares it (it is a queue:
    /// with `DECLARE_QUEUES=false` operators declare it, or not).
    pub fn archive(&self) -> Option<Retention> {
        self.archive.filter(|_| self.declare_queues)
    }

    /// Every exchange, in declaration order (alternate exchanges first).
    pub fn exchanges(&self) -> Vec<ExchangeSpec> {
        let fanout = |name| ExchangeSpec {
            name,
            kind: ExchangeType::Fanout,
            alternate_exchange: None,
        };
        let topic = |name| ExchangeSpec {
            name,
            kind: ExchangeType::Topic,
            alternate_exchange: Some(self.unrouted_exchange()),
        };
        vec![
            fanout(self.unrouted_exchange()),
            fanout(self.rejected_exchange()),
            fanout(self.dead_letter_exchange()),
            topic(self.visits_exchange()),
            topic(self.raw_exchange()),
        ]
    }

    /// Every queue (empty when queues are left to operators).
    pub fn queues(&self) -> Vec<QueueSpec> {
        if !self.declare_queues {
            return Vec::new();
        }
        let dlx = Some(self.dead_letter_exchange());
        let queue = |name, dead_letter_exchange| QueueSpec {
            name,
            dead_letter_exchange,
            kind: QueueKind::Work(self.queue_type),
        };
        let mut queues: Vec<QueueSpec> = Product::KNOWN
            .iter()
            .flat_map(|&p| [self.product_queue(p), self.raw_product_queue(p)])
            .map(|name| queue(name, dlx.clone()))
            .collect();
        queues.push(queue(self.unrouted_exchange(), dlx.clone()));
        queues.push(queue(self.rejected_exchange(), dlx));
        queues.push(queue(self.dead_letter_exchange(), None));
        if let Some(retention) = self.archive() {
            // Streams take no dead-letter exchange: nothing is rejected there.
            queues.push(QueueSpec {
                name: self.archive_queue(),
                dead_letter_exchange: None,
                kind: QueueKind::Stream(retention),
            });
        }
        queues
    }

    /// Every binding (empty when queues are left to operators).
    pub fn bindings(&self) -> Vec<BindingSpec> {
        if !self.declare_queues {
            return Vec::new();
        }
        let mut bindings = Vec::new();
        for product in Product::KNOWN {
            bindings.push(BindingSpec {
                exchange: self.visits_exchange(),
                queue: self.product_queue(product),
                routing_key: Self::routing_key(product),
            });
            bindings.push(BindingSpec {
                exchange: self.raw_exchange(),
                queue: self.raw_product_queue(product),
                routing_key: Self::routing_key(product),
            });
        }
        for fanout in [
            self.unrouted_exchange(),
            self.rejected_exchange(),
            self.dead_letter_exchange(),
        ] {
            bindings.push(BindingSpec {
                queue: fanout.clone(),
                exchange: fanout,
                routing_key: String::new(),
            });
        }
        if self.archive().is_some() {
            // The known products' routing keys, not `#`: a catch-all would
            // make every raw message routable, and other products' raw copies
            // would no longer fall through to the unrouted fanout, which
            // hands the archive those (and their normalized copies, which
            // replay passes over).
            for product in Product::KNOWN {
                bindings.push(BindingSpec {
                    exchange: self.raw_exchange(),
                    queue: self.archive_queue(),
                    routing_key: Self::routing_key(product),
                });
            }
            bindings.push(BindingSpec {
                exchange: self.unrouted_exchange(),
                queue: self.archive_queue(),
                routing_key: String::new(),
            });
        }
        bindings
    }
}

impl Topology {
    /// The whole topology, queues included whatever `DECLARE_QUEUES` says,
    /// as a RabbitMQ definitions document for `vhost` (what
    /// `rabbitmqctl import_definitions` and the management plugin's
    /// `load_definitions` read). `deploy/rabbitmq/definitions.json` is this
    /// document for the default settings.
    pub fn definitions(&self, vhost: &str) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let full = Self {
            declare_queues: true,
            ..self.clone()
        };
        let arguments = |pairs: &[(&str, Option<&str>)]| -> Value {
            let map: Map<String, Value> = pairs
                .iter()
                .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), Value::from(v))))
                .collect();
            Value::Object(map)
        };
        let exchanges: Vec<Value> = full
            .exchanges()
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "vhost": vhost,
                    "type": e.kind.as_str(),
                    "durable": true,
                    "auto_delete": false,
                    "internal": false,
                    "arguments": arguments(&[("alternate-exchange", e.alternate_exchange.as_deref())]),
                })
            })
            .collect();
        let queues: Vec<Value> = full
            .queues()
            .iter()
            .map(|q| {
                let arguments: Map<String, Value> = q
                    .arguments()
                    .into_iter()
                    .map(|(name, value)| {
                        let value = match value {
                            Argument::Text(text) => Value::from(text),
                            Argument::Integer(n) => Value::from(n),
                        };
                        (name.to_owned(), value)
                    })
                    .collect();
                json!({
                    "name": q.name,
                    "vhost": vhost,
                    "durable": true,
                    "auto_delete": false,
                    "arguments": arguments,
                })
            })
            .collect();
        let bindings: Vec<Value> = full
            .bindings()
            .iter()
            .map(|b| {
                json!({
                    "source": b.exchange,
                    "vhost": vhost,
                    "destination": b.queue,
                    "destination_type": "queue",
                    "routing_key": b.routing_key,
                    "arguments": {},
                })
            })
            .collect();
        json!({
            "vhosts": [{"name": vhost}],
            "exchanges": exchanges,
            "queues": queues,
            "bindings": bindings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_follow_the_contract() {
        let t = Topology::new("kobra", QueueType::Quorum, true);
        assert_eq!(t.visits_exchange(), "kobra.visits");
        assert_eq!(t.raw_exchange(), "kobra.visits.raw");
        assert_eq!(
            t.product_queue(Product::DebtCollection),
            "kobra.visits.debt_collection"
        );
        assert_eq!(
            t.raw_product_queue(Product::BusinessValidation),
            "kobra.visits.raw.business_validation"
        );
        assert_eq!(
            Topology::routing_key(Product::AddressValidation),
            "visit.finished.address_validation"
        );
        assert_eq!(
            Topology::routing_key(Product::Other(9)),
            "visit.finished.product_9"
        );
        assert_eq!(
            Topology::routing_key(Product::Unknown),
            "visit.finished.unknown"
        );
    }

    #[test]
    fn topics_fall_back_to_the_unrouted_fanout() {
        let t = Topology::new("p", QueueType::Classic, true);
        let exchanges = t.exchanges();
        assert_eq!(exchanges.len(), 5);
        for e in exchanges.iter().filter(|e| e.kind == ExchangeType::Topic) {
            assert_eq!(e.alternate_exchange.as_deref(), Some("p.visits.unrouted"));
        }
    }

    #[test]
    fn every_queue_dead_letters_except_the_dead_letter_queue() {
        let t = Topology::new("p", QueueType::Quorum, true);
        let queues = t.queues();
        assert_eq!(queues.len(), 9);
        for q in &queues {
            let expected =
                (q.name != "p.visits.dead-letter").then(|| "p.visits.dead-letter".to_owned());
            assert_eq!(q.dead_letter_exchange, expected, "{}", q.name);
            assert_eq!(q.kind, QueueKind::Work(QueueType::Quorum));
        }
        assert_eq!(t.bindings().len(), 9);
    }

    fn retention(max_age: Duration) -> Retention {
        Retention {
            max_age,
            max_bytes: 10 << 30,
        }
    }

    #[test]
    fn the_archive_is_a_stream_of_raw_known_products_and_everything_unrouted() {
        let t = Topology::new("p", QueueType::Quorum, true)
            .with_archive(Some(retention(Duration::from_secs(30 * 86_400))));
        let archive = t
            .queues()
            .into_iter()
            .find(|q| q.name == "p.visits.archive")
            .expect("declared");
        assert_eq!(
            archive.arguments(),
            [
                ("x-queue-type", Argument::Text("stream".into())),
                ("x-max-age", Argument::Text("30D".into())),
                ("x-max-length-bytes", Argument::Integer(10 << 30)),
            ]
        );
        let sources: Vec<(String, String)> = t
            .bindings()
            .into_iter()
            .filter(|b| b.queue == "p.visits.archive")
            .map(|b| (b.exchange, b.routing_key))
            .collect();
        let mut expected: Vec<(String, String)> = Product::KNOWN
            .iter()
            .map(|&p| ("p.visits.raw".to_owned(), Topology::routing_key(p)))
            .collect();
        expected.push(("p.visits.unrouted".into(), String::new()));
        assert_eq!(sources, expected);
        assert!(
            !sources.iter().any(|(_, key)| key.contains(['#', '*'])),
            "a wildcard would keep other products' raw copies from the unrouted fanout"
        );
    }

    #[test]
    fn the_archive_follows_declare_queues() {
        let t = Topology::new("p", QueueType::Quorum, false)
            .with_archive(Some(retention(Duration::from_secs(60))));
        assert_eq!(t.archive(), None);
        let off = Topology::new("p", QueueType::Quorum, true);
        assert!(off.queues().iter().all(|q| q.name != "p.visits.archive"));
        assert_eq!(off.bindings().len(), 9);
    }

    #[test]
    fn max_age_is_written_in_the_largest_exact_unit() {
        let argument = |seconds| retention(Duration::from_secs(seconds)).max_age_argument();
        assert_eq!(argument(30 * 86_400), "30D");
        assert_eq!(argument(36 * 3_600), "36h");
        assert_eq!(argument(90 * 60), "90m");
        assert_eq!(argument(45), "45s");
    }

    #[test]
    fn queues_can_be_left_to_operators() {
        let t = Topology::new("p", QueueType::Quorum, false);
        assert!(t.queues().is_empty());
        assert!(t.bindings().is_empty());
        assert_eq!(t.exchanges().len(), 5);
    }
}
