//! HTTP front end (hyper 1 over hyper-util's tokio glue): both listeners,
//! their routes, the ingress and the probes.
//!
//! - `server`: the accept loop and graceful drain, shared by both listeners.
//! - `connection`: one connection: first byte, slot, TLS, HTTP/1.1.
//! - `router`: the route tables.
//! - `ingress`: `POST /webhooks/finish-visit`; `error`: its refusals as responses.
//! - `probes`: `/metrics`, `/healthz`, `/readyz`.
//! - `response`: JSON bodies, built alike; `state`: what handlers share.
//!
//! The relay's server side of hyper lives here; `cli send` uses hyper's
//! client to post to it.

mod connection;
mod error;
mod ingress;
mod probes;
mod response;
mod router;
mod server;
mod state;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

pub use error::IngressError;
pub use router::Listener;
pub use server::serve;
pub use state::AppState;

/// Response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;
