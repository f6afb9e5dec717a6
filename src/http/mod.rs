//! HTTP front end: one accept loop (hyper 1 over hyper-util's tokio glue),
//! used by both listeners, and the route tables.
//!
//! Each connection is watched for graceful shutdown: on stop the loop stops
//! accepting, in-flight requests finish, idle keep-alive connections close,
//! and whatever is still open after the drain deadline is dropped.
//! Only this module uses hyper.

pub mod ingress;
pub mod probes;
pub mod response;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::startup::AppState;

/// Response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// How long a client may take to send its request head (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections per listener, at most; further clients wait in the backlog.
const MAX_CONNECTIONS: usize = 4096;

/// Which route table a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `POST /webhooks/finish-visit`.
    Ingress,
    /// `/metrics`, `/healthz`, `/readyz`.
    Admin,
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync,
>;

fn router(kind: Listener, state: AppState) -> Handler {
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
        (&Method::POST, ingress::PATH) => ingress::accept(req, state).await,
        (_, ingress::PATH) => ingress::method_not_allowed(&req, state),
        _ => ingress::not_found(&req, state),
    }
}

fn route_admin(req: &Request<Incoming>, state: &AppState) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => probes::metrics(state),
        (&Method::GET, "/healthz") => probes::live(),
        (&Method::GET, "/readyz") => probes::ready(state),
        (_, "/metrics" | "/healthz" | "/readyz") => response::method_not_allowed("GET"),
        _ => response::error(hyper::StatusCode::NOT_FOUND, "not_found", None),
    }
}

/// Serves `listener` until `stop` is cancelled, then drains connections for
/// at most `drain_deadline`.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    state: AppState,
    stop: CancellationToken,
    drain_deadline: Duration,
) {
    let handler = router(kind, state);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE or a reset before accept; keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                log_connection_error(peer, &error);
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?kind,
            "connections still open after the drain deadline; closing them"
        );
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    if error.is_timeout() {
        tracing::info!(%peer, "connection closed: the client was too slow sending its request");
    } else {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
