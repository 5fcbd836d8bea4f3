//! A stream's frames cut into RTP payloads once per core, for every player of the stream on
//! that core, sans-IO. Players' str0m sessions run in RTP mode: each takes the shared
//! payloads (`Arc`s) and adds only its own header, sequence numbers and encryption, and keeps
//! the packets for NACKs. With str0m's frame API every player's session packetized every
//! frame again: at 500 players of a 1 Mbps stream that was a fifth of the server's CPU.
//!
//! This module owns the payload cutting only; which player gets a frame (and when a player
//! may start) is the engine's business.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use str0m::format::{Codec, PayloadParams};
use str0m::media::MediaKind;
use str0m::unversioned::{H264Packetizer, Packetizer as _};

/// Largest RTP payload: str0m's 1150-byte datagram target less SRTP's 16-byte tag, rounded
/// down to the 16-byte cipher block, the size str0m's own packetizer is given.
pub const PAYLOAD_MTU: usize = 1120;

/// One frame as RTP payloads, shared by all players of a core.
#[derive(Debug)]
pub struct RtpFrame {
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec, for players whose payload type is chosen by codec (RTMP to WebRTC).
    pub codec: Codec,
    /// The publisher's exact format, for players that must match it (WebRTC publishers).
    pub params: Option<PayloadParams>,
    /// RTP timestamp in the codec's clock (90 kHz H.264, 48 kHz Opus).
    pub time: u32,
    /// The wall-clock time `time` was captured at, for sender reports.
    pub wallclock: Instant,
    /// Whether a player that waits for a keyframe may start at this frame.
    pub may_start: bool,
    /// The payloads in order; the last one of a video frame carries the marker bit.
    pub payloads: Vec<Arc<[u8]>>,
    /// The WebRTC publisher session whose frame it is; 0 for RTMP's. Players rebase `time`
    /// when it changes (a republish), as each publisher starts its RTP clock at random.
    pub source: u64,
}

/// Cuts one stream's frames. The H.264 packetizer keeps SPS and PPS between calls so that it
/// sends them as one STAP-A, hence one per stream and core.
#[derive(Debug, Default)]
pub struct StreamPacketizer {
    h264: H264Packetizer,
}

impl StreamPacketizer {
    /// An H.264 access unit in Annex B form (SPS and PPS as STAP-A, large NAL units as FU-A);
    /// `None` if it makes no payload.
    pub fn h264(
        &mut self,
        annex_b: &[u8],
        time: u32,
        wallclock: Instant,
        may_start: bool,
        params: Option<PayloadParams>,
    ) -> Option<RtpFrame> {
        let payloads = match self.h264.packetize(PAYLOAD_MTU, annex_b) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!("rtc h264 packetizer: {e}");
                return None;
            }
        };
        Some(RtpFrame {
            kind: MediaKind::Video,
            codec: Codec::H264,
            params,
            time,
            wallclock,
            may_start,
            payloads: payloads.into_iter().map(Arc::from).collect(),
            source: 0,
        })
    }

    /// An Opus frame: one payload, as it is.
    pub fn opus(
        data: Arc<[u8]>,
        time: u32,
        wallclock: Instant,
        params: Option<PayloadParams>,
    ) -> RtpFrame {
        RtpFrame {
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            params,
            time,
            wallclock,
            may_start: true,
            payloads: vec![data],
            source: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_aggregate_and_large_units_fragment() {
        let mut p = StreamPacketizer::default();
        let mut au = Vec::new();
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend(std::iter::repeat_n(0xab, 3000));
        let f = p.h264(&au, 9000, Instant::now(), true, None).unwrap();
        // STAP-A (type 24) with both parameter sets, then FU-A (type 28) fragments.
        assert_eq!(f.payloads[0][0] & 0x1f, 24);
        assert!(f.payloads[1..].iter().all(|x| x[0] & 0x1f == 28));
        assert!(f.payloads.iter().all(|x| x.len() <= PAYLOAD_MTU));
        let carried: usize = f.payloads[1..].iter().map(|x| x.len() - 2).sum();
        assert_eq!(
            carried, 3000,
            "the IDR's body, less its header byte, plus the header"
        );
        assert!(p.h264(&[], 0, Instant::now(), false, None).is_none());
    }
}
