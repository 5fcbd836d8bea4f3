//! End-to-end edge (`cluster { mode remote; origin ...; }`) over loopback: a ringcast edge in
//! front of a ringcast origin and of a real nginx-rtmp, with 200 players (ringcast-bench) on
//! the edge while the origin sees one play connection; failover from a dead origin, from an
//! origin that stalls mid-stream, and back after an origin restarts, the edge's players
//! continuing; the upstream closing a grace period after the last player; edge publish, also
//! through an origin's RTMP 302; and origins that answer garbage, a play error or an RTMP 302
//! to themselves, or an edge that is its own origin, ending with a clear log line and closed
//! players instead of a hang. HLS on an edge: ffmpeg plays the edge's playlist of a stream
//! the edge pulls on the first request, from a ringcast origin and from nginx-rtmp, over the
//! one pull its RTMP players share, which closes a grace period after the last request.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use ringcast::rtmp::session::{Event, ServerSession, SessionConfig};

const PLAYERS: usize = 200;

/// The vhost body of an edge of `origins`, with HTTP-FLV on.
fn edge_of(origins: &[u16]) -> String {
    let list: Vec<String> = origins.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!(
        "cluster {{ mode remote; origin {}; }}\nhttp_remux {{ enabled on; }}",
        list.join(" ")
    )
}

/// The vhost body of an edge of `origin` with HLS on (2 s segments, files under `dir`).
fn hls_edge_of(origin: u16, dir: &std::path::Path) -> String {
    format!(
        "{}\nhls {{ enabled on; hls_fragment 2; hls_window 6; hls_path {}; }}",
        edge_of(&[origin]),
        dir.display()
    )
}

/// The edge's playlist of `live/NAME`.
fn m3u8_url(server: &Server, name: &str) -> String {
    format!("http://127.0.0.1:{}/live/{name}.m3u8", server.http_port)
}

/// `ringcast-bench rtmp-play` with `n` players of `url` for `secs` seconds.
fn bench_players(n: usize, url: &str, secs: u32) -> Reaper {
    let bench = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(["rtmp-play", "-c", &n.to_string(), "-r", url])
        .args(["-s", "1", "-d", &secs.to_string(), "--interval", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ringcast-bench");
    Reaper(bench)
}

/// Players of `name` the server's API lists.
fn players_of(server: &Server, name: &str) -> usize {
    let clients = server.api_json("/api/v1/clients?count=10000");
    clients["clients"].as_array().map_or(0, |all| {
        all.iter()
            .filter(|c| c["name"] == name && c["publish"] == false)
            .count()
    })
}

/// A player of the edge that reads for `secs`, in slices, noting when each keyframe came;
/// its result is the keyframes' arrival times, or how it ended early.
fn watch(port: u16, name: &str, secs: u64) -> JoinHandle<Result<Vec<Instant>, String>> {
    let mut player = Client::play(port, name).expect("play on the edge");
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut keyframes = Vec::new();
        while Instant::now() < end {
            let media = player.media_for(Duration::from_millis(200), |_| false)?;
            let now = Instant::now();
            keyframes.extend(media.iter().filter(|m| is_keyframe(m)).map(|_| now));
        }
        Ok(keyframes)
    })
}

/// 200 players on an edge whose first origin is down: the second one serves them, over a
/// single play connection; HTTP-FLV plays the same pull; the upstream closes a grace period
/// after the last player left.
#[test]
fn ringcast_edge_pulls_once_for_200_players_from_the_second_origin() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let origin = Server::start(1, "", "");
    let dead = free_port();
    let edge = Server::start(2, "", &edge_of(&[dead, origin.port]));
    let _publisher = ffmpeg_publish(&origin.url("s"));
    origin.wait_frames_in("s", 20, Duration::from_secs(15));

    let mut first = Client::play(edge.port, "s").expect("play on the edge");
    let media = first
        .media_for(Duration::from_secs(10), |m| m.iter().any(is_keyframe))
        .expect("edge player");
    assert!(
        media.iter().any(is_keyframe),
        "no keyframe from the edge: {} messages",
        media.len()
    );
    let bench = bench_players(PLAYERS, &edge.url("s"), 15);
    wait_until(Duration::from_secs(20), "200 players on the edge", || {
        players_of(&edge, "s") > PLAYERS
    });
    assert_eq!(players_of(&origin, "s"), 1, "the origin sees one player");
    let (status, body) = curl(&["-m", "2"], &edge.flv_url("s"));
    assert!(
        status == 200 && body.starts_with("FLV") && body.len() > 10_000,
        "HTTP-FLV on the edge: {status}, {} bytes",
        body.len()
    );
    assert_eq!(players_of(&origin, "s"), 1, "HTTP-FLV shares the pull");

    let stream = edge.stream("s").expect("the edge lists the stream");
    let origin_addr = format!("127.0.0.1:{}", origin.port);
    assert_eq!(stream["edge"]["origin"], origin_addr.as_str(), "{stream}");
    assert_eq!(stream["edge"]["state"], "playing", "{stream}");
    let (_, text) = curl(&[], &edge.api_url("/metrics"));
    let metrics = parse_metrics(&text, "the edge's /metrics");
    assert!(metrics["ringcast_edge_failovers_total"].as_f64() >= Some(1.0));
    assert!(metrics["ringcast_edge_pulls_total"].as_f64() >= Some(1.0));
    assert!(metrics["ringcast_edge_upstream_bytes_total"].as_f64() > Some(10_000.0));
    // The periodic line comes every 10 s of the edge's life.
    assert!(
        edge.wait_log(
            &format!("origin={origin_addr} in="),
            Duration::from_secs(11)
        ),
        "the periodic log names the origin"
    );

    drop(bench);
    first.kill();
    wait_until(Duration::from_secs(10), "the edge's players gone", || {
        players_of(&edge, "s") == 0
    });
    let left = Instant::now();
    wait_until(Duration::from_secs(10), "the upstream closed", || {
        players_of(&origin, "s") == 0
    });
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "the upstream closed before the grace period"
    );
    assert!(edge.wait_log("done: no player for 3s", Duration::from_secs(2)));
}

/// The origin dies and comes back on its port, its encoder with it: the edge's player sees a
/// gap, then keyframes again, on the same connection.
#[test]
fn edge_players_continue_when_the_origin_restarts() {
    if !require("ffmpeg") {
        return;
    }
    let port = free_port();
    let origin = Server::start_on(port, 1, "", "", &[]);
    let edge = Server::start(1, "", &edge_of(&[port]));
    let publisher = ffmpeg_publish(&origin.url("r"));
    origin.wait_frames_in("r", 20, Duration::from_secs(15));
    let player = watch(edge.port, "r", 12);
    assert!(
        edge.wait_log(
            "edge pull __defaultVhost__/live/r from",
            Duration::from_secs(10)
        ),
        "no pull"
    );
    drop(publisher);
    drop(origin);
    let back = Instant::now();
    // Its connections of before may hold the port a moment.
    wait_until(Duration::from_secs(5), "the origin's port free", || {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    let origin = Server::start_on(port, 1, "", "", &[]);
    let _publisher = ffmpeg_publish(&origin.url("r"));
    let keyframes = player
        .join()
        .expect("player")
        .expect("the player stayed connected");
    assert!(
        keyframes.iter().any(|t| *t > back),
        "no keyframe after the restart ({} before)",
        keyframes.len()
    );
    let stream = edge.stream("r").expect("stream");
    assert!(stream["edge"]["reconnects"].as_u64() >= Some(1), "{stream}");
}

/// The first origin stops answering mid-stream (SIGSTOP): the edge notices the silence and
/// moves to the second, and its player goes on.
#[test]
fn edge_fails_over_when_its_origin_stalls_mid_stream() {
    if !require("ffmpeg") {
        return;
    }
    let a = Server::start(1, "", "");
    let b = Server::start(1, "", "");
    let _pa = ffmpeg_publish(&a.url("t"));
    let _pb = ffmpeg_publish(&b.url("t"));
    a.wait_frames_in("t", 20, Duration::from_secs(15));
    b.wait_frames_in("t", 20, Duration::from_secs(15));
    let edge = Server::start(1, "", &edge_of(&[a.port, b.port]));
    let player = watch(edge.port, "t", 14);
    wait_until(
        Duration::from_secs(10),
        "the pull from the first origin",
        || players_of(&a, "t") == 1,
    );
    let stopped = Instant::now();
    let pid = nix::unistd::Pid::from_raw(a.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let keyframes = player.join().expect("player");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let keyframes = keyframes.expect("the player stayed connected");
    assert!(
        keyframes
            .iter()
            .any(|t| *t > stopped + Duration::from_secs(5)),
        "no keyframe after the failover"
    );
    assert!(edge.log().contains("the origin sent nothing for 5s"));
    let failovers = edge.log().contains(&format!("trying 127.0.0.1:{}", b.port));
    assert!(failovers, "the log names the next origin");
}

/// WHEP players of an edge (`rtmp_to_rtc`) get the stream it pulls, over the same single
/// upstream as its RTMP players.
#[test]
fn whep_players_of_an_edge_get_the_pulled_stream() {
    if !require("ffmpeg") {
        return;
    }
    let origin = Server::start(1, "", "");
    let _publisher = ffmpeg_publish(&origin.url("w"));
    origin.wait_frames_in("w", 20, Duration::from_secs(15));
    let udp = free_port();
    let edge = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        &format!(
            "{}\nrtc {{ enabled on; rtmp_to_rtc on; }}",
            edge_of(&[origin.port])
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(["whep-play", "-c", "2", "-d", "6", "--interval", "3", "-r"])
        .arg(edge.api_url("/rtc/v1/whep/?app=live&stream=w"))
        .output()
        .expect("running ringcast-bench");
    let summary = bench_summary(&out, &edge.log());
    let field = |name: &str| summary_field(&summary, name);
    assert_eq!(field("alive"), 2.0, "{summary}");
    assert!(field("packets") > 100.0, "{summary}");
    assert!(edge.log().contains(&format!(
        "edge pull __defaultVhost__/live/w from 127.0.0.1:{}: playing",
        origin.port
    )));
}

/// nginx-rtmp as the origin: 200 players on the edge, and nginx holds two connections, its
/// publisher and the edge.
#[test]
fn ringcast_edge_of_nginx_rtmp_pulls_once_for_200_players() {
    if !require("ffmpeg") {
        return;
    }
    let nginx_port = free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(_nginx) = nginx_rtmp(dir.path(), nginx_port) else {
        return;
    };
    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{nginx_port}/live/n"));
    wait_until(Duration::from_secs(10), "the publisher on nginx", || {
        established_to(nginx_port) == 1
    });
    let edge = Server::start(2, "", &edge_of(&[nginx_port]));
    let mut first = Client::play(edge.port, "n").expect("play on the edge");
    let media = first
        .media_for(Duration::from_secs(10), |m| m.iter().any(is_keyframe))
        .expect("edge player");
    assert!(media.iter().any(is_keyframe), "no keyframe through nginx");
    let _bench = bench_players(PLAYERS, &edge.url("n"), 5);
    wait_until(Duration::from_secs(20), "200 players on the edge", || {
        players_of(&edge, "n") > PLAYERS
    });
    assert_eq!(
        established_to(nginx_port),
        2,
        "nginx holds its publisher and one edge connection"
    );
}

/// A publisher on the edge reaches the origin; one the origin refuses is refused.
#[test]
fn edge_publish_is_relayed_to_the_origin() {
    let origin = Server::start(1, "", "");
    let edge = Server::start(1, "", &edge_of(&[origin.port]));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Client::publish(edge.port, "p").expect("publish on the edge");
    let feeder = publish_realtime(publisher, media_tags(), stop.clone());
    origin.wait_frames_in("p", 20, Duration::from_secs(10));
    let mut player = Client::play(origin.port, "p").expect("play on the origin");
    let media = player
        .media_for(Duration::from_secs(10), |m| m.iter().any(is_keyframe))
        .expect("origin player");
    assert!(media.iter().any(is_keyframe));
    // The origin has a publisher of `p` already: the edge's second one is refused.
    let refused = Client::publish(edge.port, "p");
    assert!(refused.is_err(), "a second publisher of p");
    let _taken = Client::publish(origin.port, "q").expect("publish q on the origin");
    let refused = Client::publish(edge.port, "q");
    assert!(refused.is_err(), "the origin refused q, so must the edge");
    assert!(edge.wait_log("edge publish refused", Duration::from_secs(5)));
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
}

/// Answers every connection to a free port with `serve`, on threads, for the test's life.
fn fake_origin(serve: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    port
}

/// Runs an RTMP server session on `s`, answering each event with `on`, until the peer leaves.
fn serve_rtmp(mut s: TcpStream, on: fn(&Event, &mut ServerSession, &mut TcpStream)) {
    let mut session = ServerSession::new(SessionConfig::default(), &mut rand::thread_rng());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if session.handle_input(&buf[..n]).is_err() {
            return;
        }
        while let Some(e) = session.poll_event() {
            on(&e, &mut session, &mut s);
            let _ = session.handle_input(&[]);
        }
        while let Some(b) = session.poll_transmit() {
            if s.write_all(&b).is_err() {
                return;
            }
        }
    }
}

/// An origin that completes the handshake, then answers connect with bytes that are no RTMP.
fn garbage(s: TcpStream) {
    serve_rtmp(s, |e, _, s| {
        if matches!(e, Event::Connect { .. }) {
            let _ = s.write_all(&[0xc5; 4096]);
        }
    });
}

/// An origin that refuses every play.
fn play_error(s: TcpStream) {
    serve_rtmp(s, |e, session, _| {
        if matches!(e, Event::Play { .. }) {
            session.reject_play("no such stream here");
        }
    });
}

/// An origin that answers every play with an RTMP 302 to itself (SRS's shape: the play's
/// start, then an error onStatus whose `ex` names the new tcUrl and URL).
fn redirect_to_itself(s: TcpStream) {
    serve_rtmp(s, |e, session, s| {
        if matches!(e, Event::Play { .. }) {
            let own = s.local_addr().map_or(0, |a| a.port());
            let tc_url = format!("rtmp://127.0.0.1:{own}/live");
            session.accept_play();
            session.redirect(&tc_url, &format!("{tc_url}/x"));
        }
    });
}

/// Where [`redirect_publish`] sends publishers: the real origin of the test that uses it.
static PUBLISH_TO: AtomicU16 = AtomicU16::new(0);

/// An origin that answers every publish with an RTMP 302 to port [`PUBLISH_TO`].
fn redirect_publish(s: TcpStream) {
    serve_rtmp(s, |e, session, _| {
        if matches!(e, Event::Publish { .. }) {
            let tc_url = format!(
                "rtmp://127.0.0.1:{}/live",
                PUBLISH_TO.load(Ordering::Relaxed)
            );
            session.redirect(&tc_url, &format!("{tc_url}/p"));
        }
    });
}

/// Origins that answer garbage or a play error, and an edge that is its own origin: the
/// edge's players are closed after a few bounded retries, each case named in the log.
#[test]
fn bad_origins_and_an_edge_of_itself_end_cleanly() {
    let garbage = fake_origin(garbage);
    let refusing = fake_origin(play_error);
    let port = free_port();
    let vhosts = format!(
        "vhost garbage.test {{ cluster {{ mode remote; origin 127.0.0.1:{garbage}; }} }}\n\
         vhost refusing.test {{ cluster {{ mode remote; origin 127.0.0.1:{refusing}; }} }}\n\
         vhost self.test {{ cluster {{ mode remote; origin 127.0.0.1:{port}; }} }}"
    );
    let edge = Server::start_on(port, 2, &vhosts, "", &[]);
    let players: Vec<_> = ["garbage.test", "refusing.test", "self.test"]
        .into_iter()
        .map(|vhost| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut player = Client::play(port, &format!("x?vhost={vhost}"))?;
                let end = player.media_for(Duration::from_secs(20), |_| false);
                Ok::<_, String>((vhost, end, start.elapsed()))
            })
        })
        .collect();
    for p in players {
        let (vhost, end, took) = p.join().expect("player thread").expect("play accepted");
        assert!(end.is_err(), "{vhost}: the player was not closed");
        assert!(
            took < Duration::from_secs(15),
            "{vhost}: closed after {took:?}"
        );
    }
    let log = edge.log();
    for line in [
        "edge pull garbage.test/live/x from",
        "starting to play: chunk stream",
        "starting to play: refused: NetStream.Play.StreamNotFound",
        "edge pull self.test/live/x: the origin is this server itself",
        "edge pull refusing.test/live/x: giving up after 6 rounds",
    ] {
        assert!(log.contains(line), "no `{line}` in the log");
    }
    assert_eq!(log.matches("giving up after").count(), 3, "{log}");
}

/// HLS on an edge of a ringcast origin: ffmpeg's first request for the playlist of a stream
/// the edge does not have starts its pull and waits for the first playlist, and ffmpeg
/// decodes the segments; an RTMP player of the edge shares the pull, so the origin sees one
/// player; once nobody requests, the upstream closes a grace period after the last request.
#[test]
fn hls_players_of_an_edge_start_and_hold_its_pull() {
    if !require("ffmpeg") {
        return;
    }
    let origin = Server::start(1, "", "");
    let _publisher = ffmpeg_publish(&origin.url("h"));
    origin.wait_frames_in("h", 20, Duration::from_secs(15));
    let dir = tempfile::tempdir().expect("tmp");
    let edge = Server::start(1, "", &hls_edge_of(origin.port, dir.path()));
    assert!(edge.stream("h").is_none(), "nothing pulled before a player");
    let url = m3u8_url(&edge, "h");
    let hls = std::thread::spawn(move || ffmpeg_play(&url, 8));
    wait_until(Duration::from_secs(15), "the HLS pull", || {
        players_of(&origin, "h") == 1
    });
    let mut rtmp = Client::play(edge.port, "h").expect("play on the edge");
    let media = rtmp
        .media_for(Duration::from_secs(10), |m| m.iter().any(is_keyframe))
        .expect("the edge's RTMP player");
    assert!(media.iter().any(is_keyframe), "no keyframe over RTMP");
    let out = hls.join().expect("ffmpeg thread");
    assert_ffmpeg_decoded(&out, 100);
    assert_eq!(players_of(&origin, "h"), 1, "HLS and RTMP share one pull");
    assert!(edge
        .log()
        .contains("hls __defaultVhost__/live/h: segmenting"));
    rtmp.kill();
    let left = Instant::now();
    wait_until(Duration::from_secs(20), "the upstream closed", || {
        players_of(&origin, "h") == 0
    });
    assert!(
        left.elapsed() >= Duration::from_secs(3),
        "the upstream closed before the grace period"
    );
    assert!(edge.wait_log(
        "edge pull __defaultVhost__/live/h from",
        Duration::from_secs(2)
    ));
}

/// HLS on an edge of nginx-rtmp: the first playlist request waits for the pull, ffmpeg
/// decodes the edge's playlist, and nginx holds two connections, its publisher and the
/// edge's pull. nginx starts a player with audio and its video at the next keyframe, so the
/// first segment has no video in its first second and ffmpeg, probing it, would map audio
/// alone: ffmpeg starts at the newest segment.
#[test]
fn hls_players_of_an_edge_of_nginx_rtmp_get_the_stream() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let nginx_port = free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(_nginx) = nginx_rtmp(dir.path(), nginx_port) else {
        return;
    };
    let _publisher = ffmpeg_publish(&format!("rtmp://127.0.0.1:{nginx_port}/live/nh"));
    wait_until(Duration::from_secs(10), "the publisher on nginx", || {
        established_to(nginx_port) == 1
    });
    let edge = Server::start(1, "", &hls_edge_of(nginx_port, &dir.path().join("hls")));
    let url = m3u8_url(&edge, "nh");
    let (status, body) = curl(&[], &url);
    assert_eq!(status, 200, "the first request: {body}");
    wait_until(Duration::from_secs(10), "a second segment", || {
        curl(&[], &url).1.contains("nh-1.ts")
    });
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-live_start_index",
            "-1",
            "-i",
            &url,
        ])
        .args(["-t", "6", "-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    assert_ffmpeg_decoded(&out, 75);
    assert_eq!(
        established_to(nginx_port),
        2,
        "nginx holds its publisher and one edge connection"
    );
}

/// An origin whose RTMP 302 names itself: the edge does not follow it round, says so, and
/// closes its player after its rounds, as for an origin that refuses.
#[test]
fn an_rtmp_302_loop_is_refused_and_the_player_closed() {
    let looping = fake_origin(redirect_to_itself);
    let edge = Server::start(1, "", &edge_of(&[looping]));
    let started = Instant::now();
    let mut player = Client::play(edge.port, "x").expect("play on the edge");
    let end = player.media_for(Duration::from_secs(20), |_| false);
    assert!(end.is_err(), "the player was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
    let line =
        format!("RTMP 302 loop: 127.0.0.1:{looping} again after 127.0.0.1:{looping}, not followed");
    assert!(edge.log().contains(&line), "{}", edge.log());
    assert!(edge.log().contains("giving up after 6 rounds"));
}

/// An edge publish whose origin redirects it: the edge follows the RTMP 302 to the origin
/// named, which gets the stream.
#[test]
fn an_edge_publish_follows_the_rtmp_302_of_its_origin() {
    let origin = Server::start(1, "", "");
    PUBLISH_TO.store(origin.port, Ordering::Relaxed);
    let redirecting = fake_origin(redirect_publish);
    let edge = Server::start(1, "", &edge_of(&[redirecting]));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Client::publish(edge.port, "p").expect("publish on the edge");
    let feeder = publish_realtime(publisher, media_tags(), stop.clone());
    origin.wait_frames_in("p", 20, Duration::from_secs(10));
    let followed = format!(
        "edge publish __defaultVhost__/live/p: 127.0.0.1:{redirecting} redirects to 127.0.0.1:{}",
        origin.port
    );
    assert!(edge.log().contains(&followed), "{}", edge.log());
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
}
