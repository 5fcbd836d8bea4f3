//! One core's WebRTC engine, sans-IO: the sessions this core adopted (each a str0m [`Rtc`]),
//! routing of datagrams to them, and forwarding of the publishers' frames to players on this
//! core and, through their inboxes, on other cores. The UDP driver ([`super::udp`]) feeds it
//! datagrams, inbox messages and time, and sends what [`Engine::take_transmits`] returns; the
//! tests drive it in memory with a virtual clock.
//!
//! Forwarding is at the frame level between cores and at the packet level to players: a
//! publisher's session depacketizes each frame once, the frame (its payload an `Arc`) goes
//! once to each core with players, each core cuts it into RTP payloads once
//! ([`super::packetize`]), and every player's str0m session, in RTP mode, adds its header and
//! encryption and keeps the packets from which its NACKs are answered.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::crypto::dtls::DtlsCert;
use str0m::crypto::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcError};

use super::bridge::{AacToOpus, AvcToAnnexB};
use super::hub::{CoreMsg, Inbox, RtcHub, RtcStream, SharedFrame};
use super::packetize::{RtpFrame, StreamPacketizer};
use super::signal::Role;
use super::stun;
use crate::hub::Consumer;
use crate::hub::{Hub, StreamKey, StreamSettings};
use crate::media::MediaKind as RtmpKind;

/// Timeouts one poll of a session runs for its pacer before the loop moves on; a keyframe's
/// packets drain in a few.
const MAX_PACER_ROUNDS: u32 = 64;

/// Keyframe requests to one publisher are sent at most this often, however many players ask.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

static CRYPTO: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(str0m::crypto::from_feature_flags()));

/// How long one DTLS certificate serves new sessions. One per process, as SRS does, saves a
/// key generation per session; renewing it keeps it far from its one-year expiry.
const CERT_RENEWAL: Duration = Duration::from_secs(24 * 3600);

static CERT: Mutex<Option<(DtlsCert, Instant)>> = Mutex::new(None);

/// The process's DTLS certificate, made or renewed as needed; `None` if the provider cannot
/// make one (str0m then fails loudly, which the tests would show).
fn dtls_cert(now: Instant) -> Option<DtlsCert> {
    let mut cert = CERT.lock().expect("rtc certificate lock poisoned");
    match &*cert {
        Some((c, made)) if now.saturating_duration_since(*made) < CERT_RENEWAL => Some(c.clone()),
        _ => {
            let fresh = CRYPTO.dtls_provider.generate_certificate()?;
            *cert = Some((fresh.clone(), now));
            Some(fresh)
        }
    }
}

/// Why an offer cannot become a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The SDP offer does not parse.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// str0m refused the offer (no codec in common, wrong direction, ...).
    #[error("offer not accepted: {0}")]
    Rejected(#[from] RtcError),
    /// The candidate address cannot be put in an answer.
    #[error("{0}")]
    Unusable(&'static str),
}

/// What a session is made with.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Publish or play.
    pub role: Role,
    /// The stream it publishes or plays.
    pub stream: Arc<RtcStream>,
    /// The address put in the answer's candidate.
    pub candidate: SocketAddr,
    /// Whether NACKs are offered and answered.
    pub nack: bool,
    /// For a player of an RTMP stream (`rtmp_to_rtc`): that stream's settings.
    pub bridge: Option<StreamSettings>,
}

/// One WebRTC peer.
#[derive(Debug)]
pub struct Session {
    id: u64,
    role: Role,
    stream: Arc<RtcStream>,
    rtc: Rtc,
    ufrag: String,
    connected: bool,
    timeout: Instant,
    dirty: bool,
    mids: Vec<(Mid, MediaKind)>,
    /// Publisher only: the stream's player-count version and the inboxes of the other cores
    /// with players, as of that version.
    fanout: (u64, Vec<Arc<Inbox>>),
    last_keyframe_request: Option<Instant>,
    bridge: Option<StreamSettings>,
    /// Player: video waits for a frame it may start at.
    need_key: bool,
    /// Player: the next RTP sequence number of its video and its audio.
    next_seq: [u64; 2],
}

/// The first payload type an offer describes (`a=rtpmap`, `a=fmtp`, `a=rtcp-fb`) in a media
/// section whose `m=` line does not list it (sans-IO). Browsers never write one; str0m 0.24
/// binds the description to that section anyway, and a payload type bound in two sections
/// trips its codec matching (a fuzzer find).
pub fn stray_format(sdp: &str) -> Option<u16> {
    let mut listed: Option<Vec<u16>> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(media) = line.strip_prefix("m=") {
            listed = Some(
                media
                    .split_whitespace()
                    .skip(3)
                    .filter_map(|f| f.parse().ok())
                    .collect(),
            );
            continue;
        }
        let Some(listed) = &listed else {
            continue;
        };
        let described = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|pt| pt.parse::<u16>().ok());
        if let Some(pt) = described {
            if !listed.contains(&pt) {
                return Some(pt);
            }
        }
    }
    None
}

/// Video packets each session keeps for resends. str0m caches every sent packet for 3 s or
/// up to this count (its default, 1000, is 10 s of a 1 Mbps stream). The payloads are the
/// core's shared `Arc`s, but each entry still costs a player its header and bookkeeping: 150
/// is 1.6 s of a 1 Mbps stream and the whole 3 s of a 500 kbps one, far past a NACK's round
/// trip. (Packets waiting to be sent are queued apart, so a large keyframe needs no room here.)
const SEND_BUFFER_VIDEO: usize = 150;

/// RTP header extensions offered to players: str0m's standard set without the two that feed a
/// receiver's bandwidth estimate, transport-wide congestion control and absolute send time.
/// Nothing here adapts a player's bitrate (one layer is relayed as it comes), yet applying
/// each player's TWCC feedback was the largest single cost of the fan-out in the profile, and
/// stamping every packet with the wall clock for abs-send-time the next (5% at 400 players of
/// a 1 Mbps stream). Publishers keep both: browsers pace their sending by them.
fn player_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if !matches!(
            ext,
            Extension::TransportSequenceNumber | Extension::AbsoluteSendTime
        ) {
            exts.set(id, ext.clone());
        }
    }
    exts
}

impl Session {
    /// A session answering `offer`; returns it and the SDP answer.
    pub fn from_offer(
        id: u64,
        params: SessionParams,
        offer: &str,
        now: Instant,
    ) -> Result<(Self, String), SessionError> {
        if let Some(pt) = stray_format(offer) {
            return Err(SessionError::BadOffer(format!(
                "payload type {pt} is described in a media section that does not list it"
            )));
        }
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let ufrag = random_token(8);
        let mut config = Rtc::builder().set_crypto_provider(CRYPTO.clone());
        if let Some(cert) = dtls_cert(now) {
            config = config.set_dtls_cert(cert);
        }
        let mut config = config
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(24),
            })
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_send_buffer_video(SEND_BUFFER_VIDEO);
        if params.role == Role::Play {
            config = config
                .set_extension_map(player_extensions())
                .set_rtp_mode(true);
        }
        if !params.nack {
            for p in config.codec_config().iter_mut() {
                p.set_fb_nack(false);
            }
        }
        let mut rtc = config.build(now);
        let candidate = Candidate::host(params.candidate, "udp")
            .map_err(|_| SessionError::Unusable("the candidate address is not usable"))?;
        rtc.add_local_candidate(candidate);
        // str0m asserts while it matches codecs ("Pt locked multiple times") on offers whose
        // payload types clash; `stray_format` turns away the one the fuzzer found, and any
        // other such offer is refused here rather than taking the API's task down.
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rtc.sdp_api().accept_offer(offer)
        }))
        .map_err(|_| SessionError::BadOffer("its payload types clash".into()))??;
        let session = Self {
            id,
            role: params.role,
            stream: params.stream,
            rtc,
            ufrag,
            connected: false,
            timeout: now,
            dirty: false,
            mids: Vec::new(),
            fanout: (u64::MAX, Vec::new()),
            last_keyframe_request: None,
            bridge: params.bridge,
            need_key: true,
            next_seq: [
                u64::from(rand::random::<u16>()),
                u64::from(rand::random::<u16>()),
            ],
        };
        Ok((session, answer.to_sdp_string()))
    }

    /// The session's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server's ICE ufrag, which the client's bindings name.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// Whether it publishes.
    pub fn is_publisher(&self) -> bool {
        self.role == Role::Publish
    }

    /// Its stream.
    pub fn stream(&self) -> &Arc<RtcStream> {
        &self.stream
    }

    /// Runs str0m until it waits for input: transmits go to `out`, events to `events`.
    fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<Transmit>,
        events: &mut Vec<Event>,
    ) -> Result<(), RtcError> {
        self.dirty = false;
        let mut rounds = 0;
        loop {
            match self.rtc.poll_output()? {
                // str0m's pacer releases what its queues held at its last timeout, and asks for
                // a timeout at once after any send: a timeout already due means more may be
                // queued. Running it here, not a loop turn later, keeps a player's queue from
                // falling behind when turns grow apart under load (it fell seconds behind at
                // 500 players, a few packets a turn).
                Output::Timeout(t) if t <= now && rounds < MAX_PACER_ROUNDS => {
                    rounds += 1;
                    self.rtc.handle_input(Input::Timeout(now))?;
                }
                Output::Timeout(t) => {
                    self.timeout = t;
                    return Ok(());
                }
                Output::Transmit(t) => out.push(t),
                Output::Event(e) => events.push(e),
            }
        }
    }

    /// Puts this session on a core's `dirty` list for the next drive, once however often it
    /// had input.
    fn queue(&mut self, dirty: &mut Vec<u64>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(self.id);
        }
    }

    fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.mids.iter().find(|(m, _)| *m == mid).map(|(_, k)| *k)
    }

    /// The payload type this player takes `frame` in: the publisher's exact format where it
    /// has one, else the codec's.
    fn payload_type(&self, mid: Mid, frame: &RtpFrame) -> Option<Pt> {
        let accepted = self.rtc.media(mid)?.remote_pts();
        let config = self.rtc.codec_config();
        let params = match &frame.params {
            Some(p) => config.match_params(*p)?,
            None => config.find(|p| p.spec().codec == frame.codec && accepted.contains(&p.pt()))?,
        };
        accepted.contains(&params.pt()).then(|| params.pt())
    }

    /// Queues `frame`'s packets to this player; `false` if it has no use for it (not
    /// connected, no such codec, or video waiting for a frame it may start at).
    fn write(&mut self, frame: &RtpFrame) -> bool {
        if !self.connected || (frame.kind == MediaKind::Video && self.need_key && !frame.may_start)
        {
            return false;
        }
        let Some(mid) = self
            .mids
            .iter()
            .find(|(_, k)| *k == frame.kind)
            .map(|(m, _)| *m)
        else {
            return false;
        };
        let Some(pt) = self.payload_type(mid, frame) else {
            return false;
        };
        let video = frame.kind == MediaKind::Video;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        if video {
            self.need_key = false;
        }
        let seq = &mut self.next_seq[usize::from(!video)];
        let last = frame.payloads.len().saturating_sub(1);
        for (i, payload) in frame.payloads.iter().enumerate() {
            // Only video is resent on NACK, as str0m's own packetizers mark it: a late audio
            // packet is worth less than the gap.
            let packet = RtpWrite::new(
                pt,
                (*seq).into(),
                frame.time,
                frame.wallclock,
                payload.clone(),
            )
            .marker(video && i == last)
            .nackable(video);
            tx.write_rtp(packet);
            *seq += 1;
        }
        true
    }

    /// Asks this publisher's client for a keyframe, at most once per [`KEYFRAME_INTERVAL`];
    /// `true` if a request was queued.
    fn request_keyframe(&mut self, kind: KeyframeRequestKind, now: Instant) -> bool {
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return false;
        }
        self.last_keyframe_request = Some(now);
        let video: Vec<Mid> = self
            .mids
            .iter()
            .filter(|(_, k)| *k == MediaKind::Video)
            .map(|(m, _)| *m)
            .collect();
        let mut requested = false;
        for mid in video {
            if let Some(mut writer) = self.rtc.writer(mid) {
                requested |= writer.request_keyframe(None, kind).is_ok();
            }
        }
        requested
    }
}

/// A session id as signalling shows it (16 hex digits), for logs.
struct Sid(u64);

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A random token of ICE characters.
fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// One RTMP stream played by WebRTC players of this core: one hub consumer, one conversion
/// and one packetizer, whatever the number of players.
#[derive(Debug)]
struct Bridge {
    consumer: Consumer,
    video: AvcToAnnexB,
    audio: AacToOpus,
    packetizer: StreamPacketizer,
    players: Vec<u64>,
}

/// One core's sessions and their forwarding.
#[derive(Debug)]
pub struct Engine {
    core: usize,
    hub: Arc<RtcHub>,
    rtmp: Arc<Hub>,
    bridges: HashMap<StreamKey, Bridge>,
    inbox: Arc<Inbox>,
    local: SocketAddr,
    /// Boxed: a str0m session is kilobytes, and a map of them inline would move them all at
    /// each growth and keep up to as many again in empty slots (16% of the live heap at 200
    /// sessions, in the heap profile).
    sessions: HashMap<u64, Box<Session>>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    /// Local players per stream id, and the packetizer of that stream's frames.
    players: HashMap<u64, (Vec<u64>, StreamPacketizer)>,
    dirty: Vec<u64>,
    out: Vec<Transmit>,
    events: Vec<Event>,
    /// Datagrams to players produced, for the loss simulation.
    sent_count: u64,
}

impl Engine {
    /// The engine of core `core`, whose socket is reached at `local` (the candidate); RTMP
    /// streams come from `rtmp`.
    pub fn new(core: usize, hub: Arc<RtcHub>, rtmp: Arc<Hub>, local: SocketAddr) -> Self {
        let inbox = hub.register_core(core);
        Self {
            core,
            hub,
            rtmp,
            bridges: HashMap::new(),
            inbox,
            local,
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            players: HashMap::new(),
            dirty: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
            sent_count: 0,
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

    /// A datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.hub.stats.received.fetch_add(1, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else {
            self.reject(source, "not STUN, DTLS or SRTP");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
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
        if !session.rtc.accepts(&input) {
            self.reject(source, "not for the session at its address");
            return;
        }
        if let Err(e) = session.rtc.handle_input(input) {
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
            if !session.rtc.accepts(input) {
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
        if !pending.session.rtc.accepts(input) {
            self.hub.return_pending(ufrag.to_owned(), pending);
            self.reject(source, "binding with wrong credentials");
            return None;
        }
        let session = pending.session;
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
                session.stream.add_player(self.core, 1);
                self.players
                    .entry(session.stream.id())
                    .or_default()
                    .0
                    .push(id);
            }
        }
        self.by_ufrag.insert(session.ufrag.clone(), id);
        self.by_addr.insert(source, id);
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

    /// Lets every session whose timer expired at `now` run.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.timeout <= now)
            .map(|s| s.id)
            .collect();
        for id in due {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(session = %Sid(id), "rtc timeout: {e}");
                self.close(id);
                continue;
            }
            self.mark_dirty(id);
        }
    }

    /// Runs the sessions that had input until each waits again, forwarding what they
    /// produce. Call after the `handle_*` calls of a loop turn, then [`Self::take_transmits`].
    pub fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let mut events = std::mem::take(&mut self.events);
            let from = self.out.len();
            let result = session.poll(now, &mut self.out, &mut events);
            let alive = session.rtc.is_alive();
            if session.role == Role::Play {
                self.simulate_loss(from);
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
                if let Some(settings) = s.bridge.clone() {
                    let key = s.stream.key().clone();
                    let rtmp = &self.rtmp;
                    self.bridges
                        .entry(key.clone())
                        .or_insert_with(|| Bridge {
                            consumer: Consumer::subscribe(rtmp, &key, &settings),
                            video: AvcToAnnexB::default(),
                            audio: AacToOpus::default(),
                            packetizer: StreamPacketizer::default(),
                            players: Vec::new(),
                        })
                        .players
                        .push(id);
                } else if s.role == Role::Play {
                    let stream = s.stream.clone();
                    self.request_keyframe(&stream, KeyframeRequestKind::Pli, now);
                }
            }
            Event::MediaAdded(m) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    if s.kind_of(m.mid).is_none() {
                        s.mids.push((m.mid, m.kind));
                    }
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
                let frame = Arc::new(SharedFrame { kind, data });
                let stream = s.stream.clone();
                let version = stream.version();
                if s.fanout.0 != version {
                    let cores = stream.player_cores(self.core);
                    s.fanout = (
                        version,
                        cores
                            .into_iter()
                            .filter_map(|c| self.hub.inbox(c))
                            .collect(),
                    );
                }
                for inbox in &s.fanout.1 {
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
        let Some((players, packetizer)) = self.players.get_mut(&stream) else {
            return;
        };
        let data = &frame.data;
        let spec = data.params.spec();
        let time = data.time.rebase(spec.clock_rate).numer() as u32;
        let wallclock = data.network_time;
        let params = Some(data.params);
        // A WebRTC publisher's player starts at once; the keyframe request sent when it
        // connected brings a picture.
        let rtp = match (frame.kind, spec.codec) {
            (MediaKind::Video, Codec::H264) => {
                packetizer.h264(&data.data, time, wallclock, true, params)
            }
            (MediaKind::Audio, Codec::Opus) => Some(StreamPacketizer::opus(
                data.data.clone(),
                time,
                wallclock,
                params,
            )),
            _ => None,
        };
        let Some(rtp) = rtp else {
            return;
        };
        fan_out(&mut self.sessions, players, &rtp, &mut self.dirty);
    }

    /// Removes session `id` from this core and the hub.
    fn close(&mut self, id: u64) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.by_addr.retain(|_, v| *v != id);
        self.by_ufrag.remove(&session.ufrag);
        let stream = session.stream.clone();
        match session.role {
            Role::Publish => {
                stream.set_publisher(None);
                self.hub.remove_stream(&stream);
            }
            Role::Play if session.bridge.is_some() => {
                if let Some(b) = self.bridges.get_mut(stream.key()) {
                    b.players.retain(|p| *p != id);
                    if b.players.is_empty() {
                        self.bridges.remove(stream.key());
                    }
                }
            }
            Role::Play => {
                stream.add_player(self.core, -1);
                if let Some((list, _)) = self.players.get_mut(&stream.id()) {
                    list.retain(|p| *p != id);
                    if list.is_empty() {
                        self.players.remove(&stream.id());
                    }
                }
            }
        }
        self.hub.session_ended(id);
        tracing::info!(session = %Sid(id), stream = %stream.key(), "rtc session closed");
    }

    /// Converts the RTMP frames that arrived for this core's bridged players and writes them.
    pub fn handle_bridges(&mut self, now: Instant) {
        let mut frames = Vec::new();
        for bridge in self.bridges.values_mut() {
            let (video, audio, packetizer) =
                (&mut bridge.video, &mut bridge.audio, &mut bridge.packetizer);
            bridge.consumer.next_batch(256, |f| match f.kind {
                RtmpKind::Video => match video.push(&f.payload, f.timestamp) {
                    Ok(Some(v)) => {
                        let time = v.pts_ms.wrapping_mul(90) as u32;
                        frames.extend(packetizer.h264(&v.data, time, now, v.keyframe, None));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("rtmp to rtc video: {e}"),
                },
                RtmpKind::Audio => match audio.push(&f.payload, f.timestamp) {
                    Ok(out) => frames.extend(
                        out.into_iter()
                            .map(|a| StreamPacketizer::opus(a.data, a.rtp_time as u32, now, None)),
                    ),
                    Err(e) => tracing::debug!("rtmp to rtc audio: {e}"),
                },
                RtmpKind::Data => {}
            });
            for frame in frames.drain(..) {
                fan_out(&mut self.sessions, &bridge.players, &frame, &mut self.dirty);
            }
        }
    }

    /// Whether a bridged RTMP stream has frames (or news) for this core; registers `cx` to be
    /// woken when one does.
    pub fn poll_bridges(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        for bridge in self.bridges.values_mut() {
            let wait = std::pin::pin!(bridge.consumer.wait());
            if wait.poll(cx).is_ready() {
                return true;
            }
        }
        false
    }

    /// The transmits produced since the last call.
    pub fn take_transmits(&mut self, into: &mut Vec<Transmit>) {
        into.append(&mut self.out);
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
        self.sessions.values().map(|s| s.timeout).min()
    }
}

/// Writes `frame` to each of `players`, queuing for the next drive those it gave packets to.
fn fan_out(
    sessions: &mut HashMap<u64, Box<Session>>,
    players: &[u64],
    frame: &RtpFrame,
    dirty: &mut Vec<u64>,
) {
    for id in players {
        if let Some(s) = sessions.get_mut(id) {
            if s.write(frame) {
                s.queue(dirty);
            }
        }
    }
}
