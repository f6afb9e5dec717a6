//! kobra-relay: receives Kobra "Finish Visit" webhooks, makes them durable and
//! relays them to RabbitMQ.
//!
//! The map, from the ground floor up; a module imports only modules listed
//! above it.
//!
//! - [`visit`]: the visit model and pure rules (classification, products, normalization); no I/O.
//! - [`routes`]: the HTTP paths, named once.
//! - [`shutdown`]: the stop signal (SIGTERM, Ctrl-C).
//! - [`reload`]: when to re-read files: SIGHUP and file changes.
//! - [`auth`]: labelled API keys, compared in constant time.
//! - [`keys`]: reading `API_KEYS` and `API_KEYS_FILE`, and swapping the live set.
//! - [`tls`]: optional TLS on the ingress, its PEM files read and reloaded.
//! - [`config`]: the settings tree from defaults, a TOML file and `KOBRA_RELAY_*`.
//! - [`telemetry`]: logs and traces: the subscriber, W3C trace context, OTLP span export.
//! - [`spool`]: the durable local queue between the 202 and the broker's confirm; the only writer to disk.
//! - [`metrics`]: every Prometheus metric.
//! - [`publisher`]: AMQP (lapin): connections, topology, messages, confirmed delivery, producer spans, the archive;
//!   `config` also checks AMQP URLs with lapin's parser.
//! - [`durability`]: making a request durable as `DURABILITY` says, without HTTP.
//! - [`http`]: the hyper server: listeners, routes, ingress, probes.
//! - [`startup`]: `App::build` and `App::run_until_stopped`, shared by main and tests.
//! - [`cli`]: the operator subcommands (`send`, `tail`, `topology`, `replay`, `spool`, `probe`);
//!   `send` uses hyper's client, `tail` and `replay` consume with lapin.
//!
//! Files are read by `config` (the TOML file, the CA file), `keys` and
//! `tls`; only `spool` writes.

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
