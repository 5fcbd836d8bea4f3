//! The state every worker shares and the HTTP API reads: the config in force, the stream
//! registry, the server's counters, the client registry, the 30-second rates, the workers'
//! load, WebRTC's registry and the edge's pulls (`edge.rs`). It owns no socket and runs nothing: the drivers (RTMP, HTTP,
//! WebRTC) update it, the API and the periodic log read it. What each worker owns alone (its
//! runtime, its listeners, its send ring) lives in the worker, never here.

#![forbid(unsafe_code)]

pub mod edge;
mod hls;

pub(crate) use hls::delta_name;
pub use hls::{Body, HlsStats, HlsStore, Live, StreamHls, Wait, MAX_WAITERS};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::config::Config;
use crate::egress::Counters;
use crate::hub::{Hub, StreamKey, StreamSettings};
use crate::rtc::RtcHub;
use crate::stats::clients::ClientRegistry;
use crate::stats::rates::Rates;

/// State shared by every worker.
#[derive(Debug)]
pub struct Shared {
    config: RwLock<Arc<Config>>,
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Counters.
    pub stats: ServerStats,
    /// Publishing and playing clients, for the API.
    pub clients: ClientRegistry,
    /// Bitrates and CPU use over the last 30 s, for the API.
    pub rates: Rates,
    /// The workers, in the order they started.
    pub workers: Mutex<Vec<Arc<WorkerInfo>>>,
    /// When the server started.
    pub started: Instant,
    /// A random id of this process, SRS's `server` field.
    pub server_id: String,
    /// WebRTC sessions and streams.
    pub rtc: Arc<RtcHub>,
    /// The edge's pulls from its origins.
    pub edges: edge::Edges,
    /// HLS playlists and segments, served from memory.
    pub hls: HlsStore,
    next_conn_id: AtomicU64,
}

/// One worker thread, for the per-worker load in the metrics.
#[derive(Debug)]
pub struct WorkerInfo {
    /// Its index.
    pub index: usize,
    /// Its thread id, to read its CPU time from /proc.
    pub tid: i32,
    /// Connections (RTMP and HTTP) it serves now.
    pub connections: AtomicUsize,
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Connections refused by max_connections.
    pub refused: AtomicU64,
    /// Players cut because they stopped reading for queue_length.
    pub players_cut: AtomicU64,
    /// Bytes sent to players.
    pub bytes_out: AtomicU64,
    /// Bytes received from publishers.
    pub bytes_in: AtomicU64,
    /// Connections accepted since the start, RTMP and HTTP.
    pub accepted: AtomicU64,
    /// RTMP connections and HTTP-FLV players that ended in an error other than the peer
    /// leaving (a timeout, a protocol error, a refusal, a cut, a kick): SRS's
    /// `srs_clients_errs_total`.
    pub client_errors: AtomicU64,
    /// DVR files closed and renamed to their final name.
    pub dvr_files: AtomicU64,
    /// DVR files that could not be created, written or renamed (a full disk, a bad path).
    pub dvr_errors: AtomicU64,
}

impl Shared {
    /// Shared state for `config`.
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config: RwLock::new(Arc::new(config)),
            hub: Hub::new(),
            stats: ServerStats::default(),
            clients: ClientRegistry::default(),
            rates: Rates::default(),
            workers: Mutex::new(Vec::new()),
            started: Instant::now(),
            server_id: format!("vid-{:08x}", rand::random::<u32>()),
            rtc: RtcHub::new(),
            edges: edge::Edges::default(),
            hls: HlsStore::default(),
            next_conn_id: AtomicU64::new(100),
        })
    }

    /// A new connection id, unique in the process.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a new connection against max_connections; false (and counted as refused) when
    /// over the limit. A true answer must be paired with [`Shared::close_connection`].
    pub(crate) fn open_connection(&self, worker: &WorkerInfo) -> Option<usize> {
        let max = self.config().max_connections;
        let open = self.stats.connections.fetch_add(1, Ordering::AcqRel) + 1;
        if open > max {
            self.stats.connections.fetch_sub(1, Ordering::AcqRel);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        worker.connections.fetch_add(1, Ordering::Relaxed);
        Some(open)
    }

    /// Ends what [`Shared::open_connection`] counted; returns the connections left.
    pub(crate) fn close_connection(&self, worker: &WorkerInfo) -> usize {
        worker.connections.fetch_sub(1, Ordering::Relaxed);
        self.stats.connections.fetch_sub(1, Ordering::AcqRel) - 1
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock poisoned").clone()
    }

    /// Swaps in a reloaded config: new connections and new streams use it; listeners and
    /// streams already running keep what they started with.
    pub fn reload(&self, config: Config) {
        *self.config.write().expect("config lock poisoned") = Arc::new(config);
    }

    /// Settings and key for a stream of `vhost` (falls back to the default vhost).
    pub(crate) fn stream(
        &self,
        vhost: &str,
        app: &str,
        stream: &str,
    ) -> (StreamKey, StreamSettings) {
        crate::hub::stream_of(&self.config(), vhost, app, stream)
    }
}

/// The fan-out writers count into the server-wide counters.
impl Counters for Shared {
    fn bytes_out(&self) -> &AtomicU64 {
        &self.stats.bytes_out
    }
    fn players_cut(&self) -> &AtomicU64 {
        &self.stats.players_cut
    }
}
