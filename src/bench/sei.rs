//! Latency stamps that cross any server untouched: the load tool's publisher inserts an H.264
//! SEI NAL unit (user_data_unregistered, payload type 5, ringcast's UUID) carrying its wall
//! clock in milliseconds into each video frame; players find it and compute now minus stamp.
//!
//! Works on FLV/RTMP AVC video tag bodies: `[frame type|codec][AVCPacketType][CTS x3]` then
//! NAL units, each behind a length of `nalu_len_size` bytes (from the avcC record). Pure
//! functions; no clock is read here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::flv::Tag;
use crate::rtmp::message::MSG_VIDEO;

/// Identifies ringcast's stamps among other SEI messages (random, fixed).
pub const UUID: [u8; 16] = [
    0x72, 0x69, 0x6e, 0x67, 0x63, 0x61, 0x73, 0x74, 0x9b, 0x1e, 0x4c, 0x02, 0xa7, 0x35, 0x5d, 0x61,
];
const NAL_SEI: u8 = 6;
const SEI_USER_DATA_UNREGISTERED: u8 = 5;

/// The NAL unit length size of an AVC sequence header (avcC's lengthSizeMinusOne + 1).
pub fn nalu_len_size(sequence_header: &[u8]) -> Option<usize> {
    // Tag header (5 bytes), then avcC: version, profile, compat, level, 0b111111xx.
    let b = sequence_header.get(5 + 4)?;
    Some(usize::from(b & 0x03) + 1)
}

/// The NAL unit length size of a file's video, from its first AVC sequence header (4, the
/// usual, when it has none): what [`stamp`] needs for each of the file's frames.
pub fn file_nalu_len_size(tags: &[Tag]) -> usize {
    tags.iter()
        .find(|t| t.type_id == MSG_VIDEO && t.data.get(1) == Some(&0))
        .and_then(|t| nalu_len_size(&t.data))
        .unwrap_or(4)
}

/// True for an AVC tag body that carries NAL units (not a sequence header or end of sequence).
pub fn is_avc_nalus(payload: &[u8]) -> bool {
    payload.len() > 5 && payload[0] & 0x0f == 7 && payload[1] == 1
}

/// A copy of an AVC NALU tag body with a stamp SEI in front of its NAL units.
pub fn stamp(payload: &[u8], nalu_len_size: usize, wall_ms: u64) -> Bytes {
    let mut rbsp = Vec::with_capacity(32);
    rbsp.push(SEI_USER_DATA_UNREGISTERED);
    rbsp.push(24); // payload size: UUID + 8 bytes
    rbsp.extend_from_slice(&UUID);
    rbsp.extend_from_slice(&wall_ms.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = vec![NAL_SEI];
    escape(&rbsp, &mut nal);
    let mut out = BytesMut::with_capacity(payload.len() + nal.len() + 8);
    out.put_slice(&payload[..5]);
    let len = nal.len() as u32;
    out.put_slice(&len.to_be_bytes()[4 - nalu_len_size..]);
    out.put_slice(&nal);
    out.put_slice(&payload[5..]);
    out.freeze()
}

/// The stamp in an AVC NALU tag body, if it carries one.
pub fn find_stamp(payload: &[u8], nalu_len_size: usize) -> Option<u64> {
    if !is_avc_nalus(payload) || !(1..=4).contains(&nalu_len_size) {
        return None;
    }
    let mut p = &payload[5..];
    while p.len() > nalu_len_size {
        let mut len = 0usize;
        for &b in &p[..nalu_len_size] {
            len = len << 8 | usize::from(b);
        }
        let nal = p.get(nalu_len_size..nalu_len_size + len)?;
        p = &p[nalu_len_size + len..];
        if nal.first().map(|b| b & 0x1f) != Some(NAL_SEI) {
            continue;
        }
        let rbsp = unescape(&nal[1..]);
        if let Some(ms) = parse_sei(&rbsp) {
            return Some(ms);
        }
    }
    None
}

/// The stamp in an Annex B access unit (NAL units behind 00 00 01 or 00 00 00 01 start
/// codes), as a WebRTC receiver rebuilds it from RTP.
pub fn find_stamp_annexb(mut data: &[u8]) -> Option<u64> {
    while let Some(at) = data.windows(3).position(|w| w == [0, 0, 1]) {
        data = &data[at + 3..];
        let end = data
            .windows(3)
            .position(|w| w == [0, 0, 1] || w == [0, 0, 0])
            .unwrap_or(data.len());
        let nal = &data[..end];
        if nal.first().map(|b| b & 0x1f) == Some(NAL_SEI) {
            if let Some(ms) = parse_sei(&unescape(&nal[1..])) {
                return Some(ms);
            }
        }
        data = &data[end..];
    }
    None
}

fn parse_sei(mut rbsp: &[u8]) -> Option<u64> {
    while rbsp.len() > 2 {
        let mut read = || -> Option<usize> {
            let mut v = 0usize;
            loop {
                let (&b, rest) = rbsp.split_first()?;
                rbsp = rest;
                v += usize::from(b);
                if b != 0xff {
                    return Some(v);
                }
            }
        };
        let kind = read()?;
        let size = read()?;
        let body = rbsp.get(..size)?;
        rbsp = &rbsp[size..];
        if kind == usize::from(SEI_USER_DATA_UNREGISTERED) && size >= 24 && body[..16] == UUID {
            let mut ms = [0u8; 8];
            ms.copy_from_slice(&body[16..24]);
            return Some(u64::from_be_bytes(ms));
        }
    }
    None
}

/// Inserts emulation-prevention bytes: 00 00 followed by 00..=03 gets an 03 in between.
fn escape(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip_with_emulation_prevention() {
        // An IDR slice behind a 4-byte length.
        let frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        for ms in [0u64, 1, 0x0000_019a_0000_0001, u64::MAX] {
            let stamped = stamp(&frame, 4, ms);
            assert_eq!(find_stamp(&stamped, 4), Some(ms));
            // The original NAL units follow, untouched.
            assert!(stamped.ends_with(&frame[5..]));
            // No start-code emulation inside the SEI.
            assert!(!stamped[5..stamped.len() - 7]
                .windows(3)
                .any(|w| w == [0, 0, 1]));
        }
        assert_eq!(find_stamp(&frame, 4), None);
    }

    #[test]
    fn stamp_found_in_annex_b() {
        // An AVC tag with a slice, stamped, then converted as RTMP to WebRTC converts it.
        let tag = [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let stamped = stamp(&tag, 4, 0x0000_0100_0000_0001);
        let mut annexb = Vec::new();
        let mut p = &stamped[5..];
        while p.len() > 4 {
            let len = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(&p[4..4 + len]);
            p = &p[4 + len..];
        }
        assert_eq!(find_stamp_annexb(&annexb), Some(0x0000_0100_0000_0001));
        // Three-byte start codes, the SEI after the slice.
        let mut swapped = vec![0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 1];
        swapped.extend_from_slice(&annexb[4..annexb.len() - 7]);
        assert_eq!(find_stamp_annexb(&swapped), Some(0x0000_0100_0000_0001));
        assert_eq!(find_stamp_annexb(&annexb[..annexb.len() - 12]), None);
        assert_eq!(find_stamp_annexb(&[0, 0, 1, 6]), None);
        assert_eq!(find_stamp_annexb(&[]), None);
    }

    #[test]
    fn length_size_from_the_sequence_header() {
        let sh = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1];
        assert_eq!(nalu_len_size(&sh), Some(4));
        let frame = [0x27, 1, 0, 0, 0, 0, 2, 0x41, 0x9a];
        let stamped = stamp(&frame, 2, 42);
        assert_eq!(find_stamp(&stamped, 2), Some(42));
    }

    #[test]
    fn truncated_input_is_no_stamp() {
        let stamped = stamp(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65], 4, 7);
        for cut in 0..stamped.len() {
            let _ = find_stamp(&stamped[..cut], 4);
        }
    }
}
