//! What a stream carries, read from its sequence headers for the API: codec, profile, level
//! and picture size from an AVC decoder configuration record's SPS, and AAC's profile, sample
//! rate and channels from its AudioSpecificConfig. Sans-IO; bad or truncated headers give
//! `None`, never a panic.
#![forbid(unsafe_code)]

/// Video as SRS's API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoInfo {
    /// `H264` or `H265`.
    pub codec: &'static str,
    /// `Baseline`, `Main`, `High`, ...; empty where unknown.
    pub profile: &'static str,
    /// `3.1` and so on; empty where unknown.
    pub level: String,
    /// Pixels; 0 where unknown.
    pub width: u32,
    /// Pixels; 0 where unknown.
    pub height: u32,
}

/// Audio as SRS's API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// `AAC`, `MP3`, ...
    pub codec: &'static str,
    /// Hz; 0 where unknown.
    pub sample_rate: u32,
    /// Channels; 0 where unknown.
    pub channels: u8,
    /// `LC`, `HE`, ...; empty where unknown.
    pub profile: &'static str,
}

/// Reads a video sequence header (an FLV video tag body).
pub fn video_info(tag: &[u8]) -> Option<VideoInfo> {
    let b0 = *tag.first()?;
    let hevc = |b0: u8| {
        if b0 & 0x80 != 0 {
            tag.get(1..5) == Some(b"hvc1")
        } else {
            b0 & 0x0f == 12
        }
    };
    if hevc(b0) {
        return Some(VideoInfo {
            codec: "H265",
            profile: "",
            level: String::new(),
            width: 0,
            height: 0,
        });
    }
    if b0 & 0x0f != 7 || tag.get(1) != Some(&0) {
        return None;
    }
    // AVCDecoderConfigurationRecord after the 5-byte tag header.
    let rec = tag.get(5..)?;
    let count = rec.get(5)? & 0x1f;
    let mut info = VideoInfo {
        codec: "H264",
        profile: avc_profile(*rec.get(1)?),
        level: avc_level(*rec.get(3)?),
        width: 0,
        height: 0,
    };
    if count > 0 {
        let len = usize::from(u16::from_be_bytes([*rec.get(6)?, *rec.get(7)?]));
        let sps = rec.get(8..8 + len)?;
        if let Some((w, h)) = sps_size(sps) {
            info.width = w;
            info.height = h;
        }
    }
    Some(info)
}

fn avc_profile(idc: u8) -> &'static str {
    match idc {
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High10",
        122 => "High422",
        244 => "High444",
        _ => "",
    }
}

fn avc_level(idc: u8) -> String {
    if idc == 0 {
        String::new()
    } else if idc.is_multiple_of(10) {
        format!("{}", idc / 10)
    } else {
        format!("{}.{}", idc / 10, idc % 10)
    }
}

/// Exp-Golomb bit reader over an RBSP.
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some(acc << 1 | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { v } else { -v })
    }
}

/// The picture size an H.264 SPS NAL unit declares, cropping applied.
fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    // Drop the NAL header and the emulation prevention bytes (00 00 03).
    let mut data = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        data.push(b);
    }
    let mut r = Bits { data, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma
        r.ue()?; // bit_depth_chroma
        r.bit()?; // qpprime_y_zero_transform_bypass
        if r.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed
    let w_mbs = r.ue()?.checked_add(1)?;
    let h_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference
    let mut width = w_mbs.checked_mul(16)?;
    let mut height = (2 - frame_mbs_only).checked_mul(h_units)?.checked_mul(16)?;
    if r.bit()? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sub_w, sub_h) = match chroma {
            0 => (1, 1),
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_x = sub_w;
        let unit_y = sub_h * (2 - frame_mbs_only);
        width = width.checked_sub(l.checked_add(rt)?.checked_mul(unit_x)?)?;
        height = height.checked_sub(t.checked_add(b)?.checked_mul(unit_y)?)?;
    }
    Some((width, height))
}

/// Reads an audio sequence header (an FLV audio tag body); for codecs without one, what the
/// tag's first byte says.
pub fn audio_info(tag: &[u8]) -> Option<AudioInfo> {
    let b0 = *tag.first()?;
    let format = b0 >> 4;
    if format != 10 {
        let codec = match format {
            2 | 14 => "MP3",
            11 => "Speex",
            13 => "Opus",
            _ => "Other",
        };
        return Some(AudioInfo {
            codec,
            sample_rate: [5512, 11025, 22050, 44100][usize::from((b0 >> 2) & 3)],
            channels: 1 + (b0 & 1),
            profile: "",
        });
    }
    // AudioSpecificConfig: 5 bits object type, 4 bits frequency index, 4 bits channels.
    let asc = tag.get(2..4)?;
    let object = asc[0] >> 3;
    let freq = ((asc[0] & 7) << 1) | (asc[1] >> 7);
    let channels = (asc[1] >> 3) & 0x0f;
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    Some(AudioInfo {
        codec: "AAC",
        sample_rate: RATES.get(usize::from(freq)).copied().unwrap_or(0),
        channels,
        profile: match object {
            1 => "Main",
            2 => "LC",
            3 => "SSR",
            5 => "HE",
            29 => "HEv2",
            _ => "",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_media() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/media/source.flv");
        let data = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (the test media lives beside the checkout)"));
        let mut r = crate::flv::FlvReader::new();
        r.push(&data);
        let (mut video, mut audio) = (None, None);
        while let Some(t) = r.next_tag().expect("source.flv parses") {
            match t.type_id {
                9 if video.is_none() => video = video_info(&t.data),
                8 if audio.is_none() => audio = audio_info(&t.data),
                _ => {}
            }
        }
        let v = video.expect("AVC sequence header");
        assert_eq!((v.codec, v.width, v.height), ("H264", 640, 360), "{v:?}");
        assert!(!v.profile.is_empty() && !v.level.is_empty(), "{v:?}");
        let a = audio.expect("AAC sequence header");
        assert_eq!((a.codec, a.profile), ("AAC", "LC"));
        assert_eq!((a.sample_rate, a.channels), (44100, 1), "{a:?}");
    }

    #[test]
    fn garbage_gives_none_not_a_panic() {
        assert_eq!(video_info(&[]), None);
        assert_eq!(video_info(&[0x17, 0, 0, 0, 0, 1, 100]), None);
        let bogus = [
            0x17, 0, 0, 0, 0, 1, 100, 0, 31, 0xff, 0xe1, 0, 4, 0x67, 0, 0, 0,
        ];
        let v = video_info(&bogus).expect("record read");
        assert_eq!((v.width, v.height), (0, 0));
        assert_eq!(audio_info(&[0xaf, 0]), None);
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x17) as u8).collect();
            let _ = video_info(&junk);
            let _ = sps_size(&junk);
            let _ = audio_info(&junk);
        }
    }
}
