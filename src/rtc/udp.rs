//! The RTC I/O layer: each worker binds its own UDP socket on the rtc port in a SO_REUSEPORT
//! group, so the kernel keeps a peer's packets on one core, and drives that core's
//! [`Engine`]. One loop turn hands the datagrams received since the last turn to the engine
//! (at most [`MAX_BATCHES`] × [`BATCH`], so a flood cannot starve the inbox and timers),
//! drains the inbox, runs the timers, and sends every datagram the turn produced with as few
//! sendmmsg calls as fit ([`BATCH`] messages per call, a run of datagrams to one peer as one
//! UDP GSO message).
//!
//! Receiving differs by driver. On io_uring one multishot recvmsg stays armed on the socket
//! and the kernel fills buffers of the runtime's provided buffer ring ([`RING_BUFFERS`] of
//! [`RING_BUFFER_LEN`]): a turn takes the completions already reaped, with no system call of
//! its own. On the epoll fallback the socket is nonblocking, the loop waits for readiness and
//! takes datagrams with recvmmsg. Sends are sendmmsg on both: io_uring has no batched send of
//! many messages, and one sendmmsg of 64 GSO messages costs one system call for hundreds of
//! datagrams, where SQEs would cost one kernel operation each.
//!
//! Drop counters: receive drops come from the kernel's SO_RXQ_OVFL count carried with the
//! datagrams, send drops from failed or short sends. nix and compio wrap the system calls,
//! so no `unsafe` is needed.

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use compio::driver::DriverType;
use futures_util::Stream;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrStorage,
};
use str0m::net::Transmit;

use super::engine::Engine;
use super::hub::{Inbox, RtcStats};
use crate::state::Shared;

/// Datagrams per recvmmsg or sendmmsg call.
pub const BATCH: usize = 64;
/// Receive batches per loop turn.
pub const MAX_BATCHES: usize = 8;
/// Largest datagram received; WebRTC keeps packets under the path MTU.
const MAX_DATAGRAM: usize = 2048;
/// Buffers in each worker's provided buffer ring (io_uring): a turn's worth of batches.
pub const RING_BUFFERS: std::num::NonZero<u16> = std::num::NonZero::new(512).unwrap();
/// Bytes of each ring buffer: the kernel writes a multishot recvmsg's header
/// (`io_uring_recvmsg_out`, 16 bytes), the source address (room for a `sockaddr_storage`),
/// the control data and then the datagram into one buffer.
pub const RING_BUFFER_LEN: usize = 16 + 128 + CONTROL_LEN + MAX_DATAGRAM;
/// Control data room for SO_RXQ_OVFL's one u32 (`CMSG_SPACE(4)` on 64-bit Linux).
const CONTROL_LEN: usize = 24;

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

/// The SO_RXQ_OVFL drop count in a datagram's control data, if the kernel put one there
/// (sans-IO: `control` is the `msg_control` bytes as recvmsg filled them).
pub fn rxq_ovfl(control: &[u8]) -> Option<u64> {
    use std::mem::{offset_of, size_of};
    const WORD: usize = size_of::<usize>();
    let header = size_of::<nix::libc::cmsghdr>().next_multiple_of(WORD);
    let field = |b: &[u8], at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut rest = control;
    let mut found = None;
    while rest.len() >= header {
        let len = usize::from_ne_bytes(rest[..WORD].try_into().ok()?);
        if len < header || len > rest.len() {
            break;
        }
        let level = field(rest, offset_of!(nix::libc::cmsghdr, cmsg_level))?;
        let kind = field(rest, offset_of!(nix::libc::cmsghdr, cmsg_type))?;
        if level == nix::libc::SOL_SOCKET && kind == nix::libc::SO_RXQ_OVFL {
            let n = rest.get(header..header + 4)?;
            found = Some(u64::from(u32::from_ne_bytes(n.try_into().ok()?)));
        }
        rest = rest.get(len.next_multiple_of(WORD)..).unwrap_or(&[]);
    }
    found
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
    let engine = Engine::new(worker, hub.clone(), shared.hub.clone(), local);
    let mut turn = Turn {
        inbox: engine.inbox().clone(),
        engine,
        sender: Sender::new(true),
        transmits: Vec::new(),
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
    sender: Sender,
    transmits: Vec<Transmit>,
    hub: Arc<super::hub::RtcHub>,
}

impl Turn {
    fn finish(&mut self, socket: &UdpSocket, now: Instant, drops: Option<u64>) {
        if let Some(d) = drops {
            self.inbox.rx_drops.store(d, Ordering::Relaxed);
        }
        self.engine.handle_inbox(now);
        self.engine.handle_bridges(now);
        self.engine.handle_timeout(now);
        self.engine.drive(now);
        self.engine.take_transmits(&mut self.transmits);
        if !self.transmits.is_empty() {
            self.sender
                .send_all(socket, &self.transmits, &self.hub.stats);
            self.transmits.clear();
        }
    }
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
            if let Some(n) = rxq_ovfl(d.ancillary()) {
                drops = Some(n);
            }
            if let Some(addr) = d.addr().and_then(|a| a.as_socket()) {
                engine.handle_datagram(now, addr, d.data());
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
        turn.finish(socket, now, drops);
        wait_turn(&mut turn.engine, &turn.inbox, |cx| {
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
    let mut recv = RecvBatch::default();
    let mut ready: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    loop {
        let now = Instant::now();
        let mut drops = None;
        for _ in 0..MAX_BATCHES {
            turn.hub.stats.recv_calls.fetch_add(1, Ordering::Relaxed);
            match recv.recv(socket, &mut drops, |addr, data| {
                turn.engine.handle_datagram(now, addr, data)
            }) {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(worker, "rtc recvmmsg: {e}");
                    break;
                }
            }
        }
        turn.finish(socket, now, drops);
        wait(socket, &mut ready, &mut turn.engine, &turn.inbox).await;
    }
}

/// Waits until the socket is readable (the epoll loop), keeping the readiness operation
/// across turns that end for another reason, so none is lost.
async fn wait(
    socket: &Arc<UdpSocket>,
    ready: &mut Option<Pin<Box<dyn Future<Output = ()>>>>,
    engine: &mut Engine,
    inbox: &Inbox,
) {
    wait_turn(engine, inbox, |cx| {
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
            *ready = None;
        }
        done
    })
    .await;
}

/// Waits until `socket` (a poll of the receive side, of either loop) is ready, the engine's
/// next timer passes, the inbox has messages or a bridged RTMP stream has frames.
async fn wait_turn(
    engine: &mut Engine,
    inbox: &Inbox,
    mut socket: impl FnMut(&mut Context<'_>) -> Poll<()>,
) {
    let mut sleep = engine
        .poll_timeout()
        .map(|d| Box::pin(compio::time::sleep_until(d)));
    std::future::poll_fn(|cx| {
        if inbox.poll_notified(cx.waker()) || engine.poll_bridges(cx) || socket(cx).is_ready() {
            return Poll::Ready(());
        }
        match sleep.as_mut() {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
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
    fn rxq_ovfl_reads_the_drop_count_among_control_messages() {
        let word = std::mem::size_of::<usize>();
        let cmsg = |level: i32, kind: i32, data: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(16 + data.len()).to_ne_bytes());
            b.extend_from_slice(&level.to_ne_bytes());
            b.extend_from_slice(&kind.to_ne_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(word), 0);
            b
        };
        use nix::libc::{SOL_SOCKET, SO_RXQ_OVFL, SO_TIMESTAMP};
        let mut control = cmsg(SOL_SOCKET, SO_TIMESTAMP, &[0; 16]);
        control.extend(cmsg(SOL_SOCKET, SO_RXQ_OVFL, &7u32.to_ne_bytes()));
        assert_eq!(rxq_ovfl(&control), Some(7));
        assert_eq!(rxq_ovfl(&control[..16]), None, "cut before the count");
        assert_eq!(rxq_ovfl(&[]), None);
        let mut bogus = control.clone();
        bogus[..word].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(
            rxq_ovfl(&bogus),
            None,
            "a length shorter than a header stops the walk"
        );
        bogus[..word].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(
            rxq_ovfl(&bogus),
            None,
            "a length past the end stops the walk"
        );
    }

    /// io_uring's multishot receive delivers datagrams with their source, and the kernel's
    /// drop count once the receive queue overflowed. (Without io_uring the loop uses
    /// recvmmsg, which the end-to-end suites cover under epoll.)
    #[test]
    fn multishot_receive_reports_datagrams_and_kernel_drops() {
        let Ok(rt) = crate::runtime::build_runtime(0, crate::runtime::IoMode::Uring) else {
            eprintln!("no io_uring here: the multishot receive is not used");
            return;
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
            // The count rides on datagrams queued after a drop: a last one, once there is room.
            tx.send_to(b"last", to).unwrap();
            loop {
                let d = futures_util::StreamExt::next(&mut stream)
                    .await
                    .unwrap()
                    .unwrap();
                if d.data() == b"last" {
                    assert!(rxq_ovfl(d.ancillary()).is_some_and(|n| n > 0));
                    break;
                }
            }
        });
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
