//! kobra-relay: receives Kobra "Finish Visit" webhooks, makes them durable and
//! relays them to RabbitMQ.
//!
//! - [`config`]: typed settings from defaults, a TOML file and `KOBRA_RELAY_*`.
//! - [`auth`]: labelled API keys, constant-time comparison.
//! - [`keys`]: key rotation: reload on SIGHUP or when the keys file changes.
//! - [`visit`]: the visit model and pure rules (classification, products, normalization).
//! - [`spool`]: the durable local queue between the 202 and the broker's confirm.
//! - [`publisher`]: broker link, topology, messages and confirmed delivery.
//! - [`metrics`]: every Prometheus metric.
//! - [`http`]: listeners, routes, ingress and probes (the only hyper user).
//! - [`startup`]: `App::build` and `App::run_until_stopped`, shared by main and tests.
//! - [`tls`]: optional TLS on the ingress, certificate reloaded on SIGHUP.
//! - [`cli`]: the operator subcommands (`send`, `tail`, `topology`, `spool`, `probe`).
//! - [`shutdown`]: the stop signal; [`telemetry`]: the log subscriber.

pub mod auth;
pub mod cli;
pub mod config;
pub mod durability;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod publisher;
pub mod reload;
pub mod routes;
pub mod shutdown;
pub mod spool;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod visit;
