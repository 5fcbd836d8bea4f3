//! WebRTC load: WHEP players and WHIP publishers. Each signals with one HTTP POST (an SDP
//! offer for H.264 and Opus), then runs a str0m client over its own UDP socket. Publishers
//! send an FLV file looped at its own pace, converted as ringcast's RTMP to WebRTC converts it,
//! each video frame SEI-stamped as the RTMP publisher stamps it, so WHEP players measure the
//! latency of a WHIP publish too. Works with any WHIP/WHEP server (ringcast, SRS 5+).
//!
//! Players come in two kinds ([`PlayMode`]). A full player lets str0m decrypt and depacketize
//! every packet: media bytes, SEI latency, the NACKs it sent, str0m's loss figures; a thousand
//! of them on a 1 Mbps stream need more than a core, so the load tool would cap what it
//! measures. A light player connects the same way (ICE, DTLS, str0m's timers and consent
//! checks run as before) but keeps RTP from str0m: it counts each packet from its clear SRTP
//! header ([`super::rtp_count`]). It measures no latency and asks for no resend, so its loss is
//! the raw loss on the wire, before the NACK repair a full player would get.
//!
//! Players read with UDP_GRO (`gro`), as QUIC stacks do: the kernel hands a UDP GSO send over
//! whole, with its segment size, and the player splits it. Without it, on loopback, the kernel
//! splits the send at the player's socket, in the softirq of the server's own send call, so a
//! server that batches with GSO was billed for its players' receive work, per datagram, as a
//! server that does not. A real network bills that to the receiving host.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpStream, UdpSocket};
use futures_util::future::{select, Either};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::rtp_count::{self, RtpCount};
use super::{sei, wall_ms, ClientState, PlayMode, Stats};
use crate::flv::Tag;
use crate::rtc::bridge::{AacToOpus, AvcToAnnexB};
use crate::rtc::udp::cmsg;
use crate::rtmp::message::{MSG_AUDIO, MSG_VIDEO};

const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REPLY: usize = 256 * 1024;
/// Room for any datagram on a path with a 1500-byte MTU, with margin.
const RECV_BUF: usize = 2048;
/// Room for a whole UDP GSO send, which a socket with UDP_GRO receives as one.
const RECV_BUF_GRO: usize = 65_536;
/// How often a light player adds its packets and loss to [`WhepCounters`], as often as str0m
/// reports a full player's.
const LIGHT_FLUSH: Duration = Duration::from_secs(1);

/// Why a WHEP player stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The URL is not `http://HOST:PORT/PATH?QUERY`.
    #[error("bad URL {0}")]
    Url(String),
    /// The server refused the offer.
    #[error("signalling: {0}")]
    Signal(String),
    /// str0m failed.
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// Signalling or ICE took too long.
    #[error("timed out")]
    Timeout,
    /// The kernel refused UDP_GRO (before Linux 5.0).
    #[error("UDP_GRO: {0} (--no-gro reads without it)")]
    Gro(nix::Error),
}

/// Counters of all WHEP players, besides [`Stats`]' bytes.
#[derive(Debug, Default)]
pub struct WhepCounters {
    /// RTP packets received (full players: str0m's ingress stats; light players: every RTP
    /// datagram), summed over players and tracks.
    pub packets: AtomicU64,
    /// NACKs the full players sent.
    pub nacks: AtomicU64,
    /// Packets lost. Full players: the RTCP receiver report fraction times packets. Light
    /// players: RFC 3550's expected minus received, per SSRC, without any resend.
    pub lost: AtomicU64,
}

/// `http://host:port/path?query` as `(host:port, path?query)`.
pub fn parse_http_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((authority, path.to_owned()))
}

/// POSTs `sdp` and returns the answer's body.
async fn post_offer(addr: &str, path: &str, sdp: &str) -> Result<String, WhepError> {
    let mut s = TcpStream::connect(addr).await?;
    let host = addr.split(':').next().unwrap_or(addr);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{sdp}",
        sdp.len()
    );
    let BufResult(r, _) = s.write_all(request.into_bytes()).await;
    r?;
    let mut reply = Vec::new();
    loop {
        let BufResult(r, buf) = s.read(Vec::with_capacity(16 * 1024)).await;
        let n = r?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > MAX_REPLY {
            return Err(WhepError::Signal("reply too large".into()));
        }
        if let Some(body) = complete_body(&reply) {
            return body;
        }
    }
    complete_body(&reply).unwrap_or_else(|| Err(WhepError::Signal("truncated reply".into())))
}

/// The body of a complete HTTP reply, an error for a status other than 200/201, `None` while
/// incomplete.
fn complete_body(reply: &[u8]) -> Option<Result<String, WhepError>> {
    let text = std::str::from_utf8(reply).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if length.is_some_and(|n| body.len() < n) {
        return None;
    }
    if status != "201" && status != "200" {
        return Some(Err(WhepError::Signal(format!("{status}: {}", body.trim()))));
    }
    Some(Ok(body.to_owned()))
}

/// A receive in flight: owned (the socket is a shared handle), so it outlives a turn that
/// ends on a timer. Dropping it instead would cancel the operation, and on io_uring a datagram
/// the kernel had already copied into it would be lost: phantom loss the server never caused.
type Recv = std::pin::Pin<Box<dyn std::future::Future<Output = Received>>>;
/// A receive's result (bytes, control bytes) and its data and control buffers.
type Received = (io::Result<(usize, usize)>, Vec<u8>, Vec<u8>);

/// One str0m peer over its own UDP socket, connected to a WHIP or WHEP server.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    recv: Option<Recv>,
    /// The last receive's buffer, for the next: one allocation per peer, not per datagram.
    spare: Vec<u8>,
    /// The last receive's control buffer, likewise.
    spare_control: Vec<u8>,
    /// Bytes each receive has room for.
    recv_buf: usize,
    video: Mid,
    audio: Mid,
}

impl Peer {
    /// Offers H.264 and Opus in `direction` to the signalling URL and opens the UDP socket,
    /// with UDP_GRO if `gro`.
    async fn connect(
        url: &(String, String),
        direction: Direction,
        gro: bool,
    ) -> Result<Self, WhepError> {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, direction, None, None, None);
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let Some((offer, pending)) = api.apply() else {
            return Err(WhepError::Signal("no offer".into()));
        };
        let answer = compio::time::timeout(
            SIGNAL_TIMEOUT,
            post_offer(&url.0, &url.1, &offer.to_sdp_string()),
        )
        .await
        .map_err(|_| WhepError::Timeout)??;
        // The server's UDP address is the answer's candidate (ICE-lite: it has one).
        let server = answer_candidate(&answer)
            .ok_or_else(|| WhepError::Signal("the answer has no UDP candidate".into()))?;
        let answer = SdpAnswer::from_sdp_string(&answer)
            .map_err(|e| WhepError::Signal(format!("bad answer: {e}")))?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal address")
        } else {
            "[::]:0".parse().expect("literal address")
        };
        let socket = UdpSocket::bind(bind).await?;
        if gro {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::UdpGroSegment, &true)
                .map_err(WhepError::Gro)?;
        }
        let recv_buf = if gro { RECV_BUF_GRO } else { RECV_BUF };
        // Connecting picks the local address that routes to the server: the candidate.
        socket.connect(server).await?;
        let local = socket.local_addr()?;
        let candidate = str0m::Candidate::host(local, "udp")
            .map_err(|e| WhepError::Signal(format!("local candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(Self {
            rtc,
            socket,
            server,
            local,
            recv: None,
            spare: Vec::with_capacity(recv_buf),
            spare_control: Vec::with_capacity(cmsg::CONTROL_LEN),
            recv_buf,
            video,
            audio,
        })
    }

    /// Runs the session until it has events (into `events`) or `deadline` passes. With
    /// `light`, RTP datagrams are counted there and never reach str0m.
    async fn run_until(
        &mut self,
        deadline: Instant,
        events: &mut Vec<Event>,
        mut light: Option<&mut Light<'_>>,
    ) -> Result<(), WhepError> {
        loop {
            let timeout = loop {
                match self.rtc.poll_output()? {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let BufResult(r, _) = self.socket.send(Vec::from(t.contents)).await;
                        r?;
                    }
                    Output::Event(e) => events.push(e),
                }
            };
            let now = Instant::now();
            if !events.is_empty() || now >= deadline {
                return Ok(());
            }
            let mut sleep =
                std::pin::pin!(compio::time::sleep_until(timeout.min(deadline).max(now)));
            // A datagram `light` counts leaves str0m as it was, its timeout included: str0m is
            // polled again only after input, and the timer runs on. Polling str0m and re-arming
            // a timer after each RTP packet cost light players about a fifth more CPU.
            loop {
                let recv = self.recv.get_or_insert_with(|| {
                    let socket = self.socket.clone();
                    // The receive writes from the start and sets the length; a buffer lost
                    // with a failed receive comes back empty, and grows again here.
                    let mut buf = std::mem::take(&mut self.spare);
                    buf.clear();
                    buf.reserve(self.recv_buf);
                    let mut control = std::mem::take(&mut self.spare_control);
                    control.clear();
                    control.reserve(cmsg::CONTROL_LEN);
                    Box::pin(async move {
                        let BufResult(r, (buf, control)) = socket.recv_msg(buf, control).await;
                        (r.map(|(n, c, _, _)| (n, c)), buf, control)
                    })
                });
                match select(recv.as_mut(), sleep.as_mut()).await {
                    Either::Left(((r, buf, control), _)) => {
                        self.recv = None;
                        let (n, c) = r?;
                        let data = &buf[..n];
                        let segment = cmsg::parse(&control[..c]).segment.unwrap_or(n).max(1);
                        let mut fed = false;
                        for datagram in data.chunks(segment) {
                            if light.as_deref_mut().is_some_and(|l| l.receive(datagram)) {
                                continue;
                            }
                            if let Ok(contents) = datagram.try_into() {
                                self.rtc.handle_input(Input::Receive(
                                    Instant::now(),
                                    Receive {
                                        proto: Protocol::Udp,
                                        source: self.server,
                                        destination: self.local,
                                        contents,
                                    },
                                ))?;
                                fed = true;
                            }
                        }
                        self.spare = buf;
                        self.spare_control = control;
                        if !fed {
                            continue;
                        }
                    }
                    Either::Right(_) => {
                        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                    }
                }
                break;
            }
        }
    }

    /// Runs until connected, or fails after [`SIGNAL_TIMEOUT`].
    async fn wait_connected(&mut self) -> Result<(), WhepError> {
        let by = Instant::now() + SIGNAL_TIMEOUT;
        let mut events = Vec::new();
        while Instant::now() < by {
            self.run_until(by, &mut events, None).await?;
            if events.drain(..).any(|e| matches!(e, Event::Connected)) {
                return Ok(());
            }
        }
        Err(WhepError::Timeout)
    }

    /// The payload type of `codec` on `mid`.
    fn pt(&mut self, mid: Mid, codec: Codec) -> Result<Pt, WhepError> {
        self.rtc
            .writer(mid)
            .and_then(|w| {
                w.payload_params()
                    .find(|p| p.spec().codec == codec)
                    .map(|p| p.pt())
            })
            .ok_or_else(|| WhepError::Signal(format!("{codec:?} not negotiated")))
    }
}

/// A light player's receive path: RTP is counted here and never reaches str0m.
struct Light<'a> {
    count: RtpCount,
    /// The player's slot in [`Stats::bytes`], added to as packets come, like a full player's.
    bytes: &'a AtomicU64,
}

impl Light<'_> {
    /// Counts `datagram` if it is RTP (an unreadable one is dropped, as str0m would drop it);
    /// false for what str0m must see: STUN, DTLS, RTCP.
    fn receive(&mut self, datagram: &[u8]) -> bool {
        if !rtp_count::is_rtp(datagram) {
            return false;
        }
        if let Some(h) = rtp_count::rtp_header(datagram) {
            self.count.packet(h.ssrc, h.seq);
            self.bytes.fetch_add(h.payload as u64, Ordering::Relaxed);
        }
        true
    }
}

/// Drains `events`, which a peer that only sends or only counts has no other use for; an
/// error if ICE lost the server among them.
fn still_connected(events: &mut Vec<Event>) -> Result<(), WhepError> {
    if events.drain(..).any(|e| {
        matches!(
            e,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
        )
    }) {
        return Err(WhepError::Signal("disconnected".into()));
    }
    Ok(())
}

/// Plays one WHEP stream until `stop`, counting into `stats[i]` and `counters`; reads with
/// UDP_GRO if `gro`.
pub async fn play(
    i: usize,
    url: Arc<(String, String)>,
    mode: PlayMode,
    gro: bool,
    stats: Arc<Stats>,
    counters: Arc<WhepCounters>,
    stop: Instant,
) {
    if let Err(e) = run_player(i, &url, mode, gro, &stats, &counters, stop).await {
        tracing::warn!(client = i, "whep: {e}");
        stats.set_state(i, ClientState::Failed);
    }
}

async fn run_player(
    i: usize,
    url: &(String, String),
    mode: PlayMode,
    gro: bool,
    stats: &Stats,
    counters: &WhepCounters,
    stop: Instant,
) -> Result<(), WhepError> {
    let mut peer = Peer::connect(url, Direction::RecvOnly, gro).await?;
    peer.wait_connected().await?;
    stats.set_state(i, ClientState::Alive);
    match mode {
        PlayMode::Full => play_full(&mut peer, i, stats, counters, stop).await,
        PlayMode::Light => play_light(&mut peer, &stats.bytes[i], counters, stop).await,
    }
}

/// A light player's session: str0m keeps ICE and DTLS going and sees RTCP; RTP is counted.
async fn play_light(
    peer: &mut Peer,
    bytes: &AtomicU64,
    counters: &WhepCounters,
    stop: Instant,
) -> Result<(), WhepError> {
    // str0m never sees this player's RTP, so its NACK check, every 33 ms per session, would
    // find nothing to ask for: as many wakeups as a third of the packets, for nothing.
    let (video, audio) = (peer.video, peer.audio);
    let mut api = peer.rtc.direct_api();
    for mid in [video, audio] {
        if let Some(stream) = api.stream_rx_by_mid(mid, None) {
            stream.suppress_nack(true);
        }
    }
    let mut light = Light {
        count: RtpCount::default(),
        bytes,
    };
    let mut events = Vec::new();
    while Instant::now() < stop {
        let until = (Instant::now() + LIGHT_FLUSH).min(stop);
        let run = peer.run_until(until, &mut events, Some(&mut light)).await;
        let (packets, lost) = light.count.take();
        counters.packets.fetch_add(packets, Ordering::Relaxed);
        counters.lost.fetch_add(lost, Ordering::Relaxed);
        run?;
        still_connected(&mut events)?;
    }
    Ok(())
}

/// A full player's session: str0m decrypts and depacketizes every packet.
async fn play_full(
    peer: &mut Peer,
    i: usize,
    stats: &Stats,
    counters: &WhepCounters,
    stop: Instant,
) -> Result<(), WhepError> {
    let mut last: Vec<(Mid, u64, u64)> = Vec::new();
    let mut events = Vec::new();
    while Instant::now() < stop {
        peer.run_until(stop, &mut events, None).await?;
        for e in events.drain(..) {
            match e {
                Event::MediaData(d) => {
                    stats.bytes[i].fetch_add(d.data.len() as u64, Ordering::Relaxed);
                    if d.mid == peer.video {
                        if let Some(ms) = super::sei::find_stamp_annexb(&d.data) {
                            stats.latency_ms(super::wall_ms().saturating_sub(ms));
                        }
                    }
                }
                Event::MediaIngressStats(s) => {
                    let slot = match last.iter_mut().find(|(m, _, _)| *m == s.mid) {
                        Some(slot) => slot,
                        None => {
                            last.push((s.mid, 0, 0));
                            last.last_mut().expect("pushed above")
                        }
                    };
                    let packets = s.packets.saturating_sub(slot.1);
                    counters.packets.fetch_add(packets, Ordering::Relaxed);
                    counters
                        .nacks
                        .fetch_add(s.nacks.saturating_sub(slot.2), Ordering::Relaxed);
                    if let Some(loss) = s.loss {
                        let lost = (f64::from(loss) * packets as f64).round() as u64;
                        counters.lost.fetch_add(lost, Ordering::Relaxed);
                    }
                    slot.1 = s.packets;
                    slot.2 = s.nacks;
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    return Err(WhepError::Signal("disconnected".into()));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Publishes `tags` (an FLV file: H.264 and AAC) over WHIP until `stop`, looped at its own
/// pace: H.264 as Annex B, AAC transcoded to Opus, as ringcast's RTMP to WebRTC does.
pub async fn publish(
    i: usize,
    url: Arc<(String, String)>,
    tags: Arc<Vec<Tag>>,
    stats: Arc<Stats>,
    stop: Instant,
) {
    if let Err(e) = run_publisher(i, &url, &tags, &stats, stop).await {
        tracing::warn!(client = i, "whip: {e}");
        stats.set_state(i, ClientState::Failed);
    }
}

async fn run_publisher(
    i: usize,
    url: &(String, String),
    tags: &[Tag],
    stats: &Stats,
    stop: Instant,
) -> Result<(), WhepError> {
    let mut peer = Peer::connect(url, Direction::SendOnly, false).await?;
    peer.wait_connected().await?;
    stats.set_state(i, ClientState::Alive);
    let video_pt = peer.pt(peer.video, Codec::H264)?;
    let audio_pt = peer.pt(peer.audio, Codec::Opus)?;
    let (mut video, mut audio) = (AvcToAnnexB::default(), AacToOpus::default());
    let nalu_len = sei::file_nalu_len_size(tags);
    let first = tags.first().map_or(0, |t| t.timestamp);
    let span = tags.last().map_or(0, |t| t.timestamp).saturating_sub(first) + 40;
    let start = Instant::now();
    let mut events = Vec::new();
    for round in 0u64.. {
        for tag in tags {
            let ts = round * u64::from(span) + u64::from(tag.timestamp.saturating_sub(first));
            let at = start + Duration::from_millis(ts);
            while Instant::now() < at.min(stop) {
                peer.run_until(at.min(stop), &mut events, None).await?;
                still_connected(&mut events)?;
            }
            if Instant::now() >= stop {
                return Ok(());
            }
            // The RTMP clock wraps at 32 bits, as the converters expect.
            let ts = ts as u32;
            let now = Instant::now();
            match tag.type_id {
                MSG_VIDEO => {
                    let body = if sei::is_avc_nalus(&tag.data) {
                        sei::stamp(&tag.data, nalu_len, wall_ms())
                    } else {
                        tag.data.clone()
                    };
                    if let Ok(Some(unit)) = video.push(&body, ts) {
                        stats.bytes[i].fetch_add(unit.data.len() as u64, Ordering::Relaxed);
                        let time = MediaTime::new(unit.pts_ms * 90, Frequency::NINETY_KHZ);
                        if let Some(w) = peer.rtc.writer(peer.video) {
                            w.write(video_pt, now, time, unit.data)?;
                        }
                    }
                }
                MSG_AUDIO => {
                    for unit in audio.push(&tag.data, ts).unwrap_or_default() {
                        stats.bytes[i].fetch_add(unit.data.len() as u64, Ordering::Relaxed);
                        let time = MediaTime::new(unit.rtp_time, Frequency::FORTY_EIGHT_KHZ);
                        if let Some(w) = peer.rtc.writer(peer.audio) {
                            w.write(audio_pt, now, time, unit.data)?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The address of the first UDP candidate of an SDP answer.
fn answer_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let fields: Vec<&str> = l.strip_prefix("a=candidate:")?.split_whitespace().collect();
        if !fields.get(2)?.eq_ignore_ascii_case("udp") {
            return None;
        }
        let ip: std::net::IpAddr = fields.get(4)?.parse().ok()?;
        Some(SocketAddr::new(ip, fields.get(5)?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_replies() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=a"),
            Some((
                "127.0.0.1:1985".into(),
                "/rtc/v1/whep/?app=live&stream=a".into()
            ))
        );
        assert_eq!(
            parse_http_url("http://h"),
            Some(("h:80".into(), "/".into()))
        );
        assert_eq!(parse_http_url("rtmp://h/a"), None);
        let ok = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nv=0";
        assert_eq!(complete_body(ok).unwrap().unwrap(), "v=0");
        assert!(complete_body(b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\nv=0").is_none());
        assert!(
            complete_body(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .is_err()
        );
        let sdp = "v=0\r\na=candidate:1 1 tcp 1 10.0.0.1 9 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 127.0.0.1 8000 typ host\r\n";
        assert_eq!(
            answer_candidate(sdp),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(answer_candidate("v=0\r\n"), None);
    }
}
