//! FLV, sans-IO: the file header and tags, read incrementally ([`FlvReader`]) and written
//! ([`write_header`], [`write_tag`], and [`TagFraming`], the bytes around a tag's body). An FLV tag body is exactly an RTMP audio, video or data
//! message payload, so tags move between the two without conversion.
//!
//! It owns no file and no socket; callers push bytes in and take tags out.
#![forbid(unsafe_code)]

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the FLV file header plus the first PreviousTagSize.
pub const HEADER_LEN: usize = 9 + 4;
/// Length of a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest tag body accepted (the field is 24 bits; real tags are far smaller).
pub const MAX_TAG_LEN: usize = 0x00FF_FFFF;

/// Why an FLV stream could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The stream does not start with the `FLV` signature.
    #[error("not an FLV stream (signature {0:02x?})")]
    Signature([u8; 3]),
    /// The header's DataOffset is smaller than the header itself.
    #[error("bad FLV header length {0}")]
    HeaderLength(u32),
    /// A tag type that FLV does not define (after masking the filter bit).
    #[error("unknown FLV tag type {0}")]
    TagType(u8),
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// 8 audio, 9 video, 18 script data (the RTMP message types).
    pub type_id: u8,
    /// Milliseconds, with the extended byte applied.
    pub timestamp: u32,
    /// The tag body.
    pub data: Bytes,
}

/// Reads an FLV stream pushed in pieces.
#[derive(Debug, Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_skip: Option<usize>,
}

impl FlvReader {
    /// A reader expecting the FLV header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        if self.header_skip.is_none() {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError::Signature([self.buf[0], self.buf[1], self.buf[2]]));
            }
            let offset = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
            if offset < 9 {
                return Err(FlvError::HeaderLength(offset));
            }
            // The header, then PreviousTagSize0.
            self.header_skip = Some(offset as usize + 4);
        }
        if let Some(skip) = self.header_skip.filter(|s| *s > 0) {
            let n = skip.min(self.buf.len());
            self.buf.advance(n);
            self.header_skip = Some(skip - n);
            if skip > n {
                return Ok(None);
            }
        }
        if self.buf.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let h = &self.buf[..TAG_HEADER_LEN];
        let type_id = h[0] & 0x1f;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        if !matches!(type_id, 8 | 9 | 18) {
            return Err(FlvError::TagType(type_id));
        }
        if self.buf.len() < TAG_HEADER_LEN + size + 4 {
            self.buf.reserve(TAG_HEADER_LEN + size + 4 - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(TAG_HEADER_LEN);
        let data = self.buf.split_to(size).freeze();
        self.buf.advance(4);
        Ok(Some(Tag {
            type_id,
            timestamp,
            data,
        }))
    }
}

/// Appends the FLV header and PreviousTagSize0.
pub fn write_header(has_audio: bool, has_video: bool, out: &mut BytesMut) {
    out.put_slice(b"FLV\x01");
    out.put_u8(u8::from(has_audio) << 2 | u8::from(has_video));
    out.put_u32(9);
    out.put_u32(0);
}

/// The bytes around one tag's body: the tag header in front of it and the PreviousTagSize
/// behind it. The one encoder of a tag's framing, for [`write_tag`] and for the shared FLV
/// form of a frame, which keeps the body where it is and sends these bytes around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagFraming {
    /// The 11-byte tag header.
    pub header: [u8; TAG_HEADER_LEN],
    /// How much of the body the tag carries: all of it, up to [`MAX_TAG_LEN`].
    pub body_len: usize,
    /// The PreviousTagSize after the body.
    pub previous_tag_size: [u8; 4],
}

impl TagFraming {
    /// The framing of a tag of `type_id` (8, 9 or 18) at `timestamp` around a body of
    /// `body_len` bytes.
    pub fn new(type_id: u8, timestamp: u32, body_len: usize) -> Self {
        let body_len = body_len.min(MAX_TAG_LEN);
        let size = (body_len as u32).to_be_bytes();
        let ts = timestamp.to_be_bytes();
        Self {
            // Type, DataSize (24 bits), Timestamp (low 24 bits, then the extended byte),
            // StreamID (always 0).
            header: [
                type_id, size[1], size[2], size[3], ts[1], ts[2], ts[3], ts[0], 0, 0, 0,
            ],
            body_len,
            previous_tag_size: (body_len as u32 + TAG_HEADER_LEN as u32).to_be_bytes(),
        }
    }
}

/// Appends one tag and its PreviousTagSize.
pub fn write_tag(type_id: u8, timestamp: u32, data: &[u8], out: &mut BytesMut) {
    let framing = TagFraming::new(type_id, timestamp, data.len());
    out.reserve(TAG_HEADER_LEN + data.len() + 4);
    out.put_slice(&framing.header);
    out.put_slice(&data[..framing.body_len]);
    out.put_slice(&framing.previous_tag_size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut out = BytesMut::new();
        write_header(true, true, &mut out);
        write_tag(18, 0, b"meta", &mut out);
        write_tag(9, 0x0123_4567, &[0x17, 0, 1, 2], &mut out);
        write_tag(8, 40, &[], &mut out);
        for piece in [1, 3, 7, out.len()] {
            let mut r = FlvReader::new();
            let mut tags = Vec::new();
            for chunk in out.chunks(piece) {
                r.push(chunk);
                while let Some(t) = r.next_tag().expect("valid flv") {
                    tags.push(t);
                }
            }
            assert_eq!(tags.len(), 3);
            assert_eq!(tags[1].timestamp, 0x0123_4567);
            assert_eq!(&tags[1].data[..], &[0x17, 0, 1, 2]);
            assert!(tags[2].data.is_empty());
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut r = FlvReader::new();
        r.push(b"GIF89a\0\0\0\0");
        assert!(matches!(r.next_tag(), Err(FlvError::Signature(_))));
        let mut r = FlvReader::new();
        r.push(b"FLV\x01\x05\0\0\0\x09\0\0\0\0\x07\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(r.next_tag(), Err(FlvError::TagType(7)));
    }

    #[test]
    fn reads_the_test_media() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/media/source.flv");
        let data = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (the test media lives beside the checkout)"));
        let mut r = FlvReader::new();
        r.push(&data);
        let mut video = 0;
        while let Some(t) = r.next_tag().expect("source.flv parses") {
            video += usize::from(t.type_id == 9);
        }
        assert!(video > 1000, "{video} video tags");
    }
}
