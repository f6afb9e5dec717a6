//! The tracing subscriber: JSON lines when deployed, pretty output locally.
//! `RUST_LOG` takes precedence over the default filter.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Default filter: our own events at info, the AMQP client's only when they matter.
pub const DEFAULT_FILTER: &str = "info,lapin=warn,amq_protocol=warn";

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().pretty()).try_init(),
    };
}
