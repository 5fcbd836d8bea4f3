//! Media messages as the hub shares them: [`Frame`] (one audio, video or data message, with
//! its payload and its RTMP wire form serialized once), codec sniffing of FLV tag bodies
//! (keyframes and AVC/HEVC/AAC sequence headers), and the timestamp [`Jitter`] corrector that
//! keeps a stream's timeline monotonic across publisher reconnects.
//!
//! It owns no connection and no clock; it must not know about players, cores or sockets.

pub mod codec;

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::rtmp::chunk::{self, HeaderFmt};

/// RTMP message type of an audio message.
pub const TYPE_AUDIO: u8 = 8;
/// RTMP message type of a video message.
pub const TYPE_VIDEO: u8 = 9;
/// RTMP message type of an AMF0 data message (onMetaData).
pub const TYPE_DATA_AMF0: u8 = 18;

/// Chunk stream id for data messages in the shared form (SRS's RTMP_CID_OverStream).
pub const CSID_DATA: u32 = 5;
/// Chunk stream id for video in the shared form (SRS's RTMP_CID_Video).
pub const CSID_VIDEO: u32 = 6;
/// Chunk stream id for audio in the shared form (SRS's RTMP_CID_Audio).
pub const CSID_AUDIO: u32 = 7;

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
            TYPE_AUDIO => Some(Self::Audio),
            TYPE_VIDEO => Some(Self::Video),
            TYPE_DATA_AMF0 => Some(Self::Data),
            _ => None,
        }
    }

    /// The RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            Self::Audio => TYPE_AUDIO,
            Self::Video => TYPE_VIDEO,
            Self::Data => TYPE_DATA_AMF0,
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
/// its own type-0 header and `rtmp[rtmp_header_len..]`, see [`Frame::type0_header`].
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
    flv_framing: OnceLock<Bytes>,
}

impl Frame {
    /// Serializes a message once for sharing. `delta` is the timestamp difference from the
    /// previous frame of the same kind on this stream, `prev_seq` that frame's seq.
    pub fn new(
        seq: u64,
        prev_seq: Option<u64>,
        kind: MediaKind,
        timestamp: u32,
        delta: u32,
        payload: Bytes,
        chunk_size: u32,
    ) -> Self {
        let csid = kind.csid();
        let mut rtmp = BytesMut::with_capacity(payload.len() + 32);
        chunk::encode_message(
            HeaderFmt::Type1,
            csid,
            delta,
            kind.type_id(),
            0,
            &payload,
            chunk_size,
            &mut rtmp,
        );
        let multi_chunk = payload.len() > chunk_size as usize;
        let ext = |t: u32| t >= 0x00FF_FFFF;
        Self {
            seq,
            prev_seq,
            kind,
            role: FrameRole::of(kind, &payload),
            timestamp,
            rtmp_header_len: chunk::header_len(HeaderFmt::Type1, csid, delta),
            needs_own_chunks: multi_chunk && (ext(timestamp) != ext(delta) || ext(delta)),
            payload,
            rtmp: rtmp.freeze(),
            flv_framing: OnceLock::new(),
        }
    }

    /// Appends the frame as an FLV tag: the shared tag header, the payload itself (no copy)
    /// and the shared PreviousTagSize. The timestamp is the stream's, as for RTMP players.
    pub fn flv_tag(&self, iov: &mut Vec<Bytes>) {
        let framing = self.flv_framing.get_or_init(|| {
            let size = self.payload.len().min(crate::flv::MAX_TAG_LEN) as u32;
            let mut b = BytesMut::with_capacity(15);
            b.put_u8(self.kind.type_id());
            b.put_slice(&size.to_be_bytes()[1..]);
            b.put_slice(&self.timestamp.to_be_bytes()[1..]);
            b.put_u8((self.timestamp >> 24) as u8);
            b.put_slice(&[0, 0, 0]);
            b.put_u32(size + crate::flv::TAG_HEADER_LEN as u32);
            b.freeze()
        });
        iov.push(framing.slice(..11));
        iov.push(
            self.payload
                .slice(..self.payload.len().min(crate::flv::MAX_TAG_LEN)),
        );
        iov.push(framing.slice(11..));
    }

    /// True for a frame a decoder can start from.
    pub fn is_keyframe(&self) -> bool {
        self.role == FrameRole::Keyframe
    }

    /// Appends the type-0 first header a player writes in front of `rtmp[rtmp_header_len..]`.
    pub fn type0_header(&self, stream_id: u32, out: &mut BytesMut) {
        chunk::encode_header(
            HeaderFmt::Type0,
            self.kind.csid(),
            self.timestamp,
            self.payload.len() as u32,
            self.kind.type_id(),
            stream_id,
            out,
        );
    }

    /// Appends the whole message with a type-0 first header: the slow path for a frame with
    /// [`Frame::needs_own_chunks`].
    pub fn own_chunks(&self, stream_id: u32, chunk_size: u32, out: &mut BytesMut) {
        chunk::encode_message(
            HeaderFmt::Type0,
            self.kind.csid(),
            self.timestamp,
            self.kind.type_id(),
            stream_id,
            &self.payload,
            chunk_size,
            out,
        );
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

    #[test]
    fn type0_header_plus_shared_tail_is_a_whole_message() {
        let payload = Bytes::from(vec![0x17u8; 300]);
        let f = Frame::new(0, None, MediaKind::Video, 1000, 40, payload.clone(), 128);
        assert!(!f.needs_own_chunks);
        let mut own = BytesMut::new();
        f.own_chunks(1, 128, &mut own);
        let mut spliced = BytesMut::new();
        f.type0_header(1, &mut spliced);
        spliced.extend_from_slice(&f.rtmp[f.rtmp_header_len..]);
        assert_eq!(own, spliced);
    }

    #[test]
    fn flv_form_is_a_whole_tag_and_built_once() {
        let payload = Bytes::from(vec![0x17u8, 1, 0, 0, 0, 9, 9]);
        let f = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0123_4567,
            40,
            payload.clone(),
            128,
        );
        let mut iov = Vec::new();
        f.flv_tag(&mut iov);
        f.flv_tag(&mut iov);
        assert_eq!(iov[0].as_ptr(), iov[3].as_ptr(), "framing rebuilt");
        assert_eq!(iov[1].as_ptr(), payload.as_ptr(), "payload copied");
        let mut expected = BytesMut::new();
        crate::flv::write_tag(9, 0x0123_4567, &payload, &mut expected);
        let got: Vec<u8> = iov[..3].iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn extended_timestamps_take_the_slow_path() {
        let payload = Bytes::from(vec![0x27u8; 300]);
        let f = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0100_0000,
            40,
            payload.clone(),
            128,
        );
        assert!(f.needs_own_chunks);
        let small = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0100_0000,
            40,
            payload.slice(..100),
            128,
        );
        assert!(!small.needs_own_chunks);
    }
}
