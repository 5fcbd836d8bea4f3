//! What a frame is, apart from its wire forms: [`Frame`] (one audio, video or data message as
//! the hub shares it), its [`MediaKind`] and its [`FrameRole`] for a decoder joining
//! mid-stream, and the timestamp [`Jitter`] corrector that keeps a stream's timeline
//! monotonic across publisher reconnects.
//!
//! It owns no connection and no clock, and no byte layout beyond sniffing a tag body's first
//! bytes: the RTMP and FLV forms of a frame are [`super::wire`]'s.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::rtmp::message::{
    CSID_AUDIO, CSID_DATA, CSID_VIDEO, MSG_AUDIO, MSG_DATA_AMF0, MSG_VIDEO,
};

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An FLV audio tag body.
    Audio,
    /// An FLV video tag body.
    Video,
    /// An AMF0 data message (onMetaData), without the `@setDataFrame` wrapper.
    Data,
}

impl MediaKind {
    /// The kind of an RTMP message type, if it is media.
    pub fn from_type_id(type_id: u8) -> Option<Self> {
        match type_id {
            MSG_AUDIO => Some(Self::Audio),
            MSG_VIDEO => Some(Self::Video),
            MSG_DATA_AMF0 => Some(Self::Data),
            _ => None,
        }
    }

    /// The RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            Self::Audio => MSG_AUDIO,
            Self::Video => MSG_VIDEO,
            Self::Data => MSG_DATA_AMF0,
        }
    }

    /// The chunk stream this kind travels on in the shared form.
    pub fn csid(self) -> u32 {
        match self {
            Self::Audio => CSID_AUDIO,
            Self::Video => CSID_VIDEO,
            Self::Data => CSID_DATA,
        }
    }

    /// Index 0..3, for per-kind arrays.
    pub fn index(self) -> usize {
        match self {
            Self::Audio => 0,
            Self::Video => 1,
            Self::Data => 2,
        }
    }
}

/// What role a frame plays for a decoder joining mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRole {
    /// onMetaData.
    Metadata,
    /// AVC/HEVC decoder configuration record.
    VideoSequenceHeader,
    /// AAC AudioSpecificConfig.
    AudioSequenceHeader,
    /// A video frame a decoder can start from.
    Keyframe,
    /// Anything else.
    Other,
}

impl FrameRole {
    /// Sniffs the role of an FLV tag body.
    pub fn of(kind: MediaKind, payload: &[u8]) -> Self {
        match kind {
            MediaKind::Data => Self::Metadata,
            MediaKind::Audio => {
                // SoundFormat 10 = AAC, AACPacketType 0 = sequence header.
                match payload {
                    [b0, 0, ..] if b0 >> 4 == 10 => Self::AudioSequenceHeader,
                    _ => Self::Other,
                }
            }
            MediaKind::Video => {
                let Some(&b0) = payload.first() else {
                    return Self::Other;
                };
                let frame_type = (b0 >> 4) & 0x07;
                let sequence_header = if b0 & 0x80 != 0 {
                    // Enhanced RTMP: IsExHeader, PacketType 0 = SequenceStart.
                    b0 & 0x0f == 0
                } else {
                    // Legacy: CodecID 7 = AVC, 12 = HEVC (the de-facto extension);
                    // AVCPacketType 0 = sequence header.
                    matches!(b0 & 0x0f, 7 | 12) && payload.get(1) == Some(&0)
                };
                if sequence_header {
                    Self::VideoSequenceHeader
                } else if frame_type == 1 {
                    Self::Keyframe
                } else {
                    Self::Other
                }
            }
        }
    }
}

/// One media message, as every player on every core shares it.
///
/// `rtmp` is the message serialized once as RTMP chunks whose first header is type 1 (the
/// timestamp delta from the previous frame on the same chunk stream): a player that has sent
/// the previous frame of that chunk stream writes it as is. A player that starts here writes
/// its own type-0 header and `rtmp[rtmp_header_len..]`. Frames are made, and written in each
/// wire form, by [`super::wire`].
#[derive(Debug)]
pub struct Frame {
    /// Position in the stream, counting from 0 at the Source's creation; never reused.
    pub seq: u64,
    /// `seq` of the previous frame of the same kind: the frame whose timestamp the type-1
    /// header's delta is relative to. A player may send `rtmp` as is only right after it.
    pub prev_seq: Option<u64>,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Role for a joining decoder.
    pub role: FrameRole,
    /// Corrected timestamp, milliseconds.
    pub timestamp: u32,
    /// The FLV tag body (the RTMP message payload).
    pub payload: Bytes,
    /// The message as RTMP chunks with a type-1 first header.
    pub rtmp: Bytes,
    /// Length of the type-1 first header inside `rtmp`.
    pub rtmp_header_len: usize,
    /// True when the shared chunks cannot follow a type-0 header by slicing: continuation
    /// chunks repeat the extended timestamp of the first header, and a type-0 header's
    /// extended field (absolute time) differs from the type-1's (delta).
    pub needs_own_chunks: bool,
    /// The FLV tag header (11 bytes) and the PreviousTagSize after the body (4 bytes), built
    /// by the first HTTP-FLV player that needs it, on whichever core, and shared by all:
    /// streams nobody plays over HTTP never pay for it.
    pub(super) flv_framing: OnceLock<Bytes>,
}

impl Frame {
    /// True for a frame a decoder can start from.
    pub fn is_keyframe(&self) -> bool {
        self.role == FrameRole::Keyframe
    }
}

/// Largest forward or backward step kept as is; larger ones are treated as a discontinuity.
const MAX_JITTER_MS: i64 = 250;
/// Step used in place of a discontinuity, about one frame.
const DEFAULT_FRAME_MS: i64 = 10;

/// SRS's "full" time-jitter correction: a stream's output timeline starts at 0 and never
/// jumps, whatever the publisher's timestamps do (restart at 0 after a reconnect, wrap, leap).
/// Small steps backwards are kept, since audio and video interleave with a little skew.
#[derive(Debug, Default)]
pub struct Jitter {
    last_in: Option<u32>,
    last_out: i64,
}

impl Jitter {
    /// Maps a publisher timestamp onto the stream's timeline.
    pub fn correct(&mut self, ts: u32) -> u32 {
        let delta = match self.last_in {
            None => 0,
            Some(last) => {
                let d = i64::from(ts) - i64::from(last);
                if !(-MAX_JITTER_MS..=MAX_JITTER_MS).contains(&d) {
                    DEFAULT_FRAME_MS
                } else {
                    d
                }
            }
        };
        self.last_in = Some(ts);
        self.last_out = (self.last_out + delta).max(0);
        // The output timeline wraps like RTMP's 32-bit milliseconds after 49 days.
        self.last_out as u32
    }

    /// Forgets the publisher's last timestamp: the next one continues the timeline with a
    /// default step, as when a new publisher starts from 0.
    pub fn reset_input(&mut self) {
        if self.last_in.is_some() {
            self.last_in = None;
            self.last_out += DEFAULT_FRAME_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x17, 0, 0, 0, 0]),
            FrameRole::VideoSequenceHeader
        );
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x17, 1, 0, 0, 0]),
            FrameRole::Keyframe
        );
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x27, 1, 0, 0, 0]),
            FrameRole::Other
        );
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x1c, 0, 0, 0, 0]),
            FrameRole::VideoSequenceHeader
        );
        // Enhanced RTMP: keyframe, SequenceStart; keyframe, CodedFrames.
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x90, b'h', b'v', b'c', b'1']),
            FrameRole::VideoSequenceHeader
        );
        assert_eq!(
            FrameRole::of(MediaKind::Video, &[0x91, b'h', b'v', b'c', b'1']),
            FrameRole::Keyframe
        );
        assert_eq!(
            FrameRole::of(MediaKind::Audio, &[0xaf, 0, 0x12, 0x10]),
            FrameRole::AudioSequenceHeader
        );
        assert_eq!(
            FrameRole::of(MediaKind::Audio, &[0xaf, 1, 0x21]),
            FrameRole::Other
        );
        assert_eq!(FrameRole::of(MediaKind::Video, &[]), FrameRole::Other);
        assert_eq!(FrameRole::of(MediaKind::Audio, &[]), FrameRole::Other);
    }

    #[test]
    fn jitter_keeps_timeline_monotonic_across_restart() {
        let mut j = Jitter::default();
        assert_eq!(j.correct(5000), 0);
        assert_eq!(j.correct(5040), 40);
        assert_eq!(j.correct(5020), 20); // small skew kept
        assert_eq!(j.correct(5080), 80);
        // Publisher restarts at 0: a default step, not a jump back.
        j.reset_input();
        assert_eq!(j.correct(0), 90);
        assert_eq!(j.correct(40), 130);
        // A leap forward of an hour is a discontinuity.
        assert_eq!(j.correct(3_600_000), 140);
    }
}
