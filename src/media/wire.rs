//! Every wire form of a frame, in one place: the RTMP chunks a [`Frame`] is serialized into
//! once, when it is made ([`Frame::new`]); the type-0 start header, or the whole message, a
//! player writes of its own where those shared chunks cannot follow what it sent before; the
//! FLV tag around the shared payload ([`Frame::flv_tag`]); and the [`Form`] a player writes
//! frames in, with the state that chooses between shared and own bytes.
//!
//! It owns bytes only: no socket, no player, no clock. What a frame is lives in
//! [`super::frame`]; the chunk encoders are [`crate::rtmp::chunk`]'s and the FLV tag framing
//! [`crate::flv::TagFraming`].

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{Frame, FrameRole, MediaKind};
use crate::flv::{TagFraming, MAX_TAG_LEN, TAG_HEADER_LEN};
use crate::rtmp::chunk::{self, HeaderFmt};
use crate::rtmp::message::STREAM_ID;

impl Frame {
    /// Serializes a message once for sharing. `delta` is the timestamp difference from the
    /// previous frame of the same kind on this stream, `prev_seq` that frame's seq.
    pub fn new(
        seq: u64,
        prev_seq: Option<u64>,
        kind: MediaKind,
        timestamp: u32,
        delta: u32,
        payload: Bytes,
        chunk_size: u32,
    ) -> Self {
        let csid = kind.csid();
        let mut rtmp = BytesMut::with_capacity(payload.len() + 32);
        chunk::encode_message(
            HeaderFmt::Type1,
            csid,
            delta,
            kind.type_id(),
            0,
            &payload,
            chunk_size,
            &mut rtmp,
        );
        let multi_chunk = payload.len() > chunk_size as usize;
        let ext = |t: u32| t >= 0x00FF_FFFF;
        Self {
            seq,
            prev_seq,
            kind,
            role: FrameRole::of(kind, &payload),
            timestamp,
            rtmp_header_len: chunk::header_len(HeaderFmt::Type1, csid, delta),
            needs_own_chunks: multi_chunk && (ext(timestamp) != ext(delta) || ext(delta)),
            payload,
            rtmp: rtmp.freeze(),
            flv_framing: OnceLock::new(),
        }
    }

    /// Appends the frame as an FLV tag: the shared tag header, the payload itself (no copy)
    /// and the shared PreviousTagSize. The timestamp is the stream's, as for RTMP players.
    pub fn flv_tag(&self, iov: &mut Vec<Bytes>) {
        let framing = self.flv_framing.get_or_init(|| {
            let f = TagFraming::new(self.kind.type_id(), self.timestamp, self.payload.len());
            let mut b = BytesMut::with_capacity(TAG_HEADER_LEN + f.previous_tag_size.len());
            b.put_slice(&f.header);
            b.put_slice(&f.previous_tag_size);
            b.freeze()
        });
        iov.push(framing.slice(..TAG_HEADER_LEN));
        iov.push(self.payload.slice(..self.payload.len().min(MAX_TAG_LEN)));
        iov.push(framing.slice(TAG_HEADER_LEN..));
    }

    /// Appends the type-0 first header a player writes in front of `rtmp[rtmp_header_len..]`.
    fn type0_header(&self, stream_id: u32, out: &mut BytesMut) {
        chunk::encode_header(
            HeaderFmt::Type0,
            self.kind.csid(),
            self.timestamp,
            self.payload.len() as u32,
            self.kind.type_id(),
            stream_id,
            out,
        );
    }

    /// Appends the whole message with a type-0 first header: the slow path for a frame with
    /// [`Frame::needs_own_chunks`].
    fn own_chunks(&self, stream_id: u32, chunk_size: u32, out: &mut BytesMut) {
        chunk::encode_message(
            HeaderFmt::Type0,
            self.kind.csid(),
            self.timestamp,
            self.kind.type_id(),
            stream_id,
            &self.payload,
            chunk_size,
            out,
        );
    }
}

/// How a player serializes frames, beyond its cursor: two players at the same position and
/// with equal forms write the same bytes for the same frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// RTMP chunks.
    Rtmp {
        /// The chunk size announced at connect.
        chunk_size: u32,
        /// `seq` of the last frame sent of each kind: a frame whose `prev_seq` matches goes
        /// out as the shared bytes, anything else with a type-0 header of its own.
        last: [Option<u64>; 3],
    },
    /// FLV tags: nothing beyond the cursor.
    Flv,
}

impl Form {
    /// A player that has sent nothing yet, in chunks of `chunk_size`.
    pub fn rtmp(chunk_size: u32) -> Self {
        Self::Rtmp {
            chunk_size,
            last: [None; 3],
        }
    }

    /// Appends `f` in this form: shared bytes where they fit, headers of its own (built in
    /// `scratch`) where not.
    pub fn append(&mut self, f: &Frame, iov: &mut Vec<Bytes>, scratch: &mut BytesMut) {
        let Self::Rtmp { chunk_size, last } = self else {
            f.flv_tag(iov);
            return;
        };
        let k = f.kind.index();
        if f.prev_seq.is_some() && last[k] == f.prev_seq {
            iov.push(f.rtmp.clone());
        } else if f.needs_own_chunks {
            f.own_chunks(STREAM_ID, *chunk_size, scratch);
            iov.push(scratch.split().freeze());
        } else {
            scratch.reserve(32);
            f.type0_header(STREAM_ID, scratch);
            iov.push(scratch.split().freeze());
            iov.push(f.rtmp.slice(f.rtmp_header_len..));
        }
        last[k] = Some(f.seq);
    }

    /// Forms that may share a cohort; [`PartialEq`] then says whether they are in step.
    pub fn kin(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Rtmp { chunk_size: a, .. }, Self::Rtmp { chunk_size: b, .. }) => a == b,
            (Self::Flv, Self::Flv) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type0_header_plus_shared_tail_is_a_whole_message() {
        let payload = Bytes::from(vec![0x17u8; 300]);
        let f = Frame::new(0, None, MediaKind::Video, 1000, 40, payload.clone(), 128);
        assert!(!f.needs_own_chunks);
        let mut own = BytesMut::new();
        f.own_chunks(1, 128, &mut own);
        let mut spliced = BytesMut::new();
        f.type0_header(1, &mut spliced);
        spliced.extend_from_slice(&f.rtmp[f.rtmp_header_len..]);
        assert_eq!(own, spliced);
    }

    #[test]
    fn flv_form_is_a_whole_tag_and_built_once() {
        let payload = Bytes::from(vec![0x17u8, 1, 0, 0, 0, 9, 9]);
        let f = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0123_4567,
            40,
            payload.clone(),
            128,
        );
        let mut iov = Vec::new();
        f.flv_tag(&mut iov);
        f.flv_tag(&mut iov);
        assert_eq!(iov[0].as_ptr(), iov[3].as_ptr(), "framing rebuilt");
        assert_eq!(iov[1].as_ptr(), payload.as_ptr(), "payload copied");
        let mut expected = BytesMut::new();
        crate::flv::write_tag(9, 0x0123_4567, &payload, &mut expected);
        let got: Vec<u8> = iov[..3].iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn extended_timestamps_take_the_slow_path() {
        let payload = Bytes::from(vec![0x27u8; 300]);
        let f = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0100_0000,
            40,
            payload.clone(),
            128,
        );
        assert!(f.needs_own_chunks);
        let small = Frame::new(
            0,
            None,
            MediaKind::Video,
            0x0100_0000,
            40,
            payload.slice(..100),
            128,
        );
        assert!(!small.needs_own_chunks);
    }

    fn flat(iov: &[Bytes]) -> Vec<u8> {
        iov.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn rtmp_form_shares_what_follows_and_heads_the_rest() {
        let first = Frame::new(
            0,
            None,
            MediaKind::Video,
            1000,
            0,
            Bytes::from(vec![0x17; 9]),
            128,
        );
        let next = Frame::new(
            1,
            Some(0),
            MediaKind::Video,
            1040,
            40,
            Bytes::from(vec![0x27; 9]),
            128,
        );
        let mut form = Form::rtmp(128);
        let (mut iov, mut scratch) = (Vec::new(), BytesMut::new());
        form.append(&first, &mut iov, &mut scratch);
        let mut own = BytesMut::new();
        first.own_chunks(STREAM_ID, 128, &mut own);
        assert_eq!(flat(&iov), own, "a start is a whole type-0 message");
        iov.clear();
        form.append(&next, &mut iov, &mut scratch);
        assert_eq!(iov.len(), 1);
        assert_eq!(
            iov[0].as_ptr(),
            next.rtmp.as_ptr(),
            "the follower is the shared bytes"
        );

        // A player that missed `first` writes its own header in front of `next`.
        let mut late = Form::rtmp(128);
        iov.clear();
        late.append(&next, &mut iov, &mut scratch);
        assert_eq!(iov.len(), 2);
        assert_ne!(late, Form::rtmp(128));
        assert_eq!(late, form, "in step once both sent `next`");
    }

    #[test]
    fn kin_forms_are_those_that_may_share_bytes() {
        assert!(Form::rtmp(128).kin(&Form::rtmp(128)));
        assert!(!Form::rtmp(128).kin(&Form::rtmp(4096)));
        assert!(Form::Flv.kin(&Form::Flv));
        assert!(!Form::Flv.kin(&Form::rtmp(128)));
        let f = Frame::new(
            0,
            None,
            MediaKind::Audio,
            0,
            0,
            Bytes::from_static(&[0xaf, 1]),
            128,
        );
        let mut iov = Vec::new();
        Form::Flv.append(&f, &mut iov, &mut BytesMut::new());
        let mut tag = BytesMut::new();
        crate::flv::write_tag(8, 0, &[0xaf, 1], &mut tag);
        assert_eq!(flat(&iov), tag);
    }
}
