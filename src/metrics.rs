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
use crate::spool::SpoolStats;
use crate::visit::{Product, RejectionReason, normalize::WARNING_FIELDS};

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

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("kobra_relay")
        .buckets(buckets.to_vec())
}

impl Metrics {
    /// Creates and registers every metric (and the process collector).
    ///
    /// # Panics
    /// Only if two metrics were given the same name, a programming error
    /// caught by every test run.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            http_requests: IntCounterVec::new(
                opts("http_requests_total", "Ingress requests by route and status code."),
                &["route", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                histogram_opts(
                    "http_request_duration_seconds",
                    "Time from request head to response (the ack latency for 202s).",
                    &LATENCY_BUCKETS,
                ),
                &["route"],
            )
            .expect("valid metric"),
            auth_failures: IntCounterVec::new(
                opts("auth_failures_total", "Requests refused for a missing or unknown api-key."),
                &["reason"],
            )
            .expect("valid metric"),
            visits_received: IntCounterVec::new(
                opts("visits_received_total", "Visits accepted (202) by product."),
                &["product"],
            )
            .expect("valid metric"),
            accepted: IntCounterVec::new(
                opts(
                    "accepted_total",
                    "Visits answered 202, by where they were durable at that moment (broker: confirmed; spool: fsynced locally).",
                ),
                &["durable_in"],
            )
            .expect("valid metric"),
            messages_published: IntCounterVec::new(
                opts("messages_published_total", "Messages confirmed by the broker."),
                &["exchange", "product"],
            )
            .expect("valid metric"),
            publish_failures: IntCounterVec::new(
                opts("publish_failures_total", "Publishes that were not confirmed, by reason (retried)."),
                &["reason"],
            )
            .expect("valid metric"),
            publish_confirm: Histogram::with_opts(histogram_opts(
                "publish_confirm_seconds",
                "Time from publishing a visit's messages to the broker's confirms.",
                &LATENCY_BUCKETS,
            ))
            .expect("valid metric"),
            end_to_end: Histogram::with_opts(histogram_opts(
                "end_to_end_seconds",
                "Time from receipt to both messages confirmed.",
                &END_TO_END_BUCKETS,
            ))
            .expect("valid metric"),
            spool_entries: IntGauge::with_opts(opts("spool_entries", "Entries waiting in the spool."))
                .expect("valid metric"),
            spool_bytes: IntGauge::with_opts(opts("spool_bytes", "Bytes of entries waiting in the spool."))
                .expect("valid metric"),
            spool_max_bytes: IntGauge::with_opts(opts(
                "spool_max_bytes",
                "SPOOL_MAX_BYTES: the spool refuses requests (503) beyond it; 0 in confirm mode.",
            ))
            .expect("valid metric"),
            spool_oldest_age: Gauge::with_opts(opts(
                "spool_oldest_age_seconds",
                "Age of the oldest entry waiting in the spool (0 when empty).",
            ))
            .expect("valid metric"),
            broker_connected: IntGauge::with_opts(opts(
                "broker_connected",
                "1 while a broker connection with a confirm channel is up.",
            ))
            .expect("valid metric"),
            broker_reconnects: IntCounter::with_opts(opts(
                "broker_reconnects_total",
                "Broker connections re-established after a loss.",
            ))
            .expect("valid metric"),
            rejected: IntCounterVec::new(
                opts("rejected_total", "Authenticated bodies that were not a JSON object."),
                &["reason"],
            )
            .expect("valid metric"),
            normalization_warnings: IntCounterVec::new(
                opts("normalization_warnings_total", "Fields that could not be read as documented."),
                &["field"],
            )
            .expect("valid metric"),
            duplicates_redelivered: IntCounter::with_opts(opts(
                "redeliveries_total",
                "Spool entries published again after a restart or a lost confirm (possible duplicates).",
            ))
            .expect("valid metric"),
            archive_appended: IntCounter::with_opts(opts(
                "archive_appended_total",
                "Raw visits the broker confirmed with ARCHIVE on (each one is appended to the archive stream).",
            ))
            .expect("valid metric"),
            open_connections: IntGauge::with_opts(opts(
                "http_open_connections",
                "Open ingress connections that have sent a request.",
            ))
            .expect("valid metric"),
            registry,
        };
        m.register_all();
        m.start_at_zero();
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.auth_failures.clone()),
            Box::new(self.visits_received.clone()),
            Box::new(self.accepted.clone()),
            Box::new(self.messages_published.clone()),
            Box::new(self.publish_failures.clone()),
            Box::new(self.publish_confirm.clone()),
            Box::new(self.end_to_end.clone()),
            Box::new(self.spool_entries.clone()),
            Box::new(self.spool_bytes.clone()),
            Box::new(self.spool_oldest_age.clone()),
            Box::new(self.spool_max_bytes.clone()),
            Box::new(self.broker_connected.clone()),
            Box::new(self.broker_reconnects.clone()),
            Box::new(self.rejected.clone()),
            Box::new(self.normalization_warnings.clone()),
            Box::new(self.duplicates_redelivered.clone()),
            Box::new(self.archive_appended.clone()),
            Box::new(self.open_connections.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
        let build_info = IntGaugeVec::new(
            opts(
                "build_info",
                "Always 1; the version label tells which build runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        self.registry
            .register(Box::new(build_info))
            .expect("metric names are unique");
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

    /// Mirrors the spool's occupancy into the gauges.
    pub fn observe_spool(&self, stats: SpoolStats, now: jiff::Timestamp) {
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
