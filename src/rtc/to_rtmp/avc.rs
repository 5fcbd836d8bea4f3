//! H.264 from WebRTC into FLV, pure: an Annex B access unit (what str0m's depacketizer makes
//! of a frame's RTP packets) becomes an FLV AVC video tag body, its NAL units in AVCC form
//! with 4-byte lengths, and its SPS and PPS an AVCDecoderConfigurationRecord whenever they
//! change. The composition time is always 0: WebRTC's H.264 (constrained baseline, and the
//! high profile browsers send with no B-frames) decodes in the order it is sent.

use bytes::{BufMut, Bytes, BytesMut};

/// FLV video tag byte: keyframe (1) or inter frame (2), codec AVC (7).
const KEY_AVC: u8 = 0x17;
const INTER_AVC: u8 = 0x27;
/// The largest access unit taken; a browser's 4K keyframe is well under it, and anything
/// bigger is a publisher sending garbage.
pub const MAX_ACCESS_UNIT: usize = 4 << 20;
/// The largest parameter set kept: an SPS is tens of bytes.
const MAX_PARAMETER_SET: usize = 1024;

/// Why an access unit is dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvcError {
    /// It does not start with an Annex B start code.
    #[error("not Annex B")]
    NotAnnexB,
    /// It is larger than [`MAX_ACCESS_UNIT`].
    #[error("access unit of {0} bytes")]
    TooLarge(usize),
    /// An SPS or PPS too short to read or larger than any real one.
    #[error("malformed parameter set")]
    BadParameterSet,
}

/// One access unit converted.
#[derive(Debug, Default)]
pub struct Converted {
    /// A new AVC sequence header tag body, when SPS or PPS changed with this unit.
    pub sequence_header: Option<Bytes>,
    /// The video tag body, when the unit has a slice (it may carry parameter sets alone).
    pub frame: Option<Bytes>,
    /// Whether the frame is an IDR picture, where a decoder may start.
    pub keyframe: bool,
}

/// One stream's H.264 conversion: the parameter sets in force.
#[derive(Debug, Default)]
pub struct AvcToFlv {
    sps: Vec<u8>,
    pps: Vec<u8>,
}

/// The NAL units of an Annex B buffer (3- or 4-byte start codes), empty ones skipped;
/// `None` if it does not start with a start code.
fn nal_units(data: &[u8]) -> Option<Vec<&[u8]>> {
    let start = |i: usize| data.get(i..i + 3) == Some(&[0, 0, 1][..]);
    let first = match data {
        [0, 0, 1, ..] => 3,
        [0, 0, 0, 1, ..] => 4,
        _ => return None,
    };
    let mut units = Vec::new();
    let mut begin = first;
    let mut i = first;
    while i + 3 <= data.len() {
        if start(i) {
            // A 4-byte start code's leading zero belongs to it, not to the unit before.
            let end = if i > begin && data[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            if end > begin {
                units.push(&data[begin..end]);
            }
            i += 3;
            begin = i;
        } else {
            i += 1;
        }
    }
    if begin < data.len() {
        units.push(&data[begin..]);
    }
    Some(units)
}

impl AvcToFlv {
    /// Whether SPS and PPS are known, so a keyframe can be decoded.
    pub fn has_parameter_sets(&self) -> bool {
        !self.sps.is_empty() && !self.pps.is_empty()
    }

    /// Converts one Annex B access unit.
    pub fn push(&mut self, data: &[u8]) -> Result<Converted, AvcError> {
        if data.len() > MAX_ACCESS_UNIT {
            return Err(AvcError::TooLarge(data.len()));
        }
        let units = nal_units(data).ok_or(AvcError::NotAnnexB)?;
        let mut changed = false;
        let mut keyframe = false;
        let mut slices = false;
        let mut body = BytesMut::with_capacity(data.len() + 5 + 4 * units.len());
        body.put_slice(&[INTER_AVC, 1, 0, 0, 0]);
        for nal in units {
            match nal[0] & 0x1f {
                7 | 8 => {
                    // profile, constraints and level follow an SPS's header byte.
                    if nal.len() > MAX_PARAMETER_SET || (nal[0] & 0x1f == 7 && nal.len() < 4) {
                        return Err(AvcError::BadParameterSet);
                    }
                    let set = if nal[0] & 0x1f == 7 {
                        &mut self.sps
                    } else {
                        &mut self.pps
                    };
                    if set.as_slice() != nal {
                        set.clear();
                        set.extend_from_slice(nal);
                        changed = true;
                    }
                    // In the sequence header, not in the frame: FLV carries them apart.
                    continue;
                }
                // Access unit delimiters mean nothing in FLV.
                9 => continue,
                5 => {
                    keyframe = true;
                    slices = true;
                }
                1 => slices = true,
                _ => {}
            }
            body.put_u32(nal.len() as u32);
            body.put_slice(nal);
        }
        if keyframe {
            body[0] = KEY_AVC;
        }
        let sequence_header = (changed && self.has_parameter_sets()).then(|| self.record());
        Ok(Converted {
            sequence_header,
            frame: slices.then(|| body.freeze()),
            keyframe,
        })
    }

    /// The sequence header tag body: an AVCDecoderConfigurationRecord of the SPS and PPS.
    fn record(&self) -> Bytes {
        let sps = &self.sps;
        let mut b = BytesMut::with_capacity(16 + sps.len() + self.pps.len());
        b.put_slice(&[KEY_AVC, 0, 0, 0, 0]);
        // Version 1, profile, compatibility and level from the SPS, 4-byte NAL lengths,
        // one SPS, one PPS.
        b.put_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
        b.put_u16(sps.len() as u16);
        b.put_slice(sps);
        b.put_u8(1);
        b.put_u16(self.pps.len() as u16);
        b.put_slice(&self.pps);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
    pub(crate) const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn annex_b(units: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, u) in units.iter().enumerate() {
            // Both start code lengths, as encoders mix them.
            v.extend_from_slice(if i % 2 == 0 {
                &[0, 0, 0, 1][..]
            } else {
                &[0, 0, 1]
            });
            v.extend_from_slice(u);
        }
        v
    }

    #[test]
    fn sequence_header_from_sps_and_pps_and_avcc_frames() {
        let mut c = AvcToFlv::default();
        let idr: &[u8] = &[0x65, 0x88, 0x00, 0x10];
        let out = c.push(&annex_b(&[&[0x09, 0xf0], SPS, PPS, idr])).unwrap();
        let mut record = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, 6];
        record.extend_from_slice(SPS);
        record.extend_from_slice(&[1, 0, 4]);
        record.extend_from_slice(PPS);
        assert_eq!(out.sequence_header.as_deref(), Some(&record[..]));
        let mut frame = vec![0x17, 1, 0, 0, 0, 0, 0, 0, 4];
        frame.extend_from_slice(idr);
        assert_eq!(out.frame.as_deref(), Some(&frame[..]));
        assert!(out.keyframe);
        // The same parameter sets again: no new header. A P-frame with an SEI.
        let out = c.push(&annex_b(&[SPS, PPS, idr])).unwrap();
        assert!(out.sequence_header.is_none() && out.keyframe);
        let out = c.push(&annex_b(&[&[0x06, 5, 1], &[0x41, 0x9a]])).unwrap();
        assert_eq!(
            out.frame.as_deref(),
            Some(&[0x27, 1, 0, 0, 0, 0, 0, 0, 3, 6, 5, 1, 0, 0, 0, 2, 0x41, 0x9a][..])
        );
        assert!(!out.keyframe);
        // A new SPS (a resolution change) makes a new header.
        let sps2: &[u8] = &[0x67, 0x64, 0x00, 0x28, 0xac];
        let out = c.push(&annex_b(&[sps2, PPS, idr])).unwrap();
        assert_eq!(out.sequence_header.unwrap()[6], 0x64);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut c = AvcToFlv::default();
        assert_eq!(c.push(&[0x65, 1, 2]).unwrap_err(), AvcError::NotAnnexB);
        assert_eq!(c.push(&[]).unwrap_err(), AvcError::NotAnnexB);
        assert_eq!(
            c.push(&[0, 0, 1, 0x67, 1]).unwrap_err(),
            AvcError::BadParameterSet
        );
        let big = vec![0; MAX_ACCESS_UNIT + 1];
        assert!(matches!(c.push(&big), Err(AvcError::TooLarge(_))));
        // Only start codes, or a unit with no slice: nothing to send, no error.
        let out = c.push(&[0, 0, 0, 1, 0, 0, 1]).unwrap();
        assert!(out.frame.is_none() && out.sequence_header.is_none());
        // A keyframe before any SPS: converted, but no header to go with it.
        assert!(!c.has_parameter_sets());
        assert!(c.push(&annex_b(&[&[0x65, 1]])).unwrap().keyframe);
    }
}
