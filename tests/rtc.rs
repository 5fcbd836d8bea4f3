//! WebRTC end to end without a browser: `ringcast-bench whep-play` (str0m peers over real UDP,
//! DTLS-SRTP) plays an RTMP publish through `rtmp_to_rtc` and a WHIP publish under SRS's
//! simulated loss (`/rtc/v1/nack/?drop=N`), and SRS's JSON signalling answers an offer over
//! the HTTP API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{free_port, require, Server};

fn rtc_server(vhost_rtc: &str) -> Server {
    let udp = free_port();
    Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        &format!("rtc {{ {vhost_rtc} }}"),
    )
}

fn request(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the API");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("sending");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reading");
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
fn whep_bench_players_receive_an_rtmp_stream() {
    if !require("ffmpeg") {
        return;
    }
    let server = rtc_server("enabled on; rtmp_to_rtc on;");
    let _ffmpeg = common::ffmpeg_publish(&server.url("bench"));
    assert!(server.wait_log("publish", Duration::from_secs(10)));
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(["whep-play", "-c", "3", "-d", "7", "--interval", "2", "-r"])
        .arg(server.api_url("/rtc/v1/whep/?app=live&stream=bench"))
        .output()
        .expect("running ringcast-bench");
    let summary = common::bench_summary(&out, &server.log());
    let field = |name: &str| common::summary_field(&summary, name);
    assert_eq!(field("alive"), 3.0, "{summary}\n{}", server.log());
    assert!(field("kbps_min") > 100.0, "{summary}");
    assert!(field("packets") > 300.0, "{summary}");
    assert!(
        server.wait_log("loss=(r:0,s:0)", Duration::from_secs(12)),
        "{}",
        server.log()
    );
    // The players' RTCP and consent checks came in: on io_uring through the multishot
    // receive, with no receive system call, on epoll through recvmmsg.
    let stats = get_json(server.api_port, "/rtc/v1/stats/");
    assert!(stats["received"].as_u64() > Some(0), "{stats}");
    let recv_calls = stats["recv_calls"].as_u64().expect("recv_calls");
    match std::env::var("RINGCAST_IO").as_deref() {
        Ok("epoll") => assert!(recv_calls > 0, "{stats}"),
        _ => assert_eq!(recv_calls, 0, "{stats}\n{}", server.log()),
    }
}

/// GET `path` from the API, parsed as JSON.
fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = request(port, "GET", path, "", "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn srs_json_signalling_and_refusals() {
    let server = rtc_server("enabled on;");
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(
        str0m::media::MediaKind::Video,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = api.apply().expect("an offer");
    let body = serde_json::json!({
        "api": server.api_url("/rtc/v1/publish/"),
        "streamurl": "webrtc://127.0.0.1/live/json",
        "sdp": offer.to_sdp_string(),
    });
    let (status, reply) = request(
        server.api_port,
        "POST",
        "/rtc/v1/publish/",
        "application/json",
        &body.to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
    assert_eq!(v["code"], 0, "{reply}");
    assert!(
        v["sdp"].as_str().is_some_and(|s| s.contains("a=ice-lite")),
        "{reply}"
    );
    assert!(v["sessionid"].as_str().is_some_and(|s| !s.is_empty()));

    // The same stream again: busy. Garbage: 400. A stream nobody publishes: 404.
    let (status, _) = request(
        server.api_port,
        "POST",
        "/rtc/v1/publish/",
        "application/json",
        &body.to_string(),
    );
    assert_eq!(status, 403);
    let (status, _) = request(
        server.api_port,
        "POST",
        "/rtc/v1/play/",
        "application/json",
        "{nope",
    );
    assert_eq!(status, 400);
    let (status, _) = request(
        server.api_port,
        "POST",
        "/rtc/v1/whep/?app=live&stream=nobody",
        "application/sdp",
        &offer.to_sdp_string(),
    );
    assert_eq!(status, 404);
    // Random datagrams at the RTC port are dropped and counted, and the server lives on.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port: u16 = server
        .log()
        .split("rtc listening on udp 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("the rtc port in the log");
    for i in 0..50u8 {
        let _ = udp.send_to(&[i; 100], ("127.0.0.1", port));
    }
    assert!(
        server.wait_log("rejected=50", Duration::from_secs(12)),
        "{}",
        server.log()
    );
}

#[test]
fn whip_bench_publisher_feeds_whep_bench_players() {
    let server = rtc_server("enabled on;");
    let mut publisher = common::Reaper(
        Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
            .args([
                "whip-publish",
                "-c",
                "1",
                "-d",
                "14",
                "--interval",
                "2",
                "-i",
            ])
            .arg(common::media())
            .arg("-r")
            .arg(server.api_url("/rtc/v1/whip/?app=live&stream=loop"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running ringcast-bench whip-publish"),
    );
    assert!(
        server.wait_log("rtc connected", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // SRS's loss simulation, one in 20 datagrams to players: they lose packets and NACK.
    let (status, reply) = request(server.api_port, "POST", "/rtc/v1/nack/?drop=20", "", "");
    assert_eq!(status, 200, "{reply}");
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(["whep-play", "-c", "3", "-d", "7", "--interval", "2", "-r"])
        .arg(server.api_url("/rtc/v1/whep/?app=live&stream=loop"))
        .output()
        .expect("running ringcast-bench whep-play");
    let summary = common::bench_summary(&out, &server.log());
    assert!(summary.contains(" alive=3 "), "{summary}\n{}", server.log());
    let field = |name: &str| common::summary_field(&summary, name);
    assert!(field("packets") > 300.0, "{summary}");
    assert!(field("nacks") > 0.0, "{summary}");
    let stats = get_json(server.api_port, "/rtc/v1/stats/");
    assert!(stats["simulated_drops"].as_u64() >= Some(10), "{stats}");
    let _ = publisher.0.kill();
    let mut text = String::new();
    if let Some(mut o) = publisher.0.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    assert!(text.contains("alive=1"), "publisher: {text}");
}
