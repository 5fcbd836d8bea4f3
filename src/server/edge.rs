//! The edge (SRS's `vhost { cluster { mode remote; origin A B; } }`): the driver of a pull,
//! which plays a stream from the origins with ringcast's RTMP client and publishes it into the
//! hub as the stream's Source, exactly as a local publisher would, so every way out (RTMP,
//! HTTP-FLV, WebRTC) serves it unchanged; and the edge publish, which relays a publisher to
//! the origin through the forward's client ([`super::forward`]).
//!
//! One pull per stream per process ([`crate::state::edge::Edges`]), on the core of the player
//! that asked first. Origins are tried in order; one that refuses, is down, dies, stalls or
//! sends garbage gives way to the next, and after [`ROUNDS`] rounds of the list without media
//! the pull gives up and closes its players. It ends [`GRACE`] after its last player. It owns
//! the upstream sockets only: players, fan-out and the API stay where they are.

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
use crate::config::DEFAULT_VHOST;
use crate::hub::{Consumer, PublishGuard};
use crate::hub::{StreamKey, StreamSettings};
use crate::media::MediaKind;
use crate::rtmp::client::{ClientEvent, ClientSession};
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
    let config = shared.config();
    let cluster = &config.vhost(&key.vhost).cluster;
    if !cluster.is_edge() {
        return;
    }
    let Some(pull) = shared.edges.want(key, Instant::now()) else {
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
            pull.set_status(origin, false);
            let cid = shared.next_conn_id();
            match attempt(&shared, &pull, &target, origin, cid).await {
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
        Ok(Err(e)) => return failed(PullError::Setup(e)),
        Err(_) => return failed(PullError::Timeout),
    }
    shared.edges.stats.pulls.fetch_add(1, Ordering::Relaxed);
    pull.set_status(origin, true);
    tracing::info!(cid, "edge pull {} from {origin}: playing", target.key);
    let mut feed = Feed {
        shared,
        pull,
        target,
        cid,
        guard: None,
        last_input: Instant::now(),
    };
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
        let tc_url = format!("rtmp://{origin}/{}", key.app);
        match forward::connect_publish(origin, &tc_url, &stream, settings.chunk_size).await {
            Ok((conn, session)) => {
                return Ok(Some(Upstream {
                    origin: origin.clone(),
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
