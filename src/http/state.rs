//! What every request handler shares: one `Clone` struct of handles.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::config::HttpSettings;
use crate::durability::Sink;
use crate::keys::LiveKeys;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::tls::LiveTls;

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Configured API keys (swapped on rotation).
    pub keys: LiveKeys,
    /// Every metric of the relay.
    pub metrics: Metrics,
    /// Where accepted requests are made durable.
    pub sink: Sink,
    /// Broker publisher (its link and delivery times, for readiness).
    pub publisher: Arc<Publisher>,
    /// Listeners, body limit, connection limits and timeouts.
    pub http: Arc<HttpSettings>,
    /// TLS on the ingress, when configured.
    pub tls: Option<LiveTls>,
    /// `READINESS_STALL_TIMEOUT`, when set.
    pub readiness_stall_timeout: Option<Duration>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// State for a relay that is not shutting down.
    pub fn new(
        keys: LiveKeys,
        metrics: Metrics,
        sink: Sink,
        publisher: Arc<Publisher>,
        http: HttpSettings,
        tls: Option<LiveTls>,
        readiness_stall_timeout: Option<Duration>,
    ) -> Self {
        Self {
            keys,
            metrics,
            sink,
            publisher,
            http: Arc::new(http),
            tls,
            readiness_stall_timeout,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True once shutdown began: readiness fails and new requests get 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks the start of shutdown (see [`AppState::is_shutting_down`]).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}
