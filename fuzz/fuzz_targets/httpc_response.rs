//! The HTTP client's response parser on arbitrary bytes, fed in pieces whose size the first
//! byte picks, then the server's close: it must return one response, ask for more, or refuse,
//! and never panic or hold a body past its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::httpc::{Limits, ResponseParser};

fuzz_target!(|data: &[u8]| {
    let Some((&size, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        head: 2048,
        header_count: 16,
        body: 4096,
    };
    let mut p = ResponseParser::new(limits);
    for piece in data.chunks(usize::from(size).max(1)) {
        match p.handle_input(piece) {
            Ok(Some(r)) => {
                assert!(r.body.len() <= limits.body);
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    if let Ok(r) = p.handle_eof() {
        assert!(r.body.len() <= limits.body && !r.keep_alive);
    }
});
