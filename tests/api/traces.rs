//! One trace from Kobra's request to the consumer: the relay binary with
//! span export pointed at a collector running in the test, a real broker,
//! and consumers reading `traceparent` from both messages — also after a
//! restart with the visit still in the spool, and after a replay.

use std::time::Duration;

use serde_json::Value;

use crate::cli::run;
use crate::helpers::{
    ARRIVAL_TIMEOUT, Cleanup, FIXTURE, KEY, Received, random_prefix, spawn_app, take, wait_until,
};
use crate::process::{RelayProcess, start_relay_with};
use crate::support::otlp::{Collector, ReceivedSpan};

/// The caller's trace and span (Kobra's side of the request).
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "kobra=visit-42";

/// OTLP span kinds.
const SERVER: i32 = 2;
const PRODUCER: i32 = 4;

/// Settings that export to `collector`, in batches sent every 100 ms.
fn exporting(collector: &Collector) -> Vec<(&str, &str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "relay-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// A relay process on a fresh prefix, connected, exporting to a collector
/// of its own.
struct Traced {
    collector: Collector,
    relay: RelayProcess,
    prefix: String,
    _cleanup: Cleanup,
    _spool: tempfile::TempDir,
}

impl Traced {
    async fn start() -> Self {
        let collector = Collector::start().await;
        let prefix = random_prefix();
        let cleanup = Cleanup::new(&prefix);
        let spool = tempfile::tempdir().expect("tempdir");
        let relay = start_relay_with(&prefix, spool.path(), None, &exporting(&collector)).await;
        relay.wait_connected().await;
        Self {
            collector,
            relay,
            prefix,
            _cleanup: cleanup,
            _spool: spool,
        }
    }
}

/// The relay's `/metrics` text.
async fn scrape(relay: &RelayProcess) -> String {
    reqwest::get(format!("{}/metrics", relay.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}

async fn post(base: &str, key: &str, trace: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/webhooks/finish-visit"))
        .header("api-key", key)
        .header("content-type", "application/json")
        .body(FIXTURE);
    if let Some((traceparent, tracestate)) = trace {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", tracestate);
    }
    request.send().await.expect("request sent")
}

/// `(trace id, parent span id, flags)` of a message's `traceparent`.
fn parent_of(message: &Received) -> (String, String, String) {
    let header = message
        .header_str("traceparent")
        .expect("traceparent header");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!(parts[0], "00", "{header}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "one {what} expected; spans: {spans:#?}");
    found[0]
}

fn producer_to<'a>(spans: &'a [ReceivedSpan], destination: &str) -> &'a ReceivedSpan {
    one(spans, destination, |s| {
        s.kind == PRODUCER && s.attr("messaging.destination.name") == Some(destination)
    })
}

async fn accepted_receipt(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("202 body");
    body["receiptId"].as_str().expect("receiptId").to_owned()
}

#[tokio::test]
async fn a_visit_is_one_trace_from_the_request_through_both_messages() {
    // Bound by name: the cleanup and the spool live as long as the test.
    let Traced {
        collector,
        relay,
        prefix,
        _cleanup,
        _spool,
    } = Traced::start().await;

    let receipt =
        accepted_receipt(post(&relay.base, KEY, Some((TRACEPARENT, TRACESTATE))).await).await;
    let raw = take(&format!("{prefix}.visits.raw.debt_collection"), 1)
        .await
        .remove(0);
    let normalized = take(&format!("{prefix}.visits.debt_collection"), 1)
        .await
        .remove(0);

    let spans = collector
        .wait_for("the request's four spans", |spans| {
            spans.iter().filter(|s| s.trace_id == TRACE).count() >= 4
        })
        .await;
    let server = one(&spans, "server span", |s| s.kind == SERVER);
    assert_eq!(server.name, "POST /webhooks/finish-visit");
    assert_eq!(server.service, "relay-under-test");
    assert_eq!(
        (server.trace_id.as_str(), server.parent_span_id.as_str()),
        (TRACE, CALLER_SPAN)
    );
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.route"), Some("/webhooks/finish-visit"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("kobra.receipt_id"), Some(receipt.as_str()));
    assert_eq!(server.attr("kobra.visit_id"), Some("9A1190V5974"));

    let durable = one(&spans, "durable write", |s| s.name == "durable write");
    assert_eq!(durable.parent_span_id, server.span_id);
    assert_eq!(durable.attr("durability"), Some("spool"));

    let route = "visit.finished.debt_collection";
    for (message, exchange) in [
        (&raw, format!("{prefix}.visits.raw")),
        (&normalized, format!("{prefix}.visits")),
    ] {
        let producer = producer_to(&spans, &format!("{exchange}:{route}"));
        assert_eq!(producer.trace_id, TRACE);
        assert_eq!(
            producer.parent_span_id, server.span_id,
            "a child of the request"
        );
        assert_eq!(producer.name, format!("publish {exchange}"));
        assert_eq!(producer.attr("messaging.system"), Some("rabbitmq"));
        assert_eq!(producer.attr("messaging.operation.type"), Some("publish"));
        assert_eq!(
            producer.attr("messaging.rabbitmq.destination.routing_key"),
            Some(route)
        );
        assert_eq!(
            producer.attr("messaging.message.id"),
            message.message_id().as_deref()
        );
        assert_eq!(producer.attr("kobra.receipt_id"), Some(receipt.as_str()));
        assert!(
            producer
                .events
                .iter()
                .any(|(name, a)| name == "confirmed" && a["outcome"] == "ack"),
            "{producer:#?}"
        );
        // The consumer continues from the publish's own span.
        assert_eq!(
            parent_of(message),
            (TRACE.into(), producer.span_id.clone(), "01".into())
        );
        assert_eq!(
            message.header_str("tracestate").as_deref(),
            Some(TRACESTATE)
        );
    }
    for span in &spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains(KEY),
                "the API key is never an attribute: {span:#?}"
            );
            assert!(!value.contains("9A1190V5974") || span.attr("kobra.visit_id").is_some());
        }
    }

    // A refused request is traced too, and its log line names the trace.
    let refused = post(
        &relay.base,
        "wrong-key",
        Some((
            "00-11111111111111111111111111111111-2222222222222222-01",
            "",
        )),
    )
    .await;
    assert_eq!(refused.status(), 401);
    let spans = collector
        .wait_for("the refused request's span", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == "11111111111111111111111111111111")
        })
        .await;
    let refused_span = one(&spans, "refused server span", |s| {
        s.trace_id == "11111111111111111111111111111111"
    });
    assert_eq!(refused_span.attr("http.response.status_code"), Some("401"));
    let logs = relay.logs();
    let line = logs
        .iter()
        .find(|l| l["message"] == "request with an unknown api-key")
        .unwrap_or_else(|| panic!("no refusal logged: {logs:#?}"));
    assert_eq!(line["trace_id"], "11111111111111111111111111111111");
    assert_eq!(line["span_id"], refused_span.span_id.as_str());
    relay.terminate().await;
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace_and_is_counted() {
    // Bound by name: the cleanup and the spool live as long as the test.
    let Traced {
        collector,
        relay,
        prefix,
        _cleanup,
        _spool,
    } = Traced::start().await;

    let receipt =
        accepted_receipt(post(&relay.base, KEY, Some(("00-not-a-trace-01", "a=b"))).await).await;
    let raw = take(&format!("{prefix}.visits.raw.debt_collection"), 1)
        .await
        .remove(0);
    let spans = collector
        .wait_for("the server span", |spans| {
            spans.iter().any(|s| s.kind == SERVER)
        })
        .await;
    let server = one(&spans, "server span", |s| s.kind == SERVER);
    assert_eq!(server.attr("kobra.receipt_id"), Some(receipt.as_str()));
    assert_eq!(
        server.parent_span_id, "",
        "a root span: the bad parent is ignored"
    );
    let (trace, _, _) = parent_of(&raw);
    assert_eq!(trace, server.trace_id, "the message joins the new trace");
    let metrics = scrape(&relay).await;
    assert!(
        metrics.contains("kobra_relay_trace_context_invalid_total 1"),
        "{metrics}"
    );
    relay.terminate().await;
}

#[tokio::test]
async fn without_export_the_callers_context_is_passed_through_unchanged() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/webhooks/finish-visit", app.base))
        .header("api-key", KEY)
        .header("traceparent", TRACEPARENT)
        .header("tracestate", TRACESTATE)
        .body(FIXTURE)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let untraced = app.post_visit(other_visit("9A1190V5975"), Some(KEY)).await;
    assert_eq!(untraced.status(), 202);
    let bad = app
        .http
        .post(format!("{}/webhooks/finish-visit", app.base))
        .header("api-key", KEY)
        .header("traceparent", "garbage")
        .body(FIXTURE)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        bad.status(),
        202,
        "a bad traceparent is never an error to Kobra"
    );

    for queue in ["raw.debt_collection", "debt_collection"] {
        let messages = take(&format!("{}.visits.{queue}", app.prefix), 3).await;
        let traced: Vec<_> = messages
            .iter()
            .filter_map(|m| m.header_str("traceparent"))
            .collect();
        assert_eq!(
            traced,
            [TRACEPARENT],
            "only the traced request names a parent"
        );
        let traced = messages
            .iter()
            .find(|m| m.header_str("traceparent").is_some())
            .expect("one");
        assert_eq!(traced.header_str("tracestate").as_deref(), Some(TRACESTATE));
    }
    assert!(
        app.metrics()
            .await
            .contains("kobra_relay_trace_context_invalid_total 1")
    );
}

/// The fixture as another visit (another body, another message id).
fn other_visit(visit_id: &str) -> String {
    String::from_utf8_lossy(FIXTURE).replace("9A1190V5974", visit_id)
}

#[tokio::test]
async fn a_visit_published_after_a_restart_still_joins_its_trace() {
    let collector = Collector::start().await;
    let prefix = random_prefix();
    let _cleanup = Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    // No broker: the visit waits in the spool.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!(
        "amqp://guest:guest@{}/%2f",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let first = start_relay_with(
        &prefix,
        spool.path(),
        Some(&nowhere),
        &exporting(&collector),
    )
    .await;
    accepted_receipt(post(&first.base, KEY, Some((TRACEPARENT, TRACESTATE))).await).await;
    let spans = collector
        .wait_for("the first run's server span", |spans| {
            spans.iter().any(|s| s.kind == SERVER)
        })
        .await;
    let server = one(&spans, "server span", |s| s.kind == SERVER).clone();
    let status = first.terminate().await;
    assert!(status.success(), "{status}");

    let second = start_relay_with(&prefix, spool.path(), None, &exporting(&collector)).await;
    second.wait_connected().await;
    let raw = take(&format!("{prefix}.visits.raw.debt_collection"), 1)
        .await
        .remove(0);
    let normalized = take(&format!("{prefix}.visits.debt_collection"), 1)
        .await
        .remove(0);
    let spans = collector
        .wait_for("the second run's publishes", |spans| {
            spans
                .iter()
                .filter(|s| s.kind == PRODUCER && s.status != 2)
                .count()
                >= 2
        })
        .await;
    for message in [&raw, &normalized] {
        let (trace, parent, _) = parent_of(message);
        assert_eq!(trace, TRACE);
        let producer = one(&spans, "the message's publish", |s| s.span_id == parent);
        assert_eq!(producer.kind, PRODUCER);
        assert_eq!(
            producer.parent_span_id, server.span_id,
            "the first run's request is its parent"
        );
        assert_eq!(
            message.header_str("tracestate").as_deref(),
            Some(TRACESTATE)
        );
    }
    second.terminate().await;
}

#[tokio::test]
async fn a_replay_starts_a_new_trace_linked_to_the_original() {
    // Bound by name: the cleanup and the spool live as long as the test.
    let Traced {
        collector,
        relay,
        prefix,
        _cleanup,
        _spool,
    } = Traced::start().await;
    accepted_receipt(post(&relay.base, KEY, Some((TRACEPARENT, TRACESTATE))).await).await;
    let normalized = format!("{prefix}.visits.debt_collection");
    let original = take(&format!("{prefix}.visits.raw.debt_collection"), 1)
        .await
        .remove(0);
    take(&normalized, 1).await;
    let (_, raw_publish, _) = parent_of(&original);
    wait_until("the archive holds the visit", ARRIVAL_TIMEOUT, async || {
        scrape(&relay)
            .await
            .contains("kobra_relay_archive_appended_total 1")
    })
    .await;

    let mut settings = vec![("TOPOLOGY_PREFIX", prefix.as_str())];
    settings.extend(exporting(&collector));
    let output = run(&["replay", "--since", "first"], &settings).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let replayed = take(&normalized, 1).await.remove(0);
    let (trace, parent, _) = parent_of(&replayed);
    assert_ne!(trace, TRACE, "a replay is a trace of its own");
    let spans = collector
        .wait_for("the replay's publish", |spans| {
            spans.iter().any(|s| s.span_id == parent)
        })
        .await;
    let replay = one(&spans, "replay publish", |s| s.span_id == parent);
    assert_eq!(replay.kind, PRODUCER);
    assert_eq!(replay.trace_id, trace);
    assert_eq!(
        replay.links,
        [(TRACE.to_owned(), raw_publish)],
        "linked to the original publish"
    );
    relay.terminate().await;
}

#[tokio::test]
async fn a_dead_collector_costs_spans_not_visits_and_is_logged_once() {
    let prefix = random_prefix();
    let _cleanup = Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let relay: RelayProcess = start_relay_with(
        &prefix,
        spool.path(),
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &dead),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    relay.wait_connected().await;
    for round in 0..5 {
        let body = other_visit(&format!("DEAD{round}"));
        let response = reqwest::Client::new()
            .post(format!("{}/webhooks/finish-visit", relay.base))
            .header("api-key", KEY)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 202);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert_eq!(
        take(&format!("{prefix}.visits.debt_collection"), 5)
            .await
            .len(),
        5
    );
    wait_until("failed exports are counted", ARRIVAL_TIMEOUT, async || {
        let metrics = scrape(&relay).await;
        metrics.lines().any(|l| {
            l.starts_with("kobra_relay_trace_spans_dropped_total{reason=\"export_failed\"}")
                && !l.ends_with(" 0")
        })
    })
    .await;
    let warnings = relay
        .logs()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the trace collector did not take spans"))
        })
        .count();
    assert_eq!(warnings, 1, "one warning per minute, not one per export");
    relay.terminate().await;
}
