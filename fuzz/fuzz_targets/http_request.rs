//! The HTTP request parser on arbitrary bytes, fed in small pieces: it must return requests,
//! ask for more, or refuse with a status, and never panic or buffer past its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::http::parser::{Limits, RequestParser};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut p = RequestParser::new(limits);
    for piece in data.chunks(37) {
        p.push(piece);
        loop {
            match p.next_request() {
                Ok(Some(r)) => assert!(r.body.len() <= limits.body),
                Ok(None) => break,
                Err(e) => {
                    assert!((400..=501).contains(&e.status()));
                    return;
                }
            }
        }
        assert!(p.buffered() <= limits.headers + limits.body + 37);
    }
});
