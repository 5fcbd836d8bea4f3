//! HTTPS end to end (`http_api { https {} }`, `http_server { https {} }`) with a CA and a
//! server certificate made by the test: curl reaches the API through the CA, ffmpeg plays
//! HTTP-FLV over TLS and decodes it, a client that sends garbage and one that stalls in its
//! handshake are each closed within the handshake deadline while others are served, HLS
//! segments come over TLS as they do over plain HTTP, and a key or certificate that cannot be
//! read stops the start with the file's name.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_ffmpeg_decoded, curl, poll_until, require, test_certs, Server};

/// The server's handshake deadline (5 s) and a margin for a loaded machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(9);

/// `curl --cacert CA https://127.0.0.1:PORT/api/v1/versions`: SRS's JSON, on a verified
/// connection; the plain API still answers beside it.
#[test]
fn curl_reaches_the_api_over_https() {
    if !require("curl") {
        return;
    }
    let server = Server::start_https(1, "", "");
    let ca = server.ca().display().to_string();
    let url = format!(
        "https://127.0.0.1:{}/api/v1/versions",
        server.https_api_port
    );
    let (status, body) = curl(&["--cacert", &ca], &url);
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["code"], 0, "{json}");
    assert!(json["data"]["major"].is_number(), "{json}");
    // Two requests on one kept-alive TLS connection: curl connects once.
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "--cacert", &ca])
        .args(["-w", "\n%{http_code} %{num_connects}\n", &url, &url])
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n200 1\n"), "{text}");
    assert!(
        text.ends_with("\n200 0\n"),
        "the second request reused the connection: {text}"
    );
    // The plain API is unchanged; without the CA, curl refuses the certificate.
    let (status, _) = curl(&[], &server.api_url("/api/v1/versions"));
    assert_eq!(status, 200);
    let (status, _) = curl(&[], &url);
    assert_eq!(
        status, 0,
        "an untrusted certificate must fail the handshake"
    );
}

/// ffmpeg plays HTTP-FLV over HTTPS, verifying the certificate, and decodes it cleanly.
#[test]
fn ffmpeg_plays_http_flv_over_https() {
    if !require("ffmpeg") {
        return;
    }
    let server = Server::start_https(
        2,
        "",
        "http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }",
    );
    let _publisher = common::ffmpeg_publish(&server.url("livestream"));
    server.wait_frames_in("livestream", 50, Duration::from_secs(15));
    let url = format!(
        "https://127.0.0.1:{}/live/livestream.flv",
        server.https_port
    );
    let player = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-tls_verify", "1", "-ca_file"])
        .arg(server.ca())
        .args(["-i", &url, "-t", "5", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ffmpeg");
    // The API lists the player with the URL it asked for (its tcUrl), scheme and all.
    let listed = poll_until(Duration::from_secs(10), || {
        let clients = server.api_json("/api/v1/clients?count=100");
        clients["clients"].as_array().is_some_and(|all| {
            all.iter()
                .any(|c| c["type"] == "flv-play" && c["tcUrl"].as_str() == Some(url.as_str()))
        })
    });
    let out = player.wait_with_output().expect("ffmpeg's output");
    assert!(listed, "no flv-play client at {url}\n{}", server.log());
    assert_ffmpeg_decoded(&out, 100);
    assert!(server.log().contains("flv play"), "{}", server.log());
    assert!(server.log().contains("stop flv play"), "{}", server.log());
}

/// `curl -s -f [args] URL`'s body, as bytes; `None` unless it answered 200.
fn fetch(args: &[&str], url: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-s", "-f", "-m", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    out.status.success().then_some(out.stdout)
}

/// HLS over HTTPS. A TLS connection cannot `sendfile` a segment's sealed memfd as a plain
/// one does: it encrypts the segment's bytes, which are a map of that memfd. Both give the
/// same bytes, and ffmpeg decodes the playlist over TLS.
#[test]
fn hls_over_https_sends_what_plain_http_sends() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_https(
        1,
        "",
        &format!(
            "hls {{ enabled on; hls_fragment 2; hls_window 10; hls_path {}; }}",
            dir.path().display()
        ),
    );
    let _publisher = common::ffmpeg_publish(&server.url("livestream"));
    let ca = server.ca().display().to_string();
    let tls = format!("https://127.0.0.1:{}/live/", server.https_port);
    let plain = format!("http://127.0.0.1:{}/live/", server.http_port);
    let mut segments = Vec::new();
    let listed = poll_until(Duration::from_secs(20), || {
        let playlist = fetch(&["--cacert", &ca], &format!("{tls}livestream.m3u8"));
        segments = String::from_utf8_lossy(&playlist.unwrap_or_default())
            .lines()
            .filter(|l| l.ends_with(".ts"))
            .map(str::to_owned)
            .collect();
        segments.len() >= 2
    });
    assert!(listed, "{segments:?}\n{}", server.log());
    for name in &segments {
        let over_tls = fetch(&["--cacert", &ca], &format!("{tls}{name}")).expect("over TLS");
        let over_tcp = fetch(&[], &format!("{plain}{name}")).expect("over plain HTTP");
        assert_eq!(over_tls.len(), over_tcp.len(), "{name}");
        assert!(over_tls == over_tcp, "{name}: the bytes differ");
        assert_eq!(over_tls[0], 0x47, "{name}: a TS sync byte");
    }
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-tls_verify",
            "1",
            "-ca_file",
            &ca,
        ])
        .args([
            "-i",
            &format!("{tls}livestream.m3u8"),
            "-t",
            "4",
            "-f",
            "null",
            "-",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running ffmpeg");
    assert_ffmpeg_decoded(&out, 50);
}

/// Waits until the server closes `conn`; the time since `start`, or `None` past
/// [`CLOSED_WITHIN`].
fn closed_after(conn: &mut TcpStream, start: Instant) -> Option<Duration> {
    conn.set_read_timeout(Some(CLOSED_WITHIN)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            // The alert, then the close.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed())
            }
            Err(_) => return None,
        }
    }
}

/// A client that sends plaintext to the HTTPS port is closed at once, one that stops part-way
/// through its ClientHello is closed at the handshake deadline, each logged once, and the
/// API and HTTP-FLV over HTTPS answer others meanwhile.
#[test]
fn garbage_and_stalled_handshakes_are_closed_while_others_are_served() {
    if !require("curl") {
        return;
    }
    let server = Server::start_https(1, "", "");
    let port = server.https_api_port;
    let start = Instant::now();
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A handshake record header announcing 512 bytes, and only a few of them.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .expect("partial hello");
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    garbage
        .write_all(b"GET /api/v1/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("plaintext");
    let took = closed_after(&mut garbage, start).expect("the plaintext client is closed");
    assert!(took < Duration::from_secs(2), "closed only after {took:?}");

    // Served while the stalled clients hold their connections.
    let ca = server.ca().display().to_string();
    let url = format!("https://127.0.0.1:{port}/api/v1/versions");
    assert_eq!(curl(&["--cacert", &ca], &url).0, 200);
    let flv = format!("https://127.0.0.1:{}/live/none.flv", server.https_port);
    assert_eq!(curl(&["--cacert", &ca], &flv).0, 404);

    for (what, conn) in [("stalled", &mut stalled), ("silent", &mut silent)] {
        let took =
            closed_after(conn, start).unwrap_or_else(|| panic!("the {what} client is closed"));
        assert!(
            took >= Duration::from_secs(3),
            "{what}: closed after {took:?}, early"
        );
    }
    assert!(
        poll_until(Duration::from_secs(2), || server
            .log()
            .matches("timed out in the TLS handshake")
            .count()
            == 2),
        "{}",
        server.log()
    );
    let log = server.log();
    let refused: Vec<_> = log
        .lines()
        .filter(|l| l.contains("http closing: tls:"))
        .collect();
    assert_eq!(refused.len(), 1, "the garbage is logged once:\n{log}");
    let warned = log
        .lines()
        .any(|l| l.contains(" WARN ") && l.contains("http"));
    assert!(!warned, "no warning for a bad client:\n{log}");
}

/// A key or certificate that is missing or not PEM stops the start, naming the file.
#[test]
fn unreadable_key_or_cert_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = test_certs(dir.path());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem file\n").expect("junk");
    let missing = dir.path().join("missing.crt");
    let cases = [
        (certs.key.clone(), missing.clone(), missing.clone()),
        (junk.clone(), certs.cert.clone(), junk.clone()),
        // The CA's certificate with the server's key: not a pair.
        (certs.key.clone(), certs.ca.clone(), certs.ca.clone()),
    ];
    for (key, cert, named) in cases {
        let conf = dir.path().join("bad.conf");
        std::fs::write(
            &conf,
            format!(
                "listen 127.0.0.1:{};\ndaemon off;\nsrs_log_tank console;\n\
                 http_server {{ enabled on; listen 127.0.0.1:{}; https {{ enabled on; \
                 listen 127.0.0.1:{}; key {}; cert {}; }} }}\n",
                common::free_port(),
                common::free_port(),
                common::free_port(),
                key.display(),
                cert.display()
            ),
        )
        .expect("config");
        let (status, stderr) = common::run_refused(&conf, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("ringcast started with key {key:?} and cert {cert:?}"));
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains(&named.display().to_string()),
            "the error names {}: {stderr}",
            named.display()
        );
    }
}
