//! End-to-end RTMP over loopback: real ffmpeg, rtmpdump and nginx-rtmp against a ringcast
//! process, plus ringcast's own client for what those tools cannot check precisely. Runs on
//! whichever I/O driver RINGCAST_IO selects (test.sh runs both).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// ffmpeg publishes with -re; ffmpeg plays and decodes H.264 and AAC with no error.
#[test]
fn ffmpeg_publishes_and_ffmpeg_plays() {
    if !require("ffmpeg") {
        return;
    }
    let server = Server::start(2, "", "gop_cache on;");
    // The suite runs once per driver: make sure the server runs on the one asked for.
    match std::env::var("RINGCAST_IO").as_deref() {
        Ok("uring") => assert!(server.wait_log("on io_uring", Duration::from_secs(2))),
        Ok("epoll") => assert!(server.wait_log("on epoll", Duration::from_secs(2))),
        _ => {}
    }
    let url = server.url("livestream");
    let _publisher = ffmpeg_publish(&url);
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-i",
            &url,
            "-t",
            "10",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("running ffmpeg");
    // ~10 s of video at 25 fps decoded (the GOP cache may add up to one GOP).
    assert_ffmpeg_decoded(&out, 200);
}

/// rtmpdump (librtmp) records 10 s that ffprobe reads as H.264 + AAC.
#[test]
fn rtmpdump_records_a_playable_file() {
    if !require("ffmpeg") || !require("rtmpdump") || !require("ffprobe") {
        return;
    }
    let server = Server::start(2, "", "");
    let url = server.url("livestream");
    let _publisher = ffmpeg_publish(&url);
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    let out_flv = server.dir().join("out.flv");
    let out = Command::new("rtmpdump")
        .args(["-r", &url, "-B", "10", "-o"])
        .arg(&out_flv)
        .output()
        .expect("running rtmpdump");
    assert!(
        out_flv.exists(),
        "rtmpdump wrote nothing:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streams = common::probe_codecs(&out_flv).join(",");
    assert!(
        streams.contains("h264") && streams.contains("aac"),
        "streams: {streams}"
    );
    let size = std::fs::metadata(&out_flv).map(|m| m.len()).unwrap_or(0);
    assert!(size > 300_000, "only {size} bytes recorded");
}

/// 200 simultaneous players on 2 workers all receive the stream, starting on a keyframe.
#[test]
fn two_hundred_players_on_two_workers() {
    if !require("ffmpeg") {
        return;
    }
    let server = Server::start(2, "max_connections 1000;", "");
    let _publisher = ffmpeg_publish(&server.url("livestream"));
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    let port = server.port;
    let players: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || -> Result<(usize, bool), String> {
                let mut c = Client::play(port, "livestream")?;
                let media = c.media_for(Duration::from_secs(4), |_| false)?;
                let bytes = media.iter().map(|m| m.payload.len()).sum();
                let first_video = media
                    .iter()
                    .filter(|m| m.type_id == 9)
                    .find(|m| !is_video_sh(m));
                Ok((bytes, first_video.is_some_and(is_keyframe)))
            })
        })
        .collect();
    for (i, p) in players.into_iter().enumerate() {
        let (bytes, keyframe_first) = p.join().expect("player thread").expect("player");
        // 4 s of a 528 kbps stream is ~260 KB; the GOP cache adds a burst at the start.
        assert!(bytes > 150_000, "player {i} got only {bytes} bytes");
        assert!(keyframe_first, "player {i} did not start on a keyframe");
    }
    let log = server.log();
    assert!(
        log.contains("ringcast-w0") && log.contains("ringcast-w1"),
        "players on one worker only"
    );
}

/// Forward to a real nginx-rtmp; playing from nginx decodes the stream.
#[test]
fn forwards_to_nginx_rtmp() {
    if !require("ffmpeg") {
        return;
    }
    let nginx_port = free_port();
    let server = Server::start(2, "", &format!("forward 127.0.0.1:{nginx_port};"));
    let Some(_nginx) = nginx_rtmp(server.dir(), nginx_port) else {
        return;
    };

    let _publisher = ffmpeg_publish(&server.url("livestream"));
    assert!(
        server.wait_log(
            "forwarding __defaultVhost__/live/livestream",
            Duration::from_secs(15)
        ),
        "forward did not start"
    );
    let out = ffmpeg_play(&format!("rtmp://127.0.0.1:{nginx_port}/live/livestream"), 5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "playing from nginx failed:\n{stderr}");
    assert!(
        stderr.contains("Video: h264") && stderr.contains("Audio: aac"),
        "{stderr}"
    );
}

/// The forward connects when the destination comes up late, and reconnects when it goes down
/// and comes back; a player of the origin is not disturbed meanwhile.
#[test]
fn forward_reconnects_when_the_destination_returns() {
    let dest_port = free_port();
    let server = Server::start(1, "", &format!("forward 127.0.0.1:{dest_port};"));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Client::publish(server.port, "fwd").expect("publish");
    let mut local = Client::play(server.port, "fwd").expect("play from the origin");
    let feeder = publish_realtime(publisher, media_tags(), stop.clone());
    let watcher = std::thread::spawn(move || {
        local
            .media_for(Duration::from_secs(7), |_| false)
            .expect("origin player")
    });
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("dest.conf");
    std::fs::write(
        &conf,
        format!(
            "listen 127.0.0.1:{dest_port};\nworkers 1;\npid {}/pid;\n",
            dir.path().display()
        ),
    )
    .expect("conf");
    let start_dest = || {
        let dest = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dest server");
        wait_port(dest_port, Duration::from_secs(10));
        Reaper(dest)
    };
    let keyframe_at_dest = |when: &str| {
        let mut player = Client::play(dest_port, "fwd").expect("play from destination");
        let media = player
            .media_for(Duration::from_secs(5), |m| m.iter().any(is_keyframe))
            .expect("media");
        assert!(
            media.iter().any(is_keyframe),
            "no keyframe forwarded {when}: {} messages",
            media.len()
        );
    };
    // Nothing listens yet: the forwarder fails and retries until a second ringcast comes up
    // there. Its first failure is logged: the destination comes up once it was found down.
    assert!(
        server.wait_log(
            &format!("to 127.0.0.1:{dest_port}: "),
            Duration::from_secs(10)
        ),
        "the forwarder did not try the absent destination"
    );
    let dest = start_dest();
    keyframe_at_dest("once the destination came up");
    // The destination dies and comes back. Its port goes on listening for a moment after
    // the process exited (io_uring tears its ring and the sockets it holds down
    // asynchronously): the new destination starts once the port refuses, so it can bind.
    drop(dest);
    wait_until(
        Duration::from_secs(5),
        "the destination's port refuses",
        || TcpStream::connect(("127.0.0.1", dest_port)).is_err(),
    );
    let _dest = start_dest();
    keyframe_at_dest("after the destination came back");

    let media = watcher.join().expect("origin player");
    stop.store(true, Ordering::Relaxed);
    drop(feeder.join());
    let video: Vec<u32> = media
        .iter()
        .filter(|m| m.type_id == 9)
        .map(|m| m.timestamp)
        .collect();
    let gap = video.windows(2).map(|w| w[1].wrapping_sub(w[0])).max();
    assert!(
        video.len() > 100 && gap.is_some_and(|g| g <= 200),
        "the origin player was disturbed: {} video frames, largest gap {gap:?} ms",
        video.len()
    );
    assert!(server
        .log()
        .contains("forwarding __defaultVhost__/live/fwd"));
}

/// A second publisher of a busy stream gets NetStream.Publish.BadName; the first goes on.
#[test]
fn second_publisher_is_refused_with_badname() {
    let server = Server::start(2, "", "");
    let tags = media_tags();
    let mut first = Client::publish(server.port, "busy").expect("first publish");
    let second = Client::publish(server.port, "busy");
    assert_eq!(second.err().as_deref(), Some("NetStream.Publish.BadName"));
    for t in tags.iter().take(50) {
        first
            .send(t, t.timestamp)
            .expect("first publisher still connected");
    }
    assert!(server.wait_log("publish refused", Duration::from_secs(5)));
}

/// Players stay connected when the publisher leaves and continue when one returns, with
/// timestamps that never go back.
#[test]
fn players_survive_a_publisher_restart() {
    let server = Server::start(2, "", "");
    let tags = media_tags();
    let mut player = Client::play(server.port, "restart").expect("play");

    let publish_some = |from: usize| {
        let mut p = Client::publish(server.port, "restart").expect("publish");
        for t in tags.iter().skip(from).take(150) {
            p.send(t, t.timestamp).expect("send");
        }
        p
    };
    let first = publish_some(0);
    let before = player
        .media_for(Duration::from_secs(3), |m| m.len() >= 100)
        .expect("media");
    assert!(
        before.iter().any(is_keyframe),
        "no keyframe before the restart"
    );
    drop(first);
    // Still connected: reading times out rather than seeing the connection close. Waiting
    // out the whole window is the check (nothing may happen in it), not synchronization.
    let idle = player
        .media_for(Duration::from_millis(800), |_| false)
        .expect("player kept");
    let second = publish_some(0); // the new publisher starts again from timestamp 0
    let after = player
        .media_for(Duration::from_secs(3), |m| m.len() >= 100)
        .expect("media");
    drop(second);
    assert!(
        after.iter().any(is_video_sh),
        "no sequence header after the restart"
    );
    assert!(
        after.iter().any(is_keyframe),
        "no keyframe after the restart"
    );
    let all: Vec<_> = before.iter().chain(&idle).chain(&after).collect();
    for kind in [8u8, 9] {
        let ts: Vec<u32> = all
            .iter()
            .filter(|m| m.type_id == kind)
            .map(|m| m.timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "type {kind} timestamps went back: {ts:?}"
        );
    }
}

/// A player joining mid-stream starts with metadata, sequence headers, then a keyframe.
#[test]
fn gop_cache_starts_a_new_player_on_a_keyframe() {
    let server = Server::start(1, "", "gop_cache on;");
    let tags = media_tags();
    let mut publisher = Client::publish(server.port, "gop").expect("publish");
    // 3 s of media: the cache then holds the frames since the keyframe at 2 s.
    let sent = tags.iter().take_while(|t| t.timestamp < 3000).count();
    for t in &tags[..sent] {
        publisher.send(t, t.timestamp).expect("send");
    }
    // The player must join once the keyframe at 2 s is cached, not receive it live.
    server.wait_frames_in("gop", sent, Duration::from_secs(5));
    let mut player = Client::play(server.port, "gop").expect("play");
    let media = player
        .media_for(Duration::from_secs(2), |m| m.len() >= 20)
        .expect("media");
    assert_eq!(media[0].type_id, 18, "metadata first");
    assert!(is_video_sh(&media[1]), "then the video sequence header");
    let first_frame = media
        .iter()
        .find(|m| m.type_id == 9 && !is_video_sh(m))
        .expect("video");
    assert!(
        is_keyframe(first_frame),
        "first video frame is not a keyframe"
    );
    assert!(
        first_frame.timestamp >= 1900,
        "started at {} ms, not at the last GOP",
        first_frame.timestamp
    );
}

/// max_connections refuses the next connection at once; served ones are untouched.
#[test]
fn max_connections_refuses_cleanly() {
    let server = Server::start(1, "max_connections 3;", "");
    let tags = media_tags();
    let mut publisher = Client::publish(server.port, "limit").expect("publish");
    let mut player = Client::play(server.port, "limit").expect("play");
    let idle = TcpStream::connect(("127.0.0.1", server.port)).expect("third connection");
    let mut extra = TcpStream::connect(("127.0.0.1", server.port)).expect("tcp connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let start = Instant::now();
    let mut b = [0u8; 16];
    let closed = matches!(extra.read(&mut b), Ok(0) | Err(_));
    assert!(
        closed && start.elapsed() < Duration::from_secs(2),
        "extra connection not refused"
    );
    assert!(server.wait_log("max_connections 3 reached", Duration::from_secs(2)));
    for t in tags.iter().take(100) {
        publisher
            .send(t, t.timestamp)
            .expect("publisher still served");
    }
    let media = player
        .media_for(Duration::from_secs(3), |m| m.len() >= 50)
        .expect("media");
    assert!(media.len() >= 50, "player starved after the refusal");
    drop(idle);
}

/// What a bad-input case sends on its own connection.
type Sender = Box<dyn Fn(&mut TcpStream) + Send>;

/// Each kind of bad input closes its own connection with a logged reason, within the
/// handshake timeout, and a player of a live stream never notices.
#[test]
fn bad_input_closes_only_that_connection() {
    let server = Server::start(2, "", "");
    let tags = media_tags();
    let mut publisher = Client::publish(server.port, "steady").expect("publish");
    let mut player = Client::play(server.port, "steady").expect("play");

    let handshake = |s: &mut TcpStream| {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        s.write_all(&c0c1).expect("C0C1");
        let mut s0s1s2 = vec![0u8; 3073];
        s.read_exact(&mut s0s1s2).expect("S0S1S2");
        s.write_all(&s0s1s2[1..1537]).expect("C2");
    };
    // Basic header csid 3, type 0, then timestamp, length, type, stream id.
    let chunk = |len: u32, type_id: u8, body: &[u8]| {
        let mut v = vec![0x03, 0, 0, 0];
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(body);
        v
    };
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0x0a, 0, 0, 0, 1]); // strict array of one element, nested
    }
    let cases: Vec<(&str, Sender, &str)> = vec![
        (
            "garbage handshake",
            Box::new(|s| s.write_all(&[0x47; 1537]).expect("w")),
            "handshake",
        ),
        (
            "silent client",
            Box::new(|_| {}),
            "timed out while handshaking",
        ),
        (
            "message over the limit",
            Box::new(move |s| {
                handshake(s);
                s.write_all(&chunk(0x00FF_FFFF, 9, &[])).expect("w");
            }),
            "chunk stream",
        ),
        (
            "chunk size 0",
            Box::new(move |s| {
                handshake(s);
                s.write_all(&chunk(4, 1, &0u32.to_be_bytes())).expect("w");
            }),
            "chunk stream",
        ),
        (
            "chunk size 2^31",
            Box::new(move |s| {
                handshake(s);
                s.write_all(&chunk(4, 1, &0x8000_0000u32.to_be_bytes()))
                    .expect("w");
            }),
            "chunk stream",
        ),
        (
            "AMF0 nested too deep",
            Box::new(move |s| {
                handshake(s);
                let mut body = vec![0x02, 0, 7];
                body.extend_from_slice(b"connect");
                body.extend_from_slice(&deep);
                // Sent as 128-byte chunks: the default chunk size.
                let mut msg = chunk(body.len() as u32, 20, &body[..128]);
                for part in body[128..].chunks(128) {
                    msg.push(0xc3);
                    msg.extend_from_slice(part);
                }
                s.write_all(&msg).expect("w");
            }),
            "AMF0",
        ),
    ];
    let mut handles = Vec::new();
    for (name, send, reason) in cases {
        let port = server.port;
        handles.push((
            name,
            reason,
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(8)))
                    .expect("timeout");
                send(&mut s);
                let start = Instant::now();
                let mut b = [0u8; 4096];
                loop {
                    match s.read(&mut b) {
                        Ok(0) => return Some(start.elapsed()),
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                        Err(_) => return Some(start.elapsed()),
                    }
                }
            }),
        ));
    }
    // Meanwhile the live stream flows.
    for t in tags.iter().take(200) {
        publisher.send(t, t.timestamp).expect("publisher disturbed");
    }
    let media = player
        .media_for(Duration::from_secs(3), |m| m.len() >= 150)
        .expect("player");
    assert!(
        media.len() >= 150,
        "player starved: {} messages",
        media.len()
    );
    for (name, reason, h) in handles {
        let closed = h.join().expect("case thread");
        assert!(closed.is_some(), "{name}: connection not closed");
        assert!(
            server.log().contains(reason),
            "{name}: no {reason:?} in the log"
        );
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "a worker panicked:\n{log}");
}
