//! HLS from memory: playlists (`.m3u8`), segments (`.ts`, `.m4s`), init segments (`.mp4`)
//! and LL-HLS parts at their names under `hls_path`, as the segmenters left them in the store
//! ([`crate::state::HlsStore`]). Every request for a segment shares its bytes. It answers
//! from memory only: a path is a map key, never a file name, and paths that could climb out
//! of the tree are refused before the lookup.
//!
//! LL-HLS's blocking requests wait here, on the store's per-playlist notification, never on a
//! timer loop: a playlist reload with `_HLS_msn` (and `_HLS_part`) until the playlist has that
//! segment (part), and a GET of the part the playlist hints until it exists, each for three
//! target durations at most, after which the playlist as it is (or 404) is the answer.
//!
//! A segment's or part's reply carries its sealed memfd too, for the connection to send with
//! `sendfile`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::parser::Request;
use super::reply::{error, ApiReply};
use crate::hls::{reload, Edge};
use crate::state::{Live, Shared};

/// Playlists change every segment: players must come back for them.
const PLAYLIST_CACHE: &str = "no-cache";
/// A segment never changes once named; its number only comes back after the stream was
/// disposed, so caches keep it an hour rather than a year.
const SEGMENT_CACHE: &str = "public, max-age=3600, immutable";
/// How many target durations a blocking request waits at most (RFC 8216bis 6.2.5.2).
const HOLD_TARGETS: u64 = 3;

/// True for a path this module answers.
pub(super) fn is_hls(path: &str) -> bool {
    [".m3u8", ".ts", ".m4s", ".mp4"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Answers a GET or HEAD of a playlist or segment.
pub(super) async fn handle(req: &Request, shared: &Shared) -> ApiReply {
    let stats = &shared.hls.stats;
    let playlist = req.path.ends_with(".m3u8");
    let counter = if playlist {
        &stats.playlist_requests
    } else {
        &stats.segment_requests
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if req.method != "GET" && req.method != "HEAD" {
        return error(405, "HLS takes GET");
    }
    let Some(name) = safe_name(&req.path) else {
        return error(400, "bad HLS path");
    };
    // One lookup for a segment that is there, the request nearly every player makes.
    let body = if playlist {
        if let Some(live) = shared.hls.live(name) {
            if let Err(refused) = block_reload(&req.query, &live, shared).await {
                return refused;
            }
        }
        // A delta update where one was asked for and there is one (only LL-HLS has them).
        let delta = reload::wants_skip(&req.query)
            .then(|| shared.hls.get_delta(name))
            .flatten();
        if delta.is_some() {
            count(&stats.delta_playlists, 1);
        }
        delta.or_else(|| shared.hls.get(name))
    } else {
        match shared.hls.get(name) {
            Some(body) => Some(body),
            None => {
                if let Some((live, at)) = shared.hls.hinted(name) {
                    if let Err(refused) = hold(&live, move |e: &Edge| e.reached(at), shared).await {
                        return refused;
                    }
                }
                shared.hls.get(name)
            }
        }
    };
    let Some(body) = body else {
        count(&stats.not_found, 1);
        return error(404, "no such playlist or segment");
    };
    if req.method == "GET" {
        count(&stats.bytes_sent, body.data.len() as u64);
    }
    let (content_type, cache) = if playlist {
        ("application/vnd.apple.mpegurl", PLAYLIST_CACHE)
    } else if name.ends_with(".ts") {
        ("video/mp2t", SEGMENT_CACHE)
    } else {
        ("video/mp4", SEGMENT_CACHE)
    };
    ApiReply {
        status: 200,
        content_type,
        headers: vec![("Cache-Control", cache.into())],
        body: body.data,
        sealed: body.sealed,
    }
}

/// Holds an LL-HLS playlist request with `_HLS_msn` (and `_HLS_part`) until the playlist
/// has what it asks; a bad or far-future directive is refused with 400, as the spec says.
async fn block_reload(query: &str, live: &Arc<Live>, shared: &Shared) -> Result<(), ApiReply> {
    let want = match reload::parse(query) {
        Ok(None) => return Ok(()),
        Ok(Some(want)) => want,
        Err(e) => return Err(error(400, &e.to_string())),
    };
    let edge = live.edge();
    if edge.too_far(&want) {
        return Err(error(
            400,
            "_HLS_msn is more than two segments ahead of the playlist",
        ));
    }
    hold(live, move |e: &Edge| e.has(&want), shared).await
}

/// Waits until `ready` holds for `live`'s edge, three target durations at most; 503 when the
/// playlist's waiter list is full.
async fn hold(
    live: &Arc<Live>,
    ready: impl Fn(&Edge) -> bool + Unpin,
    shared: &Shared,
) -> Result<(), ApiReply> {
    let limit = Duration::from_millis((HOLD_TARGETS * live.edge().target_ms).clamp(1000, 60_000));
    let Some(wait) = live.wait(ready) else {
        count(&shared.hls.stats.waiters_full, 1);
        let mut busy = error(503, "too many blocked requests for this playlist");
        busy.headers.push(("Retry-After", "1".into()));
        return Err(busy);
    };
    // Past the limit the request is answered with what there is: a stalled publisher leaves
    // players with the last playlist, as a plain reload would.
    let _ = compio::time::timeout(limit, wait).await;
    Ok(())
}

fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The store key of `path`: without its leading `/`, and `None` for anything a file server
/// could read as leaving the tree (`..`, empty or `.` segments, backslashes, percent-escapes,
/// control bytes).
fn safe_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    let ok = !name.is_empty()
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'%');
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn paths_that_climb_are_refused() {
        assert_eq!(safe_name("/live/x.m3u8"), Some("live/x.m3u8"));
        assert_eq!(safe_name("/live/x-1.ts"), Some("live/x-1.ts"));
        assert!(super::is_hls("/live/x-1.2.m4s") && super::is_hls("/live/x-init-0.mp4"));
        for bad in [
            "/../etc/passwd.ts",
            "/live/../../x.ts",
            "//etc/x.ts",
            "/live/./x.ts",
            "/live/%2e%2e/x.ts",
            "/live\\..\\x.ts",
            "live/x.ts",
            "/",
        ] {
            assert_eq!(safe_name(bad), None, "{bad}");
        }
    }
}
