//! RTMP to WebRTC conversion on arbitrary FLV tag bodies: the first byte picks audio (AAC to
//! Opus) or video (AVCC to Annex B), the rest is a sequence of length-prefixed tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::rtc::bridge::{AacToOpus, AvcToAnnexB};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let mut video = AvcToAnnexB::default();
    let mut audio = AacToOpus::default();
    let mut ts = 0u32;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (tag, next) = tail.split_at(len);
        rest = next;
        ts = ts.wrapping_add(20);
        if selector & 1 == 0 {
            let _ = video.push(tag, ts);
        } else {
            let _ = audio.push(tag, ts);
        }
    }
});
