//! The accept loop, shared by both listeners: accept as fast as clients
//! come, hand each connection to [`super::connection`], and on stop drain
//! the open ones within a deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hyper::server::conn::http1;
use hyper_util::{rt::TokioTimer, server::graceful::GracefulShutdown};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::router::{Listener, router};
use super::state::AppState;

/// Serves `listener` until `stop` is cancelled, then drains connections for
/// at most `drain_deadline`: in-flight requests finish, idle keep-alive
/// connections close, and whatever is still open after it is dropped.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    state: AppState,
    stop: CancellationToken,
    drain_deadline: Duration,
) {
    let http = state.http.clone();
    let tls = match kind {
        Listener::Ingress => state.tls.clone(),
        Listener::Admin => None,
    };
    let metrics = state.metrics.clone();
    let handler = router(kind, state);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .max_buf_size(http.max_header_bytes)
        .keep_alive(true);
    // Connections are accepted as fast as they come, so the kernel's backlog
    // never fills. A connection must send its first byte before it takes one
    // of `max_connections` slots; while many sockets are waiting silently,
    // a new one gets only a short grace to do so (see `connection`).
    let permits = Arc::new(Semaphore::new(http.max_connections));
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
        let under_pressure = silent > http.max_connections || permits.available_permits() == 0;
        let connection = Connection {
            kind,
            peer,
            http: http.clone(),
            tls: tls.clone(),
            metrics: metrics.clone(),
            permits: permits.clone(),
            waiting: waiting.clone(),
            under_pressure,
        };
        let (handler, builder, watcher) = (handler.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(connection.serve(stream, handler, builder, watcher));
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
