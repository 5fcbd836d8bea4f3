//! One live stream's origin: the publisher's side of the fan-out. It keeps what a joining
//! core needs (metadata, sequence headers, GOP cache) and the list of cores to relay to.
//!
//! It runs on the publisher's core, under a lock that only attaching and detaching cores
//! contend for; it must not touch players, rings or sockets.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam::queue::ArrayQueue;

use super::{Hub, RelayItem, StreamKey, StreamSettings};
use crate::media::{Frame, FrameRole, Jitter, MediaKind};

/// Frames a relay queue holds before the publisher counts an overflow. About 30 s of a
/// 60 fps stream with audio: a core that lags this much is broken, not slow.
const RELAY_QUEUE_CAPACITY: usize = 4096;
/// The GOP cache is dropped, rather than grown, past this many frames (SRS's
/// gop_cache_max_frames is 2500).
const GOP_MAX_FRAMES: usize = 2500;
/// Frames an audio-only stream keeps for joiners.
const AUDIO_ONLY_FRAMES: usize = 64;

/// One core's inbox for one stream: frames in publish order, then a wake-up.
#[derive(Debug)]
pub struct Relay {
    queue: ArrayQueue<RelayItem>,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl Relay {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            queue: ArrayQueue::new(RELAY_QUEUE_CAPACITY),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The next item, if any.
    pub(crate) fn pop(&self) -> Option<RelayItem> {
        self.queue.pop()
    }

    /// Registers the relay task's waker; returns true when there is work or it was closed.
    pub(crate) fn register(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        !self.queue.is_empty() || self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn send(&self, item: RelayItem) -> bool {
        let ok = self.queue.push(item).is_ok();
        self.waker.wake();
        ok
    }
}

/// What a core needs to start consuming a stream: the state at the moment it attached.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Latest onMetaData.
    pub metadata: Option<Arc<Frame>>,
    /// Latest video sequence header.
    pub video_sh: Option<Arc<Frame>>,
    /// Latest audio sequence header.
    pub audio_sh: Option<Arc<Frame>>,
    /// Frames since the last keyframe, in order, contiguous in `seq`.
    pub gop: Vec<Arc<Frame>>,
    /// Sequence number of the first frame that will arrive on the relay.
    pub next_seq: u64,
}

#[derive(Debug, Default)]
struct State {
    publisher: Option<u64>,
    removed: bool,
    /// Timeline state, handed to each publisher and back, so the stream's timestamps and
    /// sequence numbers continue across publishers.
    timeline: Timeline,
    metadata: Option<Arc<Frame>>,
    video_sh: Option<Arc<Frame>>,
    audio_sh: Option<Arc<Frame>>,
    has_video: bool,
    gop: Vec<Arc<Frame>>,
    relays: Vec<Arc<Relay>>,
}

#[derive(Debug, Default)]
struct Timeline {
    next_seq: u64,
    jitter: Jitter,
    /// Timestamp and seq of the last frame of each kind.
    last: [Option<(u32, u64)>; 3],
}

/// Counters of one stream.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Payload bytes published.
    pub bytes_in: AtomicU64,
    /// Messages published.
    pub frames_in: AtomicU64,
    /// Players and forwarders attached, on all cores.
    pub consumers: AtomicUsize,
    /// Of those, the stream's own (its HLS segmenter and DVR recorder, see
    /// [`super::Consumer::subscribe_own`]): what an edge's pull does not count as players.
    pub own_consumers: AtomicUsize,
    /// DVR files of this stream closed and renamed to their final name.
    pub dvr_files: AtomicU64,
    /// DVR files of this stream that could not be created, written or renamed.
    pub dvr_errors: AtomicU64,
}

/// One live stream.
#[derive(Debug)]
pub struct Source {
    id: u64,
    key: StreamKey,
    settings: StreamSettings,
    state: Mutex<State>,
    created: std::time::SystemTime,
    /// Counters.
    pub stats: SourceStats,
}

impl Source {
    pub(super) fn new(id: u64, key: StreamKey, settings: StreamSettings) -> Self {
        Self {
            id,
            key,
            settings,
            state: Mutex::default(),
            created: std::time::SystemTime::now(),
            stats: SourceStats::default(),
        }
    }

    /// A number unique to this stream in this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Which stream this is.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// When the stream was created (its first publisher or player arrived).
    pub fn created(&self) -> std::time::SystemTime {
        self.created
    }

    /// The settings it was created with.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("source lock poisoned")
    }

    /// The latest video and audio sequence headers, for the API.
    pub fn sequence_headers(&self) -> (Option<Arc<Frame>>, Option<Arc<Frame>>) {
        let st = self.lock();
        (st.video_sh.clone(), st.audio_sh.clone())
    }

    /// The connection publishing now, if any.
    pub fn publisher(&self) -> Option<u64> {
        self.lock().publisher
    }

    /// Frames waiting in this stream's relay queues for their cores to take them: what a
    /// lagging core holds. Takes the Source's lock once; for stats, not for the hot path.
    pub fn queued_frames(&self) -> usize {
        self.lock().relays.iter().map(|r| r.queue.len()).sum()
    }

    /// Ok(None) when the Source was removed from the hub (look it up again), Err when busy.
    pub(super) fn start_publish(
        self: &Arc<Self>,
        hub: Arc<Hub>,
        conn_id: u64,
    ) -> Result<Option<PublishGuard>, ()> {
        let mut st = self.lock();
        if st.removed {
            return Ok(None);
        }
        if st.publisher.is_some() {
            return Err(());
        }
        st.publisher = Some(conn_id);
        let mut timeline = std::mem::take(&mut st.timeline);
        timeline.jitter.reset_input();
        Ok(Some(PublishGuard {
            source: self.clone(),
            hub,
            timeline,
        }))
    }

    /// Attaches a core's relay; returns what the core needs to serve joiners. Err when the
    /// Source was removed from the hub: look it up again.
    pub(crate) fn attach(&self, relay: Arc<Relay>) -> Result<Snapshot, ()> {
        let mut st = self.lock();
        if st.removed {
            return Err(());
        }
        st.relays.push(relay);
        Ok(Snapshot {
            metadata: st.metadata.clone(),
            video_sh: st.video_sh.clone(),
            audio_sh: st.audio_sh.clone(),
            gop: if self.settings.gop_cache {
                st.gop.clone()
            } else {
                Vec::new()
            },
            next_seq: st.timeline.next_seq,
        })
    }

    pub(crate) fn detach(&self, relay: &Arc<Relay>) {
        self.lock().relays.retain(|r| !Arc::ptr_eq(r, relay));
        relay.close();
    }

    /// Marks the Source removed when it has no publisher and no core attached.
    pub(super) fn mark_removed_if_idle(&self) -> bool {
        let mut st = self.lock();
        if st.publisher.is_none() && st.relays.is_empty() {
            st.removed = true;
        }
        st.removed
    }

    fn push(&self, timeline: &mut Timeline, kind: MediaKind, timestamp: u32, payload: Bytes) {
        let ts = timeline.jitter.correct(timestamp);
        let seq = timeline.next_seq;
        let slot = &mut timeline.last[kind.index()];
        let (delta, prev_seq) = match *slot {
            // A type-1 delta is unsigned: a step back gets type-0 headers for everyone.
            Some((last_ts, last_seq)) if ts >= last_ts => (ts - last_ts, Some(last_seq)),
            _ => (0, None),
        };
        *slot = Some((ts, seq));
        timeline.next_seq += 1;
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        // Serialized outside the lock: only the publisher's core pays for the copy.
        let frame = Arc::new(Frame::new(
            seq,
            prev_seq,
            kind,
            ts,
            delta,
            payload,
            self.settings.chunk_size,
        ));

        let mut st = self.lock();
        st.timeline.next_seq = timeline.next_seq;
        match frame.role {
            FrameRole::Metadata => st.metadata = Some(frame.clone()),
            FrameRole::VideoSequenceHeader => st.video_sh = Some(frame.clone()),
            FrameRole::AudioSequenceHeader => st.audio_sh = Some(frame.clone()),
            FrameRole::Keyframe => {
                st.has_video = true;
                st.gop.clear();
            }
            FrameRole::Other => {}
        }
        if self.settings.gop_cache {
            if kind == MediaKind::Video {
                st.has_video = true;
            }
            let cacheable = !st.gop.is_empty() || frame.is_keyframe() || !st.has_video;
            if cacheable {
                st.gop.push(frame.clone());
            }
            if !st.has_video && st.gop.len() > AUDIO_ONLY_FRAMES {
                st.gop.remove(0);
            } else if st.gop.len() > GOP_MAX_FRAMES {
                st.gop.clear();
            }
        }
        let mut lost = 0;
        for relay in &st.relays {
            if !relay.send(RelayItem::Frame(frame.clone())) {
                lost += 1;
            }
        }
        drop(st);
        if lost > 0 {
            tracing::warn!(stream = %self.key, seq, "relay queue full on {lost} core(s)");
        }
    }
}

/// The right to publish a stream, held by its publisher's connection. Dropping it ends the
/// publish: players stay attached and continue when a new publisher arrives.
#[derive(Debug)]
pub struct PublishGuard {
    source: Arc<Source>,
    hub: Arc<Hub>,
    timeline: Timeline,
}

impl PublishGuard {
    /// The stream.
    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }

    /// Publishes one message: an audio or video tag body, or onMetaData.
    pub fn push(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        self.source
            .push(&mut self.timeline, kind, timestamp, payload);
    }
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        {
            let mut st = self.source.lock();
            st.publisher = None;
            st.timeline = std::mem::take(&mut self.timeline);
            st.metadata = None;
            st.video_sh = None;
            st.audio_sh = None;
            st.has_video = false;
            st.gop.clear();
            for relay in &st.relays {
                relay.send(RelayItem::Unpublish);
            }
        }
        self.hub.release(&self.source);
    }
}
