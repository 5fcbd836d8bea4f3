//! The worker's UDP socket: binding in the SO_REUSEPORT group, recvmmsg batches (the epoll
//! loop), and sendmmsg batches of GSO messages (both loops). The buffer sizes of io_uring's
//! provided ring are set here too, since this layer writes into them. nix wraps the system
//! calls; what goes into each call is planned by [`super::gso`]. Also the candidate address,
//! read from the host's interfaces where the config names none.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrStorage,
};
use str0m::net::Transmit;

use super::cmsg::CONTROL_LEN;
use super::gso::{gso_runs, plan_call, single_runs, Run};
use crate::config::RtcServer;
use crate::rtc::engine::hub::RtcStats;
use crate::runtime::BufferPool;

/// Datagrams per recvmmsg or sendmmsg call.
pub const BATCH: usize = 64;
/// Largest datagram received; WebRTC keeps packets under the path MTU.
const MAX_DATAGRAM: usize = 2048;
/// Buffers in each worker's provided buffer ring (io_uring): a turn's worth of batches, room
/// for a burst of datagrams between two loop turns before the kernel must stop the multishot
/// for want of buffers.
pub const RING_BUFFERS: std::num::NonZero<u16> = std::num::NonZero::new(512).unwrap();
/// Bytes of each ring buffer: the kernel writes a multishot recvmsg's header
/// (`io_uring_recvmsg_out`, 16 bytes), the source address (room for a `sockaddr_storage`),
/// the control data and then the datagram into one buffer.
pub const RING_BUFFER_LEN: usize = 16 + 128 + CONTROL_LEN + MAX_DATAGRAM;
/// The provided buffer ring the workers' runtimes are built with (made on first use, so only
/// where WebRTC is on).
pub const BUFFER_POOL: BufferPool = BufferPool {
    buffers: RING_BUFFERS,
    len: RING_BUFFER_LEN,
};

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

/// The address clients are told to send to: the configured candidate, else the listen address
/// if it names one, else the host's first non-loopback IPv4 address, else loopback.
pub fn candidate_ip(rtc: &RtcServer) -> IpAddr {
    if let Some(ip) = rtc.candidate {
        return ip;
    }
    if !rtc.listen.ip().is_unspecified() {
        return rtc.listen.ip();
    }
    nix::ifaddrs::getifaddrs()
        .ok()
        .and_then(|mut addrs| {
            addrs.find_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                (!ip.is_loopback()).then_some(IpAddr::V4(ip))
            })
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
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
            single_runs(&datagrams, 0..datagrams.len())
        };
        let mut i = 0;
        while i < runs.len() {
            let (taken, segment) = plan_call(&runs[i..], BATCH);
            let j = i + taken;
            match self.send_call(socket, transmits, &runs[i..j], segment, stats) {
                Ok(sent) => i += sent.max(1),
                Err(Errno::EIO | Errno::EINVAL) if segment.is_some() => {
                    // No UDP GSO here (old kernel, or a device without checksum offload):
                    // the same datagrams go again one by one.
                    tracing::warn!("rtc: UDP GSO refused by the kernel; sending without it");
                    self.gso = false;
                    let single = single_runs(&datagrams, runs[i].start..runs[j - 1].end);
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
                    let datagrams = r.datagrams() as u64;
                    if msg.bytes < bytes {
                        stats.send_drops.fetch_add(datagrams, Ordering::Relaxed);
                    } else {
                        stats.sent.fetch_add(datagrams, Ordering::Relaxed);
                    }
                }
                if sent_runs == 0 {
                    stats
                        .send_drops
                        .fetch_add(runs[0].datagrams() as u64, Ordering::Relaxed);
                }
                Ok(sent_runs)
            }
            Err(e) => {
                if !(segment.is_some() && matches!(e, Errno::EIO | Errno::EINVAL)) {
                    let r = runs[0];
                    stats
                        .send_drops
                        .fetch_add(r.datagrams() as u64, Ordering::Relaxed);
                    tracing::trace!("rtc sendmmsg to {}: {e}", transmits[r.start].destination);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
