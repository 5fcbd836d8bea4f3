//! The RTC I/O layer: each worker binds its own UDP socket on the rtc port in a SO_REUSEPORT
//! group, so the kernel keeps a peer's packets on one core, and drives that core's
//! [`Engine`]. One loop turn receives datagrams in batches (recvmmsg, up to
//! [`MAX_BATCHES`] × [`BATCH`] per turn so a flood cannot starve the inbox and timers),
//! hands them to the engine, drains the inbox, runs the timers, and sends every datagram the
//! turn produced with as few sendmmsg calls as fit ([`BATCH`] messages per call, a run of
//! datagrams to one peer as one UDP GSO message). The socket is
//! nonblocking and the loop waits on its readiness through compio (a poll operation on both
//! io_uring and epoll), on the engine's next timer and on its inbox.
//!
//! Drop counters: receive drops come from the kernel's SO_RXQ_OVFL count on each batch, send
//! drops from failed or short sends. nix wraps the system calls, so no `unsafe` is needed.

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrStorage,
};
use str0m::net::Transmit;

use super::engine::Engine;
use super::hub::{Inbox, RtcStats};
use crate::server::Shared;

/// Datagrams per recvmmsg or sendmmsg call.
pub const BATCH: usize = 64;
/// Receive batches per loop turn.
pub const MAX_BATCHES: usize = 8;
/// Largest datagram received; WebRTC keeps packets under the path MTU.
const MAX_DATAGRAM: usize = 2048;

/// Binds a UDP socket on `addr` in a SO_REUSEPORT group, nonblocking, with SO_RXQ_OVFL on.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
    Ok(socket)
}

/// Buffers for recvmmsg.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<(SocketAddr, usize)>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: vec![vec![0; MAX_DATAGRAM]; BATCH],
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u32))),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Receives up to [`BATCH`] datagrams without blocking and calls `visit` for each;
    /// returns how many, `Ok(0)` when none is waiting. `drops` is set to the socket's receive
    /// drop count when the kernel reports it.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        drops: &mut Option<u64>,
        mut visit: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        self.got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let results = match recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(r) => r,
                Err(Errno::EAGAIN) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            for msg in results {
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::RxqOvfl(n) = c {
                            *drops = Some(u64::from(n));
                        }
                    }
                }
                let Some(addr) = msg.address.as_ref().and_then(to_socket_addr) else {
                    continue;
                };
                self.got.push((addr, msg.bytes));
            }
        }
        for (i, &(addr, len)) in self.got.iter().enumerate() {
            visit(addr, &self.bufs[i][..len.min(MAX_DATAGRAM)]);
        }
        Ok(self.got.len())
    }
}

fn to_socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Most datagrams the kernel splits one UDP GSO message into (`UDP_MAX_SEGMENTS` is 64 on
/// older kernels).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes in one UDP GSO message (an IP packet's limit, less headers).
pub const MAX_GSO_BYTES: usize = 65_000;

/// One message of a send batch: datagrams `start..end` of the turn, all to one destination;
/// with more than one, every datagram but the last is `segment` bytes and the last no more,
/// so the kernel can split the message (UDP GSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First datagram.
    pub start: usize,
    /// One past the last datagram.
    pub end: usize,
    /// Size of each datagram but the last.
    pub segment: usize,
}

/// Splits a turn's datagrams, `(destination, length)` in order, into GSO runs (sans-IO).
pub fn gso_runs(datagrams: &[(SocketAddr, usize)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, &(dest, len)) in datagrams.iter().enumerate() {
        if let Some(run) = runs.last_mut() {
            let n = run.end - run.start;
            let last_len = datagrams[run.end - 1].1;
            let joins = datagrams[run.start].0 == dest
                // Every datagram before this one must be a full segment...
                && last_len == run.segment
                // ...and this one no longer than a segment.
                && len <= run.segment
                && n < MAX_GSO_SEGMENTS
                && (n + 1) * run.segment <= MAX_GSO_BYTES;
            if joins {
                run.end = i + 1;
                continue;
            }
        }
        runs.push(Run {
            start: i,
            end: i + 1,
            segment: len,
        });
    }
    runs
}

/// The send side of a worker's socket: sendmmsg headers, and whether the kernel takes GSO.
pub struct Sender {
    /// For calls without control messages: nix gives the kernel a header's whole control
    /// buffer, so these have none.
    plain: MultiHeaders<SockaddrStorage>,
    /// For GSO calls: room for exactly one UDP_SEGMENT message.
    gso_headers: MultiHeaders<SockaddrStorage>,
    gso: bool,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("gso", &self.gso).finish()
    }
}

impl Sender {
    /// A sender; `gso` false sends every datagram as its own message.
    pub fn new(gso: bool) -> Self {
        Self {
            plain: MultiHeaders::preallocate(BATCH, None),
            gso_headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16))),
            gso,
        }
    }

    /// Sends `transmits`: datagrams to one peer in a row go as one GSO message where the
    /// kernel allows, and messages go [`BATCH`] per sendmmsg call, as long as they share a
    /// segment size (one UDP_SEGMENT applies to a whole call). Counts datagrams sent, calls
    /// and drops (failed or short sends) in `stats`.
    pub fn send_all(&mut self, socket: &UdpSocket, transmits: &[Transmit], stats: &RtcStats) {
        let datagrams: Vec<(SocketAddr, usize)> = transmits
            .iter()
            .map(|t| (t.destination, t.contents.len()))
            .collect();
        let runs = if self.gso {
            gso_runs(&datagrams)
        } else {
            (0..datagrams.len())
                .map(|i| Run {
                    start: i,
                    end: i + 1,
                    segment: datagrams[i].1,
                })
                .collect()
        };
        let mut i = 0;
        while i < runs.len() {
            // A call's runs: one segment size for the multi-datagram runs, and single
            // datagrams no longer than it.
            let mut segment: Option<usize> = None;
            let mut longest_single = 0;
            let mut j = i;
            while j < runs.len() && j - i < BATCH {
                let r = runs[j];
                let fits = if r.end - r.start > 1 {
                    match segment {
                        None => longest_single <= r.segment,
                        Some(s) => s == r.segment,
                    }
                } else {
                    segment.is_none_or(|s| r.segment <= s)
                };
                if !fits {
                    break;
                }
                if r.end - r.start > 1 {
                    segment = Some(r.segment);
                } else {
                    longest_single = longest_single.max(r.segment);
                }
                j += 1;
            }
            match self.send_call(socket, transmits, &runs[i..j], segment, stats) {
                Ok(sent) => i += sent.max(1),
                Err(Errno::EIO | Errno::EINVAL) if segment.is_some() => {
                    // No UDP GSO here (old kernel, or a device without checksum offload):
                    // the same datagrams go again one by one.
                    tracing::warn!("rtc: UDP GSO refused by the kernel; sending without it");
                    self.gso = false;
                    let single: Vec<Run> = (runs[i].start..runs[j - 1].end)
                        .map(|k| Run {
                            start: k,
                            end: k + 1,
                            segment: datagrams[k].1,
                        })
                        .collect();
                    let mut k = 0;
                    while k < single.len() {
                        let end = single.len().min(k + BATCH);
                        match self.send_call(socket, transmits, &single[k..end], None, stats) {
                            Ok(sent) => k += sent.max(1),
                            Err(_) => k += 1,
                        }
                    }
                    i = j;
                }
                Err(_) => i += 1,
            }
        }
    }

    /// One sendmmsg of `runs`; returns how many runs went out. The first run's datagrams are
    /// counted as dropped when the call fails.
    fn send_call(
        &mut self,
        socket: &UdpSocket,
        transmits: &[Transmit],
        runs: &[Run],
        segment: Option<usize>,
        stats: &RtcStats,
    ) -> Result<usize, Errno> {
        let iovs: Vec<Vec<IoSlice<'_>>> = runs
            .iter()
            .map(|r| {
                transmits[r.start..r.end]
                    .iter()
                    .map(|t| IoSlice::new(&t.contents))
                    .collect()
            })
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = runs
            .iter()
            .map(|r| Some(SockaddrStorage::from(transmits[r.start].destination)))
            .collect();
        let gso_size = segment.and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let gso = [ControlMessage::UdpGsoSegments(&gso_size)];
        let (headers, cmsgs): (_, &[ControlMessage<'_>]) = if segment.is_some() {
            (&mut self.gso_headers, &gso)
        } else {
            (&mut self.plain, &[])
        };
        stats.send_calls.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            match sendmmsg(
                socket.as_raw_fd(),
                headers,
                &iovs,
                &addrs,
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        match result {
            Ok(results) => {
                let mut sent_runs = 0;
                for (msg, r) in results.zip(runs) {
                    sent_runs += 1;
                    let bytes: usize = transmits[r.start..r.end]
                        .iter()
                        .map(|t| t.contents.len())
                        .sum();
                    let datagrams = (r.end - r.start) as u64;
                    if msg.bytes < bytes {
                        stats.send_drops.fetch_add(datagrams, Ordering::Relaxed);
                    } else {
                        stats.sent.fetch_add(datagrams, Ordering::Relaxed);
                    }
                }
                if sent_runs == 0 {
                    let r = runs[0];
                    stats
                        .send_drops
                        .fetch_add((r.end - r.start) as u64, Ordering::Relaxed);
                }
                Ok(sent_runs)
            }
            Err(e) => {
                if !(segment.is_some() && matches!(e, Errno::EIO | Errno::EINVAL)) {
                    let r = runs[0];
                    stats
                        .send_drops
                        .fetch_add((r.end - r.start) as u64, Ordering::Relaxed);
                    tracing::trace!("rtc sendmmsg to {}: {e}", transmits[r.start].destination);
                }
                Err(e)
            }
        }
    }
}

/// Runs worker `worker`'s RTC loop until the process exits; logs and returns if the port
/// cannot be bound.
pub async fn run(worker: usize, shared: Arc<Shared>) {
    let config = shared.config();
    let rtc = &config.rtc_server;
    let socket = match bind(rtc.listen) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(worker, "rtc: cannot bind udp {}: {e}", rtc.listen);
            return;
        }
    };
    // The sizes asked for, where set; a kernel cap was already reported once at start.
    if let Err(e) = crate::runtime::tuning::set_udp_buffers(&*socket, rtc.sndbuf, rtc.rcvbuf) {
        tracing::warn!(worker, "rtc: udp buffers: {e}");
    }
    let local = SocketAddr::new(super::candidate_ip(rtc), rtc.listen.port());
    if worker == 0 {
        tracing::info!("rtc listening on udp {}, candidate {local}", rtc.listen);
    }
    let hub = shared.rtc.clone();
    let mut engine = Engine::new(worker, hub.clone(), shared.hub.clone(), local);
    let inbox = engine.inbox().clone();
    let mut recv = RecvBatch::default();
    let mut sender = Sender::new(true);
    let mut transmits = Vec::new();
    let mut ready: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    loop {
        let now = Instant::now();
        let mut drops = None;
        for _ in 0..MAX_BATCHES {
            match recv.recv(&socket, &mut drops, |addr, data| {
                engine.handle_datagram(now, addr, data)
            }) {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(worker, "rtc recvmmsg: {e}");
                    break;
                }
            }
        }
        if let Some(d) = drops {
            inbox.rx_drops.store(d, Ordering::Relaxed);
        }
        engine.handle_inbox(now);
        engine.handle_bridges(now);
        engine.handle_timeout(now);
        engine.drive(now);
        engine.take_transmits(&mut transmits);
        if !transmits.is_empty() {
            sender.send_all(&socket, &transmits, &hub.stats);
            transmits.clear();
        }
        wait(&socket, &mut ready, &mut engine, &inbox).await;
    }
}

/// Waits until the socket is readable, the engine's next timer passes, the inbox has
/// messages or a bridged RTMP stream has frames. The readiness operation outlives a turn that
/// ends for another reason, so none is lost.
async fn wait(
    socket: &Arc<UdpSocket>,
    ready: &mut Option<Pin<Box<dyn Future<Output = ()>>>>,
    engine: &mut Engine,
    inbox: &Inbox,
) {
    let mut sleep = engine
        .poll_timeout()
        .map(|d| Box::pin(compio::time::sleep_until(d)));
    std::future::poll_fn(|cx| {
        if inbox.poll_notified(cx.waker()) || engine.poll_bridges(cx) {
            return Poll::Ready(());
        }
        let r = ready.get_or_insert_with(|| {
            let op = compio::driver::op::PollOnce::new(
                socket.clone(),
                compio::driver::op::Interest::Readable,
            );
            Box::pin(async move {
                let _ = compio::runtime::submit(op).await;
            })
        });
        if r.as_mut().poll(cx).is_ready() {
            *ready = None;
            return Poll::Ready(());
        }
        if let Some(s) = sleep.as_mut() {
            if s.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn runs_group_full_segments_to_one_peer() {
        let d = [
            (a(1), 1200),
            (a(1), 1200),
            (a(1), 700),
            (a(1), 1200),
            (a(2), 1200),
            (a(2), 1200),
            (a(2), 90),
            (a(1), 100),
        ];
        let runs = gso_runs(&d);
        let spans: Vec<(usize, usize, usize)> =
            runs.iter().map(|r| (r.start, r.end, r.segment)).collect();
        assert_eq!(
            spans,
            [(0, 3, 1200), (3, 4, 1200), (4, 7, 1200), (7, 8, 100)],
            "a short datagram ends its run; a peer change starts one"
        );
        let growing = [(a(1), 100), (a(1), 1200)];
        assert_eq!(
            gso_runs(&growing).len(),
            2,
            "a longer datagram cannot follow"
        );
        let many = vec![(a(1), 1000); 100];
        let runs = gso_runs(&many);
        assert!(runs
            .iter()
            .all(|r| (r.end - r.start) * 1000 <= MAX_GSO_BYTES && r.end - r.start <= 64));
        assert_eq!(runs.iter().map(|r| r.end - r.start).sum::<usize>(), 100);
        assert!(gso_runs(&[]).is_empty());
    }

    #[test]
    fn gso_messages_arrive_as_separate_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = rx.local_addr().unwrap();
        let from = tx.local_addr().unwrap();
        let transmits: Vec<Transmit> = [1200usize, 1200, 1200, 500, 80]
            .iter()
            .enumerate()
            .map(|(i, &len)| Transmit {
                proto: str0m::net::Protocol::Udp,
                source: from,
                destination: to,
                contents: vec![i as u8; len].into(),
            })
            .collect();
        let stats = RtcStats::default();
        let mut sender = Sender::new(true);
        sender.send_all(&tx, &transmits, &stats);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..5 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            got.push((n, buf[0]));
        }
        assert_eq!(got, [(1200, 0), (1200, 1), (1200, 2), (500, 3), (80, 4)]);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 5);
        assert_eq!(stats.send_drops.load(Ordering::Relaxed), 0);
        assert!(stats.send_calls.load(Ordering::Relaxed) <= 2, "{sender:?}");
        // Plain datagrams to two peers, with and without GSO.
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx2.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for gso in [true, false] {
            let mut mixed = Vec::new();
            for (i, dest) in [to, rx2.local_addr().unwrap(), to].into_iter().enumerate() {
                mixed.push(Transmit {
                    proto: str0m::net::Protocol::Udp,
                    source: from,
                    destination: dest,
                    contents: vec![i as u8; 300 + i].into(),
                });
            }
            Sender::new(gso).send_all(&tx, &mixed, &stats);
            assert_eq!(rx.recv_from(&mut buf).unwrap().0, 300);
            assert_eq!(rx2.recv_from(&mut buf).unwrap().0, 301);
            assert_eq!(rx.recv_from(&mut buf).unwrap().0, 302);
        }
        assert_eq!(stats.send_drops.load(Ordering::Relaxed), 0);
    }
}
