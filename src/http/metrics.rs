//! `/metrics` in Prometheus text format (version 0.0.4): connections, streams, players by
//! protocol, bytes, players that fell behind queue_length and skipped (dropped frames), relay
//! overflows, and each worker's connections and CPU time (its load). Counters end in
//! `_total` and only grow; everything is read from atomics and /proc at scrape time.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::state::Shared;
use crate::stats::clients::ClientKind;
use crate::stats::system;

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }

    fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "counter", help);
        self.sample(&format!("{name}_total"), "", value);
    }
}

/// Renders every metric.
pub(super) fn render(shared: &Shared) -> String {
    let mut o = Out(String::with_capacity(4096));
    let stats = &shared.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    o.gauge(
        "ringcast_connections",
        "Connections open now (RTMP and HTTP).",
        stats.connections.load(Ordering::Relaxed),
    );
    o.counter(
        "ringcast_connections_accepted",
        "Connections accepted.",
        load(&stats.accepted),
    );
    o.counter(
        "ringcast_connections_refused",
        "Connections refused by max_connections.",
        load(&stats.refused),
    );
    let sources = shared.hub.sources();
    let publishing = sources.iter().filter(|s| s.publisher().is_some()).count();
    o.gauge("ringcast_streams", "Streams that exist now.", sources.len());
    o.gauge(
        "ringcast_publishers",
        "Streams being published now.",
        publishing,
    );
    let clients = shared.clients.all();
    o.family("ringcast_players", "gauge", "Players now, by protocol.");
    for (kind, proto) in [(ClientKind::RtmpPlay, "rtmp"), (ClientKind::FlvPlay, "flv")] {
        let n = clients.iter().filter(|c| c.kind == kind).count();
        o.sample("ringcast_players", &format!("protocol=\"{proto}\""), n);
    }
    o.counter(
        "ringcast_sent_bytes",
        "Bytes sent to players.",
        load(&stats.bytes_out),
    );
    o.counter(
        "ringcast_received_bytes",
        "Bytes received from publishers.",
        load(&stats.bytes_in),
    );
    let frames: u64 = sources
        .iter()
        .map(|s| s.stats.frames_in.load(Ordering::Relaxed))
        .sum();
    o.gauge(
        "ringcast_stream_frames",
        "Frames published on the streams that exist now.",
        frames,
    );
    o.counter(
        "ringcast_queue_length_skips",
        "Times a player fell behind queue_length and dropped frames up to the next keyframe.",
        load(&shared.hub.stats.player_skips),
    );
    o.counter(
        "ringcast_relay_overflows",
        "Frames lost on a full cross-core relay queue.",
        load(&shared.hub.stats.relay_overflows),
    );
    o.counter(
        "ringcast_players_cut",
        "Players cut because their writes took no data for queue_length.",
        load(&shared.stats.players_cut),
    );
    let rtc = &shared.rtc.stats;
    o.gauge(
        "ringcast_rtc_sessions",
        "WebRTC sessions (WHIP publishers and WHEP players).",
        rtc.sessions.load(Ordering::Relaxed),
    );
    o.counter(
        "ringcast_rtc_udp_receive_drops",
        "UDP datagrams the kernel dropped on the RTC sockets (SO_RXQ_OVFL): loss=(r:N).",
        shared.rtc.rx_drops(),
    );
    o.counter(
        "ringcast_rtc_udp_send_drops",
        "RTC datagrams not sent (failed or short sends): loss=(s:N).",
        load(&rtc.send_drops),
    );
    o.counter(
        "ringcast_rtc_udp_sent",
        "RTC datagrams sent.",
        load(&rtc.sent),
    );
    o.counter(
        "ringcast_rtc_udp_send_calls",
        "sendmmsg/sendmsg calls that sent them (datagrams per call = sent / calls).",
        load(&rtc.send_calls),
    );
    o.counter(
        "ringcast_rtc_udp_received",
        "RTC datagrams received.",
        load(&rtc.received),
    );
    o.counter(
        "ringcast_rtc_udp_recv_calls",
        "recvmmsg calls (epoll); io_uring's multishot receive makes none.",
        load(&rtc.recv_calls),
    );
    o.counter(
        "ringcast_rtc_rejected",
        "RTC datagrams and signalling requests rejected as bad input.",
        load(&rtc.rejected),
    );
    let kbps = shared.rates.server();
    o.gauge(
        "ringcast_send_kbps",
        "Send rate over the last 30 s, kbit/s.",
        kbps.send,
    );
    o.gauge(
        "ringcast_receive_kbps",
        "Receive rate over the last 30 s, kbit/s.",
        kbps.recv,
    );
    let workers = shared
        .workers
        .lock()
        .expect("workers lock poisoned")
        .clone();
    o.family(
        "ringcast_worker_connections",
        "gauge",
        "Connections each worker serves now.",
    );
    for w in &workers {
        o.sample(
            "ringcast_worker_connections",
            &format!("worker=\"{}\"", w.index),
            w.connections.load(Ordering::Relaxed),
        );
    }
    o.family(
        "ringcast_worker_cpu_seconds",
        "counter",
        "CPU time each worker thread used: its load.",
    );
    for w in &workers {
        if let Some(ticks) = system::thread_ticks(w.tid) {
            o.sample(
                "ringcast_worker_cpu_seconds_total",
                &format!("worker=\"{}\"", w.index),
                ticks as f64 / system::TICKS_PER_SEC,
            );
        }
    }
    if let Some(ticks) = system::process_ticks() {
        o.counter(
            "ringcast_process_cpu_seconds",
            "CPU time the process used.",
            ticks as f64 / system::TICKS_PER_SEC,
        );
    }
    if let Some(rss) = system::resident_bytes() {
        o.gauge(
            "ringcast_process_resident_memory_bytes",
            "Resident memory.",
            rss,
        );
    }
    o.gauge(
        "ringcast_uptime_seconds",
        "Seconds since the server started.",
        shared.started.elapsed().as_secs_f64(),
    );
    o.family("ringcast_build_info", "gauge", "The version, as a label.");
    o.sample(
        "ringcast_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    o.0
}
