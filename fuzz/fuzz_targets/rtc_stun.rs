//! The STUN USERNAME reader that routes a new peer's first datagram, on arbitrary datagrams.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = ringcast::rtc::stun::binding_ufrag(data) {
        assert!(!ufrag.is_empty() && ringcast::rtc::stun::is_stun(data));
    }
});
