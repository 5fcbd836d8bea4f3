//! The RTC server in memory: signalling through [`super::handle_signal`], two cores' engines,
//! and str0m clients as the publisher and players, exchanging datagrams over a virtual network
//! with a virtual clock and a seeded random source (quinn/str0m style). No socket is opened.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{RawPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::api::{handle_signal, Offered, SignalAnswer, SignalContext};
use super::engine::hub::{RtcHub, PENDING_TIMEOUT};
use super::engine::session::{SessionEnd, KEYFRAME_INTERVAL};
use super::engine::{Engine, Publish, FLUSH_AT};
use super::signal::SignalError;
use super::to_rtmp::sink::Offerer;
use crate::config::Config;

const SERVER: &str = "127.0.0.1:8000";
const CONFIG: &str = "rtc_server { enabled on; listen 8000; candidate 127.0.0.1; }
vhost __defaultVhost__ { rtc { enabled on; } }";

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    /// Which engine (core) the kernel's SO_REUSEPORT hash would give this peer.
    core: usize,
    events: Vec<Event>,
    timeout: Instant,
    /// Datagrams dropped on the way to this client, 1 in `drop_every` (0: none).
    drop_every: usize,
    dropped: usize,
    received: usize,
    /// Its session's id, once signalling answered it.
    session: u64,
    /// The datagrams it sent that carried a NACK (with raw packets on, `Net::raw_packets`).
    nacks: Vec<Vec<u8>>,
}

impl Client {
    fn new(addr: &str, core: usize, now: Instant, raw_packets: bool) -> Self {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut rtc = Rtc::builder()
            .enable_raw_packets(raw_packets)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Self {
            rtc,
            addr,
            core,
            events: Vec::new(),
            timeout: now,
            drop_every: 0,
            dropped: 0,
            received: 0,
            session: 0,
            nacks: Vec::new(),
        }
    }

    /// Offers `direction` audio and video; returns the offer text and mids.
    fn offer(&mut self, direction: Direction) -> (String, SdpPendingOffer, Mid, Mid) {
        let mut api = self.rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, direction, None, None, None);
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending, video, audio)
    }

    fn accept(&mut self, pending: SdpPendingOffer, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    fn poll(&mut self, out: &mut Vec<Transmit>) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => out.push(t),
                // A sent packet's event follows the datagram that carried it.
                Output::Event(Event::RawPacket(p)) => {
                    if let (RawPacket::RtcpTx(Rtcp::Nack(_)), Some(t)) = (&*p, out.last()) {
                        if self.nacks.last().map(Vec::as_slice) != Some(&t.contents[..]) {
                            self.nacks.push(t.contents.to_vec());
                        }
                    }
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn keyframe_requests(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::KeyframeRequest(_)))
            .count()
    }

    fn video_frames(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::MediaData(d) if d.params.spec().codec == Codec::H264))
            .count()
    }
}

/// What the engines handed their flush, as the driver's socket would have sent it.
#[derive(Default)]
struct Flushed {
    transmits: Vec<Transmit>,
    /// The length of each batch handed over.
    batches: Vec<usize>,
}

struct Net {
    config: Config,
    hub: Arc<RtcHub>,
    rng: StdRng,
    engines: Vec<Engine>,
    /// Where every engine flushes, as the driver has them do.
    flushed: Rc<RefCell<Flushed>>,
    clients: Vec<Client>,
    now: Instant,
    /// Where the clients' datagrams arrive, as the driver tells the engines: the address
    /// they were sent to (`None`), or this private one behind a NAT that announced SERVER.
    nat: Option<SocketAddr>,
    /// What the engines asked the driver to publish to RTMP (`rtc_to_rtmp`).
    published: Vec<Publish>,
    /// Whether offers come as if their hooks allowed them, with an end hook that records
    /// their session in `ended`.
    hooked: bool,
    ended: Arc<Mutex<Vec<u64>>>,
    /// Whether clients joined from now on record the datagrams carrying their NACKs.
    raw_packets: bool,
}

/// An end hook that records its session.
#[derive(Debug)]
struct RecordEnd(u64, Arc<Mutex<Vec<u64>>>);

impl SessionEnd for RecordEnd {
    fn ended(self: Box<Self>) {
        self.1.lock().unwrap().push(self.0);
    }
}

impl Net {
    fn new(cores: usize) -> Self {
        Self::with_config(cores, CONFIG)
    }

    fn with_config(cores: usize, config: &str) -> Self {
        let (config, _) = Config::parse(config, "test.conf").unwrap();
        let hub = RtcHub::new();
        let flushed = Rc::new(RefCell::new(Flushed::default()));
        let engines = (0..cores)
            .map(|c| {
                let into = flushed.clone();
                let flush = Box::new(move |batch: &[Transmit]| {
                    let mut f = into.borrow_mut();
                    f.batches.push(batch.len());
                    f.transmits.extend(batch.iter().map(|t| Transmit {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.to_vec().into(),
                    }));
                });
                Engine::new(c, hub.clone(), flush)
            })
            .collect();
        Self {
            config,
            hub,
            rng: StdRng::seed_from_u64(14),
            engines,
            flushed,
            clients: Vec::new(),
            now: Instant::now(),
            nat: None,
            published: Vec::new(),
            hooked: false,
            ended: Arc::default(),
            raw_packets: false,
        }
    }

    fn api(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<SignalAnswer, SignalError> {
        let config = &self.config;
        let stream = |v: &str, a: &str, s: &str| crate::hub::stream_of(config, v, a, s);
        let offered = self.hooked.then(|| {
            let session = super::new_session_id(&mut self.rng);
            Offered {
                session,
                offerer: Offerer::default(),
                end: Box::new(RecordEnd(session, self.ended.clone())),
            }
        });
        let ctx = SignalContext {
            config,
            hub: &self.hub,
            stream: &stream,
            rtmp_published: &|_| false,
            offered,
        };
        handle_signal(ctx, method, path, query, body, self.now, &mut self.rng)
            .expect("an /rtc/v1/ path is served")
    }

    fn counter(
        &self,
        counter: impl Fn(&super::engine::hub::RtcStats) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        counter(&self.hub.stats).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn sessions(&self) -> usize {
        self.hub
            .stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds a client on `core` that publishes (`SendOnly`) or plays (`RecvOnly`) `stream`.
    fn join(
        &mut self,
        addr: &str,
        core: usize,
        direction: Direction,
        stream: &str,
    ) -> (usize, Mid) {
        let mut c = Client::new(addr, core, self.now, self.raw_packets);
        let (offer, pending, video, _audio) = c.offer(direction);
        let path = if direction == Direction::SendOnly {
            "/rtc/v1/whip/"
        } else {
            "/rtc/v1/whep/"
        };
        let reply = self.api(
            "POST",
            path,
            &format!("app=live&stream={stream}"),
            offer.as_bytes(),
        );
        let Ok(SignalAnswer::Answer { sdp, session, .. }) = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(session.len(), 16);
        c.session = u64::from_str_radix(&session, 16).unwrap();
        c.accept(pending, &sdp);
        self.clients.push(c);
        (self.clients.len() - 1, video)
    }

    /// One millisecond of the virtual network.
    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        let mut out = Vec::new();
        for c in &mut self.clients {
            if c.timeout <= now {
                c.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            c.poll(&mut out);
            for t in out.drain(..) {
                assert_eq!(t.destination, SERVER.parse().unwrap());
                let local = self.nat.unwrap_or(t.destination);
                self.engines[c.core].handle_datagram(now, t.source, Some(local), &t.contents);
            }
        }
        for e in &mut self.engines {
            e.handle_inbox(now);
            e.handle_timeout(now);
            e.drive(now);
            e.flush();
            self.published
                .extend(std::iter::from_fn(|| e.poll_publish()));
        }
        let flushed = std::mem::take(&mut self.flushed.borrow_mut().transmits);
        for t in flushed {
            // Every reply leaves from where its peer's datagrams arrive (a NAT then maps it
            // back to the address announced).
            assert_eq!(t.source, self.nat.unwrap_or(SERVER.parse().unwrap()));
            let c = self
                .clients
                .iter_mut()
                .find(|c| c.addr == t.destination)
                .expect("the server sends only to its peers");
            c.received += 1;
            if c.drop_every > 0 && c.received.is_multiple_of(c.drop_every) {
                c.dropped += 1;
                continue;
            }
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: SERVER.parse().unwrap(),
                    destination: t.destination,
                    contents: (&t.contents[..]).try_into().unwrap(),
                },
            );
            c.rtc.handle_input(input).unwrap();
        }
    }

    /// DELETEs session `id` through `/rtc/v1/{kind}/` (`whip` or `whep`), which must end it.
    fn delete(&mut self, kind: &str, id: u64) {
        let reply = self.api(
            "DELETE",
            &format!("/rtc/v1/{kind}/"),
            &format!("session={id:016x}"),
            b"",
        );
        assert_eq!(reply, Ok(SignalAnswer::Deleted));
    }

    /// Moves core 0's clock on for up to `limit`, 100 ms a step, with no client sending
    /// (their peers gone), until it holds no session.
    fn idle_core0(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.now < end && self.engines[0].session_count() > 0 {
            self.now += Duration::from_millis(100);
            let now = self.now;
            let e = &mut self.engines[0];
            e.handle_timeout(now);
            e.drive(now);
            e.flush();
            self.flushed.borrow_mut().transmits.clear();
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Writes one H.264 frame from publisher `p` (a keyframe every 30th).
    fn write_frame(&mut self, p: usize, mid: Mid, n: u32) {
        let c = &mut self.clients[p];
        let mut frame = Vec::new();
        if n.is_multiple_of(30) {
            frame.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40]);
            frame.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
            frame.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
            frame.resize(frame.len() + 3000, (n % 251) as u8 | 1);
        } else {
            frame.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a]);
            frame.resize(frame.len() + 2500, (n % 251) as u8 | 1);
        }
        let mut writer = c.rtc.writer(mid).expect("publisher's video writer");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::H264)
            .expect("H.264 negotiated")
            .pt();
        let rtp_time = Duration::from_millis(u64::from(n) * 33).into();
        writer = c.rtc.writer(mid).unwrap();
        writer.write(pt, self.now, rtp_time, frame).unwrap();
    }

    /// Publishes `frames` frames at 30 fps from client `p`.
    fn publish(&mut self, p: usize, mid: Mid, first: u32, frames: u32) {
        for n in first..first + frames {
            self.write_frame(p, mid, n);
            for _ in 0..33 {
                self.step();
            }
        }
    }
}

fn connected(c: &Client) -> bool {
    c.events.iter().any(|e| matches!(e, Event::Connected))
}

/// One core, a connected publisher of `stream` and a connected player: the publisher, its
/// video mid and the player.
fn publisher_and_player(stream: &str) -> (Net, usize, Mid, usize) {
    let mut net = Net::new(1);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, stream);
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[publisher])));
    let (player, _) = net.join("10.0.0.2:5000", 0, Direction::RecvOnly, stream);
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[player])));
    (net, publisher, video, player)
}

/// Two cores, a connected publisher of `stream` on core 0 and a connected player on each
/// core: the publisher, its video mid, the player on its core and the one on core 1.
fn publisher_and_two_players(stream: &str) -> (Net, usize, Mid, usize, usize) {
    let mut net = Net::new(2);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, stream);
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[publisher])));
    let (local, _) = net.join("10.0.0.2:5000", 0, Direction::RecvOnly, stream);
    let (remote, _) = net.join("10.0.0.3:5000", 1, Direction::RecvOnly, stream);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        connected(&n.clients[local]) && connected(&n.clients[remote])
    }));
    (net, publisher, video, local, remote)
}

#[test]
fn whip_publisher_reaches_whep_players_on_two_cores() {
    let (mut net, publisher, video, local, remote) = publisher_and_two_players("cam");
    assert_eq!(net.engines[0].session_count(), 2);
    assert_eq!(net.engines[1].session_count(), 1);
    // Players joining made the server ask the publisher for a keyframe.
    net.publish(publisher, video, 1, 10);
    assert!(
        net.clients[publisher]
            .events
            .iter()
            .any(|e| matches!(e, Event::KeyframeRequest(_))),
        "PLI forwarded to the publisher"
    );
    net.publish(publisher, video, 30, 60);
    for p in [local, remote] {
        let frames = net.clients[p].video_frames();
        assert!(frames >= 50, "player {p} decoded {frames} frames");
    }
    assert_eq!(net.sessions(), 3);
}

/// A WHIP publisher leaves and another publishes the same name: the players of the first,
/// one on the publisher's core and one on another, get the second's media without a new
/// offer, their RTP clock running on across the change (the second publisher's clock starts
/// elsewhere), and a stream with neither publisher nor players is forgotten.
#[test]
fn players_follow_a_republished_stream() {
    let (mut net, first, video, local, remote) = publisher_and_two_players("again");
    net.publish(first, video, 0, 30);
    let before = [local, remote].map(|p| net.clients[p].video_frames());
    assert!(
        before.iter().all(|&f| f >= 20),
        "first publisher: {before:?}"
    );
    let id = net.clients[first].session;
    net.delete("whip", id);
    net.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(net.engines[0].session_count(), 1, "its local player stays");
    // A player that comes while nobody publishes waits with the others.
    let (waiting, _) = net.join("10.0.0.5:5000", 1, Direction::RecvOnly, "again");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[waiting])));
    let before = [before[0], before[1], 0];
    // The second publisher lands on core 1, its RTP clock 10 minutes on from the first's.
    let (second, video) = net.join("10.0.0.4:5000", 1, Direction::SendOnly, "again");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[second])));
    net.publish(second, video, 18_000, 30);
    for (i, p) in [local, remote, waiting].into_iter().enumerate() {
        let c = &net.clients[p];
        let frames = c.video_frames();
        assert!(
            frames >= before[i] + 20,
            "player {p}: {frames} after {before:?}"
        );
        let times: Vec<u64> = c
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MediaData(d) if d.params.spec().codec == Codec::H264 => {
                    Some(d.time.rebase(Frequency::NINETY_KHZ).numer())
                }
                _ => None,
            })
            .collect();
        let largest = times.windows(2).map(|w| w[1].abs_diff(w[0])).max().unwrap();
        assert!(
            largest < 90_000,
            "player {p}: RTP time jumped {largest} ticks at the republish"
        );
    }
    // Everyone leaves: nothing of the stream is left.
    for c in [second, local, remote, waiting] {
        let (kind, id) = (
            if c == second { "whip" } else { "whep" },
            net.clients[c].session,
        );
        net.delete(kind, id);
    }
    net.run_until(Duration::from_millis(100), |_| false);
    assert!(net.hub.streams_len() == 0, "the stream was forgotten");
}

/// Behind a NAT the datagrams arrive at an address the answer does not name: str0m is told
/// the candidate (it drops a binding to an address it has no candidate for), and the replies
/// leave from the private address, which the NAT maps back (`step` checks each one).
#[test]
fn behind_a_nat_replies_leave_from_where_datagrams_arrive() {
    let mut net = Net::new(1);
    net.nat = Some("172.17.0.2:8000".parse().unwrap());
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "nat");
    let (player, _) = net.join("10.0.0.2:5000", 0, Direction::RecvOnly, "nat");
    assert!(net.run_until(Duration::from_secs(5), |n| {
        connected(&n.clients[publisher]) && connected(&n.clients[player])
    }));
    net.publish(publisher, video, 1, 40);
    assert!(net.clients[player].video_frames() >= 20);
}

#[test]
fn nacks_are_answered_under_loss() {
    let (mut net, publisher, video, player) = publisher_and_player("lossy");
    net.clients[player].drop_every = 20;
    net.publish(publisher, video, 0, 90);
    let c = &net.clients[player];
    assert!(c.dropped >= 12, "loss was injected: {}", c.dropped);
    // Frames span three packets: without resends about one in seven would be lost.
    let frames = c.video_frames();
    assert!(
        frames >= 87,
        "with 5% loss the player still got {frames} of 90 frames"
    );
}

#[test]
fn a_players_packets_leave_as_they_are_written() {
    let (mut net, publisher, video, player) = publisher_and_player("now");
    net.publish(publisher, video, 0, 60);
    assert_eq!(net.clients[player].video_frames(), 60);
    // Sealed as they were written, not queued in str0m for a timeout round trip and a poll
    // per packet; only what meets a packet still queued on its stream waits.
    let at_once = net.counter(|s| &s.rtp_sent_at_once);
    let queued = net.counter(|s| &s.rtp_queued);
    assert!(at_once >= 150, "{at_once} sent at once, {queued} queued");
    assert!(
        queued * 20 <= at_once,
        "{at_once} sent at once, {queued} queued"
    );
}

/// A frame written to more players than [`FLUSH_AT`] datagrams' worth goes to the driver in
/// batches as it is written, not held to the end of the turn, and every player gets it whole.
#[test]
fn a_fan_out_is_flushed_in_bounded_batches() {
    let mut net = Net::new(1);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "many");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[publisher])));
    // Three or four datagrams a frame each: 100 players are 300 or more, over one batch.
    let players: Vec<usize> = (0..100)
        .map(|i| {
            let addr = format!("10.0.1.{}:{}", i / 50, 6000 + i);
            net.join(&addr, 0, Direction::RecvOnly, "many").0
        })
        .collect();
    assert!(net.run_until(Duration::from_secs(10), |n| {
        players.iter().all(|&p| connected(&n.clients[p]))
    }));
    net.flushed.borrow_mut().batches.clear();
    net.publish(publisher, video, 0, 30);
    for &p in &players {
        assert_eq!(net.clients[p].video_frames(), 30, "player {p}");
    }
    let batches = &net.flushed.borrow().batches;
    let largest = batches.iter().copied().max().unwrap();
    // One player's datagrams of a frame may come on top of a full batch.
    assert!(
        (FLUSH_AT..FLUSH_AT + 8).contains(&largest),
        "largest batch {largest}"
    );
}

#[test]
fn delete_ends_a_session_and_the_stream() {
    let mut net = Net::new(1);
    let (publisher, _) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "gone");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[publisher])));
    let busy = net.api("POST", "/rtc/v1/whip/", "app=live&stream=gone", b"v=0\r\n");
    assert_eq!(busy.unwrap_err().status(), 403);
    assert_eq!(net.sessions(), 1);
    let missing = net.api("DELETE", "/rtc/v1/whip/", "session=0123", b"");
    assert_eq!(missing.unwrap_err().status(), 404);
    let stream = net
        .hub
        .stream(&crate::hub::StreamKey {
            vhost: crate::config::DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: "gone".into(),
        })
        .unwrap();
    let (_, id) = stream.publisher().unwrap();
    net.delete("whip", id);
    net.run_until(Duration::from_millis(50), |_| false);
    assert_eq!(net.engines[0].session_count(), 0);
    assert_eq!(net.hub.streams_len(), 0);
}

/// A player may come before the stream's first publisher, as in SRS (its "play before
/// publishing"): it is answered, connects, and plays the publisher that comes later, on
/// either core. One whose client never comes leaves nothing behind.
#[test]
fn a_player_waits_for_the_first_publisher() {
    let mut net = Net::new(2);
    let (early, _) = net.join("10.0.0.2:5000", 1, Direction::RecvOnly, "later");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[early])));
    assert_eq!(
        net.hub.streams_len(),
        1,
        "the player's stream waits for a publisher"
    );
    let mut never = Client::new("10.0.0.9:5000", 0, net.now, net.raw_packets);
    let (offer, ..) = never.offer(Direction::RecvOnly);
    let answered = net.api(
        "POST",
        "/rtc/v1/whep/",
        "app=live&stream=nobody",
        offer.as_bytes(),
    );
    assert!(answered.is_ok(), "{answered:?}");
    assert_eq!(
        net.hub.streams_len(),
        1,
        "a player not come yet holds no stream"
    );
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "later");
    assert!(net.run_until(Duration::from_secs(5), |n| connected(&n.clients[publisher])));
    net.publish(publisher, video, 0, 30);
    let frames = net.clients[early].video_frames();
    assert!(frames >= 20, "{frames} frames");
    for (kind, c) in [("whip", publisher), ("whep", early)] {
        net.delete(kind, net.clients[c].session);
    }
    net.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(net.hub.streams_len(), 0, "nothing of either stream is left");
}

/// Every session made for an offer its hooks allowed tells its end hook once, when it is
/// dropped, however it ends (SRS's `on_unpublish` and `on_stop`): a DELETE on its core, its
/// peer going silent, a DELETE before it connected, or expiry before its first binding (swept
/// by core 0, no later offer needed). An offer refused after its hooks made no session and
/// tells nothing.
#[test]
fn every_allowed_session_tells_its_end_once() {
    let mut net = Net::new(2);
    net.hooked = true;
    let ended = net.ended.clone();
    let (publisher, _) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "end");
    let (deleted, _) = net.join("10.0.0.2:5000", 1, Direction::RecvOnly, "end");
    let (silent, _) = net.join("10.0.0.3:5000", 0, Direction::RecvOnly, "end");
    assert!(net.run_until(Duration::from_secs(5), |n| {
        [publisher, deleted, silent]
            .iter()
            .all(|&c| connected(&n.clients[c]))
    }));
    let [publisher, deleted, silent] = [publisher, deleted, silent].map(|c| net.clients[c].session);
    let play = |net: &mut Net| {
        let (offer, ..) =
            Client::new("10.0.0.9:5000", 0, net.now, false).offer(Direction::RecvOnly);
        match net.api(
            "POST",
            "/rtc/v1/whep/",
            "app=live&stream=end",
            offer.as_bytes(),
        ) {
            Ok(SignalAnswer::Answer { session, .. }) => u64::from_str_radix(&session, 16).unwrap(),
            reply => panic!("{reply:?}"),
        }
    };
    let (never, expires) = (play(&mut net), play(&mut net));
    assert!(ended.lock().unwrap().is_empty());
    // Before its first binding: the hub drops it at once.
    net.delete("whep", never);
    assert_eq!(*ended.lock().unwrap(), [never]);
    // Refused after its hooks (a bad SDP): no session, nothing told.
    let bad = net.api(
        "POST",
        "/rtc/v1/whep/",
        "app=live&stream=end",
        b"v=0\r\nnonsense",
    );
    assert_eq!(bad.unwrap_err().status(), 400);
    // On core 1: its core closes it.
    net.delete("whep", deleted);
    net.run_until(Duration::from_millis(50), |_| false);
    assert_eq!(*ended.lock().unwrap(), [never, deleted]);
    // The publisher and the other player vanish: their sessions time out.
    net.clients.clear();
    net.idle_core0(Duration::from_secs(60));
    assert_eq!(net.engines[0].session_count(), 0);
    // The offer whose client never came expires: core 0's sweep drops it, with no offer
    // after it.
    net.now += PENDING_TIMEOUT;
    net.engines[0].handle_timeout(net.now);
    assert_eq!(net.hub.pending_count(), 0);
    let mut told = ended.lock().unwrap().clone();
    told.sort_unstable();
    let mut sessions = vec![publisher, deleted, silent, never, expires];
    sessions.sort_unstable();
    assert_eq!(told, sessions, "each once");
}

#[test]
fn bad_datagrams_and_credentials_are_rejected() {
    let mut net = Net::new(1);
    let now = net.now;
    let src: SocketAddr = "10.9.9.9:9".parse().unwrap();
    net.engines[0].handle_datagram(now, src, None, b"hello");
    net.engines[0].handle_datagram(now, src, None, &[0x80; 100]);
    net.engines[0].handle_datagram(now, src, None, &[]);
    // A binding that names a pending session's ufrag but has no valid integrity.
    let mut c = Client::new("10.0.0.1:5000", 0, now, false);
    let (offer, _pending, _, _) = c.offer(Direction::SendOnly);
    let reply = net.api(
        "POST",
        "/rtc/v1/whip/",
        "app=live&stream=x",
        offer.as_bytes(),
    );
    let Ok(SignalAnswer::Answer { sdp: answer, .. }) = reply else {
        panic!("{reply:?}");
    };
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let mut stun = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[1; 12]);
    let username = format!("{ufrag}:evil");
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    stun[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
    stun.extend_from_slice(&attr);
    net.engines[0].handle_datagram(now, src, None, &stun);
    net.engines[0].drive(now);
    assert_eq!(net.engines[0].session_count(), 0);
    assert_eq!(
        net.hub.pending_count(),
        1,
        "the real client can still connect"
    );
    assert_eq!(net.counter(|s| &s.rejected), 4);
    let bad = net.api(
        "POST",
        "/rtc/v1/whep/",
        "app=live&stream=x",
        b"v=0\r\nnonsense",
    );
    assert_eq!(bad.unwrap_err().status(), 400);
    let bad = net.api(
        "POST",
        "/rtc/v1/whip/",
        "app=live&stream=y",
        b"v=0\r\nm=video x",
    );
    assert_eq!(bad.unwrap_err().status(), 400);
    assert_eq!(net.counter(|s| &s.refused_requests), 2);
    let Ok(SignalAnswer::Stats(stats)) = net.api("GET", "/rtc/v1/stats/", "", b"") else {
        panic!("stats are served");
    };
    assert_eq!((stats.rejected, stats.refused_requests), (4, 2));
    assert_eq!((stats.pending, stats.sessions), (1, 0));
}

#[test]
fn silent_peers_time_out() {
    let (mut net, ..) = publisher_and_player("quiet");
    assert_eq!(net.engines[0].session_count(), 2);
    // Both clients vanish without a DELETE: only the engine's clock moves on.
    net.clients.clear();
    net.idle_core0(Duration::from_secs(60));
    assert_eq!(
        net.engines[0].session_count(),
        0,
        "sessions of gone peers are closed"
    );
    assert_eq!(net.sessions(), 0);
}

#[test]
fn garbage_from_a_peer_address_does_not_end_its_session() {
    let (mut net, publisher, video, player) = publisher_and_player("spoof");
    let now = net.now;
    let spoofed: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut seed = 7u32;
    for len in [0usize, 1, 13, 20, 100, 1200] {
        for first in [0u8, 1, 20, 22, 23, 64, 128, 129, 200] {
            let mut d = vec![first; len.max(1)];
            for b in d.iter_mut().skip(1) {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (seed >> 24) as u8;
            }
            net.engines[0].handle_datagram(now, spoofed, None, &d[..len]);
        }
    }
    net.engines[0].drive(now);
    assert_eq!(net.engines[0].session_count(), 2);
    let before = net.clients[player].video_frames();
    net.publish(publisher, video, 0, 30);
    assert!(net.clients[player].video_frames() >= before + 25);
}

/// A fuzzer find: an offer describing H.264 payload types (104, 108) in its audio section,
/// which does not list them, while its video section does, made str0m 0.24 panic while matching
/// codecs ("Pt locked multiple times"). It is refused as a bad offer; browsers' offers, which
/// describe only what they list, still pass.
#[test]
fn offers_with_clashing_payload_types_are_refused() {
    use super::engine::session::{Session, SessionError, SessionParams};
    use super::sdp::stray_format;
    use super::signal::Role;
    let sdp = include_str!("testdata/pt-clash-offer.sdp");
    assert_eq!(stray_format(sdp), Some(104));
    let hub = super::RtcHub::new();
    let key = crate::hub::StreamKey {
        vhost: "v".into(),
        app: "live".into(),
        stream: "s".into(),
    };
    let params = SessionParams {
        role: Role::Publish,
        stream: hub.detached_stream(&key),
        candidates: vec![SERVER.parse().unwrap()],
        nack: true,
        bridge: None,
        to_rtmp: None,
        crypto: hub.certs.provider().clone(),
        cert: None,
    };
    let refused = Session::from_offer(
        1,
        params,
        sdp,
        Instant::now(),
        &mut StdRng::seed_from_u64(1),
    );
    assert!(
        matches!(refused, Err(SessionError::BadOffer(ref why)) if why.contains("104")),
        "{:?}",
        refused.err()
    );
    // The committed fuzz seeds are Chromium's offers behind one selector byte.
    for seed in [
        &include_bytes!("../../fuzz/seeds/rtc_signal/chromium-whip")[1..],
        &include_bytes!("../../fuzz/seeds/rtc_signal/chromium-whep")[1..],
    ] {
        assert_eq!(stray_format(std::str::from_utf8(seed).unwrap()), None);
    }
}

/// The timer table: a turn before the first deadline runs no session, and the turn at it runs
/// the due ones, which then wait for a later deadline.
#[test]
fn turns_run_only_the_sessions_whose_timer_is_due() {
    let (mut net, ..) = publisher_and_player("timers");
    let now = net.now;
    let e = &mut net.engines[0];
    let next = e.poll_timeout().expect("live sessions keep a timer");
    assert!(next > now, "a drive leaves no timer already due");
    let early = now + (next - now) / 2;
    e.handle_timeout(early);
    e.drive(early);
    e.flush();
    assert!(
        net.flushed.borrow().transmits.is_empty(),
        "no session ran before its deadline"
    );
    assert_eq!(e.poll_timeout(), Some(next));
    e.handle_timeout(next);
    e.drive(next);
    assert!(e.poll_timeout().is_some_and(|t| t > next));
    assert_eq!(e.session_count(), 2);
}

const TO_RTMP: &str = "rtc_server { enabled on; listen 8000; candidate 127.0.0.1; }
vhost __defaultVhost__ { rtc { enabled on; rtc_to_rtmp on; } }";

/// The video messages of `session`'s RTMP publish, as (FLV frame type byte, packet type).
fn rtmp_video(published: &[Publish], session: u64) -> Vec<(u8, u8)> {
    published
        .iter()
        .filter_map(|p| match p {
            Publish::Message {
                session: s,
                message,
            } if *s == session && message.kind == crate::media::MediaKind::Video => {
                Some((message.payload[0], message.payload[1]))
            }
            _ => None,
        })
        .collect()
}

/// `rtc_to_rtmp`: a connected WHIP publisher starts an RTMP publish and gets a PLI; its
/// frames become FLV messages from the first keyframe, a sequence header first; garbage
/// frames are counted and dropped, and a publisher that keeps ICE alive but sends no media
/// is closed after the media timeout, its publish stopped. Another publisher's session, on
/// the same core, is not disturbed.
#[test]
fn whip_publish_with_rtc_to_rtmp_becomes_an_rtmp_publish() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut net = Net::with_config(1, TO_RTMP);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "cam");
    let (other, other_video) = net.join("10.0.0.3:5000", 0, Direction::SendOnly, "other");
    assert!(net.run_until(Duration::from_secs(5), |n| {
        connected(&n.clients[publisher]) && connected(&n.clients[other])
    }));
    let starts: Vec<(u64, String)> = net
        .published
        .iter()
        .filter_map(|p| match p {
            Publish::Start(r) => Some((r.session, r.key.stream.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let session = starts.iter().find(|(_, s)| s == "cam").unwrap().0;
    // Frames 1..29 come before the first keyframe: dropped, a keyframe asked for.
    net.publish(publisher, video, 1, 60);
    assert!(net.clients[publisher]
        .events
        .iter()
        .any(|e| matches!(e, Event::KeyframeRequest(_))));
    let v = rtmp_video(&net.published, session);
    assert_eq!(v[..2], [(0x17, 0), (0x17, 1)], "header, then the keyframe");
    assert_eq!(v.len(), 2 + 30, "frames 30..59");
    assert!(v[2..]
        .iter()
        .all(|&(b, t)| t == 1 && (b == 0x27 || b == 0x17)));
    // Garbage: an SPS too short to read, with a PPS (str0m's packetizer sends an SPS only with
    // a PPS, and its depacketizer makes Annex B of whatever arrives: this is the garbage that
    // reaches the converter).
    for n in 0..10u64 {
        let c = &mut net.clients[publisher];
        let mut writer = c.rtc.writer(video).unwrap();
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::H264)
            .unwrap()
            .pt();
        writer = c.rtc.writer(video).unwrap();
        let rtp_time = Duration::from_millis((60 + n) * 33).into();
        let mut frame = vec![
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x41,
        ];
        frame.resize(900, 7);
        writer.write(pt, net.now, rtp_time, frame).unwrap();
        for _ in 0..33 {
            net.step();
        }
    }
    let bad = net.hub.stats.to_rtmp_bad_frames.load(Relaxed);
    assert!(bad >= 5, "garbage counted: {bad}");
    assert_eq!(rtmp_video(&net.published, session).len(), 32);
    // Garbage RTP and RTCP from the publisher's address (SRTP that does not authenticate,
    // unknown SSRCs): str0m drops them (without an error, so they are not in `rejected`);
    // the session and its publish go on.
    let from: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    for i in 0..500u32 {
        let mut d = vec![0x80, if i % 2 == 0 { 96 } else { 200 }];
        d.extend_from_slice(&i.to_be_bytes());
        d.extend_from_slice(&0xdead_beef_u32.wrapping_add(i).to_be_bytes());
        d.resize(40 + (i as usize % 1100), i as u8);
        net.engines[0].handle_datagram(net.now, from, None, &d);
    }
    net.step();
    assert_eq!(net.engines[0].session_count(), 2);
    net.publish(publisher, video, 90, 31);
    assert_eq!(rtmp_video(&net.published, session).len(), 32 + 31);
    // The other publisher goes on; this one sends nothing more, ICE alive.
    let stopped = |net: &Net, id: u64| {
        net.published
            .iter()
            .any(|p| matches!(p, Publish::Stop { session: s } if *s == id))
    };
    let end = net.now + Duration::from_secs(15);
    let mut n = 0;
    while net.now < end && !stopped(&net, session) {
        net.publish(other, other_video, n, 1);
        n += 1;
    }
    assert!(
        stopped(&net, session),
        "a silent publisher's RTMP publish stops"
    );
    assert_eq!(net.hub.stats.stale_publishers.load(Relaxed), 1);
    assert_eq!(net.engines[0].session_count(), 1);
    let other_session = starts.iter().find(|(_, s)| s == "other").unwrap().0;
    assert!(rtmp_video(&net.published, other_session).len() > 250);
    assert!(!stopped(&net, other_session));
}

/// Sends one RTP packet of payload type `pt` on media section `mid` from client `p` under
/// `ssrc`, an SSRC its offer never announced, and runs the network until the server counted
/// it, 30 ms at most. str0m's direct API: a send stream declared for the packet and removed
/// after, so the client's own streams stay as they were. It carries the `mid` header
/// extension, as a new SSRC's packets do. The stream has a rid of its own: str0m's pacer
/// names a queue by mid and rid and sends from the first stream a hash map yields for them,
/// so a stream sharing the real one's (mid, no rid) is sent from only when the map happens to
/// yield it first.
fn send_stray_rtp(net: &mut Net, p: usize, mid: Mid, ssrc: u32, pt: Pt, seq: u16) {
    let now = net.now;
    let counted = net.counter(|s| &s.unannounced_ssrc);
    let mut api = net.clients[p].rtc.direct_api();
    let tx = api.declare_stream_tx(ssrc.into(), None, mid, Some("stray".into()));
    let time = u32::from(seq) * 3000;
    tx.write_rtp(RtpWrite::new(
        pt,
        u64::from(seq).into(),
        time,
        now,
        vec![0x41; 200],
    ));
    // str0m queues a written packet for its next timeout, which may be far off.
    net.clients[p].timeout = now;
    assert!(net.run_until(Duration::from_millis(30), |n| {
        n.counter(|s| &s.unannounced_ssrc) > counted
    }));
    net.clients[p]
        .rtc
        .direct_api()
        .remove_stream_tx(ssrc.into());
}

/// A publisher that sends RTP under SSRCs its offer never announced, 300 of them: each is
/// dropped before str0m and counted (str0m would move the media section's stream to it, losing
/// the real frames around it, and remember every SSRC for the session's life), its real frames
/// after them all reach its player, and the session, the stream beside it and its player go on.
#[test]
fn unannounced_ssrcs_are_dropped_and_the_real_media_goes_on() {
    let mut net = Net::new(1);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "ssrc");
    let (player, _) = net.join("10.0.0.2:5000", 0, Direction::RecvOnly, "ssrc");
    let (other, other_video) = net.join("10.0.0.3:5000", 0, Direction::SendOnly, "beside");
    let (other_player, _) = net.join("10.0.0.4:5000", 0, Direction::RecvOnly, "beside");
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.clients.iter().all(connected)
    }));
    net.publish(publisher, video, 0, 30);
    net.publish(other, other_video, 0, 30);
    let before = [player, other_player].map(|p| net.clients[p].video_frames());
    assert!(before.iter().all(|&f| f >= 25), "{before:?}");
    let pt = {
        let w = net.clients[publisher].rtc.writer(video).unwrap();
        let pt = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::H264)
            .unwrap()
            .pt();
        pt
    };
    for seq in 0..300u16 {
        send_stray_rtp(
            &mut net,
            publisher,
            video,
            0x5000_0000 + u32::from(seq),
            pt,
            seq,
        );
    }
    net.publish(publisher, video, 30, 60);
    net.publish(other, other_video, 30, 60);
    assert_eq!(net.counter(|s| &s.unannounced_ssrc), 300);
    assert_eq!(net.engines[0].session_count(), 4);
    let after = [player, other_player].map(|p| net.clients[p].video_frames());
    assert!(
        after.iter().zip(before).all(|(a, b)| *a >= b + 58),
        "{before:?} -> {after:?}"
    );
    let Ok(SignalAnswer::Stats(stats)) = net.api("GET", "/rtc/v1/stats/", "", b"") else {
        panic!("stats are served");
    };
    assert_eq!((stats.unannounced_ssrc, stats.rejected), (300, 0));
}

/// A PLI flood: four players, two on each core, ask for a keyframe every millisecond for three
/// virtual seconds. Each player's RTCP budget (50 a second) drops most of it unread; what
/// passes asks the publisher at most once per [`KEYFRAME_INTERVAL`] (an encoder told to make
/// keyframes that often would send little else), and at least once a second (the flood does
/// reach it); the two quiet players, one on each core, get every frame.
#[test]
fn a_pli_flood_asks_the_publisher_at_most_once_per_keyframe_interval() {
    let mut net = Net::new(2);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "pli");
    let quiet = [("10.0.0.2:5000", 0), ("10.0.0.3:5000", 1)]
        .map(|(addr, core)| net.join(addr, core, Direction::RecvOnly, "pli").0);
    let flood: Vec<(usize, Mid)> = (0..4)
        .map(|i| {
            net.join(
                &format!("10.0.1.{i}:5000"),
                i % 2,
                Direction::RecvOnly,
                "pli",
            )
        })
        .collect();
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.clients.iter().all(connected)
    }));
    net.publish(publisher, video, 0, 30);
    let asked = net.clients[publisher].keyframe_requests();
    let before = quiet.map(|p| net.clients[p].video_frames());
    let start = net.now;
    for n in 30..120 {
        net.write_frame(publisher, video, n);
        for _ in 0..33 {
            for &(p, mid) in &flood {
                let c = &mut net.clients[p];
                let mut writer = c.rtc.writer(mid).unwrap();
                writer
                    .request_keyframe(None, KeyframeRequestKind::Pli)
                    .unwrap();
                // str0m sends a requested PLI at its next timeout.
                c.timeout = net.now;
            }
            net.step();
        }
    }
    let asked = net.clients[publisher].keyframe_requests() - asked;
    let intervals = ((net.now - start).as_millis() / KEYFRAME_INTERVAL.as_millis()) as usize;
    let seconds = (net.now - start).as_secs() as usize;
    assert!(
        (seconds..=intervals + 1).contains(&asked),
        "{asked} keyframe requests in {seconds} s, {intervals} intervals"
    );
    assert!(net.counter(|s| &s.rtcp_over_budget) > 10_000);
    let after = quiet.map(|p| net.clients[p].video_frames());
    assert!(
        after.iter().zip(before).all(|(a, b)| *a == b + 90),
        "{before:?} -> {after:?}"
    );
    assert_eq!(net.counter(|s| &s.inbox_overflows), 0);
}

/// A NACK flood: a player losing one datagram in 10 sends each NACK its str0m makes over and
/// over, 20 times a millisecond for three virtual seconds (a replayed SRTCP datagram
/// authenticates again: str0m keeps no replay window for SRTCP). str0m would queue a resend
/// for each sequence number each time it is named (the flooder got 15 times a quiet player's
/// datagrams); the engine reads at most 50 RTCP datagrams a second from a player, so its
/// resends stay within a small multiple of the stream, the rest counted as dropped. No panic,
/// its session goes on, the quiet players on both cores get every frame and an honest lossy
/// one, whose NACKs stay under the budget, nearly all.
#[test]
fn a_nack_flood_is_cut_to_the_rtcp_budget_and_disturbs_no_other_player() {
    let mut net = Net::new(2);
    let (publisher, video) = net.join("10.0.0.1:5000", 0, Direction::SendOnly, "nack");
    let (quiet, _) = net.join("10.0.0.2:5000", 0, Direction::RecvOnly, "nack");
    let (remote, _) = net.join("10.0.0.3:5000", 1, Direction::RecvOnly, "nack");
    let (lossy, _) = net.join("10.0.0.4:5000", 0, Direction::RecvOnly, "nack");
    net.raw_packets = true;
    let (flood, _) = net.join("10.0.0.5:5000", 0, Direction::RecvOnly, "nack");
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.clients.iter().all(connected)
    }));
    net.publish(publisher, video, 0, 30);
    for p in [lossy, flood] {
        net.clients[p].drop_every = 10;
    }
    let players = [quiet, remote, lossy, flood];
    let before = players.map(|p| (net.clients[p].received, net.clients[p].video_frames()));
    let from = net.clients[flood].addr;
    let local = Some(SERVER.parse().unwrap());
    let mut sent = 0;
    for n in 30..120 {
        net.write_frame(publisher, video, n);
        for _ in 0..33 {
            if let Some(nack) = net.clients[flood].nacks.last().cloned() {
                for _ in 0..20 {
                    net.engines[0].handle_datagram(net.now, from, local, &nack);
                }
                sent += 20;
            }
            net.step();
        }
    }
    let after = players.map(|p| (net.clients[p].received, net.clients[p].video_frames()));
    // Datagrams the server sent each player during the flood, and the frames it got.
    let [quiet, remote, lossy, flood]: [(usize, usize); 4] =
        std::array::from_fn(|i| (after[i].0 - before[i].0, after[i].1 - before[i].1));
    assert_eq!((quiet.1, remote.1), (90, 90), "{quiet:?} {remote:?}");
    assert!(lossy.1 >= 87, "{lossy:?}");
    assert!(
        flood.0 < quiet.0 * 2,
        "{flood:?} for {sent} NACKs, a quiet player {quiet:?}"
    );
    let dropped = net.counter(|s| &s.rtcp_over_budget);
    assert!(
        dropped as usize > sent * 9 / 10,
        "{dropped} of {sent} NACKs dropped"
    );
    assert_eq!(net.engines[0].session_count(), 4);
    assert_eq!(net.engines[1].session_count(), 1);
    assert_eq!(net.counter(|s| &s.inbox_overflows), 0);
}
