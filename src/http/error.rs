//! Every way the ingress refuses a request, and the one place each becomes
//! a status code and a JSON body (`{"error": code, "detail": …}`).

use hyper::StatusCode;

use super::{HttpResponse, response};
use crate::durability::Unavailable;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 5;

/// Why the ingress did not accept a request.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A path other than the route (404).
    #[error("no such route")]
    NotFound,
    /// A method other than POST on the route (405).
    #[error("only POST is allowed")]
    MethodNotAllowed,
    /// No `api-key`, or one that matches no configured key (401).
    #[error("not authorized")]
    Unauthorized,
    /// A `Content-Type` that is not JSON (415).
    #[error("the body is not JSON by its content type")]
    UnsupportedMediaType,
    /// Declared or read beyond `MAX_BODY_BYTES` (413).
    #[error("the body is larger than MAX_BODY_BYTES")]
    PayloadTooLarge,
    /// Nothing durable can take the request now (503).
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The body broke off or was malformed on the wire (400).
    #[error("the request body could not be read")]
    UnreadableBody,
    /// The body did not arrive within `BODY_READ_TIMEOUT` (408).
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// Not a JSON object; its bytes were kept on the rejected exchange (400).
    #[error("the body is not a JSON object")]
    InvalidJson(Option<String>),
}

impl IngressError {
    /// The response to send.
    pub fn into_response(self) -> HttpResponse {
        use StatusCode as S;
        match self {
            Self::NotFound => response::error(S::NOT_FOUND, "not_found", None),
            Self::MethodNotAllowed => response::method_not_allowed("POST"),
            Self::Unauthorized => response::error(S::UNAUTHORIZED, "unauthorized", None),
            Self::UnsupportedMediaType => {
                response::error(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None)
            }
            Self::PayloadTooLarge => {
                response::error(S::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            Self::Unavailable(why) => response::unavailable(&why.to_string(), RETRY_AFTER_SECONDS),
            Self::UnreadableBody => response::error(
                S::BAD_REQUEST,
                "invalid_body",
                Some("the request body could not be read"),
            ),
            Self::BodyTimeout => response::error(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                Some("the request body was not received in time"),
            ),
            Self::InvalidJson(detail) => {
                response::error(S::BAD_REQUEST, "invalid_json", detail.as_deref())
            }
        }
    }
}
