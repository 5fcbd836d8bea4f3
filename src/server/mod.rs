//! The RTMP server's I/O drivers: accept loops, and the tasks that move bytes between sockets
//! and the sans-IO sessions ([`crate::rtmp`]) and the hub ([`crate::hub`]).
//!
//! This is the thin layer that owns sockets: it awaits the socket in one place per task,
//! applies timeouts and connection limits, and logs each connection's events once, with the
//! connection's id. Protocol decisions belong to the sessions, fan-out to the hub.

pub(crate) mod cohort;
mod conn;
mod forward;
mod player;
mod sender;

pub(crate) use player::{write_batch, BatchError};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use compio::net::TcpListener;

use crate::config::Config;
use crate::hub::{Hub, StreamKey, StreamSettings};
use crate::stats::clients::ClientRegistry;
use crate::stats::rates::Rates;

/// How long a new connection may take to handshake and send publish or play. Short, so that
/// port scanners and stuck clients give their slot back quickly.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publisher may stay silent before it is dropped.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(20);

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
    pub rtc: Arc<crate::rtc::RtcHub>,
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
            rtc: crate::rtc::RtcHub::new(),
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
        let config = self.config();
        let v = config.vhost(vhost);
        let key = StreamKey {
            vhost: v.name.clone(),
            app: app.to_owned(),
            stream: stream.to_owned(),
        };
        let settings = StreamSettings {
            gop_cache: v.gop_cache,
            queue_length: v.queue_length,
            chunk_size: v.chunk_size.unwrap_or(config.chunk_size),
            merge: v.merged_write(),
        };
        (key, settings)
    }
}

/// Runs one worker: an accept loop per RTMP listen address and per HTTP listener, each on this
/// worker's own SO_REUSEPORT socket, and the WebRTC UDP loop when `rtc_server` is enabled.
pub async fn run_worker(worker: usize, shared: Arc<Shared>) {
    let info = Arc::new(WorkerInfo {
        index: worker,
        tid: nix::unistd::gettid().as_raw(),
        connections: AtomicUsize::new(0),
    });
    shared
        .workers
        .lock()
        .expect("workers lock poisoned")
        .push(info.clone());
    let addrs: Vec<SocketAddr> = shared.config().listen.clone();
    let mut loops = crate::http::spawn_listeners(&shared, &info);
    if shared.config().rtc_server.enabled {
        loops.push(compio::runtime::spawn(crate::rtc::udp::run(
            worker,
            shared.config().rtc_server.clone(),
            shared.rtc.clone(),
            shared.hub.clone(),
        )));
    }
    for addr in addrs {
        let listener = match crate::runtime::reuseport_listener(addr)
            .map_err(|e| e.to_string())
            .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker, "{e}");
                continue;
            }
        };
        loops.push(compio::runtime::spawn(accept_loop(
            listener,
            shared.clone(),
            info.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, worker: Arc<WorkerInfo>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                compio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.next_conn_id();
        let Some(open) = shared.open_connection(&worker) else {
            let max = shared.config().max_connections;
            tracing::warn!(cid = id, %peer, "refused: max_connections {max} reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let worker = worker.clone();
        compio::runtime::spawn(async move {
            tracing::info!(cid = id, %peer, "accepted, {open} connection(s)");
            conn::serve(id, peer, stream, &shared).await;
            let left = shared.close_connection(&worker);
            tracing::info!(cid = id, "closed, {left} connection(s)");
        })
        .detach();
    }
}
