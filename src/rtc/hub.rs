//! State shared by every core's RTC engine: sessions waiting for their first STUN binding
//! (keyed by the server's ICE ufrag), the WebRTC streams, one inbox per core, and counters.
//! Locks here are taken on signalling, adoption, join and leave, never per packet or frame:
//! the publisher's core caches which inboxes to feed and re-reads only when players move.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind};

use super::engine::Session;
use crate::hub::StreamKey;

/// How long a session created by signalling waits for its first STUN binding.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(30);
/// Most sessions waiting for their first binding at once; more are refused with 503, so a
/// flood of offers cannot pin unbounded memory.
pub const MAX_PENDING: usize = 4096;
/// Messages a core's inbox holds; a core that falls this far behind loses frames (counted).
const INBOX_CAPACITY: usize = 16 * 1024;

/// A media frame of a stream, shared by every core and player (the payload is an `Arc`).
#[derive(Debug)]
pub struct SharedFrame {
    /// Audio or video.
    pub kind: MediaKind,
    /// The frame as the publisher's session depacketized it.
    pub data: MediaData,
}

/// A message to one core.
#[derive(Debug)]
pub enum CoreMsg {
    /// A frame for the core's players of stream `stream`.
    Frame {
        /// The stream's id.
        stream: u64,
        /// The frame.
        frame: Arc<SharedFrame>,
    },
    /// A player wants a keyframe: ask publisher session `session`.
    Keyframe {
        /// The publisher's session id.
        session: u64,
        /// PLI or FIR.
        kind: KeyframeRequestKind,
    },
    /// Close session `session` (WHIP/WHEP DELETE).
    Close {
        /// The session id.
        session: u64,
    },
}

/// One core's inbox: a bounded queue and the waker of the core's loop.
#[derive(Debug)]
pub struct Inbox {
    queue: ArrayQueue<CoreMsg>,
    waker: AtomicWaker,
    notified: AtomicBool,
    /// The socket's receive drop count (SO_RXQ_OVFL), as last reported by the kernel.
    pub rx_drops: AtomicU64,
}

impl Inbox {
    fn new() -> Self {
        Self {
            queue: ArrayQueue::new(INBOX_CAPACITY),
            waker: AtomicWaker::new(),
            notified: AtomicBool::new(false),
            rx_drops: AtomicU64::new(0),
        }
    }

    /// Queues `msg` and wakes the core; `false` if the inbox is full and `msg` was dropped.
    pub fn push(&self, msg: CoreMsg) -> bool {
        let ok = self.queue.push(msg).is_ok();
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
        ok
    }

    /// The next message, if any.
    pub fn pop(&self) -> Option<CoreMsg> {
        self.queue.pop()
    }

    /// Registers the core loop's waker; `true` if messages arrived since the last call, in
    /// which case the loop must not sleep.
    pub fn poll_notified(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.notified.swap(false, Ordering::AcqRel)
    }
}

/// A WebRTC stream: one publisher, players on any core.
#[derive(Debug)]
pub struct RtcStream {
    id: u64,
    key: StreamKey,
    /// `(core, session)` of the publisher once a core adopted it.
    publisher: Mutex<Option<(usize, u64)>>,
    /// Players per core, indexed by core.
    players: Mutex<Vec<usize>>,
    /// Bumped whenever `players` changes, so the publisher's core re-reads it only then.
    version: AtomicU64,
}

impl RtcStream {
    /// The stream's id, unique in this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream's key.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The version of the per-core player counts.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The cores with players, other than `except`.
    pub fn player_cores(&self, except: usize) -> Vec<usize> {
        let players = self.players.lock().expect("rtc stream lock poisoned");
        (0..players.len())
            .filter(|&c| c != except && players[c] > 0)
            .collect()
    }

    /// Counts a player joining (`+1`) or leaving (`-1`) on `core`.
    pub fn add_player(&self, core: usize, delta: isize) {
        let mut players = self.players.lock().expect("rtc stream lock poisoned");
        if players.len() <= core {
            players.resize(core + 1, 0);
        }
        players[core] = players[core].saturating_add_signed(delta);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The publisher's `(core, session)`, once adopted.
    pub fn publisher(&self) -> Option<(usize, u64)> {
        *self.publisher.lock().expect("rtc stream lock poisoned")
    }

    pub(crate) fn set_publisher(&self, at: Option<(usize, u64)>) {
        *self.publisher.lock().expect("rtc stream lock poisoned") = at;
    }
}

/// Process-wide RTC counters, for the log line and the API.
#[derive(Debug, Default)]
pub struct RtcStats {
    /// Sessions adopted by a core and alive.
    pub sessions: AtomicUsize,
    /// Datagrams not sent: failed or short sends (the `s` of `loss=(r:N,s:N)`).
    pub send_drops: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Send system calls made (sendmmsg batches).
    pub send_calls: AtomicU64,
    /// Datagrams received.
    pub received: AtomicU64,
    /// Receive system calls made (recvmmsg, on epoll). io_uring's multishot receive makes
    /// none: its datagrams arrive as completions of the one armed operation.
    pub recv_calls: AtomicU64,
    /// Datagrams rejected: unknown sender and not a binding for a pending session, wrong
    /// credentials, or not parseable.
    pub rejected: AtomicU64,
    /// Signalling requests refused (malformed SDP or JSON, busy or unknown streams, ...).
    pub refused_requests: AtomicU64,
    /// Messages dropped on full core inboxes.
    pub inbox_overflows: AtomicU64,
    /// Loss simulation (SRS's `/rtc/v1/nack/` API): drop one in this many datagrams sent to
    /// players; 0 is off.
    pub simulate_drop_every: AtomicU64,
    /// Datagrams dropped by the loss simulation.
    pub simulated_drops: AtomicU64,
}

/// Where a session lives, for DELETE.
#[derive(Debug, Clone)]
enum Place {
    Pending(String),
    Core(usize),
}

/// A session made by signalling, waiting for its first binding.
#[derive(Debug)]
pub struct Pending {
    /// The session, ready to take the binding.
    pub session: Session,
    /// When signalling made it.
    pub created: Instant,
}

/// The shared RTC state.
#[derive(Debug, Default)]
pub struct RtcHub {
    pending: Mutex<HashMap<String, Pending>>,
    places: Mutex<HashMap<u64, Place>>,
    streams: Mutex<HashMap<StreamKey, Arc<RtcStream>>>,
    inboxes: RwLock<Vec<Arc<Inbox>>>,
    next_stream: AtomicU64,
    /// Counters.
    pub stats: RtcStats,
}

/// Why a session cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Another session publishes this stream.
    #[error("stream {0} is already being published")]
    Busy(StreamKey),
    /// No publisher for this stream.
    #[error("stream {0} is not being published")]
    NoStream(StreamKey),
    /// Too many sessions wait for their first binding.
    #[error("too many pending WebRTC sessions")]
    TooManyPending,
}

impl RtcHub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers core `core`'s inbox and returns it.
    pub fn register_core(&self, core: usize) -> Arc<Inbox> {
        let mut inboxes = self.inboxes.write().expect("rtc inbox lock poisoned");
        while inboxes.len() <= core {
            inboxes.push(Arc::new(Inbox::new()));
        }
        inboxes[core].clone()
    }

    /// Core `core`'s inbox, if that core runs RTC.
    pub fn inbox(&self, core: usize) -> Option<Arc<Inbox>> {
        let inboxes = self.inboxes.read().expect("rtc inbox lock poisoned");
        inboxes.get(core).cloned()
    }

    /// Sends `msg` to core `core`, counting it if dropped.
    pub fn send_to(&self, core: usize, msg: CoreMsg) {
        match self.inbox(core) {
            Some(inbox) if inbox.push(msg) => {}
            _ => {
                self.stats.inbox_overflows.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The kernel's receive drops summed over cores (the `r` of `loss=(r:N,s:N)`).
    pub fn rx_drops(&self) -> u64 {
        let inboxes = self.inboxes.read().expect("rtc inbox lock poisoned");
        inboxes
            .iter()
            .map(|i| i.rx_drops.load(Ordering::Relaxed))
            .sum()
    }

    /// The stream a new publisher creates; `Busy` if one exists.
    pub fn create_stream(&self, key: &StreamKey) -> Result<Arc<RtcStream>, HubError> {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        if streams.contains_key(key) {
            return Err(HubError::Busy(key.clone()));
        }
        let stream = Arc::new(RtcStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed) + 1,
            key: key.clone(),
            publisher: Mutex::new(None),
            players: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
        });
        streams.insert(key.clone(), stream.clone());
        Ok(stream)
    }

    /// A stream object for players fed from RTMP (`rtmp_to_rtc`): not registered, so WHIP
    /// publishing the same name stays possible; cores group such players by stream key.
    pub fn detached_stream(&self, key: &StreamKey) -> Arc<RtcStream> {
        Arc::new(RtcStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed) + 1,
            key: key.clone(),
            publisher: Mutex::new(None),
            players: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
        })
    }

    /// The published stream `key`.
    pub fn stream(&self, key: &StreamKey) -> Result<Arc<RtcStream>, HubError> {
        let streams = self.streams.lock().expect("rtc streams lock poisoned");
        streams
            .get(key)
            .cloned()
            .ok_or_else(|| HubError::NoStream(key.clone()))
    }

    /// Removes `stream` from the registry: its publisher left.
    pub fn remove_stream(&self, stream: &Arc<RtcStream>) {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        if streams
            .get(stream.key())
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(stream.key());
        }
    }

    /// Parks `session` until a core receives a binding for `ufrag`.
    pub fn add_pending(
        &self,
        ufrag: String,
        session: Session,
        now: Instant,
    ) -> Result<(), HubError> {
        let mut pending = self.pending.lock().expect("rtc pending lock poisoned");
        let expired: Vec<String> = pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) > PENDING_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(p) = pending.remove(&k) {
                self.forget(p.session);
            }
        }
        if pending.len() >= MAX_PENDING {
            return Err(HubError::TooManyPending);
        }
        self.places
            .lock()
            .expect("rtc places lock poisoned")
            .insert(session.id(), Place::Pending(ufrag.clone()));
        pending.insert(
            ufrag,
            Pending {
                session,
                created: now,
            },
        );
        Ok(())
    }

    /// Takes the pending session for `ufrag`, for core `core` to adopt.
    pub fn adopt(&self, ufrag: &str, core: usize, now: Instant) -> Option<Pending> {
        let p = self
            .pending
            .lock()
            .expect("rtc pending lock poisoned")
            .remove(ufrag)?;
        if now.saturating_duration_since(p.created) > PENDING_TIMEOUT {
            self.forget(p.session);
            return None;
        }
        self.places
            .lock()
            .expect("rtc places lock poisoned")
            .insert(p.session.id(), Place::Core(core));
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        Some(p)
    }

    /// Puts back a session a core took but could not use (its binding failed the checks), so
    /// the real client's binding still finds it.
    pub fn return_pending(&self, ufrag: String, pending: Pending) {
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        self.places
            .lock()
            .expect("rtc places lock poisoned")
            .insert(pending.session.id(), Place::Pending(ufrag.clone()));
        self.pending
            .lock()
            .expect("rtc pending lock poisoned")
            .insert(ufrag, pending);
    }

    /// Ends session `id` (DELETE); `false` if there is no such session.
    pub fn close(&self, id: u64) -> bool {
        let place = self
            .places
            .lock()
            .expect("rtc places lock poisoned")
            .get(&id)
            .cloned();
        match place {
            Some(Place::Pending(ufrag)) => {
                let p = self
                    .pending
                    .lock()
                    .expect("rtc pending lock poisoned")
                    .remove(&ufrag);
                if let Some(p) = p {
                    self.forget(p.session);
                }
                true
            }
            Some(Place::Core(core)) => {
                self.send_to(core, CoreMsg::Close { session: id });
                true
            }
            None => false,
        }
    }

    /// Drops a session that never reached a core.
    fn forget(&self, session: Session) {
        self.places
            .lock()
            .expect("rtc places lock poisoned")
            .remove(&session.id());
        if session.is_publisher() {
            self.remove_stream(session.stream());
        }
    }

    /// Called by a core when an adopted session ends.
    pub fn session_ended(&self, id: u64) {
        self.places
            .lock()
            .expect("rtc places lock poisoned")
            .remove(&id);
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sessions waiting for their first binding.
    pub fn pending_count(&self) -> usize {
        self.pending
            .lock()
            .expect("rtc pending lock poisoned")
            .len()
    }
}
