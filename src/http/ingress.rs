//! `POST /webhooks/finish-visit`.
//!
//! Checks run in the contract's order and the first failure answers: path
//! (404), method (405), `api-key` (401; an unauthenticated body is never
//! read), media type (415), declared size (413), durability available (503),
//! body size while reading (413), JSON (400). Each refusal is an
//! [`IngressError`]; `error.rs` turns it into the response.
//!
//! **Ack order.** A `202` is written only after the request is durable:
//! in `spool` mode after the spool's group commit has fsynced it, in
//! `confirm` mode after the broker confirmed both messages, in `replicated`
//! mode after the fsync and then either the confirms of both messages
//! (`"durableIn":"broker"`) or, when they do not come within
//! `REPLICATED_DEADLINE`, the fsync alone (`"durableIn":"spool"`); see
//! [`crate::durability`]. A `400` for a body that is not a JSON object
//! promises to keep the bytes on the rejected exchange, so it too is sent
//! only after that copy is durable. Anything that fails before then answers
//! `503` and nothing is kept half-written.
//!
//! **Trace context.** A W3C `traceparent` (and `tracestate`) is read from
//! the request; a malformed one is ignored and counted, never refused.
//! While spans are exported the request span is the trace's HTTP server
//! span (the caller's child) and the envelope carries its context;
//! otherwise the envelope carries the caller's context as received.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Request, StatusCode, body::Incoming, header};
use jiff::Timestamp;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde::Serialize;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use super::{AppState, HttpResponse, IngressError, response};
use crate::auth::{AuthError, Authorized};
use crate::durability::Unavailable;
use crate::metrics::{ROUTE_FINISH_VISIT, ROUTE_OTHER};
use crate::visit::{self, Kind, Receipt};
use crate::{routes, telemetry};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted<'a> {
    status: &'static str,
    receipt_id: &'a str,
    message_id: &'a str,
    /// Said only in `replicated` mode, where it varies.
    #[serde(skip_serializing_if = "Option::is_none")]
    durable_in: Option<&'static str>,
}

/// The caller's `x-request-id` when it is 1–128 of `[A-Za-z0-9._:-]`.
fn caller_request_id<B>(req: &Request<B>) -> Option<String> {
    let value = req.headers().get("x-request-id")?.to_str().ok()?;
    let valid = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
    valid.then(|| value.to_owned())
}

fn with_request_id(mut response: HttpResponse, request_id: &str) -> HttpResponse {
    if let Ok(value) = header::HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Answers a path other than the route.
pub fn not_found<B>(req: &Request<B>, state: &AppState) -> HttpResponse {
    refuse(req, state, ROUTE_OTHER, IngressError::NotFound)
}

/// Answers a method other than POST on the route.
pub fn method_not_allowed<B>(req: &Request<B>, state: &AppState) -> HttpResponse {
    refuse(
        req,
        state,
        ROUTE_FINISH_VISIT,
        IngressError::MethodNotAllowed,
    )
}

fn refuse<B>(
    req: &Request<B>,
    state: &AppState,
    route: &'static str,
    error: IngressError,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = caller_request_id(req).unwrap_or_else(|| Uuid::now_v7().to_string());
    let response = error.into_response();
    state
        .metrics
        .http_response(route, response.status().as_u16(), started.elapsed());
    with_request_id(response, &request_id)
}

/// A request header as text, if it is.
fn header_text<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Handles one Finish Visit request.
pub async fn accept(req: Request<Incoming>, state: &AppState) -> HttpResponse {
    let started = Instant::now();
    let receipt_id = Uuid::now_v7();
    let request_id = caller_request_id(&req).unwrap_or_else(|| receipt_id.to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        key_label = Empty,
        visit_id = Empty,
        product = Empty,
        status = Empty,
        latency_ms = Empty,
        otel.name = Empty,
        otel.kind = Empty,
    );
    let incoming = telemetry::extract(
        header_text(&req, telemetry::TRACEPARENT),
        header_text(&req, telemetry::TRACESTATE),
    );
    let trace = if telemetry::is_exporting() {
        Some(server_span(&span, &incoming, receipt_id))
    } else {
        // Not exporting: the caller's context travels on unchanged.
        incoming.parent().cloned()
    };
    if incoming == telemetry::Incoming::Malformed {
        state.metrics.trace_context_invalid();
        span.in_scope(|| {
            tracing::debug!("malformed traceparent ignored; the visit starts a new trace");
        });
    }
    let response = handle(req, state, receipt_id, trace)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IngressError::into_response);
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .http_response(ROUTE_FINISH_VISIT, status, elapsed);
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    if telemetry::is_exporting() {
        span.set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.set_status(opentelemetry::trace::Status::error("request not accepted"));
        }
    }
    span.in_scope(|| {
        if status == 202 {
            tracing::debug!("visit accepted");
        } else if status >= 500 {
            tracing::warn!("request not accepted");
        } else {
            tracing::info!("request refused");
        }
    });
    with_request_id(response, &request_id)
}

/// Makes the request span the HTTP server span of the visit's trace, the
/// caller's child when it sent a `traceparent`; returns its context. Must
/// run before the span is first entered, which fixes its name and parent.
fn server_span(
    span: &tracing::Span,
    incoming: &telemetry::Incoming,
    receipt_id: Uuid,
) -> SpanContext {
    span.record("otel.name", SERVER_SPAN_NAME);
    span.record("otel.kind", "server");
    if let Some(parent) = incoming.parent() {
        // Fails only without the OpenTelemetry layer, which exporting implies.
        let _ = span.set_parent(telemetry::remote(parent));
    }
    span.set_attribute("http.request.method", "POST");
    span.set_attribute("http.route", routes::FINISH_VISIT);
    span.set_attribute("kobra.receipt_id", receipt_id.to_string());
    span.context().span().span_context().clone()
}

/// `{method} {route}`, as the HTTP conventions name a server span.
const SERVER_SPAN_NAME: &str = "POST /webhooks/finish-visit";

async fn handle(
    req: Request<Incoming>,
    state: &AppState,
    receipt_id: Uuid,
    trace: Option<SpanContext>,
) -> Result<HttpResponse, IngressError> {
    let span = tracing::Span::current();
    let authorized = authorize(&req, state)?;
    span.record("key_label", &*authorized.label);
    let body = read_body(req, state).await?;

    let receipt = Receipt {
        id: receipt_id,
        received_at: Timestamp::now(),
        key_label: authorized.label.to_string(),
    };
    let (envelope, inspection) = visit::receive(
        receipt,
        body,
        state.http.max_json_depth,
        state.sink.keeps_documents(),
    );
    span.record("product", &*inspection.product.slug());
    if let Some(visit_id) = &inspection.visit_id {
        span.record("visit_id", visit_id.as_str());
        if telemetry::is_exporting() {
            span.set_attribute("kobra.visit_id", visit_id.clone());
        }
    }
    let detail = match inspection.kind {
        Kind::Visit => None,
        Kind::Rejected(_) => Some(visit::rejection_detail(
            &envelope.body,
            state.http.max_json_depth,
        )),
    };
    let envelope = envelope.in_trace(trace);
    let message_id = envelope.message_id();

    let durable_in = state.sink.make_durable(envelope).await?;
    if let Kind::Rejected(reason) = inspection.kind {
        state.metrics.rejected(reason);
        return Err(IngressError::InvalidJson(detail));
    }
    state.metrics.visit_received(inspection.product);
    state.metrics.accepted(durable_in);
    Ok(response::json(
        StatusCode::ACCEPTED,
        &Accepted {
            status: "accepted",
            receipt_id: &receipt_id.to_string(),
            message_id: &message_id,
            durable_in: state.sink.is_replicated().then(|| durable_in.as_str()),
        },
    ))
}

/// The `api-key` check; a refusal is counted and logged by its reason.
fn authorize<B>(req: &Request<B>, state: &AppState) -> Result<Authorized, IngressError> {
    let presented = req.headers().get("api-key").map(|v| v.as_bytes());
    state.keys.load().check(presented).map_err(|reason| {
        state.metrics.auth_failure(reason);
        if reason == AuthError::Missing {
            tracing::info!("request without an api-key header");
        } else {
            tracing::info!("request with an unknown api-key");
        }
        IngressError::Unauthorized
    })
}

/// Checks media type, declared size and room, then reads the whole body
/// within `MAX_BODY_BYTES` and `BODY_READ_TIMEOUT`.
async fn read_body(req: Request<Incoming>, state: &AppState) -> Result<Bytes, IngressError> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
        && !is_json_media_type(content_type.as_bytes())
    {
        return Err(IngressError::UnsupportedMediaType);
    }
    let max_body_bytes = state.http.max_body_bytes;
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > max_body_bytes) {
        return Err(IngressError::PayloadTooLarge);
    }
    if state.is_shutting_down() {
        return Err(Unavailable::ShuttingDown.into());
    }
    state.sink.check_room(declared_len.unwrap_or(0))?;

    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let collected = tokio::time::timeout(
        state.http.body_read_timeout,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| IngressError::BodyTimeout)?;
    match collected {
        // A body that arrived whole is a slice of hyper's read buffer:
        // kept as it is, it would pin that whole buffer (8 KiB or more) in
        // the spool cache and the confirm window, and make hyper allocate a
        // fresh one for the next request on the connection. A copy of
        // exactly the body lets the buffer be reused.
        Ok(collected) => Ok(Bytes::copy_from_slice(&collected.to_bytes())),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(IngressError::PayloadTooLarge)
        }
        Err(error) => {
            tracing::info!(%error, "could not read the request body");
            Err(IngressError::UnreadableBody)
        }
    }
}

/// `application/json`, any `*/json` or `*/*+json`, parameters allowed.
fn is_json_media_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((_, subtype)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.kobra+json",
            "text/json",
        ] {
            assert!(is_json_media_type(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonp",
        ] {
            assert!(!is_json_media_type(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn caller_request_ids_are_validated() {
        let req = |id: &str| {
            Request::builder()
                .header("x-request-id", id)
                .body(())
                .expect("request")
        };
        assert_eq!(
            caller_request_id(&req("abc-1.2:3_4")).as_deref(),
            Some("abc-1.2:3_4")
        );
        assert_eq!(caller_request_id(&req("has space")), None);
        assert_eq!(caller_request_id(&req(&"a".repeat(129))), None);
        assert_eq!(
            caller_request_id(&req(&"a".repeat(128))).map(|s| s.len()),
            Some(128)
        );
    }
}
