//! End-to-end HTTP: SRS's API on http_api, HTTP-FLV on http_server and Prometheus metrics,
//! checked with real clients (ffmpeg, curl, Python's prometheus_client, ringcast-bench) against
//! what is happening on the server: publishers, RTMP and HTTP-FLV players.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// GETs an API path; asserts the status and returns the JSON.
fn api(server: &Server, path: &str, status: u16) -> Value {
    let (got, body) = curl(&[], &server.api_url(path));
    assert_eq!(got, status, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Starts ffmpeg publishing `livestream` and waits until the server has it.
fn publish(server: &Server) -> Reaper {
    let publisher = ffmpeg_publish(&server.url("livestream"));
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    publisher
}

/// An HTTP-FLV player that has read the response head and the FLV header.
fn flv_player(server: &Server, stream: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    write!(
        s,
        "GET /live/{stream}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .expect("request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(3).any(|w| w == b"FLV") {
        let n = s.read(&mut buf).expect("reading the response");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: video/x-flv"), "{head}");
    assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
    s
}

/// The API's view of one stream, polled until `ready` says so.
fn stream_until(server: &Server, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let mut found = None;
    let reached = poll_until(Duration::from_secs(15), || {
        last = api(server, "/api/v1/streams", 200);
        found = last["streams"]
            .as_array()
            .and_then(|a| a.first())
            .filter(|s| ready(s))
            .cloned();
        found.is_some()
    });
    assert!(reached, "stream never ready: {last}");
    found.expect("the stream that was ready")
}

/// ffmpeg decodes 10 s of HTTP-FLV while ffmpeg publishes over RTMP.
#[test]
fn ffmpeg_plays_http_flv_published_over_rtmp() {
    if !require("ffmpeg") {
        return;
    }
    let server = Server::start(
        2,
        "",
        "http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }",
    );
    let _publisher = publish(&server);
    let out = ffmpeg_play(&server.flv_url("livestream"), 10);
    assert_ffmpeg_decoded(&out, 200);
}

/// 200 HTTP-FLV players of ringcast-bench all receive the stream at its bitrate, with SEI
/// latency read from the FLV video tags; the API and the metrics count them.
#[test]
fn two_hundred_flv_players_all_receive() {
    if !require("curl") {
        return;
    }
    let server = Server::start(2, "", "http_remux { enabled on; }");
    let bench = env!("CARGO_BIN_EXE_ringcast-bench");
    let _publisher = Reaper(
        Command::new(bench)
            .args([
                "rtmp-publish",
                "-r",
                &server.url("livestream"),
                "-d",
                "30",
                "-i",
            ])
            .arg(media())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the publisher"),
    );
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    let players = Command::new(bench)
        .args(["flv-play", "-c", "200", "-r", &server.flv_url("livestream")])
        .args(["-d", "12", "-s", "1", "--interval", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the players");
    let mut players = Reaper(players);
    let s = stream_until(&server, |s| s["clients"] == 201);
    assert_eq!(s["publish"]["active"], true, "{s}");
    let clients = api(&server, "/api/v1/clients?count=1000", 200);
    let flv = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter(|c| c["type"] == "flv-play")
        .count();
    assert_eq!(flv, 200);
    let (_, metrics) = curl(&[], &server.api_url("/metrics"));
    assert!(
        metrics.contains("ringcast_players{protocol=\"flv\"} 200"),
        "{metrics}"
    );
    let out = stdout_of(&mut players);
    let summary = out
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .unwrap_or_else(|| panic!("no SUMMARY:\n{out}"))
        .to_owned();
    let field = |name: &str| -> i64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {summary}")) as i64
    };
    assert_eq!(field("alive"), 200, "{summary}");
    assert_eq!(field("failed"), 0, "{summary}");
    // The source is 528 kbps; every player gets the stream, none a trickle.
    assert!(field("kbps_min") > 250, "{summary}");
    assert!(
        field("samples") > 0,
        "no SEI latency from the FLV tags: {summary}"
    );
    assert!((0..2000).contains(&field("lat_p50_ms")), "{summary}");
}

/// A child's whole stdout, read until it exits on its own.
fn stdout_of(child: &mut Reaper) -> String {
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    out
}

/// Every endpoint answers with SRS's shapes and with values that match what is happening:
/// one RTMP publisher, one RTMP player, two HTTP-FLV players.
#[test]
fn api_endpoints_report_what_is_happening() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let server = Server::start(2, "", "http_remux { enabled on; }");
    let _publisher = publish(&server);
    let _rtmp = Client::play(server.port, "livestream").expect("RTMP play");
    let _flv1 = flv_player(&server, "livestream");
    let _flv2 = flv_player(&server, "livestream");

    let v = api(&server, "/api/v1/versions", 200);
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["pid"], server.pid().to_string());
    assert!(v["server"].as_str().is_some_and(|s| s.starts_with("vid-")));

    // Rates need a few one-second samples.
    let s = stream_until(&server, |s| {
        s["clients"] == 4 && s["kbps"]["recv_30s"].as_u64().unwrap_or(0) > 100
    });
    assert_eq!(s["name"], "livestream");
    assert_eq!(s["app"], "live");
    assert_eq!(s["vhost"], "__defaultVhost__");
    assert_eq!(s["url"], "/live/livestream");
    assert_eq!(s["publish"]["active"], true);
    assert_eq!(s["video"]["codec"], "H264");
    assert_eq!(s["video"]["profile"], "High");
    assert_eq!(s["video"]["level"], "3");
    assert_eq!(
        (s["video"]["width"].as_u64(), s["video"]["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(s["audio"]["codec"], "AAC");
    assert_eq!(s["audio"]["sample_rate"], 44100);
    assert_eq!(s["audio"]["channel"], 1);
    assert_eq!(s["audio"]["profile"], "LC");
    assert!(s["frames"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["recv_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["send_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(
        s["live_ms"].as_u64().unwrap_or(0) > 1_600_000_000_000,
        "{s}"
    );
    let kbps = s["kbps"]["recv_30s"].as_u64().unwrap_or(0);
    assert!((100..2000).contains(&kbps), "recv_30s {kbps}: {s}");
    let id = s["id"].as_str().expect("stream id").to_owned();

    let one = api(&server, &format!("/api/v1/streams/{id}"), 200);
    assert_eq!(one["stream"]["name"], "livestream");
    let missing = api(&server, "/api/v1/streams/999999", 404);
    assert_eq!(missing["code"], 2048);

    let all = api(&server, "/api/v1/clients", 200);
    let clients = all["clients"].as_array().expect("clients").clone();
    assert_eq!(clients.len(), 4, "{all}");
    let count = |t: &str| clients.iter().filter(|c| c["type"] == t).count();
    assert_eq!(
        (count("fmle-publish"), count("rtmp-play"), count("flv-play")),
        (1, 1, 2)
    );
    let publisher = clients
        .iter()
        .find(|c| c["publish"] == true)
        .expect("publisher");
    assert_eq!(s["publish"]["cid"], publisher["id"]);
    for c in &clients {
        assert_eq!(c["stream"], id.as_str(), "{c}");
        assert_eq!(c["ip"], "127.0.0.1");
        assert_eq!(c["name"], "livestream");
        assert!(c["alive"].as_f64().unwrap_or(-1.0) >= 0.0);
    }
    let page = api(&server, "/api/v1/clients?start=1&count=2", 200);
    let ids = |v: &[Value]| v.iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(page["clients"].as_array().expect("page")),
        ids(&clients[1..3])
    );
    let cid = clients[1]["id"].as_str().expect("id");
    let one = api(&server, &format!("/api/v1/clients/{cid}"), 200);
    assert_eq!(one["client"]["id"], cid);
    assert_eq!(api(&server, "/api/v1/clients/123456789", 404)["code"], 2049);

    let vhosts = api(&server, "/api/v1/vhosts", 200);
    let vh = &vhosts["vhosts"][0];
    assert_eq!(vh["name"], "__defaultVhost__");
    assert_eq!(
        (vh["streams"].as_u64(), vh["clients"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(vh["http_remux"]["enabled"], true);
    assert_eq!(
        api(&server, "/api/v1/vhosts/__defaultVhost__", 200)["vhost"]["name"],
        "__defaultVhost__"
    );

    let sum = api(&server, "/api/v1/summaries", 200);
    let d = &sum["data"];
    assert_eq!(d["ok"], true);
    assert_eq!(d["self"]["pid"], server.pid());
    assert!(d["self"]["mem_kbyte"].as_u64().unwrap_or(0) > 0, "{d}");
    assert!(
        d["system"]["mem_ram_kbyte"].as_u64().unwrap_or(0) > 0,
        "{d}"
    );
    assert!(d["system"]["conn_srs"].as_u64().unwrap_or(0) >= 4, "{d}");
    assert!(d["kbps"]["recv_30s"].as_u64().unwrap_or(0) > 100, "{d}");
    assert!(d["kbps"]["send_30s"].as_u64().unwrap_or(0) > 100, "{d}");
    assert!(d["system"]["load_1m"].is_number());

    let f = api(&server, "/api/v1/features", 200);
    assert_eq!(f["data"]["features"]["api"], true);
    assert_eq!(f["data"]["features"]["http_flv"], true);
    assert!(api(&server, "/api/v1/", 200)["urls"]["streams"].is_string());

    // A browser's preflight before it POSTs SDP cross-origin.
    let out = Command::new("curl")
        .args(["-s", "-i", "-X", "OPTIONS"])
        .arg(server.api_url("/rtc/v1/whip/"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
    assert!(head.contains("Access-Control-Allow-Methods:"), "{head}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Keep-alive: curl reuses one connection for two requests.
    let out = Command::new("curl")
        .args(["-s", "-v", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(server.api_url("/api/v1/versions"))
        .arg(server.api_url("/api/v1/summaries"))
        .output()
        .expect("curl");
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(
        verbose.contains("Re-using existing connection") || verbose.contains("Reusing existing"),
        "{verbose}"
    );
}

/// DELETE /api/v1/clients/{id} disconnects an HTTP-FLV player, an RTMP player and the
/// publisher.
#[test]
fn delete_kicks_players_and_the_publisher() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let server = Server::start(2, "", "http_remux { enabled on; }");
    let _publisher = publish(&server);
    let mut flv = flv_player(&server, "livestream");
    let mut rtmp = Client::play(server.port, "livestream").expect("RTMP play");
    let all = api(&server, "/api/v1/clients", 200);
    let id_of = |t: &str| {
        all["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .find(|c| c["type"] == t)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("no {t} in {all}"))
            .to_owned()
    };

    let (status, body) = curl(
        &["-X", "DELETE"],
        &server.api_url(&format!("/api/v1/clients/{}", id_of("flv-play"))),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["code"],
        0
    );
    // The player's connection ends: read to EOF within the timeout.
    let start = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        match flv.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => assert!(start.elapsed() < Duration::from_secs(5), "still streaming"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}"),
        }
    }

    let (status, _) = curl(
        &["-X", "DELETE"],
        &server.api_url(&format!("/api/v1/clients/{}", id_of("rtmp-play"))),
    );
    assert_eq!(status, 200);
    let r = rtmp.media_for(Duration::from_secs(5), |_| false);
    assert_eq!(r.err().as_deref(), Some("connection closed"));

    let (status, _) = curl(
        &["-X", "DELETE"],
        &server.api_url(&format!("/api/v1/clients/{}", id_of("fmle-publish"))),
    );
    assert_eq!(status, 200);
    assert!(server.wait_log("kicked by the HTTP API", Duration::from_secs(5)));
    let mut v = Value::Null;
    let gone = poll_until(Duration::from_secs(5), || {
        v = api(&server, "/api/v1/clients", 200);
        let publishers = v["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .filter(|c| c["publish"] == true)
            .count();
        let kicked_gone = !v
            .to_string()
            .contains(&format!("\"{}\"", id_of("fmle-publish")));
        kicked_gone || publishers == 0
    });
    assert!(gone, "publisher still listed: {v}");
    let (status, body) = curl(
        &["-X", "DELETE"],
        &server.api_url("/api/v1/clients/123456789"),
    );
    assert_eq!(status, 404, "{body}");
}

/// Parses /metrics with Python's prometheus_client.
fn metrics(server: &Server) -> Value {
    let (status, text) = curl(&[], &server.api_url("/metrics"));
    assert_eq!(status, 200);
    parse_metrics(&text, "the metrics")
}

/// /metrics parses with a real Prometheus parser, and its counters move under load.
#[test]
fn metrics_parse_and_counters_move() {
    if !require("ffmpeg")
        || !require("curl")
        || !require("python3")
        || !require_python("prometheus_client")
    {
        return;
    }
    let server = Server::start(2, "", "http_remux { enabled on; }");
    let _publisher = publish(&server);
    let mut player = flv_player(&server, "livestream");
    // The player reads until the checks are done (at most 30 s), so it never stalls.
    let done = Arc::new(AtomicBool::new(false));
    let reading = done.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let start = Instant::now();
        while !reading.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
            if matches!(player.read(&mut buf), Ok(0) | Err(_)) {
                break;
            }
        }
    });
    let a = metrics(&server);
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    let counters = [
        "ringcast_sent_bytes_total",
        "ringcast_received_bytes_total",
        "ringcast_process_cpu_seconds_total",
    ];
    let worker_cpu = |v: &Value| -> f64 {
        (0..2)
            .map(|w| {
                num(
                    v,
                    &format!("ringcast_worker_cpu_seconds_total{{worker={w}}}"),
                )
            })
            .sum()
    };
    // The second reading is taken once every counter moved (they must, under load); CPU
    // time moves in ticks of 10 ms, a worker's maybe a little after the process's.
    let mut b = Value::Null;
    poll_until(Duration::from_secs(10), || {
        b = metrics(&server);
        counters.iter().all(|c| num(&b, c) > num(&a, c)) && worker_cpu(&b) > 0.0
    });
    assert_eq!(a["type:ringcast_sent_bytes"], "counter");
    assert_eq!(a["type:ringcast_connections"], "gauge");
    for counter in counters {
        assert!(
            num(&b, counter) > num(&a, counter),
            "{counter} did not move: {a} {b}"
        );
    }
    assert_eq!(num(&b, "ringcast_players{protocol=flv}"), 1.0);
    assert_eq!(num(&b, "ringcast_players{protocol=rtmp}"), 0.0);
    assert_eq!(num(&b, "ringcast_streams"), 1.0);
    assert_eq!(num(&b, "ringcast_publishers"), 1.0);
    assert!(num(&b, "ringcast_connections") >= 2.0);
    assert!(num(&b, "ringcast_connections_accepted_total") >= 3.0);
    assert_eq!(num(&b, "ringcast_queue_length_skips_total"), 0.0);
    assert!(worker_cpu(&b) > 0.0, "{b}");
    done.store(true, Ordering::Relaxed);
    let _ = reader.join();
}

/// Sends raw bytes on a fresh connection; returns the status and the body.
fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may answer and close before it read everything: ignore write errors.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Bad requests get a 4xx (or 501) with a JSON error, an unknown stream 404, and the server
/// goes on serving.
#[test]
fn bad_requests_get_4xx_json() {
    let mut server = Server::start(1, "", "http_remux { enabled on; }");
    let (api_port, http_port) = (server.api_port, server.http_port);
    let huge_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(40_000));
    let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    for (port, request, status) in [
        (api_port, &b"GARBAGE\r\n\r\n"[..], 400),
        (api_port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (api_port, b"GET / HTTP/2.0\r\n\r\n", 501),
        (api_port, huge_header.as_bytes(), 431),
        (api_port, long_uri.as_bytes(), 414),
        (
            api_port,
            b"POST /rtc/v1/whip/ HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            413,
        ),
        (
            api_port,
            b"GET /api/v1/nothing HTTP/1.1\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            api_port,
            b"PUT /api/v1/streams HTTP/1.1\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            api_port,
            b"GET /api/v1/clients?count=x HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            api_port,
            b"DELETE /api/v1/clients/abc HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            http_port,
            b"GET /live/nobody.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            http_port,
            b"POST /live/nobody.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
            405,
        ),
        (http_port, b"GET /index.html HTTP/1.0\r\n\r\n", 404),
    ] {
        let (got, body) = raw(port, request);
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(got, status, "{shown}: {body}");
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{shown}: {e}: {body}"));
        assert_eq!(json["code"], i64::from(status), "{shown}: {body}");
    }
    // A client that sends half a request and stalls does not hold the server up.
    let _stalled = TcpStream::connect(("127.0.0.1", api_port)).expect("connect");
    let (status, _) = raw(api_port, b"GET /api/v1/versions HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(server.alive());
}
