//! WebRTC to RTMP conversion (`rtc_to_rtmp`) on arbitrary frame sequences, as a WHIP
//! publisher's depacketized frames reach it: each record is a flags byte (bit 0: audio, bit 1:
//! not contiguous, bit 2: with a sender report, bits 3-7 how far off it is), a 32-bit RTP
//! time, a 16-bit arrival step in milliseconds, a 16-bit length and the payload (an Annex B
//! access unit, or an Opus packet that libopus decodes and libfdk-aac re-encodes). No panic,
//! and what comes out stays bounded: at most 13 messages a frame in all (a frame's may be held
//! for the other track's, within bounded queues), none larger than the largest frame plus the
//! FLV and AVCC framing, or one AAC frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

use ringcast::rtc::to_rtmp::{Frame, Output, SenderReport, ToRtmp, Track, MAX_QUEUED};

/// The most messages one frame makes: a video frame, its header; an Opus packet (at most
/// 120 ms, or as much again concealed before it), 12 AAC frames and the header.
const PER_FRAME: usize = 13;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = ToRtmp::new(now);
    let mut rest = data;
    let (mut frames, mut total, mut largest) = (0usize, 0usize, 0usize);
    while let [flags, r0, r1, r2, r3, d0, d1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(u16::from_be_bytes([*d0, *d1])));
        largest = largest.max(payload.len());
        let track = if flags & 1 == 1 { Track::Audio } else { Track::Video };
        let rtp_time = u64::from(u32::from_be_bytes([*r0, *r1, *r2, *r3]));
        // Sender reports: near the frame's RTP time and arrival, or anywhere.
        let sender_report = (flags & 4 != 0).then(|| SenderReport {
            rtp_time: rtp_time.wrapping_add(u64::from(*d0) << (flags >> 5)),
            ntp: Duration::from_millis(
                (now - t0).as_millis() as u64 + (u64::from(*d1) << (16 * ((flags >> 3) & 3))),
            ),
        });
        c.handle_frame(
            now,
            Frame {
                track,
                data: payload,
                rtp_time,
                clock_rate: if track == Track::Video { 90_000 } else { 48_000 },
                network_time: now,
                contiguous: flags & 2 == 0,
                sender_report,
            },
        );
        let mut messages = 0;
        while let Some(out) = c.poll_output() {
            if let Output::Message(m) = out {
                messages += 1;
                // An AAC frame is at most 6144 bits a channel; a video message is one frame's
                // NAL units with 4-byte lengths, or a sequence header of parameter sets of
                // at most 1 KB each.
                assert!(m.payload.len() <= 4 * largest + 4096, "{}", m.payload.len());
            }
        }
        frames += 1;
        total += messages;
        assert!(total <= PER_FRAME * frames, "{total} messages from {frames} frames");
        assert!(messages <= 2 * MAX_QUEUED + PER_FRAME, "{messages} messages at once");
        let _ = c.is_stale(now);
    }
});
