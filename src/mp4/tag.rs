//! FLV tag bodies as the MP4 muxer needs them: a video sequence header (legacy AVC/HEVC, or
//! Enhanced RTMP's `avc1`/`hvc1` SequenceStart) becomes an `avcC`/`hvcC` record, an AAC
//! sequence header its AudioSpecificConfig, and a coded frame a [`Sample`] whose data is the
//! tag body past its header (length-prefixed NAL units, or a raw AAC frame), not copied.
//!
//! Sans-IO and total: a body it does not understand is [`Tag::Other`], a malformed record an
//! error, never a panic.

use bytes::Bytes;
use mp4_atom::{Atom, Avcc, Hvcc};

use crate::media::codec;
use crate::media::MediaKind;

/// Why a sequence header could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// The decoder configuration record does not parse.
    #[error("bad {0} decoder configuration record: {1}")]
    Record(&'static str, mp4_atom::Error),
    /// The AudioSpecificConfig is too short.
    #[error("AAC sequence header without an AudioSpecificConfig")]
    AudioConfig,
}

/// A video codec's configuration, as the sample entry carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264: `avc1` with its `avcC`.
    Avc(Avcc),
    /// HEVC: `hvc1` with its `hvcC`.
    Hevc(Hvcc),
}

/// A video track's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The codec and its record.
    pub codec: VideoCodec,
    /// Pixels, 0 where the header does not say.
    pub width: u16,
    /// Pixels, 0 where the header does not say.
    pub height: u16,
}

/// An AAC track's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AudioSpecificConfig, as the `esds` carries it.
    pub asc: Vec<u8>,
    /// Hz: the track's timescale.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
}

/// One coded frame of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time, milliseconds.
    pub dts: u64,
    /// Composition offset (presentation minus decode time), milliseconds.
    pub cts: i32,
    /// A sync sample (a video keyframe; every audio frame).
    pub sync: bool,
    /// The coded bytes: AVCC/HVCC NAL units, or one raw AAC frame.
    pub data: Bytes,
}

/// What an FLV tag body is to the muxer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// A video sequence header.
    VideoConfig(VideoConfig),
    /// An AAC sequence header.
    AudioConfig(AudioConfig),
    /// A coded video frame.
    Video(Sample),
    /// A coded AAC frame.
    Audio(Sample),
    /// Metadata, an end of sequence, another codec: nothing to mux.
    Other,
}

/// Reads an FLV tag body of `kind` at `dts` ms.
pub fn read_tag(kind: MediaKind, dts: u64, body: &Bytes) -> Result<Tag, TagError> {
    match kind {
        MediaKind::Video => read_video(dts, body),
        MediaKind::Audio => read_audio(dts, body),
        MediaKind::Data => Ok(Tag::Other),
    }
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extends the 24-bit big-endian composition time.
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

fn read_video(dts: u64, body: &Bytes) -> Result<Tag, TagError> {
    let Some(&b0) = body.first() else {
        return Ok(Tag::Other);
    };
    let key = (b0 >> 4) & 0x07 == 1;
    // (hevc, packet type, the record or frame's offset, cts)
    let (hevc, packet, at, cts) = if b0 & 0x80 != 0 {
        // Enhanced RTMP: [ExHeader|FrameType|PacketType] FourCC, then per packet type.
        let hevc = match body.get(1..5) {
            Some(b"avc1") => false,
            Some(b"hvc1") => true,
            _ => return Ok(Tag::Other),
        };
        match b0 & 0x0f {
            0 => (hevc, 0, 5, 0),
            1 if body.len() >= 8 => (hevc, 1, 8, si24(&body[5..8])),
            3 => (hevc, 1, 5, 0),
            _ => return Ok(Tag::Other),
        }
    } else {
        let hevc = match b0 & 0x0f {
            7 => false,
            12 => true,
            _ => return Ok(Tag::Other),
        };
        if body.len() < 5 {
            return Ok(Tag::Other);
        }
        (hevc, body[1], 5, si24(&body[2..5]))
    };
    let rest = body.slice(at.min(body.len())..);
    match packet {
        0 => {
            let name = if hevc { "hvcC" } else { "avcC" };
            let codec = if hevc {
                VideoCodec::Hevc(
                    Hvcc::decode_body(&mut rest.as_ref()).map_err(|e| TagError::Record(name, e))?,
                )
            } else {
                VideoCodec::Avc(
                    Avcc::decode_body(&mut rest.as_ref()).map_err(|e| TagError::Record(name, e))?,
                )
            };
            let (width, height) =
                codec::video_info(body).map_or((0, 0), |v| (clamp16(v.width), clamp16(v.height)));
            Ok(Tag::VideoConfig(VideoConfig {
                codec,
                width,
                height,
            }))
        }
        1 if !rest.is_empty() => Ok(Tag::Video(Sample {
            dts,
            cts,
            sync: key,
            data: rest,
        })),
        _ => Ok(Tag::Other),
    }
}

fn clamp16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn read_audio(dts: u64, body: &Bytes) -> Result<Tag, TagError> {
    // SoundFormat 10 is AAC; AACPacketType 0 the sequence header, 1 a raw frame.
    match body.as_ref() {
        [b0, 0, asc @ ..] if b0 >> 4 == 10 => {
            if asc.len() < 2 {
                return Err(TagError::AudioConfig);
            }
            let info = codec::audio_info(body);
            // An escaped rate (index 15) or channel layout 0 is in the config's own
            // fields; the common AAC defaults keep the timescale valid.
            let sample_rate = info
                .as_ref()
                .map(|a| a.sample_rate)
                .filter(|r| *r > 0)
                .unwrap_or(48_000);
            let channels = info
                .map(|a| u16::from(a.channels))
                .filter(|c| *c > 0)
                .unwrap_or(2);
            Ok(Tag::AudioConfig(AudioConfig {
                asc: asc.to_vec(),
                sample_rate,
                channels,
            }))
        }
        [b0, 1, _, ..] if b0 >> 4 == 10 => Ok(Tag::Audio(Sample {
            dts,
            cts: 0,
            sync: true,
            data: body.slice(2..),
        })),
        _ => Ok(Tag::Other),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real AVC sequence header: profile 100, level 31, one SPS and one PPS.
    pub(crate) const AVC_HEADER: &[u8] = &[
        0x17, 0, 0, 0, 0, 1, 100, 0, 31, 0xff, 0xe1, 0, 25, 0x67, 0x64, 0x00, 0x1f, 0xac, 0x24,
        0x84, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0, 0, 3, 0, 0x40, 0, 0, 0x0c, 0x23, 0xc6, 0x0c,
        0x92, 1, 0, 5, 0x68, 0xee, 0x32, 0xc8, 0xb0,
    ];

    #[test]
    fn avc_header_and_frames() {
        let tag = read_tag(MediaKind::Video, 0, &Bytes::from_static(AVC_HEADER)).expect("valid");
        let Tag::VideoConfig(v) = tag else {
            panic!("{tag:?}")
        };
        assert!(matches!(v.codec, VideoCodec::Avc(ref a) if a.avc_profile_indication == 100));
        assert_eq!((v.width, v.height), (1280, 720));
        // A keyframe with a composition offset of 80 ms, and one of -40.
        let key = Bytes::from_static(&[0x17, 1, 0, 0, 80, 0, 0, 0, 1, 0x65]);
        let Tag::Video(s) = read_tag(MediaKind::Video, 40, &key).expect("valid") else {
            panic!()
        };
        assert_eq!(
            (s.dts, s.cts, s.sync, &s.data[..]),
            (40, 80, true, &key[5..])
        );
        let back = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        let Tag::Video(s) = read_tag(MediaKind::Video, 80, &back).expect("valid") else {
            panic!()
        };
        assert_eq!((s.cts, s.sync), (-40, false));
    }

    #[test]
    fn enhanced_rtmp_frames() {
        let mut body = vec![0x90, b'a', b'v', b'c', b'1'];
        body.extend_from_slice(&AVC_HEADER[5..]);
        assert!(matches!(
            read_tag(MediaKind::Video, 0, &Bytes::from(body)),
            Ok(Tag::VideoConfig(_))
        ));
        let coded = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 1, 0x26]);
        let Tag::Video(s) = read_tag(MediaKind::Video, 0, &coded).expect("valid") else {
            panic!()
        };
        assert_eq!((s.cts, s.sync, s.data.len()), (40, true, 5));
        let x = Bytes::from_static(&[0xa3, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x02]);
        let Tag::Video(s) = read_tag(MediaKind::Video, 0, &x).expect("valid") else {
            panic!()
        };
        assert_eq!((s.cts, s.sync, s.data.len()), (0, false, 5));
        let av1 = Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1', 1]);
        assert_eq!(read_tag(MediaKind::Video, 0, &av1).ok(), Some(Tag::Other));
    }

    #[test]
    fn aac_header_and_frames() {
        let Tag::AudioConfig(a) = read_tag(
            MediaKind::Audio,
            0,
            &Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        )
        .expect("valid") else {
            panic!()
        };
        assert_eq!(
            (a.asc.as_slice(), a.sample_rate, a.channels),
            (&[0x12, 0x10][..], 44100, 2)
        );
        let Tag::Audio(s) = read_tag(
            MediaKind::Audio,
            23,
            &Bytes::from_static(&[0xaf, 1, 0x21, 0x1b]),
        )
        .expect("valid") else {
            panic!()
        };
        assert_eq!((s.dts, s.sync, &s.data[..]), (23, true, &[0x21, 0x1b][..]));
        assert!(read_tag(MediaKind::Audio, 0, &Bytes::from_static(&[0xaf, 0, 0x12])).is_err());
        assert_eq!(
            read_tag(MediaKind::Audio, 0, &Bytes::from_static(&[0x2f, 1, 2])).ok(),
            Some(Tag::Other),
            "MP3 is not muxed"
        );
    }

    #[test]
    fn garbage_is_an_error_or_other_never_a_panic() {
        for len in 0..48 {
            for seed in 0..8u8 {
                let junk: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(seed) ^ 0x17)
                    .collect();
                let junk = Bytes::from(junk);
                let _ = read_tag(MediaKind::Video, 0, &junk);
                let _ = read_tag(MediaKind::Audio, 0, &junk);
            }
        }
        assert!(read_tag(
            MediaKind::Video,
            0,
            &Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])
        )
        .is_err());
    }
}
