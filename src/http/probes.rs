//! Admin endpoints: `/metrics`, `/healthz`, `/readyz`.

use hyper::StatusCode;
use serde::Serialize;

use super::{AppState, HttpResponse, response};

/// `GET /healthz`: 200 while the process serves.
pub fn live() -> HttpResponse {
    response::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Readiness {
    ready: bool,
    shutting_down: bool,
    broker: Broker,
    spool: SpoolReport,
}

#[derive(Serialize)]
struct Broker {
    connected: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpoolReport {
    entries: u64,
    bytes: u64,
    oldest_age_seconds: u64,
    /// Only while the last write failed: `kind: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    write_error: Option<String>,
}

/// `GET /readyz`: 200 while requests can be made durable.
///
/// In `spool` and `replicated` mode a broker outage alone does not make the
/// relay unready (the spool absorbs it); a full spool, a spool whose last
/// write failed (until one succeeds; `spool.writeError` says why) or
/// shutdown does, and,
/// when `READINESS_STALL_TIMEOUT` is set, a spool that stopped draining:
/// visits waiting that long while none was delivered for as long, so a load
/// balancer prefers relays that reach the broker. In `confirm` mode
/// readiness follows the broker connection.
pub fn ready(state: &AppState) -> HttpResponse {
    let connected = state.publisher.link().is_connected();
    let shutting_down = state.is_shutting_down();
    let (spool, spool_ok) = match state.sink.spool() {
        Some(spool) => {
            let stats = spool.stats();
            let report = SpoolReport {
                entries: stats.entries,
                bytes: stats.bytes,
                oldest_age_seconds: stats.oldest_age(jiff::Timestamp::now()).as_secs(),
                write_error: spool
                    .write_failure()
                    .map(|f| format!("{}: {}", f.kind.as_str(), f.message)),
            };
            let stalled = state.readiness_stall_timeout.is_some_and(|limit| {
                stats.oldest_age(jiff::Timestamp::now()) >= limit
                    && state.publisher.since_last_delivery() >= limit
            });
            (report, !stats.full && !stalled && !stats.unwritable)
        }
        None => (
            SpoolReport {
                entries: 0,
                bytes: 0,
                oldest_age_seconds: 0,
                write_error: None,
            },
            connected,
        ),
    };
    let ready = !shutting_down && spool_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(
        status,
        &Readiness {
            ready,
            shutting_down,
            broker: Broker { connected },
            spool,
        },
    )
}

/// `GET /metrics`: the Prometheus text exposition.
pub fn metrics(state: &AppState) -> HttpResponse {
    if let Some(spool) = state.sink.spool() {
        state
            .metrics
            .observe_spool(spool.stats(), jiff::Timestamp::now());
    }
    state.metrics.observe_spans(crate::telemetry::span_counts());
    response::text(
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(),
    )
}
