//! The RTMP chunk stream, sans-IO: [`ChunkReader`] reassembles messages from interleaved
//! chunks, [`ChunkWriter`] cuts messages into chunks with the most compact headers, and
//! [`encode_message`]/[`encode_header`] write chunks with a header format chosen by the caller
//! (the fan-out's shared form uses type 1, a player's own start header type 0).
//!
//! Timestamp rules follow ffmpeg and SRS: type 0 carries the absolute time, types 1 and 2 a
//! delta, and a type-3 chunk that starts a new message adds the previous header's timestamp
//! field again. The extended timestamp is repeated in every type-3 continuation chunk of a
//! message whose first header had one. Memory is bounded: message length, chunk streams in
//! flight and pre-allocation are capped. No sockets, no clock.

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};

/// A reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp, milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body.
    pub payload: bytes::Bytes,
}

/// Why the chunk stream is broken; the connection must be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// Set Chunk Size of 0, or with the top bit set.
    #[error("invalid chunk size {0} (valid: 1..=2147483647)")]
    InvalidChunkSize(u32),
    /// A message longer than the configured maximum.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A type 1, 2 or 3 chunk on a chunk stream that never had a type 0 header.
    #[error("chunk stream {csid} continues a header it never sent")]
    NoPreviousHeader {
        /// The chunk stream.
        csid: u32,
    },
    /// Too many chunk streams at once.
    #[error("more than {MAX_STREAMS} chunk streams")]
    TooManyStreams,
}

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size: per the spec the top bit must be 0.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Chunk streams a peer may use on one connection (real clients use fewer than ten).
pub const MAX_STREAMS: usize = 64;
/// Bytes reserved up front for a message; larger ones grow as their chunks arrive, so a
/// hostile length costs nothing until the bytes are actually sent.
const MAX_PREALLOC: usize = 256 * 1024;
/// The 24-bit timestamp field's marker for "extended timestamp follows".
const EXTENDED: u32 = 0x00FF_FFFF;

/// The chunk header format of a message's first chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFmt {
    /// Full header: absolute timestamp, length, type, stream id.
    Type0,
    /// Delta, length and type; same stream id.
    Type1,
    /// Delta only.
    Type2,
    /// Nothing: everything as the previous header.
    Type3,
}

impl HeaderFmt {
    fn bits(self) -> u8 {
        match self {
            Self::Type0 => 0,
            Self::Type1 => 1,
            Self::Type2 => 2,
            Self::Type3 => 3,
        }
    }

    fn message_header_len(self) -> usize {
        match self {
            Self::Type0 => 11,
            Self::Type1 => 7,
            Self::Type2 => 3,
            Self::Type3 => 0,
        }
    }
}

#[derive(Debug, Default)]
struct InState {
    timestamp: u32,
    /// The last header's timestamp field (absolute for type 0, else the delta).
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<BytesMut>,
}

/// Reassembles messages from a peer's chunk stream.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    max_message_len: u32,
    streams: HashMap<u32, InState>,
}

impl ChunkReader {
    /// A reader with the default chunk size that refuses messages over `max_message_len`.
    pub fn new(max_message_len: u32) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_len,
            streams: HashMap::new(),
        }
    }

    /// Applies a peer's Set Chunk Size; 0 or above MAX_CHUNK_SIZE is an error.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Peer's Abort Message: drops the partial message on that chunk stream.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            s.partial = None;
        }
    }

    /// Consumes complete chunks from the front of `buf` and returns the next whole message,
    /// or `Ok(None)` when more bytes are needed (an incomplete chunk stays in `buf`). At most
    /// one message per call, so the caller can apply Set Chunk Size before the next chunk.
    pub fn read_message(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some((fmt, csid, basic_len)) = basic_header(buf) else {
                return Ok(None);
            };
            let mh_len = fmt.message_header_len();
            if buf.len() < basic_len + mh_len {
                return Ok(None);
            }
            let mh = &buf[basic_len..basic_len + mh_len];
            if fmt != HeaderFmt::Type0 && !self.streams.contains_key(&csid) {
                return Err(ChunkError::NoPreviousHeader { csid });
            }
            if !self.streams.contains_key(&csid) && self.streams.len() >= MAX_STREAMS {
                return Err(ChunkError::TooManyStreams);
            }
            let state = self.streams.entry(csid).or_default();
            let ts24 = (fmt != HeaderFmt::Type3).then(|| u24(&mh[0..3]));
            let extended = match ts24 {
                Some(t) => t == EXTENDED,
                None => state.extended,
            };
            let ext_len = if extended { 4 } else { 0 };
            let header_len = basic_len + mh_len + ext_len;
            if buf.len() < header_len {
                return Ok(None);
            }
            let ts_field = match ts24 {
                Some(_) if extended => u32_be(&buf[basic_len + mh_len..header_len]),
                Some(t) => t,
                None => state.ts_field,
            };
            let continuing = fmt == HeaderFmt::Type3 && state.partial.is_some();
            let length = match fmt {
                HeaderFmt::Type0 | HeaderFmt::Type1 => u24(&mh[3..6]),
                _ => state.length,
            };
            if length > self.max_message_len {
                return Err(ChunkError::MessageTooLarge {
                    len: length,
                    max: self.max_message_len,
                });
            }
            let have = if continuing {
                state.partial.as_ref().map_or(0, BytesMut::len)
            } else {
                0
            };
            let n = (length as usize - have).min(self.chunk_size as usize);
            if buf.len() < header_len + n {
                return Ok(None);
            }

            // The whole chunk is here: commit.
            if !continuing {
                match fmt {
                    HeaderFmt::Type0 => {
                        state.timestamp = ts_field;
                        state.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
                    }
                    _ => state.timestamp = state.timestamp.wrapping_add(ts_field),
                }
                if matches!(fmt, HeaderFmt::Type0 | HeaderFmt::Type1) {
                    state.type_id = mh[6];
                }
                state.length = length;
                state.ts_field = ts_field;
                state.extended = extended;
                // A header of type 0, 1 or 2 mid-message abandons the partial one.
                state.partial = Some(BytesMut::with_capacity((length as usize).min(MAX_PREALLOC)));
            }
            buf.advance(header_len);
            let partial = state.partial.as_mut().expect("a message is in progress");
            partial.extend_from_slice(&buf[..n]);
            buf.advance(n);
            if partial.len() == state.length as usize {
                let payload = state.partial.take().expect("checked above").freeze();
                return Ok(Some(RawMessage {
                    csid,
                    timestamp: state.timestamp,
                    type_id: state.type_id,
                    stream_id: state.stream_id,
                    payload,
                }));
            }
        }
    }
}

/// Parses a basic header: format, chunk stream id, and its length in bytes.
fn basic_header(buf: &[u8]) -> Option<(HeaderFmt, u32, usize)> {
    let b0 = *buf.first()?;
    let fmt = match b0 >> 6 {
        0 => HeaderFmt::Type0,
        1 => HeaderFmt::Type1,
        2 => HeaderFmt::Type2,
        _ => HeaderFmt::Type3,
    };
    match b0 & 0x3f {
        0 => Some((fmt, 64 + u32::from(*buf.get(1)?), 2)),
        1 => {
            let (lo, hi) = (*buf.get(1)?, *buf.get(2)?);
            Some((fmt, 64 + u32::from(lo) + 256 * u32::from(hi), 3))
        }
        id => Some((fmt, u32::from(id), 1)),
    }
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn put_basic_header(fmt: HeaderFmt, csid: u32, out: &mut BytesMut) {
    let f = fmt.bits() << 6;
    match csid {
        2..=63 => out.put_u8(f | csid as u8),
        64..=319 => {
            out.put_u8(f);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid.clamp(64, 65599) - 64;
            out.put_u8(f | 1);
            out.put_u8((id & 0xff) as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Length in bytes of the first chunk's header (basic + message header + extended
/// timestamp) that [`encode_message`] writes for these arguments.
pub fn header_len(fmt: HeaderFmt, csid: u32, timestamp: u32) -> usize {
    basic_header_len(csid) + fmt.message_header_len() + if timestamp >= EXTENDED { 4 } else { 0 }
}

/// Appends a message's first chunk header. For `Type0` `timestamp` is absolute; for
/// `Type1`/`Type2` it is the delta; for `Type3` it is the value that decides the extended
/// field, as the receiver will see it.
pub fn encode_header(
    fmt: HeaderFmt,
    csid: u32,
    timestamp: u32,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
    out: &mut BytesMut,
) {
    put_basic_header(fmt, csid, out);
    let ts24 = timestamp.min(EXTENDED);
    if fmt != HeaderFmt::Type3 {
        out.put_slice(&ts24.to_be_bytes()[1..]);
    }
    if matches!(fmt, HeaderFmt::Type0 | HeaderFmt::Type1) {
        out.put_slice(&msg_len.min(EXTENDED).to_be_bytes()[1..]);
        out.put_u8(type_id);
    }
    if fmt == HeaderFmt::Type0 {
        out.put_u32_le(stream_id);
    }
    if timestamp >= EXTENDED {
        out.put_u32(timestamp);
    }
}

/// Appends one message as chunks: the first chunk with the given header format, the rest
/// type 3 (repeating the extended timestamp when the first header has one).
#[allow(clippy::too_many_arguments)]
pub fn encode_message(
    fmt: HeaderFmt,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: u32,
    out: &mut BytesMut,
) {
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize;
    let chunks = payload.len().div_ceil(chunk_size).max(1);
    out.reserve(payload.len() + header_len(fmt, csid, timestamp) + (chunks - 1) * 8);
    encode_header(
        fmt,
        csid,
        timestamp,
        payload.len() as u32,
        type_id,
        stream_id,
        out,
    );
    let mut parts = payload.chunks(chunk_size);
    if let Some(first) = parts.next() {
        out.put_slice(first);
    }
    for part in parts {
        put_basic_header(HeaderFmt::Type3, csid, out);
        if timestamp >= EXTENDED {
            out.put_u32(timestamp);
        }
        out.put_slice(part);
    }
}

#[derive(Debug, Clone, Copy)]
struct OutState {
    timestamp: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    last_was_type0: bool,
}

/// Per-connection writer: remembers the last header per chunk stream and picks the most
/// compact header that every common client reads the same way.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    streams: HashMap<u32, OutState>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer with the default chunk size.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    /// The chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the chunk size; the caller sends the Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Forgets a chunk stream, so its next message gets a type-0 header (after another
    /// writer, such as the shared fan-out bytes, wrote on it).
    pub fn reset_csid(&mut self, csid: u32) {
        self.streams.remove(&csid);
    }

    /// Appends `msg` as chunks.
    pub fn write(&mut self, msg: &RawMessage, out: &mut BytesMut) {
        let len = msg.payload.len() as u32;
        let (fmt, ts_field) = match self.streams.get(&msg.csid) {
            Some(last) if last.stream_id == msg.stream_id && msg.timestamp >= last.timestamp => {
                let delta = msg.timestamp - last.timestamp;
                if len != last.length || msg.type_id != last.type_id {
                    (HeaderFmt::Type1, delta)
                } else if delta != last.ts_field || (last.last_was_type0 && delta != 0) {
                    // After a type 0, readers disagree on what a type 3 adds: say it.
                    (HeaderFmt::Type2, delta)
                } else {
                    (HeaderFmt::Type3, delta)
                }
            }
            _ => (HeaderFmt::Type0, msg.timestamp),
        };
        encode_message(
            fmt,
            msg.csid,
            ts_field,
            msg.type_id,
            msg.stream_id,
            &msg.payload,
            self.chunk_size,
            out,
        );
        self.streams.insert(
            msg.csid,
            OutState {
                timestamp: msg.timestamp,
                ts_field,
                length: len,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
                last_was_type0: fmt == HeaderFmt::Type0,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(csid: u32, ts: u32, type_id: u8, len: usize, fill: u8) -> RawMessage {
        RawMessage {
            csid,
            timestamp: ts,
            type_id,
            stream_id: 1,
            payload: Bytes::from(vec![fill; len]),
        }
    }

    fn read_all(r: &mut ChunkReader, bytes: &[u8]) -> Vec<RawMessage> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = r.read_message(&mut buf).expect("valid chunk stream") {
            out.push(m);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        out
    }

    #[test]
    fn every_header_type_by_hand() {
        let mut b = BytesMut::new();
        // Type 0: csid 4, ts 1000, len 3, type 8, stream 1.
        b.put_slice(&[0x04, 0x00, 0x03, 0xe8, 0, 0, 3, 8, 1, 0, 0, 0, 1, 2, 3]);
        // Type 1: delta 20, len 2, type 9.
        b.put_slice(&[0x44, 0, 0, 20, 0, 0, 2, 9, 4, 5]);
        // Type 2: delta 30.
        b.put_slice(&[0x84, 0, 0, 30, 6, 7]);
        // Type 3 new message: delta 30 again.
        b.put_slice(&[0xc4, 8, 9]);
        let mut r = ChunkReader::new(1 << 20);
        let m = read_all(&mut r, &b);
        let ts: Vec<u32> = m.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [1000, 1020, 1050, 1080]);
        assert_eq!(m[0].type_id, 8);
        assert_eq!(m[1].type_id, 9);
        assert_eq!(&m[3].payload[..], &[8, 9]);
        assert!(m.iter().all(|m| m.stream_id == 1 && m.csid == 4));
    }

    #[test]
    fn type3_after_type0_adds_the_absolute_field_like_ffmpeg() {
        let mut b = BytesMut::new();
        b.put_slice(&[0x04, 0, 0, 100, 0, 0, 1, 8, 1, 0, 0, 0, 0xaa]);
        b.put_slice(&[0xc4, 0xbb]);
        let m = read_all(&mut ChunkReader::new(1024), &b);
        assert_eq!(m[1].timestamp, 200);
    }

    #[test]
    fn basic_header_forms() {
        for csid in [2, 63, 64, 319, 320, 65599] {
            let mut out = BytesMut::new();
            encode_message(HeaderFmt::Type0, csid, 5, 9, 1, b"abc", 128, &mut out);
            assert_eq!(out.len(), header_len(HeaderFmt::Type0, csid, 5) + 3);
            let m = read_all(&mut ChunkReader::new(1024), &out);
            assert_eq!(m[0].csid, csid);
        }
    }

    #[test]
    fn extended_timestamps_in_every_position() {
        let big = 0x0123_4567;
        let mut out = BytesMut::new();
        // Type 0 with extended, spanning 3 chunks: continuations repeat it.
        encode_message(HeaderFmt::Type0, 6, big, 9, 1, &[1; 300], 128, &mut out);
        let cont = &out[header_len(HeaderFmt::Type0, 6, big) + 128..];
        assert_eq!(cont[0], 0xc6);
        assert_eq!(&cont[1..5], &big.to_be_bytes());
        // Type 1 with an extended delta.
        encode_message(HeaderFmt::Type1, 6, big, 9, 0, &[2; 200], 128, &mut out);
        // Type 3 new message: the extended delta again.
        encode_message(HeaderFmt::Type3, 6, big, 9, 0, &[3; 200], 128, &mut out);
        let m = read_all(&mut ChunkReader::new(1 << 20), &out);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].timestamp, big);
        assert_eq!(m[1].timestamp, big.wrapping_add(big));
        assert_eq!(m[2].timestamp, big.wrapping_mul(3));
        assert_eq!(&m[2].payload[..], &[3; 200][..]);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let audio = msg(4, 0, 8, 300, 0xa);
        let video = msg(6, 0, 9, 300, 0xb);
        let mut a = BytesMut::new();
        let mut v = BytesMut::new();
        encode_message(HeaderFmt::Type0, 4, 0, 8, 1, &audio.payload, 128, &mut a);
        encode_message(HeaderFmt::Type0, 6, 0, 9, 1, &video.payload, 128, &mut v);
        // Interleave chunk by chunk: header+128, then 1+128, then 1+44.
        let cut = |b: &BytesMut| {
            let h = header_len(HeaderFmt::Type0, 4, 0);
            vec![
                b[..h + 128].to_vec(),
                b[h + 128..h + 257].to_vec(),
                b[h + 257..].to_vec(),
            ]
        };
        let mut wire = Vec::new();
        for (x, y) in cut(&a).into_iter().zip(cut(&v)) {
            wire.extend_from_slice(&x);
            wire.extend_from_slice(&y);
        }
        let m = read_all(&mut ChunkReader::new(1 << 20), &wire);
        assert_eq!(m, vec![audio, video]);
    }

    #[test]
    fn chunk_size_change_mid_stream() {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        w.write(&msg(3, 0, 20, 500, 1), &mut out);
        let split = out.len();
        w.set_chunk_size(4096);
        w.write(&msg(3, 0, 20, 5000, 2), &mut out);
        let mut r = ChunkReader::new(1 << 20);
        let mut buf = BytesMut::from(&out[..]);
        let first = r.read_message(&mut buf).expect("ok").expect("one message");
        assert_eq!(first.payload.len(), 500);
        assert_eq!(buf.len(), out.len() - split);
        r.set_chunk_size(4096).expect("valid size");
        let second = r
            .read_message(&mut buf)
            .expect("ok")
            .expect("second message");
        assert_eq!(second.payload.len(), 5000);
    }

    #[test]
    fn chunk_sizes_one_and_large() {
        for size in [1, 65536, 1 << 24] {
            let mut w = ChunkWriter::new();
            w.set_chunk_size(size);
            let mut out = BytesMut::new();
            let m = msg(5, 7, 9, 3000, 9);
            w.write(&m, &mut out);
            let mut r = ChunkReader::new(1 << 20);
            r.set_chunk_size(size).expect("valid");
            assert_eq!(read_all(&mut r, &out), vec![m]);
        }
    }

    /// A small deterministic generator, so the tests need no extra crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    #[test]
    fn writer_reader_round_trip_in_any_pieces() {
        let mut rng = Lcg(7);
        let mut w = ChunkWriter::new();
        w.set_chunk_size(97);
        let mut out = BytesMut::new();
        let mut sent = Vec::new();
        let mut ts = [0u32; 4];
        for i in 0..400 {
            let s = (rng.next() % 4) as usize;
            // Mostly steady deltas and lengths, so all four header types occur.
            ts[s] += if rng.next().is_multiple_of(3) {
                rng.next() % 100
            } else {
                40
            };
            if i == 200 {
                ts[s] = 0x0100_0000 + rng.next() % 1000;
            }
            let len = if rng.next().is_multiple_of(2) {
                64
            } else {
                (rng.next() % 400) as usize
            };
            let m = RawMessage {
                csid: [3, 4, 6, 400][s],
                timestamp: ts[s],
                type_id: [20, 8, 9, 18][s],
                stream_id: (s != 0) as u32,
                payload: Bytes::from((0..len).map(|_| rng.next() as u8).collect::<Vec<_>>()),
            };
            w.write(&m, &mut out);
            sent.push(m);
        }
        for piece in [1, 13, 4096, out.len()] {
            let mut r = ChunkReader::new(1 << 20);
            r.set_chunk_size(97).expect("valid");
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for p in out.chunks(piece) {
                buf.extend_from_slice(p);
                while let Some(m) = r.read_message(&mut buf).expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got, sent, "fed in pieces of {piece}");
        }
        // All four header types were used.
        let fmts: std::collections::HashSet<u8> = out.iter().map(|b| b >> 6).collect();
        assert_eq!(fmts.len(), 4);
    }

    #[test]
    fn abort_drops_a_partial_message() {
        let mut out = BytesMut::new();
        encode_message(HeaderFmt::Type0, 4, 0, 8, 1, &[1; 200], 128, &mut out);
        let mut r = ChunkReader::new(1024);
        let mut buf = BytesMut::from(&out[..header_len(HeaderFmt::Type0, 4, 0) + 128]);
        assert_eq!(r.read_message(&mut buf), Ok(None));
        r.abort(4);
        let mut next = BytesMut::new();
        encode_message(HeaderFmt::Type1, 4, 10, 8, 1, &[2; 5], 128, &mut next);
        let m = read_all(&mut r, &next);
        assert_eq!(&m[0].payload[..], &[2; 5]);
    }

    #[test]
    fn errors() {
        let mut r = ChunkReader::new(1000);
        assert_eq!(r.set_chunk_size(0), Err(ChunkError::InvalidChunkSize(0)));
        assert_eq!(
            r.set_chunk_size(0x8000_0000),
            Err(ChunkError::InvalidChunkSize(0x8000_0000))
        );
        let mut out = BytesMut::new();
        encode_header(HeaderFmt::Type0, 4, 0, 1001, 8, 1, &mut out);
        assert_eq!(
            r.read_message(&mut out),
            Err(ChunkError::MessageTooLarge {
                len: 1001,
                max: 1000
            })
        );
        let mut fresh = BytesMut::from(&[0xc9u8, 1, 2][..]);
        assert_eq!(
            ChunkReader::new(1000).read_message(&mut fresh),
            Err(ChunkError::NoPreviousHeader { csid: 9 })
        );
        let mut r = ChunkReader::new(1000);
        let mut many = BytesMut::new();
        for csid in 0..=MAX_STREAMS as u32 {
            // Each a first chunk of a longer message, left partial.
            encode_header(HeaderFmt::Type0, 64 + csid, 0, 200, 8, 1, &mut many);
            many.put_slice(&[0; 128]);
        }
        assert_eq!(r.read_message(&mut many), Err(ChunkError::TooManyStreams));
    }

    #[test]
    fn zero_length_message() {
        let mut out = BytesMut::new();
        encode_message(HeaderFmt::Type0, 3, 0, 20, 0, &[], 128, &mut out);
        let m = read_all(&mut ChunkReader::new(10), &out);
        assert!(m[0].payload.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Lcg(99);
        for _ in 0..2000 {
            let len = (rng.next() % 300) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut r = ChunkReader::new(4096);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = r.read_message(&mut buf) {}
        }
    }
}
