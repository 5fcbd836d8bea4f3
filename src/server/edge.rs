//! The edge (SRS's `vhost { cluster { mode remote; origin A B; } }`): the driver of a pull,
//! which plays a stream from the origins with ringcast's RTMP client and publishes it into the
//! hub as the stream's Source, exactly as a local publisher would, so every way out (RTMP,
//! HTTP-FLV, WebRTC) serves it unchanged and the edge's vhost's HLS and DVR start as for a
//! publisher ([`super::consumers`]); and the edge publish, which relays a publisher to the
//! origin through the forward's client ([`super::forward`]).
//!
//! One pull per stream per process ([`crate::state::edge::Edges`]), on the core of the player
//! that asked first. Origins are tried in order; one that redirects (an origin cluster's
//! RTMP 302) is followed to the server it names, a few times and never round in a loop
//! ([`Hops`]), for pulls and edge publishes alike; one that refuses, is down, dies, stalls or
//! sends garbage gives way to the next, and after [`ROUNDS`] rounds of the list without media
//! the pull gives up and closes its players. It ends [`GRACE`] after its last player; HLS
//! players, which hold no connection, want it by their requests ([`hls_request`]), each of
//! which holds it a while. It owns the upstream sockets only: players, fan-out, the HLS
//! store and the API stay where they are.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use super::consumers::{self, Producer};
use super::error::{ConnError, EdgeError};
use super::forward;
use crate::config::{Config, VhostHls, DEFAULT_VHOST};
use crate::hub::{Consumer, PublishGuard};
use crate::hub::{StreamKey, StreamSettings};
use crate::media::MediaKind;
use crate::rtmp::client::{ClientEvent, ClientSession, Redirect};
use crate::rtmp::session::SessionError;
use crate::runtime::Connection;
use crate::state::edge::Pull;
use crate::state::Shared;

/// How long a pull outlives its last player: a player that reconnects, or the next one of a
/// popular stream, finds it running.
pub(crate) const GRACE: Duration = Duration::from_secs(3);
/// How long connect, handshake and play may take, and how long an upstream that plays may
/// stay silent: SRS's `SRS_EDGE_INGESTER_TIMEOUT`.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a pull looks at its players, to end [`GRACE`] after the last.
const CHECK: Duration = Duration::from_millis(250);
/// Rounds of the whole origin list without media before the pull gives up: with the backoff,
/// about 6 s, which an origin that restarts (and its encoder) must fit in for the players to
/// stay.
const ROUNDS: u32 = 6;
/// The pause after the first round that failed; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bytes a read of the upstream takes at most: whole 60000-byte chunks.
const READ_BUFFER: usize = 64 * 1024;

/// How one upstream attempt failed.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("starting to play: {0}")]
    Setup(forward::ForwardError),
    #[error("bad data from the origin: {0}")]
    Session(#[from] SessionError),
    #[error("play refused: {0}")]
    Refused(String),
    #[error("timed out connecting or starting to play")]
    Timeout,
    #[error("the origin closed the connection")]
    Closed,
    #[error("the origin sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("the stream is published on this edge now")]
    PublishedHere,
    #[error("redirected to {}", .0.url)]
    Redirected(Redirect),
    #[error("{0}")]
    Redirect(RedirectError),
}

/// RTMP 302s followed from one origin of the list at most: an origin cluster sends a player
/// on once (SRS), twice when the stream moves meanwhile (ringcast's `cluster_hops` bound),
/// so a fourth means servers that keep sending the edge round.
const MAX_REDIRECTS: usize = 3;

/// Why an RTMP 302 was not followed.
#[derive(Debug, thiserror::Error)]
enum RedirectError {
    /// The redirect names no `rtmp://host[:port]/...`.
    #[error("RTMP 302 to {0}, which names no rtmp://host[:port]/app: not followed")]
    BadUrl(String),
    /// The redirect names a server this chain of redirects went through already.
    #[error("RTMP 302 loop: {server} again after {chain}, not followed")]
    Loop {
        /// The server named again.
        server: String,
        /// The servers visited, in order.
        chain: String,
    },
    /// More than [`MAX_REDIRECTS`] in a row.
    #[error("more than {MAX_REDIRECTS} RTMP 302s in a row ({chain}), not followed")]
    TooMany {
        /// The servers visited, in order.
        chain: String,
    },
}

/// The servers one origin of the list and its redirects led to, by which the next redirect
/// is followed or refused.
#[derive(Debug)]
struct Hops {
    visited: Vec<String>,
}

impl Hops {
    fn new(origin: &str) -> Self {
        Self {
            visited: vec![origin.to_ascii_lowercase()],
        }
    }

    /// The server (`host:port`) to try next, as `redirect` says, or why not: a loop, too
    /// many redirects, or a URL that names none.
    fn next(&mut self, redirect: &Redirect) -> Result<String, RedirectError> {
        let server = redirect
            .server()
            .ok_or_else(|| RedirectError::BadUrl(redirect.url.clone()))?;
        let chain = || self.visited.join(" -> ");
        if self.visited.contains(&server.to_ascii_lowercase()) {
            let chain = chain();
            return Err(RedirectError::Loop { server, chain });
        }
        if self.visited.len() > MAX_REDIRECTS {
            return Err(RedirectError::TooMany { chain: chain() });
        }
        self.visited.push(server.to_ascii_lowercase());
        Ok(server)
    }
}

/// How an attempt ended.
enum Attempt {
    /// No player is left: the pull is over.
    Idle,
    /// It failed; `flowed` when media had arrived first.
    Failed { error: PullError, flowed: bool },
}

/// Refuses an RTMP player whose connection is one of this process's own pulls: an edge whose
/// origin is itself, which would otherwise wait on itself.
pub(crate) fn refuse_loop(
    shared: &Shared,
    key: &StreamKey,
    (peer, local): (SocketAddr, Option<SocketAddr>),
) -> Result<(), EdgeError> {
    if local.is_some_and(|local| shared.edges.is_upstream(peer, local)) {
        tracing::error!("edge pull {key}: the origin is this server itself, check `origin`");
        return Err(EdgeError::Loop(key.to_string()));
    }
    Ok(())
}

/// A player wants `key`: on an edge vhost, starts its pull when none runs, on this core.
/// `query` is the player's, passed on with `token_traverse on;`. Nothing to do elsewhere.
pub(crate) fn want(shared: &Arc<Shared>, key: &StreamKey, settings: &StreamSettings, query: &str) {
    let now = Instant::now();
    want_until(shared, key, settings, query, (now, now));
}

/// As [`want`], at `now`, the pull also staying until `held_until` with no player.
fn want_until(
    shared: &Arc<Shared>,
    key: &StreamKey,
    settings: &StreamSettings,
    query: &str,
    (now, held_until): (Instant, Instant),
) {
    let config = shared.config();
    let cluster = &config.vhost(&key.vhost).cluster;
    if !cluster.is_edge() {
        return;
    }
    let Some(pull) = shared.edges.want_until(key, now, held_until) else {
        return;
    };
    let query = if cluster.token_traverse { query } else { "" };
    let target = Target {
        key: key.clone(),
        settings: settings.clone(),
        origins: cluster.origin.clone(),
        stream: stream_with_query(key, query),
    };
    compio::runtime::spawn(run(shared.clone(), pull, target)).detach();
}

/// An HLS request for `path` (a playlist or a segment, `query` its query string): on an edge
/// vhost with `hls {}` whose `hls_m3u8_file` or `hls_ts_file` names it, the request wants the
/// stream's pull as a player does (the same pull as RTMP, HTTP-FLV and WebRTC players), and
/// holds it for [`hls_hold`], since an HLS player holds no connection. A playlist that does
/// not exist yet is waited for, at most [`first_playlist_wait`], or until the pull gives up,
/// rather than answered 404 at once: the first 404 is fatal to hls.js and Safari. The caller
/// answers from the store afterwards, 404 if it is still not there. Nothing to do for other
/// paths and vhosts.
pub(crate) async fn hls_request(shared: &Arc<Shared>, path: &str, query: &str) {
    let Some(name) = path.strip_prefix('/') else {
        return;
    };
    let config = shared.config();
    let Some((vhost, app, stream, playlist)) = hls_stream(&config, name) else {
        return;
    };
    let hls = &config.vhost(vhost).hls;
    let (key, settings) = shared.stream(vhost, &app, &stream);
    let now = Instant::now();
    want_until(shared, &key, &settings, query, (now, now + hls_hold(hls)));
    if !playlist || shared.hls.get(name).is_some() {
        return;
    }
    let wait = first_playlist_wait(hls);
    let deadline = now + wait;
    while Instant::now() < deadline {
        compio::time::sleep(HLS_POLL).await;
        if shared.hls.get(name).is_some() {
            return;
        }
        if shared.edges.get(&key).is_none() {
            // The pull gave up (and said why in the log): no playlist is coming.
            return;
        }
    }
    tracing::warn!("edge hls {key}: no playlist {name} after {wait:?}");
}

/// How often a waiting HLS request looks for its playlist.
const HLS_POLL: Duration = Duration::from_millis(100);
/// The longest an HLS request waits for a first playlist, whatever `hls_fragment` says.
const HLS_WAIT_MAX: Duration = Duration::from_secs(30);

/// The target duration of `hls`'s segments: `hls_fragment` times `hls_td_ratio`.
fn target_duration(hls: &VhostHls) -> Duration {
    let secs = hls.fragment.as_secs_f64() * hls.td_ratio.max(1.0);
    Duration::try_from_secs_f64(secs).map_or(HLS_WAIT_MAX, |d| d.min(HLS_WAIT_MAX))
}

/// How long one HLS request holds a pull: a playing HLS player asks about once a target
/// duration (it reloads the live playlist that often, RFC 8216 6.3.4, and fetches each new
/// segment), so twice that covers a late reload, and [`GRACE`] follows, as after the last
/// connected player.
fn hls_hold(hls: &VhostHls) -> Duration {
    GRACE + target_duration(hls) * 2
}

/// How long a request for a playlist that does not exist yet waits: the pull's start
/// ([`UPSTREAM_TIMEOUT`] at most) and the first segment, cut at the first keyframe past a
/// target duration (up to two of them when the origin's GOP cache starts it late); at most
/// [`HLS_WAIT_MAX`].
fn first_playlist_wait(hls: &VhostHls) -> Duration {
    (UPSTREAM_TIMEOUT + target_duration(hls) * 2).min(HLS_WAIT_MAX)
}

/// The edge vhost with HLS on whose playlist (`true`) or other file (`false`) `name` is, and
/// its app and stream.
fn hls_stream<'c>(config: &'c Config, name: &str) -> Option<(&'c str, String, String, bool)> {
    let playlist = name.ends_with(".m3u8");
    config
        .vhosts
        .iter()
        .filter(|v| v.enabled && v.cluster.is_edge() && v.hls.enabled)
        .find_map(|v| {
            let (app, stream) = if playlist {
                match_hls_name(&v.hls.m3u8_file, &v.name, name)?
            } else {
                file_templates(&v.hls)
                    .iter()
                    .find_map(|t| match_hls_name(t, &v.name, name))?
            };
            Some((v.name.as_str(), app, stream, playlist))
        })
}

/// The templates of the files besides the playlist that `hls`'s segmenter names: its segments
/// (`hls_ts_file`, `.m4s` with `hls_fmp4`), and, named from the playlist's (`[stem].m3u8`),
/// its init segments (`[stem]-init-N.mp4`) and LL-HLS parts (`[stem]-[seq].N.ts|m4s`).
fn file_templates(hls: &VhostHls) -> [String; 3] {
    let stem = hls
        .m3u8_file
        .strip_suffix(".m3u8")
        .unwrap_or(&hls.m3u8_file);
    let ext = if hls.fmp4 { "m4s" } else { "ts" };
    [
        super::hls::segment_file(&hls.ts_file, hls.fmp4),
        format!("{stem}-init-[seq].mp4"),
        format!("{stem}-[seq].[seq].{ext}"),
    ]
}

/// Longest HLS file name matched: stream names are short, and the match's cost grows with
/// the name.
const HLS_NAME_MAX: usize = 512;
/// The variables the segmenter fills in file names besides `[vhost]`, `[app]` and
/// `[stream]` (SRS's): numbers all, so each stands for one or more digits (and a stream
/// `a-b` is told from `[stream]-[seq]`'s `-12`); `[app]` and `[stream]` stand for one or
/// more characters other than `/`.
const HLS_NAME_VARIABLES: &[&str] = &[
    "[seq]",
    "[timestamp]",
    "[duration]",
    "[2006]",
    "[01]",
    "[02]",
    "[15]",
    "[04]",
    "[05]",
    "[999]",
];

/// A piece of an HLS file name template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    App,
    Stream,
    Variable,
}

/// `(app, stream)` when the HLS file `name` (its URL path without the leading `/`) fits
/// `template` (`hls_m3u8_file` or `hls_ts_file` of vhost `vhost`). A name that could climb
/// out of the tree (`.`, `..`, backslashes, escapes) fits nothing.
fn match_hls_name(template: &str, vhost: &str, name: &str) -> Option<(String, String)> {
    if name.len() > HLS_NAME_MAX {
        return None;
    }
    let pieces = template_pieces(template.trim_start_matches('/'), vhost);
    let mut state = Match {
        pieces: &pieces,
        name: name.as_bytes(),
        failed: vec![false; (pieces.len() + 1) * (name.len() + 1)],
        app: None,
        stream: None,
    };
    if !state.from(0, 0) {
        return None;
    }
    let take = |range: Option<(usize, usize)>| {
        let v = name.get(range?.0..range?.1)?;
        let ok = v != "."
            && v != ".."
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'%');
        ok.then(|| v.to_owned())
    };
    Some((take(state.app)?, take(state.stream)?))
}

/// `template` cut into text and variables, `[vhost]` as its text.
fn template_pieces<'a>(mut template: &'a str, vhost: &'a str) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    while !template.is_empty() {
        let next = template.match_indices('[').find_map(|(i, _)| {
            let rest = &template[i..];
            let piece = match rest {
                r if r.starts_with("[app]") => Piece::App,
                r if r.starts_with("[stream]") => Piece::Stream,
                r if r.starts_with("[vhost]") => Piece::Text(vhost),
                r if HLS_NAME_VARIABLES.iter().any(|v| r.starts_with(v)) => Piece::Variable,
                _ => return None,
            };
            let len = rest.find(']').map_or(rest.len(), |e| e + 1);
            Some((i, len, piece))
        });
        match next {
            Some((i, len, piece)) => {
                if i > 0 {
                    pieces.push(Piece::Text(&template[..i]));
                }
                pieces.push(piece);
                template = &template[i + len..];
            }
            None => {
                pieces.push(Piece::Text(template));
                template = "";
            }
        }
    }
    pieces
}

/// A match of a name against a template's pieces: a search over (piece, position) that
/// marks the states that failed, so that it visits each once (no exponential backtracking
/// on a name built to cause it).
struct Match<'p, 'a> {
    pieces: &'p [Piece<'a>],
    name: &'p [u8],
    failed: Vec<bool>,
    app: Option<(usize, usize)>,
    stream: Option<(usize, usize)>,
}

impl Match<'_, '_> {
    /// Whether pieces `i..` fit the name from byte `at`; on success `app` and `stream` hold
    /// the ranges of the path that fit.
    fn from(&mut self, i: usize, at: usize) -> bool {
        let state = i * (self.name.len() + 1) + at;
        if self.failed[state] {
            return false;
        }
        let fits = match self.pieces.get(i).copied() {
            None => at == self.name.len(),
            Some(Piece::Text(t)) => {
                self.name[at..].starts_with(t.as_bytes()) && self.from(i + 1, at + t.len())
            }
            Some(piece) => {
                let stop = |b: u8| b == b'/' || (piece == Piece::Variable && !b.is_ascii_digit());
                let end = self.name[at..]
                    .iter()
                    .position(|&b| stop(b))
                    .map_or(self.name.len(), |p| at + p);
                let found = (at + 1..=end).find(|&e| self.from(i + 1, e));
                if let Some(e) = found {
                    match piece {
                        Piece::App => self.app = Some((at, e)),
                        Piece::Stream => self.stream = Some((at, e)),
                        _ => {}
                    }
                }
                found.is_some()
            }
        };
        if !fits {
            self.failed[state] = true;
        }
        fits
    }
}

/// What a pull plays, and from where.
struct Target {
    key: StreamKey,
    settings: StreamSettings,
    origins: Vec<String>,
    /// The stream name as the origin gets it: `stream?query&vhost=v` as SRS builds it.
    stream: String,
}

/// The stream name with the query an origin needs: the player's (with `token_traverse`) and
/// the vhost, unless the default, as SRS's `srs_generate_stream_with_query` does.
fn stream_with_query(key: &StreamKey, query: &str) -> String {
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let has_vhost = params.iter().any(|p| p.starts_with("vhost="));
    if !has_vhost && key.vhost != DEFAULT_VHOST {
        params.push(format!("vhost={}", key.vhost));
    }
    if params.is_empty() {
        key.stream.clone()
    } else {
        format!("{}?{}", key.stream, params.join("&"))
    }
}

/// The pull of one stream, until its players are gone or it gives up.
async fn run(shared: Arc<Shared>, pull: Arc<Pull>, target: Target) {
    let key = &target.key;
    let mut failed_rounds = 0u32;
    let mut backoff = BACKOFF_MIN;
    let mut last_error = None;
    loop {
        if shared.hub.get(key).is_some_and(|s| s.publisher().is_some()) {
            // An edge publish of this stream: its players are served here, nothing to pull.
            if idle_for(&shared, &pull, CHECK).await {
                return finish(&pull);
            }
            continue;
        }
        let mut progressed = false;
        for (i, origin) in target.origins.iter().enumerate() {
            let (cid, outcome) = follow(&shared, &pull, &target, origin).await;
            match outcome {
                Attempt::Idle => return finish(&pull),
                Attempt::Failed { error, flowed: f } => {
                    if f {
                        pull.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    // Media came, or a publish here took over: not a failed round.
                    progressed |= f;
                    if matches!(error, PullError::PublishedHere) {
                        tracing::info!(cid, "edge pull {key}: {error}, not pulling");
                        progressed = true;
                        break;
                    }
                    let next = target.origins.get(i + 1);
                    if let Some(next) = next {
                        shared.edges.stats.failovers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            cid,
                            "edge pull {key} from {origin}: {error}; trying {next}"
                        );
                    } else {
                        tracing::warn!(cid, "edge pull {key} from {origin}: {error}");
                    }
                    last_error = Some(format!("{origin}: {error}"));
                }
            }
        }
        if progressed {
            failed_rounds = 0;
            backoff = BACKOFF_MIN;
            // Not at once: an origin that plays a moment and drops must not spin the pull.
            if idle_for(&shared, &pull, BACKOFF_MIN).await {
                return finish(&pull);
            }
            continue;
        }
        failed_rounds += 1;
        if failed_rounds >= ROUNDS {
            let why = last_error.as_deref().unwrap_or("no origin");
            give_up(&shared, &pull, why);
            return;
        }
        if idle_for(&shared, &pull, backoff).await {
            return finish(&pull);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Waits `pause`; true when the pull ended meanwhile for want of players.
async fn idle_for(shared: &Shared, pull: &Arc<Pull>, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        if ended_idle(shared, pull) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        compio::time::sleep(CHECK.min(until - now)).await;
    }
}

/// Ends the pull when no player wanted it for [`GRACE`] and none plays it.
fn ended_idle(shared: &Shared, pull: &Arc<Pull>) -> bool {
    shared.edges.end_if_idle(pull, GRACE, Instant::now(), || {
        shared.hub.get(&pull.key).is_none_or(|s| {
            // The stream's own HLS and DVR consume it for as long as it is pulled: they
            // are what the pull feeds, not who wants it.
            let all = s.stats.consumers.load(Ordering::Relaxed);
            all.saturating_sub(s.stats.own_consumers.load(Ordering::Relaxed)) == 0
        })
    })
}

fn finish(pull: &Pull) {
    tracing::info!(
        "edge pull {} from {} done: no player for {GRACE:?}",
        pull.key,
        pull.status().origin
    );
}

/// Every origin failed [`ROUNDS`] times: closes the stream's players, so that they see an
/// error and not an endless wait.
fn give_up(shared: &Shared, pull: &Arc<Pull>, why: &str) {
    shared.edges.end(pull);
    shared.edges.stats.gave_up.fetch_add(1, Ordering::Relaxed);
    let players: Vec<_> = shared
        .clients
        .all()
        .into_iter()
        .filter(|c| c.key == pull.key && !c.kind.is_publish())
        .collect();
    tracing::error!(
        "edge pull {}: giving up after {ROUNDS} rounds of its origins (last {why}); closing {} player(s)",
        pull.key,
        players.len()
    );
    for c in players {
        c.kick();
    }
}

/// The attempts at one origin of the list: the origin, then each server its RTMP 302s name
/// (an origin cluster sends the edge to the coworker that has the stream), at most
/// [`MAX_REDIRECTS`] and never back to one of them. The outcome is the last attempt's, with
/// its connection id.
async fn follow(
    shared: &Arc<Shared>,
    pull: &Arc<Pull>,
    target: &Target,
    origin: &str,
) -> (u64, Attempt) {
    let mut hops = Hops::new(origin);
    let mut server = origin.to_owned();
    let mut flowed = false;
    loop {
        pull.set_status(&server, false);
        let cid = shared.next_conn_id();
        let redirect = match attempt(shared, pull, target, &server, cid).await {
            Attempt::Failed {
                error: PullError::Redirected(r),
                flowed: f,
            } => {
                flowed |= f;
                r
            }
            Attempt::Failed { error, flowed: f } => {
                let flowed = flowed || f;
                return (cid, Attempt::Failed { error, flowed });
            }
            Attempt::Idle => return (cid, Attempt::Idle),
        };
        match hops.next(&redirect) {
            Ok(next) => {
                let (key, url) = (&target.key, &redirect.url);
                tracing::info!(cid, "edge pull {key}: {server} redirects to {next} ({url})");
                server = next;
            }
            Err(e) => {
                let error = PullError::Redirect(e);
                return (cid, Attempt::Failed { error, flowed });
            }
        }
    }
}

/// One upstream connection: connect, play, then publish what arrives into the hub until the
/// players are gone or the upstream fails.
async fn attempt(
    shared: &Arc<Shared>,
    pull: &Arc<Pull>,
    target: &Target,
    origin: &str,
    cid: u64,
) -> Attempt {
    let failed = |error| Attempt::Failed {
        error,
        flowed: false,
    };
    let conn = match Connection::connect(origin, UPSTREAM_TIMEOUT, READ_BUFFER).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return failed(e.into()),
        Err(_) => return failed(PullError::Timeout),
    };
    let ends = conn.socket().local_addr().and_then(|local| {
        let remote = conn.socket().peer_addr()?;
        Ok((local, remote))
    });
    let (local, remote) = match ends {
        Ok(ends) => ends,
        Err(e) => return failed(e.into()),
    };
    let _known = shared.edges.upstream(local, remote);
    let tc_url = format!("rtmp://{origin}/{}", target.key.app);
    let mut session = ClientSession::play(&tc_url, &target.stream, &mut rand::thread_rng());
    let setup = forward::until_started(&conn, &mut session, &ClientEvent::Playing);
    match compio::time::timeout(UPSTREAM_TIMEOUT, setup).await {
        Ok(Ok(())) => {}
        Ok(Err(forward::ForwardError::Redirected(to))) => return failed(PullError::Redirected(to)),
        Ok(Err(e)) => return failed(PullError::Setup(e)),
        Err(_) => return failed(PullError::Timeout),
    }
    let mut feed = Feed {
        shared,
        pull,
        target,
        cid,
        guard: None,
        last_input: Instant::now(),
    };
    // What came with the play's start, first: SRS's and ringcast's origin clusters start
    // the play, then redirect, and that is no play of this server.
    if let Err(error) = feed.publish(&mut session) {
        let flowed = feed.guard.is_some();
        return Attempt::Failed { error, flowed };
    }
    shared.edges.stats.pulls.fetch_add(1, Ordering::Relaxed);
    pull.set_status(origin, true);
    tracing::info!(cid, "edge pull {} from {origin}: playing", target.key);
    let result = {
        let reader = pin!(feed.read(&conn, session));
        let idle = pin!(until_idle(shared, pull));
        match select(reader, idle).await {
            Either::Left((r, _)) => r,
            Either::Right(((), _)) => Ok(()),
        }
    };
    let flowed = feed.guard.is_some();
    match result {
        Ok(()) => Attempt::Idle,
        Err(error) => Attempt::Failed { error, flowed },
    }
}

/// Resolves when the pull ended for want of players.
async fn until_idle(shared: &Shared, pull: &Arc<Pull>) {
    loop {
        compio::time::sleep(CHECK).await;
        if ended_idle(shared, pull) {
            return;
        }
    }
}

/// What one upstream feeds into the hub.
struct Feed<'a> {
    shared: &'a Arc<Shared>,
    pull: &'a Arc<Pull>,
    target: &'a Target,
    cid: u64,
    /// Taken at the first media, so that an upstream that plays nothing holds no publish.
    guard: Option<PublishGuard>,
    last_input: Instant,
}

impl Feed<'_> {
    /// Reads the upstream until it fails: it never ends well ([`until_idle`] ends a pull).
    async fn read(
        &mut self,
        conn: &Connection,
        mut session: ClientSession,
    ) -> Result<(), PullError> {
        loop {
            self.publish(&mut session)?;
            while let Some(b) = session.poll_transmit() {
                conn.write_all(b).await?;
            }
            let deadline = self.last_input + UPSTREAM_TIMEOUT;
            let input = match conn.read_some_by(deadline).await {
                Ok(r) => r?,
                Err(_) => return Err(PullError::Stalled(UPSTREAM_TIMEOUT)),
            };
            if input.is_empty() {
                return Err(PullError::Closed);
            }
            self.last_input = Instant::now();
            let n = input.len() as u64;
            self.pull.count_bytes(&self.shared.edges, n);
            self.shared.stats.bytes_in.fetch_add(n, Ordering::Relaxed);
            session.handle_input(&input)?;
        }
    }

    /// Moves the session's media into the hub.
    fn publish(&mut self, session: &mut ClientSession) -> Result<(), PullError> {
        while let Some(ev) = session.poll_event() {
            let m = match ev {
                ClientEvent::Media(m) => m,
                ClientEvent::Refused(why) => return Err(PullError::Refused(why)),
                ClientEvent::Redirected(to) => return Err(PullError::Redirected(to)),
                _ => continue,
            };
            let Some(kind) = MediaKind::from_type_id(m.type_id) else {
                continue;
            };
            let guard = match &mut self.guard {
                Some(g) => g,
                None => {
                    let t = self.target;
                    let g = self
                        .shared
                        .hub
                        .publish(&t.key, &t.settings, self.cid)
                        .map_err(|_| PullError::PublishedHere)?;
                    let producer = Producer::EdgePull(self.cid);
                    consumers::start(self.shared, &t.key, &t.settings, producer);
                    self.guard.insert(g)
                }
            };
            guard.push(kind, m.timestamp, m.payload);
        }
        Ok(())
    }
}

/// For a publish on an edge vhost: the origin that took it (the first of the list that
/// does), connected and publishing; `None` on other vhosts. `query` is the publisher's,
/// passed on with `token_traverse on;`.
pub(super) async fn publish_upstream(
    shared: &Shared,
    key: &StreamKey,
    settings: &StreamSettings,
    query: &str,
) -> Result<Option<Upstream>, EdgeError> {
    let config = shared.config();
    let cluster = &config.vhost(&key.vhost).cluster;
    if !cluster.is_edge() {
        return Ok(None);
    }
    let query = if cluster.token_traverse { query } else { "" };
    let stream = stream_with_query(key, query);
    let mut last = None;
    for origin in &cluster.origin {
        match publish_following(origin, key, &stream, settings.chunk_size).await {
            Ok((server, conn, session)) => {
                return Ok(Some(Upstream {
                    origin: server,
                    conn,
                    session,
                }));
            }
            Err(e) => {
                tracing::warn!("edge publish {key} to {origin}: {e}");
                last = Some((origin.clone(), e));
            }
        }
    }
    let last = last.map_or_else(|| "no origin".to_owned(), |(o, e)| format!("{o}: {e}"));
    Err(EdgeError::PublishRefused(format!("{key}, last {last}")))
}

/// Why an edge publish's origin did not take it.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("{0}")]
    Origin(#[from] forward::ForwardError),
    #[error("{0}")]
    Redirect(#[from] RedirectError),
}

/// Publishes `stream` of `key`'s app to `origin`, following its RTMP 302s as a pull does
/// ([`Hops`]); the server that took it, connected and publishing.
async fn publish_following(
    origin: &str,
    key: &StreamKey,
    stream: &str,
    chunk_size: u32,
) -> Result<(String, Connection, ClientSession), UpstreamError> {
    let mut hops = Hops::new(origin);
    let mut server = origin.to_owned();
    loop {
        let tc_url = format!("rtmp://{server}/{}", key.app);
        match forward::connect_publish(&server, &tc_url, stream, chunk_size).await {
            Ok((conn, session)) => return Ok((server, conn, session)),
            Err(forward::ForwardError::Redirected(to)) => {
                let next = hops.next(&to)?;
                tracing::info!(
                    "edge publish {key}: {server} redirects to {next} ({})",
                    to.url
                );
                server = next;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// An edge publish's connection to its origin.
pub(super) struct Upstream {
    origin: String,
    conn: Connection,
    session: ClientSession,
}

/// Runs the publisher's `work` and, beside it, the relay of what it publishes to the origin
/// of `upstream`; the origin failing ends the publish, as in SRS (the encoder reconnects and
/// finds the next origin).
pub(super) async fn beside<F: Future<Output = Result<(), ConnError>>>(
    upstream: Option<Upstream>,
    shared: &Arc<Shared>,
    key: &StreamKey,
    settings: &StreamSettings,
    work: Pin<&mut F>,
) -> Result<(), ConnError> {
    let Some(up) = upstream else {
        return work.await;
    };
    tracing::info!("edge publish {key} to {}", up.origin);
    let consumer = Consumer::subscribe(&shared.hub, key, settings);
    let relay = pin!(forward::relay(&up.conn, up.session, consumer));
    match select(work, relay).await {
        Either::Left((r, _)) => r,
        Either::Right((Ok(forward::End::Unpublished), _)) => Ok(()),
        Either::Right((Err(error), _)) => {
            Err(EdgeError::PublishLost(format!("{key} to {}: {error}", up.origin)).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vhost: &str) -> StreamKey {
        StreamKey {
            vhost: vhost.into(),
            app: "live".into(),
            stream: "s".into(),
        }
    }

    #[test]
    fn redirects_are_followed_a_few_times_and_never_in_a_loop() {
        let to = |url: &str| Redirect { url: url.into() };
        let mut hops = Hops::new("10.0.0.1:1935");
        assert_eq!(
            hops.next(&to("rtmp://10.0.0.2:1935/live")).unwrap(),
            "10.0.0.2:1935"
        );
        assert!(matches!(
            hops.next(&to("rtmp://10.0.0.1/live/s?x")),
            Err(RedirectError::Loop { server, chain })
                if server == "10.0.0.1:1935" && chain == "10.0.0.1:1935 -> 10.0.0.2:1935"
        ));
        assert!(matches!(
            hops.next(&to("http://10.0.0.3/live")),
            Err(RedirectError::BadUrl(_))
        ));
        assert_eq!(hops.next(&to("rtmp://B:1/live")).unwrap(), "B:1");
        assert!(matches!(
            hops.next(&to("rtmp://b:1/live")),
            Err(RedirectError::Loop { .. })
        ));
        assert_eq!(hops.next(&to("rtmp://c:1/live")).unwrap(), "c:1");
        assert!(matches!(
            hops.next(&to("rtmp://d:1/live")),
            Err(RedirectError::TooMany { .. })
        ));
    }

    #[test]
    fn hls_names_give_their_stream() {
        let m = |t, n| match_hls_name(t, "v", n);
        let pair = |a: &str, s: &str| Some((a.to_owned(), s.to_owned()));
        assert_eq!(m("[app]/[stream].m3u8", "live/s.m3u8"), pair("live", "s"));
        assert_eq!(
            m("[app]/[stream]-[seq].ts", "live/s-12.ts"),
            pair("live", "s")
        );
        assert_eq!(
            m("[app]/[stream]-[seq].ts", "live/a-b-12.ts"),
            pair("live", "a-b")
        );
        assert_eq!(
            m(
                "/[vhost]/[app]/[stream]/[2006][01][02]-[seq].ts",
                "v/live/s/20261204-3.ts"
            ),
            pair("live", "s")
        );
        assert_eq!(m("[vhost]/[app]/[stream].m3u8", "w/live/s.m3u8"), None);
        assert_eq!(m("[app]/[stream].m3u8", "live/s.ts"), None);
        assert_eq!(m("[app]/[stream].m3u8", "../s.m3u8"), None);
        assert_eq!(m("[app]/[stream].m3u8", "live/x/s.m3u8"), None);
        assert_eq!(m("[app]/[stream].m3u8", "live/%2e.m3u8"), None);
        assert_eq!(m("[app]/[stream].m3u8", "/.m3u8"), None);
        assert_eq!(
            m("hls/[app]-[stream].m3u8", "hls/live-s.m3u8"),
            pair("live", "s")
        );
        assert_eq!(m("[app]/[unknown].m3u8", "live/[unknown].m3u8"), None);
        let mut hls = VhostHls {
            fmp4: true,
            ..VhostHls::default()
        };
        let files = |hls: &VhostHls, n: &str| {
            file_templates(hls)
                .iter()
                .find_map(|t| match_hls_name(t, "v", n))
        };
        assert_eq!(files(&hls, "live/s-12.m4s"), pair("live", "s"));
        assert_eq!(files(&hls, "live/s-init-0.mp4"), pair("live", "s"));
        assert_eq!(files(&hls, "live/s-12.3.m4s"), pair("live", "s"));
        assert_eq!(files(&hls, "live/s-12.ts"), None);
        hls.fmp4 = false;
        assert_eq!(files(&hls, "live/s-12.ts"), pair("live", "s"));
        assert_eq!(files(&hls, "live/s-12.3.ts"), pair("live", "s"));
        assert_eq!(files(&hls, "live/s-12.m4s"), None);
        // Many variables and a long name that almost fits: each state is tried once.
        let long = format!("live/{}.ts", "1-".repeat(250));
        assert_eq!(m("[app]/[stream]-[seq]-[seq]-[seq]-[seq].tsx", &long), None);
        assert_eq!(
            m(
                "[app]/[stream].m3u8",
                &format!("live/{}.m3u8", "s".repeat(600))
            ),
            None
        );
    }

    #[test]
    fn the_origin_gets_the_vhost_and_the_query_as_srs_builds_them() {
        assert_eq!(stream_with_query(&key(DEFAULT_VHOST), ""), "s");
        assert_eq!(stream_with_query(&key("v"), ""), "s?vhost=v");
        assert_eq!(stream_with_query(&key("v"), "token=t"), "s?token=t&vhost=v");
        assert_eq!(
            stream_with_query(&key("v"), "vhost=w&token=t"),
            "s?vhost=w&token=t"
        );
        assert_eq!(stream_with_query(&key(DEFAULT_VHOST), "a=1"), "s?a=1");
    }
}
