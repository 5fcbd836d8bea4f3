//! The HTTP request parser on arbitrary bytes, fed in small pieces: it must return requests,
//! ask for more, or refuse with a status, and never panic or buffer past its limits. Each
//! request's query also goes through LL-HLS's `_HLS_msn`/`_HLS_part` parser and the blocking
//! decision, which must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::hls::{reload, Edge, Hint};
use ringcast::http::parser::{Limits, RequestParser};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut p = RequestParser::new(limits);
    for piece in data.chunks(37) {
        p.push(piece);
        loop {
            match p.next_request() {
                Ok(Some(r)) => {
                    assert!(r.body.len() <= limits.body);
                    if let Ok(Some(want)) = reload::parse(&r.query) {
                        let edge = Edge {
                            segment: Some(want.msn / 2),
                            part: want.part.map(|p| (want.msn, p / 2)),
                            hint: Some(Hint {
                                name: String::new(),
                                at: (want.msn, want.part.unwrap_or(0)),
                            }),
                            target_ms: 1000,
                        };
                        let _ = (edge.has(&want), edge.too_far(&want), edge.reached((want.msn, 0)));
                    }
                }
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
