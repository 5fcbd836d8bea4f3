//! WebRTC end to end with a real browser: Debian's Chromium, headless with a fake camera,
//! publishes with WHIP from a page this test serves, a second Chromium plays with WHEP, and
//! the player's `getStats()` must show decoded frames rising. The pages report their stats
//! to the test's own little HTTP server, so no browser automation protocol is needed. The
//! WHEP player's media crosses a lossy UDP relay in the test that drops 5% of what the server
//! sends, so its frames keep rising only if NACK retransmissions repair the loss. With
//! `rtc_to_rtmp`, ffmpeg plays Chromium's WHIP publish over RTMP and HTTP-FLV, also with the
//! publisher's own media crossing the relay and losing 5% on its way to the server.

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
    page_server_with(api, stream, None, relay, reports)
}

/// [`page_server`] with a relay for the publisher's media too.
fn page_server_with(
    api: &str,
    stream: &str,
    publish_relay: Option<u16>,
    relay: Option<u16>,
    reports: Reports,
) -> u16 {
    let (api, stream) = (api.to_owned(), stream.to_owned());
    browser::page_server(
        move |path| {
            let (role, kind, relay) = match path {
                "/publish.html" => ("publish", "whip", publish_relay),
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

/// A UDP relay in front of the server's RTC port that loses one in `drop_every` datagrams from
/// the server and none toward it: loss on the media a player receives is what NACK must repair
/// ([`lossy_relay_toward`] loses toward the server instead, on a publisher's media). Each
/// browser address gets its own socket toward the server, as behind a NAT, so the server sees
/// one remote per browser candidate and ICE chooses among them as it would without the relay.
struct Relay {
    /// The port browsers send to.
    port: u16,
    /// Datagrams from the server dropped so far.
    dropped: Arc<AtomicU64>,
}

fn lossy_relay(server: SocketAddr, drop_every: u64) -> Relay {
    relay(server, drop_every, false)
}

/// A relay that loses one in `drop_every` datagrams toward the server (a publisher's path)
/// and none from it.
fn lossy_relay_toward(server: SocketAddr, drop_every: u64) -> Relay {
    relay(server, drop_every, true)
}

fn relay(server: SocketAddr, drop_every: u64, lose_toward_server: bool) -> Relay {
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
        let mut sent = 0u64;
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
                        if !lose_toward_server && count.is_multiple_of(drop_every) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = front.send_to(&buf[..n], browser);
                        }
                    }
                });
                back
            });
            sent += 1;
            if lose_toward_server && sent.is_multiple_of(drop_every) {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
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

#[test]
fn chromium_whip_publish_plays_over_rtmp_and_http_flv() {
    whip_publish_plays_over_rtmp(false);
}

/// The publisher's media loses one datagram in 20 on its way to the server: the server's
/// NACKs bring most back (Chromium resends as RTX), and a frame str0m still could not
/// complete makes the converter drop frames until the keyframe its PLI asks for, so
/// ffmpeg sees a short gap rather than a broken picture.
#[test]
fn chromium_whip_publish_through_loss_plays_over_rtmp() {
    whip_publish_plays_over_rtmp(true);
}

/// Chromium publishes with WHIP to a vhost with `rtc_to_rtmp`; ffmpeg plays the stream for
/// 20 s over RTMP and over HTTP-FLV at once, each decoding H.264 and AAC (from Opus) with no
/// error. With `lossy`, the publisher's media crosses the relay that loses 5% toward the
/// server.
fn whip_publish_plays_over_rtmp(lossy: bool) {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    let udp = free_port();
    let server = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        "http_remux { enabled on; }\nrtc { enabled on; rtc_to_rtmp on; }",
    );
    let relay = lossy.then(|| lossy_relay_toward(([127, 0, 0, 1], udp).into(), 20));
    let reports: Reports = Arc::default();
    let pages = page_server_with(
        &server.api_url(""),
        "webcam",
        relay.as_ref().map(|r| r.port),
        None,
        reports.clone(),
    );
    let profiles = tempfile::tempdir().expect("temp dir");
    let _publisher = chromium(
        &format!("http://127.0.0.1:{pages}/publish.html"),
        &profiles.path().join("publisher"),
    );
    wait_for(
        &reports,
        &server,
        "publish",
        Duration::from_secs(30),
        |kv| kv.get("state").is_some_and(|s| s == "connected") && number(kv, "frames") > 10,
    );
    assert!(
        server.wait_log("rtc_to_rtmp publish", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // Chromium's sender reports put both tracks on its capture clock.
    assert!(
        server.wait_log("tracks synced on sender reports", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    common::assert_plays_over_rtmp_and_flv(&server, "webcam", 20, 300);
    // The API lists the stream, published by an rtc-publish client.
    let stream = server.stream("webcam").expect("the API lists the stream");
    assert_eq!(stream["publish"]["active"], true, "{stream}");
    assert_eq!(stream["video"]["codec"], "H264", "{stream}");
    assert_eq!(stream["audio"]["codec"], "AAC", "{stream}");
    let clients = server.api_json("/api/v1/clients");
    let publisher_id = clients["clients"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "rtc-publish"))
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no rtc-publish client: {clients}"))
        .to_owned();
    if let Some(r) = &relay {
        let dropped = r.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 50, "the relay dropped only {dropped} datagrams");
        let last = browser::last(&reports, "publish", "frames").unwrap_or_default();
        assert!(
            number(&last, "nacks") > 0,
            "the server sent NACKs: {last:?}"
        );
        eprintln!("{dropped} datagrams dropped toward the server; publisher {last:?}");
    }
    // The API kicks the publisher: its WebRTC session and its RTMP publish end.
    let (status, _, _) = common::ApiConn::connect(server.api_port).request(
        "DELETE",
        &format!("/api/v1/clients/{publisher_id}"),
        &[],
    );
    assert_eq!(status, 200);
    assert!(
        server.wait_log("rtc_to_rtmp unpublish", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(server.wait_log("rtc session closed", Duration::from_secs(5)));
}
