//! A small MPEG-TS demuxer for the HLS player: finds the video elementary stream through the
//! PAT and PMT (H.264 or HEVC) and hands out each video PES's presentation time and the
//! first bytes of its payload, where the publisher's latency stamp (an SEI in front of the
//! frame's slices) sits. Only the head of a PES is kept: a player of thousands needs the
//! stamp, not the pictures, and copying every frame would cost the load tool more than the
//! server it measures.
//!
//! Reads bytes from servers, so every length is checked: bad input is an error, never a
//! panic. Pure: bytes in, frames out; no socket, no clock.

#![forbid(unsafe_code)]

/// A transport stream packet's size.
pub const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const PID_PAT: u16 = 0;
const STREAM_H264: u8 = 0x1b;
const STREAM_HEVC: u8 = 0x24;

/// Why a transport stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// A packet does not start with the sync byte 0x47.
    #[error("lost TS sync (byte {0:#04x} where 0x47 belongs)")]
    Sync(u8),
    /// An adaptation field longer than its packet.
    #[error("TS adaptation field longer than its packet")]
    Adaptation,
}

/// One video PES: its presentation time (90 kHz) and the first bytes of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoPes<'a> {
    /// PTS, when the PES header has one.
    pub pts: Option<u64>,
    /// The elementary stream bytes (Annex B NAL units), at most the demuxer's `keep`.
    pub head: &'a [u8],
}

/// Checks that bytes are a transport stream without reading it: the sync byte at each
/// packet's start, in any pieces. What a player that only counts a segment's bytes still
/// checks, so that a body that is not TS (an error page, a playlist) is not counted as one.
#[derive(Debug, Default)]
pub struct SyncCheck {
    /// Bytes seen.
    at: usize,
}

impl SyncCheck {
    /// Consumes bytes; the first packet start without the sync byte is an error.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TsError> {
        let mut i = (PACKET - self.at % PACKET) % PACKET;
        self.at += data.len();
        while let Some(&b) = data.get(i) {
            if b != SYNC {
                return Err(TsError::Sync(b));
            }
            i += PACKET;
        }
        Ok(())
    }
}

/// Demuxes one segment (or a stream of them): push its bytes in any pieces, then
/// [`TsDemuxer::finish`] at its end for the last PES.
#[derive(Debug)]
pub struct TsDemuxer {
    keep: usize,
    /// A packet split across pushes.
    partial: Vec<u8>,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    /// The current video PES: header and payload head, at most `keep` plus its header.
    pes: Vec<u8>,
    in_pes: bool,
}

impl TsDemuxer {
    /// A demuxer that keeps the first `keep` payload bytes of each video PES.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            partial: Vec::with_capacity(PACKET),
            pmt_pid: None,
            video_pid: None,
            pes: Vec::new(),
            in_pes: false,
        }
    }

    /// Consumes bytes, calling `frame` for each video PES completed by them.
    pub fn push(
        &mut self,
        mut data: &[u8],
        frame: &mut dyn FnMut(VideoPes<'_>),
    ) -> Result<(), TsError> {
        if !self.partial.is_empty() {
            let take = (PACKET - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < PACKET {
                return Ok(());
            }
            let packet = std::mem::take(&mut self.partial);
            let r = self.packet(&packet, frame);
            self.partial = packet;
            self.partial.clear();
            r?;
        }
        let mut packets = data.chunks_exact(PACKET);
        for packet in &mut packets {
            self.packet(packet, frame)?;
        }
        self.partial.extend_from_slice(packets.remainder());
        Ok(())
    }

    /// The end of the segment: hands out the PES still open.
    pub fn finish(&mut self, frame: &mut dyn FnMut(VideoPes<'_>)) {
        self.emit(frame);
        self.partial.clear();
    }

    fn packet(&mut self, p: &[u8], frame: &mut dyn FnMut(VideoPes<'_>)) -> Result<(), TsError> {
        if p[0] != SYNC {
            return Err(TsError::Sync(p[0]));
        }
        let start = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let control = (p[3] >> 4) & 0x03;
        let mut at = 4;
        if control & 0x02 != 0 {
            at += 1 + usize::from(p[4]);
            if at > PACKET {
                return Err(TsError::Adaptation);
            }
        }
        if control & 0x01 == 0 {
            return Ok(());
        }
        let payload = &p[at..];
        if Some(pid) == self.video_pid {
            if start {
                self.emit(frame);
                self.in_pes = true;
            }
            if self.in_pes {
                // PES header: 9 bytes and its optional fields (at most 255 more).
                let room = (self.keep + 9 + 255).saturating_sub(self.pes.len());
                self.pes
                    .extend_from_slice(&payload[..room.min(payload.len())]);
            }
        } else if pid == PID_PAT && start {
            self.pmt_pid = section(payload, 0x00, 5).and_then(|entries| {
                entries
                    .chunks_exact(4)
                    .find(|e| e[0] != 0 || e[1] != 0)
                    .map(|e| u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]))
            });
        } else if Some(pid) == self.pmt_pid && start {
            if let Some(video) = section(payload, 0x02, 5).and_then(pmt_video) {
                if Some(video) != self.video_pid {
                    self.pes.clear();
                    self.in_pes = false;
                }
                self.video_pid = Some(video);
            }
        }
        Ok(())
    }

    fn emit(&mut self, frame: &mut dyn FnMut(VideoPes<'_>)) {
        if !std::mem::take(&mut self.in_pes) {
            return;
        }
        let p = &self.pes;
        if p.len() >= 9 && p[..3] == [0, 0, 1] {
            let header_end = 9 + usize::from(p[8]);
            let pts = (p[7] & 0x80 != 0 && p.len() >= 14).then(|| {
                u64::from(p[9] >> 1 & 0x07) << 30
                    | u64::from(p[10]) << 22
                    | u64::from(p[11] >> 1) << 15
                    | u64::from(p[12]) << 7
                    | u64::from(p[13] >> 1)
            });
            if let Some(payload) = p.get(header_end..) {
                let head = &payload[..self.keep.min(payload.len())];
                frame(VideoPes { pts, head });
            }
        }
        self.pes.clear();
    }
}

/// The body of a PSI section with `table_id` that starts in this payload, after its
/// `skip` fixed bytes past the length field and before its CRC.
fn section(payload: &[u8], table_id: u8, skip: usize) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    if *s.first()? != table_id || s.len() < 3 {
        return None;
    }
    let length = usize::from(s[1] & 0x0f) << 8 | usize::from(s[2]);
    let body = s.get(3..3 + length)?;
    body.get(skip..length.checked_sub(4)?)
}

/// The first H.264 or HEVC stream's PID in a PMT body (after program number and version).
fn pmt_video(body: &[u8]) -> Option<u16> {
    // PCR PID (2), program info length (2) and its descriptors.
    let info = usize::from(*body.get(2)? & 0x0f) << 8 | usize::from(*body.get(3)?);
    let mut es = body.get(4 + info..)?;
    while es.len() >= 5 {
        let pid = u16::from(es[1] & 0x1f) << 8 | u16::from(es[2]);
        let info = usize::from(es[3] & 0x0f) << 8 | usize::from(es[4]);
        if matches!(es[0], STREAM_H264 | STREAM_HEVC) {
            return Some(pid);
        }
        es = es.get(5 + info..)?;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// TS packets of one segment: PAT, PMT (AAC on 0x101, H.264 on 0x100) and `frames`
    /// video PES, each split across packets, the first with an adaptation field (PCR).
    pub(crate) fn segment(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let psi = |pid: u16, section: &[u8]| {
            let mut p = vec![SYNC, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
            p.extend_from_slice(section);
            p.resize(PACKET, 0xff);
            p
        };
        // PAT: program 1 at PMT PID 0x1000; CRC bytes are not checked.
        out.extend(psi(
            0,
            &[
                0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 0, 0, 0, 0,
            ],
        ));
        out.extend(psi(
            0x1000,
            &[
                0x02,
                0xb0,
                23,
                0,
                1,
                0xc1,
                0,
                0,
                0xe1,
                0x00,
                0xf0,
                0,
                0x0f,
                0xe1,
                0x01,
                0xf0,
                0,
                STREAM_H264,
                0xe1,
                0x00,
                0xf0,
                0,
                0,
                0,
                0,
                0,
            ],
        ));
        for (pts, es) in frames {
            let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
            pes.extend_from_slice(&[
                0x21 | ((pts >> 29) & 0x0e) as u8,
                (pts >> 22) as u8,
                0x01 | (pts >> 14) as u8 & 0xfe,
                (pts >> 7) as u8,
                0x01 | (*pts << 1) as u8,
            ]);
            pes.extend_from_slice(es);
            let mut first = true;
            for piece in pes.chunks(150) {
                let mut p = vec![SYNC, if first { 0x41 } else { 0x01 }, 0x00];
                let fill = PACKET - 4 - piece.len();
                if fill > 0 {
                    p.push(0x30);
                    p.push((fill - 1) as u8);
                    if fill > 1 {
                        p.push(0x00);
                        p.resize(4 + fill, 0xff);
                    }
                } else {
                    p.push(0x10);
                }
                p.extend_from_slice(piece);
                assert_eq!(p.len(), PACKET);
                out.extend(p);
                first = false;
            }
        }
        out
    }

    /// A PES's PTS and kept head.
    type Frame = (Option<u64>, Vec<u8>);

    fn demux(data: &[u8], piece: usize, keep: usize) -> Result<Vec<Frame>, TsError> {
        let mut d = TsDemuxer::new(keep);
        let mut got = Vec::new();
        let mut on = |f: VideoPes<'_>| got.push((f.pts, f.head.to_vec()));
        for c in data.chunks(piece) {
            d.push(c, &mut on)?;
        }
        d.finish(&mut on);
        Ok(got)
    }

    #[test]
    fn the_sync_check_takes_ts_in_any_pieces_and_refuses_other_bodies() {
        let seg = segment(&[
            (90_000, &[0, 0, 0, 1, 0x65, 1, 2, 3][..]),
            (93_600, &[9; 500][..]),
        ]);
        for piece in [1, 187, 188, 189, seg.len()] {
            let mut c = SyncCheck::default();
            for p in seg.chunks(piece) {
                c.push(p).expect("valid TS");
            }
        }
        let mut broken = seg.clone();
        broken[2 * PACKET] = b'G' + 1;
        let mut c = SyncCheck::default();
        let (a, b) = broken.split_at(2 * PACKET - 5);
        c.push(a).expect("the first two packets are whole");
        assert_eq!(c.push(b), Err(TsError::Sync(b'H')));
        assert_eq!(
            SyncCheck::default().push(b"#EXTM3U\n"),
            Err(TsError::Sync(b'#'))
        );
    }

    #[test]
    fn video_pes_in_any_pieces() {
        let big: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
        let seg = segment(&[
            (90_000, b"\0\0\0\x01\x09\xf0"),
            (93_600, &big),
            (1 << 32, b"x"),
        ]);
        for piece in [1, 7, 188, 500, seg.len()] {
            let got = demux(&seg, piece, 1024).expect("valid TS");
            assert_eq!(got.len(), 3, "piece {piece}");
            assert_eq!(got[0], (Some(90_000), b"\0\0\0\x01\x09\xf0".to_vec()));
            assert_eq!(got[1], (Some(93_600), big.clone()));
            assert_eq!(got[2], (Some(1 << 32), b"x".to_vec()));
        }
        // Only the head is kept.
        let got = demux(&seg, 188, 16).expect("valid TS");
        assert_eq!(got[1].1, big[..16].to_vec());
    }

    #[test]
    fn bad_input_is_an_error_or_nothing() {
        assert_eq!(demux(&[0x48; 188], 188, 64), Err(TsError::Sync(0x48)));
        let mut p = vec![SYNC, 0x40, 0x00, 0x30, 200];
        p.resize(PACKET, 0);
        assert_eq!(demux(&p, 188, 64), Err(TsError::Adaptation));
        // Video PES before any PAT/PMT is not recognised; truncations never panic.
        let seg = segment(&[(0, b"abc")]);
        assert!(demux(&seg[376..], 188, 64).expect("valid TS").is_empty());
        for cut in 0..seg.len() {
            let _ = demux(&seg[..cut], 61, 64);
        }
    }
}
