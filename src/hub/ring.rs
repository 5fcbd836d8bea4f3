//! A core's ring of one stream's recent frames, and the cursor logic of the consumers that
//! read it: where a new consumer starts, what it is sent before its first frame (metadata,
//! sequence headers), and how one that fell behind the ring's tail skips to a keyframe.
//!
//! Pure data: no runtime, no clock, no waker, no socket. The relay task ([`super::relay`])
//! appends to it; [`super::consumer`] reads it through a [`Position`].
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;

use super::source::Snapshot;
use crate::media::{Frame, FrameRole, MediaKind};

/// A ring never holds more frames than this, whatever queue_length says, so that a stream
/// with an absurd GOP cannot grow a core's memory without bound.
const RING_MAX_FRAMES: usize = 8192;
/// Frames of an audio-only stream a joiner starts with.
const AUDIO_ONLY_START: u64 = 64;

/// Where a consumer stands: two consumers of a stream on a core at the same position visit
/// the same frames next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    cursor: u64,
    /// Metadata and sequence headers go out before the next frame.
    prefix_due: bool,
    /// Non-key video is skipped until a keyframe.
    need_key: bool,
}

impl Position {
    /// True before the consumer's first batch: its start (metadata, sequence headers, GOP
    /// cache) is still to come.
    pub fn is_fresh(&self) -> bool {
        self.prefix_due
    }
}

/// What one read of the ring did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Read {
    /// Frames visited.
    pub(super) frames: usize,
    /// The position had fallen behind the ring's tail and was moved to a keyframe.
    pub(super) skipped: bool,
}

/// The recent frames of one stream on one core.
#[derive(Debug)]
pub(super) struct Ring {
    /// `seq` of `frames[0]`.
    base: u64,
    frames: VecDeque<Arc<Frame>>,
    last_key: Option<u64>,
    has_video: bool,
    metadata: Option<Arc<Frame>>,
    video_sh: Option<Arc<Frame>>,
    audio_sh: Option<Arc<Frame>>,
    unpublishes: u64,
    queue_ms: u32,
}

impl Ring {
    /// The ring of a core that attached at `snap`, keeping `queue_ms` of media (and always
    /// the current GOP). The snapshot's GOP is kept only if it runs without a gap into the
    /// relay's first frame; otherwise the ring starts empty at that frame.
    pub(super) fn new(snap: Snapshot, queue_ms: u32) -> Self {
        let contiguous = snap
            .gop
            .iter()
            .enumerate()
            .all(|(i, f)| f.seq + (snap.gop.len() - i) as u64 == snap.next_seq);
        let gop: VecDeque<_> = if contiguous {
            snap.gop.into()
        } else {
            VecDeque::new()
        };
        Self {
            base: gop.front().map_or(snap.next_seq, |f| f.seq),
            last_key: gop.iter().rev().find(|f| f.is_keyframe()).map(|f| f.seq),
            has_video: gop.iter().any(|f| f.kind == MediaKind::Video) || snap.video_sh.is_some(),
            frames: gop,
            metadata: snap.metadata,
            video_sh: snap.video_sh,
            audio_sh: snap.audio_sh,
            unpublishes: 0,
            queue_ms,
        }
    }

    fn head(&self) -> u64 {
        self.base + self.frames.len() as u64
    }

    fn get(&self, seq: u64) -> Option<&Arc<Frame>> {
        seq.checked_sub(self.base)
            .and_then(|i| self.frames.get(usize::try_from(i).ok()?))
    }

    /// Frames it holds now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Appends the stream's next frame, and drops what is older than queue_length and not
    /// in the current GOP.
    pub(super) fn push(&mut self, frame: Arc<Frame>) {
        if frame.seq != self.head() {
            // The relay queue overflowed and frames are missing: restart the ring here.
            // Consumers behind `base` take the lagging path and skip to a keyframe.
            self.frames.clear();
            self.base = frame.seq;
            self.last_key = None;
        }
        match frame.role {
            FrameRole::Metadata => self.metadata = Some(frame.clone()),
            FrameRole::VideoSequenceHeader => self.video_sh = Some(frame.clone()),
            FrameRole::AudioSequenceHeader => self.audio_sh = Some(frame.clone()),
            FrameRole::Keyframe => self.last_key = Some(frame.seq),
            FrameRole::Other => {}
        }
        self.has_video |= frame.kind == MediaKind::Video;
        let head_ts = frame.timestamp;
        self.frames.push_back(frame);
        // Keep queue_length of media, and always the current GOP (bounded by the cap).
        while let Some(front) = self.frames.front() {
            let before_gop = self.last_key.is_none_or(|k| front.seq < k);
            let old = head_ts.wrapping_sub(front.timestamp) > self.queue_ms;
            if !(self.frames.len() > RING_MAX_FRAMES || (before_gop && old)) {
                break;
            }
            self.frames.pop_front();
            self.base += 1;
            if self.last_key.is_some_and(|k| k < self.base) {
                self.last_key = None;
            }
        }
    }

    /// The publisher left: its metadata, sequence headers and GOP are no longer current.
    pub(super) fn unpublish(&mut self) {
        self.metadata = None;
        self.video_sh = None;
        self.audio_sh = None;
        self.last_key = None;
        self.has_video = false;
        self.unpublishes += 1;
    }

    /// How many publishes ended since the ring began: a consumer that saw fewer was not told.
    pub(super) fn unpublishes(&self) -> u64 {
        self.unpublishes
    }

    fn prefix(&self) -> impl Iterator<Item = &Arc<Frame>> {
        [&self.metadata, &self.video_sh, &self.audio_sh]
            .into_iter()
            .flatten()
    }

    /// Where a new consumer starts: at the GOP cache's keyframe when `gop_cache` and there is
    /// one, at the last frames of an audio-only stream, else at the head, waiting for the
    /// next keyframe.
    pub(super) fn start(&self, gop_cache: bool) -> Position {
        let (cursor, need_key) = match self.last_key {
            Some(k) if gop_cache => (k, false),
            None if gop_cache && !self.has_video => (
                self.head().saturating_sub(AUDIO_ONLY_START).max(self.base),
                false,
            ),
            _ => (self.head(), true),
        };
        Position {
            cursor,
            prefix_due: true,
            need_key,
        }
    }

    /// True when a consumer at `at` has something to read.
    pub(super) fn ready(&self, at: &Position) -> bool {
        at.cursor < self.head() || (at.prefix_due && self.prefix().next().is_some())
    }

    /// Visits up to `max` frames from `at` on (after the metadata and sequence headers where
    /// a start or a skip calls for them) and moves `at` past them. A position that fell
    /// behind the ring's tail is first moved to the next keyframe.
    pub(super) fn read(
        &self,
        at: &mut Position,
        max: usize,
        mut visit: impl FnMut(&Frame),
    ) -> Read {
        let skipped = at.cursor < self.base;
        if skipped {
            match self.frames.iter().find(|f| f.is_keyframe()) {
                Some(k) => {
                    at.cursor = k.seq;
                    at.need_key = false;
                }
                None => {
                    at.cursor = self.head();
                    at.need_key = true;
                }
            }
            at.prefix_due = true;
        }
        let mut n = 0;
        if at.prefix_due {
            at.prefix_due = false;
            for f in self.prefix() {
                visit(f);
                n += 1;
            }
        }
        while n < max {
            let Some(f) = self.get(at.cursor) else {
                break;
            };
            at.cursor += 1;
            if at.need_key && f.kind == MediaKind::Video {
                // A sequence header arriving while the consumer waits for a keyframe is
                // the one that keyframe needs: the prefix went out before it came.
                if f.role == FrameRole::VideoSequenceHeader {
                    visit(f);
                    n += 1;
                    continue;
                }
                if !f.is_keyframe() {
                    continue;
                }
                at.need_key = false;
            }
            visit(f);
            n += 1;
        }
        Read { frames: n, skipped }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const CHUNK: u32 = 60000;

    fn video(seq: u64, ts: u32, key: bool) -> Arc<Frame> {
        let payload = Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0xaa]);
        let prev = seq.checked_sub(1);
        Arc::new(Frame::new(
            seq,
            prev,
            MediaKind::Video,
            ts,
            40,
            payload,
            CHUNK,
        ))
    }

    fn empty(queue_ms: u32) -> Ring {
        Ring::new(Snapshot::default(), queue_ms)
    }

    #[test]
    fn a_slow_reader_skips_to_a_keyframe_and_the_ring_stays_bounded() {
        let mut ring = empty(1000);
        let mut slow = ring.start(true);
        let mut fast = ring.start(true);
        let mut fast_seen = Vec::new();
        // 20 s of 25 fps video, a keyframe every 2 s, read by `fast` once a second.
        for i in 0..500u64 {
            ring.push(video(i, i as u32 * 40, i % 50 == 0));
            if i % 25 == 24 {
                let read = ring.read(&mut fast, usize::MAX, |f| fast_seen.push(f.seq));
                assert!(!read.skipped, "a reader keeping up skipped at {i}");
            }
        }
        assert_eq!(fast_seen, (0..500).collect::<Vec<_>>(), "frames lost");

        // queue_length (1 s) plus the current GOP, not 20 s.
        assert!(ring.len() <= 100, "ring holds {} frames", ring.len());

        let mut first = None;
        let read = ring.read(&mut slow, 1, |f| first = Some((f.seq, f.is_keyframe())));
        assert!(read.skipped);
        let (seq, key) = first.expect("a frame after the skip");
        assert!(key, "resumed on frame {seq}, not a keyframe");
        assert_eq!(seq % 50, 0);
    }

    #[test]
    fn a_joiner_starts_at_the_gop_cache_or_waits_for_a_keyframe() {
        let mut ring = empty(10_000);
        for i in 0..10u64 {
            ring.push(video(i, i as u32 * 40, i == 4));
        }
        let mut cached = ring.start(true);
        assert!(cached.is_fresh());
        let mut seen = Vec::new();
        ring.read(&mut cached, usize::MAX, |f| seen.push(f.seq));
        assert_eq!(seen, (4..10).collect::<Vec<_>>());
        assert!(!cached.is_fresh() && !ring.ready(&cached));

        let mut live = ring.start(false);
        assert!(!ring.ready(&live), "no frame yet past the head");
        ring.push(video(10, 400, false));
        ring.push(video(11, 440, true));
        seen.clear();
        ring.read(&mut live, usize::MAX, |f| seen.push(f.seq));
        assert_eq!(seen, [11], "non-key video before the first keyframe");
    }

    #[test]
    fn a_sequence_header_after_the_prefix_reaches_a_consumer_waiting_for_a_keyframe() {
        let mut ring = empty(10_000);
        // Without the GOP cache (`gop_cache off`), a joiner waits for a keyframe.
        let mut early = ring.start(false);
        let meta = Arc::new(Frame::new(
            0,
            None,
            MediaKind::Data,
            0,
            0,
            Bytes::from_static(&[2, 0, 0]),
            CHUNK,
        ));
        ring.push(meta);
        // The first read comes between the metadata and the sequence header.
        let mut seen = Vec::new();
        ring.read(&mut early, usize::MAX, |f| seen.push(f.role));
        let header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]);
        ring.push(Arc::new(Frame::new(
            1,
            None,
            MediaKind::Video,
            0,
            0,
            header,
            CHUNK,
        )));
        ring.push(video(2, 0, false));
        ring.push(video(3, 40, true));
        ring.read(&mut early, usize::MAX, |f| seen.push(f.role));
        assert!(
            seen.ends_with(&[FrameRole::VideoSequenceHeader, FrameRole::Keyframe]),
            "the header, no inter frame, the keyframe: {seen:?}"
        );
    }

    #[test]
    fn a_gap_in_the_relay_restarts_the_ring() {
        let mut ring = empty(10_000);
        ring.push(video(0, 0, true));
        let mut at = ring.start(true);
        ring.read(&mut at, usize::MAX, |_| {});
        // Frames 1..=9 were lost on the relay queue.
        ring.push(video(10, 400, false));
        ring.push(video(11, 440, true));
        let mut seen = Vec::new();
        let read = ring.read(&mut at, usize::MAX, |f| seen.push(f.seq));
        assert!(read.skipped);
        assert_eq!(seen, [11]);
    }
}
