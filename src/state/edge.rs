//! The edge's process-wide registry of pulls (SRS's `cluster { mode remote; }`): at most one
//! pull per stream, whichever core its players are on, with what the API, the metrics and
//! the periodic log show of it (the origin, since when, the reconnects, the bytes), and the
//! local addresses of the upstream connections, by which an edge that pulls from itself
//! recognises its own connection. A pull is wanted by its players and, for a while after
//! each request, by HLS players, which hold no connection. It keeps the bookkeeping only: the pull itself (sockets,
//! the RTMP client, the hub) is `server/edge.rs`'s, and nothing here reads a clock; callers
//! pass `now`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::hub::StreamKey;

/// Every pull of the process.
#[derive(Debug, Default)]
pub struct Edges {
    pulls: Mutex<HashMap<StreamKey, Arc<Pull>>>,
    /// Each upstream connection's (local, remote) addresses. Both, not the local port alone:
    /// Linux reuses an ephemeral port for connections to other destinations, so a player can
    /// come from the port a pull uses toward its origin.
    upstreams: Mutex<HashSet<(SocketAddr, SocketAddr)>>,
    /// Counters, for `/metrics`.
    pub stats: EdgeStats,
}

/// Process-wide edge counters.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Upstream plays that started (the origin answered `NetStream.Play.Start`).
    pub pulls: AtomicU64,
    /// Moves to the next origin of the list after one refused, was down or died.
    pub failovers: AtomicU64,
    /// Bytes received from origins by pulls.
    pub upstream_bytes: AtomicU64,
    /// Pulls that gave up after failing on every origin, closing their players.
    pub gave_up: AtomicU64,
}

/// One stream's pull.
#[derive(Debug)]
pub struct Pull {
    /// The stream pulled.
    pub key: StreamKey,
    /// Who wants it.
    wanted: Mutex<Wanted>,
    status: Mutex<PullStatus>,
    /// Reconnects after an upstream that had delivered media ended.
    pub reconnects: AtomicU64,
    /// Bytes received from the origins for this stream.
    pub bytes: AtomicU64,
}

/// Who wants a pull, by which it ends.
#[derive(Debug)]
struct Wanted {
    /// When a player last asked for it.
    asked: Instant,
    /// Until when it stays even with no player: HLS players hold no connection, so each of
    /// their requests holds the pull for as long as a player may go between two.
    held_until: Instant,
    /// Since when it has had no player (`None` while it has).
    idle_since: Option<Instant>,
}

/// Where a pull stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullStatus {
    /// The origin it uses or tries now, `HOST:PORT`.
    pub origin: String,
    /// Whether that origin plays the stream to it now.
    pub playing: bool,
    /// When it started with that origin.
    pub since: SystemTime,
}

impl Pull {
    /// Where it stands now.
    pub fn status(&self) -> PullStatus {
        self.status.lock().expect("pull lock poisoned").clone()
    }

    /// Records that it uses `origin` now, playing or still trying.
    pub fn set_status(&self, origin: &str, playing: bool) {
        let mut status = self.status.lock().expect("pull lock poisoned");
        if status.origin != origin || status.playing != playing {
            *status = PullStatus {
                origin: origin.to_owned(),
                playing,
                since: SystemTime::now(),
            };
        }
    }

    /// Counts `n` bytes received from the origin.
    pub fn count_bytes(&self, edges: &Edges, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        edges.stats.upstream_bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// Keeps an upstream connection's addresses known to [`Edges::is_upstream`] while it
/// lives.
#[derive(Debug)]
pub struct UpstreamAddr<'a> {
    edges: &'a Edges,
    addr: (SocketAddr, SocketAddr),
}

impl Drop for UpstreamAddr<'_> {
    fn drop(&mut self) {
        self.edges
            .upstreams
            .lock()
            .expect("edge lock poisoned")
            .remove(&self.addr);
    }
}

impl Edges {
    /// A player wants `key` at `now`: the new pull when there was none (the caller must run
    /// it), else `None` (one runs already, and now knows it is wanted).
    pub fn want(&self, key: &StreamKey, now: Instant) -> Option<Arc<Pull>> {
        self.want_until(key, now, now)
    }

    /// As [`Edges::want`], for a player that holds no connection (HLS): the pull also stays
    /// until `held_until`, players or not.
    pub fn want_until(
        &self,
        key: &StreamKey,
        now: Instant,
        held_until: Instant,
    ) -> Option<Arc<Pull>> {
        let mut pulls = self.pulls.lock().expect("edge lock poisoned");
        if let Some(pull) = pulls.get(key) {
            let mut wanted = pull.wanted.lock().expect("pull lock poisoned");
            wanted.asked = now;
            wanted.held_until = wanted.held_until.max(held_until);
            return None;
        }
        let pull = Arc::new(Pull {
            key: key.clone(),
            wanted: Mutex::new(Wanted {
                asked: now,
                held_until,
                idle_since: None,
            }),
            status: Mutex::new(PullStatus {
                origin: String::new(),
                playing: false,
                since: SystemTime::now(),
            }),
            reconnects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        pulls.insert(key.clone(), pull.clone());
        Some(pull)
    }

    /// Ends `pull` once it has had no player for `grace` (as `idle` says at each call),
    /// nobody asked for it meanwhile and no hold ([`Edges::want_until`]) lasts, atomically
    /// with [`Edges::want`], so that a player who asks meanwhile either keeps this pull or
    /// starts the next. True when it ended.
    pub fn end_if_idle(
        &self,
        pull: &Arc<Pull>,
        grace: Duration,
        now: Instant,
        idle: impl FnOnce() -> bool,
    ) -> bool {
        let mut pulls = self.pulls.lock().expect("edge lock poisoned");
        let mut wanted = pull.wanted.lock().expect("pull lock poisoned");
        if !idle() {
            wanted.idle_since = None;
            return false;
        }
        let since = *wanted.idle_since.get_or_insert(now);
        if now.saturating_duration_since(since.max(wanted.asked)) < grace || now < wanted.held_until
        {
            return false;
        }
        if pulls.get(&pull.key).is_some_and(|p| Arc::ptr_eq(p, pull)) {
            pulls.remove(&pull.key);
        }
        true
    }

    /// Ends `pull` whatever its players (it gave up).
    pub fn end(&self, pull: &Arc<Pull>) {
        let mut pulls = self.pulls.lock().expect("edge lock poisoned");
        if pulls.get(&pull.key).is_some_and(|p| Arc::ptr_eq(p, pull)) {
            pulls.remove(&pull.key);
        }
    }

    /// The pull of `key`, if one runs.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<Pull>> {
        self.pulls
            .lock()
            .expect("edge lock poisoned")
            .get(key)
            .cloned()
    }

    /// Remembers an upstream connection's `local` and `remote` addresses until the guard
    /// drops.
    pub fn upstream(&self, local: SocketAddr, remote: SocketAddr) -> UpstreamAddr<'_> {
        let addr = (local, remote);
        self.upstreams
            .lock()
            .expect("edge lock poisoned")
            .insert(addr);
        UpstreamAddr { edges: self, addr }
    }

    /// Whether a connection from `peer` to this server's `local` address is one of this
    /// process's own upstreams: an edge whose origin is itself.
    pub fn is_upstream(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        self.upstreams
            .lock()
            .expect("edge lock poisoned")
            .contains(&(peer, local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: &str) -> StreamKey {
        StreamKey {
            vhost: "v".into(),
            app: "live".into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn one_pull_per_stream_until_it_ends() {
        let edges = Edges::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let pull = edges
            .want(&key("a"), t0)
            .expect("the first player starts it");
        assert!(edges.want(&key("a"), t0).is_none(), "the second joins it");
        assert!(
            edges.want(&key("b"), t0).is_some(),
            "another stream, another pull"
        );
        let grace = Duration::from_secs(3);
        assert!(
            !edges.end_if_idle(&pull, grace, at(10), || false),
            "players"
        );
        assert!(
            !edges.end_if_idle(&pull, grace, at(11), || true),
            "the last one just left"
        );
        assert!(
            !edges.end_if_idle(&pull, grace, at(13), || true),
            "within the grace"
        );
        assert!(edges.end_if_idle(&pull, grace, at(14), || true));
        assert!(edges.get(&key("a")).is_none());
        assert!(
            edges.want(&key("a"), at(14)).is_some(),
            "the next player starts anew"
        );
    }

    #[test]
    fn a_player_back_within_the_grace_keeps_the_pull() {
        let edges = Edges::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let pull = edges.want(&key("a"), t0).unwrap();
        let grace = Duration::from_secs(3);
        assert!(!edges.end_if_idle(&pull, grace, at(10), || true));
        assert!(
            !edges.end_if_idle(&pull, grace, at(12), || false),
            "one is back"
        );
        assert!(
            !edges.end_if_idle(&pull, grace, at(14), || true),
            "the count restarts"
        );
        assert!(edges.end_if_idle(&pull, grace, at(17), || true));
    }

    #[test]
    fn a_late_player_keeps_the_pull() {
        let edges = Edges::default();
        let t0 = Instant::now();
        let pull = edges.want(&key("a"), t0).unwrap();
        let late = t0 + Duration::from_secs(5);
        assert!(edges.want(&key("a"), late).is_none());
        let grace = Duration::from_secs(3);
        assert!(!edges.end_if_idle(&pull, grace, late + Duration::from_secs(4), || true));
        assert!(
            !edges.end_if_idle(&pull, grace, late + Duration::from_secs(5), || true),
            "asked for at `late`, the first idle call at late + 4"
        );
        edges.end(&pull);
        assert!(edges.get(&key("a")).is_none());
    }

    #[test]
    fn a_hold_keeps_the_pull_without_players_then_the_grace_runs() {
        let edges = Edges::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let grace = Duration::from_secs(3);
        let pull = edges.want_until(&key("h"), t0, at(7)).unwrap();
        assert!(!edges.end_if_idle(&pull, grace, at(4), || true), "held");
        assert!(
            edges.want_until(&key("h"), at(5), at(12)).is_none(),
            "the next request joins it and holds it longer"
        );
        assert!(
            edges.want_until(&key("h"), at(6), at(8)).is_none(),
            "a shorter hold shortens nothing"
        );
        assert!(!edges.end_if_idle(&pull, grace, at(11), || true), "held");
        assert!(edges.end_if_idle(&pull, grace, at(12), || true));
    }

    #[test]
    fn upstream_addresses_live_as_long_as_their_guard() {
        let edges = Edges::default();
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let origin: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:19350".parse().unwrap();
        let guard = edges.upstream(addr, origin);
        assert!(edges.is_upstream(addr, origin));
        assert!(
            !edges.is_upstream(addr, other),
            "the same port toward another server is another connection"
        );
        drop(guard);
        assert!(!edges.is_upstream(addr, origin));
    }

    #[test]
    fn status_changes_restart_since() {
        let edges = Edges::default();
        let pull = edges.want(&key("a"), Instant::now()).unwrap();
        pull.set_status("o1:1935", false);
        let first = pull.status();
        pull.set_status("o1:1935", false);
        assert_eq!(pull.status(), first, "the same state keeps its start");
        pull.set_status("o1:1935", true);
        assert!(pull.status().playing);
        pull.count_bytes(&edges, 10);
        assert_eq!(edges.stats.upstream_bytes.load(Ordering::Relaxed), 10);
    }
}
