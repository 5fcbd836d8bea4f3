//! RTMP to WebRTC, sans-IO: FLV video tag bodies (H.264 in AVCC form with an
//! AVCDecoderConfigurationRecord) become Annex B access units, with SPS and PPS in front of
//! every keyframe so a player can start at any of them; str0m's packetizer then sends SPS and
//! PPS as one STAP-A and large NAL units as FU-A. AAC audio becomes Opus in [`AacToOpus`].

#![forbid(unsafe_code)]

use std::sync::Arc;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// FLV codec id of AVC (H.264).
const CODEC_AVC: u8 = 7;

/// Why a tag cannot be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    /// The tag or record is shorter than its fields say.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A frame came before the sequence header.
    #[error("video frame before the AVC sequence header")]
    NoSequenceHeader,
}

/// One access unit for the players.
#[derive(Debug, Clone)]
pub struct VideoUnit {
    /// Annex B NAL units, shared by every player.
    pub data: Arc<[u8]>,
    /// Presentation time in milliseconds (RTMP timestamp plus composition offset).
    pub pts_ms: u64,
    /// Whether a decoder can start here.
    pub keyframe: bool,
}

/// Converts one stream's FLV H.264 tags.
#[derive(Debug, Default)]
pub struct AvcToAnnexB {
    /// SPS and PPS in Annex B form, from the last sequence header.
    parameter_sets: Vec<u8>,
    nal_length_size: usize,
}

impl AvcToAnnexB {
    /// Takes an FLV video tag body with DTS `dts_ms`; returns the access unit it carries, or
    /// `None` for sequence headers, end-of-sequence and non-AVC tags.
    pub fn push(&mut self, body: &[u8], dts_ms: u32) -> Result<Option<VideoUnit>, BridgeError> {
        let [b0, packet_type, c0, c1, c2, data @ ..] = body else {
            return Err(BridgeError::Truncated("video tag"));
        };
        if b0 & 0x0f != CODEC_AVC {
            return Ok(None);
        }
        match packet_type {
            0 => {
                self.sequence_header(data)?;
                Ok(None)
            }
            1 => {
                if self.nal_length_size == 0 {
                    return Err(BridgeError::NoSequenceHeader);
                }
                // Composition time: signed 24 bits.
                let cts = (i32::from_be_bytes([*c0, *c1, *c2, 0])) >> 8;
                let keyframe = b0 >> 4 == 1;
                let mut out = Vec::with_capacity(data.len() + self.parameter_sets.len() + 16);
                let mut has_parameter_sets = false;
                let mut referenced = false;
                let mut slices = false;
                let mut rest = data;
                while !rest.is_empty() {
                    let n = self.nal_length_size;
                    let len_bytes = rest.get(..n).ok_or(BridgeError::Truncated("NAL length"))?;
                    let len = len_bytes
                        .iter()
                        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                    let nal = rest
                        .get(n..n + len)
                        .ok_or(BridgeError::Truncated("NAL unit"))?;
                    rest = &rest[n + len..];
                    if nal.is_empty() {
                        continue;
                    }
                    match nal[0] & 0x1f {
                        // Access unit delimiters mean nothing in RTP. SEI stays: decoders
                        // skip what they do not know, and timecodes, captions and the load
                        // tool's latency stamps ride in it.
                        9 => continue,
                        7 | 8 => has_parameter_sets = true,
                        1 | 5 => {
                            slices = true;
                            referenced |= nal[0] & 0x60 != 0;
                        }
                        _ => {}
                    }
                    out.extend_from_slice(&START_CODE);
                    out.extend_from_slice(nal);
                }
                // A frame no other frame references (nal_ref_idc 0, e.g. a B-frame) is
                // dropped, as SRS's `bframe discard`: WebRTC decoders do not reorder, and
                // nothing else needs it.
                if out.is_empty() || (slices && !referenced) {
                    return Ok(None);
                }
                if keyframe && !has_parameter_sets {
                    out.splice(0..0, self.parameter_sets.iter().copied());
                }
                let pts_ms = (i64::from(dts_ms) + i64::from(cts)).max(0) as u64;
                Ok(Some(VideoUnit {
                    data: out.into(),
                    pts_ms,
                    keyframe,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Reads an AVCDecoderConfigurationRecord.
    fn sequence_header(&mut self, record: &[u8]) -> Result<(), BridgeError> {
        let truncated = BridgeError::Truncated("AVC decoder configuration record");
        let [_version, _profile, _compat, _level, length_size, sps_count, rest @ ..] = record
        else {
            return Err(truncated);
        };
        let mut sets = Vec::new();
        let mut rest = rest;
        let mut read_sets = |count: usize, rest: &mut &[u8]| -> Result<(), BridgeError> {
            for _ in 0..count {
                let [hi, lo, tail @ ..] = *rest else {
                    return Err(BridgeError::Truncated("parameter set length"));
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let set = tail
                    .get(..len)
                    .ok_or(BridgeError::Truncated("parameter set"))?;
                sets.extend_from_slice(&START_CODE);
                sets.extend_from_slice(set);
                *rest = &tail[len..];
            }
            Ok(())
        };
        read_sets(usize::from(sps_count & 0x1f), &mut rest)?;
        let [pps_count, tail @ ..] = rest else {
            return Err(truncated);
        };
        let mut tail = tail;
        read_sets(usize::from(*pps_count), &mut tail)?;
        self.parameter_sets = sets;
        self.nal_length_size = usize::from(length_size & 0x03) + 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn sequence_header() -> Vec<u8> {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1f, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        b
    }

    fn frame(key: bool, cts: i32, nals: &[&[u8]]) -> Vec<u8> {
        let c = cts.to_be_bytes();
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
        for n in nals {
            b.extend_from_slice(&(n.len() as u32).to_be_bytes());
            b.extend_from_slice(n);
        }
        b
    }

    #[test]
    fn keyframes_carry_parameter_sets() {
        let mut c = AvcToAnnexB::default();
        assert_eq!(
            c.push(&frame(true, 0, &[&[0x65, 1]]), 0).unwrap_err(),
            BridgeError::NoSequenceHeader
        );
        assert!(c.push(&sequence_header(), 0).unwrap().is_none());
        let key = c
            .push(&frame(true, 40, &[&[0x09, 0xf0], &[0x65, 1, 2]]), 1000)
            .unwrap()
            .unwrap();
        let mut expected = Vec::new();
        for n in [SPS, PPS, &[0x65, 1, 2]] {
            expected.extend_from_slice(&START_CODE);
            expected.extend_from_slice(n);
        }
        assert_eq!(&key.data[..], &expected[..]);
        assert_eq!((key.pts_ms, key.keyframe), (1040, true));
        let delta = c
            .push(&frame(false, -20, &[&[0x41, 7]]), 1033)
            .unwrap()
            .unwrap();
        assert_eq!(&delta.data[..], &[0, 0, 0, 1, 0x41, 7]);
        assert_eq!((delta.pts_ms, delta.keyframe), (1013, false));
        let unreferenced_b = frame(false, 0, &[&[0x01, 7]]);
        assert!(c.push(&unreferenced_b, 1066).unwrap().is_none());
    }

    /// The test media's first seconds, as FLV tags.
    fn media_tags(type_id: u8, until_ms: u32) -> Vec<crate::flv::Tag> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media/source.flv");
        let data = std::fs::read(path).expect("the test media");
        let mut r = crate::flv::FlvReader::new();
        r.push(&data);
        let mut tags = Vec::new();
        while let Some(t) = r.next_tag().expect("source.flv parses") {
            if t.timestamp > until_ms {
                break;
            }
            if t.type_id == type_id {
                tags.push(t);
            }
        }
        tags
    }

    #[test]
    fn aac_becomes_opus_at_48_khz() {
        let mut t = AacToOpus::default();
        let mut units = Vec::new();
        for tag in media_tags(8, 2000) {
            units.extend(t.push(&tag.data, tag.timestamp).unwrap());
        }
        // 2 s of audio is 100 Opus frames of 20 ms, less what is still buffered.
        assert!((95..=101).contains(&units.len()), "{} packets", units.len());
        for w in units.windows(2) {
            assert_eq!(w[1].rtp_time - w[0].rtp_time, OPUS_FRAME as u64);
        }
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0f32; OPUS_FRAME];
        let mut energy = 0f32;
        for u in &units {
            let n = decoder.decode_float(&u.data, &mut pcm, false).unwrap();
            assert_eq!(n, OPUS_FRAME);
            energy += pcm.iter().map(|s| s * s).sum::<f32>();
        }
        assert!(energy > 1.0, "the audio is not silence: {energy}");
        // A jump in time re-anchors the clock.
        let tags = media_tags(8, 100);
        let before = units.last().unwrap().rtp_time;
        let mut after = Vec::new();
        for tag in &tags[1..] {
            after.extend(t.push(&tag.data, tag.timestamp + 60_000).unwrap());
        }
        assert!(after[0].rtp_time >= 60_000 * 48 && after[0].rtp_time > before);
        assert!(t.push(&[0xaf, 1, 0xff, 0xff], 0).is_err() || t.push(&[0xaf], 0).is_err());
    }

    /// A fuzzer find: AAC that made symphonia 0.5.5 index out of bounds (fixed in 0.6.1).
    #[test]
    fn malformed_aac_is_an_error() {
        let data = include_bytes!("../../fuzz/seeds/rtc_bridge/symphonia-aac-panic");
        let (_, mut rest) = data.split_first().unwrap();
        let mut audio = AacToOpus::default();
        let mut ts = 0u32;
        while let [hi, lo, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            let (tag, next) = tail.split_at(len);
            rest = next;
            ts = ts.wrapping_add(20);
            let _ = audio.push(tag, ts);
        }
        // Good audio still converts afterwards.
        let mut units = 0;
        for tag in media_tags(8, 1000) {
            units += audio
                .push(&tag.data, tag.timestamp + 100_000)
                .unwrap()
                .len();
        }
        assert!(units > 40, "{units}");
    }

    #[test]
    fn bad_tags_are_errors_not_panics() {
        let mut c = AvcToAnnexB::default();
        c.push(&sequence_header(), 0).unwrap();
        let good = frame(true, 0, &[&[0x65, 1, 2, 3]]);
        for cut in 0..good.len() {
            let _ = c.push(&good[..cut], 0);
        }
        let header = sequence_header();
        for cut in 0..header.len() {
            let mut fresh = AvcToAnnexB::default();
            let _ = fresh.push(&header[..cut], 0);
        }
        assert!(c.push(&[0x12, 0, 0, 0, 0], 0).unwrap().is_none(), "not AVC");
    }
}

/// One Opus packet for the players.
#[derive(Debug, Clone)]
pub struct AudioUnit {
    /// The Opus packet (20 ms), shared by every player.
    pub data: Arc<[u8]>,
    /// RTP time at 48 kHz.
    pub rtp_time: u64,
}

/// FLV sound format of AAC.
const SOUND_AAC: u8 = 10;
/// Opus frame: 20 ms at 48 kHz.
const OPUS_FRAME: usize = 960;
/// A timestamp this far (ms) from where the audio clock expects it re-anchors the clock:
/// the publisher restarted or the source jumped.
const RESYNC_MS: i64 = 500;

/// Transcodes one stream's AAC audio (FLV tag bodies) to Opus: decoded with symphonia,
/// resampled to 48 kHz linearly, encoded in 20 ms frames with libopus. Mono stays mono; more
/// channels are mixed down to stereo.
pub struct AacToOpus {
    decoder: Option<symphonia_codec_aac::AacDecoder>,
    encoder: Option<opus::Encoder>,
    rate: u32,
    channels: usize,
    /// Input samples not yet resampled, interleaved.
    input: Vec<f32>,
    /// Position of the next output sample in `input`, in input frames.
    pos: f64,
    /// 48 kHz samples waiting for a whole Opus frame, interleaved.
    pcm: Vec<f32>,
    /// RTP time of `pcm[0]`.
    clock: Option<u64>,
    packet: Vec<u8>,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Default for AacToOpus {
    fn default() -> Self {
        Self {
            decoder: None,
            encoder: None,
            rate: 0,
            channels: 0,
            input: Vec::new(),
            pos: 0.0,
            pcm: Vec::new(),
            clock: None,
            packet: vec![0; 4000],
        }
    }
}

/// Why audio cannot be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The tag is shorter than its header.
    #[error("truncated audio tag")]
    Truncated,
    /// The AAC decoder refused the config or a frame.
    #[error("AAC: {0}")]
    Aac(String),
    /// libopus refused.
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
}

impl AacToOpus {
    /// Takes an FLV audio tag body with timestamp `ts_ms`; returns the Opus packets that are
    /// complete now (none for the AudioSpecificConfig or non-AAC tags).
    pub fn push(&mut self, body: &[u8], ts_ms: u32) -> Result<Vec<AudioUnit>, AudioError> {
        use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
        use symphonia_core::codecs::audio::{
            AudioCodecParameters, AudioDecoder, AudioDecoderOptions,
        };
        use symphonia_core::packet::PacketRef;
        use symphonia_core::units::{Duration, Timestamp};

        let [b0, packet_type, data @ ..] = body else {
            return Err(AudioError::Truncated);
        };
        if b0 >> 4 != SOUND_AAC {
            return Ok(Vec::new());
        }
        if *packet_type == 0 {
            let mut params = AudioCodecParameters::new();
            params
                .for_codec(CODEC_ID_AAC)
                .with_extra_data(data.to_vec().into_boxed_slice());
            let decoder =
                symphonia_codec_aac::AacDecoder::try_new(&params, &AudioDecoderOptions::default())
                    .map_err(|e| AudioError::Aac(e.to_string()))?;
            self.decoder = Some(decoder);
            self.input.clear();
            self.pcm.clear();
            self.pos = 0.0;
            self.clock = None;
            return Ok(Vec::new());
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(Vec::new());
        };
        // A decoder panic on a malformed frame (0.5.5 had an index out of bounds the fuzzer
        // found; 0.6.1 fixes it) is contained to this frame, with the decoder reset: a
        // publisher's bad audio must not take the worker down.
        let packet = PacketRef::new(0, Timestamp::ZERO, Duration::ZERO, data);
        let decoded = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode_ref(&packet).map(|d| {
                let spec = (d.spec().rate(), d.spec().channels().count());
                let mut samples: Vec<f32> = Vec::with_capacity(d.frames() * spec.1);
                d.copy_to_vec_interleaved(&mut samples);
                (spec, d.frames(), samples)
            })
        })) {
            Ok(result) => result.map_err(|e| AudioError::Aac(e.to_string()))?,
            Err(_) => {
                decoder.reset();
                return Err(AudioError::Aac(
                    "the decoder failed on a malformed frame".into(),
                ));
            }
        };
        let ((rate, in_channels), frames, samples) = decoded;
        if frames == 0 {
            return Ok(Vec::new());
        }
        let in_channels = in_channels.max(1);
        let channels = in_channels.min(2);
        if self.encoder.is_none() || self.rate != rate || self.channels != channels {
            let layout = if channels == 1 {
                opus::Channels::Mono
            } else {
                opus::Channels::Stereo
            };
            self.encoder = Some(opus::Encoder::new(
                48_000,
                layout,
                opus::Application::Audio,
            )?);
            self.rate = rate.max(1);
            self.channels = channels;
            self.input.clear();
            self.pcm.clear();
            self.pos = 0.0;
            self.clock = None;
        }
        // Where this tag's audio starts on the 48 kHz clock, minus what is still buffered.
        let buffered = self.pcm.len() / channels
            + ((self.input.len() / channels) as f64 - self.pos).max(0.0) as usize * 48_000
                / self.rate as usize;
        let expected = self.clock.map(|c| c + buffered as u64);
        let at = u64::from(ts_ms) * 48;
        match expected {
            Some(e) if (e as i64 - at as i64).abs() <= RESYNC_MS * 48 => {}
            _ => {
                self.input.clear();
                self.pcm.clear();
                self.pos = 0.0;
                self.clock = Some(at);
            }
        }
        for frame in samples.chunks(in_channels) {
            self.input.extend_from_slice(&frame[..channels]);
        }
        self.resample();
        let mut out = Vec::new();
        let encoder = self.encoder.as_mut().expect("encoder made above");
        let frame_len = OPUS_FRAME * channels;
        while self.pcm.len() >= frame_len {
            let n = encoder.encode_float(&self.pcm[..frame_len], &mut self.packet)?;
            let clock = self.clock.get_or_insert(at);
            out.push(AudioUnit {
                data: self.packet[..n].into(),
                rtp_time: *clock,
            });
            *clock += OPUS_FRAME as u64;
            self.pcm.drain(..frame_len);
        }
        Ok(out)
    }

    /// Linear interpolation from `rate` to 48 kHz of what `input` holds.
    fn resample(&mut self) {
        let channels = self.channels;
        let available = self.input.len() / channels;
        let step = f64::from(self.rate) / 48_000.0;
        while self.pos + 1.0 < available as f64 {
            let i = self.pos as usize;
            let frac = (self.pos - i as f64) as f32;
            for c in 0..channels {
                let a = self.input[i * channels + c];
                let b = self.input[(i + 1) * channels + c];
                self.pcm.push(a + (b - a) * frac);
            }
            self.pos += step;
        }
        let consumed = (self.pos as usize).min(available);
        self.input.drain(..consumed * channels);
        self.pos -= consumed as f64;
    }
}
