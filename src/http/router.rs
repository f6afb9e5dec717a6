//! The two route tables, as plain matches on method and path: the ingress
//! listener's and the admin listener's.

use std::{future::Future, pin::Pin, sync::Arc};

use hyper::{Method, Request, StatusCode, body::Incoming};

use super::{AppState, HttpResponse, ingress, probes, response};
use crate::routes::{FINISH_VISIT, HEALTHZ, METRICS, READYZ};

/// Which route table a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `POST /webhooks/finish-visit`.
    Ingress,
    /// `/metrics`, `/healthz`, `/readyz`.
    Admin,
}

/// A listener's request handler, shared by all its connections.
pub(super) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync,
>;

pub(super) fn router(kind: Listener, state: AppState) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        let state = state.clone();
        Box::pin(async move {
            match kind {
                Listener::Ingress => route_ingress(req, &state).await,
                Listener::Admin => route_admin(&req, &state),
            }
        })
    })
}

async fn route_ingress(req: Request<Incoming>, state: &AppState) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::POST, FINISH_VISIT) => ingress::accept(req, state).await,
        (_, FINISH_VISIT) => ingress::method_not_allowed(&req, state),
        _ => ingress::not_found(&req, state),
    }
}

fn route_admin(req: &Request<Incoming>, state: &AppState) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, METRICS) => probes::metrics(state),
        (&Method::GET, HEALTHZ) => probes::live(),
        (&Method::GET, READYZ) => probes::ready(state),
        (_, METRICS | HEALTHZ | READYZ) => response::method_not_allowed("GET"),
        _ => response::error(StatusCode::NOT_FOUND, "not_found", None),
    }
}
