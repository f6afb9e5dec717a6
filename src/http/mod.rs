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

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

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

/// Connection limits (CONTRACT-silent, documented in docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest wait for a request head: slow senders (slowloris) and idle
    /// keep-alive connections are closed after it.
    pub header_read_timeout: Duration,
    /// Longest wait for a whole body once its head is in (408 after it).
    pub body_read_timeout: Duration,
    /// Open connections per listener; further clients wait in the backlog.
    pub max_connections: usize,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
}

/// Under pressure (more silent sockets than connection slots, or no slot
/// left), a new connection that has not sent a byte within this time is
/// closed, so idle sockets cannot crowd out clients with requests.
const FIRST_BYTE_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_millis(100);

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
    let limits = state.limits;
    let metrics = state.metrics.clone();
    let tls = match kind {
        Listener::Ingress => state.tls.clone(),
        Listener::Admin => None,
    };
    let handler = router(kind, state);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    // Connections are accepted as fast as they come, so the kernel's backlog
    // never fills. A connection must send its first byte before it takes one
    // of `max_connections` slots; while many sockets are waiting silently,
    // a new one gets only a short grace to do so.
    let waiting = Arc::new(AtomicUsize::new(0));
    loop {
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
        let silent = waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let under_pressure = silent > limits.max_connections || permits.available_permits() == 0;
        let (handler, builder, watcher) = (handler.clone(), builder.clone(), graceful.watcher());
        let (permits, waiting, metrics, tls) = (
            permits.clone(),
            waiting.clone(),
            metrics.clone(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let first_byte = if under_pressure {
                FIRST_BYTE_TIMEOUT_UNDER_PRESSURE
            } else {
                limits.header_read_timeout
            };
            // peek, not readable(): readiness can be reported before any byte.
            let mut probe = [0u8; 1];
            let spoke = matches!(
                tokio::time::timeout(first_byte, stream.peek(&mut probe)).await,
                Ok(Ok(1..))
            );
            waiting.fetch_sub(1, Ordering::AcqRel);
            if !spoke {
                tracing::debug!(%peer, under_pressure, "closing a connection that sent nothing");
                return;
            }
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
            });
            metrics.connection_opened(kind == Listener::Ingress);
            let result = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(error) = result {
                log_connection_error(peer, &error);
            }
            metrics.connection_closed(kind == Listener::Ingress);
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
