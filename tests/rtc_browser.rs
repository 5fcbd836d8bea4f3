//! WebRTC end to end with a real browser: Debian's Chromium, headless with a fake camera,
//! publishes with WHIP from a page this test serves, a second Chromium plays with WHEP, and
//! the player's `getStats()` must show decoded frames rising. The pages report their stats
//! to the test's own little HTTP server, so no browser automation protocol is needed.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, require, Reaper, Server};

const PAGE: &str = include_str!("rtc/page.html");

/// What the pages reported, newest last, per role.
type Reports = Arc<Mutex<HashMap<String, Vec<HashMap<String, String>>>>>;

/// Serves `/publish.html` and `/play.html` (the page with its role and signalling URL) and
/// records `/report?...`. Returns the port.
fn page_server(api_port: u16, stream: &str, reports: Reports) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the page server");
    let port = listener.local_addr().expect("page server address").port();
    let stream = stream.to_owned();
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
                    let (role, kind) = if path == "/publish.html" {
                        ("publish", "whip")
                    } else {
                        ("play", "whep")
                    };
                    let url = format!(
                        "http://127.0.0.1:{api_port}/rtc/v1/{kind}/?app=live&stream={stream}"
                    );
                    (
                        "200 OK",
                        PAGE.replace("__ROLE__", role).replace("__URL__", &url),
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
    let start = Instant::now();
    loop {
        if let Some(e) = error(reports) {
            panic!("a page failed: {e}\n{}", server.log());
        }
        if let Some(kv) = last(reports, role) {
            if done(&kv) {
                return kv;
            }
        }
        assert!(
            start.elapsed() < within,
            "{role}: no progress, last report {:?}\nreports: {:?}",
            last(reports, role),
            reports
                .lock()
                .expect("reports lock")
                .get(role)
                .map(|v| v.len())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let reports: Reports = Arc::default();
    let pages = page_server(server.api_port, "cam", reports.clone());
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
    let later = wait_for(&reports, &server, "play", Duration::from_secs(15), |kv| {
        number(kv, "frames") >= number(&first, "frames") + 30
    });
    assert!(
        number(&later, "audio") > 0,
        "audio packets reach the player: {later:?}"
    );
    assert!(server.log().contains("rtc connected"), "{}", server.log());

    // 5% loss on everything the server sends: NACKs repair it and frames keep coming.
    assert_eq!(api(&server, "POST", "/rtc/v1/nack/?drop=20").0, 200);
    let lossy = wait_for(&reports, &server, "play", Duration::from_secs(20), |kv| {
        number(kv, "frames") >= number(&later, "frames") + 100 && number(kv, "nacks") > 0
    });
    let (_, stats) = api(&server, "GET", "/rtc/v1/stats/");
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert!(stats["simulated_drops"].as_u64() >= Some(10), "{stats}");
    eprintln!("under 5% loss: {lossy:?}\n{stats}");
}

/// A request to the API without a body: `(status, body)`.
fn api(server: &Server, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.api_port)).expect("API");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .expect("sending");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut s, &mut reply).expect("reading");
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn rtmp_publish_plays_in_chromium_over_whep() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    let udp = free_port();
    let server = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        "rtc { enabled on; rtmp_to_rtc on; }",
    );
    // WebRTC has no B-frames: re-encode without them, as SRS's docs advise for RTMP to
    // WebRTC; the audio stays AAC.
    let _ffmpeg = Reaper(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
            ])
            .arg(common::media())
            .args([
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
                "-f",
                "flv",
            ])
            .arg(server.url("rtmpcam"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ffmpeg"),
    );
    assert!(
        server.wait_log("publish", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let reports: Reports = Arc::default();
    let pages = page_server(server.api_port, "rtmpcam", reports.clone());
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
