//! W3C trace context: reading `traceparent`/`tracestate` from a request and
//! writing them for a message. The text format is OpenTelemetry's own
//! propagator; this module only adapts the carriers.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header (and AMQP header) naming the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// What a request said about its trace.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// No `traceparent`: the relay starts a trace.
    Absent,
    /// A valid parent.
    Parent(SpanContext),
    /// A `traceparent` that is not W3C: ignored (a new trace), and counted.
    Malformed,
}

impl Incoming {
    /// The parent, when there is one.
    pub fn parent(&self) -> Option<&SpanContext> {
        match self {
            Self::Parent(parent) => Some(parent),
            Self::Absent | Self::Malformed => None,
        }
    }
}

/// The two header values as received.
struct Carrier<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Reads the request's `traceparent` and `tracestate` header values.
pub fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Incoming {
    let Some(traceparent) = traceparent else {
        return Incoming::Absent;
    };
    let carrier = Carrier {
        traceparent: Some(traceparent.trim()),
        tracestate,
    };
    let context = TraceContextPropagator::new().extract(&carrier);
    let parent = context.span().span_context().clone();
    if parent.is_valid() {
        Incoming::Parent(parent)
    } else {
        Incoming::Malformed
    }
}

/// The header values that name `span` as the parent: `traceparent`, and
/// `tracestate` when it has members.
#[derive(Debug, Default)]
pub struct Headers {
    /// `00-<trace id>-<span id>-<flags>`
    pub traceparent: String,
    /// Empty when the trace has no state.
    pub tracestate: String,
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = value,
            TRACESTATE => self.tracestate = value,
            _ => {}
        }
    }
}

/// The headers of a message whose parent is `span`.
pub fn headers(span: &SpanContext) -> Headers {
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&remote(span), &mut headers);
    headers
}

/// An OpenTelemetry context whose active span is `span`, started elsewhere
/// (another process, or this one before a restart).
pub fn remote(span: &SpanContext) -> Context {
    Context::new().with_remote_span_context(span.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_w3c_parent_is_read_and_written_back_unchanged() {
        let Incoming::Parent(parent) = extract(Some(PARENT), Some("kobra=v1,other=x")) else {
            panic!("a valid traceparent");
        };
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parent.is_sampled());
        let out = headers(&parent);
        assert_eq!(out.traceparent, PARENT);
        assert_eq!(out.tracestate, "kobra=v1,other=x");
    }

    #[test]
    fn malformed_parents_are_told_apart_from_absent_ones() {
        assert_eq!(extract(None, Some("a=b")), Incoming::Absent);
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(extract(Some(bad), None), Incoming::Malformed, "{bad:?}");
        }
    }
}
