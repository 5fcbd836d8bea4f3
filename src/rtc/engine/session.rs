//! One WebRTC peer, sans-IO: a str0m [`Rtc`] (ICE-lite, DTLS-SRTP, H.264 and Opus) made from
//! the peer's SDP offer, with what the engine needs around it: its role and stream, its media
//! sections, the addresses of this host its peer sends to (its replies leave from there), and,
//! for a player, where its RTP sequence numbers stand and whether its video waits for a
//! keyframe. Time, randomness and the DTLS certificate come from the caller. A session made
//! for an offer its hooks allowed holds that offer's [`SessionEnd`], and tells it when it is
//! dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use str0m::change::SdpOffer;
use str0m::crypto::dtls::DtlsCert;
use str0m::crypto::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::Transmit;
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcError};

use super::stream::RtcStream;
use crate::hub::StreamSettings;
use crate::rtc::packetize::RtpFrame;
use crate::rtc::sdp::{announced_ssrcs, stray_format};
use crate::rtc::signal::Role;
use crate::rtc::to_rtmp::sink::Offerer;
use crate::rtc::to_rtmp::ToRtmp;

/// Peer addresses a session remembers the local address of: a browser checks a pair per
/// candidate of its own that reaches ours, a handful.
const MAX_PATHS: usize = 8;

/// A transmit's source when the session's local address is not known.
const UNSPECIFIED: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Timeouts one poll of a session runs for its pacer before the loop moves on; a keyframe's
/// packets drain in a few.
const MAX_PACER_ROUNDS: u32 = 64;

/// RTCP datagrams a player may send in one [`RTCP_WINDOW`]; the rest are dropped unread. A
/// browser sends a receiver report and a bandwidth estimate about once a second and a NACK
/// per loss it sees (libwebrtc batches them, a few per round trip): 50 a second, a burst
/// after a loss within it, is several times a lossy player's. Without a bound, str0m queues
/// a resend for every sequence number each time a NACK names it, so a player replaying its
/// NACKs (SRTCP keeps no replay window in str0m) had the server resend 15 times its stream
/// to it.
const RTCP_PER_WINDOW: u32 = 50;
/// The window [`RTCP_PER_WINDOW`] counts in.
const RTCP_WINDOW: Duration = Duration::from_secs(1);

/// Keyframe requests to one publisher are sent at most this often, however many players ask.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// Video packets each session keeps for resends. str0m caches every sent packet for 3 s or
/// up to this count (its default, 1000, is 10 s of a 1 Mbps stream). The payloads are the
/// core's shared `Arc`s, but each entry still costs a player its header and bookkeeping (about
/// 140 bytes a slot with the vendored str0m's lean entries, 440 without): 150 is 1.6 s of a
/// 1 Mbps stream and the whole 3 s of a 500 kbps one, far past a NACK's round trip. (Packets
/// waiting to be sent are queued apart, so a large keyframe needs no room here.)
const SEND_BUFFER_VIDEO: usize = 150;

/// Where transmit `t` must leave from: str0m names its candidate, but the datagram must leave
/// from where the peer's arrive (`paths`), which differs behind a NAT. Unspecified until the
/// driver said: the kernel picks.
fn source_for(paths: &[(SocketAddr, SocketAddr)], t: &Transmit) -> SocketAddr {
    paths
        .iter()
        .find(|(peer, _)| *peer == t.destination)
        .map_or_else(|| SocketAddr::new(UNSPECIFIED, t.source.port()), |p| p.1)
}

/// What a player's payload type was chosen for: its media section, and the frame's
/// [`RtpFrame::source`], codec and payload type at its publisher.
type PtFor = (Mid, u64, Codec, Option<Pt>);

/// What [`Session::write`] did with a frame's packets.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Written {
    /// Sealed into the caller's transmits.
    pub at_once: u64,
    /// Queued in str0m, for the session's next poll.
    pub queued: u64,
}

/// A player's RTP clock for one kind of media, across the publishers of its stream.
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    /// `(source, offset, last time sent)`, once a frame was sent.
    last: Option<(u64, u32, u32)>,
}

impl Clock {
    /// The RTP time `frame` goes out with: its own plus its source's offset. The first frame
    /// of a new source is put one frame after the last one sent (40 ms of video at 90 kHz,
    /// 20 ms of Opus at 48 kHz), so a player's decoder sees no jump in its RTP clock.
    fn rebase(&mut self, frame: &RtpFrame, video: bool) -> u32 {
        let offset = match self.last {
            Some((source, offset, _)) if source == frame.source => offset,
            Some((_, _, last)) => {
                let step = if video { 3600 } else { 960 };
                last.wrapping_add(step).wrapping_sub(frame.time)
            }
            None => 0,
        };
        let time = frame.time.wrapping_add(offset);
        self.last = Some((frame.source, offset, time));
        time
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
    /// No candidate address can be put in an answer.
    #[error("{0}")]
    Unusable(&'static str),
}

/// What the server is told when a session ends: its end-of-session hook (`on_unpublish` for
/// a publisher, `on_stop` for a player, as the offer's `on_publish` or `on_play` was asked),
/// which the RTC side does not import. Signalling gives one to each session it makes for an
/// offer whose hooks allowed it, and the session calls it once, when it is dropped, however
/// it ended: closed on its core (DELETE, ICE disconnect, str0m giving up, a kicked or stale
/// `rtc_to_rtmp` publish) or never adopted (DELETE or expiry before its first binding). As
/// in SRS, whose player and publisher objects are made at signalling and send these hooks
/// from their destructors, a session need not have connected to get it.
pub trait SessionEnd: Send + std::fmt::Debug {
    /// The session ended.
    fn ended(self: Box<Self>);
}

/// What a session is made with.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Publish or play.
    pub role: Role,
    /// The stream it publishes or plays.
    pub stream: Arc<RtcStream>,
    /// The addresses put in the answer's candidates, the first the fallback for datagrams
    /// that arrive at none of them (a NAT's public address announced, a private one bound).
    pub candidates: Vec<SocketAddr>,
    /// Whether NACKs are offered and answered.
    pub nack: bool,
    /// For a player of an RTMP stream (`rtmp_to_rtc`): that stream's settings.
    pub bridge: Option<StreamSettings>,
    /// For a publisher whose stream is published to RTMP too (`rtc_to_rtmp`): the RTMP
    /// stream's settings.
    pub to_rtmp: Option<(StreamSettings, Option<Offerer>)>,
    /// The crypto provider str0m runs on.
    pub crypto: Arc<CryptoProvider>,
    /// The DTLS certificate; `None` lets str0m make one.
    pub cert: Option<DtlsCert>,
}

/// One WebRTC peer.
#[derive(Debug)]
pub struct Session {
    pub(super) id: u64,
    pub(super) role: Role,
    pub(super) stream: Arc<RtcStream>,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) connected: bool,
    /// When str0m next wants [`Input::Timeout`], as of the last poll.
    pub(super) timeout: Instant,
    dirty: bool,
    mids: Vec<(Mid, MediaKind)>,
    last_keyframe_request: Option<Instant>,
    pub(super) bridge: Option<StreamSettings>,
    /// Publisher with `rtc_to_rtmp`: the RTMP stream's settings.
    pub(super) to_rtmp: Option<(StreamSettings, Option<Offerer>)>,
    /// Publisher with `rtc_to_rtmp`, once connected: its frames' conversion. Boxed: most
    /// sessions are players and have none.
    pub(super) converter: Option<Box<ToRtmp>>,
    /// The candidates announced, as str0m knows them.
    candidates: Vec<SocketAddr>,
    /// For each peer address (a peer may check several pairs, over IPv4 and IPv6), the
    /// address of this host its datagrams arrive at, once the driver said: replies to it
    /// leave from there. At most [`MAX_PATHS`], the oldest forgotten first.
    paths: Vec<(SocketAddr, SocketAddr)>,
    /// Player: video waits for a frame it may start at.
    need_key: bool,
    /// Player: the next RTP sequence number of its video and its audio.
    next_seq: [u64; 2],
    /// Player, per video and audio: the payload type last chosen, and what for. Matching
    /// codec parameters (format strings among them) for every frame and player cost more than
    /// the frame's RTP headers.
    pt: [Option<(PtFor, Pt)>; 2],
    /// Player, per video and audio: the [`RtpFrame::source`] of the last frame sent, the
    /// offset added to that source's RTP times, and the last time sent. A new source (the
    /// stream republished) is rebased to follow on from the last time sent, so the player's
    /// RTP clock runs on as one stream through the change.
    clock: [Clock; 2],
    /// Publisher: the SSRCs its offer announced; empty if it announced none.
    announced: Vec<u32>,
    /// Player: the start of its current RTCP window and the RTCP datagrams counted in it.
    rtcp: (Instant, u32),
    /// Told when the session is dropped.
    end: Option<Box<dyn SessionEnd>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end.ended();
        }
    }
}

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

/// What an SRTP or SRTCP datagram is, by RFC 7983's first byte (128..=191) and RFC 5761's
/// second (RTCP's packet types are 192..=223); `None` for STUN, DTLS and anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packet {
    Rtp,
    Rtcp,
}

fn rtp_or_rtcp(data: &[u8]) -> Option<Packet> {
    let [first, second, ..] = *data else {
        return None;
    };
    if !(128..=191).contains(&first) {
        return None;
    }
    Some(if (192..=223).contains(&second) {
        Packet::Rtcp
    } else {
        Packet::Rtp
    })
}

/// A random token of ICE characters.
fn random_token(rng: &mut impl RngCore, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

impl Session {
    /// A session answering `offer` at `now`, its ICE credentials and first sequence numbers
    /// drawn from `rng`; returns it and the SDP answer.
    pub fn from_offer(
        id: u64,
        params: SessionParams,
        offer: &str,
        now: Instant,
        rng: &mut impl RngCore,
    ) -> Result<(Self, String), SessionError> {
        if let Some(pt) = stray_format(offer) {
            return Err(SessionError::BadOffer(format!(
                "payload type {pt} is described in a media section that does not list it"
            )));
        }
        let announced = match params.role {
            Role::Publish => announced_ssrcs(offer),
            Role::Play => Vec::new(),
        };
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let ufrag = random_token(rng, 8);
        let mut config = Rtc::builder().set_crypto_provider(params.crypto);
        if let Some(cert) = params.cert {
            config = config.set_dtls_cert(cert);
        }
        let mut config = config
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(rng, 24),
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
        let mut candidates = Vec::with_capacity(params.candidates.len());
        for &addr in &params.candidates {
            if let Ok(c) = Candidate::host(addr, "udp") {
                rtc.add_local_candidate(c);
                candidates.push(addr);
            }
        }
        if candidates.is_empty() {
            return Err(SessionError::Unusable("no candidate address is usable"));
        }
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
            last_keyframe_request: None,
            bridge: params.bridge,
            to_rtmp: params.to_rtmp,
            converter: None,
            candidates,
            paths: Vec::new(),
            need_key: true,
            next_seq: [u64::from(rng.gen::<u16>()), u64::from(rng.gen::<u16>())],
            pt: [None; 2],
            clock: [Clock::default(); 2],
            rtcp: (now, 0),
            announced,
            end: None,
        };
        Ok((session, answer.to_sdp_string()))
    }

    /// Tells `end` when this session is dropped.
    pub fn set_end(&mut self, end: Box<dyn SessionEnd>) {
        self.end = Some(end);
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

    /// The address str0m is told a datagram that arrived at `local` was sent to: that
    /// candidate, or the first when it is none of them (str0m drops a binding to an address
    /// it has no candidate for).
    pub(super) fn candidate_for(&self, local: Option<SocketAddr>) -> SocketAddr {
        local
            .filter(|l| self.candidates.contains(l))
            .unwrap_or_else(|| {
                *self
                    .candidates
                    .first()
                    .expect("from_offer makes no session without a candidate")
            })
    }

    /// The address its peer last sent from, once a datagram of it was accepted.
    pub(super) fn peer(&self) -> Option<SocketAddr> {
        self.paths.last().map(|(peer, _)| *peer)
    }

    /// When the engine must next look at it: str0m's timeout, or the moment its
    /// `rtc_to_rtmp` publish goes stale.
    pub(super) fn deadline(&self) -> Instant {
        match &self.converter {
            Some(c) => self.timeout.min(c.deadline()),
            None => self.timeout,
        }
    }

    /// Records that `peer`'s datagrams arrive at `local`, for the replies to it.
    pub(super) fn arrived(&mut self, peer: SocketAddr, local: SocketAddr) {
        match self.paths.iter_mut().find(|(p, _)| *p == peer) {
            Some(path) => path.1 = local,
            None => {
                if self.paths.len() == MAX_PATHS {
                    self.paths.remove(0);
                }
                self.paths.push((peer, local));
            }
        }
    }

    /// Whether `input` is for this session (its credentials, its addresses).
    pub fn accepts(&self, input: &Input<'_>) -> bool {
        self.rtc.accepts(input)
    }

    /// Whether datagram `data` is RTP under an SSRC this publisher's offer did not announce
    /// (SSRC 0, libwebrtc's bandwidth probes, aside), to be dropped before str0m sees it.
    /// str0m binds an unknown SSRC that names a media section in its `mid` header extension
    /// to that section before it checks the packet's SRTP tag, moving the section's receive
    /// stream (its sequence numbers, its depacketizer) from the real SSRC to it, and keeps the
    /// highest sequence number of every SSRC that authenticates for the session's life: a
    /// publisher cycling SSRCs would break its own media and grow that map without end.
    /// Offers that announce no SSRC are left to str0m's mapping.
    pub(super) fn is_unannounced_rtp(&self, data: &[u8]) -> bool {
        // The SSRC is in the clear in SRTP.
        let [_, _, _, _, _, _, _, _, a, b, c, d, ..] = *data else {
            return false;
        };
        if self.announced.is_empty() || rtp_or_rtcp(data) != Some(Packet::Rtp) {
            return false;
        }
        let ssrc = u32::from_be_bytes([a, b, c, d]);
        ssrc != 0 && !self.announced.contains(&ssrc)
    }

    /// Whether datagram `data` is a player's RTCP past its budget ([`RTCP_PER_WINDOW`]), to
    /// be dropped before str0m sees it. Publishers are not limited: their RTCP is what keeps
    /// the players' clocks (sender reports) and answers their requests.
    pub(super) fn is_rtcp_over_budget(&mut self, data: &[u8], now: Instant) -> bool {
        if self.role != Role::Play || rtp_or_rtcp(data) != Some(Packet::Rtcp) {
            return false;
        }
        if now.saturating_duration_since(self.rtcp.0) >= RTCP_WINDOW {
            self.rtcp = (now, 0);
        }
        self.rtcp.1 += 1;
        self.rtcp.1 > RTCP_PER_WINDOW
    }

    /// Runs str0m until it waits for input: transmits go to `out` (from its local address),
    /// events to `events`, and `timeout` says when it wants time again.
    pub(super) fn poll(
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
                Output::Transmit(mut t) => {
                    t.source = source_for(&self.paths, &t);
                    out.push(t);
                }
                Output::Event(e) => events.push(e),
            }
        }
    }

    /// Puts this session on a core's `dirty` list for the next drive, once however often it
    /// had input.
    pub(super) fn queue(&mut self, dirty: &mut Vec<u64>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(self.id);
        }
    }

    /// The kind of media section `mid`, once str0m announced it.
    pub(super) fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.mids.iter().find(|(m, _)| *m == mid).map(|(_, k)| *k)
    }

    /// Records media section `mid` of `kind` (str0m's `MediaAdded`).
    pub(super) fn add_media(&mut self, mid: Mid, kind: MediaKind) {
        if self.kind_of(mid).is_none() {
            self.mids.push((mid, kind));
        }
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

    /// Sends `frame`'s packets to this player: into `out` at once where str0m allows
    /// ([`str0m::change::DirectApi::send_rtp_now`]: nothing queued ahead of them), else queued
    /// in str0m for the next drive. Nothing if it has no use for the frame (not connected, no
    /// such codec, or video waiting for a frame it may start at).
    pub(super) fn write(&mut self, frame: &RtpFrame, out: &mut Vec<Transmit>) -> Written {
        if !self.connected || (frame.kind == MediaKind::Video && self.need_key && !frame.may_start)
        {
            return Written::default();
        }
        let Some(mid) = self
            .mids
            .iter()
            .find(|(_, k)| *k == frame.kind)
            .map(|(m, _)| *m)
        else {
            return Written::default();
        };
        let video = frame.kind == MediaKind::Video;
        let slot = usize::from(!video);
        let chosen_for = (mid, frame.source, frame.codec, frame.params.map(|p| p.pt()));
        let pt = match self.pt[slot] {
            Some((f, pt)) if f == chosen_for => pt,
            _ => {
                let Some(pt) = self.payload_type(mid, frame) else {
                    return Written::default();
                };
                self.pt[slot] = Some((chosen_for, pt));
                pt
            }
        };
        if self.rtc.direct_api().stream_tx_by_mid(mid, None).is_none() {
            return Written::default();
        }
        if video {
            self.need_key = false;
        }
        let time = self.clock[slot].rebase(frame, video);
        let seq = &mut self.next_seq[slot];
        let last = frame.payloads.len().saturating_sub(1);
        let mut written = Written::default();
        for (i, payload) in frame.payloads.iter().enumerate() {
            // Only video is resent on NACK, as str0m's own packetizers mark it: a late audio
            // packet is worth less than the gap.
            let packet = RtpWrite::new(pt, (*seq).into(), time, frame.wallclock, payload.clone())
                .marker(video && i == last)
                .nackable(video);
            *seq += 1;
            let mut api = self.rtc.direct_api();
            match api.send_rtp_now(mid, packet) {
                Ok(Some(mut t)) => {
                    t.source = source_for(&self.paths, &t);
                    out.push(t);
                    written.at_once += 1;
                }
                Ok(None) => {}
                Err(packet) => {
                    if let Some(tx) = api.stream_tx_by_mid(mid, None) {
                        tx.write_rtp(packet);
                        written.queued += 1;
                    }
                }
            }
        }
        written
    }

    /// Asks this publisher's client for a keyframe, at most once per [`KEYFRAME_INTERVAL`];
    /// `true` if a request was queued.
    pub(super) fn request_keyframe(&mut self, kind: KeyframeRequestKind, now: Instant) -> bool {
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return false;
        }
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
        // Only a request made counts against the interval: one asked before the media
        // sections were known must not hold back the next.
        if requested {
            self.last_keyframe_request = Some(now);
        }
        requested
    }
}
