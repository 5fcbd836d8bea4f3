//! Control messages of received datagrams, sans-IO: the kernel's SO_RXQ_OVFL drop count, the
//! datagram's destination address (IP_PKTINFO, IPV6_PKTINFO) and, for the load tool's
//! players, the segment size of a UDP GSO send received whole (UDP_GRO), read from the
//! `msg_control` bytes a multishot recvmsg writes into its ring buffer (recvmmsg's come
//! parsed by nix). It reads bytes, never a socket, and trusts none of them: a length that
//! does not fit ends the walk.

#![forbid(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv6Addr};

use nix::libc;

/// Control data room for SO_RXQ_OVFL's u32, an `in_pktinfo` and an `in6_pktinfo`
/// (`CMSG_SPACE` of each, 24 + 32 + 40 on 64-bit Linux): an IPv4 datagram on a dual-stack
/// socket carries both pktinfos.
pub const CONTROL_LEN: usize = 96;

/// What the control data of one datagram says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// The socket's receive drop count (SO_RXQ_OVFL), if the kernel put one there.
    pub drops: Option<u64>,
    /// The address the datagram was sent to (the pktinfo's `ipi_addr` or `ipi6_addr`, an
    /// IPv4-mapped one made plain IPv4), for the reply to come from.
    pub destination: Option<IpAddr>,
    /// The size of each datagram but the last, when the kernel passed several from one UDP
    /// GSO send as one (UDP_GRO on the socket).
    pub segment: Option<usize>,
}

/// Reads `control`, the `msg_control` bytes as recvmsg filled them.
pub fn parse(control: &[u8]) -> Control {
    const WORD: usize = size_of::<usize>();
    let header = size_of::<libc::cmsghdr>().next_multiple_of(WORD);
    let field = |b: &[u8], at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut out = Control::default();
    let mut rest = control;
    while rest.len() >= header {
        let Some(len) = rest[..WORD].try_into().ok().map(usize::from_ne_bytes) else {
            break;
        };
        if len < header || len > rest.len() {
            break;
        }
        let (Some(level), Some(kind)) = (
            field(rest, offset_of!(libc::cmsghdr, cmsg_level)),
            field(rest, offset_of!(libc::cmsghdr, cmsg_type)),
        ) else {
            break;
        };
        let data = &rest[header..len];
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                if let Some(n) = data.get(..4) {
                    out.drops = n.try_into().ok().map(u32::from_ne_bytes).map(u64::from);
                }
            }
            (libc::SOL_UDP, libc::UDP_GRO) => {
                out.segment = field(data, 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n > 0);
            }
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
                let at = offset_of!(libc::in_pktinfo, ipi_addr);
                if let Some(a) = data.get(at..at + 4) {
                    let octets: [u8; 4] = a.try_into().expect("a slice of 4 bytes");
                    out.destination = Some(IpAddr::from(octets));
                }
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                // struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
                let at = offset_of!(libc::in6_pktinfo, ipi6_addr);
                // IP_PKTINFO, when both came, says the same of an IPv4 datagram.
                if let (Some(a), None) = (data.get(at..at + 16), out.destination) {
                    let octets: [u8; 16] = a.try_into().expect("a slice of 16 bytes");
                    out.destination = Some(IpAddr::V6(Ipv6Addr::from(octets)).to_canonical());
                }
            }
            _ => {}
        }
        rest = rest.get(len.next_multiple_of(WORD)..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let word = std::mem::size_of::<usize>();
        let mut b = Vec::new();
        b.extend_from_slice(&(16 + data.len()).to_ne_bytes());
        b.extend_from_slice(&level.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(data);
        b.resize(b.len().next_multiple_of(word), 0);
        b
    }

    fn pktinfo(spec_dst: [u8; 4], addr: [u8; 4]) -> Vec<u8> {
        let mut d = 3i32.to_ne_bytes().to_vec();
        d.extend_from_slice(&spec_dst);
        d.extend_from_slice(&addr);
        cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &d)
    }

    #[test]
    fn the_drop_count_is_read_among_control_messages() {
        let word = std::mem::size_of::<usize>();
        use libc::{SOL_SOCKET, SO_RXQ_OVFL, SO_TIMESTAMP};
        let mut control = cmsg(SOL_SOCKET, SO_TIMESTAMP, &[0; 16]);
        control.extend(cmsg(SOL_SOCKET, SO_RXQ_OVFL, &7u32.to_ne_bytes()));
        assert_eq!(parse(&control).drops, Some(7));
        assert_eq!(parse(&control[..16]).drops, None, "cut before the count");
        assert_eq!(parse(&[]), Control::default());
        let mut bogus = control.clone();
        bogus[..word].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(
            parse(&bogus).drops,
            None,
            "a length shorter than a header stops the walk"
        );
        bogus[..word].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(
            parse(&bogus).drops,
            None,
            "a length past the end stops the walk"
        );
    }

    #[test]
    fn the_destination_is_the_pktinfo_s_header_address() {
        let mut control = cmsg(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &2u32.to_ne_bytes());
        // ipi_spec_dst is the local address routing would pick, ipi_addr the one sent to.
        control.extend(pktinfo([10, 0, 0, 1], [192, 0, 2, 10]));
        assert_eq!(
            parse(&control),
            Control {
                drops: Some(2),
                destination: Some("192.0.2.10".parse().unwrap()),
                segment: None,
            }
        );
        let v6 = |addr: Ipv6Addr| {
            let mut d = addr.octets().to_vec();
            d.extend_from_slice(&5u32.to_ne_bytes());
            cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &d)
        };
        let global: Ipv6Addr = "2001:db8::7".parse().unwrap();
        assert_eq!(parse(&v6(global)).destination, Some(IpAddr::V6(global)));
        let mapped = "::ffff:192.0.2.10".parse().unwrap();
        assert_eq!(
            parse(&v6(mapped)).destination,
            Some("192.0.2.10".parse().unwrap()),
            "an IPv4 datagram on a dual-stack socket"
        );
        let both = [pktinfo([0; 4], [192, 0, 2, 11]), v6(mapped)].concat();
        assert_eq!(
            parse(&both).destination,
            Some("192.0.2.11".parse().unwrap())
        );
        let short = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 6]);
        assert_eq!(parse(&short).destination, None, "a pktinfo cut short");
    }
    #[test]
    fn a_gso_send_received_whole_says_its_segment_size() {
        let gro = |n: i32| cmsg(libc::SOL_UDP, libc::UDP_GRO, &n.to_ne_bytes());
        assert_eq!(parse(&gro(1200)).segment, Some(1200));
        assert_eq!(parse(&gro(0)).segment, None, "no size is no segment");
        assert_eq!(parse(&gro(-5)).segment, None);
        let short = cmsg(libc::SOL_UDP, libc::UDP_GRO, &[4, 0]);
        assert_eq!(parse(&short).segment, None, "cut short");
    }
}
