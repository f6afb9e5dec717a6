//! On-disk record format of the spool, and nothing else.
//!
//! ```text
//! record  = magic "KRS1" | payload_len u32 LE | crc32 u32 LE (of payload) | payload
//! payload = version u8 (1 or 2) | seq u64 | received_at unix ns i64 | receipt id [16]
//!         | kind u8 (0 visit, else rejection code) | sha256 [32]
//!         | label_len u8 | label | [version 2: trace_len u16 LE | trace] | body
//! trace   = trace id [16] | span id [8] | trace flags u8 | tracestate (W3C text)
//! ```
//!
//! The magic plus CRC let recovery tell a torn or corrupted record from a
//! good one and find the next good record after damage. A visit without a
//! trace context is still written as version 1, which every release reads;
//! version 2 adds the context its publishes are joined to.

use bytes::Bytes;
use jiff::Timestamp;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use uuid::Uuid;

use crate::visit::{Envelope, Kind, Receipt, RejectionReason};

/// Marks the start of every record.
pub const MAGIC: [u8; 4] = *b"KRS1";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// Records without a trace context.
const VERSION_1: u8 = 1;
/// Records with a trace context after the label.
const VERSION_2: u8 = 2;
const FIXED_PAYLOAD_LEN: usize = 1 + 8 + 8 + 16 + 1 + 32 + 1;
/// Trace id, span id and flags, before the trace state.
const FIXED_TRACE_LEN: usize = 16 + 8 + 1;

/// Why bytes could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared payload: a torn write.
    #[error("record is truncated")]
    Truncated,
    /// The magic is missing: not the start of a record.
    #[error("no record starts here")]
    NoMagic,
    /// The checksum does not match the payload.
    #[error("checksum mismatch")]
    Checksum,
    /// Checksum fine, but the payload is not a record of a known version.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

/// Size of the encoded record for an envelope.
pub fn encoded_len(envelope: &Envelope) -> usize {
    HEADER_LEN
        + FIXED_PAYLOAD_LEN
        + envelope.receipt.key_label.len().min(255)
        + trace_block_len(envelope.trace.as_ref())
        + envelope.body.len()
}

/// The trace state as stored: W3C text, at most what a `u16` length
/// allows (W3C caps it at 512 characters anyway).
fn stored_state(span: &SpanContext) -> String {
    let state = span.trace_state().header();
    if FIXED_TRACE_LEN + state.len() <= usize::from(u16::MAX) {
        state
    } else {
        String::new()
    }
}

/// Bytes of the version-2 trace block (with its length), 0 without one.
fn trace_block_len(span: Option<&SpanContext>) -> usize {
    span.map_or(0, |span| 2 + FIXED_TRACE_LEN + stored_state(span).len())
}

/// Appends the record for `envelope` with sequence number `seq` to `out`.
pub fn encode(seq: u64, envelope: &Envelope, out: &mut Vec<u8>) {
    let label = &envelope.receipt.key_label.as_bytes()[..envelope.receipt.key_label.len().min(255)];
    let trace = envelope.trace.as_ref();
    let payload_len =
        FIXED_PAYLOAD_LEN + label.len() + trace_block_len(trace) + envelope.body.len();
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(if trace.is_some() {
        VERSION_2
    } else {
        VERSION_1
    });
    out.extend_from_slice(&seq.to_le_bytes());
    let nanos = i64::try_from(envelope.receipt.received_at.as_nanosecond()).unwrap_or(i64::MAX);
    out.extend_from_slice(&nanos.to_le_bytes());
    out.extend_from_slice(envelope.receipt.id.as_bytes());
    out.push(match envelope.kind {
        Kind::Visit => 0,
        Kind::Rejected(reason) => reason.code(),
    });
    out.extend_from_slice(&envelope.digest);
    out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(label);
    if let Some(span) = trace {
        let state = stored_state(span);
        let len = u16::try_from(FIXED_TRACE_LEN + state.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&span.trace_id().to_bytes());
        out.extend_from_slice(&span.span_id().to_bytes());
        out.push(span.trace_flags().to_u8());
        out.extend_from_slice(state.as_bytes());
    }
    out.extend_from_slice(&envelope.body);
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the record at the start of `bytes`: its sequence number, envelope
/// and total encoded length.
///
/// # Errors
/// See [`DecodeError`]; recovery treats all of them as damage to skip.
pub fn decode(bytes: &[u8]) -> Result<(u64, Envelope, usize), DecodeError> {
    let header = bytes.get(..HEADER_LEN).ok_or(DecodeError::Truncated)?;
    if header[..4] != MAGIC {
        return Err(DecodeError::NoMagic);
    }
    let payload_len = u32::from_le_bytes(le4(&header[4..8])) as usize;
    let crc = u32::from_le_bytes(le4(&header[8..12]));
    let total = HEADER_LEN + payload_len;
    let payload = bytes.get(HEADER_LEN..total).ok_or(DecodeError::Truncated)?;
    if crc32fast::hash(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    let (seq, envelope) = decode_payload(payload)?;
    Ok((seq, envelope, total))
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(b);
    out
}

fn decode_payload(p: &[u8]) -> Result<(u64, Envelope), DecodeError> {
    if p.len() < FIXED_PAYLOAD_LEN {
        return Err(DecodeError::Malformed(
            "payload shorter than its fixed fields",
        ));
    }
    let version = p[0];
    if version != VERSION_1 && version != VERSION_2 {
        return Err(DecodeError::Malformed("unknown record version"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&p[1..9]);
    let mut nanos = [0u8; 8];
    nanos.copy_from_slice(&p[9..17]);
    let received_at = Timestamp::from_nanosecond(i128::from(i64::from_le_bytes(nanos)))
        .map_err(|_| DecodeError::Malformed("receipt time out of range"))?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&p[17..33]);
    let kind = match p[33] {
        0 => Kind::Visit,
        code => Kind::Rejected(
            RejectionReason::from_code(code).ok_or(DecodeError::Malformed("unknown kind"))?,
        ),
    };
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&p[34..66]);
    let label_len = usize::from(p[66]);
    let label = p
        .get(67..67 + label_len)
        .ok_or(DecodeError::Malformed("label runs past the payload"))?;
    let key_label = std::str::from_utf8(label)
        .map_err(|_| DecodeError::Malformed("label is not UTF-8"))?
        .to_owned();
    let mut rest = &p[67 + label_len..];
    let trace = if version == VERSION_2 {
        let (trace, after) = decode_trace(rest)?;
        rest = after;
        Some(trace)
    } else {
        None
    };
    let body = Bytes::copy_from_slice(rest);
    Ok((
        u64::from_le_bytes(seq),
        Envelope {
            receipt: Receipt {
                id: Uuid::from_bytes(id),
                received_at,
                key_label,
            },
            kind,
            digest,
            body,
            trace,
            document: None,
        },
    ))
}

/// Reads a version-2 trace block; returns the context and what follows.
fn decode_trace(p: &[u8]) -> Result<(SpanContext, &[u8]), DecodeError> {
    let len = p
        .get(..2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or(DecodeError::Malformed("trace length runs past the payload"))?;
    let block = p
        .get(2..2 + len)
        .filter(|b| b.len() >= FIXED_TRACE_LEN)
        .ok_or(DecodeError::Malformed(
            "trace context runs past the payload",
        ))?;
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&block[..16]);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&block[16..24]);
    let state = std::str::from_utf8(&block[FIXED_TRACE_LEN..])
        .ok()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let span = SpanContext::new(
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(block[24]),
        true,
        state,
    );
    Ok((span, &p[2 + len..]))
}

/// A version-1 record written out field by field, as releases before trace
/// contexts wrote it (for the tests that old spools still load).
#[cfg(test)]
pub(super) fn version_1_bytes(seq: u64, id: Uuid, nanos: i64, label: &str, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![1u8];
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&nanos.to_le_bytes());
    payload.extend_from_slice(id.as_bytes());
    payload.push(0);
    payload.extend_from_slice(&crate::visit::sha256(body));
    payload.push(u8::try_from(label.len()).expect("short label"));
    payload.extend_from_slice(label.as_bytes());
    payload.extend_from_slice(body);
    let mut record = b"KRS1".to_vec();
    record.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced(env: Envelope) -> Envelope {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            "kobra=v1,other=x".parse().expect("trace state"),
        );
        env.in_trace(Some(span))
    }

    #[test]
    fn a_trace_context_round_trips_in_a_version_2_record() {
        let env = traced(sample(b"{\"productID\":1}", Kind::Visit));
        let mut buf = Vec::new();
        encode(7, &env, &mut buf);
        assert_eq!(buf[HEADER_LEN], VERSION_2);
        assert_eq!(buf.len(), encoded_len(&env));
        let (seq, decoded, len) = decode(&buf).unwrap();
        assert_eq!((seq, len), (7, buf.len()));
        assert_eq!(decoded, env);
        assert_eq!(
            decoded.trace.expect("trace").trace_state().header(),
            "kobra=v1,other=x"
        );
    }

    #[test]
    fn an_unreadable_trace_state_is_dropped_and_the_visit_kept() {
        let env = traced(sample(b"{\"productID\":1}", Kind::Visit));
        let mut buf = Vec::new();
        encode(7, &env, &mut buf);
        // Overwrite the stored state "kobra=v1,other=x" with bytes that are
        // no W3C tracestate, and fix the checksum, as a damaged disk could.
        let state_at = buf.len() - env.body.len() - "kobra=v1,other=x".len();
        buf[state_at..state_at + 4].copy_from_slice(b"\x04\x05 =");
        let crc = crc32fast::hash(&buf[HEADER_LEN..]);
        buf[8..12].copy_from_slice(&crc.to_le_bytes());

        let (seq, decoded, len) = decode(&buf).expect("the record still loads");
        assert_eq!((seq, len, &decoded.body), (7, buf.len(), &env.body));
        let trace = decoded.trace.as_ref().expect("the trace context is kept");
        assert_eq!(
            trace.trace_id(),
            env.trace.as_ref().expect("trace").trace_id()
        );
        assert_eq!(trace.trace_state().header(), "");
        // Written again, the record holds what was read: no state.
        let mut again = Vec::new();
        encode(seq, &decoded, &mut again);
        assert_eq!(decode(&again).expect("decodes").1, decoded);
    }

    #[test]
    fn records_without_a_trace_stay_version_1_and_old_ones_still_load() {
        let env = sample(b"{}", Kind::Visit);
        let mut buf = Vec::new();
        encode(3, &env, &mut buf);
        assert_eq!(buf[HEADER_LEN], VERSION_1);
        let nanos = i64::try_from(env.receipt.received_at.as_nanosecond()).unwrap();
        let old = version_1_bytes(3, env.receipt.id, nanos, "kobra-prod", b"{}");
        assert_eq!(buf, old, "byte-identical to the version-1 layout");
        let (seq, decoded, _) = decode(&old).unwrap();
        assert_eq!((seq, &decoded.trace), (3, &None));
        assert_eq!(decoded, env);
    }

    fn sample(body: &'static [u8], kind: Kind) -> Envelope {
        let receipt = Receipt {
            id: Uuid::now_v7(),
            received_at: Timestamp::now(),
            key_label: "kobra-prod".into(),
        };
        Envelope {
            kind,
            ..Envelope::new(receipt, Bytes::from_static(body))
        }
    }

    #[test]
    fn records_round_trip() {
        for kind in [Kind::Visit, Kind::Rejected(RejectionReason::InvalidUtf8)] {
            let env = sample(b"{\"productID\":1}", kind);
            let mut buf = Vec::new();
            encode(42, &env, &mut buf);
            assert_eq!(buf.len(), encoded_len(&env));
            let (seq, decoded, len) = decode(&buf).unwrap();
            assert_eq!((seq, len), (42, buf.len()));
            assert_eq!(decoded, env);
        }
    }

    #[test]
    fn damage_is_detected_not_decoded() {
        let env = sample(b"{}", Kind::Visit);
        let mut buf = Vec::new();
        encode(1, &env, &mut buf);
        assert_eq!(decode(&buf[..buf.len() - 1]), Err(DecodeError::Truncated));
        assert_eq!(decode(&buf[..5]), Err(DecodeError::Truncated));
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert_eq!(decode(&flipped), Err(DecodeError::Checksum));
        assert_eq!(decode(&buf[1..]), Err(DecodeError::NoMagic));
    }
}
