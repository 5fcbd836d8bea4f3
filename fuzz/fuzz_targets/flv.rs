//! The FLV reader on arbitrary bytes, fed in small pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::flv::FlvReader;

fuzz_target!(|data: &[u8]| {
    let mut r = FlvReader::new();
    for piece in data.chunks(61) {
        r.push(piece);
        loop {
            match r.next_tag() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
