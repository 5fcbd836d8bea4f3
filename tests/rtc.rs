//! WebRTC end to end without a browser: `ringcast-bench whep-play` (str0m peers over real UDP,
//! DTLS-SRTP) plays an RTMP publish through `rtmp_to_rtc` and a WHIP publish under SRS's
//! simulated loss (`/rtc/v1/nack/?drop=N`), `ringcast-bench whip-publish` with `rtc_to_rtmp`
//! plays in ffmpeg over RTMP and HTTP-FLV, and SRS's JSON signalling answers an offer over
//! the HTTP API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::hooks::{assert_same_client, hooks, HookServer};
use common::{free_port, require, wait_until, Server};

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

    // The same stream again: busy. Garbage: 400. A stream nobody publishes is answered: its
    // player waits for a publisher, as SRS's do.
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
    assert_eq!(status, 201);
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

/// A non-loopback IPv4 address of this host for a client to bind: the first the interfaces
/// have, else 192.0.2.10 (TEST-NET-1) added to `lo` for the test, which needs root and `ip`
/// (as on a fresh CI machine), and is removed again when this drops.
struct HostAddr {
    ip: std::net::Ipv4Addr,
    added: bool,
}

impl HostAddr {
    fn find() -> Option<Self> {
        let found = nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback()).then_some(ip)
        });
        if let Some(ip) = found {
            return Some(Self { ip, added: false });
        }
        let ip = std::net::Ipv4Addr::new(192, 0, 2, 10);
        let added = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        added.then_some(Self { ip, added })
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        if self.added {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{}/32", self.ip), "dev", "lo"])
                .status();
        }
    }
}

/// A WebRTC client (str0m, full ICE) on `local` makes an offer (`direction` for its video and
/// audio), posts it to `path`, and runs until ICE and DTLS connect; returns the source
/// address of every datagram the server sent it.
fn connect_from(
    local: std::net::SocketAddr,
    api_port: u16,
    path: &str,
    direction: str0m::media::Direction,
) -> Vec<std::net::SocketAddr> {
    use std::time::Instant;
    use str0m::net::{Protocol, Receive};
    use str0m::{Event, IceConnectionState, Input, Output};
    let socket = std::net::UdpSocket::bind(local).expect("binding the client");
    let local = socket.local_addr().expect("its address");
    let mut rtc = str0m::Rtc::new(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host(local, "udp").expect("a host candidate"));
    let mut api = rtc.sdp_api();
    for kind in [
        str0m::media::MediaKind::Video,
        str0m::media::MediaKind::Audio,
    ] {
        api.add_media(kind, direction, None, None, None);
    }
    let (offer, pending) = api.apply().expect("an offer");
    let (status, answer) = request(
        api_port,
        "POST",
        path,
        "application/sdp",
        &offer.to_sdp_string(),
    );
    assert_eq!(status, 201, "{path}: {answer}");
    let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).expect("an SDP answer");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("the answer accepted");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sources = Vec::new();
    let (mut ice, mut dtls) = (false, false);
    let mut buf = vec![0u8; 2048];
    while !(ice && dtls) && Instant::now() < deadline {
        let timeout = match rtc.poll_output().expect("the client runs") {
            Output::Transmit(t) => {
                socket.send_to(&t.contents, t.destination).expect("sending");
                continue;
            }
            Output::Event(Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            )) => {
                ice = true;
                continue;
            }
            Output::Event(Event::Connected) => {
                dtls = true;
                continue;
            }
            Output::Event(_) => continue,
            Output::Timeout(t) => t,
        };
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait)).expect("timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                sources.push(from);
                let Ok(contents) = buf[..n].try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: local,
                        contents,
                    },
                );
                rtc.handle_input(input).expect("the client takes it");
            }
            Err(_) => rtc
                .handle_input(Input::Timeout(Instant::now()))
                .expect("the client's timer"),
        }
    }
    assert!(
        ice && dtls,
        "{path}: not connected (ice {ice}, dtls {dtls})"
    );
    sources
}

/// A global IPv6 address of this host, if it has one (not loopback, not link-local).
fn host_v6() -> Option<std::net::Ipv6Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let ip = a.address?.as_sockaddr_in6()?.ip();
        let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
        (!ip.is_loopback() && !link_local && ip.to_ipv4_mapped().is_none()).then_some(ip)
    })
}

/// The server's socket is a wildcard, its candidate 127.0.0.1 (and ::1, which makes it a
/// dual-stack IPv6 socket), and the client sends from another address of the host: every
/// reply (STUN, DTLS) comes from the candidate the client sent to, not from the address the
/// kernel's route would pick (the client's own), which a strict ICE agent refuses. For a WHIP
/// publisher and a WHEP player, over IPv4 (IPv4-mapped on the dual-stack socket) and IPv6.
#[test]
fn replies_come_from_the_candidate_the_client_sent_to() {
    let Some(host) = HostAddr::find() else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "no non-loopback address, and none could be added (needs root and ip)"
        );
        eprintln!("SKIPPED: no non-loopback address, and none could be added");
        return;
    };
    let v6 = host_v6();
    if v6.is_none() {
        eprintln!("SKIPPED (IPv6 part): the host has no global IPv6 address");
    }
    for candidates in ["127.0.0.1", "127.0.0.1 ::1"] {
        let udp = free_port();
        let server = Server::start(
            2,
            &format!("rtc_server {{ enabled on; listen {udp}; candidate {candidates}; }}"),
            "rtc { enabled on; rtmp_to_rtc on; }",
        );
        let mut paths = vec![(
            std::net::SocketAddr::from((host.ip, 0)),
            std::net::SocketAddr::from(([127, 0, 0, 1], udp)),
        )];
        if let (Some(v6), true) = (v6, candidates.contains("::1")) {
            paths.push((
                std::net::SocketAddr::from((v6, 0)),
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, udp)),
            ));
        }
        for (i, (local, candidate)) in paths.into_iter().enumerate() {
            for (path, direction) in [
                (
                    "whip/?app=live&stream=from",
                    str0m::media::Direction::SendOnly,
                ),
                (
                    "whep/?app=live&stream=to",
                    str0m::media::Direction::RecvOnly,
                ),
            ] {
                let path = format!("/rtc/v1/{path}{i}");
                let sources = connect_from(local, server.api_port, &path, direction);
                assert!(!sources.is_empty(), "{path}");
                assert!(
                    sources.iter().all(|s| *s == candidate),
                    "{path} from {local}: replies from {sources:?}, not {candidate}\n{}",
                    server.log()
                );
            }
        }
        // The driver asked for: io_uring's multishot receive makes no receive system call.
        let recv_calls = get_json(server.api_port, "/rtc/v1/stats/")["recv_calls"].as_u64();
        match std::env::var("RINGCAST_IO").as_deref() {
            Ok("epoll") => assert!(recv_calls > Some(0)),
            _ => assert_eq!(recv_calls, Some(0), "{}", server.log()),
        }
    }
}

/// `rtc_to_rtmp` with the load tool as the WHIP publisher: its H.264 (Annex B) and Opus (from
/// the file's AAC) come back out as RTMP and HTTP-FLV that ffmpeg decodes for 20 s, H.264 and
/// AAC, with no error. The file is re-encoded without B-frames first: a WebRTC publisher
/// never sends them (browsers' H.264 has none), and the converter gives every frame a
/// composition time of 0. The stream is a publish like an RTMP one: its vhost's HLS
/// segments it. When the publisher stops, the publish ends.
#[test]
fn whip_bench_publish_plays_over_rtmp_and_http_flv() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("no-bframes.flv");
    let encoded = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(common::media())
        .args([
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
        ])
        .args(["-g", "50", "-c:a", "copy", "-y"])
        .arg(&input)
        .status()
        .expect("running ffmpeg");
    assert!(encoded.success());
    let udp = free_port();
    let hook = HookServer::start();
    let allow = hook.url("/allow");
    let server = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        &format!(
            "http_remux {{ enabled on; }}\nrtc {{ enabled on; rtc_to_rtmp on; }}\n\
             hls {{ enabled on; hls_fragment 2; hls_window 6; hls_path {}; }}\n{}",
            dir.path().display(),
            hooks(&format!("on_publish {allow}; on_unpublish {allow};"))
        ),
    );
    let mut publisher = common::Reaper(
        Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
            .args(["whip-publish", "-c", "1", "-d", "45", "-i"])
            .arg(&input)
            .arg("-r")
            .arg(server.api_url("/rtc/v1/whip/?app=live&stream=benchcam&token=t"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("running ringcast-bench whip-publish"),
    );
    assert!(
        server.wait_log("rtc_to_rtmp publish", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // 25 fps for 20 s, less margin.
    common::assert_plays_over_rtmp_and_flv(&server, "benchcam", 20, 400);
    let stream = server.stream("benchcam").expect("the API lists the stream");
    assert_eq!(stream["publish"]["active"], true, "{stream}");
    let client_id = stream["publish"]["cid"].clone();
    let stats = get_json(server.api_port, "/rtc/v1/stats/");
    assert_eq!(stats["rtc_to_rtmp"]["bad_frames"], 0, "{stats}");
    let m3u8 = format!("http://127.0.0.1:{}/live/benchcam.m3u8", server.http_port);
    let (status, playlist) = common::curl(&[], &m3u8);
    assert_eq!(status, 200, "{playlist}");
    let segments = playlist.lines().filter(|l| l.ends_with(".ts")).count();
    assert!(segments >= 3, "{playlist}");
    let _ = publisher.0.kill();
    assert!(
        server.wait_log("rtc_to_rtmp unpublish", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    // The hooks hear of one client: on_unpublish names the client on_publish was asked
    // about (id, address, tcUrl, param), and the API listed it by that id.
    wait_until(Duration::from_secs(5), "on_unpublish", || {
        hook.count("on_unpublish") == 1
    });
    // Once: the session's end sends it, the RTMP publish's end does not again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.count("on_unpublish"), 1);
    let (publish, unpublish) = (
        &hook.bodies("on_publish")[0],
        &hook.bodies("on_unpublish")[0],
    );
    assert_same_client(publish, unpublish);
    assert_eq!(
        publish["param"], "app=live&stream=benchcam&token=t",
        "{publish}"
    );
    assert_eq!(publish["client_id"], client_id, "{publish}");
}
