//! HLS end to end: ffmpeg publishes source.flv in real time, and ffmpeg plays the live
//! playlist from ringcast's HTTP server for 20 s with no decode error (the issue asks 30 s;
//! 20 s at `hls_fragment 2` already spans ten segments and keeps the file well under a
//! minute). Beside it, in parallel threads on the same publish: each segment decodes clean on
//! its own, the files under `hls_path` match what HTTP serves and expired ones are cleaned,
//! bad requests get 400/404, HEAD and the caching headers, the API's and metrics' HLS views;
//! on other streams: a republish's `#EXT-X-DISCONTINUITY` and the dispose of a stream that
//! stays away, and HEVC over enhanced RTMP and over FLV codec id 12 (ffmpeg 5 cannot publish
//! HEVC in FLV, so the test turns an x265 elementary stream into tags itself).
//!
//! fMP4 (`hls_fmp4 on`): ffmpeg plays the live playlist with no error, its init segment and a
//! segment probe as H.264 + AAC and decode, and the files match what HTTP serves. LL-HLS
//! (`hls_ll on`, a 1 s GOP re-encode so that parts start on keyframes): the playlist's parts,
//! hint and server control; a blocking reload that returns when its part appears; the hinted
//! part's GET that waits for it; 400 for a far-future `_HLS_msn` and bad values; and 10,000
//! pending reloads at once, of which the playlist's waiter cap holds 4096 and the rest get 503,
//! with the server's memory bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use std::time::Instant;

use common::{curl, ffmpeg_publish, poll_until, poll_until_every, wait_until, Client, Server};

const SECS_60: Duration = Duration::from_secs(60);

fn m3u8_url(server: &Server, name: &str) -> String {
    format!("http://127.0.0.1:{}/live/{name}.m3u8", server.http_port)
}

/// The playlist's segment URIs (the lines that are not tags).
fn segments(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn playlist(server: &Server, name: &str) -> Option<String> {
    let (status, body) = curl(&[], &m3u8_url(server, name));
    (status == 200).then_some(body)
}

/// Waits until `name`'s playlist lists at least `n` segments; returns it.
fn wait_segments(server: &Server, name: &str, n: usize, within: Duration) -> String {
    let mut last = None;
    let ok = poll_until(within, || {
        last = playlist(server, name);
        last.as_deref().is_some_and(|p| segments(p).len() >= n)
    });
    assert!(ok, "{name}: no {n} segments within {within:?}: {last:?}");
    last.expect("playlist")
}

/// `ffmpeg -v error -i INPUT ARGS -f null -`: its stderr, asserting it succeeded.
fn ffmpeg_null(input: &str, args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i", input])
        .args(args)
        .args(["-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg {input}: {stderr}");
    stderr
}

/// Downloads segment `uri` of `name`'s playlist into `dir`; returns the file.
fn fetch_segment(server: &Server, uri: &str, dir: &Path) -> PathBuf {
    let file = dir.join(uri.replace('/', "_"));
    let url = format!("http://127.0.0.1:{}/live/{uri}", server.http_port);
    let (status, _) = curl(&["-o", file.to_str().expect("utf-8")], &url);
    assert_eq!(status, 200, "GET {url}");
    file
}

fn config(hls_path: &Path) -> String {
    format!(
        "hls {{ enabled on; hls_fragment 2; hls_window 6; hls_dispose 4; hls_path {}; }}",
        hls_path.display()
    )
}

#[test]
fn hls_plays_segments_decode_and_bad_requests_fail_cleanly() {
    if !common::require("ffmpeg") || !common::require("curl") {
        return;
    }
    let files = tempfile::tempdir().expect("temp dir");
    let server = Server::start(2, "", &config(files.path()));
    let _publisher = ffmpeg_publish(&server.url("x"));
    wait_segments(&server, "x", 2, SECS_60);
    let server = &server;
    let files = files.path();
    std::thread::scope(|s| {
        s.spawn(|| {
            // A player of the live playlist for 20 s.
            let errors = ffmpeg_null(&m3u8_url(server, "x"), &["-t", "20"]);
            assert!(errors.trim().is_empty(), "decode errors: {errors}");
        });
        s.spawn(|| each_segment_decodes_and_matches_its_file(server, files));
        s.spawn(|| bad_requests_and_headers(server));
        s.spawn(|| republish_is_a_discontinuity_then_dispose(server, files));
        s.spawn(|| hevc_segments_decode(server));
    });
    // Expired segments leave the disk (hls_cleanup) and, past the grace, memory.
    let first = format!("http://127.0.0.1:{}/live/x-0.ts", server.http_port);
    assert_eq!(curl(&[], &first).0, 404, "x-0.ts is long expired");
    assert!(
        !files.join("live/x-0.ts").exists(),
        "x-0.ts was not cleaned"
    );
    let status = server.stream("x").expect("stream x");
    let hls = &status["hls"];
    assert!(hls["sequence"].as_u64().is_some_and(|s| s >= 8), "{status}");
    assert!(hls["segments"].as_u64().is_some_and(|n| n >= 3), "{status}");
    let (_, metrics) = curl(&[], &server.api_url("/metrics"));
    let m = common::parse_metrics(&metrics, "/metrics");
    assert!(
        m["ringcast_hls_requests_total{kind=segment}"].as_f64() > Some(10.0),
        "{metrics}"
    );
    assert!(m["ringcast_hls_sent_bytes_total"].as_f64() > Some(100_000.0));
    assert!(m["ringcast_hls_not_found_total"].as_f64() >= Some(2.0));
}

fn each_segment_decodes_and_matches_its_file(server: &Server, files: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let playlist = wait_segments(server, "x", 3, SECS_60);
    for uri in segments(&playlist) {
        let seg = fetch_segment(server, &uri, dir.path());
        let errors = ffmpeg_null(seg.to_str().expect("utf-8"), &[]);
        assert!(errors.trim().is_empty(), "{uri}: {errors}");
        let on_disk = std::fs::read(files.join("live").join(&uri));
        if let Ok(on_disk) = on_disk {
            assert_eq!(
                on_disk,
                std::fs::read(&seg).expect("segment"),
                "{uri} differs"
            );
        } else {
            // Only a segment that expired between the playlist and now may be gone.
            let now = playlist_now(server);
            assert!(!now.contains(&uri), "{uri} listed but not on disk");
        }
    }
    let on_disk = std::fs::read_to_string(files.join("live/x.m3u8")).expect("x.m3u8 on disk");
    assert!(on_disk.starts_with("#EXTM3U\n"), "{on_disk}");
    let leftovers: Vec<_> = std::fs::read_dir(files.join("live"))
        .expect("hls dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    // A .tmp only lives between a write and its rename.
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}

fn playlist_now(server: &Server) -> String {
    playlist(server, "x").unwrap_or_default()
}

fn bad_requests_and_headers(server: &Server) {
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let playlist = wait_segments(server, "x", 2, SECS_60);
    for tag in [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-MEDIA-SEQUENCE:",
        "#EXT-X-TARGETDURATION:2",
        "#EXTINF:",
    ] {
        assert!(playlist.contains(tag), "no {tag}: {playlist}");
    }
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let (status, head) = curl(&["-I"], &format!("{base}/live/x.m3u8"));
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    for h in [
        "content-type: application/vnd.apple.mpegurl",
        "cache-control: no-cache",
        "access-control-allow-origin: *",
        "content-length: ",
    ] {
        assert!(head.contains(h), "no {h}: {head}");
    }
    let uri = &segments(&playlist)[0];
    let (status, head) = curl(&["-I"], &format!("{base}/live/{uri}"));
    assert_eq!(status, 200, "HEAD {uri}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: video/mp2t"), "{head}");
    assert!(head.contains("immutable"), "{head}");
    for (path, want) in [
        ("/live/x-999999.ts", 404),
        ("/live/nobody.m3u8", 404),
        ("/live/../../etc/passwd.ts", 400),
        ("/live/%2e%2e/x.m3u8", 400),
        ("//live/x.m3u8", 400),
    ] {
        let (status, _) = curl(&["--path-as-is"], &format!("{base}{path}"));
        assert_eq!(status, want, "GET {path}");
    }
    let (status, _) = curl(&["-X", "POST"], &format!("{base}/live/x.m3u8"));
    assert_eq!(status, 405);
}

fn republish_is_a_discontinuity_then_dispose(server: &Server, files: &Path) {
    let publisher = ffmpeg_publish(&server.url("y"));
    wait_segments(server, "y", 2, SECS_60);
    drop(publisher);
    let _again = ffmpeg_publish(&server.url("y"));
    let mut last = String::new();
    let ok = poll_until(SECS_60, || {
        last = playlist(server, "y").unwrap_or_default();
        last.split("#EXT-X-DISCONTINUITY\n")
            .nth(1)
            .is_some_and(|after| !segments(after).is_empty())
    });
    assert!(ok, "no segment after a discontinuity: {last}");
    let seqs: Vec<u64> = segments(&last)
        .iter()
        .filter_map(|u| u.strip_prefix("y-")?.strip_suffix(".ts")?.parse().ok())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "numbers go on: {last}"
    );
    drop(_again);
    // Nobody comes back: after hls_dispose (4 s) the playlist and files are gone.
    wait_until(Duration::from_secs(30), "y disposed", || {
        playlist(server, "y").is_none() && !files.join("live/y.m3u8").exists()
    });
    let left: Vec<_> = std::fs::read_dir(files.join("live"))
        .expect("hls dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("y-"))
        .collect();
    assert!(left.is_empty(), "files of y left: {left:?}");
}

/// An x265 elementary stream (AUDs on, no B-frames, a keyframe a second) split into access
/// units.
fn hevc_access_units(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let file = dir.join("x.hevc");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25")
        .args([
            "-t",
            "7",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-x265-params",
            "aud=1:bframes=0:keyint=25:min-keyint=25:log-level=error",
        ])
        .args(["-f", "hevc"])
        .arg(&file)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let data = std::fs::read(&file).expect("x.hevc");
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(data[s..end].to_vec());
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(data[s..].to_vec());
    }
    let mut units: Vec<Vec<Vec<u8>>> = Vec::new();
    for nal in nals {
        if (nal[0] >> 1) & 0x3f == 35 {
            units.push(Vec::new());
        } else if let Some(u) = units.last_mut() {
            u.push(nal);
        }
    }
    units
}

/// An HEVCDecoderConfigurationRecord with 4-byte lengths and the VPS, SPS and PPS arrays.
fn hvcc(params: &[Vec<u8>]) -> Vec<u8> {
    let mut r = vec![
        1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 60, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f,
    ];
    r.push(params.len() as u8);
    for p in params {
        r.push(0x80 | ((p[0] >> 1) & 0x3f));
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    r
}

fn hevc_segments_decode(server: &Server) {
    if !common::require("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let units = hevc_access_units(dir.path());
    assert!(units.len() > 150, "{} access units", units.len());
    let params: Vec<Vec<u8>> = units[0]
        .iter()
        .filter(|n| matches!((n[0] >> 1) & 0x3f, 32..=34))
        .cloned()
        .collect();
    for (name, enhanced) in [("h", true), ("h12", false)] {
        let mut c = Client::publish(server.port, name).expect("publish");
        let record = hvcc(&params);
        let config = if enhanced {
            [&[0x90][..], b"hvc1", &record].concat()
        } else {
            [&[0x1c, 0, 0, 0, 0][..], &record].concat()
        };
        send_video(&mut c, 0, &config);
        for (i, unit) in units.iter().enumerate() {
            let key = unit.iter().any(|n| matches!((n[0] >> 1) & 0x3f, 16..=21));
            let mut body = if enhanced {
                [&[if key { 0x93 } else { 0xa3 }][..], b"hvc1"].concat()
            } else {
                vec![if key { 0x1c } else { 0x2c }, 1, 0, 0, 0]
            };
            for nal in unit
                .iter()
                .filter(|n| !matches!((n[0] >> 1) & 0x3f, 32..=34))
            {
                body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                body.extend_from_slice(nal);
            }
            send_video(&mut c, i as u32 * 40, &body);
        }
        let playlist = wait_segments(server, name, 3, SECS_60);
        for uri in segments(&playlist) {
            let seg = fetch_segment(server, &uri, dir.path());
            // ffprobe lists the program's streams, then the streams: HEVC alone, twice.
            let codecs = common::probe_codecs(&seg);
            assert!(
                !codecs.is_empty() && codecs.iter().all(|c| c == "hevc"),
                "{name} {uri}: {codecs:?}"
            );
            let errors = ffmpeg_null(seg.to_str().expect("utf-8"), &[]);
            assert!(errors.trim().is_empty(), "{name} {uri}: {errors}");
        }
    }
}

fn send_video(c: &mut Client, timestamp: u32, body: &[u8]) {
    let tag = ringcast::flv::Tag {
        type_id: 9,
        timestamp,
        data: bytes::Bytes::copy_from_slice(body),
    };
    c.send(&tag, timestamp).expect("send");
}

fn fmp4_config(hls_path: &Path, extra: &str) -> String {
    let window = if extra.contains("hls_window") {
        ""
    } else {
        "hls_window 8;"
    };
    format!(
        "hls {{ enabled on; hls_fmp4 on; {window} hls_dispose 4; {extra} hls_path {}; }}",
        hls_path.display()
    )
}

#[test]
fn hls_fmp4_plays_decodes_and_matches_its_files() {
    if !common::require("ffmpeg") || !common::require("ffprobe") || !common::require("curl") {
        return;
    }
    let files = tempfile::tempdir().expect("temp dir");
    let server = Server::start(2, "", &fmp4_config(files.path(), "hls_fragment 2;"));
    let _publisher = ffmpeg_publish(&server.url("fx"));
    let playlist = wait_segments(&server, "fx", 3, SECS_60);
    for tag in [
        "#EXT-X-VERSION:7\n",
        "#EXT-X-MAP:URI=\"fx-init-0.mp4\"\n",
        "#EXTINF:",
    ] {
        assert!(playlist.contains(tag), "no {tag}: {playlist}");
    }
    assert!(!playlist.contains("#EXT-X-PART"), "{playlist}");
    let uris = segments(&playlist);
    assert!(uris.iter().all(|u| u.ends_with(".m4s")), "{playlist}");
    let dir = tempfile::tempdir().expect("temp dir");
    let init = fetch_segment(&server, "fx-init-0.mp4", dir.path());
    let seg = fetch_segment(&server, &uris[1], dir.path());
    let joined = dir.path().join("joined.mp4");
    let bytes = [
        std::fs::read(&init).expect("init"),
        std::fs::read(&seg).expect("segment"),
    ]
    .concat();
    std::fs::write(&joined, &bytes).expect("write");
    let mut codecs = common::probe_codecs(&joined);
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"], "init + {}", uris[1]);
    let errors = ffmpeg_null(joined.to_str().expect("utf-8"), &[]);
    assert!(errors.trim().is_empty(), "{}: {errors}", uris[1]);
    for (served, name) in [(&init, "fx-init-0.mp4"), (&seg, uris[1].as_str())] {
        let on_disk = std::fs::read(files.path().join("live").join(name));
        if let Ok(on_disk) = on_disk {
            assert_eq!(
                on_disk,
                std::fs::read(served).expect("read"),
                "{name} differs"
            );
        } else {
            assert!(name != "fx-init-0.mp4", "the init segment is not on disk");
        }
    }
    let (status, head) = curl(
        &["-I"],
        &format!("http://127.0.0.1:{}/live/{}", server.http_port, uris[0]),
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: video/mp4"),
        "{head}"
    );
    // A player of the live playlist: 10 s with no decode error.
    let errors = ffmpeg_null(&m3u8_url(&server, "fx"), &["-t", "10"]);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
}

/// One request on a fresh connection: the status, the body and how long the answer took.
fn get(port: u16, target: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body, start.elapsed())
}

/// The (segment, index) of a part URI `NAME-S.I.m4s`.
fn part_at(uri: &str, name: &str) -> Option<(u64, u64)> {
    let rest = uri
        .strip_prefix(&format!("{name}-"))?
        .strip_suffix(".m4s")?;
    let (s, i) = rest.split_once('.')?;
    Some((s.parse().ok()?, i.parse().ok()?))
}

/// The URIs of an LL playlist's `#EXT-X-PART` tags, in order.
fn parts(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| Some(l.split("URI=\"").nth(1)?.split('"').next()?.to_owned()))
        .collect()
}

fn hint(playlist: &str) -> Option<String> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    Some(line.split("URI=\"").nth(1)?.split('"').next()?.to_owned())
}

#[test]
fn ll_hls_parts_blocking_reloads_and_bounded_waiters() {
    if !common::require("ffmpeg") || !common::require("curl") {
        return;
    }
    let files = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        2,
        "max_connections 12000;",
        &fmp4_config(
            files.path(),
            "hls_ll on; hls_ll_part 0.2; hls_fragment 1; hls_window 16;",
        ),
    );
    let _publisher = common::ffmpeg_publish_with(common::SHORT_GOP, &server.url("ll"));
    let playlist = wait_segments(&server, "ll", 3, SECS_60);
    for tag in [
        "#EXT-X-VERSION:7\n",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=",
        "#EXT-X-PART-INF:PART-TARGET=0.200\n",
        "#EXT-X-MAP:URI=\"ll-init-0.mp4\"",
        ",INDEPENDENT=YES\n",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ll-",
    ] {
        assert!(playlist.contains(tag), "no {tag}: {playlist}");
    }
    let port = server.http_port;
    std::thread::scope(|s| {
        s.spawn(|| {
            // ffmpeg plays the segments of an LL playlist (it ignores the parts).
            let errors = ffmpeg_null(&m3u8_url(&server, "ll"), &["-t", "8"]);
            assert!(errors.trim().is_empty(), "decode errors: {errors}");
        });
        s.spawn(|| blocking_reload_returns_when_its_part_appears(port));
        s.spawn(|| the_hinted_part_waits_for_itself(port));
    });
    directives_out_of_range_are_refused(port);
    delta_updates_skip_the_old_segments(port);
    many_pending_reloads_are_bounded(&server);
    // Parts are memory only; segments, the init segment and a playlist without LL's tags are
    // on disk.
    let on_disk = std::fs::read_to_string(files.path().join("live/ll.m3u8")).expect("ll.m3u8");
    assert!(
        !on_disk.contains("PART") && on_disk.contains("#EXT-X-MAP"),
        "{on_disk}"
    );
    assert!(files.path().join("live/ll-init-0.mp4").exists());
}

/// Once the 16 s window holds segments older than the skip boundary (six target durations,
/// 6 or 12 s), a reload with `_HLS_skip=YES` gets the delta update: the playlist's newest
/// segments after an `#EXT-X-SKIP` counting the others, at the same media sequence; a plain
/// reload the whole.
fn delta_updates_skip_the_old_segments(port: u16) {
    let mut delta = String::new();
    common::wait_until(SECS_60, "a delta update", || {
        let (status, body, _) = get(port, "/live/ll.m3u8?_HLS_skip=YES");
        delta = body;
        status == 200 && delta.contains("#EXT-X-SKIP")
    });
    let (_, whole, _) = get(port, "/live/ll.m3u8");
    let skipped: usize = delta
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no EXT-X-SKIP: {delta}"));
    assert!(delta.contains("#EXT-X-VERSION:9\n"), "{delta}");
    assert!(!whole.contains("EXT-X-SKIP"), "{whole}");
    let sequence = |p: &str| {
        p.lines()
            .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE"))
            .map(str::to_owned)
    };
    let (kept, all) = (segments(&delta), segments(&whole));
    // A part may have finished a segment between the two requests.
    if sequence(&delta) == sequence(&whole) && kept.last() == all.last() {
        assert_eq!(kept, all[skipped..], "{delta}\n{whole}");
    }
    assert!(skipped >= 1 && kept.len() >= 5, "{delta}");
}

fn blocking_reload_returns_when_its_part_appears(port: u16) {
    for _ in 0..5 {
        let (_, playlist, _) = get(port, "/live/ll.m3u8");
        let newest = parts(&playlist)
            .iter()
            .filter_map(|u| part_at(u, "ll"))
            .max()
            .expect("parts");
        let (msn, part) = (newest.0, newest.1 + 1);
        let (status, body, took) = get(
            port,
            &format!("/live/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        );
        assert_eq!(status, 200, "{body}");
        let got = parts(&body)
            .iter()
            .filter_map(|u| part_at(u, "ll"))
            .max()
            .expect("parts");
        assert!(
            got >= (msn, part) || got.0 > msn,
            "asked {msn}.{part}, got {got:?}: {body}"
        );
        // It waited for the part, not for a target duration or three.
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
    // A reload for the next segment returns once that segment is listed.
    let (_, playlist, _) = get(port, "/live/ll.m3u8");
    let last: u64 = segments(&playlist)
        .last()
        .and_then(|u| u.strip_prefix("ll-")?.strip_suffix(".m4s")?.parse().ok())
        .expect("a segment");
    let (status, body, took) = get(port, &format!("/live/ll.m3u8?_HLS_msn={}", last + 1));
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("\nll-{}.m4s\n", last + 1)),
        "{took:?}: {body}"
    );
}

fn the_hinted_part_waits_for_itself(port: u16) {
    for _ in 0..5 {
        let (_, playlist, _) = get(port, "/live/ll.m3u8");
        let hinted = hint(&playlist).expect("a hint");
        let (status, body, took) = get(port, &format!("/live/{hinted}"));
        assert_eq!(status, 200, "GET {hinted}: {body}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let (_, later, _) = get(port, "/live/ll.m3u8");
        assert!(
            later.contains(&format!("URI=\"{hinted}\"")) || !later.contains(&hinted),
            "{hinted} served but not listed: {later}"
        );
    }
}

fn directives_out_of_range_are_refused(port: u16) {
    let (_, playlist, _) = get(port, "/live/ll.m3u8");
    let last = parts(&playlist)
        .iter()
        .filter_map(|u| part_at(u, "ll"))
        .max()
        .expect("parts")
        .0;
    for query in [
        format!("_HLS_msn={}", last + 3),
        format!("_HLS_msn={}&_HLS_part=0", last + 10),
        "_HLS_msn=abc".to_owned(),
        "_HLS_msn=-1".to_owned(),
        "_HLS_part=2".to_owned(),
        "_HLS_msn=1&_HLS_part=".to_owned(),
        "_HLS_msn=1&_HLS_msn=2".to_owned(),
        "_HLS_msn=99999999999999999999999".to_owned(),
    ] {
        let (status, body, took) = get(port, &format!("/live/ll.m3u8?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(took < Duration::from_secs(1), "{query} was held");
    }
}

/// Raises this process's open-file limit to `want` (the server raises its own).
fn raise_nofile(want: u64) -> bool {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    soft >= want || (hard >= want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok())
}

fn many_pending_reloads_are_bounded(server: &Server) {
    const PENDING: usize = 10_000;
    const CAP: usize = 4096;
    if !raise_nofile(PENDING as u64 + 1000) {
        eprintln!("SKIPPED: 10,000 pending reloads need an open-file limit above 11000");
        return;
    }
    // A stream that stalls: 5 s of media sent at once, then nothing on an open publish, so
    // that a reload for the next segment waits its full three target durations.
    let mut stalled = Client::publish(server.port, "stall").expect("publish");
    for tag in common::media_tags()
        .iter()
        .take_while(|t| t.timestamp <= 5000)
    {
        stalled.send(tag, tag.timestamp).expect("send");
    }
    let playlist = wait_segments(server, "stall", 2, SECS_60);
    let next = segments(&playlist).len() as u64;
    let port = server.http_port;
    let rss_before = common::rss_kib(server.pid());
    let mut conns: Vec<TcpStream> = (0..PENDING)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let request = format!("GET /live/stall.m3u8?_HLS_msn={next} HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    for c in &mut conns {
        c.write_all(request.as_bytes()).expect("send");
    }
    let metric = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    };
    let (mut blocked_peak, mut refused) = (0, 0);
    poll_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, metrics) = curl(&[], &server.api_url("/metrics"));
        let waiting = metric(&metrics, "ringcast_hls_waiting");
        refused = metric(&metrics, "ringcast_hls_waiters_full_total");
        blocked_peak = blocked_peak.max(waiting);
        refused + waiting >= PENDING
    });
    let rss_peak = common::rss_kib(server.pid());
    let (mut ok, mut busy) = (0, 0);
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut head = [0u8; 12];
        c.read_exact(&mut head).expect("an answer to each");
        match &head[9..12] {
            b"200" => ok += 1,
            b"503" => busy += 1,
            other => panic!("status {}", String::from_utf8_lossy(other)),
        }
    }
    let grew_mib = rss_peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "{PENDING} pending reloads: {ok} held and answered 200, {busy} answered 503 at the cap \
         ({blocked_peak} blocked at the peak), in {:?}; server RSS {} -> {} MiB",
        started.elapsed(),
        rss_before / 1024,
        rss_peak / 1024
    );
    assert_eq!(ok + busy, PENDING);
    assert!(
        blocked_peak <= CAP,
        "{blocked_peak} blocked at once, past the cap"
    );
    assert!(busy > 0 && blocked_peak > 0, "{ok} held, {busy} refused");
    // A connection's buffers and task, not a copy of the playlist per waiter.
    assert!(
        grew_mib < 400,
        "server RSS grew {grew_mib} MiB for {PENDING} connections"
    );
}
