//! WebRTC end to end with a real browser: Debian's Chromium, headless with a fake camera,
//! publishes with WHIP from a page this test serves, a second Chromium plays with WHEP, and
//! the player's `getStats()` must show decoded frames rising. The pages report their stats
//! to the test's own little HTTP server, so no browser automation protocol is needed. The
//! WHEP player's media crosses a lossy UDP relay in the test that drops 5% of what the server
//! sends, so its frames keep rising only if NACK retransmissions repair the loss.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::browser::{self, chromium, Reports};
use common::{free_port, require, Server};

const PAGE: &str = include_str!("rtc/page.html");

/// Serves `/publish.html` and `/play.html` (the page with its role and signalling URL under
/// `api`, `http://127.0.0.1:PORT` or an `https://` one; the player's with the port of
/// `relay`, if any, to send its media to) and records `/report?...`. Returns the port.
fn page_server(api: &str, stream: &str, relay: Option<u16>, reports: Reports) -> u16 {
    let (api, stream) = (api.to_owned(), stream.to_owned());
    browser::page_server(
        move |path| {
            let (role, kind, relay) = match path {
                "/publish.html" => ("publish", "whip", None),
                "/play.html" => ("play", "whep", relay),
                _ => return None,
            };
            let url = format!("{api}/rtc/v1/{kind}/?app=live&stream={stream}");
            let page = PAGE
                .replace("__ROLE__", role)
                .replace("__URL__", &url)
                .replace("__RELAY__", &relay.map_or(String::new(), |p| p.to_string()));
            Some(("text/html", page.into_bytes()))
        },
        reports,
    )
}

/// A UDP relay in front of the server's RTC port that loses one in `drop_every` datagrams
/// from the server and none toward it: loss on the media a player receives is what NACK must
/// repair. Each browser address gets its own socket toward the server, as behind a NAT, so
/// the server sees one remote per browser candidate and ICE chooses among them as it would
/// without the relay.
struct Relay {
    /// The port browsers send to.
    port: u16,
    /// Datagrams from the server dropped so far.
    dropped: Arc<AtomicU64>,
}

fn lossy_relay(server: SocketAddr, drop_every: u64) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("binding the relay"));
    let port = front.local_addr().expect("relay address").port();
    let dropped = Arc::new(AtomicU64::new(0));
    let relay = Relay {
        port,
        dropped: dropped.clone(),
    };
    let from_server = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        let mut toward_server = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, browser)) = front.recv_from(&mut buf) {
            let back = toward_server.entry(browser).or_insert_with(|| {
                let back = UdpSocket::bind("127.0.0.1:0").expect("binding a relay socket");
                let (replies, front, from_server, dropped) = (
                    back.try_clone().expect("cloning a relay socket"),
                    front.clone(),
                    from_server.clone(),
                    dropped.clone(),
                );
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = replies.recv(&mut buf) {
                        let count = from_server.fetch_add(1, Ordering::Relaxed) + 1;
                        if count.is_multiple_of(drop_every) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = front.send_to(&buf[..n], browser);
                        }
                    }
                });
                back
            });
            let _ = back.send_to(&buf[..n], server);
        }
    });
    relay
}

fn number(kv: &HashMap<String, String>, key: &str) -> u64 {
    browser::number(kv, key) as u64
}

/// Waits until `done` holds for `role`'s latest stats report.
fn wait_for(
    reports: &Reports,
    server: &Server,
    role: &str,
    within: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    browser::wait_for(reports, &|| server.log(), (role, "frames"), within, done)
}

#[test]
fn chromium_publishes_with_whip_and_plays_with_whep() {
    if !require("chromium") {
        return;
    }
    let udp = free_port();
    let server = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        "rtc { enabled on; }",
    );
    // Only the player crosses the relay; the publisher sends straight to the server.
    let relay = lossy_relay(([127, 0, 0, 1], udp).into(), 20);
    let reports: Reports = Arc::default();
    let pages = page_server(
        &server.api_url(""),
        "cam",
        Some(relay.port),
        reports.clone(),
    );
    let profiles = tempfile::tempdir().expect("temp dir");

    let _publisher = chromium(
        &format!("http://127.0.0.1:{pages}/publish.html"),
        &profiles.path().join("publisher"),
    );
    let published = wait_for(
        &reports,
        &server,
        "publish",
        Duration::from_secs(30),
        |kv| kv.get("state").is_some_and(|s| s == "connected") && number(kv, "frames") > 10,
    );
    assert_eq!(
        published.get("codec").map(String::as_str),
        Some("video/H264")
    );

    let _player = chromium(
        &format!("http://127.0.0.1:{pages}/play.html"),
        &profiles.path().join("player"),
    );
    let first = wait_for(&reports, &server, "play", Duration::from_secs(30), |kv| {
        kv.get("state").is_some_and(|s| s == "connected") && number(kv, "frames") > 0
    });
    // One in 20 of the server's datagrams is lost all along: frames keep being decoded only
    // if the player's NACKs bring the lost packets back as retransmissions (RTX).
    let later = wait_for(&reports, &server, "play", Duration::from_secs(20), |kv| {
        number(kv, "frames") >= number(&first, "frames") + 100
            && number(kv, "nacks") > 0
            && number(kv, "rtx") > 0
    });
    assert!(
        number(&later, "audio") > 0,
        "audio packets reach the player: {later:?}"
    );
    assert!(server.log().contains("rtc connected"), "{}", server.log());
    let dropped = relay.dropped.load(Ordering::Relaxed);
    assert!(dropped >= 10, "the relay dropped only {dropped} datagrams");
    eprintln!("through the relay, {dropped} datagrams dropped: {first:?}\nthen {later:?}");
}

#[test]
fn rtmp_publish_plays_in_chromium_over_whep() {
    rtmp_publish_plays_in_chromium(false);
}

/// WHEP's signalling over HTTPS (`http_api { https {} }`), as a browser on another host
/// needs it.
#[test]
fn rtmp_publish_plays_in_chromium_over_whep_on_https() {
    rtmp_publish_plays_in_chromium(true);
}

/// An RTMP publish that Chromium plays with WHEP, its signalling over HTTPS when `https`.
fn rtmp_publish_plays_in_chromium(https: bool) {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    let udp = free_port();
    let global =
        format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}");
    let vhost = "rtc { enabled on; rtmp_to_rtc on; }";
    let server = if https {
        Server::start_https(2, &global, vhost)
    } else {
        Server::start(2, &global, vhost)
    };
    // WebRTC has no B-frames: re-encode without them, as SRS's docs advise for RTMP to
    // WebRTC; the audio stays AAC.
    let _ffmpeg = common::ffmpeg_publish_with(
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-bf",
            "0",
            "-g",
            "30",
            "-c:a",
            "copy",
        ],
        &server.url("rtmpcam"),
    );
    assert!(
        server.wait_log("publish", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let reports: Reports = Arc::default();
    let api = if https {
        format!("https://127.0.0.1:{}", server.https_api_port)
    } else {
        server.api_url("")
    };
    let pages = page_server(&api, "rtmpcam", None, reports.clone());
    let profiles = tempfile::tempdir().expect("temp dir");
    let _player = chromium(
        &format!("http://127.0.0.1:{pages}/play.html"),
        &profiles.path().join("player"),
    );
    let first = wait_for(&reports, &server, "play", Duration::from_secs(30), |kv| {
        kv.get("state").is_some_and(|s| s == "connected") && number(kv, "frames") > 0
    });
    let later = wait_for(&reports, &server, "play", Duration::from_secs(15), |kv| {
        number(kv, "frames") >= number(&first, "frames") + 30
    });
    assert_eq!(later.get("codec").map(String::as_str), Some("video/H264"));
    assert!(
        number(&later, "audio") > 20,
        "Opus from AAC reaches the player: {later:?}"
    );
}
