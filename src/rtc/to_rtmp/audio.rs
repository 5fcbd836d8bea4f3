//! Opus from WebRTC into FLV's AAC, pure (no clock, no I/O): each Opus packet is decoded
//! with libopus (the `opus` crate) at 48 kHz stereo, the PCM buffered and encoded in AAC-LC
//! frames of 1024 samples with libfdk-aac (the `fdk-aac` crate), as raw frames behind an
//! AudioSpecificConfig. Times are the Opus track's RTP times (48 kHz, already extended past
//! the 32-bit wrap by the caller), so the AAC frames land on the same timeline.
//!
//! Loss: a gap of up to [`MAX_CONCEALED`] is filled with libopus's concealment, so the AAC
//! stream stays continuous; a larger gap, or time going backwards further than that, restarts
//! the encoder at the new time. A packet libopus refuses is an error and its time becomes a
//! gap for the next packet to conceal.

use bytes::{BufMut, Bytes, BytesMut};
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

/// The FLV sound byte of AAC (10), 44 kHz (3, as FLV requires for AAC whatever the rate),
/// 16-bit, stereo.
const SOUND_AAC: u8 = 0xaf;
/// Samples per channel in an AAC-LC frame.
pub const AAC_FRAME: usize = 1024;
const CHANNELS: usize = 2;
/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_OPUS_FRAME: usize = 5760;
/// The longest gap filled by concealment, in samples (120 ms); longer ones restart the clock.
pub const MAX_CONCEALED: u64 = 5760;
/// AAC-LC at 128 kbps, stereo: transparent for what a browser's Opus carries at 32-64 kbps.
const BITRATE: u32 = 128_000;

/// Why a packet could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// libopus refused the packet.
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
    /// libfdk-aac refused to start or to encode.
    #[error("AAC encoder: {0}")]
    Aac(String),
}

/// One AAC frame, ready as an FLV audio tag body.
#[derive(Debug, Clone)]
pub struct AacFrame {
    /// The Opus track's RTP time (48 kHz, extended) of the frame's first sample; it may be
    /// before the first packet's by the encoder's delay.
    pub rtp_time: i64,
    /// `0xaf 0x01` and the raw AAC frame.
    pub body: Bytes,
}

/// One stream's Opus to AAC transcoder.
pub struct OpusToAac {
    decoder: opus::Decoder,
    encoder: Encoder,
    /// `0xaf 0x00` and the AudioSpecificConfig.
    sequence_header: Bytes,
    /// Encoder delay in samples: decoded AAC sample `n` is input sample `n - delay`.
    delay: i64,
    /// Decoded PCM not yet encoded, interleaved stereo; under a frame plus two packets.
    pcm: Vec<i16>,
    /// RTP time of the first sample the current encoder took.
    encoder_start: i64,
    /// AAC frames the current encoder produced.
    frames_out: i64,
    /// RTP time the next packet should have; `None` before the first.
    expected: Option<i64>,
    scratch: Vec<i16>,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusToAac")
            .field("expected", &self.expected)
            .field("buffered", &(self.pcm.len() / CHANNELS))
            .finish_non_exhaustive()
    }
}

fn encoder() -> Result<(Encoder, Bytes, i64, usize), AudioError> {
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(BITRATE),
        sample_rate: 48_000,
        transport: Transport::Raw,
        channels: ChannelMode::Stereo,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(|e| AudioError::Aac(e.to_string()))?;
    let info = encoder.info().map_err(|e| AudioError::Aac(e.to_string()))?;
    let asc = info
        .confBuf
        .get(..info.confSize as usize)
        .ok_or_else(|| AudioError::Aac("no AudioSpecificConfig".into()))?;
    let mut header = BytesMut::with_capacity(2 + asc.len());
    header.put_slice(&[SOUND_AAC, 0]);
    header.put_slice(asc);
    let out_len = (info.maxOutBufBytes as usize).max(2048);
    Ok((encoder, header.freeze(), i64::from(info.nDelay), out_len))
}

impl OpusToAac {
    /// A transcoder; fails only if libopus or libfdk-aac cannot start.
    pub fn new() -> Result<Self, AudioError> {
        let (encoder, sequence_header, delay, out_len) = encoder()?;
        Ok(Self {
            decoder: opus::Decoder::new(48_000, opus::Channels::Stereo)?,
            encoder,
            sequence_header,
            delay,
            pcm: Vec::with_capacity((AAC_FRAME + 2 * MAX_OPUS_FRAME) * CHANNELS),
            encoder_start: 0,
            frames_out: 0,
            expected: None,
            scratch: vec![0; MAX_OPUS_FRAME * CHANNELS],
            out: vec![0; out_len],
        })
    }

    /// The AAC sequence header tag body (`0xaf 0x00` and the AudioSpecificConfig).
    pub fn sequence_header(&self) -> &Bytes {
        &self.sequence_header
    }

    /// Restarts the AAC stream at RTP time `at`: what was buffered is dropped.
    fn restart(&mut self, at: i64) -> Result<(), AudioError> {
        let (encoder, _, delay, _) = encoder()?;
        self.encoder = encoder;
        self.delay = delay;
        self.pcm.clear();
        self.encoder_start = at;
        self.frames_out = 0;
        self.decoder.reset_state()?;
        Ok(())
    }

    /// Takes Opus packet `packet` at RTP time `rtp_time`; appends the AAC frames now
    /// complete to `out`.
    pub fn push(
        &mut self,
        packet: &[u8],
        rtp_time: i64,
        out: &mut Vec<AacFrame>,
    ) -> Result<(), AudioError> {
        match self.expected {
            None => self.restart(rtp_time)?,
            Some(e) if rtp_time > e && rtp_time - e <= MAX_CONCEALED as i64 => {
                // Concealment in 2.5 ms steps (the unit libopus decodes), 20 ms at a time.
                let mut gap = ((rtp_time - e) / 120 * 120) as usize;
                while gap > 0 {
                    let n = gap.min(960);
                    let got = self
                        .decoder
                        .decode(&[], &mut self.scratch[..n * CHANNELS], false)?;
                    self.pcm
                        .extend_from_slice(&self.scratch[..got.min(n) * CHANNELS]);
                    gap -= n;
                }
            }
            // A late or repeated packet: its time is already covered.
            Some(e) if rtp_time < e && e - rtp_time <= MAX_CONCEALED as i64 => return Ok(()),
            Some(e) if rtp_time != e => self.restart(rtp_time)?,
            Some(_) => {}
        }
        // The buffer now reaches this packet's time: a packet libopus refuses leaves its
        // span a gap for the next one to conceal.
        self.expected = Some(rtp_time);
        let n = self
            .decoder
            .decode(packet, &mut self.scratch, false)?
            .min(MAX_OPUS_FRAME);
        self.expected = Some(rtp_time + n as i64);
        self.pcm.extend_from_slice(&self.scratch[..n * CHANNELS]);
        self.encode(out)
    }

    fn encode(&mut self, out: &mut Vec<AacFrame>) -> Result<(), AudioError> {
        let frame = AAC_FRAME * CHANNELS;
        let mut offset = 0;
        while self.pcm.len() - offset >= frame {
            let info = self
                .encoder
                .encode(&self.pcm[offset..offset + frame], &mut self.out)
                .map_err(|e| AudioError::Aac(e.to_string()))?;
            // libfdk-aac takes a whole frame each call; a call that took nothing would loop.
            offset += info.input_consumed.clamp(1, frame);
            if info.output_size > 0 {
                let mut body = BytesMut::with_capacity(2 + info.output_size);
                body.put_slice(&[SOUND_AAC, 1]);
                body.put_slice(&self.out[..info.output_size.min(self.out.len())]);
                out.push(AacFrame {
                    rtp_time: self.encoder_start + self.frames_out * AAC_FRAME as i64 - self.delay,
                    body: body.freeze(),
                });
                self.frames_out += 1;
            }
        }
        self.pcm.drain(..offset);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` Opus packets of 20 ms of a 440 Hz tone.
    pub(crate) fn opus_packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
        let mut buf = vec![0u8; 4000];
        (0..n)
            .map(|p| {
                let pcm: Vec<i16> = (0..960 * 2)
                    .map(|i| {
                        let t = (p * 960 + i / 2) as f32 / 48_000.0;
                        ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
                    })
                    .collect();
                let len = enc.encode(&pcm, &mut buf).unwrap();
                buf[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn n_opus_frames_make_the_aac_frames_their_samples_fill() {
        let mut t = OpusToAac::new().unwrap();
        // AAC-LC, 48 kHz (index 3), stereo: 0x11 0x90.
        assert_eq!(&t.sequence_header()[..], &[0xaf, 0, 0x11, 0x90]);
        let mut out = Vec::new();
        let packets = opus_packets(100);
        for (i, p) in packets.iter().enumerate() {
            t.push(p, 1000 + i as i64 * 960, &mut out).unwrap();
        }
        // 2 s of audio is 93.75 AAC frames; the encoder holds back at most its delay.
        let delay_frames = (t.delay as usize).div_ceil(AAC_FRAME);
        assert!(
            (93 - delay_frames..=93).contains(&out.len()),
            "{} frames, delay {}",
            out.len(),
            t.delay
        );
        for (k, f) in out.iter().enumerate() {
            assert_eq!(f.rtp_time, 1000 + k as i64 * 1024 - t.delay);
            assert_eq!(&f.body[..2], &[0xaf, 1]);
        }
        // The AAC decodes (libfdk-aac's decoder) to the tone, not silence.
        let mut dec = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        dec.config_raw(&t.sequence_header()[2..]).unwrap();
        let mut pcm = vec![0i16; 8192];
        let mut energy = 0f64;
        for f in &out {
            dec.fill(&f.body[2..]).unwrap();
            dec.decode_frame(&mut pcm).unwrap();
            energy += pcm[..dec.decoded_frame_size()]
                .iter()
                .map(|s| f64::from(*s).powi(2))
                .sum::<f64>();
        }
        assert!(energy > 1e9, "energy {energy}");
    }

    #[test]
    fn loss_is_concealed_and_jumps_restart() {
        let mut t = OpusToAac::new().unwrap();
        let packets = opus_packets(60);
        let mut out = Vec::new();
        // Every fifth packet lost: concealment keeps the AAC frames evenly spaced.
        for (i, p) in packets.iter().enumerate().take(50) {
            if i % 5 != 4 {
                t.push(p, i as i64 * 960, &mut out).unwrap();
            }
        }
        for w in out.windows(2) {
            assert_eq!(w[1].rtp_time - w[0].rtp_time, 1024);
        }
        let before = out.len();
        // Garbage is an error, and a late packet is ignored.
        assert!(t.push(&[0xff; 3], 50 * 960, &mut out).is_err());
        t.push(&packets[0], 48 * 960, &mut out).unwrap();
        // A jump of 10 s restarts the frames at the new time.
        for (i, p) in packets.iter().enumerate().skip(51) {
            t.push(p, 480_000 + i as i64 * 960, &mut out).unwrap();
        }
        let after = &out[before..];
        assert!(!after.is_empty());
        assert_eq!(after[0].rtp_time, 480_000 + 51 * 960 - t.delay);
    }
}
