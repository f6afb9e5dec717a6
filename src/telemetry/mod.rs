//! Logs and traces: the tracing subscriber (JSON lines when deployed,
//! pretty output locally; `RUST_LOG` takes precedence over the default
//! filter) and, when an OTLP endpoint is set, span export.
//!
//! - `context`: W3C `traceparent`/`tracestate` in and out.
//! - `export`: the OTLP exporter behind a bounded queue, and its counts.
//! - `logs`: trace and span ids on JSON log lines.
//!
//! With export off (the default) no OpenTelemetry layer is installed, the
//! relay's extra spans are not created ([`is_exporting`]) and a caller's
//! `traceparent` is passed through to the messages unchanged.

mod context;
mod export;
mod logs;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::Targets,
    fmt::{self, format::JsonFields},
    prelude::*,
};

use crate::config::{LogFormat, TraceSettings};
pub use context::{Headers, Incoming, TRACEPARENT, TRACESTATE, extract, headers, remote};
pub use export::{SpanCounts, span_counts};

/// Default filter: our own events at info, the AMQP client's only when they matter.
pub const DEFAULT_FILTER: &str = "info,lapin=warn,amq_protocol=warn";

/// The instrumentation scope of the relay's spans.
const SCOPE: &str = "kobra-relay";
/// How long stopping waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported; the spans that exist only for traces are
/// created only then.
pub fn is_exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The installed subscriber; [`Telemetry::shutdown`] exports what is left.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (bounded by a short timeout, so a
    /// dead collector does not hold up the exit).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(%error, "could not export the last spans");
            }
        }
    }
}

/// Installs the log subscriber only (tests and tools without tracing). A
/// second call is a no-op.
pub fn init(format: LogFormat, default_filter: &str) {
    let _ = Registry::default()
        .with(log_layer(format, default_filter))
        .try_init();
}

/// Installs the log subscriber and, when `traces` has an endpoint, the
/// span exporter.
///
/// # Errors
/// The exporter could not be built.
pub fn start(
    format: LogFormat,
    default_filter: &str,
    traces: &TraceSettings,
) -> anyhow::Result<Telemetry> {
    install(Some(log_layer(format, default_filter)), traces)
}

/// The span exporter alone, for an operator tool that prints its own
/// output (`replay`): nothing is installed without an endpoint.
///
/// # Errors
/// The exporter could not be built.
pub fn start_spans_only(traces: &TraceSettings) -> anyhow::Result<Telemetry> {
    install(None, traces)
}

fn install(logs: Option<BoxedLayer>, traces: &TraceSettings) -> anyhow::Result<Telemetry> {
    let Some(endpoint) = &traces.endpoint else {
        if let Some(logs) = logs {
            let _ = Registry::default().with(logs).try_init();
        }
        return Ok(Telemetry { provider: None });
    };
    let provider = export::provider(traces, endpoint)?;
    // The relay's own spans, whatever RUST_LOG says about its logs; events
    // inside them (warnings, retries) become span events.
    let ours = Targets::new().with_target("kobra_relay", Level::INFO);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Parents are explicit (the request span, or the context from the
        // spool), so the OpenTelemetry context need not follow every poll.
        .with_context_activation(false)
        .with_filter(ours);
    let installed = Registry::default()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    EXPORTING.store(installed, Ordering::Relaxed);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn log_layer(format: LogFormat, default_filter: &str) -> BoxedLayer {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    match format {
        LogFormat::Json => {
            let json = fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(logs::WithTraceIds(json))
                .with_filter(filter)
                .boxed()
        }
        LogFormat::Pretty => fmt::layer().pretty().with_filter(filter).boxed(),
    }
}
