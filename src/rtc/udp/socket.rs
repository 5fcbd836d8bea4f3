//! The worker's UDP socket: binding in the SO_REUSEPORT group (IPv4, or dual-stack IPv6 where
//! an IPv6 candidate asks for it) with the destination address of every datagram reported
//! (IP_PKTINFO, IPV6_RECVPKTINFO), recvmmsg batches (the epoll loop), and sendmmsg batches of
//! GSO messages, each from the address its peer sent to (both loops). The buffer sizes of
//! io_uring's provided ring are set here too, since this layer writes into them. nix wraps the
//! system calls; what goes into each call is planned by [`super::gso`]. Also the candidate
//! addresses, read from the host's interfaces for `*`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrStorage,
};
use str0m::net::Transmit;

use super::cmsg::CONTROL_LEN;
use super::gso::{gso_runs, plan_call, single_runs, Run};
use crate::config::{RtcCandidate, RtcServer};
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

/// The address the workers bind for `rtc`: its `listen`, except that a wildcard IPv4 listen
/// becomes the IPv6 wildcard (dual-stack, IPv4 peers as mapped addresses) when a candidate
/// is IPv6, since an IPv4 socket cannot answer there. A specific IPv4 `listen` stays as it
/// is, and its IPv6 candidates go unanswered (the README says so).
pub fn bind_addr(rtc: &RtcServer) -> SocketAddr {
    let v6_candidate = rtc
        .candidate
        .iter()
        .any(|c| matches!(c, RtcCandidate::Ip(IpAddr::V6(_))));
    if rtc.listen.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && v6_candidate {
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), rtc.listen.port())
    } else {
        rtc.listen
    }
}

/// Binds a UDP socket on `addr` in a SO_REUSEPORT group, nonblocking, with SO_RXQ_OVFL on and
/// the destination of each datagram reported: IP_PKTINFO on IPv4, IPV6_RECVPKTINFO and (for
/// the IPv4 peers of a dual-stack socket) IP_PKTINFO on IPv6.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    if addr.is_ipv6() {
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
    }
    Ok(socket)
}

/// The addresses clients are told to send to: `rtc`'s candidates, `*` read from the host's
/// interfaces that are up (see [`resolve_candidates`]).
pub fn candidate_ips(rtc: &RtcServer) -> Vec<IpAddr> {
    let host: Vec<IpAddr> =
        if rtc.candidate.is_empty() || rtc.candidate.contains(&RtcCandidate::Host) {
            nix::ifaddrs::getifaddrs()
                .map(|addrs| {
                    addrs
                        // A down interface's address reaches nobody.
                        .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
                        .filter_map(|a| {
                            let a = a.address?;
                            a.as_sockaddr_in()
                                .map(|v4| IpAddr::V4(v4.ip()))
                                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
    resolve_candidates(&rtc.candidate, bind_addr(rtc).ip(), &host)
}

/// The candidates `specs` name for a socket bound to `bound`, `host` being the host's
/// addresses, sans-IO: each IP as written; `*` (or no `candidate` at all) the bound address
/// when it is not a wildcard, else every address of `host` the socket can answer from (not
/// loopback; IPv6 only on an IPv6 socket, and not link-local, which needs a scope an SDP
/// candidate cannot carry). Each address once, in order; loopback when nothing is left.
pub fn resolve_candidates(specs: &[RtcCandidate], bound: IpAddr, host: &[IpAddr]) -> Vec<IpAddr> {
    let all = [RtcCandidate::Host];
    let specs = if specs.is_empty() { &all[..] } else { specs };
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |ip: IpAddr| {
        if !out.contains(&ip) {
            out.push(ip);
        }
    };
    for spec in specs {
        match *spec {
            RtcCandidate::Ip(ip) => push(ip),
            RtcCandidate::Host if !bound.is_unspecified() => push(bound),
            RtcCandidate::Host => {
                for &ip in host {
                    let usable = match ip {
                        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
                        IpAddr::V6(v6) => {
                            bound.is_ipv6()
                                && !v6.is_loopback()
                                && !v6.is_unspecified()
                                && !v6.is_multicast()
                                && (v6.segments()[0] & 0xffc0) != 0xfe80
                                && v6.to_ipv4_mapped().is_none()
                        }
                    };
                    if usable {
                        push(ip);
                    }
                }
            }
        }
    }
    if out.is_empty() {
        out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    out
}

/// `addr` as the engine sees peers: an IPv4-mapped address (a dual-stack socket's IPv4 peer)
/// made plain IPv4, so that it matches the IPv4 candidates and the offers' addresses.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `addr` as a socket bound to an address of family `bound` sends to it: an IPv4 address
/// mapped into IPv6 on an IPv6 socket.
fn for_socket(addr: SocketAddr, bound: &SocketAddr) -> SocketAddr {
    match (addr, bound) {
        (SocketAddr::V4(v4), SocketAddr::V6(_)) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        _ => addr,
    }
}

/// One datagram of a receive batch, as the engine takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub source: SocketAddr,
    /// The address of this host it was sent to (IP_PKTINFO), where the kernel said.
    pub destination: Option<IpAddr>,
    /// Its length.
    len: usize,
}

/// Buffers for recvmmsg.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<Received>,
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
            headers: MultiHeaders::preallocate(
                BATCH,
                Some(nix::cmsg_space!(u32, libc::in_pktinfo, libc::in6_pktinfo)),
            ),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Receives up to [`BATCH`] datagrams without blocking and calls `visit` for each (its
    /// source and destination, canonical, and its bytes); returns how many, `Ok(0)` when none
    /// is waiting. `drops` is set to the socket's receive drop count when the kernel reports
    /// it.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        drops: &mut Option<u64>,
        mut visit: impl FnMut(&Received, &[u8]),
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
                let mut destination = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::RxqOvfl(n) => *drops = Some(u64::from(n)),
                            ControlMessageOwned::Ipv4PacketInfo(info) => {
                                let octets = info.ipi_addr.s_addr.to_ne_bytes();
                                destination = Some(IpAddr::from(octets));
                            }
                            ControlMessageOwned::Ipv6PacketInfo(info) if destination.is_none() => {
                                let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                                destination = Some(IpAddr::V6(ip).to_canonical());
                            }
                            _ => {}
                        }
                    }
                }
                let Some(source) = msg.address.as_ref().and_then(to_socket_addr) else {
                    continue;
                };
                self.got.push(Received {
                    source: canonical(source),
                    destination,
                    len: msg.bytes,
                });
            }
        }
        for (i, r) in self.got.iter().enumerate() {
            visit(r, &self.bufs[i][..r.len.min(MAX_DATAGRAM)]);
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

/// The kinds of control data a sendmmsg call carries, one header set each: nix gives the
/// kernel a header's whole control buffer, which must hold exactly the messages encoded (a
/// zeroed tail is an invalid message to the kernel).
const HEADER_SETS: usize = 6;

/// The send side of a worker's socket: sendmmsg headers, and whether the kernel takes GSO.
pub struct Sender {
    /// Indexed by [`Sender::header_set`]: no GSO and GSO, each with no pktinfo, an IPv4 one or
    /// an IPv6 one.
    headers: [MultiHeaders<SockaddrStorage>; HEADER_SETS],
    gso: bool,
    /// The address the socket is bound to: its family decides how destinations are written.
    bound: SocketAddr,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("gso", &self.gso).finish()
    }
}

/// The source address a transmit asks for: none (unspecified: the kernel picks), or the
/// address of this host its peer sent to.
fn source_of(t: &Transmit) -> Option<IpAddr> {
    let ip = t.source.ip();
    (!ip.is_unspecified()).then_some(ip)
}

impl Sender {
    /// A sender for a socket bound to `bound`; `gso` false sends every datagram as its own
    /// message.
    pub fn new(gso: bool, bound: SocketAddr) -> Self {
        let set = |space: Option<Vec<u8>>| MultiHeaders::preallocate(BATCH, space);
        Self {
            headers: [
                set(None),
                set(Some(nix::cmsg_space!(libc::in_pktinfo))),
                set(Some(nix::cmsg_space!(libc::in6_pktinfo))),
                set(Some(nix::cmsg_space!(u16))),
                set(Some(nix::cmsg_space!(u16, libc::in_pktinfo))),
                set(Some(nix::cmsg_space!(u16, libc::in6_pktinfo))),
            ],
            gso,
            bound,
        }
    }

    /// The header set for a call with or without a segment size, from `source`.
    fn header_set(segment: bool, source: Option<IpAddr>) -> usize {
        let pktinfo = match source {
            None => 0,
            Some(IpAddr::V4(_)) => 1,
            Some(IpAddr::V6(_)) => 2,
        };
        usize::from(segment) * 3 + pktinfo
    }

    /// Sends `transmits`: datagrams to one peer from one source in a row go as one GSO
    /// message where the kernel allows, and messages go [`BATCH`] per sendmmsg call, as long
    /// as they share a segment size and a source (one UDP_SEGMENT and one IP_PKTINFO apply to
    /// a whole call). A transmit's source address, unless unspecified, is the one its
    /// datagrams leave from (IP_PKTINFO's `ipi_spec_dst`): on a wildcard socket the kernel
    /// would pick the route's, which a strict ICE agent refuses as another address. Counts
    /// datagrams sent, calls and drops (failed or short sends) in `stats`.
    pub fn send_all(&mut self, socket: &UdpSocket, transmits: &[Transmit], stats: &RtcStats) {
        let datagrams: Vec<((SocketAddr, Option<IpAddr>), usize)> = transmits
            .iter()
            .map(|t| ((t.destination, source_of(t)), t.contents.len()))
            .collect();
        let runs = if self.gso {
            gso_runs(&datagrams)
        } else {
            single_runs(&datagrams, 0..datagrams.len())
        };
        let mut i = 0;
        while i < runs.len() {
            let same = same_source(&datagrams, &runs[i..]);
            let (taken, segment) = plan_call(&runs[i..i + same], BATCH);
            let j = i + taken;
            match self.send_call(socket, transmits, &runs[i..j], segment, stats) {
                Ok(sent) => i += sent.max(1),
                Err(Errno::EIO | Errno::EINVAL) if segment.is_some() => {
                    // No UDP GSO here (old kernel, or a device without checksum offload):
                    // the same datagrams go again one by one, and GSO stays off if they
                    // pass (if they fail too, the fault was not GSO's: a source address
                    // gone from the host, say).
                    self.gso = false;
                    let single = single_runs(&datagrams, runs[i].start..runs[j - 1].end);
                    let mut passed = false;
                    let mut k = 0;
                    while k < single.len() {
                        let end = single.len().min(k + BATCH);
                        match self.send_call(socket, transmits, &single[k..end], None, stats) {
                            Ok(sent) => {
                                passed = true;
                                k += sent.max(1);
                            }
                            Err(_) => k += 1,
                        }
                    }
                    if passed {
                        tracing::warn!("rtc: UDP GSO refused by the kernel; sending without it");
                    } else {
                        self.gso = true;
                    }
                    i = j;
                }
                Err(_) => i += 1,
            }
        }
    }

    /// One sendmmsg of `runs`, all from one source; returns how many runs went out. The first
    /// run's datagrams are counted as dropped when the call fails.
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
            .map(|r| {
                let to = for_socket(transmits[r.start].destination, &self.bound);
                Some(SockaddrStorage::from(to))
            })
            .collect();
        let source = source_of(&transmits[runs[0].start]);
        let gso_size = segment.and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        // ifindex 0: the route decides the interface; ipi_spec_dst the source address.
        let v4 = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: match source {
                    Some(IpAddr::V4(ip)) => u32::from_ne_bytes(ip.octets()),
                    _ => 0,
                },
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let v6 = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: match source {
                    Some(IpAddr::V6(ip)) => ip.octets(),
                    _ => [0; 16],
                },
            },
            ipi6_ifindex: 0,
        };
        let mut cmsgs: Vec<ControlMessage<'_>> = Vec::with_capacity(2);
        if segment.is_some() {
            cmsgs.push(ControlMessage::UdpGsoSegments(&gso_size));
        }
        match source {
            Some(IpAddr::V4(_)) => cmsgs.push(ControlMessage::Ipv4PacketInfo(&v4)),
            Some(IpAddr::V6(_)) => cmsgs.push(ControlMessage::Ipv6PacketInfo(&v6)),
            None => {}
        }
        let headers = &mut self.headers[Self::header_set(segment.is_some(), source)];
        stats.send_calls.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            match sendmmsg(
                socket.as_raw_fd(),
                headers,
                &iovs,
                &addrs,
                &cmsgs,
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
                    let t = &transmits[r.start];
                    tracing::trace!("rtc sendmmsg to {} from {}: {e}", t.destination, t.source);
                }
                Err(e)
            }
        }
    }
}

/// How many of `runs`, from the front, leave from the first one's source address.
fn same_source(datagrams: &[((SocketAddr, Option<IpAddr>), usize)], runs: &[Run]) -> usize {
    let source = |r: &Run| datagrams[r.start].0 .1;
    runs.first().map_or(0, |first| {
        runs.iter()
            .take_while(|r| source(r) == source(first))
            .count()
    })
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
        let mut sender = Sender::new(true, from);
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
            Sender::new(gso, from).send_all(&tx, &mixed, &stats);
            assert_eq!(rx.recv_from(&mut buf).unwrap().0, 300);
            assert_eq!(rx2.recv_from(&mut buf).unwrap().0, 301);
            assert_eq!(rx.recv_from(&mut buf).unwrap().0, 302);
        }
        assert_eq!(stats.send_drops.load(Ordering::Relaxed), 0);
    }

    /// A wildcard socket learns where each datagram was sent to, and answers from there:
    /// 127.0.0.2 is an address of the host (all of 127/8 is, on Linux) that the kernel would
    /// not pick for a reply to 127.0.0.1, with GSO and without, on IPv4 and dual-stack.
    #[test]
    fn replies_leave_from_the_address_the_peer_sent_to() {
        for wildcard in ["0.0.0.0:0", "[::]:0"] {
            let server = bind(wildcard.parse().unwrap()).unwrap();
            let port = server.local_addr().unwrap().port();
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            peer.send_to(b"ping", ("127.0.0.2", port)).unwrap();
            let mut got = None;
            let mut drops = None;
            for _ in 0..100 {
                RecvBatch::default()
                    .recv(&server, &mut drops, |r, data| {
                        got = Some((r.source, r.destination, data.to_vec()));
                    })
                    .unwrap();
                if got.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let to = peer.local_addr().unwrap();
            let (source, destination, data) = got.expect("the ping");
            assert_eq!(
                (source, destination, &data[..]),
                (to, Some("127.0.0.2".parse().unwrap()), &b"ping"[..]),
                "{wildcard}"
            );
            let stats = RtcStats::default();
            let from = SocketAddr::new(destination.unwrap(), port);
            let reply = |len: usize| Transmit {
                proto: str0m::net::Protocol::Udp,
                source: from,
                destination: to,
                contents: vec![7; len].into(),
            };
            for gso in [true, false] {
                let turn = [reply(1000), reply(1000), reply(10)];
                let mut sender = Sender::new(gso, server.local_addr().unwrap());
                sender.send_all(&server, &turn, &stats);
                let mut buf = [0u8; 2048];
                for len in [1000, 1000, 10] {
                    let (n, at) = peer.recv_from(&mut buf).unwrap();
                    assert_eq!((n, at), (len, from), "{wildcard} gso {gso}");
                }
            }
            assert_eq!(stats.send_drops.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn candidates_are_as_written_or_the_host_s_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let host = [
            ip("127.0.0.1"),
            ip("10.0.0.5"),
            ip("::1"),
            ip("fe80::1"),
            ip("2001:db8::5"),
            ip("192.0.2.10"),
        ];
        let any4 = ip("0.0.0.0");
        let any6 = ip("::");
        assert_eq!(
            resolve_candidates(&[], any4, &host),
            [ip("10.0.0.5"), ip("192.0.2.10")]
        );
        assert_eq!(
            resolve_candidates(&[RtcCandidate::Host], any6, &host),
            [ip("10.0.0.5"), ip("2001:db8::5"), ip("192.0.2.10")],
            "global IPv6 too on a dual-stack socket, link-local not"
        );
        assert_eq!(
            resolve_candidates(&[RtcCandidate::Host], ip("10.0.0.5"), &host),
            [ip("10.0.0.5")],
            "a specific listen is the one address"
        );
        let written = [
            RtcCandidate::Ip(ip("127.0.0.1")),
            RtcCandidate::Host,
            RtcCandidate::Ip(ip("10.0.0.5")),
        ];
        assert_eq!(
            resolve_candidates(&written, any4, &host),
            [ip("127.0.0.1"), ip("10.0.0.5"), ip("192.0.2.10")]
        );
        assert_eq!(resolve_candidates(&[], any4, &[]), [ip("127.0.0.1")]);
        let mut rtc = RtcServer::default();
        assert_eq!(bind_addr(&rtc), "0.0.0.0:8000".parse().unwrap());
        rtc.candidate = vec![RtcCandidate::Ip(ip("::1"))];
        assert_eq!(bind_addr(&rtc), "[::]:8000".parse().unwrap());
        rtc.listen = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(bind_addr(&rtc), rtc.listen);
    }
}
