//! On-disk record format of the spool, and nothing else.
//!
//! ```text
//! record  = magic "KRS1" | payload_len u32 LE | crc32 u32 LE (of payload) | payload
//! payload = version u8 (1) | seq u64 | received_at unix ns i64 | receipt id [16]
//!         | kind u8 (0 visit, else rejection code) | sha256 [32]
//!         | label_len u8 | label | body
//! ```
//!
//! The magic plus CRC let recovery tell a torn or corrupted record from a
//! good one and find the next good record after damage.

use bytes::Bytes;
use jiff::Timestamp;
use uuid::Uuid;

use crate::visit::{Envelope, Kind, Receipt, RejectionReason};

/// Marks the start of every record.
pub const MAGIC: [u8; 4] = *b"KRS1";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;
const VERSION: u8 = 1;
const FIXED_PAYLOAD_LEN: usize = 1 + 8 + 8 + 16 + 1 + 32 + 1;

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
    /// Checksum fine, but the payload is not a version-1 record.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

/// Size of the encoded record for an envelope.
pub fn encoded_len(envelope: &Envelope) -> usize {
    HEADER_LEN + FIXED_PAYLOAD_LEN + envelope.receipt.key_label.len().min(255) + envelope.body.len()
}

/// Appends the record for `envelope` with sequence number `seq` to `out`.
pub fn encode(seq: u64, envelope: &Envelope, out: &mut Vec<u8>) {
    let label = &envelope.receipt.key_label.as_bytes()[..envelope.receipt.key_label.len().min(255)];
    let payload_len = FIXED_PAYLOAD_LEN + label.len() + envelope.body.len();
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(VERSION);
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
    if p[0] != VERSION {
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
    let body = Bytes::copy_from_slice(&p[67 + label_len..]);
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
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
