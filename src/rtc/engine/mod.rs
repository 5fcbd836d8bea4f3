//! One core's WebRTC engine, sans-IO: the sessions this core adopted (each a str0m `Rtc`),
//! routing of datagrams to them, their timers, and the forwarding of frames to players on
//! this core and, through their inboxes, on other cores. It owns no socket, no task and no
//! hub consumer, and reads no clock: the UDP driver ([`crate::rtc::udp`]) feeds it datagrams
//! (with the address of this host each was sent to, which a session's replies leave from),
//! inbox messages, the frames of the RTMP streams it asked to watch, and the time, and sends
//! what it returns; the tests drive it in memory with a virtual clock.
//!
//! A loop turn calls, in order: the `handle_*` inputs ([`Engine::handle_datagram`],
//! [`Engine::handle_inbox`], [`Engine::handle_rtmp_frame`], [`Engine::handle_timeout`]), then
//! [`Engine::drive`], then the outputs: [`Engine::poll_watch`] and [`Engine::poll_publish`]
//! until `None`, [`Engine::flush`], and [`Engine::poll_timeout`] for when to wake. A frame
//! written to a player is sealed into the transmits then and there where str0m allows
//! (`Session::write`, in `session.rs`); only a session that had to queue packets, took input
//! or came due is driven.
//!
//! The engine is made with a [`Flush`], which it hands its transmits to whenever
//! [`FLUSH_AT`] are waiting, between two players, in the middle of an input as well: a
//! keyframe written to 500 players is 5,500 sealed datagrams (7 MB), and held to the end of
//! the turn they were the allocator's high-water mark, kept as RSS afterwards, and cold in
//! the cache by the time they were sent. The flush is still the driver's I/O (its socket);
//! the engine never sees the socket, and the tests give it one that collects.
//!
//! A publisher of a vhost with `rtc_to_rtmp` has its frames converted here
//! ([`crate::rtc::to_rtmp`]) into the messages of an RTMP publish, which [`Publish`] hands to
//! the driver: the engine decides when that publish starts (the session connected) and ends
//! (it closed, or sent nothing for [`crate::rtc::to_rtmp::MEDIA_TIMEOUT`]).
//!
//! Map: [`session`] (one peer), [`fanout`] (who gets which frame, cut once per core),
//! [`timers`] (the due sessions, without a scan), [`hub`] (what the cores and signalling
//! share), [`stream`] and [`inbox`] (its parts), [`cert`] (the DTLS certificate).

#![forbid(unsafe_code)]

pub mod cert;
pub mod fanout;
pub mod hub;
pub mod inbox;
pub mod session;
pub mod stream;
pub mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, IceConnectionState, Input};

pub use fanout::Watch;

use crate::hub::StreamKey;
use crate::media::Frame;
use crate::rtc::packetize::RtpFrame;
use crate::rtc::signal::Role;
use crate::rtc::stun;
use crate::rtc::to_rtmp::sink::PublishRequest;
use crate::rtc::to_rtmp::{self, ToRtmp, Track};
use fanout::Fanout;
use hub::RtcHub;
use inbox::{CoreMsg, Inbox, SharedFrame};
use session::Session;
use stream::RtcStream;
use timers::Timers;

/// A session id as signalling shows it (16 hex digits), for logs.
struct Sid(u64);

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What the driver does for a publisher's RTMP publish (`rtc_to_rtmp`).
#[derive(Debug)]
pub enum Publish {
    /// Start publishing the stream to RTMP.
    Start(PublishRequest),
    /// A message of publisher session `session`'s RTMP publish.
    Message {
        /// The WHIP publisher's session.
        session: u64,
        /// The message.
        message: to_rtmp::Message,
    },
    /// End session `session`'s RTMP publish.
    Stop {
        /// The WHIP publisher's session.
        session: u64,
    },
}

/// Transmits waiting in the engine before it hands them to its [`Flush`]: a few sendmmsg
/// calls' worth ([`crate::rtc::udp::socket::BATCH`] messages, each up to 64 datagrams to one
/// player), about 300 KB, which fits in the L2 cache they were sealed in.
pub const FLUSH_AT: usize = 256;

/// Where the engine's transmits go when it flushes: the driver sends them (the slice is
/// cleared afterwards).
pub type Flush = Box<dyn FnMut(&[Transmit])>;

/// The engine's [`Flush`], which has no `Debug` of its own.
struct FlushHook(Flush);

impl std::fmt::Debug for FlushHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flush")
    }
}

/// One core's sessions and their forwarding.
#[derive(Debug)]
pub struct Engine {
    core: usize,
    hub: Arc<RtcHub>,
    inbox: Arc<Inbox>,
    /// Boxed: a str0m session is kilobytes, and a map of them inline would move them all at
    /// each growth and keep up to as many again in empty slots (16% of the live heap at 200
    /// sessions, in the heap profile).
    sessions: HashMap<u64, Box<Session>>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    fanout: Fanout,
    timers: Timers,
    dirty: Vec<u64>,
    out: Vec<Transmit>,
    flush: FlushHook,
    events: Vec<Event>,
    /// Scratch for the RTP frames one RTMP frame becomes.
    rtmp_frames: Vec<RtpFrame>,
    /// Datagrams to players produced, for the loss simulation.
    sent_count: u64,
    /// RTMP publishes' starts, messages and stops, for the driver.
    publishes: std::collections::VecDeque<Publish>,
    /// Core 0: when it next drops the hub's expired pending sessions.
    next_sweep: Option<Instant>,
}

impl Engine {
    /// The engine of core `core`, sharing `hub` with the other cores and signalling, that
    /// hands its transmits to `flush`, [`FLUSH_AT`] at a time as they are made and the rest
    /// at [`Self::flush`].
    pub fn new(core: usize, hub: Arc<RtcHub>, flush: Flush) -> Self {
        let inbox = hub.register_core(core);
        Self {
            core,
            hub,
            inbox,
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            fanout: Fanout::default(),
            timers: Timers::default(),
            dirty: Vec::new(),
            out: Vec::new(),
            flush: FlushHook(flush),
            events: Vec::new(),
            rtmp_frames: Vec::new(),
            sent_count: 0,
            publishes: std::collections::VecDeque::new(),
            next_sweep: None,
        }
    }

    /// Hands the transmits made so far to the [`Flush`].
    pub fn flush(&mut self) {
        if !self.out.is_empty() {
            (self.flush.0)(&self.out);
            self.out.clear();
        }
    }

    /// This core's inbox.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Sessions on this core.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A datagram from `source`, sent to `local` (this host's address it arrived at, where
    /// the driver knows it): the session remembers it, and its replies leave from there.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: Option<SocketAddr>,
        data: &[u8],
    ) {
        self.hub.stats.received.fetch_add(1, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else {
            self.reject(source, "not STUN, DTLS or SRTP");
            return;
        };
        // The destination is the session's to say (below): str0m's `accepts`, which routing
        // asks first, reads the credentials and the source, not it.
        let mut input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local.unwrap_or(source),
                contents,
            },
        );
        let id = match self.by_addr.get(&source) {
            Some(&id) => id,
            None => match self.route_new(now, source, &input, data) {
                Some(id) => id,
                None => return,
            },
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if !session.accepts(&input) {
            self.reject(source, "not for the session at its address");
            return;
        }
        if session.is_unannounced_rtp(data) {
            // Dropped unread: str0m would rebind the publisher's media to it (see
            // `is_unannounced_rtp`). Not `rejected`, and the session goes on: a peer's stray
            // packets, or ones spoofed as it, cost only themselves.
            self.hub
                .stats
                .unannounced_ssrc
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if session.is_rtcp_over_budget(data, now) {
            // Unread, like the above: the flood costs the flooder, whose session goes on.
            self.hub
                .stats
                .rtcp_over_budget
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Input::Receive(_, r) = &mut input {
            r.destination = session.candidate_for(local);
        }
        let result = session.rtc.handle_input(input);
        if let (Ok(()), Some(local)) = (&result, local) {
            session.arrived(source, local);
        }
        if let Err(e) = result {
            // A bad datagram from (or spoofed as) the peer costs the datagram, not the
            // session: the session ends only if str0m gives up on it.
            tracing::debug!(session = %Sid(id), "rtc input rejected: {e}");
            let alive = session.rtc.is_alive();
            self.reject(source, "refused by the session");
            if !alive {
                self.close(id);
                return;
            }
        }
        self.mark_dirty(id);
    }

    /// A datagram from an address no session owns: a binding for a session pending in the
    /// hub or already on this core.
    fn route_new(
        &mut self,
        now: Instant,
        source: SocketAddr,
        input: &Input<'_>,
        data: &[u8],
    ) -> Option<u64> {
        let Some(ufrag) = stun::binding_ufrag(data) else {
            self.reject(source, "unknown sender, not a STUN binding");
            return None;
        };
        if let Some(&id) = self.by_ufrag.get(ufrag) {
            let session = self.sessions.get(&id)?;
            if !session.accepts(input) {
                self.reject(source, "binding with wrong credentials");
                return None;
            }
            self.by_addr.insert(source, id);
            return Some(id);
        }
        let Some(pending) = self.hub.adopt(ufrag, self.core, now) else {
            self.reject(source, "binding for no pending session");
            return None;
        };
        if !pending.session.accepts(input) {
            self.hub.return_pending(ufrag.to_owned(), pending);
            self.reject(source, "binding with wrong credentials");
            return None;
        }
        let mut session = pending.session;
        let id = session.id;
        tracing::info!(
            session = %Sid(id),
            core = self.core,
            %source,
            stream = %session.stream.key(),
            "rtc {} adopted",
            if session.is_publisher() { "publisher" } else { "player" }
        );
        match session.role {
            Role::Publish => session.stream.set_publisher(Some((self.core, id))),
            Role::Play => {
                if session.bridge.is_some() {
                    session.stream.add_player(self.core, 1);
                } else {
                    session.stream = self.hub.join_player(&session.stream, self.core);
                }
                self.fanout.join_stream(session.stream.id(), id);
            }
        }
        self.by_ufrag.insert(session.ufrag.clone(), id);
        self.by_addr.insert(source, id);
        self.timers.set(id, session.timeout);
        self.sessions.insert(id, Box::new(session));
        Some(id)
    }

    fn reject(&self, source: SocketAddr, why: &'static str) {
        self.hub.stats.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(%source, "rtc datagram rejected: {why}");
    }

    /// Queues session `id` for [`Self::drive`], once however often it had input.
    fn mark_dirty(&mut self, id: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.queue(&mut self.dirty);
        }
    }

    /// Handles the messages other cores and signalling sent to this core.
    pub fn handle_inbox(&mut self, now: Instant) {
        while let Some(msg) = self.inbox.pop() {
            match msg {
                CoreMsg::Frame { stream, frame } => self.deliver_local(stream, &frame),
                CoreMsg::Keyframe { session, kind } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        if s.request_keyframe(kind, now) {
                            self.mark_dirty(session);
                        }
                    }
                }
                CoreMsg::Close { session } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.rtc.disconnect();
                    }
                    self.close(session);
                }
            }
        }
    }

    /// A frame of RTMP stream `key`, which this engine asked to watch ([`Watch::Start`]),
    /// converted and written to its players here; `now` stamps its wall-clock time.
    pub fn handle_rtmp_frame(&mut self, key: &StreamKey, frame: &Frame, now: Instant) {
        let mut frames = std::mem::take(&mut self.rtmp_frames);
        // Out of `self` while its players are read: the sessions they name are written.
        let mut fanout = std::mem::take(&mut self.fanout);
        if let Some(players) = fanout.rtmp_frame(key, frame, now, &mut frames) {
            self.write_to(players, &frames);
        }
        self.fanout = fanout;
        frames.clear();
        self.rtmp_frames = frames;
    }

    /// Lets every session whose timer expired at `now` run; the others are not visited. On
    /// core 0 it also drops, every [`hub::PENDING_SWEEP`], the pending sessions whose client
    /// never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.core == 0 && self.next_sweep.is_none_or(|t| t <= now) {
            self.hub.expire_pending(now);
            self.next_sweep = Some(now + hub::PENDING_SWEEP);
        }
        while let Some(id) = self.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.converter.as_ref().is_some_and(|c| c.is_stale(now)) {
                tracing::info!(
                    session = %Sid(id),
                    "rtc publisher sent nothing for {:?}: closed",
                    to_rtmp::MEDIA_TIMEOUT
                );
                self.hub
                    .stats
                    .stale_publishers
                    .fetch_add(1, Ordering::Relaxed);
                s.rtc.disconnect();
                self.close(id);
                continue;
            }
            if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(session = %Sid(id), "rtc timeout: {e}");
                self.close(id);
                continue;
            }
            // Drive polls it, which sets its next deadline.
            self.mark_dirty(id);
        }
    }

    /// Runs the sessions that had input until each waits again, forwarding what they
    /// produce. Call after the `handle_*` calls of a loop turn, then the outputs.
    pub fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let mut events = std::mem::take(&mut self.events);
            let from = self.out.len();
            let result = session.poll(now, &mut self.out, &mut events);
            let alive = session.rtc.is_alive();
            self.timers.set(id, session.deadline());
            if session.role == Role::Play {
                self.simulate_loss(from);
            }
            if self.out.len() >= FLUSH_AT {
                self.flush();
            }
            for event in events.drain(..) {
                self.handle_event(id, event, now);
            }
            self.events = events;
            if let Err(e) = result {
                tracing::debug!(session = %Sid(id), "rtc: {e}");
                self.close(id);
            } else if !alive {
                self.close(id);
            }
        }
    }

    fn handle_event(&mut self, id: u64, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                s.connected = true;
                tracing::info!(session = %Sid(id), "rtc connected");
                if let Some((settings, offerer)) = s.to_rtmp.clone() {
                    s.converter = Some(Box::new(ToRtmp::new(now)));
                    self.publishes.push_back(Publish::Start(PublishRequest {
                        session: id,
                        ip: s.peer().map(|p| p.ip()),
                        offerer,
                        key: s.stream.key().clone(),
                        settings,
                    }));
                }
                if let Some(settings) = &s.bridge {
                    self.fanout.join_bridge(s.stream.key(), settings, id);
                } else if s.role == Role::Play {
                    let stream = s.stream.clone();
                    self.request_keyframe(&stream, KeyframeRequestKind::Pli, now);
                }
            }
            Event::MediaAdded(m) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.add_media(m.mid, m.kind);
                }
            }
            Event::MediaData(data) => {
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                let Some(kind) = s.kind_of(data.mid) else {
                    return;
                };
                if s.role != Role::Publish {
                    return;
                }
                if let Some(converter) = s.converter.as_deref_mut() {
                    let before = converter.stats();
                    convert(converter, kind, &data, now);
                    let after = converter.stats();
                    let bad =
                        (after.bad_video + after.bad_audio) - (before.bad_video + before.bad_audio);
                    if bad > 0 {
                        self.hub
                            .stats
                            .to_rtmp_bad_frames
                            .fetch_add(bad, Ordering::Relaxed);
                    }
                    let mut keyframe = false;
                    while let Some(out) = converter.poll_output() {
                        match out {
                            to_rtmp::Output::Message(message) => {
                                self.publishes.push_back(Publish::Message {
                                    session: id,
                                    message,
                                });
                            }
                            to_rtmp::Output::RequestKeyframe => keyframe = true,
                        }
                    }
                    if keyframe && s.request_keyframe(KeyframeRequestKind::Pli, now) {
                        s.queue(&mut self.dirty);
                    }
                }
                let frame = Arc::new(SharedFrame {
                    kind,
                    data,
                    publisher: id,
                });
                let stream = s.stream.clone();
                for inbox in self
                    .fanout
                    .remote_inboxes(id, &stream, self.core, &self.hub)
                {
                    let msg = CoreMsg::Frame {
                        stream: stream.id(),
                        frame: frame.clone(),
                    };
                    if !inbox.push(msg) {
                        self.hub
                            .stats
                            .inbox_overflows
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.deliver_local(stream.id(), &frame);
            }
            Event::KeyframeRequest(req) => {
                let Some(s) = self.sessions.get(&id) else {
                    return;
                };
                if s.role == Role::Play {
                    let stream = s.stream.clone();
                    self.request_keyframe(&stream, req.kind, now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close(id);
            }
            _ => {}
        }
    }

    fn request_keyframe(&mut self, stream: &RtcStream, kind: KeyframeRequestKind, now: Instant) {
        let Some((core, session)) = stream.publisher() else {
            return;
        };
        if core != self.core {
            self.hub.send_to(core, CoreMsg::Keyframe { session, kind });
        } else if let Some(s) = self.sessions.get_mut(&session) {
            if s.request_keyframe(kind, now) {
                self.mark_dirty(session);
            }
        }
    }

    fn deliver_local(&mut self, stream: u64, frame: &SharedFrame) {
        let mut fanout = std::mem::take(&mut self.fanout);
        if let Some((rtp, players)) = fanout.webrtc_frame(stream, frame) {
            self.write_to(players, std::slice::from_ref(&rtp));
        }
        self.fanout = fanout;
    }

    /// Writes `frames` to each of `players`: what goes out at once to the transmits, and
    /// those that queued packets instead on the dirty list, for the next drive.
    fn write_to(&mut self, players: &[u64], frames: &[RtpFrame]) {
        let mut from = self.out.len();
        let (mut at_once, mut queued) = (0, 0);
        for frame in frames {
            for id in players {
                if let Some(s) = self.sessions.get_mut(id) {
                    let written = s.write(frame, &mut self.out);
                    if written.queued > 0 {
                        s.queue(&mut self.dirty);
                    }
                    at_once += written.at_once;
                    queued += written.queued;
                }
                if self.out.len() >= FLUSH_AT {
                    self.simulate_loss(from);
                    self.flush();
                    from = self.out.len();
                }
            }
        }
        let stats = &self.hub.stats;
        stats.rtp_sent_at_once.fetch_add(at_once, Ordering::Relaxed);
        stats.rtp_queued.fetch_add(queued, Ordering::Relaxed);
        self.simulate_loss(from);
    }

    /// Removes session `id` from this core and the hub.
    fn close(&mut self, id: u64) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.by_addr.retain(|_, v| *v != id);
        self.by_ufrag.remove(&session.ufrag);
        self.timers.remove(id);
        let stream = session.stream.clone();
        if session.converter.is_some() {
            self.publishes.push_back(Publish::Stop { session: id });
        }
        match session.role {
            Role::Publish => {
                stream.set_publisher(None);
                self.hub.remove_stream(&stream);
                self.fanout.forget_publisher(id);
            }
            Role::Play => {
                stream.add_player(self.core, -1);
                self.hub.player_left(&stream);
                self.fanout.leave_stream(stream.id(), id);
                if session.bridge.is_some() {
                    self.fanout.leave_bridge(stream.key(), id);
                }
            }
        }
        self.hub.session_ended(id);
        tracing::info!(session = %Sid(id), stream = %stream.key(), "rtc session closed");
    }

    /// The next change in the RTMP streams this core's players watch: the driver subscribes
    /// a consumer on [`Watch::Start`] and feeds its frames to [`Self::handle_rtmp_frame`],
    /// and drops it on [`Watch::Stop`]. Call after [`Self::drive`] until `None`.
    pub fn poll_watch(&mut self) -> Option<Watch> {
        self.fanout.poll_watch()
    }

    /// The next start, message or stop of an RTMP publish (`rtc_to_rtmp`); call after
    /// [`Self::drive`] until `None`.
    pub fn poll_publish(&mut self) -> Option<Publish> {
        self.publishes.pop_front()
    }

    /// Ends publisher session `id`, whose RTMP publish the driver could not start or that
    /// was ended from outside (the API kicked it).
    pub fn end_publish(&mut self, id: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.rtc.disconnect();
            // Its stop is not wanted: the driver holds no publish, or drops it itself.
            s.converter = None;
        }
        self.close(id);
    }

    /// The loss simulation: drops one in `simulate_drop_every` of the datagrams to players
    /// from `self.out[from..]`.
    fn simulate_loss(&mut self, from: usize) {
        let every = self.hub.stats.simulate_drop_every.load(Ordering::Relaxed);
        if every == 0 {
            return;
        }
        let mut i = from;
        while i < self.out.len() {
            self.sent_count += 1;
            if self.sent_count.is_multiple_of(every) {
                self.out.remove(i);
                self.hub
                    .stats
                    .simulated_drops
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                i += 1;
            }
        }
    }

    /// When the engine next needs [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.next_sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Feeds a publisher's frame to its `rtc_to_rtmp` converter: H.264 video and Opus audio, the
/// only codecs a session negotiates; anything else is not converted.
fn convert(converter: &mut ToRtmp, kind: MediaKind, data: &MediaData, now: Instant) {
    let track = match (kind, data.params.spec().codec) {
        (MediaKind::Video, Codec::H264) => Track::Video,
        (MediaKind::Audio, Codec::Opus) => Track::Audio,
        _ => return,
    };
    converter.handle_frame(
        now,
        to_rtmp::Frame {
            track,
            data: &data.data,
            rtp_time: data.time.numer(),
            clock_rate: data.time.denom(),
            network_time: data.network_time,
            contiguous: data.contiguous,
            sender_report: data.last_sender_info.as_ref().and_then(|i| {
                Some(to_rtmp::SenderReport {
                    rtp_time: i.rtp_time.numer(),
                    ntp: i.ntp_time.duration_since(UNIX_EPOCH).ok()?,
                })
            }),
        },
    );
}
