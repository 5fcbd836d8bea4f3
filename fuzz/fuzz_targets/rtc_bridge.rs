//! RTMP to WebRTC conversion on arbitrary FLV tag bodies: the first byte picks audio (AAC to
//! Opus) or video (AVCC to Annex B, then RTP payloads), or raw frames straight into the RTP
//! packetizer as a WebRTC publisher's depacketized frames reach it; the rest is a sequence of
//! length-prefixed tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Instant;

use ringcast::rtc::bridge::{AacToOpus, AvcToAnnexB};
use ringcast::rtc::packetize::StreamPacketizer;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let mut video = AvcToAnnexB::default();
    let mut audio = AacToOpus::default();
    let mut packetizer = StreamPacketizer::default();
    let now = Instant::now();
    let mut ts = 0u32;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (tag, next) = tail.split_at(len);
        rest = next;
        ts = ts.wrapping_add(20);
        match selector % 3 {
            0 => {
                if let Ok(Some(unit)) = video.push(tag, ts) {
                    let _ = packetizer.h264(&unit.data, ts, now, unit.keyframe, None);
                }
            }
            1 => {
                let _ = audio.push(tag, ts);
            }
            _ => {
                let _ = packetizer.h264(tag, ts, now, true, None);
            }
        }
    }
});
