//! RabbitMQ names and declarations (CONTRACT.md §4), as plain data.
//!
//! Keeping the topology as data lets the publisher declare it, the CLI print
//! it and the tests compare it with the broker and with
//! `deploy/rabbitmq/definitions.json`, all from one definition.

use crate::config::QueueType;
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
    /// Full name.
    pub name: String,
    /// Type.
    pub kind: ExchangeType,
    /// `alternate-exchange` argument.
    pub alternate_exchange: Option<String>,
}

/// A durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Full name.
    pub name: String,
    /// `x-dead-letter-exchange` argument.
    pub dead_letter_exchange: Option<String>,
    /// `x-queue-type` argument.
    pub queue_type: QueueType,
}

/// A queue binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// Source exchange.
    pub exchange: String,
    /// Destination queue.
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
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: &str, queue_type: QueueType, declare_queues: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            queue_type,
            declare_queues,
        }
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

    /// Whether queues and bindings are declared.
    pub fn declares_queues(&self) -> bool {
        self.declare_queues
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
            queue_type: self.queue_type,
        };
        let mut queues: Vec<QueueSpec> = Product::KNOWN
            .iter()
            .flat_map(|&p| [self.product_queue(p), self.raw_product_queue(p)])
            .map(|name| queue(name, dlx.clone()))
            .collect();
        queues.push(queue(self.unrouted_exchange(), dlx.clone()));
        queues.push(queue(self.rejected_exchange(), dlx));
        queues.push(queue(self.dead_letter_exchange(), None));
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
                json!({
                    "name": q.name,
                    "vhost": vhost,
                    "durable": true,
                    "auto_delete": false,
                    "arguments": arguments(&[
                        ("x-queue-type", Some(q.queue_type.as_str())),
                        ("x-dead-letter-exchange", q.dead_letter_exchange.as_deref()),
                    ]),
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
            assert_eq!(q.queue_type, QueueType::Quorum);
        }
        assert_eq!(t.bindings().len(), 9);
    }

    #[test]
    fn queues_can_be_left_to_operators() {
        let t = Topology::new("p", QueueType::Quorum, false);
        assert!(t.queues().is_empty());
        assert!(t.bindings().is_empty());
        assert_eq!(t.exchanges().len(), 5);
    }
}
