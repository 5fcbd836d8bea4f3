//! AMF0 decoding of arbitrary bytes; whatever decodes must re-encode and decode the same.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::amf0;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data) {
        let mut out = BytesMut::new();
        amf0::encode_all(&values, &mut out);
        let again = amf0::decode_all(&out).expect("re-encoded AMF0 decodes");
        assert_eq!(again.len(), values.len());
    }
});
