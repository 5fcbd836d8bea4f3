//! WebRTC to RTMP conversion (`rtc_to_rtmp`) on arbitrary frame sequences, as a WHIP
//! publisher's depacketized frames reach it: each record is a flags byte (bit 0: audio, bit 1:
//! not contiguous), a 32-bit RTP time, a 16-bit arrival step in milliseconds, a 16-bit length
//! and the payload (an Annex B access unit, or an Opus packet that libopus decodes and
//! libfdk-aac re-encodes). No panic, and what comes out stays bounded: a few messages per
//! frame, none larger than its frame plus the FLV and AVCC framing or one AAC frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

use ringcast::rtc::to_rtmp::{Frame, Output, ToRtmp, Track};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = ToRtmp::new(now);
    let mut rest = data;
    while let [flags, r0, r1, r2, r3, d0, d1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(u16::from_be_bytes([*d0, *d1])));
        let track = if flags & 1 == 1 { Track::Audio } else { Track::Video };
        c.handle_frame(
            now,
            Frame {
                track,
                data: payload,
                rtp_time: u64::from(u32::from_be_bytes([*r0, *r1, *r2, *r3])),
                clock_rate: if track == Track::Video { 90_000 } else { 48_000 },
                network_time: now,
                contiguous: flags & 2 == 0,
            },
        );
        let mut messages = 0;
        while let Some(out) = c.poll_output() {
            if let Output::Message(m) = out {
                messages += 1;
                // AVCC adds 4 bytes a NAL unit where Annex B had 3 or 4; an AAC frame is at
                // most 6144 bits a channel.
                assert!(m.payload.len() <= 5 + 2 * payload.len() + 2048, "{}", m.payload.len());
            }
        }
        // A video frame: a header and the frame. An Opus packet (at most 120 ms, or as
        // much again concealed before it): at most 12 AAC frames and the header.
        assert!(messages <= 13, "{messages} messages from one frame");
        let _ = c.is_stale(now);
    }
});
