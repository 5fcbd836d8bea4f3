//! WebRTC end to end with a real browser: Debian's Chromium, headless with a fake camera,
//! publishes with WHIP from a page this test serves, a second Chromium plays with WHEP, and
//! the player's `getStats()` must show decoded frames rising. The pages report their stats
//! to the test's own little HTTP server, so no browser automation protocol is needed. The
//! WHEP player's media crosses a lossy UDP relay in the test that drops 5% of what the server
//! sends, so its frames keep rising only if NACK retransmissions repair the loss. An RTMP
//! publish plays in Chromium over WHEP with its signalling on plain HTTP and on HTTPS.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, poll_until, require, Reaper, Server};

const PAGE: &str = include_str!("rtc/page.html");

/// What the pages reported, newest last, per role.
type Reports = Arc<Mutex<HashMap<String, Vec<HashMap<String, String>>>>>;

/// Serves `/publish.html` and `/play.html` (the page with its role and signalling URL under
/// `api`, `http://127.0.0.1:PORT` or an `https://` one; the player's with the port of
/// `relay`, if any, to send its media to) and records `/report?...`. Returns the port.
fn page_server(api: &str, stream: &str, relay: Option<u16>, reports: Reports) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the page server");
    let port = listener.local_addr().expect("page server address").port();
    let (api, stream) = (api.to_owned(), stream.to_owned());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Skip the headers; the pages send no bodies.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let (status, body) = match path {
                "/publish.html" | "/play.html" => {
                    let (role, kind, relay) = if path == "/publish.html" {
                        ("publish", "whip", None)
                    } else {
                        ("play", "whep", relay)
                    };
                    let url = format!("{api}/rtc/v1/{kind}/?app=live&stream={stream}");
                    (
                        "200 OK",
                        PAGE.replace("__ROLE__", role)
                            .replace("__URL__", &url)
                            .replace("__RELAY__", &relay.map_or(String::new(), |p| p.to_string())),
                    )
                }
                "/report" => {
                    let kv: HashMap<String, String> = query
                        .split('&')
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_owned(), decode(v)))
                        .collect();
                    let role = kv.get("role").cloned().unwrap_or_default();
                    reports
                        .lock()
                        .expect("reports lock")
                        .entry(role)
                        .or_default()
                        .push(kv);
                    ("200 OK", String::new())
                }
                _ => ("404 Not Found", String::new()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn decode(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(x) = u8::from_str_radix(hex, 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Headless Chromium on `url` with a fake camera and microphone and a fresh profile.
fn chromium(url: &str, profile: &std::path::Path) -> Reaper {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
            // A headless page is not "visible": keep its timers and media running.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--remote-debugging-port=0",
            // The HTTPS case's certificate is the test's own.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    Reaper(child)
}

fn last(reports: &Reports, role: &str) -> Option<HashMap<String, String>> {
    let r = reports.lock().expect("reports lock");
    r.get(role)
        .and_then(|v| v.iter().rev().find(|kv| kv.contains_key("frames")).cloned())
}

fn error(reports: &Reports) -> Option<String> {
    let r = reports.lock().expect("reports lock");
    r.values().flatten().find_map(|kv| kv.get("error").cloned())
}

fn number(kv: &HashMap<String, String>, key: &str) -> u64 {
    kv.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Waits until `done` holds for `role`'s latest stats report.
fn wait_for(
    reports: &Reports,
    server: &Server,
    role: &str,
    within: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let mut reached = None;
    let progressed = poll_until(within, || {
        if let Some(e) = error(reports) {
            panic!("a page failed: {e}\n{}", server.log());
        }
        reached = last(reports, role).filter(|kv| done(kv));
        reached.is_some()
    });
    assert!(
        progressed,
        "{role}: no progress, last report {:?}\nreports: {:?}",
        last(reports, role),
        reports
            .lock()
            .expect("reports lock")
            .get(role)
            .map(|v| v.len())
    );
    reached.expect("the report that was waited for")
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
    let api = server.api_url("");
    let pages = page_server(&api, "cam", Some(relay.port), reports.clone());
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
