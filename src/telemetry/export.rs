//! Span export over OTLP/HTTP, bounded so that a slow or dead collector
//! costs the relay nothing but the spans it drops.
//!
//! The SDK's batch processor does the batching on its own thread; two thin
//! wrappers around it add what it keeps to itself: a count of spans that
//! are queued or being exported, checked before a span is handed over (so
//! a full queue drops, counted, instead of growing), and a count of spans
//! the collector did not take, with a warning at most once a minute.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter,
        SpanProcessor,
    },
};

use crate::config::{Root, Sampler, TraceSettings, mask_url};

/// Longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a failing collector is mentioned in the logs.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What happened to finished spans so far (since the process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped because the export queue was full.
    pub dropped_queue_full: u64,
    /// Lost because the collector refused them or could not be reached.
    pub dropped_export_failed: u64,
}

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// The counts, for the metrics.
pub fn span_counts() -> SpanCounts {
    SpanCounts {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
    }
}

/// Builds the tracer provider that exports to `settings.endpoint`.
///
/// # Errors
/// The OTLP exporter could not be built (its HTTP client).
pub fn provider(settings: &TraceSettings, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let in_queue = Arc::new(AtomicUsize::new(0));
    let batches = BatchSpanProcessor::builder(Reporting {
        inner: exporter,
        in_queue: in_queue.clone(),
        endpoint: mask_url(endpoint),
        last_warning: Mutex::new(None),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue)
            .build(),
    )
    .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batches,
            in_queue,
            capacity: settings.max_queue,
        })
        .with_sampler(sampler(settings.sampler))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

fn sampler(setting: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as Sdk;
    match setting {
        Sampler::AlwaysOn => Sdk::AlwaysOn,
        Sampler::AlwaysOff => Sdk::AlwaysOff,
        Sampler::Ratio(ratio) => Sdk::TraceIdRatioBased(ratio),
        Sampler::ParentBased(root) => Sdk::ParentBased(Box::new(match root {
            Root::AlwaysOn => Sdk::AlwaysOn,
            Root::AlwaysOff => Sdk::AlwaysOff,
            Root::Ratio(ratio) => Sdk::TraceIdRatioBased(ratio),
        })),
    }
}

/// Hands spans to the batch processor while fewer than `capacity` are
/// queued or being exported, and drops (and counts) the rest.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    in_queue: Arc<AtomicUsize>,
    capacity: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.in_queue.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_queue.fetch_sub(1, Ordering::AcqRel);
            DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what each batch came to and releasing its
/// spans from the queue count however the export ends.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    in_queue: Arc<AtomicUsize>,
    endpoint: String,
    last_warning: Mutex<Option<Instant>>,
}

/// Takes a batch's spans off the queue count when the export is over,
/// also when its future is dropped unfinished.
struct Release<'a> {
    in_queue: &'a AtomicUsize,
    spans: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.in_queue.fetch_sub(self.spans, Ordering::AcqRel);
    }
}

impl<E: SpanExporter> Reporting<E> {
    /// Whether a failure should be logged now (at most once per interval).
    fn warning_due(&self) -> bool {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|at| at.elapsed() >= WARN_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let _release = Release {
            in_queue: &self.in_queue,
            spans,
        };
        let result = self.inner.export(batch).await;
        let spans = spans as u64;
        match &result {
            Ok(()) => {
                EXPORTED.fetch_add(spans, Ordering::Relaxed);
            }
            Err(error) => {
                DROPPED_EXPORT_FAILED.fetch_add(spans, Ordering::Relaxed);
                if self.warning_due() {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        lost_spans = DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
                        "the trace collector did not take spans (OTEL_EXPORTER_OTLP_ENDPOINT); visits are unaffected, said at most once a minute"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
