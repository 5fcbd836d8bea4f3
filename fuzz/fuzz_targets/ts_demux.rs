//! The HLS player's MPEG-TS demuxer on arbitrary bytes, fed in small pieces: it must hand
//! out video PES heads no longer than it keeps, or refuse with an error, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::bench::ts::TsDemuxer;

fuzz_target!(|data: &[u8]| {
    let mut d = TsDemuxer::new(64);
    let mut frames = 0usize;
    let mut on = |f: ringcast::bench::ts::VideoPes<'_>| {
        assert!(f.head.len() <= 64);
        let _ = ringcast::bench::sei::find_stamp_annexb(f.head);
        frames += 1;
    };
    for piece in data.chunks(61) {
        if d.push(piece, &mut on).is_err() {
            return;
        }
    }
    d.finish(&mut on);
    assert!(frames <= data.len() / 188 + 1);
});
