//! The load tool behind `ringcast-bench`: many RTMP, HTTP-FLV or HLS players, or RTMP publishers,
//! from one process, on the same runtime as the server (worker threads on io_uring or epoll),
//! with per-client bitrate and SEI-stamped latency that work through any server (ringcast,
//! SRS, nginx-rtmp).
//!
//! Workers own their clients; the reporting thread only reads atomics. Map: [`sei`] (latency
//! stamps), [`Stats`] (counters), [`rtmp`] (the player and publisher tasks), [`flv`] (the
//! HTTP-FLV player task), [`hls`] (the HLS player task) and [`ts`] (its MPEG-TS demuxer),
//! [`whep`] (WebRTC players and publishers), [`rtp_count`] (light WebRTC players' packet and
//! loss accounting), [`report`] (bench.sh's table and chart).

#![forbid(unsafe_code)]

pub mod flv;
pub mod hls;
pub mod report;
pub mod rtmp;
pub mod rtp_count;
pub mod sei;
pub mod ts;
pub mod whep;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Latency histogram buckets: one per millisecond up to this, then one for everything above.
pub const LATENCY_BUCKETS: usize = 10_000;

/// A client's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Not started, or connecting.
    Connecting = 0,
    /// Receiving (players) or sending (publishers).
    Alive = 1,
    /// Failed or disconnected.
    Failed = 2,
}

/// Counters shared between the workers and the reporter.
#[derive(Debug)]
pub struct Stats {
    /// Bytes received (players) or sent (publishers), per client.
    pub bytes: Vec<AtomicU64>,
    /// [`ClientState`] per client.
    pub state: Vec<AtomicU8>,
    /// Latency samples, per millisecond.
    pub latency: Vec<AtomicU64>,
}

impl Stats {
    /// Counters for `clients` clients.
    pub fn new(clients: usize) -> Self {
        Self {
            bytes: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            state: (0..clients).map(|_| AtomicU8::new(0)).collect(),
            latency: (0..=LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one latency sample.
    pub fn latency_ms(&self, ms: u64) {
        let i = usize::try_from(ms)
            .unwrap_or(usize::MAX)
            .min(LATENCY_BUCKETS);
        self.latency[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a client's state.
    pub fn set_state(&self, client: usize, state: ClientState) {
        self.state[client].store(state as u8, Ordering::Relaxed);
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            bytes: self
                .bytes
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            latency: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            alive: self
                .state
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) == ClientState::Alive as u8)
                .count(),
            failed: self
                .state
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) == ClientState::Failed as u8)
                .count(),
        }
    }
}

/// The counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    bytes: Vec<u64>,
    latency: Vec<u64>,
    /// Clients alive.
    pub alive: usize,
    /// Clients failed.
    pub failed: usize,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Clients alive at the end.
    pub alive: usize,
    /// Clients failed at the end.
    pub failed: usize,
    /// Total megabits per second.
    pub mbps: f64,
    /// Per-client kilobits per second: minimum, median, maximum (alive clients).
    pub kbps: [u64; 3],
    /// Latency percentiles in ms: p50, p95, p99 (None without samples).
    pub latency: Option<[u64; 3]>,
    /// Latency samples.
    pub samples: u64,
}

impl Snapshot {
    /// The rates between `earlier` and this snapshot, `secs` apart.
    pub fn since(&self, earlier: &Snapshot, secs: f64) -> Report {
        let secs = secs.max(0.001);
        let mut per_client: Vec<u64> = self
            .bytes
            .iter()
            .zip(&earlier.bytes)
            .map(|(now, then)| ((now - then) as f64 * 8.0 / 1000.0 / secs) as u64)
            .filter(|k| *k > 0)
            .collect();
        per_client.sort_unstable();
        let total: u64 = self.bytes.iter().sum::<u64>() - earlier.bytes.iter().sum::<u64>();
        let kbps = if per_client.is_empty() {
            [0; 3]
        } else {
            [
                per_client[0],
                per_client[per_client.len() / 2],
                per_client[per_client.len() - 1],
            ]
        };
        let hist: Vec<u64> = self
            .latency
            .iter()
            .zip(&earlier.latency)
            .map(|(a, b)| a - b)
            .collect();
        let samples: u64 = hist.iter().sum();
        let percentile = |p: f64| {
            let target = ((samples as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (ms, n) in hist.iter().enumerate() {
                seen += n;
                if seen >= target {
                    return ms as u64;
                }
            }
            LATENCY_BUCKETS as u64
        };
        Report {
            alive: self.alive,
            failed: self.failed,
            mbps: total as f64 * 8.0 / 1e6 / secs,
            kbps,
            latency: (samples > 0).then(|| [percentile(0.5), percentile(0.95), percentile(0.99)]),
            samples,
        }
    }
}

/// How a player handles the media it receives, with `--sample N`: one player in N is full,
/// the others light, so that thousands of players cost the load tool a fraction of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayMode {
    /// Reads the media: latency stamps (WHEP: str0m decrypts and depacketizes, with NACKs;
    /// HLS: the segments' video is demuxed and played on a per-frame clock).
    Full,
    /// Counts what arrives without reading it (WHEP: RTP from its clear SRTP header; HLS:
    /// every segment still fetched whole and in order, its bytes counted, not demuxed).
    Light,
}

impl PlayMode {
    /// Player `i`'s mode with one in `sample` full: those whose index is a multiple of it.
    pub fn of(i: usize, sample: usize) -> Self {
        if i.is_multiple_of(sample.max(1)) {
            Self::Full
        } else {
            Self::Light
        }
    }
}

/// A player's first seconds are its GOP-cache burst: latency counts only after them.
pub const PLAYER_WARMUP: Duration = Duration::from_secs(5);

/// An RTMP or HTTP-FLV player's latency probe on FLV video tag bodies: learns the NAL unit
/// length size from the sequence header and, after [`PLAYER_WARMUP`], records the age of
/// each stamped frame.
#[derive(Debug)]
pub struct LatencyProbe {
    started: Instant,
    nalu_len: usize,
}

impl LatencyProbe {
    /// A probe whose warm-up starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            nalu_len: 4,
        }
    }

    /// Looks at one video tag body.
    pub fn video(&mut self, body: &[u8], stats: &Stats) {
        if body.get(1) == Some(&0) {
            self.nalu_len = sei::nalu_len_size(body).unwrap_or(4);
        } else if self.started.elapsed() >= PLAYER_WARMUP {
            if let Some(stamp) = sei::find_stamp(body, self.nalu_len) {
                stats.latency_ms(wall_ms().saturating_sub(stamp));
            }
        }
    }
}

impl Default for LatencyProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs client `id`'s task until `stop`: a task that ends before the run does, by an error
/// (logged once, as `what ID: error`) or by the server closing, leaves the client failed.
pub async fn until_stop<E: std::fmt::Display>(
    id: usize,
    what: &str,
    stats: &Stats,
    stop: Instant,
    task: impl std::future::Future<Output = Result<(), E>>,
) {
    match compio::time::timeout_at(stop, task).await {
        Err(_) => {} // the run is over
        Ok(Ok(())) => stats.set_state(id, ClientState::Failed),
        Ok(Err(e)) => {
            stats.set_state(id, ClientState::Failed);
            tracing::warn!("{what} {id}: {e}");
        }
    }
}

/// Milliseconds since the Unix epoch: the clock the stamps carry.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Splits `rtmp://host[:port]/app/stream` into the address, the tcUrl and the stream name.
pub fn parse_rtmp_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("rtmp://")?;
    let (authority, path) = rest.split_once('/')?;
    let (app, stream) = path.rsplit_once('/')?;
    if authority.is_empty() || app.is_empty() || stream.is_empty() {
        return None;
    }
    Some((
        socket_addr(authority, 1935),
        format!("rtmp://{authority}/{app}"),
        stream.to_owned(),
    ))
}

/// `host:port` for a URL's authority, with `default_port` where it names none.
pub fn socket_addr(authority: &str, default_port: u16) -> String {
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_rtmp_url("rtmp://127.0.0.1:1936/live/s1"),
            Some((
                "127.0.0.1:1936".into(),
                "rtmp://127.0.0.1:1936/live".into(),
                "s1".into()
            ))
        );
        assert_eq!(
            parse_rtmp_url("rtmp://h/live/s").map(|u| u.0),
            Some("h:1935".into())
        );
        assert_eq!(parse_rtmp_url("http://h/live/s"), None);
        assert_eq!(parse_rtmp_url("rtmp://h/s"), None);
    }

    #[test]
    fn one_player_in_sample_is_full() {
        let full: Vec<usize> = (0..25)
            .filter(|&i| PlayMode::of(i, 10) == PlayMode::Full)
            .collect();
        assert_eq!(full, [0, 10, 20]);
        assert!((0..5).all(|i| PlayMode::of(i, 1) == PlayMode::Full));
        assert_eq!(PlayMode::of(3, 0), PlayMode::Full, "0 samples all, as 1");
    }

    #[test]
    fn reports() {
        let stats = Stats::new(3);
        let a = stats.snapshot();
        stats.bytes[0].store(125_000, Ordering::Relaxed);
        stats.bytes[1].store(250_000, Ordering::Relaxed);
        for ms in 1..=100 {
            stats.latency_ms(ms);
        }
        stats.set_state(0, ClientState::Alive);
        stats.set_state(2, ClientState::Failed);
        let r = stats.snapshot().since(&a, 1.0);
        assert_eq!(r.kbps, [1000, 2000, 2000]);
        assert!((r.mbps - 3.0).abs() < 1e-9);
        assert_eq!(r.latency, Some([50, 95, 99]));
        assert_eq!((r.alive, r.failed, r.samples), (1, 1, 100));
    }
}
