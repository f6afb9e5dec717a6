//! kobra-relay: receives Kobra "Finish Visit" webhooks, makes them durable and
//! relays them to RabbitMQ.
//!
//! - [`config`]: typed settings from defaults, a TOML file and `KOBRA_RELAY_*`.
//! - [`auth`]: labelled API keys, constant-time comparison.
//! - [`visit`]: the visit model and pure rules (classification, products, normalization).
//! - [`spool`]: the durable local queue between the 202 and the broker's confirm.

pub mod auth;
pub mod config;
pub mod spool;
pub mod visit;
