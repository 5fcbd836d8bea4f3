//! State shared by every core's RTC engine and by signalling: sessions waiting for their first
//! STUN binding (keyed by the server's ICE ufrag) and where every session lives, the WebRTC
//! streams, one inbox per core, the DTLS certificate, and counters. The server holds one
//! `Arc<RtcHub>` and hands it to signalling and to each worker's loop. Locks here are taken
//! on signalling, adoption, join and leave, never per packet or frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::cert::Certs;
use super::inbox::{CoreMsg, Inbox};
use super::session::Session;
use super::stream::RtcStream;
use crate::hub::StreamKey;

/// How long a session created by signalling waits for its first STUN binding.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(30);
/// How often core 0's engine drops the pending sessions that expired.
pub const PENDING_SWEEP: Duration = Duration::from_secs(1);
/// Most sessions waiting for their first binding at once; more are refused with 503, so a
/// flood of offers cannot pin unbounded memory.
pub const MAX_PENDING: usize = 4096;

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
    /// RTP packets to players sealed the moment they were written, past str0m's queue.
    pub rtp_sent_at_once: AtomicU64,
    /// RTP packets to players queued in str0m instead (another was ahead of them on their
    /// stream, or a resend was waiting), sent by the next poll of their session.
    pub rtp_queued: AtomicU64,
    /// Datagrams received.
    pub received: AtomicU64,
    /// Receive system calls made (recvmmsg, on epoll). io_uring's multishot receive makes
    /// none: its datagrams arrive as completions of the one armed operation.
    pub recv_calls: AtomicU64,
    /// Datagrams rejected: unknown sender and not a binding for a pending session, wrong
    /// credentials, or not parseable.
    pub rejected: AtomicU64,
    /// RTP packets of publishers dropped for an SSRC their offer did not announce.
    pub unannounced_ssrc: AtomicU64,
    /// RTCP datagrams of players dropped past their budget (a NACK or PLI flood).
    pub rtcp_over_budget: AtomicU64,
    /// Signalling requests refused (malformed SDP or JSON, busy or unknown streams, ...).
    pub refused_requests: AtomicU64,
    /// Messages dropped on full core inboxes.
    pub inbox_overflows: AtomicU64,
    /// Loss simulation (SRS's `/rtc/v1/nack/` API): drop one in this many datagrams sent to
    /// players; 0 is off.
    pub simulate_drop_every: AtomicU64,
    /// Datagrams dropped by the loss simulation.
    pub simulated_drops: AtomicU64,
    /// `rtc_to_rtmp`: publishers' frames dropped as malformed (not Annex B H.264, bad
    /// SPS/PPS, Opus libopus refused).
    pub to_rtmp_bad_frames: AtomicU64,
    /// `rtc_to_rtmp`: publishers closed for sending no media for
    /// [`crate::rtc::to_rtmp::MEDIA_TIMEOUT`].
    pub stale_publishers: AtomicU64,
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

/// The pending sessions and every session's place, under one lock: they change together.
#[derive(Debug, Default)]
struct Registry {
    pending: HashMap<String, Pending>,
    places: HashMap<u64, Place>,
}

/// The shared RTC state.
#[derive(Debug, Default)]
pub struct RtcHub {
    registry: Mutex<Registry>,
    streams: Mutex<HashMap<StreamKey, Arc<RtcStream>>>,
    inboxes: RwLock<Vec<Arc<Inbox>>>,
    next_stream: AtomicU64,
    /// The DTLS certificate and crypto provider of new sessions.
    pub certs: Certs,
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
            inboxes.push(Arc::new(Inbox::default()));
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

    fn new_stream(&self, key: &StreamKey) -> Arc<RtcStream> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(RtcStream::new(id, key.clone()))
    }

    /// The stream a new publisher publishes: a new one, or the one whose last publisher left
    /// while it still has players, who then get this publisher's media; `Busy` if another
    /// publisher holds it.
    pub fn create_stream(&self, key: &StreamKey) -> Result<Arc<RtcStream>, HubError> {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        if let Some(stream) = streams.get(key) {
            if stream.claimed() {
                return Err(HubError::Busy(key.clone()));
            }
            stream.set_claimed(true);
            return Ok(stream.clone());
        }
        let stream = self.new_stream(key);
        stream.set_claimed(true);
        streams.insert(key.clone(), stream.clone());
        Ok(stream)
    }

    /// A stream object not registered: for players fed from RTMP (`rtmp_to_rtc`), so WHIP
    /// publishing the same name stays possible (cores group such players by stream key), and
    /// for a player offered while nobody publishes `key`, which [`Self::join_player`] puts on
    /// the registered stream once its client comes.
    pub fn detached_stream(&self, key: &StreamKey) -> Arc<RtcStream> {
        self.new_stream(key)
    }

    /// Counts a WebRTC-fed player of `stream`'s key on core `core`, on the stream registered
    /// for that key now: the published one, one its publisher left to its players, or
    /// `stream` itself, registered to wait for the next publisher (SRS's play before
    /// publishing). The stream its offer was answered for may be gone by then (its last
    /// player left in between), and counting the player under the registry lock keeps
    /// [`Self::player_left`] from dropping the stream it joins.
    pub fn join_player(&self, stream: &Arc<RtcStream>, core: usize) -> Arc<RtcStream> {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        let joined = streams
            .entry(stream.key().clone())
            .or_insert_with(|| stream.clone())
            .clone();
        joined.add_player(core, 1);
        joined
    }

    /// The published stream `key`. A stream whose publisher left is not one: a new player of
    /// it waits for the next publisher, or plays the RTMP stream of that name (`rtmp_to_rtc`),
    /// as before any WHIP publish.
    pub fn stream(&self, key: &StreamKey) -> Result<Arc<RtcStream>, HubError> {
        let streams = self.streams.lock().expect("rtc streams lock poisoned");
        streams
            .get(key)
            .filter(|s| s.claimed())
            .cloned()
            .ok_or_else(|| HubError::NoStream(key.clone()))
    }

    /// `stream`'s publisher left (or its offer failed): the stream stays for its players,
    /// for the next publisher of its key, or goes now if it has none.
    pub fn remove_stream(&self, stream: &Arc<RtcStream>) {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        stream.set_claimed(false);
        Self::drop_if_unused(&mut streams, stream);
    }

    /// A player of `stream` left: a stream with neither publisher nor players goes.
    pub fn player_left(&self, stream: &Arc<RtcStream>) {
        let mut streams = self.streams.lock().expect("rtc streams lock poisoned");
        Self::drop_if_unused(&mut streams, stream);
    }

    fn drop_if_unused(streams: &mut HashMap<StreamKey, Arc<RtcStream>>, stream: &Arc<RtcStream>) {
        if !stream.claimed()
            && stream.player_count() == 0
            && streams
                .get(stream.key())
                .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(stream.key());
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("rtc registry lock poisoned")
    }

    /// Parks `session` until a core receives a binding for `ufrag`.
    pub fn add_pending(
        &self,
        ufrag: String,
        session: Session,
        now: Instant,
    ) -> Result<(), HubError> {
        let mut registry = self.registry();
        self.expire(&mut registry, now);
        if registry.pending.len() >= MAX_PENDING {
            return Err(HubError::TooManyPending);
        }
        registry
            .places
            .insert(session.id(), Place::Pending(ufrag.clone()));
        registry.pending.insert(
            ufrag,
            Pending {
                session,
                created: now,
            },
        );
        Ok(())
    }

    /// Drops the sessions that waited for their first binding longer than
    /// [`PENDING_TIMEOUT`] at `now` (which tells their end hooks). A new offer does it, and
    /// core 0's engine every [`PENDING_SWEEP`], so that a session whose client never came
    /// ends in time when no offer follows.
    pub fn expire_pending(&self, now: Instant) {
        self.expire(&mut self.registry(), now);
    }

    fn expire(&self, registry: &mut Registry, now: Instant) {
        let expired: Vec<String> = registry
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) > PENDING_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(p) = registry.pending.remove(&k) {
                self.forget(registry, p.session);
            }
        }
    }

    /// Takes the pending session for `ufrag`, for core `core` to adopt.
    pub fn adopt(&self, ufrag: &str, core: usize, now: Instant) -> Option<Pending> {
        let mut registry = self.registry();
        let p = registry.pending.remove(ufrag)?;
        if now.saturating_duration_since(p.created) > PENDING_TIMEOUT {
            self.forget(&mut registry, p.session);
            return None;
        }
        registry.places.insert(p.session.id(), Place::Core(core));
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        Some(p)
    }

    /// Puts back a session a core took but could not use (its binding failed the checks), so
    /// the real client's binding still finds it.
    pub fn return_pending(&self, ufrag: String, pending: Pending) {
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        let mut registry = self.registry();
        registry
            .places
            .insert(pending.session.id(), Place::Pending(ufrag.clone()));
        registry.pending.insert(ufrag, pending);
    }

    /// Ends session `id` (DELETE); `false` if there is no such session.
    pub fn close(&self, id: u64) -> bool {
        let mut registry = self.registry();
        match registry.places.get(&id).cloned() {
            Some(Place::Pending(ufrag)) => {
                if let Some(p) = registry.pending.remove(&ufrag) {
                    self.forget(&mut registry, p.session);
                }
                true
            }
            Some(Place::Core(core)) => {
                drop(registry);
                self.send_to(core, CoreMsg::Close { session: id });
                true
            }
            None => false,
        }
    }

    /// Drops a session that never reached a core.
    fn forget(&self, registry: &mut Registry, session: Session) {
        registry.places.remove(&session.id());
        if session.is_publisher() {
            self.remove_stream(session.stream());
        }
    }

    /// Called by a core when an adopted session ends.
    pub fn session_ended(&self, id: u64) {
        self.registry().places.remove(&id);
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sessions waiting for their first binding.
    pub fn pending_count(&self) -> usize {
        self.registry().pending.len()
    }

    /// Streams registered, published or left to their players.
    #[cfg(test)]
    pub fn streams_len(&self) -> usize {
        self.streams
            .lock()
            .expect("rtc streams lock poisoned")
            .len()
    }
}
