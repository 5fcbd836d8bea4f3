//! The HLS segmenter fed random frame sequences (see `ringcast::hls::exercise`, which the
//! unit tests replay the seeds and past crashes through): it must not panic, and the TS
//! between two discontinuities must keep continuity on every PID.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringcast::hls::exercise::replay(data) {
        panic!("bad TS: {e}");
    }
});
