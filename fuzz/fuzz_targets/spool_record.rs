//! The spool's record decoder reads whatever is on disk after a crash or
//! corruption. For any bytes, as a record and as a payload under a valid
//! header (so mutations get past the checksum): no panic, a decoded record
//! lies within the input, and encoding it again gives exactly the bytes it
//! was read from.
#![no_main]

use kobra_relay::spool::record;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok((seq, envelope, len)) = record::decode(bytes) {
        assert!(len <= bytes.len());
        let mut again = Vec::new();
        record::encode(seq, &envelope, &mut again);
        assert_eq!(&again[..], &bytes[..len]);
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
