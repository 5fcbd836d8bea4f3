//! What the process runs beside its workers, on threads of its own: the periodic log line
//! (SRS-style: one line per stream with its input bitrate, its consumers and an edge's origin, one for the
//! server, one for WebRTC) and the once-a-second sampler behind the API's 30-second rates.
//! Both read counters and never block a worker; both stop at [`Shutdown`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shutdown;
use crate::state::Shared;

/// Samples the rates once a second until `shutdown`.
pub fn sample_rates(shared: Arc<Shared>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        shared.rates.sample(
            &shared.clients,
            &shared.hub,
            shared.stats.bytes_in.load(Ordering::Relaxed),
            shared.stats.bytes_out.load(Ordering::Relaxed),
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Logs a line per stream and one for the server every `period`, until `shutdown`.
pub fn log_forever(shared: Arc<Shared>, period: Duration, shutdown: Shutdown) {
    let mut last_in: HashMap<u64, u64> = HashMap::new();
    let mut last_out = 0u64;
    let mut last = Instant::now();
    while !shutdown.is_triggered() {
        std::thread::sleep(period);
        let secs = last.elapsed().as_secs_f64().max(0.001);
        last = Instant::now();
        let kbps = |bytes: u64| (bytes as f64 * 8.0 / 1000.0 / secs).round() as u64;
        let mut seen = HashMap::new();
        for source in shared.hub.sources() {
            let bytes = source.stats.bytes_in.load(Ordering::Relaxed);
            let before = last_in.get(&source.id()).copied().unwrap_or(0);
            seen.insert(source.id(), bytes);
            let publisher = source
                .publisher()
                .map_or_else(|| "none".to_owned(), |c| c.to_string());
            let origin = shared
                .edges
                .get(source.key())
                .map(|p| format!(" origin={}", p.status().origin))
                .unwrap_or_default();
            tracing::info!(
                "stream {} id={} publisher={publisher}{origin} in={}kbps consumers={}",
                source.key(),
                source.id(),
                kbps(bytes.saturating_sub(before)),
                source.stats.consumers.load(Ordering::Relaxed),
            );
        }
        last_in = seen;
        let out = shared.stats.bytes_out.load(Ordering::Relaxed);
        tracing::info!(
            "server connections={} out={}kbps refused={} skips={} cut={}",
            shared.stats.connections.load(Ordering::Relaxed),
            kbps(out - last_out),
            shared.stats.refused.load(Ordering::Relaxed),
            shared.hub.stats.player_skips.load(Ordering::Relaxed),
            shared.stats.players_cut.load(Ordering::Relaxed),
        );
        if shared.config().rtc_server.enabled {
            let rtc = &shared.rtc.stats;
            // SRS's form: receive drops from SO_RXQ_OVFL, send drops from failed sends.
            tracing::info!(
                "rtc sessions={} pending={} rejected={} loss=(r:{},s:{})",
                rtc.sessions.load(Ordering::Relaxed),
                shared.rtc.pending_count(),
                rtc.rejected.load(Ordering::Relaxed),
                shared.rtc.rx_drops(),
                rtc.send_drops.load(Ordering::Relaxed),
            );
        }
        last_out = out;
    }
}
