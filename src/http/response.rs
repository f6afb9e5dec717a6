//! JSON response bodies, built in one place so every refusal looks alike.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};
use serde::Serialize;

use super::HttpResponse;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// A JSON response.
pub fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `{"error": code, "detail": …}` with `status`.
pub fn error(status: StatusCode, code: &str, detail: Option<&str>) -> HttpResponse {
    json(
        status,
        &ErrorBody {
            error: code,
            detail,
        },
    )
}

/// 405 with `Allow`.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// 503 with `Retry-After` (seconds).
pub fn unavailable(detail: &str, retry_after_seconds: u32) -> HttpResponse {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(detail));
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_seconds),
    );
    response
}

/// Plain text (the metrics exposition).
pub fn text(content_type: &'static str, body: String) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
