//! From FLV tag bodies to elementary-stream pieces: which codec a video tag carries (legacy
//! AVC and HEVC, codec ids 7 and 12, and enhanced RTMP's `avc1`/`hvc1`), its composition
//! time and NAL units; the parameter sets of AVC and HEVC decoder configuration records; the
//! AudioSpecificConfig and the ADTS header built from it; AnnexB with an access unit
//! delimiter. Pure; bad or truncated input gives `None` or `false`, never a panic.

/// A video codec the muxers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    Hevc,
}

/// What a video tag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacket {
    /// A decoder configuration record.
    Config,
    /// Coded frames (length-prefixed NAL units).
    Frame,
    /// End of sequence, or something the muxers do not write (metadata, commands).
    Other,
}

/// A parsed video tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag<'a> {
    /// The codec.
    pub codec: VideoCodec,
    /// Config, frame or other.
    pub packet: VideoPacket,
    /// FLV frame type 1.
    pub keyframe: bool,
    /// Composition time offset, ms (PTS - DTS).
    pub cts: i32,
    /// The record or the NAL units.
    pub data: &'a [u8],
}

fn si24(b: &[u8]) -> i32 {
    let v = i32::from(b[0]) << 16 | i32::from(b[1]) << 8 | i32::from(b[2]);
    (v << 8) >> 8
}

/// Parses a video tag body; `None` for codecs the muxers do not write (VP6, AV1, ...).
pub fn video_tag(p: &[u8]) -> Option<VideoTag<'_>> {
    let b0 = *p.first()?;
    let keyframe = (b0 >> 4) & 0x07 == 1;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [frame type, packet type][fourcc][SI24 cts for CodedFrames]data.
        let codec = match p.get(1..5)? {
            b"avc1" => VideoCodec::H264,
            b"hvc1" => VideoCodec::Hevc,
            _ => return None,
        };
        let (packet, cts, data) = match b0 & 0x0f {
            0 => (VideoPacket::Config, 0, p.get(5..)?),
            1 => (VideoPacket::Frame, si24(p.get(5..8)?), p.get(8..)?),
            3 => (VideoPacket::Frame, 0, p.get(5..)?),
            _ => (VideoPacket::Other, 0, &p[5..]),
        };
        return Some(VideoTag {
            codec,
            packet,
            keyframe,
            cts,
            data,
        });
    }
    let codec = match b0 & 0x0f {
        7 => VideoCodec::H264,
        12 => VideoCodec::Hevc,
        _ => return None,
    };
    let packet = match *p.get(1)? {
        0 => VideoPacket::Config,
        1 => VideoPacket::Frame,
        _ => VideoPacket::Other,
    };
    Some(VideoTag {
        codec,
        packet,
        keyframe,
        cts: si24(p.get(2..5)?),
        data: p.get(5..)?,
    })
}

/// What a decoder configuration record says: the codec, the size of the NAL length prefix,
/// and the parameter sets as AnnexB, ready to go before each keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The codec.
    pub codec: VideoCodec,
    /// Bytes of each NAL unit's length prefix, 1 to 4.
    pub nal_length: usize,
    /// VPS (HEVC), SPS and PPS, each after a start code.
    pub params: Vec<u8>,
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

fn push_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(nal);
}

/// Reads an AVCDecoderConfigurationRecord or an HEVCDecoderConfigurationRecord.
pub fn video_config(codec: VideoCodec, rec: &[u8]) -> Option<VideoConfig> {
    let mut params = Vec::new();
    let nal_length;
    match codec {
        VideoCodec::H264 => {
            nal_length = usize::from(rec.get(4)? & 3) + 1;
            let mut at = 5;
            for mask in [0x1f, 0xff] {
                let count = rec.get(at)? & mask;
                at += 1;
                for _ in 0..count {
                    let len = usize::from(u16::from_be_bytes([*rec.get(at)?, *rec.get(at + 1)?]));
                    push_nal(&mut params, rec.get(at + 2..at + 2 + len)?);
                    at += 2 + len;
                }
            }
        }
        VideoCodec::Hevc => {
            nal_length = usize::from(rec.get(21)? & 3) + 1;
            let arrays = *rec.get(22)?;
            let mut at = 23;
            for _ in 0..arrays {
                let count = usize::from(u16::from_be_bytes([*rec.get(at + 1)?, *rec.get(at + 2)?]));
                at += 3;
                for _ in 0..count {
                    let len = usize::from(u16::from_be_bytes([*rec.get(at)?, *rec.get(at + 1)?]));
                    push_nal(&mut params, rec.get(at + 2..at + 2 + len)?);
                    at += 2 + len;
                }
            }
        }
    }
    (!params.is_empty()).then_some(VideoConfig {
        codec,
        nal_length,
        params,
    })
}

/// NAL unit types that the muxer writes itself (the access unit delimiter), or from the
/// configuration (parameter sets) before keyframes.
fn nal_type(codec: VideoCodec, nal: &[u8]) -> Option<u8> {
    let b = *nal.first()?;
    Some(match codec {
        VideoCodec::H264 => b & 0x1f,
        VideoCodec::Hevc => (b >> 1) & 0x3f,
    })
}

/// Appends one access unit as AnnexB to `out`: an access unit delimiter, the parameter sets
/// before a keyframe, then each NAL unit of `data` (length-prefixed as `config` says).
/// False, with `out` cleared, when `data` is not well-formed or holds no NAL unit.
pub fn annexb(config: &VideoConfig, keyframe: bool, data: &[u8], out: &mut Vec<u8>) -> bool {
    let aud: &[u8] = match config.codec {
        VideoCodec::H264 => &[0, 0, 0, 1, 0x09, 0xf0],
        VideoCodec::Hevc => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
    };
    out.extend_from_slice(aud);
    if keyframe {
        out.extend_from_slice(&config.params);
    }
    let (aud_type, n) = match config.codec {
        VideoCodec::H264 => (9, config.nal_length),
        VideoCodec::Hevc => (35, config.nal_length),
    };
    let mut rest = data;
    let mut nals = 0;
    while !rest.is_empty() {
        let Some(prefix) = rest.get(..n) else {
            out.clear();
            return false;
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        let Some(nal) = rest.get(n..n + len) else {
            out.clear();
            return false;
        };
        rest = &rest[n + len..];
        if nal.is_empty() || nal_type(config.codec, nal) == Some(aud_type) {
            continue;
        }
        push_nal(out, nal);
        nals += 1;
    }
    if nals == 0 {
        out.clear();
    }
    nals > 0
}

/// An AudioSpecificConfig, as far as ADTS needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = LC).
    pub object_type: u8,
    /// Sampling frequency index, 0..=12.
    pub frequency_index: u8,
    /// Channel configuration, 0..=7.
    pub channels: u8,
}

/// What an audio tag is: AAC's config, an AAC frame, or a format the muxers do not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// The AudioSpecificConfig.
    Config(&'a [u8]),
    /// One raw AAC frame.
    Frame(&'a [u8]),
}

/// Parses an audio tag body; `None` for anything but AAC (SoundFormat 10).
pub fn audio_tag(p: &[u8]) -> Option<AudioTag<'_>> {
    if p.first()? >> 4 != 10 {
        return None;
    }
    match p.get(1)? {
        0 => Some(AudioTag::Config(p.get(2..)?)),
        1 => Some(AudioTag::Frame(p.get(2..)?)),
        _ => None,
    }
}

/// Reads an AudioSpecificConfig; `None` when ADTS cannot carry it (an explicit frequency,
/// a channel layout in the config).
pub fn aac_config(asc: &[u8]) -> Option<AacConfig> {
    let (b0, b1) = (*asc.first()?, *asc.get(1)?);
    let object_type = b0 >> 3;
    let frequency_index = (b0 & 0x07) << 1 | b1 >> 7;
    let channels = (b1 >> 3) & 0x0f;
    if object_type == 0 || object_type == 31 || frequency_index > 12 || channels > 7 {
        return None;
    }
    Some(AacConfig {
        object_type,
        frequency_index,
        channels,
    })
}

/// The 7-byte ADTS header of one AAC frame of `payload` bytes. ADTS has two bits of profile:
/// HE-AAC (SBR, PS) is signalled as LC, which decoders upsample implicitly.
pub fn adts_header(c: &AacConfig, payload: usize) -> [u8; 7] {
    let profile = c.object_type.clamp(1, 4) - 1;
    let len = (payload + 7).min(0x1fff) as u16;
    [
        0xff,
        0xf1,
        profile << 6 | c.frequency_index << 2 | c.channels >> 2,
        (c.channels & 3) << 6 | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 7) as u8) << 5 | 0x1f,
        0xfc,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_enhanced_tags() {
        let t = video_tag(&[0x17, 1, 0, 0, 40, 0, 0, 0, 1, 0x65]).expect("avc");
        assert_eq!(
            (t.codec, t.packet, t.keyframe, t.cts),
            (VideoCodec::H264, VideoPacket::Frame, true, 40)
        );
        assert_eq!(t.data, &[0, 0, 0, 1, 0x65]);
        let t = video_tag(&[0x2c, 1, 0xff, 0xff, 0xff, 9]).expect("hevc");
        assert_eq!((t.codec, t.keyframe, t.cts), (VideoCodec::Hevc, false, -1));
        let t = video_tag(b"\x90hvc1rec").expect("ex config");
        assert_eq!(
            (t.codec, t.packet, t.data),
            (VideoCodec::Hevc, VideoPacket::Config, &b"rec"[..])
        );
        let t = video_tag(b"\x93hvc1nal").expect("ex framesx");
        assert_eq!(
            (t.packet, t.keyframe, t.data),
            (VideoPacket::Frame, true, &b"nal"[..])
        );
        assert_eq!(video_tag(b"\x90av01x"), None);
        assert_eq!(video_tag(&[0x12, 0]), None);
        assert_eq!(video_tag(&[]), None);
    }

    #[test]
    fn avc_config_and_annexb() {
        // version, profile, compat, level, 0xff (4-byte lengths), 1 SPS, 1 PPS.
        let rec = [
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0xaa, 1, 0, 1, 0x68,
        ];
        let c = video_config(VideoCodec::H264, &rec).expect("config");
        assert_eq!(c.nal_length, 4);
        assert_eq!(c.params, [0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68]);
        let mut out = Vec::new();
        // An AUD in the stream is dropped: the muxer writes its own.
        assert!(annexb(
            &c,
            true,
            &[0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x65, 1],
            &mut out
        ));
        assert_eq!(
            out,
            [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 1]
        );
        out.clear();
        assert!(!annexb(&c, false, &[0, 0, 0, 9, 0x41], &mut out));
        assert!(out.is_empty());
        assert_eq!(video_config(VideoCodec::H264, &rec[..9]), None);
    }

    #[test]
    fn aac_config_and_adts() {
        // LC, 44100 Hz (index 4), stereo.
        let c = aac_config(&[0x12, 0x10]).expect("asc");
        assert_eq!((c.object_type, c.frequency_index, c.channels), (2, 4, 2));
        assert_eq!(
            adts_header(&c, 100),
            [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]
        );
        assert_eq!(aac_config(&[0x17, 0x80]), None); // explicit frequency
        assert_eq!(audio_tag(&[0xaf, 1, 7]), Some(AudioTag::Frame(&[7])));
        assert_eq!(audio_tag(&[0x2f, 1, 7]), None);
    }
}
