//! One accepted connection: wait for its first byte, take a connection
//! slot, do the TLS handshake when the listener has TLS, then serve HTTP/1.1
//! on it under the listener's graceful-shutdown watch.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{rt::TokioIo, server::graceful::Watcher};
use tokio::{net::TcpStream, sync::Semaphore};

use super::router::{Handler, Listener};
use crate::config::HttpSettings;
use crate::metrics::Metrics;
use crate::tls::LiveTls;

/// Under pressure (more silent sockets than connection slots, or no slot
/// left), a new connection that has not sent a byte within this time is
/// closed, so idle sockets cannot crowd out clients with requests.
const FIRST_BYTE_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_millis(100);

/// What serving one connection needs from its listener.
pub(super) struct Connection {
    pub(super) kind: Listener,
    pub(super) peer: SocketAddr,
    pub(super) http: Arc<HttpSettings>,
    pub(super) tls: Option<LiveTls>,
    pub(super) metrics: Metrics,
    /// `MAX_CONNECTIONS` slots of this listener.
    pub(super) permits: Arc<Semaphore>,
    /// Connections accepted that have not sent their first byte yet; this
    /// one is counted in it from its accept.
    pub(super) waiting: Arc<AtomicUsize>,
    /// Whether, at accept, silent sockets outnumbered the slots or no slot
    /// was free.
    pub(super) under_pressure: bool,
}

impl Connection {
    /// Serves the connection to its end.
    pub(super) async fn serve(
        self,
        stream: TcpStream,
        handler: Handler,
        builder: http1::Builder,
        watcher: Watcher,
    ) {
        if !self.spoke(&stream).await {
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
        });
        let ingress = self.kind == Listener::Ingress;
        self.metrics.connection_opened(ingress);
        let result = match &self.tls {
            None => {
                watcher
                    .watch(builder.serve_connection(TokioIo::new(stream), service))
                    .await
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(self.http.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                        Ok(())
                    }
                }
            }
        };
        if let Err(error) = result {
            log_connection_error(self.peer, &error);
        }
        self.metrics.connection_closed(ingress);
    }

    /// Waits for the first byte; under pressure only for a short grace.
    async fn spoke(&self, stream: &TcpStream) -> bool {
        let under_pressure = self.under_pressure;
        let first_byte = if under_pressure {
            FIRST_BYTE_TIMEOUT_UNDER_PRESSURE
        } else {
            self.http.header_read_timeout
        };
        // peek, not readable(): readiness can be reported before any byte.
        let mut probe = [0u8; 1];
        let spoke = matches!(
            tokio::time::timeout(first_byte, stream.peek(&mut probe)).await,
            Ok(Ok(1..))
        );
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        if !spoke {
            tracing::debug!(peer = %self.peer, under_pressure, "closing a connection that sent nothing");
        }
        spoke
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    if error.is_timeout() {
        tracing::info!(%peer, "connection closed: the client was too slow sending its request");
    } else {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
