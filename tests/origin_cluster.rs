//! End-to-end origin cluster (SRS's `cluster { mode local; origin_cluster on; coworkers ...;
//! }`): two ringcast origins, A and B, each the other's coworker. A stream published on A
//! plays from B through a redirect (ffmpeg follows HTTP-FLV's 302; RTMP's 302 is checked
//! with rtmpdump, which shows it, and ringcast's test client, since ffmpeg does not follow
//! it); SRS's clusters API answers for the stream on A and not on B; and coworkers that keep
//! naming each other (fake ones, answering SRS's JSON) end in an error, fast. An edge in front
//! of the pair finds a stream on either, following the RTMP 302 of the one without it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ringcast::rtmp::client::{ClientEvent, Redirect};
use serde_json::Value;

/// The default vhost of an origin whose coworkers are the APIs on `coworkers`.
fn origin_vhost(coworkers: &[u16]) -> String {
    let list: Vec<String> = coworkers.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!(
        "http_remux {{ enabled on; }}\n\
         cluster {{ mode local; origin_cluster on; coworkers {}; }}",
        list.join(" ")
    )
}

/// Origins A and B, each the other's coworker.
fn pair() -> (Server, Server) {
    let (a, b) = (Ports::free(), Ports::free());
    let a_server = Server::start_at(a, 2, "", &origin_vhost(&[b.api]), &[]);
    let b_server = Server::start_at(b, 2, "", &origin_vhost(&[a.api]), &[]);
    (a_server, b_server)
}

/// SRS's clusters query for `live/STREAM` on `server`, as its coworkers send it (POST).
fn clusters(server: &Server, stream: &str) -> Value {
    let path = format!(
        "/api/v1/clusters?vhost=__defaultVhost__&ip=127.0.0.1&app=live&stream={stream}\
         &coworker=127.0.0.1:{}",
        server.api_port
    );
    let (status, body) = curl(&["-X", "POST"], &server.api_url(&path));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A stream published on A: B's API says it is not there and A's says where it is; ffmpeg
/// asking B's HTTP-FLV is sent to A and decodes it; an RTMP player of B gets SRS's RTMP 302
/// with A's URL.
#[test]
fn a_player_of_b_is_sent_to_a_which_has_the_stream() {
    if !require("ffmpeg") || !require("curl") || !require("rtmpdump") {
        return;
    }
    let (a, b) = pair();
    let _publisher = ffmpeg_publish(&a.url("x"));
    assert!(a.wait_log("publish __defaultVhost__/live/x", Duration::from_secs(10)));

    let on_a = clusters(&a, "x");
    assert_eq!(on_a["code"], 0);
    assert_eq!(on_a["data"]["query"]["stream"], "x");
    let origin = &on_a["data"]["origin"];
    assert_eq!(origin["ip"], "127.0.0.1", "{on_a}");
    assert_eq!(origin["port"], a.port);
    assert_eq!(origin["vhost"], "__defaultVhost__");
    assert_eq!(origin["api"], format!("127.0.0.1:{}", a.api_port));
    assert_eq!(origin["routers"][0], origin["api"]);
    assert_eq!(origin["http_port"], a.http_port);
    let on_b = clusters(&b, "x");
    assert_eq!(on_b["code"], 0);
    assert!(on_b["data"]["origin"].is_null(), "{on_b}");
    let (status, body) = curl(&[], &b.api_url("/api/v1/clusters?app=live&stream=x"));
    assert_eq!(status, 200, "GET is answered too: {body}");

    let (status, _) = curl(&["-o", "/dev/null", "-D", "-"], &b.flv_url("x"));
    assert_eq!(status, 302);
    let out = ffmpeg_play(&b.flv_url("x"), 3);
    assert_ffmpeg_decoded(&out, 50);
    let location = format!(
        "redirect __defaultVhost__/live/x to http://127.0.0.1:{}/live/x.flv?cluster_hops=1",
        a.http_port
    );
    assert!(b.log().contains(&location), "{}", b.log());

    let mut player = Client::play(b.port, "x").expect("play on B");
    player
        .until(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Redirected(_))
        })
        .expect("the redirect");
    let url = format!("rtmp://127.0.0.1:{}/live/x?cluster_hops=1", a.port);
    assert!(
        player
            .events
            .contains(&ClientEvent::Redirected(Redirect { url })),
        "{:?}",
        player.events
    );
    let dump = Command::new("rtmpdump")
        .args(["-V", "-m", "5", "-o", "/dev/null", "-r"])
        .arg(b.url("x"))
        .output()
        .expect("running rtmpdump");
    let said = String::from_utf8_lossy(&dump.stderr);
    let redirect2 = format!("rtmp://127.0.0.1:{}/live/x?cluster_hops=1", a.port);
    assert!(said.contains("NUMBER:\t302.00"), "{said}");
    assert!(said.contains(&redirect2), "{said}");
    assert!(
        said.contains(&format!("rtmp://127.0.0.1:{}/live>", a.port)),
        "{said}"
    );
}

/// A stream nobody has: the player is refused at once, as SRS refuses it ("no origin"),
/// with one log line naming what each coworker said.
#[test]
fn a_stream_no_coworker_has_is_refused_with_what_each_said() {
    if !require("curl") {
        return;
    }
    let (a, b) = pair();
    let (status, body) = curl(&[], &b.flv_url("ghost"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no coworker has"), "{body}");
    let Err(refused) = Client::play(a.port, "ghost") else {
        panic!("a stream nobody has was played");
    };
    assert!(
        refused.contains("NetStream.Play.StreamNotFound"),
        "{refused}"
    );
    let line = format!("127.0.0.1:{}: not there", b.api_port);
    assert!(a.wait_log(&line, Duration::from_secs(5)), "{}", a.log());
}

/// A ringcast edge in front of the pair, listing both origins: its pull asks A, which sends
/// it to B, and its players get B's stream.
#[test]
fn an_edge_of_the_pair_finds_the_stream_on_either_origin() {
    if !require("ffmpeg") {
        return;
    }
    let (a, b) = pair();
    let _publisher = ffmpeg_publish(&b.url("e"));
    assert!(b.wait_log("publish __defaultVhost__/live/e", Duration::from_secs(10)));
    let edge = Server::start(
        1,
        "",
        &format!(
            "cluster {{ mode remote; origin 127.0.0.1:{} 127.0.0.1:{}; }}",
            a.port, b.port
        ),
    );
    let mut player = Client::play(edge.port, "e").expect("play on the edge");
    let media = player
        .media_for(Duration::from_secs(15), |m| m.iter().any(is_keyframe))
        .expect("the edge's player");
    assert!(
        media.iter().any(is_keyframe),
        "no keyframe through the edge"
    );
    assert!(a
        .log()
        .contains("redirect __defaultVhost__/live/e to rtmp://127.0.0.1:"));
}

/// A fake coworker: answers every clusters query with SRS's JSON placing the stream at
/// `rtmp`/`http` on 127.0.0.1. Lives until the test process ends.
fn fake_coworker(rtmp: u16, http: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!(
                r#"{{"code":0,"data":{{"query":{{}},"origin":{{"ip":"127.0.0.1","port":{rtmp},"vhost":"__defaultVhost__","api":"127.0.0.1:{port}","routers":[],"http_port":{http}}}}}}}"#
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Coworkers that lie, each naming the other origin for a stream neither has: the player
/// goes round at most twice and gets a clear error (HTTP 508, RTMP StreamNotFound), fast;
/// one that names the very server asked is not followed at all.
#[test]
fn a_redirect_loop_between_coworkers_ends_fast_in_an_error() {
    if !require("curl") {
        return;
    }
    let (a, b) = (Ports::free(), Ports::free());
    let says_b = fake_coworker(b.rtmp, b.http);
    let says_a = fake_coworker(a.rtmp, a.http);
    let a = Server::start_at(a, 2, "", &origin_vhost(&[says_b]), &[]);
    let b = Server::start_at(b, 2, "", &origin_vhost(&[says_a]), &[]);

    let started = Instant::now();
    let (status, body) = curl(&["-L", "--max-redirs", "10"], &b.flv_url("ghost"));
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("after 2 redirects"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(b.log().contains("a loop between coworkers"), "{}", b.log());

    let mut player = Client::play(b.port, "ghost").expect("play on B");
    player
        .until(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Redirected(_))
        })
        .expect("the redirect to A");
    let Err(refused) = Client::play(a.port, "ghost?cluster_hops=2") else {
        panic!("a player past its redirects was sent on");
    };
    assert!(
        refused.contains("NetStream.Play.StreamNotFound"),
        "{refused}"
    );

    let here = Ports::free();
    let says_here = fake_coworker(here.rtmp, here.http);
    let c = Server::start_at(here, 2, "", &origin_vhost(&[says_here]), &[]);
    let (status, body) = curl(&["-L"], &c.flv_url("ghost"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("names this very server"), "{body}");
}

/// An edge whose only origin is B, the stream published on A: B redirects the edge's pull
/// with an RTMP 302, the edge follows it to A, and its players (ffmpeg among them) play it.
#[test]
fn an_edge_follows_the_rtmp_302_of_its_origin() {
    if !require("ffmpeg") {
        return;
    }
    let (a, b) = pair();
    let _publisher = ffmpeg_publish(&a.url("f"));
    a.wait_frames_in("f", 20, Duration::from_secs(15));
    let edge = Server::start(
        1,
        "",
        &format!(
            "cluster {{ mode remote; origin 127.0.0.1:{}; }}\nhttp_remux {{ enabled on; }}",
            b.port
        ),
    );
    let mut player = Client::play(edge.port, "f").expect("play on the edge");
    let media = player
        .media_for(Duration::from_secs(15), |m| m.iter().any(is_keyframe))
        .expect("the edge's player");
    assert!(
        media.iter().any(is_keyframe),
        "no keyframe through the edge"
    );
    assert_ffmpeg_decoded(&ffmpeg_play(&edge.url("f"), 5), 60);
    let followed = format!(
        "edge pull __defaultVhost__/live/f: 127.0.0.1:{} redirects to 127.0.0.1:{}",
        b.port, a.port
    );
    assert!(edge.log().contains(&followed), "{}", edge.log());
    let playing = format!(
        "edge pull __defaultVhost__/live/f from 127.0.0.1:{}: playing",
        a.port
    );
    assert!(edge.log().contains(&playing), "{}", edge.log());
    let stream = edge.stream("f").expect("the edge lists the stream");
    assert_eq!(stream["edge"]["origin"], format!("127.0.0.1:{}", a.port));
}

/// POSTs `sdp` as a WHEP offer to `path` (with its query) on `port`: the status, the
/// `Location` header if any, and the body.
fn post_offer(port: u16, path: &str, sdp: &str) -> (u16, Option<String>, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{sdp}",
        sdp.len()
    )
    .expect("sending the offer");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reading the answer");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    (status, location, body.to_owned())
}

/// A stream published on A over RTMP and played over WebRTC (`rtmp_to_rtc`): a WHEP offer to
/// B gets a 307 to A's WHEP URL (A's API, where signalling is served), and the same offer
/// posted there gets A's 201 answer; an offer for a stream no coworker has gets B's 404.
#[test]
fn a_whep_offer_to_b_is_sent_with_a_307_to_a() {
    if !require("ffmpeg") {
        return;
    }
    let (a, b) = (Ports::free(), Ports::free());
    let vhost = |other: u16| {
        format!(
            "{}\nrtc {{ enabled on; rtmp_to_rtc on; }}",
            origin_vhost(&[other])
        )
    };
    let rtc = || {
        format!(
            "rtc_server {{ enabled on; listen 127.0.0.1:{}; candidate 127.0.0.1; }}",
            free_port()
        )
    };
    let a_server = Server::start_at(a, 1, &rtc(), &vhost(b.api), &[]);
    let b_server = Server::start_at(b, 1, &rtc(), &vhost(a.api), &[]);
    let _publisher = ffmpeg_publish(&a_server.url("w"));
    assert!(a_server.wait_log("publish __defaultVhost__/live/w", Duration::from_secs(10)));

    let mut rtc = str0m::Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    for kind in [
        str0m::media::MediaKind::Video,
        str0m::media::MediaKind::Audio,
    ] {
        api.add_media(kind, str0m::media::Direction::RecvOnly, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("an offer");
    let offer = offer.to_sdp_string();

    let (status, location, body) = post_offer(b.api, "/rtc/v1/whep/?app=live&stream=w", &offer);
    assert_eq!(status, 307, "{body}\n{}", b_server.log());
    let location = location.expect("a Location");
    let expected = format!(
        "http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=w&cluster_hops=1",
        a.api
    );
    assert_eq!(location, expected);
    let path = location
        .strip_prefix(&format!("http://127.0.0.1:{}", a.api))
        .expect("A's API");
    let (status, location, answer) = post_offer(a.api, path, &offer);
    assert_eq!(status, 201, "{answer}\n{}", a_server.log());
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(
        location.is_some_and(|l| l.starts_with("/rtc/v1/whep/?app=live&stream=w&session=")),
        "the session's URL"
    );

    let (status, location, body) = post_offer(b.api, "/rtc/v1/whep/?app=live&stream=ghost", &offer);
    assert_eq!((status, location), (404, None), "{body}");
    assert!(body.contains("no coworker has"), "{body}");
}
