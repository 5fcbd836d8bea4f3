//! The MPEG-TS muxer: PAT and PMT at the start of each segment and again when the tracks
//! change, PES packets with PTS/DTS, the PCR on the video PID (on the audio PID for a stream
//! without video), and a continuity counter per PID. Video goes out as AnnexB with an access
//! unit delimiter and, before each keyframe, the parameter sets of the decoder configuration;
//! AAC goes out as ADTS built from the AudioSpecificConfig, several frames to a PES packet
//! (as nginx-rtmp does, `hls_max_audio_delay`): a 23 ms AAC frame alone in a PES took three
//! TS packets, half of them stuffing, and the segments were 10% larger than nginx-rtmp's for
//! the same stream. Pure: samples in, bytes out.
//!
//! It knows nothing of segments or playlists ([`super::segmenter`] decides where one ends) and
//! nothing of FLV beyond the parsed samples [`super::es`] gives it.

use bytes::{BufMut, Bytes, BytesMut};

use super::es::{self, AacConfig, VideoCodec, VideoConfig};
use super::mux::{AudioSample, Muxer, Tracks, VideoSample};

/// TS packet size.
pub const PACKET: usize = 188;
/// SRS's PIDs, so tools that expect them (and captures compared against SRS) line up.
pub const PID_PAT: u16 = 0;
/// The program map table's PID.
pub const PID_PMT: u16 = 0x1001;
/// The video elementary stream's PID.
pub const PID_VIDEO: u16 = 0x100;
/// The audio elementary stream's PID.
pub const PID_AUDIO: u16 = 0x101;

/// PES stream ids.
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
/// PMT stream types.
const TYPE_H264: u8 = 0x1b;
const TYPE_HEVC: u8 = 0x24;
const TYPE_AAC: u8 = 0x0f;
/// PTS, DTS and PCR count a 90 kHz clock in 33 bits.
const MASK_33: u64 = (1 << 33) - 1;
/// How far (90 kHz) the first AAC frame of an audio PES may lead the frame that closes it:
/// nginx-rtmp's default `hls_max_audio_delay` (300 ms). A demuxer gets the PES's frames at
/// once and times each from the PTS and the frame length; the delay only bounds how far the
/// audio trails the video in the multiplex.
const MAX_AUDIO_DELAY: u64 = 300 * 90;
/// The most ADTS bytes one audio PES carries, so that its PES length fits in 16 bits.
const MAX_AUDIO_PES: usize = 0xff00;
/// How far (90 kHz) a frame's timestamp may stray from where its PES's PTS and the frames
/// before it in that PES put it (nginx-rtmp's `hls_sync`, 2 ms): a decoder times the frames
/// of a PES by their sample count, so a gap or a jump starts a new PES.
const AUDIO_SYNC: u64 = 2 * 90;
/// AAC's sampling frequencies by index.
const AAC_RATES: [u64; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Writes one segment's TS packets into a buffer; [`Muxer::finish`] hands it out.
#[derive(Debug, Default)]
pub struct TsMuxer {
    out: BytesMut,
    /// Continuity counters of PAT, PMT, video and audio.
    cc: [u8; 4],
    pmt_version: u8,
    tracks: Tracks,
    /// Scratch for one access unit, reused.
    es: Vec<u8>,
    /// ADTS frames waiting to go out as one PES, the PTS of the first of them and how many.
    audio: Vec<u8>,
    audio_pts: u64,
    audio_frames: u64,
}

fn cc_slot(pid: u16) -> usize {
    match pid {
        PID_PAT => 0,
        PID_PMT => 1,
        PID_VIDEO => 2,
        _ => 3,
    }
}

impl TsMuxer {
    /// A muxer with no tracks yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn pcr_pid(&self) -> u16 {
        if self.tracks.video.is_some() {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }

    fn write_tables(&mut self) {
        // PAT: program 1 at the PMT's PID.
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&[0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01]);
        pat.extend_from_slice(&(0xe000 | PID_PMT).to_be_bytes());
        self.write_section(PID_PAT, 0x00, &pat);

        let mut pmt = Vec::with_capacity(32);
        pmt.extend_from_slice(&[0x00, 0x01, 0xc1 | (self.pmt_version << 1), 0x00, 0x00]);
        pmt.extend_from_slice(&(0xe000 | self.pcr_pid()).to_be_bytes());
        pmt.extend_from_slice(&[0xf0, 0x00]);
        let mut stream = |kind: u8, pid: u16| {
            pmt.push(kind);
            pmt.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            pmt.extend_from_slice(&[0xf0, 0x00]);
        };
        if let Some(v) = &self.tracks.video {
            let kind = match v.codec {
                VideoCodec::H264 => TYPE_H264,
                VideoCodec::Hevc => TYPE_HEVC,
            };
            stream(kind, PID_VIDEO);
        }
        if self.tracks.audio.is_some() {
            stream(TYPE_AAC, PID_AUDIO);
        }
        self.write_section(PID_PMT, 0x02, &pmt);
    }

    /// One PSI section (table id, syntax header, `body` after the section length, CRC) in one
    /// packet: ours are far below 184 bytes.
    fn write_section(&mut self, pid: u16, table_id: u8, body: &[u8]) {
        let mut section = Vec::with_capacity(body.len() + 8);
        section.push(table_id);
        let len = (body.len() + 4) as u16;
        section.extend_from_slice(&(0xb000 | len).to_be_bytes());
        section.extend_from_slice(body);
        let crc = crc32_mpeg(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let start = self.out.len();
        self.packet_header(pid, true, false);
        self.out.put_u8(0); // pointer_field
        self.out.extend_from_slice(&section);
        self.out.resize(start + PACKET, 0xff);
    }

    fn packet_header(&mut self, pid: u16, start: bool, adaptation: bool) {
        let slot = cc_slot(pid);
        let cc = self.cc[slot];
        self.cc[slot] = (cc + 1) & 0x0f;
        self.out.put_u8(0x47);
        self.out.put_u16(u16::from(start) << 14 | (pid & 0x1fff));
        self.out.put_u8(if adaptation { 0x30 } else { 0x10 } | cc);
    }

    /// Writes the waiting AAC frames as one PES packet, if there are any.
    fn flush_audio(&mut self) {
        if self.audio.is_empty() {
            return;
        }
        std::mem::swap(&mut self.es, &mut self.audio);
        let pts = self.audio_pts;
        let header = pes_header(STREAM_ID_AUDIO, pts, pts, self.es.len());
        let pcr = (self.pcr_pid() == PID_AUDIO).then_some(pts);
        self.write_pes(PID_AUDIO, &header, pcr, pcr.is_some());
        // `write_pes` left `es` empty: it becomes the next frames' buffer.
        std::mem::swap(&mut self.es, &mut self.audio);
    }

    /// One PES packet split into TS packets; the PCR (and the random-access flag) go in the
    /// first packet's adaptation field.
    fn write_pes(&mut self, pid: u16, header: &[u8], pcr: Option<u64>, random_access: bool) {
        let mut data: &[u8] = header;
        // Taken out while the packets are written into `self.out`, and put back for reuse.
        let es = std::mem::take(&mut self.es);
        let mut payload: &[u8] = &es;
        let mut first = true;
        while !data.is_empty() || !payload.is_empty() {
            let mut af: Vec<u8> = Vec::new();
            if first && (pcr.is_some() || random_access) {
                let flags =
                    if random_access { 0x40 } else { 0 } | if pcr.is_some() { 0x10 } else { 0 };
                af.push(flags);
                if let Some(pcr) = pcr {
                    let base = pcr & MASK_33;
                    af.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) << 7) as u8 | 0x7e,
                        0x00,
                    ]);
                }
            }
            let mut af_total = if af.is_empty() { 0 } else { 1 + af.len() };
            let remaining = data.len() + payload.len();
            let take = remaining.min(PACKET - 4 - af_total);
            let stuffing = PACKET - 4 - af_total - take;
            if stuffing > 0 {
                if af_total == 0 {
                    if stuffing >= 2 {
                        af.push(0x00);
                        af.resize(stuffing - 1, 0xff);
                    }
                    af_total = stuffing;
                } else {
                    af.resize(af.len() + stuffing, 0xff);
                    af_total += stuffing;
                }
            }
            self.packet_header(pid, first, af_total > 0);
            if af_total > 0 {
                self.out.put_u8((af_total - 1) as u8);
                self.out.extend_from_slice(&af);
            }
            let mut left = take;
            let from_header = left.min(data.len());
            self.out.extend_from_slice(&data[..from_header]);
            data = &data[from_header..];
            left -= from_header;
            self.out.extend_from_slice(&payload[..left]);
            payload = &payload[left..];
            first = false;
        }
        self.es = es;
        self.es.clear();
    }
}

/// The PES header: start code, stream id, length (0, unbounded, for video), PTS and DTS.
fn pes_header(stream_id: u8, pts: u64, dts: u64, payload_len: usize) -> Vec<u8> {
    let with_dts = pts != dts;
    let header_data = if with_dts { 10 } else { 5 };
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(&[0x00, 0x00, 0x01, stream_id]);
    let len = 3 + header_data + payload_len;
    let len = if stream_id == STREAM_ID_VIDEO || len > 0xffff {
        0
    } else {
        len as u16
    };
    h.extend_from_slice(&len.to_be_bytes());
    h.push(0x80);
    h.push(if with_dts { 0xc0 } else { 0x80 });
    h.push(header_data as u8);
    put_timestamp(&mut h, if with_dts { 0x3 } else { 0x2 }, pts);
    if with_dts {
        put_timestamp(&mut h, 0x1, dts);
    }
    h
}

fn put_timestamp(out: &mut Vec<u8>, prefix: u8, t: u64) {
    let t = t & MASK_33;
    out.extend_from_slice(&[
        prefix << 4 | ((t >> 29) as u8 & 0x0e) | 1,
        (t >> 22) as u8,
        ((t >> 14) as u8 & 0xfe) | 1,
        (t >> 7) as u8,
        ((t << 1) as u8 & 0xfe) | 1,
    ]);
}

/// CRC-32/MPEG-2, the PSI sections' checksum.
fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

impl Muxer for TsMuxer {
    const TRACKS_IN_INIT: bool = false;

    fn tracks(&mut self, tracks: &Tracks) {
        // Frames of the old tracks go before the tables that change them.
        self.flush_audio();
        if &self.tracks != tracks {
            self.pmt_version = (self.pmt_version + 1) & 0x1f;
            self.tracks = tracks.clone();
        }
        self.write_tables();
    }

    fn video(&mut self, s: &VideoSample<'_>, config: &VideoConfig) {
        if !self.audio.is_empty() && s.dts >= self.audio_pts + MAX_AUDIO_DELAY {
            self.flush_audio();
        }
        self.es.clear();
        if !es::annexb(config, s.keyframe, s.data, &mut self.es) {
            return;
        }
        let header = pes_header(STREAM_ID_VIDEO, s.pts, s.dts, self.es.len());
        let pcr = (self.pcr_pid() == PID_VIDEO).then_some(s.dts);
        self.write_pes(PID_VIDEO, &header, pcr, s.keyframe);
    }

    fn audio(&mut self, s: &AudioSample<'_>, config: &AacConfig) {
        let adts = es::adts_header(config, s.data.len());
        let len = adts.len() + s.data.len();
        if !self.audio.is_empty() {
            let rate = AAC_RATES[usize::from(config.frequency_index).min(AAC_RATES.len() - 1)];
            let expected = self.audio_pts + self.audio_frames * 1024 * 90_000 / rate;
            if s.dts.abs_diff(expected) > AUDIO_SYNC
                || s.dts >= self.audio_pts + MAX_AUDIO_DELAY
                || self.audio.len() + len > MAX_AUDIO_PES
            {
                self.flush_audio();
            }
        }
        if self.audio.is_empty() {
            self.audio_pts = s.dts;
            self.audio_frames = 0;
        }
        self.audio_frames += 1;
        self.audio.extend_from_slice(&adts);
        self.audio.extend_from_slice(s.data);
    }

    fn init(&mut self) -> Option<Bytes> {
        None
    }

    /// TS is written as it comes, but for the waiting audio: a cut is the bytes so far and
    /// those frames, whatever `end` is.
    fn cut(&mut self, _end: u64) -> Bytes {
        self.flush_audio();
        self.out.split().freeze()
    }

    fn finish(&mut self) -> Bytes {
        self.flush_audio();
        self.out.split().freeze()
    }
}

/// Checks TS packets as a demuxer would: whole 188-byte packets with the sync byte, and on
/// each PID a continuity counter that steps by one from packet to packet carrying payload.
/// The first error, with the packet's index; for tests and the fuzz target.
pub fn check_continuity(ts: &[u8]) -> Result<(), String> {
    if !ts.len().is_multiple_of(PACKET) {
        return Err(format!("{} bytes is not whole packets", ts.len()));
    }
    let mut last: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
    for (i, p) in ts.chunks(PACKET).enumerate() {
        if p[0] != 0x47 {
            return Err(format!("packet {i}: no sync byte"));
        }
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
        let cc = p[3] & 0x0f;
        if p[3] & 0x10 == 0 {
            continue;
        }
        if let Some(prev) = last.insert(pid, cc) {
            if cc != (prev + 1) & 0x0f {
                return Err(format!("packet {i}: pid {pid:#x} cc {prev} then {cc}"));
            }
        }
        if p[3] & 0x20 != 0 && usize::from(p[4]) > PACKET - 5 {
            return Err(format!("packet {i}: adaptation field too long"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_the_standard_check_string() {
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn timestamps_and_pes_header() {
        let h = pes_header(STREAM_ID_VIDEO, 2 * 90_000 + 3600, 2 * 90_000, 10);
        assert_eq!(&h[..4], &[0, 0, 1, 0xe0]);
        assert_eq!(&h[4..6], &[0, 0], "video PES length is unbounded");
        assert_eq!((h[7], h[8]), (0xc0, 10));
        let a = pes_header(STREAM_ID_AUDIO, 90_000, 90_000, 100);
        assert_eq!(u16::from_be_bytes([a[4], a[5]]), 3 + 5 + 100);
        assert_eq!(a[7], 0x80);
        // 90000 = 0x15f90: PTS bytes as the spec lays them out.
        assert_eq!(&a[9..14], &[0x21, 0x00, 0x05, 0xbf, 0x21]);
    }

    #[test]
    fn every_pes_length_packs_into_whole_packets() {
        let mut m = TsMuxer::new();
        let tracks = Tracks {
            video: None,
            audio: Some(AacConfig {
                object_type: 2,
                frequency_index: 4,
                channels: 2,
            }),
            ..Tracks::default()
        };
        m.tracks(&tracks);
        let config = tracks.audio.expect("audio");
        for len in 0..600 {
            let data = vec![0x5a; len];
            // Frames the audio delay apart: each is a PES of its own.
            m.audio(
                &AudioSample {
                    dts: len as u64 * MAX_AUDIO_DELAY,
                    data: &data,
                },
                &config,
            );
        }
        let ts = m.finish();
        check_continuity(&ts).expect("continuity");
        assert_eq!(&ts[..4], &[0x47, 0x40, 0x00, 0x10], "PAT first");
        assert_eq!(audio_pes(&ts).len(), 600);
    }

    /// The PTS of each audio PES in `ts`.
    fn audio_pes(ts: &[u8]) -> Vec<u64> {
        ts.chunks(PACKET)
            .filter(|p| u16::from_be_bytes([p[1], p[2]]) == 0x4000 | PID_AUDIO)
            .map(|p| {
                let at = if p[3] & 0x20 != 0 {
                    5 + usize::from(p[4])
                } else {
                    4
                };
                let t = &p[at + 9..at + 14];
                u64::from(t[0] >> 1 & 7) << 30
                    | u64::from(t[1]) << 22
                    | u64::from(t[2] >> 1) << 15
                    | u64::from(t[3]) << 7
                    | u64::from(t[4] >> 1)
            })
            .collect()
    }

    #[test]
    fn aac_frames_share_a_pes_until_the_delay_a_gap_or_a_cut() {
        let mut m = TsMuxer::new();
        let config = AacConfig {
            object_type: 2,
            frequency_index: 3, // 48 kHz: 1920 ticks a frame
            channels: 2,
        };
        let tracks = Tracks {
            audio: Some(config),
            ..Tracks::default()
        };
        m.tracks(&tracks);
        let frame = [0x21; 300];
        let write = |m: &mut TsMuxer, dts: u64| {
            m.audio(&AudioSample { dts, data: &frame }, &config);
        };
        // 20 frames, 400 ms: one PES for the first 300 ms (15 frames), one for the rest.
        for i in 0..20 {
            write(&mut m, 90_000 + i * 1920);
        }
        // A 100 ms gap starts a new PES; so does a cut.
        write(&mut m, 90_000 + 30 * 1920);
        let first = m.cut(0);
        write(&mut m, 90_000 + 31 * 1920);
        let second = m.finish();
        check_continuity(&[first.clone(), second.clone()].concat()).expect("continuity");
        assert_eq!(
            audio_pes(&first),
            [90_000, 90_000 + 15 * 1920, 90_000 + 30 * 1920]
        );
        assert_eq!(audio_pes(&second), [90_000 + 31 * 1920]);
        // 15 frames of 307 bytes and a PES header in 26 packets (the first with the PCR), 5
        // in 9 and 1 in 2, where a PES each took 2 packets a frame.
        let audio = |ts: &[u8]| {
            ts.chunks(PACKET)
                .filter(|p| u16::from_be_bytes([p[1], p[2]]) & 0x1fff == PID_AUDIO)
                .count()
        };
        assert_eq!(audio(&first), 26 + 9 + 2);
    }
}
