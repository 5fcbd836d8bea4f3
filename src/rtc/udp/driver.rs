//! The worker's RTC loop, on either driver: it owns the socket, the core's [`Engine`], the
//! hub consumers of the RTMP streams this core's WebRTC players watch and the RTMP publishes
//! of its WHIP publishers (`rtc_to_rtmp`, through the server's [`RtmpSink`]), and is the one place
//! that awaits (the socket, the inbox, the consumers, the engine's next timer) and reads the
//! clock. Each turn hands the engine what arrived (each datagram with its source and the
//! address it was sent to), with the time, then sends what it made.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use compio::driver::DriverType;
use futures_util::Stream;

use super::cmsg::{self, CONTROL_LEN};
use super::socket::{bind, bind_addr, candidate_ips, canonical, RecvBatch, Sender, BATCH};
use crate::config::RtcServer;
use crate::hub::Consumer;
use crate::hub::{Hub, StreamKey};
use crate::rtc::engine::hub::RtcHub;
use crate::rtc::engine::inbox::Inbox;
use crate::rtc::engine::{Engine, Publish, Watch};
use crate::rtc::to_rtmp::sink::{RtmpPublish, RtmpSink};

/// Receive batches per loop turn.
pub const MAX_BATCHES: usize = 8;
/// Frames one turn takes from each watched RTMP stream.
const RTMP_FRAMES_PER_TURN: usize = 256;

/// Runs worker `worker`'s RTC loop, with `config` as the server's `rtc_server` block, `hub`
/// the state the cores share, `rtmp` the stream registry (for `rtmp_to_rtc` players) and
/// `sink` what publishes WHIP streams to RTMP (`rtc_to_rtmp`), until the process exits;
/// logs and returns if the port cannot be bound.
pub async fn run(
    worker: usize,
    config: RtcServer,
    hub: Arc<RtcHub>,
    rtmp: Arc<Hub>,
    sink: Arc<dyn RtmpSink>,
) {
    let bound = bind_addr(&config);
    let socket = match bind(bound) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(worker, "rtc: cannot bind udp {bound}: {e}");
            return;
        }
    };
    // The sizes asked for, where set; a kernel cap was already reported once at start.
    if let Err(e) = crate::runtime::tuning::set_udp_buffers(&*socket, config.sndbuf, config.rcvbuf)
    {
        tracing::warn!(worker, "rtc: udp buffers: {e}");
    }
    if worker == 0 {
        let candidates = candidate_ips(&config);
        let list: Vec<String> = candidates.iter().map(ToString::to_string).collect();
        tracing::info!(
            "rtc listening on udp {bound}, candidates {}",
            list.join(" ")
        );
        if bound.is_ipv4() && candidates.iter().any(IpAddr::is_ipv6) {
            tracing::warn!(
                "rtc: IPv6 candidates go unanswered on the IPv4 listen {bound}; \
                 listen on a port alone (or [::]:PORT) to serve them"
            );
        }
    }
    let mut sender = Sender::new(true, bound);
    let (out, stats) = (socket.clone(), hub.clone());
    let flush = Box::new(move |transmits: &[_]| sender.send_all(&out, transmits, &stats.stats));
    let engine = Engine::new(worker, hub.clone(), flush);
    let mut turn = Turn {
        inbox: engine.inbox().clone(),
        engine,
        rtmp,
        watched: HashMap::new(),
        sink,
        publishes: HashMap::new(),
        hub,
    };
    let uring =
        compio::runtime::Runtime::with_current(|rt| rt.driver_type()) == DriverType::IoUring;
    if uring {
        match socket
            .try_clone()
            .and_then(compio::net::UdpSocket::from_std)
        {
            Ok(multi) => {
                let e = run_multishot(worker, &socket, &multi, &mut turn).await;
                tracing::warn!(
                    worker,
                    "rtc: multishot receive failed ({e}); using recvmmsg"
                );
            }
            Err(e) => tracing::warn!(
                worker,
                "rtc: multishot receive unavailable ({e}); using recvmmsg"
            ),
        }
    }
    run_readiness(worker, &socket, &mut turn).await;
}

/// What a loop turn does after receiving.
struct Turn {
    engine: Engine,
    inbox: Arc<Inbox>,
    rtmp: Arc<Hub>,
    /// One consumer per RTMP stream that players of this core watch (`rtmp_to_rtc`), however
    /// many players: the engine converts each frame once for all of them.
    watched: HashMap<StreamKey, Consumer>,
    sink: Arc<dyn RtmpSink>,
    /// The RTMP publish of each WHIP publisher of this core with `rtc_to_rtmp`, by session.
    publishes: HashMap<u64, Box<dyn RtmpPublish>>,
    hub: Arc<RtcHub>,
}

impl Turn {
    fn finish(&mut self, now: Instant, drops: Option<u64>) {
        if let Some(d) = drops {
            self.inbox.rx_drops.store(d, Ordering::Relaxed);
        }
        self.engine.handle_inbox(now);
        for (key, consumer) in &mut self.watched {
            let engine = &mut self.engine;
            consumer.next_batch(RTMP_FRAMES_PER_TURN, |f| {
                engine.handle_rtmp_frame(key, f, now);
            });
        }
        self.engine.handle_timeout(now);
        self.engine.drive(now);
        while let Some(watch) = self.engine.poll_watch() {
            match watch {
                Watch::Start { key, settings } => {
                    let consumer = Consumer::subscribe(&self.rtmp, &key, &settings);
                    self.watched.insert(key, consumer);
                }
                Watch::Stop { key } => {
                    self.watched.remove(&key);
                }
            }
        }
        self.publish();
        self.engine.flush();
    }

    /// Carries out the engine's RTMP publishes: a refused start or a kicked publish ends its
    /// WHIP session (whose stop, queued by that, is then the only output left of it).
    fn publish(&mut self) {
        while let Some(p) = self.engine.poll_publish() {
            match p {
                Publish::Start(request) => {
                    let (session, key) = (request.session, request.key.clone());
                    match self.sink.start(request) {
                        Ok(publish) => {
                            self.publishes.insert(session, publish);
                        }
                        Err(e) => {
                            tracing::warn!(stream = %key, "rtc_to_rtmp refused: {e}");
                            self.engine.end_publish(session);
                        }
                    }
                }
                Publish::Message { session, message } => {
                    let Some(publish) = self.publishes.get_mut(&session) else {
                        continue;
                    };
                    if !publish.push(message) {
                        self.publishes.remove(&session);
                        self.engine.end_publish(session);
                    }
                }
                Publish::Stop { session } => {
                    self.publishes.remove(&session);
                }
            }
        }
    }

    /// Waits until `socket` (a poll of the receive side, of either loop) is ready, the
    /// engine's next timer passes, the inbox has messages or a watched RTMP stream has frames.
    async fn wait(&mut self, mut socket: impl FnMut(&mut Context<'_>) -> Poll<()>) {
        let mut sleep = self
            .engine
            .poll_timeout()
            .map(|d| Box::pin(compio::time::sleep_until(d)));
        let (inbox, watched) = (&self.inbox, &mut self.watched);
        std::future::poll_fn(|cx| {
            if inbox.poll_notified(cx.waker()) || rtmp_ready(watched, cx) || socket(cx).is_ready() {
                return Poll::Ready(());
            }
            match sleep.as_mut() {
                Some(s) => s.as_mut().poll(cx),
                None => Poll::Pending,
            }
        })
        .await;
    }
}

/// Whether a watched RTMP stream has frames (or news) for this core; registers `cx` to be
/// woken when one does.
fn rtmp_ready(watched: &mut HashMap<StreamKey, Consumer>, cx: &mut Context<'_>) -> bool {
    for consumer in watched.values_mut() {
        let wait = std::pin::pin!(consumer.wait());
        if wait.poll(cx).is_ready() {
            return true;
        }
    }
    false
}

/// Multishots in a row that may end with no datagram before the loop gives up on them.
const MAX_BARREN_MULTISHOTS: u32 = 8;

/// The io_uring loop: datagrams arrive as completions of one multishot recvmsg, into the
/// provided buffer ring. The kernel ends a multishot when the ring runs dry (the datagrams
/// wait in the socket) or on an error, and the loop arms a new one. Returns, for the caller
/// to fall back on recvmmsg, only when arming keeps failing.
async fn run_multishot(
    worker: usize,
    socket: &UdpSocket,
    multi: &compio::net::UdpSocket,
    turn: &mut Turn,
) -> io::Error {
    // The port datagrams arrive at, beside the address IP_PKTINFO says.
    let port = socket.local_addr().map_or(0, |a| a.port());
    let stream = multi.recv_msg_multi(CONTROL_LEN);
    let mut stream = std::pin::pin!(stream);
    let mut held = None;
    let mut barren = 0;
    loop {
        if barren > MAX_BARREN_MULTISHOTS {
            return io::Error::other(format!("{barren} multishots in a row ended empty"));
        }
        let now = Instant::now();
        let mut drops = None;
        let engine = &mut turn.engine;
        let mut got = 0;
        let mut take = |d: compio::driver::op::RecvMsgMultiResult| {
            got += 1;
            let control = cmsg::parse(d.ancillary());
            if control.drops.is_some() {
                drops = control.drops;
            }
            if let Some(addr) = d.addr().and_then(|a| a.as_socket()) {
                let local = control.destination.map(|ip| SocketAddr::new(ip, port));
                engine.handle_datagram(now, canonical(addr), local, d.data());
            }
        };
        if let Some(d) = held.take() {
            take(d);
        }
        // The completions already reaped; a pending poll leaves the stream's waker set.
        std::future::poll_fn(|cx| {
            for _ in 0..MAX_BATCHES * BATCH {
                match next_datagram(worker, stream.as_mut(), cx) {
                    Poll::Ready(Some(d)) => take(d),
                    Poll::Ready(None) => {
                        barren += 1;
                        stream.set(multi.recv_msg_multi(CONTROL_LEN));
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            Poll::Ready(())
        })
        .await;
        if got > 0 {
            barren = 0;
        }
        turn.finish(now, drops);
        turn.wait(|cx| {
            match next_datagram(worker, stream.as_mut(), cx) {
                Poll::Ready(Some(d)) => held = Some(d),
                Poll::Ready(None) => {
                    barren += 1;
                    stream.set(multi.recv_msg_multi(CONTROL_LEN));
                }
                Poll::Pending => return Poll::Pending,
            }
            Poll::Ready(())
        })
        .await;
    }
}

/// Polls the multishot stream once: a datagram, or `Ready(None)` when the multishot ended
/// (the ring ran dry) or failed (logged) and another must be armed.
fn next_datagram<S>(
    worker: usize,
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
) -> Poll<Option<compio::driver::op::RecvMsgMultiResult>>
where
    S: Stream<Item = io::Result<compio::driver::op::RecvMsgMultiResult>>,
{
    stream.poll_next(cx).map(|next| match next? {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::debug!(worker, "rtc multishot recvmsg: {e}");
            None
        }
    })
}

/// The epoll loop: wait for readiness, then recvmmsg in batches.
async fn run_readiness(worker: usize, socket: &Arc<UdpSocket>, turn: &mut Turn) {
    let port = socket.local_addr().map_or(0, |a| a.port());
    let mut recv = RecvBatch::default();
    let mut ready: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    loop {
        let now = Instant::now();
        let mut drops = None;
        for _ in 0..MAX_BATCHES {
            turn.hub.stats.recv_calls.fetch_add(1, Ordering::Relaxed);
            match recv.recv(socket, &mut drops, |r, data| {
                let local = r.destination.map(|ip| SocketAddr::new(ip, port));
                turn.engine.handle_datagram(now, r.source, local, data)
            }) {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(worker, "rtc recvmmsg: {e}");
                    break;
                }
            }
        }
        turn.finish(now, drops);
        // Keeps the readiness operation across turns that end for another reason, so none is
        // lost.
        turn.wait(|cx| {
            let r = ready.get_or_insert_with(|| {
                let op = compio::driver::op::PollOnce::new(
                    socket.clone(),
                    compio::driver::op::Interest::Readable,
                );
                Box::pin(async move {
                    let _ = compio::runtime::submit(op).await;
                })
            });
            let done = r.as_mut().poll(cx);
            if done.is_ready() {
                ready = None;
            }
            done
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc::udp::socket::BUFFER_POOL;
    use crate::runtime::{build_runtime, IoMode};

    /// io_uring's multishot receive delivers datagrams with their source, their destination
    /// (IP_PKTINFO), and the kernel's drop count once the receive queue overflowed. (Without
    /// io_uring the loop uses recvmmsg, which the end-to-end suites cover under epoll.)
    #[test]
    fn multishot_receive_reports_datagrams_and_kernel_drops() {
        let rt = match build_runtime(0, IoMode::Uring, Some(BUFFER_POOL)) {
            Ok(rt) => rt,
            Err(e) => return crate::runtime::no_uring("the multishot receive", e),
        };
        rt.block_on(async {
            let rx = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            crate::runtime::tuning::set_udp_buffers(&rx, None, Some(4096)).ok();
            let to = rx.local_addr().unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Far more than a small receive buffer holds: the kernel drops the rest.
            for i in 0..2000u32 {
                tx.send_to(&i.to_be_bytes(), to).unwrap();
            }
            let multi = compio::net::UdpSocket::from_std(rx).unwrap();
            let stream = multi.recv_msg_multi(CONTROL_LEN);
            let mut stream = std::pin::pin!(stream);
            let first = futures_util::StreamExt::next(&mut stream)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                first.addr().unwrap().as_socket(),
                Some(tx.local_addr().unwrap())
            );
            assert_eq!(first.data(), 0u32.to_be_bytes());
            assert_eq!(
                cmsg::parse(first.ancillary()).destination,
                Some(to.ip()),
                "IP_PKTINFO's destination"
            );
            // The count rides on datagrams queued after a drop: a last one, once there is room.
            tx.send_to(b"last", to).unwrap();
            loop {
                let d = futures_util::StreamExt::next(&mut stream)
                    .await
                    .unwrap()
                    .unwrap();
                if d.data() == b"last" {
                    assert!(cmsg::parse(d.ancillary()).drops.is_some_and(|n| n > 0));
                    break;
                }
            }
        });
    }
}
