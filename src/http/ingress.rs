//! `POST /webhooks/finish-visit`.
//!
//! Checks run in the contract's order and the first failure answers: path
//! (404), method (405), `api-key` (401; an unauthenticated body is never
//! read), media type (415), declared size (413), durability available (503),
//! body size while reading (413), JSON (400).
//!
//! **Ack order.** A `202` is written only after the request is durable:
//! in `spool` mode after the spool's group commit has fsynced it, in
//! `confirm` mode after the broker confirmed both messages, in `replicated`
//! mode after the fsync and then either the confirms of both messages
//! (`"durableIn":"broker"`) or, when they do not come within
//! `REPLICATED_DEADLINE`, the fsync alone (`"durableIn":"spool"`). A `400` for a
//! body that is not a JSON object promises to keep the bytes on the rejected
//! exchange, so it too is sent only after that copy is durable. Anything
//! that fails before then answers `503` and nothing is kept half-written.

use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::{Request, StatusCode, body::Incoming, header};
use jiff::Timestamp;
use serde::Serialize;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;

use super::{HttpResponse, response};
use crate::auth::AuthError;
use crate::metrics::{DurableIn, ROUTE_FINISH_VISIT, ROUTE_OTHER};
use crate::spool::{Spool, SpoolError};
use crate::startup::{AppState, Sink};
use crate::visit::{self, Envelope, Kind, Receipt};

/// The route.
pub const PATH: &str = "/webhooks/finish-visit";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 5;

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
    let started = Instant::now();
    let request_id = caller_request_id(req).unwrap_or_else(|| Uuid::now_v7().to_string());
    let response = response::error(StatusCode::NOT_FOUND, "not_found", None);
    state
        .metrics
        .http_response(ROUTE_OTHER, 404, started.elapsed());
    with_request_id(response, &request_id)
}

/// Answers a method other than POST on the route.
pub fn method_not_allowed<B>(req: &Request<B>, state: &AppState) -> HttpResponse {
    let started = Instant::now();
    let request_id = caller_request_id(req).unwrap_or_else(|| Uuid::now_v7().to_string());
    let response = response::method_not_allowed("POST");
    state
        .metrics
        .http_response(ROUTE_FINISH_VISIT, 405, started.elapsed());
    with_request_id(response, &request_id)
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
    );
    let response = handle(req, state, receipt_id)
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .http_response(ROUTE_FINISH_VISIT, status, elapsed);
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
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

async fn handle(req: Request<Incoming>, state: &AppState, receipt_id: Uuid) -> HttpResponse {
    let span = tracing::Span::current();
    let presented = req.headers().get("api-key").map(|v| v.as_bytes());
    let authorized = match state.keys.load().check(presented) {
        Ok(authorized) => authorized,
        Err(reason) => {
            state.metrics.auth_failure(reason);
            if reason == AuthError::Missing {
                tracing::info!("request without an api-key header");
            } else {
                tracing::info!("request with an unknown api-key");
            }
            return response::error(StatusCode::UNAUTHORIZED, "unauthorized", None);
        }
    };
    span.record("key_label", &*authorized.label);

    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
        && !is_json_media_type(content_type.as_bytes())
    {
        return response::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }

    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > state.max_body_bytes) {
        return payload_too_large();
    }

    if let Some(refusal) = durability_unavailable(state, declared_len.unwrap_or(0)) {
        return refusal;
    }

    let limit = usize::try_from(state.max_body_bytes).unwrap_or(usize::MAX);
    let body = match tokio::time::timeout(
        state.limits.body_read_timeout,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return payload_too_large();
        }
        Ok(Err(error)) => {
            tracing::info!(%error, "could not read the request body");
            return response::error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                Some("the request body could not be read"),
            );
        }
        Err(_) => {
            return response::error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                Some("the request body was not received in time"),
            );
        }
    };

    let inspection = visit::inspect(&body);
    span.record("product", &*inspection.product.slug());
    if let Some(visit_id) = &inspection.visit_id {
        span.record("visit_id", visit_id.as_str());
    }
    let receipt = Receipt {
        id: receipt_id,
        received_at: Timestamp::now(),
        key_label: authorized.label.to_string(),
    };
    let detail = match inspection.kind {
        Kind::Visit => None,
        Kind::Rejected(_) => Some(visit::rejection_detail(&body)),
    };
    let envelope = Envelope::with_kind(receipt, body, inspection.kind);
    let message_id = envelope.message_id();

    let durable_in = match make_durable(state, envelope).await {
        Ok(durable_in) => durable_in,
        Err(refusal) => return refusal,
    };
    match (inspection.kind, detail) {
        (Kind::Rejected(reason), detail) => {
            state.metrics.rejected(reason);
            response::error(StatusCode::BAD_REQUEST, "invalid_json", detail.as_deref())
        }
        (Kind::Visit, _) => {
            state.metrics.visit_received(inspection.product);
            state.metrics.accepted(durable_in);
            let receipt_id = receipt_id.to_string();
            let replicated = matches!(state.sink, Sink::Replicated { .. });
            response::json(
                StatusCode::ACCEPTED,
                &Accepted {
                    status: "accepted",
                    receipt_id: &receipt_id,
                    message_id: &message_id,
                    durable_in: replicated.then(|| durable_in.as_str()),
                },
            )
        }
    }
}

fn payload_too_large() -> HttpResponse {
    response::error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
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

/// Refuses early (before reading the body) when nothing could be made durable.
fn durability_unavailable(state: &AppState, declared_len: u64) -> Option<HttpResponse> {
    if state.is_shutting_down() {
        return Some(response::unavailable(
            "the relay is shutting down",
            RETRY_AFTER_SECONDS,
        ));
    }
    match &state.sink {
        Sink::Spool(spool) | Sink::Replicated { spool, .. }
            if !spool.has_room_for(declared_len) =>
        {
            Some(response::unavailable(
                "the local spool is full (KOBRA_RELAY_SPOOL_MAX_BYTES); the broker is not draining it",
                RETRY_AFTER_SECONDS,
            ))
        }
        Sink::Confirm if !state.publisher.link().is_connected() => Some(response::unavailable(
            "not connected to the broker (DURABILITY=confirm)",
            RETRY_AFTER_SECONDS,
        )),
        _ => None,
    }
}

/// Makes the envelope durable according to `DURABILITY` and says where it
/// is durable now. Bodies that are not visits are kept in the spool and not
/// waited for in `replicated` mode: their 400 promises only that they are kept.
async fn make_durable(state: &AppState, envelope: Envelope) -> Result<DurableIn, HttpResponse> {
    match &state.sink {
        Sink::Spool(spool) => {
            append(spool, envelope).await?;
            Ok(DurableIn::Spool)
        }
        Sink::Replicated { spool, deadline } => {
            // Registered before the append, so that no confirm can be missed.
            let waiting = (envelope.kind == Kind::Visit)
                .then(|| state.publisher.waiters().register(envelope.receipt.id));
            append(spool, envelope).await?;
            let Some(mut waiting) = waiting else {
                return Ok(DurableIn::Spool);
            };
            match tokio::time::timeout(*deadline, waiting.confirmed()).await {
                Ok(true) => Ok(DurableIn::Broker),
                Ok(false) | Err(_) => Ok(DurableIn::Spool),
            }
        }
        Sink::Confirm => match state.publisher.deliver(&envelope).await {
            Ok(()) => Ok(DurableIn::Broker),
            Err(error) => {
                tracing::warn!(%error, "broker did not confirm (DURABILITY=confirm)");
                Err(response::unavailable(
                    &format!("the broker did not confirm the visit: {error}"),
                    RETRY_AFTER_SECONDS,
                ))
            }
        },
    }
}

/// Appends to the spool; a failure is the 503 to answer.
async fn append(spool: &Spool, envelope: Envelope) -> Result<(), HttpResponse> {
    spool.append(envelope).await.map(drop).map_err(|error| {
        let detail = match &error {
            SpoolError::Full { .. } => {
                "the local spool is full (KOBRA_RELAY_SPOOL_MAX_BYTES); the broker is not draining it"
            }
            SpoolError::Closed => "the relay is shutting down",
            _ => "the local spool cannot be written (KOBRA_RELAY_SPOOL_DIR)",
        };
        if !matches!(error, SpoolError::Full { .. } | SpoolError::Closed) {
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "spool append failed");
        }
        response::unavailable(detail, RETRY_AFTER_SECONDS)
    })
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
