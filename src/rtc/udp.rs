//! The RTC I/O layer: each worker binds its own UDP socket on the rtc port in a SO_REUSEPORT
//! group, so the kernel keeps a peer's packets on one core, and drives that core's
//! [`Engine`]. One loop turn receives datagrams in batches (recvmmsg, up to
//! [`MAX_BATCHES`] × [`BATCH`] per turn so a flood cannot starve the inbox and timers),
//! hands them to the engine, drains the inbox, runs the timers, and sends every datagram the
//! turn produced with as few sendmmsg calls as fit ([`BATCH`] per call). The socket is
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
pub const BATCH: usize = 32;
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

/// Sends `transmits` with sendmmsg, [`BATCH`] per call; counts sent datagrams, calls and
/// drops (failed or short sends) in `stats`.
pub fn send_all(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    transmits: &[Transmit],
    stats: &RtcStats,
) {
    let mut i = 0;
    while i < transmits.len() {
        let chunk = &transmits[i..transmits.len().min(i + BATCH)];
        let iovs: Vec<[IoSlice<'_>; 1]> =
            chunk.iter().map(|t| [IoSlice::new(&t.contents)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|t| Some(SockaddrStorage::from(t.destination)))
            .collect();
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        stats.send_calls.fetch_add(1, Ordering::Relaxed);
        match sendmmsg(
            socket.as_raw_fd(),
            headers,
            &iovs,
            &addrs,
            no_cmsgs,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => {
                let mut sent = 0;
                for (msg, t) in results.zip(chunk) {
                    sent += 1;
                    if msg.bytes < t.contents.len() {
                        stats.send_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats.sent.fetch_add(sent, Ordering::Relaxed);
                // Zero sent means the first datagram failed without an error: skip it.
                i += (sent as usize).max(1);
                if sent == 0 {
                    stats.send_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                // The first datagram of the batch failed (full buffer, unreachable peer):
                // it is lost, the rest are tried.
                stats.send_drops.fetch_add(1, Ordering::Relaxed);
                tracing::trace!("rtc sendmmsg to {}: {e}", chunk[0].destination);
                i += 1;
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
    let local = SocketAddr::new(super::candidate_ip(rtc), rtc.listen.port());
    if worker == 0 {
        tracing::info!("rtc listening on udp {}, candidate {local}", rtc.listen);
    }
    let hub = shared.rtc.clone();
    let mut engine = Engine::new(worker, hub.clone(), shared.hub.clone(), local);
    let inbox = engine.inbox().clone();
    let mut recv = RecvBatch::default();
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
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
            send_all(&socket, &mut send_headers, &transmits, &hub.stats);
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
