//! HLS end to end with a real player: hls.js (vendored from npm, tests/web/hls.min.js) in
//! Debian's headless Chromium plays ringcast's live playlist of an ffmpeg publish, from a
//! page this test serves (tests/web/hls.html); the page reports the video's currentTime,
//! hls.js's latency and any fatal error to the test's server (`common::browser`). The
//! playlist is on ringcast's HTTP server, another origin than the page's: its CORS headers
//! are part of what is tested.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::browser::{self, chromium, number, Reports};
use common::{ffmpeg_publish, require, Server};

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

#[test]
fn hls_js_in_chromium_plays_the_live_playlist() {
    if !require("chromium") || !require("ffmpeg") {
        return;
    }
    let files = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        2,
        "",
        &format!(
            "hls {{ enabled on; hls_fragment 2; hls_window 10; hls_path {}; }}",
            files.path().display()
        ),
    );
    let _ffmpeg = ffmpeg_publish(&server.url("hlscam"));
    let url = format!("http://127.0.0.1:{}/live/hlscam.m3u8", server.http_port);
    // hls.js takes a 404 on its first playlist load as fatal, as Safari does: the page opens
    // once the first segment is cut, as a player's would after a "stream is live" signal.
    common::wait_until(Duration::from_secs(20), "the first playlist", || {
        common::curl(&[], &url).0 == 200
    });
    let reports: Reports = Arc::default();
    let pages = page_server(&url, false, reports.clone());
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
    let later = browser::wait_for(
        &reports,
        &log,
        ("hls", "time"),
        Duration::from_secs(30),
        |kv| number(kv, "time") >= number(&first, "time") + 6.0,
    );
    assert!(browser::error(&reports).is_none());
    eprintln!(
        "hls.js: currentTime {} -> {}, latency {} s (target {} s), {} s buffered ahead, {} stalls",
        first["time"],
        later["time"],
        later["latency"],
        later["target"],
        later["ahead"],
        later["stalls"]
    );
}
