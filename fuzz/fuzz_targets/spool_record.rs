//! The spool's record decoder reads whatever is on disk after a crash or
//! corruption. For any bytes, as a record and as a payload under a valid
//! header (so mutations get past the checksum): no panic, a decoded record
//! lies within the input, and encoding it again gives exactly the bytes it
//! was read from, except that a trace state the decoder could not read as
//! W3C text (and dropped, keeping the visit) or read in another spelling
//! comes back as read: the re-encoded record then decodes to the same
//! envelope.
#![no_main]

use kobra_relay::spool::record;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok((seq, envelope, len)) = record::decode(bytes) {
        assert!(len <= bytes.len());
        let mut again = Vec::new();
        record::encode(seq, &envelope, &mut again);
        if again[..] != bytes[..len] {
            assert!(envelope.trace.is_some(), "only a trace state may change");
            let (seq_again, envelope_again, len_again) =
                record::decode(&again).expect("a re-encoded record decodes");
            assert_eq!((seq_again, len_again), (seq, again.len()));
            assert_eq!(envelope_again, envelope);
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    let mut framed = Vec::with_capacity(record::HEADER_LEN + bytes.len());
    framed.extend_from_slice(&record::MAGIC);
    framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    framed.extend_from_slice(bytes);
    check(&framed);
});
