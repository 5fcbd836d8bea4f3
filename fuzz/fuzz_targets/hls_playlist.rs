//! The HLS player's playlist schedule on arbitrary bytes: each NUL-separated piece is one
//! reload of the playlist (parsed by m3u8-rs; a master playlist names the variant to load
//! next), after which the queued segments are drained.
//! It must take or refuse every reload, never panic, and queue no more segments than the
//! reload has lines. The bound is lines, not `#EXTINF` tags or URI lines: m3u8-rs keeps a bare
//! URI as a segment and reads some malformed tag lines as URIs, and the schedule plays what
//! the parser lists; what it must never do is queue more than the text could describe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::bench::hls::Schedule;

fuzz_target!(|data: &[u8]| {
    let mut s = Schedule::new("127.0.0.1:8080", "/live/livestream.m3u8?t=1");
    for reload in data.split(|&b| b == 0) {
        let Ok(r) = s.playlist(reload) else {
            continue;
        };
        // A master playlist's variant is a path on the same server, as segments are.
        if let Some(variant) = r.variant {
            assert!(variant.starts_with('/'), "{variant:?}");
        }
        let listed = reload.split(|&b| b == b'\n' || b == b'\r').count();
        let mut queued = 0;
        while let Some(seg) = s.next_segment() {
            assert!(seg.path.starts_with('/'));
            queued += 1;
        }
        assert!(queued <= listed, "{queued} queued of {listed}");
    }
});
