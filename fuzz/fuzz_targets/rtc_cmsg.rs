//! The control data of a received datagram (what a multishot recvmsg writes into its ring
//! buffer beside the datagram: SO_RXQ_OVFL's drop count, IP_PKTINFO, IPV6_PKTINFO and
//! UDP_GRO's segment size), read from arbitrary bytes: it never panics, a destination it
//! reports is canonical (an IPv4-mapped address comes out as IPv4), as the engine compares
//! it with the candidates, and a segment size is never 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let control = ringcast::rtc::udp::cmsg::parse(data);
    if let Some(std::net::IpAddr::V6(v6)) = control.destination {
        assert!(v6.to_ipv4_mapped().is_none(), "{v6} is not canonical");
    }
    assert_ne!(control.segment, Some(0), "a segment has bytes");
});
