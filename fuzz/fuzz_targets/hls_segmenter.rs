//! The HLS segmenter fed random frame sequences (see `ringcast::hls::exercise`, which the
//! unit tests replay the seeds and past crashes through), into MPEG-TS, or LL-HLS parts of
//! CMAF (fMP4) or TS: it must not panic, the TS between two discontinuities must keep
//! continuity on every PID, and a segment with parts must be its parts end to end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringcast::hls::exercise::replay(data) {
        panic!("bad output: {e}");
    }
});
