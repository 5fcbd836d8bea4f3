//! WebRTC signalling on arbitrary requests: the first byte picks the path (WHIP, WHEP, SRS's
//! JSON publish or play), the rest is the body. An offer that parses goes on to str0m's SDP
//! parser and offer/answer, as the server does.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use ringcast::hub::StreamKey;
use ringcast::rtc::engine::session::{Session, SessionParams};
use ringcast::rtc::signal::{self, Request};
use ringcast::rtc::RtcHub;

const PATHS: [&str; 4] = [
    "/rtc/v1/whip/",
    "/rtc/v1/whep/",
    "/rtc/v1/publish/",
    "/rtc/v1/play/",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(selector) % PATHS.len()];
    let Ok(Some(Request::Offer { role, sdp, .. })) =
        signal::parse("POST", path, "app=live&stream=fuzz", body)
    else {
        return;
    };
    let hub = RtcHub::new();
    let key = StreamKey {
        vhost: "v".into(),
        app: "live".into(),
        stream: "fuzz".into(),
    };
    let params = SessionParams {
        role,
        stream: hub.detached_stream(&key),
        candidates: vec!["127.0.0.1:8000".parse().expect("literal address")],
        nack: true,
        bridge: None,
        to_rtmp: None,
        crypto: hub.certs.provider().clone(),
        cert: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let _ = Session::from_offer(1, params, &sdp, Instant::now(), &mut rng);
});
