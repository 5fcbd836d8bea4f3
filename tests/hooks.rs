//! SRS's HTTP hooks end to end: a ringcast process and a hook server of the test's own (a std
//! listener, a thread per connection, keep-alive, recording every body), its answer chosen by
//! the hook's path. Allowed and denied publish and play over RTMP, `?secret=` in `param`, a
//! hook that sleeps past the timeout or is down, players that wait for a slow hook while
//! another vhost's player starts at once, bad answers (garbage, 10 MB, a redirect), HTTP-FLV
//! and WHIP/WHEP refused with 403, a SIGHUP that changes the hooks for the next client, and
//! the file hooks (`on_hls`, `on_dvr`) told each file once it is in place.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::hooks::{assert_same_client, hooks, HookServer};
use common::{curl, free_port, media_tags, require, wait_until, Client, Server};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Sends the first `n` tags of the test media as a publisher would.
fn send_some(publisher: &mut Client, n: usize) {
    for t in media_tags().iter().take(n) {
        publisher.send(t, t.timestamp).expect("media sent");
    }
}

/// The log lines that mention `needle`.
fn lines_with(server: &Server, needle: &str) -> usize {
    server.log().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn allowed_publish_plays_and_every_event_is_told_as_srs_tells_it() {
    let hook = HookServer::start();
    let (allow, code0) = (hook.url("/allow"), hook.url("/code0"));
    let server = Server::start(
        1,
        "",
        &hooks(&format!(
            "on_connect {allow}; on_publish {allow} {code0}; on_unpublish {allow}; \
             on_play {code0}; on_stop {allow}; on_close {allow};"
        )),
    );
    let mut publisher = Client::publish(server.port, "s?secret=k").expect("publish allowed");
    let mut player = Client::play(server.port, "s").expect("play allowed");
    send_some(&mut publisher, 30);
    let media = player
        .media_for(Duration::from_secs(5), |m| !m.is_empty())
        .expect("player");
    assert!(!media.is_empty(), "the allowed publish reaches the player");

    let publish = hook.bodies("on_publish");
    assert_eq!(publish.len(), 2, "both URLs are asked: {publish:?}");
    let p = &publish[0];
    assert_eq!(p["client_id"], publish[1]["client_id"]);
    assert_eq!(
        (p["app"].as_str(), p["stream"].as_str()),
        (Some("live"), Some("s"))
    );
    assert_eq!(p["param"], "?secret=k");
    assert_eq!(p["vhost"], "__defaultVhost__");
    assert_eq!(p["ip"], "127.0.0.1");
    assert_eq!(p["stream_url"], "/live/s");
    assert_eq!(p["tcUrl"], format!("rtmp://127.0.0.1:{}/live", server.port));
    assert!(
        p["server_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("vid-")),
        "{p}"
    );
    let connects = hook.bodies("on_connect");
    assert_eq!(
        connects.len(),
        2,
        "publisher and player connect: {connects:?}"
    );
    assert_eq!(connects[0]["client_id"], p["client_id"]);
    assert_eq!(connects[0]["stream"], "");
    let play = hook.bodies("on_play");
    assert_eq!(play.len(), 1);
    assert_eq!(
        (play[0]["stream"].as_str(), play[0]["param"].as_str()),
        (Some("s"), Some(""))
    );
    assert!(
        play[0]["stream_id"].is_string(),
        "the stream exists: {}",
        play[0]
    );
    let clients = server.api_json("/api/v1/clients/");
    assert!(
        clients["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .any(|c| c["id"] == p["client_id"]),
        "client_id is the id the API lists: {clients}"
    );

    drop(player);
    drop(publisher);
    wait_until(
        Duration::from_secs(5),
        "on_stop, on_unpublish, on_close",
        || {
            hook.count("on_stop") == 1
                && hook.count("on_unpublish") == 1
                && hook.count("on_close") == 2
        },
    );
    let close = hook
        .bodies("on_close")
        .into_iter()
        .find(|b| b["client_id"] == p["client_id"])
        .expect("the publisher's on_close");
    assert!(
        close["recv_bytes"].as_u64().is_some_and(|n| n > 0),
        "{close}"
    );
    assert_eq!(hook.bodies("on_unpublish")[0]["param"], "?secret=k");
    assert!(server.log().contains("http: on_publish ok"));
}

#[test]
fn denied_publish_gets_badname_and_not_one_frame_reaches_a_player() {
    let hook = HookServer::start();
    let server = Server::start(1, "", &hooks(&format!("on_publish {};", hook.url("/deny"))));
    let mut player = Client::play(server.port, "d").expect("play, no on_play hook");
    let refused = Client::publish(server.port, "d")
        .err()
        .expect("publish denied");
    assert_eq!(refused, "NetStream.Publish.BadName");
    // ffmpeg sends its media right behind the publish; none of it may reach the player.
    let _ffmpeg = common::ffmpeg_publish(&server.url("d"));
    let media = player
        .media_for(Duration::from_secs(2), |m| !m.is_empty())
        .expect("player");
    assert!(media.is_empty(), "{} messages leaked", media.len());
    assert!(server
        .stream("d")
        .is_none_or(|s| s["publish"]["active"] != true));
    wait_until(Duration::from_secs(5), "the denials logged", || {
        lines_with(&server, "on_publish hook") >= 1
    });
    let log = server.log();
    let denials: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("denied: code 1"))
        .collect();
    assert!(
        denials
            .iter()
            .all(|l| l.contains("{\\\"code\\\": 1, \\\"msg\\\": \\\"no\\\"}")),
        "the hook's answer is in the log: {denials:?}"
    );
    assert_eq!(
        denials.len(),
        hook.count("on_publish"),
        "each denial logged once:\n{log}"
    );
}

#[test]
fn denied_play_gets_the_error() {
    let hook = HookServer::start();
    let server = Server::start(1, "", &hooks(&format!("on_play {};", hook.url("/deny"))));
    let refused = Client::play(server.port, "s").err().expect("play denied");
    assert!(refused.contains("NetStream.Play."), "{refused}");
    assert_eq!(hook.count("on_play"), 1);
    wait_until(Duration::from_secs(5), "the denial logged", || {
        lines_with(&server, "on_play hook") == 1
    });
}

#[test]
fn secret_arrives_in_param() {
    let hook = HookServer::start();
    let server = Server::start(
        1,
        "",
        &hooks(&format!("on_publish {};", hook.url("/secret"))),
    );
    Client::publish(server.port, "a?secret=k").expect("the right secret");
    for wrong in ["b?secret=x", "c"] {
        assert!(Client::publish(server.port, wrong).is_err(), "{wrong}");
    }
    let params: Vec<_> = hook
        .bodies("on_publish")
        .iter()
        .map(|b| b["param"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(params, ["?secret=k", "?secret=x", ""]);
}

#[test]
fn a_hook_past_the_timeout_or_down_denies_while_others_proceed() {
    let hook = HookServer::start();
    let down = format!("http://127.0.0.1:{}/", free_port());
    let global = format!(
        "vhost slow.test {{ {} }}\nvhost down.test {{ {} }}",
        hooks(&format!("on_publish {};", hook.url("/slow"))),
        hooks(&format!("on_publish {down};")),
    );
    let server = Server::start(2, &global, "");
    let port = server.port;
    let started = Instant::now();
    let slow = std::thread::spawn(move || Client::publish(port, "s?vhost=slow.test").err());
    wait_until(Duration::from_secs(5), "the slow hook asked", || {
        hook.count("on_publish") == 1
    });
    let refused = Client::publish(port, "d?vhost=down.test").err();
    assert_eq!(refused.as_deref(), Some("NetStream.Publish.BadName"));
    // Meanwhile another stream publishes and plays as if nothing were pending.
    let mut publisher = Client::publish(port, "free").expect("no hook");
    let mut player = Client::play(port, "free").expect("no hook");
    send_some(&mut publisher, 30);
    let media = player
        .media_for(Duration::from_secs(2), |m| !m.is_empty())
        .expect("player");
    assert!(!media.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "none of that waited for the slow hook"
    );
    assert_eq!(
        slow.join().expect("slow publisher").as_deref(),
        Some("NetStream.Publish.BadName"),
        "the hook that sleeps past the timeout denies"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    for why in ["no answer within 3s", "failed: connect to 127.0.0.1:"] {
        assert!(
            server.wait_log(why, Duration::from_secs(3)),
            "{}",
            server.log()
        );
    }
}

/// 200 players of a vhost whose on_play answers after 500 ms all play, and a player of a vhost
/// without hooks starts meanwhile as fast as ever.
#[test]
fn players_waiting_for_a_slow_hook_delay_only_themselves() {
    const PLAYERS: usize = 200;
    let hook = HookServer::start();
    let global = format!(
        "vhost hooked.test {{ {} }}",
        hooks(&format!("on_play {};", hook.url("/delay500")))
    );
    let server = Server::start(2, &global, "");
    let port = server.port;
    let players: Vec<_> = (0..PLAYERS)
        .map(|i| {
            std::thread::spawn(move || {
                Client::play(port, &format!("h{i}?vhost=hooked.test")).map(drop)
            })
        })
        .collect();
    // Every hooked player has done its handshake and waits on the hook: what is measured
    // next is the hook's wait alone, not the CPU of 200 handshakes.
    wait_until(
        Duration::from_secs(10),
        "every player waiting on the hook",
        || hook.count("on_play") == PLAYERS,
    );
    let before = hook.seen.answered.load(Ordering::SeqCst);
    let start = Instant::now();
    Client::play(port, "free").expect("a player without hooks");
    let took = start.elapsed();
    let after = hook.seen.answered.load(Ordering::SeqCst);
    eprintln!("unhooked player started in {took:?}, {before}..{after} of {PLAYERS} hooks answered");
    assert!(
        after < PLAYERS,
        "the slow hooks were still pending ({before}..{after} answered)"
    );
    assert!(
        took < Duration::from_millis(100),
        "the unhooked player took {took:?}"
    );
    for p in players {
        p.join()
            .expect("player thread")
            .expect("every hooked player plays");
    }
    assert_eq!(hook.count("on_play"), PLAYERS);
}

#[test]
fn bad_answers_deny_cleanly_and_disturb_nothing() {
    let hook = HookServer::start();
    let cases = ["garbage", "big", "redirect"];
    let global: String = cases
        .iter()
        .map(|c| {
            format!(
                "vhost {c}.test {{ {} }}\n",
                hooks(&format!("on_publish {};", hook.url(&format!("/{c}"))))
            )
        })
        .collect();
    let server = Server::start(1, &global, "");
    for c in cases {
        let refused = Client::publish(server.port, &format!("{c}?vhost={c}.test")).err();
        assert_eq!(refused.as_deref(), Some("NetStream.Publish.BadName"), "{c}");
    }
    let mut publisher = Client::publish(server.port, "fine").expect("no hook");
    let mut player = Client::play(server.port, "fine").expect("no hook");
    send_some(&mut publisher, 30);
    assert!(!player
        .media_for(Duration::from_secs(2), |m| !m.is_empty())
        .expect("player")
        .is_empty());
    wait_until(Duration::from_secs(5), "three denials logged", || {
        lines_with(&server, "on_publish hook") == 3
    });
    let log = server.log();
    for needle in [
        "/garbage failed: malformed response head",
        "/big failed: response body larger than",
        "/redirect denied: status 302",
    ] {
        assert_eq!(lines_with(&server, needle), 1, "{needle} once:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn http_flv_and_whip_whep_are_refused_with_403() {
    let hook = HookServer::start();
    let deny = hook.url("/deny");
    let server = Server::start(
        1,
        "",
        &format!(
            "http_remux {{ enabled on; mount [vhost]/[app]/[stream].flv; }}\n{}",
            hooks(&format!("on_publish {deny}; on_play {deny};"))
        ),
    );
    let (code, body) = curl(&["-s"], &server.flv_url("gone"));
    assert_eq!(code, 404, "no stream, no hook: {body}");

    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    for (kind, action) in [("whip", "on_publish"), ("whep", "on_play")] {
        let url = server.api_url(&format!("/rtc/v1/{kind}/?app=live&stream=w&secret=k"));
        let (code, body) = curl(
            &[
                "-s",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/sdp",
                "--data-binary",
                offer,
            ],
            &url,
        );
        assert_eq!(code, 403, "{kind}: {body}");
        let json: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(json["code"], 403);
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(action)),
            "{json}"
        );
        let asked = hook.bodies(action);
        assert_eq!(
            asked.last().expect("asked")["param"],
            "app=live&stream=w&secret=k"
        );
    }

    // A live stream over HTTP-FLV: on_play denies it.
    assert!(
        Client::publish(server.port, "live1").is_err(),
        "on_publish denies RTMP as well"
    );
    let server = Server::start(
        1,
        "",
        &format!(
            "http_remux {{ enabled on; mount [vhost]/[app]/[stream].flv; }}\n{}",
            hooks(&format!("on_play {deny};"))
        ),
    );
    let mut live = Client::publish(server.port, "live1").expect("no on_publish hook");
    send_some(&mut live, 10);
    wait_until(Duration::from_secs(5), "the stream is live", || {
        server.stream("live1").is_some()
    });
    let (code, body) = curl(&["-s"], &server.flv_url("live1"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("on_play"), "{body}");
    assert_eq!(
        hook.bodies("on_play").last().expect("asked")["stream"],
        "live1"
    );
}

#[test]
fn sighup_changes_the_hooks_of_the_next_client() {
    let hook = HookServer::start();
    let server = Server::start(1, "", &hooks(&format!("on_publish {};", hook.url("/deny"))));
    assert!(Client::publish(server.port, "r").is_err());
    let conf = server.dir().join("test.conf");
    let text = std::fs::read_to_string(&conf).expect("config");
    std::fs::write(&conf, text.replace("/deny", "/allow")).expect("config");
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    assert!(server.wait_log("reloaded", Duration::from_secs(3)));
    Client::publish(server.port, "r").expect("allowed after the reload");
    let paths: Vec<String> = hook
        .seen
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(paths, ["/deny", "/allow"]);
}

/// The id a hook body names its client by (SRS sends it as a string).
fn client_id(body: &Value) -> u64 {
    let id = &body["client_id"];
    id.as_u64()
        .or_else(|| id.as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("client_id in {body}"))
}

/// SRS's end-of-session hooks for WebRTC: a WHIP publish (without `rtc_to_rtmp`) and two WHEP
/// plays of it by the load tool, one ended by its session's DELETE and one by killing its
/// process, as is the publisher: each session sends one `on_stop` or `on_unpublish`, naming
/// the client as its `on_play` or `on_publish` did.
#[test]
fn whip_and_whep_sessions_end_with_on_unpublish_and_on_stop() {
    let hook = HookServer::start();
    let allow = hook.url("/allow");
    let udp = free_port();
    let server = Server::start(
        2,
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        &format!(
            "rtc {{ enabled on; }}\n{}",
            hooks(&format!(
                "on_publish {allow}; on_unpublish {allow}; on_play {allow}; on_stop {allow};"
            ))
        ),
    );
    let bench = |args: &[&str], url: &str| {
        common::Reaper(
            std::process::Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
                .args(args)
                .arg("-r")
                .arg(server.api_url(url))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("running ringcast-bench"),
        )
    };
    let media = common::media();
    let media = media.to_str().expect("a UTF-8 path");
    let mut publisher = bench(
        &["whip-publish", "-c", "1", "-d", "60", "-i", media],
        "/rtc/v1/whip/?app=live&stream=ends&token=p",
    );
    assert!(
        server.wait_log("rtc connected", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let play = |who: &str| {
        bench(
            &["whep-play", "-c", "1", "-d", "60"],
            &format!("/rtc/v1/whep/?app=live&stream=ends&who={who}"),
        )
    };
    let (_deleted, mut killed) = (play("a"), play("b"));
    wait_until(Duration::from_secs(10), "three sessions connected", || {
        lines_with(&server, "rtc connected") == 3
    });
    let played = |who: &str| {
        hook.bodies("on_play")
            .into_iter()
            .find(|b| b["param"].as_str().is_some_and(|p| p.ends_with(who)))
            .unwrap_or_else(|| panic!("on_play of {who}"))
    };
    let (a, b) = (played("who=a"), played("who=b"));
    assert!(hook.bodies("on_stop").is_empty());

    let (code, body) = curl(
        &["-s", "-X", "DELETE"],
        &server.api_url(&format!(
            "/rtc/v1/whep/?app=live&stream=ends&session={:016x}",
            client_id(&a)
        )),
    );
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(5), "on_stop of the DELETE", || {
        hook.count("on_stop") == 1
    });
    let _ = killed.0.kill();
    wait_until(
        Duration::from_secs(40),
        "on_stop of the killed player",
        || hook.count("on_stop") == 2,
    );
    let _ = publisher.0.kill();
    wait_until(Duration::from_secs(40), "on_unpublish", || {
        hook.count("on_unpublish") == 1
    });
    // No second notice follows.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (hook.count("on_publish"), hook.count("on_unpublish")),
        (1, 1)
    );
    assert_eq!((hook.count("on_play"), hook.count("on_stop")), (2, 2));
    let stops = hook.bodies("on_stop");
    assert_eq!(
        client_id(&stops[0]),
        client_id(&a),
        "the DELETEd player first"
    );
    let pairs = [
        (
            hook.bodies("on_publish")[0].clone(),
            hook.bodies("on_unpublish")[0].clone(),
        ),
        (a, stops[0].clone()),
        (b, stops[1].clone()),
    ];
    for (start, end) in &pairs {
        assert_same_client(start, end);
    }
    assert_eq!(pairs[0].0["param"], "app=live&stream=ends&token=p");
}

/// `on_hls`, `on_hls_notify` and `on_dvr` as SRS sends them: each HLS segment once its file
/// is in place under `hls_path` (a POST, and a GET of the notify URL with SRS's variables
/// filled in), each DVR file once renamed to its final name, with SRS's fields in SRS's
/// order and the publisher's request (its `?secret=` in `param`, its client id). The hook
/// server reads each file's size as the call arrives: a hook that copies the file finds it
/// whole.
#[test]
fn hls_segments_and_dvr_files_are_told_once_in_place() {
    if !require("ffmpeg") || !require("ffprobe") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let hook = HookServer::start();
    let file = hook.url("/file");
    let server = Server::start(
        1,
        "",
        &format!(
            "{}\nhls {{ enabled on; hls_fragment 2; hls_window 60; hls_path {d}; }}\n\
             dvr {{ enabled on; dvr_plan segment; dvr_duration 4; \
             dvr_path {d}/[app]/[stream].[timestamp].flv; }}",
            hooks(&format!(
                "on_hls {file}; on_dvr {file}; on_hls_notify {};",
                hook.url("/notify/[app]/[stream]/[ts_url][param]")
            ))
        ),
    );
    let publisher = common::ffmpeg_publish(&format!("{}?secret=k", server.url("cam")));
    wait_until(
        Duration::from_secs(40),
        "3 on_hls and notices, 2 on_dvr",
        || {
            hook.count("on_hls") >= 3
                && hook.paths("/notify/").len() >= 3
                && hook.count("on_dvr") >= 2
        },
    );
    assert_eq!(
        hook.paths("/notify/")[..3],
        (0..3)
            .map(|i| format!("/notify/live/cam/cam-{i}.ts?secret=k"))
            .collect::<Vec<_>>()
    );
    let cid = server.stream("cam").expect("listed")["publish"]["cid"].clone();
    drop(publisher);
    let tc_url = format!("rtmp://127.0.0.1:{}/live", server.port);
    let publisher_fields = |b: &Value| {
        assert_eq!(b["client_id"], cid, "{b}");
        assert_eq!(b["ip"], "127.0.0.1", "{b}");
        assert_eq!(b["vhost"], "__defaultVhost__", "{b}");
        assert_eq!(b["app"], "live", "{b}");
        assert_eq!(b["tcUrl"], tc_url.as_str(), "{b}");
        assert_eq!(b["stream"], "cam", "{b}");
        assert_eq!(b["param"], "?secret=k", "{b}");
        assert_eq!(b["stream_url"], "/live/cam", "{b}");
        assert!(b["cwd"].as_str().is_some_and(|c| !c.is_empty()), "{b}");
        assert!(b["test_file_bytes"].as_u64() > Some(0), "not in place: {b}");
    };
    for (i, b) in hook.bodies("on_hls").iter().take(3).enumerate() {
        publisher_fields(b);
        assert_eq!(b["seq_no"], i as u64, "{b}");
        assert_eq!(b["file"], format!("{d}/live/cam-{i}.ts"), "{b}");
        assert_eq!(b["url"], format!("live/cam-{i}.ts"), "{b}");
        assert_eq!(b["m3u8"], format!("{d}/live/cam.m3u8"), "{b}");
        assert_eq!(b["m3u8_url"], "live/cam.m3u8", "{b}");
        let duration = b["duration"].as_f64().expect("seconds");
        assert!((1.9..=4.1).contains(&duration), "{b}");
        let on_disk = std::fs::metadata(b["file"].as_str().expect("file")).expect("kept");
        assert_eq!(
            b["test_file_bytes"],
            on_disk.len(),
            "told before it was whole: {b}"
        );
    }
    for b in hook.bodies("on_dvr").iter().take(2) {
        publisher_fields(b);
        let path = b["file"].as_str().expect("file");
        let name = path
            .strip_prefix(&format!("{d}/live/cam."))
            .expect("dvr_path's");
        assert!(name.ends_with(".flv"), "{b}");
        let seconds = common::ffprobe_duration(std::path::Path::new(path));
        assert!((3.5..=6.5).contains(&seconds), "{path}: {seconds} s");
    }
}
