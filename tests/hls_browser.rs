//! HLS end to end with a real player: hls.js (vendored from npm, tests/web/hls.min.js) in
//! Debian's headless Chromium plays ringcast's live playlist of an ffmpeg publish, from a
//! page this test serves (tests/web/hls.html); the page reports the video's currentTime,
//! hls.js's latency and any fatal error to the test's server (`common::browser`). The
//! playlist is on ringcast's HTTP server, another origin than the page's: its CORS headers
//! are part of what is tested. Four playlists: classic TS, fMP4, and LL-HLS with fMP4 and
//! with TS parts, whose hls.js latency must be under 4 s; one player at a time.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::browser::{self, chromium, number, Reports};
use common::{require, Server};

const PAGE: &str = include_str!("web/hls.html");
const HLS_JS: &[u8] = include_bytes!("web/hls.min.js");

/// Serves the page, set to play `url`, and hls.js; records the page's reports.
fn page_server(url: &str, low_latency: bool, reports: Reports) -> u16 {
    let page = PAGE
        .replace("__URL__", url)
        .replace("__LOW_LATENCY__", if low_latency { "on" } else { "off" });
    browser::page_server(
        move |path| match path {
            "/hls.html" => Some(("text/html", page.clone().into_bytes())),
            "/hls.min.js" => Some(("text/javascript", HLS_JS.to_vec())),
            _ => None,
        },
        reports,
    )
}

/// Publishes `stream` with ffmpeg (`codec_args`) to a server whose vhost has `hls`, plays it
/// in hls.js (in its low-latency mode with `low_latency`) until currentTime advanced `secs`
/// with no fatal error; returns the page's reports from the first that played on, the last
/// one last.
fn plays(
    stream: &str,
    hls: &str,
    codec_args: &[&str],
    low_latency: bool,
    secs: f64,
) -> Vec<HashMap<String, String>> {
    // One player at a time: Chromium decoding and an x264 encode per test, side by side on a
    // small machine, starve each other, and a starved player falls behind live for that alone.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        2,
        "",
        &format!(
            "hls {{ enabled on; hls_window 10; {hls} hls_path {}; }}",
            files.path().display()
        ),
    );
    let _ffmpeg = common::ffmpeg_publish_with(codec_args, &server.url(stream));
    let url = format!("http://127.0.0.1:{}/live/{stream}.m3u8", server.http_port);
    // hls.js takes a 404 on its first playlist load as fatal, as Safari does: the page opens
    // once the first segment is cut, as a player's would after a "stream is live" signal.
    common::wait_until(Duration::from_secs(20), "the first playlist", || {
        common::curl(&[], &url).0 == 200
    });
    let reports: Reports = Arc::default();
    let pages = page_server(&url, low_latency, reports.clone());
    let profile = tempfile::tempdir().expect("temp dir");
    let _player = chromium(
        &format!("http://127.0.0.1:{pages}/hls.html"),
        profile.path(),
    );
    let log = || server.log();
    // The first segments take a fragment or two to exist, then a playlist load and a fetch.
    let first = browser::wait_for(
        &reports,
        &log,
        ("hls", "time"),
        Duration::from_secs(40),
        |kv| number(kv, "time") > 0.0,
    );
    // Playing, not just buffered: currentTime advances across segments, with no fatal error.
    let since = std::time::Instant::now();
    let later = browser::wait_for(
        &reports,
        &log,
        ("hls", "time"),
        Duration::from_secs(30 + secs as u64),
        |kv| number(kv, "time") >= number(&first, "time") + secs,
    );
    assert!(browser::error(&reports).is_none());
    eprintln!(
        "hls.js {stream}: currentTime {} -> {}, latency {} s -> {} s (target {} s), {} s buffered \
         ahead, {} stalls",
        first["time"],
        later["time"],
        first["latency"],
        later["latency"],
        later["target"],
        later["ahead"],
        later["stalls"]
    );
    eprintln!(
        "hls.js {stream}: last report {later:?}, {:?} after the first",
        since.elapsed()
    );
    // In its low-latency mode hls.js reloads with `_HLS_skip=YES` once it holds the playlist:
    // it played on delta updates (the window, 10 s, is past the 6 s skip boundary).
    if low_latency {
        let (_, metrics) = common::curl(&[], &server.api_url("/metrics"));
        let m = common::parse_metrics(&metrics, "/metrics");
        let deltas = m["ringcast_hls_delta_playlists_total"].as_f64();
        assert!(deltas > Some(0.0), "{metrics}");
        eprintln!("hls.js {stream}: {deltas:?} delta updates served");
    }
    let played = reports.lock().expect("reports lock")["hls"]
        .iter()
        .filter(|kv| number(kv, "time") >= number(&first, "time"))
        .take_while(|kv| *kv != &later)
        .chain([&later])
        .cloned()
        .collect();
    played
}

#[test]
fn hls_js_in_chromium_plays_the_live_playlist() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    plays("hlscam", "hls_fragment 2;", &["-c", "copy"], false, 6.0);
}

#[test]
fn hls_js_in_chromium_plays_fmp4_segments() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    plays(
        "fmp4cam",
        "hls_fragment 2; hls_fmp4 on;",
        &["-c", "copy"],
        false,
        6.0,
    );
}

/// Plays LL-HLS (`hls_fragment 1`, 200 ms parts, plus `hls`) in hls.js's low-latency mode
/// for 12 s. hls.js's `latency` is its distance behind the playlist's live edge, which trails
/// the publisher by at most the part being written; two things must hold:
/// - the player got under 4 s behind live: its lowest `latency` while playing;
/// - the server kept the live edge coming all along: at the end, the edge is under 2 s past
///   the end of what the player has buffered (`latency` less `ahead`).
///
/// Not the last `latency` alone: a Chromium starved of CPU by the x264 encode beside it
/// stalls, hls.js then adds a second to its target and catches up at 1.5x only within a
/// target duration of it, so one stall of a few seconds leaves it that far behind for good,
/// with the edge, fetched on time, sitting in its buffer.
fn plays_with_low_latency(stream: &str, hls: &str) {
    let reports = plays(
        stream,
        &format!("hls_fragment 1; hls_ll on; hls_ll_part 0.2; {hls}"),
        common::SHORT_GOP,
        true,
        12.0,
    );
    let latencies: Vec<f64> = reports
        .iter()
        .map(|kv| number(kv, "latency"))
        .filter(|l| *l > 0.0)
        .collect();
    let lowest = latencies.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(lowest < 4.0, "hls.js latencies {latencies:?}");
    let last = reports.last().expect("a last report");
    let unbuffered = number(last, "latency") - number(last, "ahead");
    assert!(
        unbuffered < 2.0,
        "the live edge is {unbuffered:.3} s past the buffered end: {last:?}"
    );
    eprintln!("hls.js {stream}: lowest latency {lowest:.3} s, edge {unbuffered:.3} s past the buffer at the end");
}

#[test]
fn hls_js_in_chromium_plays_ll_hls_with_low_latency() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    plays_with_low_latency("llcam", "hls_fmp4 on;");
}

/// LL-HLS with TS parts (`hls_fmp4 off`), each starting with a PAT and PMT.
#[test]
fn hls_js_in_chromium_plays_ll_hls_over_ts() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    plays_with_low_latency("lltscam", "");
}
