//! The consuming side of the fan-out, one instance per worker core: for each stream that has
//! consumers on this core, a ring of recent frames fed by one relay task, and [`Consumer`]s
//! that are cursors into it.
//!
//! Everything here is thread-local (`Rc`, `RefCell`): it is touched only by its own core's
//! tasks, with no lock and no atomic per player. A consumer's state is a cursor and two flags,
//! whatever the number of players or the bitrate. It must not touch sockets: players and
//! forwarders own theirs and read frames through [`Consumer::next_batch`].
//!
//! The relay task also decides when the core's players write: a *flush* ([`Consumer::flushed`])
//! is SRS's merged write (`mw_latency`) on the media's own clock. On a 528 kbps stream a
//! player gets ~70 messages a second, and the kernel's TCP cost per send dwarfs ours, so
//! players write what arrived since the last flush in one send. A flush falls on the arrival
//! of a video frame, chosen so that no frame waits longer than `mw_latency`: the frame that
//! triggers it waits not at all, where a free-running tick of the same period would have
//! held each video frame half a period on average.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use super::{Hub, Relay, RelayItem, Source, StreamKey, StreamSettings};
use crate::media::{Frame, FrameRole, MediaKind};

/// A ring never holds more frames than this, whatever queue_length says, so that a stream
/// with an absurd GOP cannot grow a core's memory without bound.
const RING_MAX_FRAMES: usize = 8192;
/// Frames of an audio-only stream a joiner starts with.
const AUDIO_ONLY_START: u64 = 64;

thread_local! {
    static STREAMS: RefCell<HashMap<StreamKey, Rc<CoreStream>>> = RefCell::new(HashMap::new());
}

/// The number of streams with consumers on this core.
pub fn local_streams() -> usize {
    STREAMS.with(|s| s.borrow().len())
}

#[derive(Debug)]
struct Ring {
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
    fn head(&self) -> u64 {
        self.base + self.frames.len() as u64
    }

    fn get(&self, seq: u64) -> Option<&Arc<Frame>> {
        seq.checked_sub(self.base)
            .and_then(|i| self.frames.get(usize::try_from(i).ok()?))
    }

    fn push(&mut self, frame: Arc<Frame>) {
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

    fn unpublish(&mut self) {
        self.metadata = None;
        self.video_sh = None;
        self.audio_sh = None;
        self.last_key = None;
        self.has_video = false;
        self.unpublishes += 1;
    }

    fn prefix(&self) -> impl Iterator<Item = &Arc<Frame>> {
        [&self.metadata, &self.video_sh, &self.audio_sh]
            .into_iter()
            .flatten()
    }
}

/// When a core's players write next: the merged-write schedule (see the module's doc).
#[derive(Debug, Default)]
struct Flush {
    /// Counts flushes; a waiter is done when it changes.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// When the last flush was (or the first frame came).
    last: Cell<Option<Instant>>,
    /// Frames arrived since the last flush.
    pending: Cell<bool>,
    /// Timestamp of the last video frame, and the gap to the one before: the wait for the
    /// next video frame that a flush at this one saves.
    last_video: Cell<Option<u32>>,
    video_gap: Cell<Duration>,
}

impl Flush {
    /// The longest gap between video frames taken as the stream's frame interval; a larger
    /// one is a stall or a timestamp jump, not a frame rate.
    const MAX_GAP_MS: u32 = 1000;

    /// Notes frames that arrived at `now`, `video` holding the timestamp of the last video
    /// frame among them; true when the players should write now rather than wait for the
    /// next video frame, with `merge` the longest any frame may wait. Measured from the last
    /// flush, not from the oldest waiting frame, so that the period stays a whole number of
    /// video frames: an audio frame that came late in one period would otherwise push the
    /// next flush a frame later and make the video frames before it wait longer.
    fn arrived(&self, now: Instant, video: Option<u32>, merge: Option<Duration>) -> bool {
        self.pending.set(true);
        let last = self.last.get().unwrap_or(now);
        self.last.set(Some(last));
        let Some(merge) = merge else {
            return true;
        };
        let Some(ts) = video else {
            return now >= last + merge;
        };
        if let Some(gap) = self.last_video.get().map(|prev| ts.wrapping_sub(prev)) {
            if (1..=Self::MAX_GAP_MS).contains(&gap) {
                self.video_gap.set(Duration::from_millis(u64::from(gap)));
            }
        }
        self.last_video.set(Some(ts));
        // Waiting for the next video frame would take this period past `merge`.
        now + self.video_gap.get() > last + merge
    }

    /// When the period ends with frames waiting: the flush's deadline when no video frame
    /// comes first (audio-only streams, a stalled encoder).
    fn deadline(&self, merge: Option<Duration>) -> Option<Instant> {
        if !self.pending.get() {
            return None;
        }
        Some(self.last.get()? + merge?)
    }

    fn fire(&self, now: Instant) {
        self.pending.set(false);
        self.last.set(Some(now));
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.take() {
            w.wake();
        }
    }
}

/// One stream's presence on this core.
#[derive(Debug)]
struct CoreStream {
    key: StreamKey,
    source: Arc<Source>,
    hub: Arc<Hub>,
    relay: Arc<Relay>,
    ring: RefCell<Ring>,
    waiters: RefCell<Vec<Waker>>,
    flush: Flush,
    consumers: Cell<usize>,
}

impl CoreStream {
    fn open(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Rc<Self> {
        if let Some(s) = STREAMS.with(|s| s.borrow().get(key).cloned()) {
            return s;
        }
        let (source, relay, snap) = loop {
            let source = hub.source(key, settings);
            let relay = Relay::new();
            if let Ok(snap) = source.attach(relay.clone()) {
                break (source, relay, snap);
            }
        };
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
        let ring = Ring {
            base: gop.front().map_or(snap.next_seq, |f| f.seq),
            last_key: gop.iter().rev().find(|f| f.is_keyframe()).map(|f| f.seq),
            has_video: gop.iter().any(|f| f.kind == MediaKind::Video) || snap.video_sh.is_some(),
            frames: gop,
            metadata: snap.metadata,
            video_sh: snap.video_sh,
            audio_sh: snap.audio_sh,
            unpublishes: 0,
            queue_ms: u32::try_from(source.settings().queue_length.as_millis()).unwrap_or(u32::MAX),
        };
        let stream = Rc::new(Self {
            key: key.clone(),
            source,
            hub: hub.clone(),
            relay,
            ring: RefCell::new(ring),
            waiters: RefCell::new(Vec::new()),
            flush: Flush::default(),
            consumers: Cell::new(0),
        });
        STREAMS.with(|s| s.borrow_mut().insert(key.clone(), stream.clone()));
        compio::runtime::spawn(relay_task(stream.clone())).detach();
        stream
    }

    fn wake_consumers(&self) {
        for w in self.waiters.take() {
            w.wake();
        }
    }
}

/// Moves frames from the cross-core queue into this core's ring, wakes the consumers that
/// were waiting (one wake-up of the core per frame, however many players it has), and
/// flushes the players' writes on the schedule of [`Flush`].
async fn relay_task(stream: Rc<CoreStream>) {
    let merge = stream.source.settings().merge;
    loop {
        let relay = poll_fn(|cx| {
            if stream.relay.register(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        if let Some(deadline) = stream.flush.deadline(merge) {
            let timer = std::pin::pin!(compio::time::sleep_until(deadline));
            if let Either::Right(_) = select(std::pin::pin!(relay), timer).await {
                stream.flush.fire(Instant::now());
                continue;
            }
        } else {
            relay.await;
        }
        if stream.relay.is_closed() {
            stream.flush.fire(Instant::now());
            return;
        }
        let mut video = None;
        {
            let mut ring = stream.ring.borrow_mut();
            while let Some(item) = stream.relay.pop() {
                match item {
                    RelayItem::Frame(f) => {
                        if f.kind == MediaKind::Video {
                            video = Some(f.timestamp);
                        }
                        ring.push(f);
                    }
                    RelayItem::Unpublish => ring.unpublish(),
                }
            }
        }
        stream.wake_consumers();
        let now = Instant::now();
        if stream.flush.arrived(now, video, merge) {
            stream.flush.fire(now);
        }
    }
}

/// What woke a consumer up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Frames are ready.
    Data,
    /// The publisher left (players usually keep waiting; forwarders stop).
    Unpublished,
}

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

/// A player's or forwarder's position in a stream on this core.
#[derive(Debug)]
pub struct Consumer {
    stream: Rc<CoreStream>,
    at: Position,
    unpublishes: u64,
    skips: u64,
    /// Counted in the Source's consumers (the API's clients); a fork is not.
    counted: bool,
}

impl Consumer {
    /// Starts consuming `key` on this core: from the GOP cache's keyframe when there is one,
    /// else from the next keyframe.
    pub fn subscribe(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Self {
        let stream = CoreStream::open(hub, key, settings);
        stream.consumers.set(stream.consumers.get() + 1);
        stream
            .source
            .stats
            .consumers
            .fetch_add(1, Ordering::Relaxed);
        let (cursor, need_key, unpublishes) = {
            let ring = stream.ring.borrow();
            let gop_cache = stream.source.settings().gop_cache;
            let (cursor, need_key) = match ring.last_key {
                Some(k) if gop_cache => (k, false),
                None if gop_cache && !ring.has_video => (
                    ring.head().saturating_sub(AUDIO_ONLY_START).max(ring.base),
                    false,
                ),
                _ => (ring.head(), true),
            };
            (cursor, need_key, ring.unpublishes)
        };
        Self {
            stream,
            at: Position {
                cursor,
                prefix_due: true,
                need_key,
            },
            unpublishes,
            skips: 0,
            counted: true,
        }
    }

    /// A consumer of the same stream at the same position, not counted as a client: one
    /// cursor that serves many players (the server's cohorts).
    pub fn fork(&self) -> Self {
        let stream = self.stream.clone();
        stream.consumers.set(stream.consumers.get() + 1);
        Self {
            stream,
            at: self.at,
            unpublishes: self.unpublishes,
            skips: 0,
            counted: false,
        }
    }

    /// True when both consume the same stream on this core.
    pub fn same_stream(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.stream, &other.stream)
    }

    /// Where it stands.
    pub fn position(&self) -> Position {
        self.at
    }

    /// Moves it to where a consumer of the same stream stood (a player leaving its cohort).
    pub fn set_position(&mut self, at: Position) {
        self.at = at;
    }

    /// Waits for the core's next flush: the moment its players write what arrived since the
    /// last one (`mw_latency`, see the module's doc).
    pub fn flushed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let stream = self.stream.clone();
        let start = stream.flush.generation.get();
        let mut registered: Option<Waker> = None;
        poll_fn(move |cx| {
            let flush = &stream.flush;
            if flush.generation.get() != start {
                return Poll::Ready(());
            }
            // Polled again by a wake that was not the flush (a player's reader): register
            // only if the waker changed, so the list stays one entry per waiting task.
            if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                registered = Some(cx.waker().clone());
                flush.waiters.borrow_mut().push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// The stream's Source.
    pub fn source(&self) -> &Arc<Source> {
        &self.stream.source
    }

    /// Times this consumer fell behind queue_length and skipped to a keyframe.
    pub fn skips(&self) -> u64 {
        self.skips
    }

    /// Counts `n` more players' skips: a fork's skip is that of every player it serves.
    pub fn count_skips(&self, n: u64) {
        self.stream
            .hub
            .stats
            .player_skips
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Waits until there is something to send, or the publisher left.
    pub async fn wait(&mut self) -> Wake {
        poll_fn(|cx| {
            let ring = self.stream.ring.borrow();
            if ring.unpublishes != self.unpublishes {
                self.unpublishes = ring.unpublishes;
                return Poll::Ready(Wake::Unpublished);
            }
            if self.at.cursor < ring.head()
                || (self.at.prefix_due && ring.prefix().next().is_some())
            {
                return Poll::Ready(Wake::Data);
            }
            self.stream.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Visits up to `max` frames from the cursor on (after the metadata and sequence headers
    /// where a start or a skip calls for them) and moves the cursor past them. A consumer that
    /// fell behind the ring's tail is moved to the next keyframe and counted.
    pub fn next_batch(&mut self, max: usize, mut visit: impl FnMut(&Frame)) -> usize {
        let ring = self.stream.ring.borrow();
        let at = &mut self.at;
        if at.cursor < ring.base {
            self.skips += 1;
            self.stream
                .hub
                .stats
                .player_skips
                .fetch_add(1, Ordering::Relaxed);
            match ring.frames.iter().find(|f| f.is_keyframe()) {
                Some(k) => {
                    at.cursor = k.seq;
                    at.need_key = false;
                }
                None => {
                    at.cursor = ring.head();
                    at.need_key = true;
                }
            }
            at.prefix_due = true;
        }
        let mut n = 0;
        if at.prefix_due {
            at.prefix_due = false;
            for f in ring.prefix() {
                visit(f);
                n += 1;
            }
        }
        while n < max {
            let Some(f) = ring.get(at.cursor) else {
                break;
            };
            at.cursor += 1;
            if at.need_key && f.kind == MediaKind::Video {
                if !f.is_keyframe() {
                    continue;
                }
                at.need_key = false;
            }
            visit(f);
            n += 1;
        }
        n
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let stream = &self.stream;
        if self.counted {
            stream
                .source
                .stats
                .consumers
                .fetch_sub(1, Ordering::Relaxed);
        }
        let left = stream.consumers.get() - 1;
        stream.consumers.set(left);
        if left == 0 {
            STREAMS.with(|s| {
                let mut map = s.borrow_mut();
                if map.get(&stream.key).is_some_and(|s| Rc::ptr_eq(s, stream)) {
                    map.remove(&stream.key);
                }
            });
            stream.source.detach(&stream.relay);
            stream.hub.release(&stream.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn video(key: bool) -> Bytes {
        Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0xaa, 0xbb])
    }

    /// The flush schedule on source.flv's interleaving (25 fps video, 44.1 kHz AAC, each
    /// frame arriving at its timestamp): the flushes each return the times at which frames
    /// were flushed and how long each video frame waited.
    fn schedule(merge: Option<Duration>) -> (Vec<u64>, Vec<u64>) {
        let flush = Flush::default();
        let t0 = Instant::now();
        let (mut flushes, mut waits, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        let mut audio = 0u64;
        for v in 0..100u64 {
            let tv = v * 40;
            let mut arrivals = Vec::new();
            while audio * 1024 * 1000 / 44100 < tv + 40 {
                arrivals.push((audio * 1024 * 1000 / 44100, false));
                audio += 1;
            }
            arrivals.push((tv, true));
            arrivals.sort_unstable();
            for (t, video) in arrivals {
                // A frame whose deadline passed before it arrived: the timer flushed first.
                if let Some(d) = flush.deadline(merge) {
                    let dt = (d - t0).as_millis() as u64;
                    if dt < t {
                        flushes.push(dt);
                        waits.extend(pending.drain(..).map(|p| dt - p));
                        flush.fire(d);
                    }
                }
                if video {
                    pending.push(t);
                }
                let now = t0 + Duration::from_millis(t);
                if flush.arrived(now, video.then_some(t as u32), merge) {
                    flushes.push(t);
                    waits.extend(pending.drain(..).map(|p| t - p));
                    flush.fire(now);
                }
            }
        }
        (flushes, waits)
    }

    #[test]
    fn flushes_fall_on_video_frames_and_no_frame_waits_past_mw_latency() {
        let (flushes, waits) = schedule(Some(Duration::from_millis(100)));
        let steady = &flushes[5..];
        for pair in steady.windows(2) {
            assert_eq!(pair[1] - pair[0], 80, "flushes at {flushes:?}");
        }
        assert!(
            steady.iter().all(|t| t % 40 == 0),
            "off the video frames: {steady:?}"
        );
        assert_eq!(waits[10..].iter().max(), Some(&40), "video waits {waits:?}");

        // 120 ms: every third video frame; the first of three waits 80 ms.
        let (flushes, waits) = schedule(Some(Duration::from_millis(120)));
        for pair in flushes[5..].windows(2) {
            assert_eq!(pair[1] - pair[0], 120, "flushes at {flushes:?}");
        }
        assert_eq!(waits[10..].iter().max(), Some(&80));

        // 50 ms at 25 fps: every video frame flushes at once.
        let (flushes, waits) = schedule(Some(Duration::from_millis(50)));
        // (The first frame waits for the second: the frame rate is not known before it.)
        assert_eq!(flushes.len(), 99);
        assert!(waits[2..].iter().all(|&w| w == 0), "video waits {waits:?}");

        // mw_latency 0: every arrival.
        let (flushes, _) = schedule(None);
        assert!(flushes.len() > 200);
    }

    async fn let_relays_run() {
        compio::time::sleep(Duration::from_millis(5)).await;
    }

    #[test]
    fn slow_consumer_skips_to_a_keyframe_and_the_ring_stays_bounded() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let hub = Hub::new();
            let (key, settings) = crate::hub::test_stream(Duration::from_secs(1));
            let mut publisher = hub.publish(&key, &settings, 1).expect("publish");
            let mut slow = Consumer::subscribe(&hub, &key, &settings);
            let mut fast = Consumer::subscribe(&hub, &key, &settings);
            let mut fast_seen = Vec::new();
            // 20 s of 25 fps video, a keyframe every 2 s.
            for i in 0..500u32 {
                publisher.push(MediaKind::Video, i * 40, video(i % 50 == 0));
                if i % 25 == 0 {
                    let_relays_run().await;
                    fast.next_batch(usize::MAX, |f| fast_seen.push(f.seq));
                }
            }
            let_relays_run().await;
            fast.next_batch(usize::MAX, |f| fast_seen.push(f.seq));
            assert_eq!(
                fast_seen,
                (0..500).collect::<Vec<_>>(),
                "fast consumer lost frames"
            );

            // The ring keeps queue_length (1 s) plus the current GOP, not 20 s.
            let len = slow.stream.ring.borrow().frames.len();
            assert!(len <= 100, "ring holds {len} frames");

            let mut first = None;
            slow.next_batch(1, |f| first = Some((f.seq, f.is_keyframe())));
            assert_eq!(slow.skips(), 1);
            assert_eq!(hub.stats.player_skips.load(Ordering::Relaxed), 1);
            let (seq, key) = first.expect("a frame after the skip");
            assert!(key, "resumed on frame {seq}, not a keyframe");
            assert_eq!(seq % 50, 0);
        });
    }

    #[test]
    fn consumers_on_a_core_share_one_copy_and_leave_nothing_behind() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let hub = Hub::new();
            let (key, settings) = crate::hub::test_stream(Duration::from_secs(10));
            let mut publisher = hub.publish(&key, &settings, 1).expect("publish");
            let mut a = Consumer::subscribe(&hub, &key, &settings);
            let mut b = Consumer::subscribe(&hub, &key, &settings);
            publisher.push(MediaKind::Video, 0, video(true));
            let_relays_run().await;
            let (mut pa, mut pb) = (None, None);
            a.next_batch(1, |f| pa = Some(f.rtmp.as_ptr()));
            b.next_batch(1, |f| pb = Some(f.rtmp.as_ptr()));
            assert!(
                pa.is_some() && pa == pb,
                "players do not share the serialized bytes"
            );

            drop((a, b));
            assert_eq!(local_streams(), 0);
            drop(publisher);
            assert!(
                hub.sources().is_empty(),
                "the Source outlived its publisher and players"
            );
        });
    }
}
