//! HLS from memory: playlists (`.m3u8`) and segments (`.ts`) at their names under
//! `hls_path`, as the segmenters left them in the store ([`crate::state::HlsStore`]). Every
//! request for a segment shares its bytes. It answers from memory only: a path is a map key,
//! never a file name, and paths that could climb out of the tree are refused before the
//! lookup.

use std::sync::atomic::{AtomicU64, Ordering};

use super::parser::Request;
use super::reply::{error, ApiReply};
use crate::state::Shared;

/// Playlists change every segment: players must come back for them.
const PLAYLIST_CACHE: &str = "no-cache";
/// A segment never changes once named; its number only comes back after the stream was
/// disposed, so caches keep it an hour rather than a year.
const SEGMENT_CACHE: &str = "public, max-age=3600, immutable";

/// True for a path this module answers.
pub(super) fn is_hls(path: &str) -> bool {
    path.ends_with(".m3u8") || path.ends_with(".ts")
}

/// Answers a GET or HEAD of a playlist or segment.
pub(super) fn handle(req: &Request, shared: &Shared) -> ApiReply {
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
    let Some(body) = shared.hls.get(name) else {
        count(&stats.not_found, 1);
        return error(404, "no such playlist or segment");
    };
    if req.method == "GET" {
        count(&stats.bytes_sent, body.len() as u64);
    }
    let (content_type, cache) = if playlist {
        ("application/vnd.apple.mpegurl", PLAYLIST_CACHE)
    } else {
        ("video/mp2t", SEGMENT_CACHE)
    };
    ApiReply {
        status: 200,
        content_type,
        headers: vec![("Cache-Control", cache.into())],
        body,
    }
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
