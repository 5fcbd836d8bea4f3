//! Faults end to end: what a broken encoder, a player that stops reading, a connection flood,
//! a silent client, SIGTERM under load and a config reload do to a real ringcast process over
//! loopback, and that every other connection keeps being served. Runs on whichever I/O driver
//! RINGCAST_IO selects (test.sh runs both). The forward destination going down and coming
//! back is in tests/rtmp.rs (`forward_reconnects_when_the_destination_returns`).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::*;

/// The test media's bitrate is 528 kbps; a served player must get at least this much.
const MIN_PLAYER_KBPS: usize = 400;

/// Reads `player` for `window` after `warmup` and returns its media bitrate in kbps; says on
/// `measuring` when the window starts. The window is the measurement: it is waited out.
fn measure_kbps(
    mut player: Client,
    warmup: Duration,
    window: Duration,
    measuring: mpsc::Sender<()>,
) -> usize {
    player.media_for(warmup, |_| false).expect("player warmup");
    // The receiver may have stopped listening: the measurement goes on all the same.
    let _ = measuring.send(());
    let start = Instant::now();
    let media = player.media_for(window, |_| false).expect("player");
    payload_bytes(&media) * 8 / start.elapsed().as_millis().max(1) as usize
}

/// Bytes the server read from the publisher of the one stream, as the API counts them.
fn publisher_recv_bytes(server: &Server) -> u64 {
    let clients = server.api_json("/api/v1/clients");
    clients["clients"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["publish"] == true))
        .and_then(|c| c["recv_bytes"].as_u64())
        .unwrap_or_else(|| panic!("no publisher listed: {clients}"))
}

/// True when a read says the server closed the connection (not that the read timed out).
fn closed(read: std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The publisher dies (connection reset) in the middle of a message: its players stay
/// connected, and a new publisher of the stream is accepted and resumes them.
#[test]
fn publisher_killed_mid_message() {
    let server = Server::start(2, "", "");
    let tags = media_tags();
    let mut player = Client::play(server.port, "killed").expect("play");
    let mut publisher = Client::publish(server.port, "killed").expect("publish");
    for t in tags.iter().take(150) {
        publisher.send(t, t.timestamp).expect("send");
    }
    // Everything before the partial message has been read once the hub has all 150 frames.
    server.wait_frames_in("killed", 150, Duration::from_secs(5));
    let read_before = publisher_recv_bytes(&server);
    let before = player
        .media_for(Duration::from_secs(3), |m| m.len() >= 100)
        .expect("media");
    assert!(before.len() >= 100, "only {} messages", before.len());
    // A type-0 chunk on csid 6 announcing 50000 bytes of video, then 1000 of them.
    let mut partial = vec![0x06, 0, 0x10, 0];
    partial.extend_from_slice(&50_000u32.to_be_bytes()[1..]);
    partial.extend_from_slice(&[9, 1, 0, 0, 0]);
    partial.extend_from_slice(&[0x17; 1000]);
    publisher.send_raw(&partial).expect("partial message");
    // The reset must come after the server read the start of the message, not before.
    wait_until(
        Duration::from_secs(3),
        "the server read the partial message",
        || publisher_recv_bytes(&server) >= read_before + partial.len() as u64,
    );
    publisher.kill();
    assert!(
        server.wait_log("peer disconnected", Duration::from_secs(3)),
        "the publisher's reset was not noticed"
    );
    // Waiting out the window is the check: the player must not be closed in it.
    player
        .media_for(Duration::from_millis(500), |_| false)
        .expect("the player was dropped with its publisher");

    let mut second = Client::publish(server.port, "killed").expect("a new publisher");
    for t in tags.iter().take(150) {
        second.send(t, t.timestamp).expect("send");
    }
    let after = player
        .media_for(Duration::from_secs(3), |m| m.iter().any(is_keyframe))
        .expect("media");
    assert!(after.iter().any(is_video_sh), "no sequence header resent");
    assert!(
        after.iter().any(is_keyframe),
        "the player did not resume: {} messages",
        after.len()
    );
    assert!(!server.log().contains("panicked"));
}

/// Players that stop reading are cut once their writes stall for queue_length, and counted;
/// the server's memory stays flat meanwhile, and the players of a live stream keep the full
/// bitrate. The stalled players watch a stream published faster than real time, so that their
/// socket buffers (megabytes on loopback) fill in a second rather than in a minute.
#[test]
fn stalled_players_are_cut_and_others_keep_their_bitrate() {
    let server = Server::start(2, "", "queue_length 1;");
    let tags = media_tags();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Client::publish(server.port, "live").expect("publish");
    let feeder = publish_realtime(publisher, tags.clone(), stop.clone());
    let (measuring, _) = mpsc::channel();
    let healthy: Vec<_> = (0..3)
        .map(|_| {
            let p = Client::play(server.port, "live").expect("play");
            let measuring = measuring.clone();
            std::thread::spawn(move || {
                measure_kbps(p, Duration::from_secs(1), Duration::from_secs(3), measuring)
            })
        })
        .collect();
    const STALLED: usize = 10;
    let stalled: Vec<_> = (0..STALLED)
        .map(|_| Client::play_small_window(server.port, "fast", 4096).expect("play"))
        .collect();
    let mut fast = Client::publish(server.port, "fast").expect("publish");
    let rss_start = rss_kib(server.pid());
    // 64x real time for 2.5 s: 160 s of media, about 10 MB, which a stalled player's socket
    // buffers cannot hold.
    let start = Instant::now();
    let looped = (0..3u32).flat_map(|i| tags.iter().map(move |t| (t, t.timestamp + i * 60_000)));
    for (t, ts) in looped.take_while(|(_, ts)| *ts < 160_000) {
        // Pacing, not synchronization: the load is a stream at 64x its rate.
        let due = Duration::from_millis(u64::from(ts / 64));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        fast.send(t, ts).expect("fast publisher");
    }
    for h in healthy {
        let kbps = h.join().expect("healthy player");
        eprintln!("healthy player: {kbps} kbps");
        assert!(
            kbps >= MIN_PLAYER_KBPS,
            "a healthy player got {kbps} kbps next to stalled ones"
        );
    }
    let cut = poll_until(Duration::from_secs(3), || {
        server.log().matches("stopped reading").count() >= STALLED
    });
    assert!(cut, "stalled players not cut:\n{}", server.log());
    let rss_end = rss_kib(server.pid());
    stop.store(true, Ordering::Relaxed);
    drop(feeder.join());
    drop(stalled);
    eprintln!("server RSS {rss_start} KiB -> {rss_end} KiB");
    assert!(
        rss_end < rss_start + 16 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}

/// 10x max_connections connection attempts: all beyond the limit are closed at once, the
/// served players keep their bitrate.
#[test]
fn a_flood_of_ten_times_max_connections_is_refused_at_once() {
    const MAX: usize = 20;
    let server = Server::start(2, &format!("max_connections {MAX};"), "");
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Client::publish(server.port, "flood").expect("publish");
    let feeder = publish_realtime(publisher, media_tags(), stop.clone());
    let (measuring, measured) = mpsc::channel();
    let players: Vec<_> = (0..3)
        .map(|_| {
            let p = Client::play(server.port, "flood").expect("play");
            let measuring = measuring.clone();
            std::thread::spawn(move || {
                measure_kbps(
                    p,
                    Duration::from_millis(500),
                    Duration::from_secs(3),
                    measuring,
                )
            })
        })
        .collect();
    // The flood comes while every served player measures its bitrate.
    for _ in &players {
        measured
            .recv_timeout(Duration::from_secs(5))
            .expect("a served player never started measuring");
    }
    let served = 4;
    let flood: Vec<TcpStream> = (0..10 * MAX)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(1);
    let mut refused = 0;
    for mut s in flood.iter() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        if closed(s.read(&mut [0u8; 16])) {
            refused += 1;
        }
    }
    let expected = 10 * MAX - (MAX - served);
    assert!(
        refused >= expected,
        "{refused} of {} attempts refused within 1 s, expected {expected}",
        10 * MAX
    );
    for p in players {
        let kbps = p.join().expect("player");
        assert!(
            kbps >= MIN_PLAYER_KBPS,
            "a served player got {kbps} kbps during the flood"
        );
    }
    stop.store(true, Ordering::Relaxed);
    drop(feeder.join());
    assert!(server
        .log()
        .contains(&format!("max_connections {MAX} reached")));
}

/// What a client sends before it falls silent.
type Opening = fn(&mut TcpStream);

/// A client that connects and says nothing, and one that stops after the handshake, are
/// closed when the handshake timeout runs out, not before and not much after.
#[test]
fn silent_clients_are_closed_after_the_handshake_timeout() {
    use ringcast::server::HANDSHAKE_TIMEOUT;
    let server = Server::start(1, "", "");
    let handshaked = |s: &mut TcpStream| {
        use std::io::Write;
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        s.write_all(&c0c1).expect("C0C1");
        let mut s0s1s2 = vec![0u8; 3073];
        s.read_exact(&mut s0s1s2).expect("S0S1S2");
        s.write_all(&s0s1s2[1..1537]).expect("C2");
    };
    let cases: [(&str, Opening); 2] = [("silent", |_| {}), ("handshake only", handshaked)];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, before)| {
            let port = server.port;
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                before(&mut s);
                s.set_read_timeout(Some(HANDSHAKE_TIMEOUT + Duration::from_secs(3)))
                    .expect("timeout");
                let closed = closed(s.read(&mut [0u8; 16]));
                (name, closed, start.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (name, closed, took) = h.join().expect("client thread");
        assert!(closed, "{name}: not closed within {took:?}");
        assert!(
            took >= HANDSHAKE_TIMEOUT - Duration::from_millis(100)
                && took < HANDSHAKE_TIMEOUT + Duration::from_millis(1500),
            "{name}: closed after {took:?}, the timeout is {HANDSHAKE_TIMEOUT:?}"
        );
    }
    let log = server.log();
    assert!(log.contains("timed out while handshaking"), "{log}");
    assert!(log.contains("timed out while waiting for connect"), "{log}");
}

/// SIGTERM with 2000 players connected and playing: the process exits within 2 s. The stream
/// starts once all have joined (gop_cache off, so none gets a cached burst): 2000 debug-build
/// players joining a 528 kbps stream would starve the handshakes of the last ones on a loaded
/// 2-core CI machine, and what counts is that writes to all of them are in flight at SIGTERM.
#[test]
fn sigterm_with_two_thousand_players_exits_within_two_seconds() {
    const PLAYERS: usize = 2000;
    // The players, the server's sockets and the test's own: well above the usual 1024.
    let limit = 16_384;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, limit, limit)
        .expect("raising RLIMIT_NOFILE (the test runs as root in CI)");
    let mut server = Server::start(
        2,
        &format!("rlimit_nofile {limit};\nmax_connections {};", PLAYERS + 100),
        "gop_cache off;",
    );
    let publisher = Client::publish(server.port, "many").expect("publish");
    let bench = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(["rtmp-play", "-c", &PLAYERS.to_string(), "-r"])
        .arg(server.url("many"))
        .args(["-s", "2", "-d", "60", "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ringcast-bench");
    let _bench = Reaper(bench);
    // Reading the log of 2000 joins costs the loaded server's machine: not too often.
    let joined = poll_until_every(Duration::from_secs(20), Duration::from_millis(200), || {
        server
            .log()
            .matches("play __defaultVhost__/live/many")
            .count()
            >= PLAYERS
    });
    if !joined {
        let log = server.log();
        let mut reasons = std::collections::BTreeMap::new();
        for l in log.lines() {
            if let Some((_, why)) = l.split_once("closing: ") {
                let why = why.split(" \u{1b}").next().unwrap_or(why);
                *reasons.entry(why.to_owned()).or_insert(0) += 1;
            }
        }
        panic!(
            "only {} players after 20 s; connections closed early: {reasons:?}",
            log.matches("play __defaultVhost__/live/many").count(),
        );
    }
    let tags = media_tags();
    // Every player is written to once each has been sent the stream up to its first keyframe.
    let first_key = tags
        .iter()
        .position(|t| t.type_id == 9 && t.data.first().is_some_and(|b| b >> 4 == 1))
        .expect("a keyframe");
    let opening: u64 = tags[..=first_key].iter().map(|t| t.data.len() as u64).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = publish_realtime(publisher, tags, stop.clone());
    let mut behind = PLAYERS;
    let fanned_out = poll_until_every(Duration::from_secs(20), Duration::from_millis(200), || {
        let clients = server.api_json(&format!("/api/v1/clients?count={}", PLAYERS + 10));
        let served = clients["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .filter(|c| c["type"] == "rtmp-play")
            .filter(|c| c["send_bytes"].as_u64().unwrap_or(0) >= opening)
            .count();
        behind = PLAYERS.saturating_sub(served);
        behind == 0
    });
    assert!(
        fanned_out,
        "{behind} of {PLAYERS} players not sent the first {opening} bytes of media in 20 s"
    );
    let signalled = Instant::now();
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let exited = poll_until(Duration::from_secs(2), || !server.alive());
    assert!(exited, "still running 2 s after SIGTERM");
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    stop.store(true, Ordering::Relaxed);
    drop(feeder.join());
    assert!(server.log().contains("signal received, exiting"));
}

/// SIGHUP reloads the config: a stream published after it gets the new vhost settings
/// (gop_cache off), while the stream and the player that were there keep what they had.
#[test]
fn sighup_applies_new_settings_to_new_streams_only() {
    let server = Server::start(1, "", "gop_cache on;");
    let tags = media_tags();
    // 3 s of media: the keyframe at 2 s is in the GOP cache.
    let first_secs: Vec<_> = tags
        .iter()
        .filter(|t| t.timestamp < 3000)
        .cloned()
        .collect();
    let mut old_player = Client::play(server.port, "old").expect("play");
    let mut old = Client::publish(server.port, "old").expect("publish");
    for t in &first_secs {
        old.send(t, t.timestamp).expect("send");
    }
    old_player
        .media_for(Duration::from_secs(2), |m| m.iter().any(is_keyframe))
        .expect("media before the reload");

    let conf = server.dir().join("test.conf");
    let text = std::fs::read_to_string(&conf).expect("config");
    std::fs::write(&conf, text.replace("gop_cache on;", "gop_cache off;")).expect("config");
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    assert!(server.wait_log("reloaded", Duration::from_secs(3)));

    // The old stream goes on, and its player with it, uninterrupted.
    for t in tags.iter().filter(|t| (3000..4000).contains(&t.timestamp)) {
        old.send(t, t.timestamp).expect("old publisher kept");
    }
    let more = old_player
        .media_for(Duration::from_secs(2), |m| {
            m.iter().any(|m| m.timestamp >= 3900)
        })
        .expect("old player kept");
    assert!(
        more.iter().any(|m| m.timestamp >= 3900),
        "the old player stopped at reload"
    );
    // ... with the settings it was created with: a new player there starts on the cache.
    let mut late = Client::play(server.port, "old").expect("play");
    let cached = late
        .media_for(Duration::from_secs(1), |m| m.iter().any(is_keyframe))
        .expect("media");
    assert!(
        cached.iter().any(is_keyframe),
        "the old stream lost its GOP cache at reload"
    );

    // A new stream gets gop_cache off: a joiner waits for the next keyframe.
    let mut new = Client::publish(server.port, "new").expect("publish");
    for t in &first_secs {
        new.send(t, t.timestamp).expect("send");
    }
    // The joiner must come after the keyframe at 2 s went by, not receive it live.
    server.wait_frames_in("new", first_secs.len(), Duration::from_secs(5));
    let mut joiner = Client::play(server.port, "new").expect("play");
    // Waiting out the window is the check: no keyframe may come in it.
    let early = joiner
        .media_for(Duration::from_millis(700), |_| false)
        .expect("media");
    assert!(
        !early.iter().any(is_keyframe),
        "the new stream served a cached GOP: gop_cache off was not applied"
    );
}

/// A second server started on the port of a running one refuses to start, and the first
/// keeps all the connections: without the check both would join one SO_REUSEPORT group and
/// the kernel would hand each about half of the new connections.
#[test]
fn a_second_server_on_a_busy_port_refuses_to_start() {
    let server = Server::start(1, "", "");
    let (status, stderr) =
        common::run_refused(&server.dir().join("test.conf"), Duration::from_secs(5))
            .unwrap_or_else(|| panic!("a second ringcast is serving port {} too", server.port));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{}", server.port)),
        "{stderr}"
    );
    for _ in 0..20 {
        Client::play(server.port, "still").expect("the first server serves every connection");
    }
}
