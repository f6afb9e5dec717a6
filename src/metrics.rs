//! Every Prometheus metric of the relay, in one registry, with typed
//! record methods. Metric names are spelled out only here.
//!
//! Label values are bounded by construction (routes, status codes, product
//! slugs folded to `other`, reasons from enums); counters with known label
//! values are created at zero so dashboards and alerts see them from start.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

use crate::auth::AuthError;
use crate::spool::{SpoolStats, WriteFailureKind};
use crate::telemetry::SpanCounts;
use crate::visit::{Product, RejectionReason, WARNING_FIELDS};

/// The ingress route label.
pub const ROUTE_FINISH_VISIT: &str = crate::routes::FINISH_VISIT;
/// The label for any other path.
pub const ROUTE_OTHER: &str = "other";

/// Why a publish did not succeed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    /// The broker negatively acknowledged the message.
    Nack,
    /// The broker returned the message as unroutable.
    Returned,
    /// No confirm arrived within `PUBLISH_TIMEOUT`.
    Timeout,
    /// The connection or channel failed during the publish.
    Connection,
}

impl PublishFailure {
    const ALL: [PublishFailure; 4] = [Self::Nack, Self::Returned, Self::Timeout, Self::Connection];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nack => "nack",
            Self::Returned => "returned",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
        }
    }
}

/// Which exchange a message went to; the `exchange` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeLabel {
    /// `<prefix>.visits`
    Normalized,
    /// `<prefix>.visits.raw`
    Raw,
    /// `<prefix>.visits.rejected`
    Rejected,
}

impl ExchangeLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normalized => "normalized",
            Self::Raw => "raw",
            Self::Rejected => "rejected",
        }
    }
}

/// Where an accepted visit was durable when its 202 was sent; the
/// `durable_in` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableIn {
    /// Confirmed by the broker (on a majority, with quorum queues).
    Broker,
    /// Fsynced to the local spool only.
    Spool,
}

impl DurableIn {
    const ALL: [DurableIn; 2] = [Self::Broker, Self::Spool];

    /// The label value, also the `durableIn` of a `replicated` 202.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Spool => "spool",
        }
    }
}

/// All metrics of one relay.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_failures: IntCounterVec,
    visits_received: IntCounterVec,
    accepted: IntCounterVec,
    messages_published: IntCounterVec,
    publish_failures: IntCounterVec,
    publish_confirm: Histogram,
    end_to_end: Histogram,
    spool_entries: IntGauge,
    spool_bytes: IntGauge,
    spool_oldest_age: Gauge,
    spool_max_bytes: IntGauge,
    broker_connected: IntGauge,
    broker_reconnects: IntCounter,
    rejected: IntCounterVec,
    normalization_warnings: IntCounterVec,
    duplicates_redelivered: IntCounter,
    archive_appended: IntCounter,
    open_connections: IntGauge,
    spool_write_failures: IntCounterVec,
    spool_damaged_records: IntCounter,
    trace_context_invalid: IntCounter,
    trace_spans_exported: IntCounter,
    trace_spans_dropped: IntCounterVec,
}

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// End to end includes outages: up to an hour.
const END_TO_END_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 3600.0,
];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("kobra_relay")
}

/// Creates each metric and registers it in one step, so that a metric can
/// not be created and then forgotten.
struct Registrar<'r>(&'r Registry);

impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, metric: C) -> C {
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::with_opts(opts(name, help)).expect("valid metric"))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(opts(name, help), labels).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::with_opts(opts(name, help)).expect("valid metric"))
    }

    fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::with_opts(opts(name, help)).expect("valid metric"))
    }

    fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
        HistogramOpts::new(name, help)
            .namespace("kobra_relay")
            .buckets(buckets.to_vec())
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = Self::histogram_opts(name, help, buckets);
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }

    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        let opts = Self::histogram_opts(name, help, buckets);
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

impl Metrics {
    /// Creates and registers every metric (and the process collector).
    /// Long because it is a table: one entry per metric, with its name, help
    /// and labels, the only place they are written out.
    ///
    /// # Panics
    /// Only if two metrics were given the same name, a programming error
    /// caught by every test run.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let m = Self {
            http_requests: r.counters(
                "http_requests_total",
                "Ingress requests by route and status code.",
                &["route", "status"],
            ),
            http_duration: r.histograms(
                "http_request_duration_seconds",
                "Time from request head to response (the ack latency for 202s).",
                &LATENCY_BUCKETS,
                &["route"],
            ),
            auth_failures: r.counters(
                "auth_failures_total",
                "Requests refused for a missing or unknown api-key.",
                &["reason"],
            ),
            visits_received: r.counters(
                "visits_received_total",
                "Visits accepted (202) by product.",
                &["product"],
            ),
            accepted: r.counters(
                "accepted_total",
                "Visits answered 202, by where they were durable at that moment (broker: confirmed; spool: fsynced locally).",
                &["durable_in"],
            ),
            messages_published: r.counters(
                "messages_published_total",
                "Messages confirmed by the broker.",
                &["exchange", "product"],
            ),
            publish_failures: r.counters(
                "publish_failures_total",
                "Publishes that were not confirmed, by reason (retried).",
                &["reason"],
            ),
            publish_confirm: r.histogram(
                "publish_confirm_seconds",
                "Time from publishing a visit's messages to the broker's confirms.",
                &LATENCY_BUCKETS,
            ),
            end_to_end: r.histogram(
                "end_to_end_seconds",
                "Time from receipt to both messages confirmed.",
                &END_TO_END_BUCKETS,
            ),
            spool_entries: r.gauge("spool_entries", "Entries waiting in the spool."),
            spool_bytes: r.gauge("spool_bytes", "Bytes of entries waiting in the spool."),
            spool_max_bytes: r.gauge(
                "spool_max_bytes",
                "SPOOL_MAX_BYTES: the spool refuses requests (503) beyond it; 0 in confirm mode.",
            ),
            spool_oldest_age: r.float_gauge(
                "spool_oldest_age_seconds",
                "Age of the oldest entry waiting in the spool (0 when empty).",
            ),
            broker_connected: r.gauge(
                "broker_connected",
                "1 while a broker connection with a confirm channel is up.",
            ),
            broker_reconnects: r.counter(
                "broker_reconnects_total",
                "Broker connections re-established after a loss.",
            ),
            rejected: r.counters(
                "rejected_total",
                "Authenticated bodies that were not a JSON object.",
                &["reason"],
            ),
            normalization_warnings: r.counters(
                "normalization_warnings_total",
                "Fields that could not be read as documented.",
                &["field"],
            ),
            duplicates_redelivered: r.counter(
                "redeliveries_total",
                "Spool entries published again after a restart or a lost confirm (possible duplicates).",
            ),
            archive_appended: r.counter(
                "archive_appended_total",
                "Raw visits the broker confirmed with ARCHIVE on (each one is appended to the archive stream).",
            ),
            open_connections: r.gauge(
                "http_open_connections",
                "Open ingress connections that have sent a request.",
            ),
            spool_write_failures: r.counters(
                "spool_write_failures_total",
                "Spool writes that failed, by kind (no_space, read_only, io); /readyz fails until one succeeds.",
                &["kind"],
            ),
            spool_damaged_records: r.counter(
                "spool_damaged_records_total",
                "Accepted visits found unreadable in the spool at start (damaged, not a torn write); their bytes are in SPOOL_DIR/quarantine.",
            ),
            trace_context_invalid: r.counter(
                "trace_context_invalid_total",
                "Requests whose traceparent was malformed; it was ignored and the visit started a new trace.",
            ),
            trace_spans_exported: r.counter(
                "trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
            ),
            trace_spans_dropped: r.counters(
                "trace_spans_dropped_total",
                "Spans not exported, by reason: queue_full (OTEL_BSP_MAX_QUEUE_SIZE reached) or export_failed (the collector refused or was unreachable).",
                &["reason"],
            ),
            registry: registry.clone(),
        };
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        let build_info = r.add(
            IntGaugeVec::new(
                opts(
                    "build_info",
                    "Always 1; the version label tells which build runs.",
                ),
                &["version"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.start_at_zero();
        m
    }

    fn start_at_zero(&self) {
        for status in ["202", "400", "401", "405", "413", "415", "503"] {
            self.http_requests
                .with_label_values(&[ROUTE_FINISH_VISIT, status]);
        }
        self.http_requests.with_label_values(&[ROUTE_OTHER, "404"]);
        for route in [ROUTE_FINISH_VISIT, ROUTE_OTHER] {
            self.http_duration.with_label_values(&[route]);
        }
        for reason in AuthError::ALL {
            self.auth_failures.with_label_values(&[reason.as_str()]);
        }
        for product in Product::METRIC_LABELS {
            self.visits_received.with_label_values(&[product]);
            for exchange in [ExchangeLabel::Normalized, ExchangeLabel::Raw] {
                self.messages_published
                    .with_label_values(&[exchange.as_str(), product]);
            }
        }
        self.messages_published
            .with_label_values(&[ExchangeLabel::Rejected.as_str(), "unknown"]);
        for durable_in in DurableIn::ALL {
            self.accepted.with_label_values(&[durable_in.as_str()]);
        }
        for reason in PublishFailure::ALL {
            self.publish_failures.with_label_values(&[reason.as_str()]);
        }
        for reason in RejectionReason::ALL {
            self.rejected.with_label_values(&[reason.as_str()]);
        }
        for field in WARNING_FIELDS {
            self.normalization_warnings.with_label_values(&[field]);
        }
        for kind in WriteFailureKind::ALL {
            self.spool_write_failures
                .with_label_values(&[kind.as_str()]);
        }
        self.observe_spans(SpanCounts::default());
    }

    /// A malformed `traceparent`, ignored.
    pub fn trace_context_invalid(&self) {
        self.trace_context_invalid.inc();
    }

    /// Mirrors the exporter's span counts (the counters catch up at each scrape).
    pub fn observe_spans(&self, counts: SpanCounts) {
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.trace_spans_exported, counts.exported);
        let dropped = |reason| self.trace_spans_dropped.with_label_values(&[reason]);
        catch_up(&dropped("queue_full"), counts.dropped_queue_full);
        catch_up(&dropped("export_failed"), counts.dropped_export_failed);
    }

    /// One ingress response.
    pub fn http_response(&self, route: &'static str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[route, &status])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// An ingress connection started being served (admin ones are not counted).
    pub fn connection_opened(&self, ingress: bool) {
        if ingress {
            self.open_connections.inc();
        }
    }

    /// An ingress connection ended.
    pub fn connection_closed(&self, ingress: bool) {
        if ingress {
            self.open_connections.dec();
        }
    }

    /// A refused api-key.
    pub fn auth_failure(&self, reason: AuthError) {
        self.auth_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// An accepted visit.
    pub fn visit_received(&self, product: Product) {
        self.visits_received
            .with_label_values(&[product.metric_label()])
            .inc();
    }

    /// A 202, by where the visit was durable when it was sent.
    pub fn accepted(&self, durable_in: DurableIn) {
        self.accepted
            .with_label_values(&[durable_in.as_str()])
            .inc();
    }

    /// An accepted body that was not a JSON object.
    pub fn rejected(&self, reason: RejectionReason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// A confirmed message.
    pub fn published(&self, exchange: ExchangeLabel, product: Product) {
        self.messages_published
            .with_label_values(&[exchange.as_str(), product.metric_label()])
            .inc();
    }

    /// A publish that will be retried.
    pub fn publish_failed(&self, reason: PublishFailure) {
        self.publish_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Time from publish to confirms.
    pub fn confirm_latency(&self, elapsed: Duration) {
        self.publish_confirm.observe(elapsed.as_secs_f64());
    }

    /// Time from receipt to both confirms.
    pub fn end_to_end(&self, elapsed: Duration) {
        self.end_to_end.observe(elapsed.as_secs_f64());
    }

    /// A field that could not be read, by its bounded label.
    pub fn normalization_warning(&self, field: &'static str) {
        self.normalization_warnings
            .with_label_values(&[field])
            .inc();
    }

    /// Broker connection state.
    pub fn broker_connected(&self, connected: bool) {
        self.broker_connected.set(i64::from(connected));
    }

    /// A connection re-established after a loss.
    pub fn broker_reconnected(&self) {
        self.broker_reconnects.inc();
    }

    /// Entries published again after a restart.
    pub fn redelivered(&self, count: u64) {
        self.duplicates_redelivered.inc_by(count);
    }

    /// A raw visit confirmed into a topology with the archive stream.
    pub fn archive_appended(&self) {
        self.archive_appended.inc();
    }

    /// The spool's configured capacity.
    pub fn spool_capacity(&self, max_bytes: u64) {
        self.spool_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
    }

    /// Damaged acknowledged records that recovery found (and quarantined).
    pub fn spool_damaged(&self, records: u64) {
        self.spool_damaged_records.inc_by(records);
    }

    /// Mirrors the spool's occupancy into the gauges, and its count of
    /// failed writes into `spool_write_failures_total` (the spool counts;
    /// the counter catches up at each scrape).
    pub fn observe_spool(&self, stats: SpoolStats, now: jiff::Timestamp) {
        for (kind, total) in WriteFailureKind::ALL.iter().zip(stats.write_failures) {
            let counter = self
                .spool_write_failures
                .with_label_values(&[kind.as_str()]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.spool_entries
            .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
        self.spool_bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        self.spool_oldest_age
            .set(stats.oldest_age(now).as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_is_exported_from_the_start() {
        let text = Metrics::new().render();
        for name in [
            "http_requests_total",
            "http_request_duration_seconds",
            "auth_failures_total",
            "visits_received_total",
            "accepted_total",
            "messages_published_total",
            "publish_failures_total",
            "publish_confirm_seconds",
            "end_to_end_seconds",
            "spool_entries",
            "spool_bytes",
            "spool_oldest_age_seconds",
            "spool_max_bytes",
            "broker_connected",
            "broker_reconnects_total",
            "rejected_total",
            "normalization_warnings_total",
            "archive_appended_total",
            "build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE kobra_relay_{name} ")),
                "{name} missing"
            );
        }
        assert!(text.contains(r#"kobra_relay_auth_failures_total{reason="invalid"} 0"#));
        assert!(
            text.contains(
                r#"kobra_relay_messages_published_total{exchange="raw",product="other"} 0"#
            )
        );
        assert!(
            text.contains("process_resident_memory_bytes"),
            "process metrics"
        );
    }

    #[test]
    fn other_products_share_one_label() {
        let m = Metrics::new();
        m.visit_received(Product::Other(7));
        m.visit_received(Product::Other(8));
        assert!(
            m.render()
                .contains(r#"kobra_relay_visits_received_total{product="other"} 2"#)
        );
    }
}
