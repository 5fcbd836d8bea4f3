//! `/metrics` in Prometheus text format (version 0.0.4): connections, streams, players by
//! protocol, bytes, players that fell behind queue_length and skipped (dropped frames), relay
//! overflows, an edge's pulls, failovers and upstream bytes, and each worker's connections and CPU time (its load). Counters end in
//! `_total` and only grow; everything is read from atomics and /proc at scrape time.
//!
//! With `exporter { enabled on; }` the API's `/metrics` also carries SRS 5's exporter metrics
//! (`srs_build_info`, `srs_cpu_percent`, ... with SRS's names, labels, HELP and TYPE lines, from
//! SRS's `SrsGoApiMetrics`), and the exporter's own listener serves those alone, so Grafana
//! dashboards made for SRS read ringcast unchanged. It reads; it changes no counter.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::reply::ApiReply;
use crate::state::Shared;
use crate::stats::clients::ClientKind;
use crate::stats::system::{self, Uname};

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// HLS's requests, bytes, segments and file errors.
fn hls(shared: &Shared, o: &mut Out) {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let h = &shared.hls.stats;
    o.family("ringcast_hls_requests", "counter", "HLS requests, by kind.");
    for (kind, n) in [
        ("playlist", &h.playlist_requests),
        ("segment", &h.segment_requests),
    ] {
        o.sample(
            "ringcast_hls_requests_total",
            &format!("kind=\"{kind}\""),
            load(n),
        );
    }
    o.counter(
        "ringcast_hls_not_found",
        "HLS requests for playlists or segments that are not, or no longer, there.",
        load(&h.not_found),
    );
    o.counter(
        "ringcast_hls_sent_bytes",
        "Bytes of HLS playlists and segments sent.",
        load(&h.bytes_sent),
    );
    o.counter(
        "ringcast_hls_segments",
        "HLS segments made.",
        load(&h.segments),
    );
    o.counter(
        "ringcast_hls_file_errors",
        "HLS files under hls_path that could not be written or removed.",
        load(&h.file_errors),
    );
    o.counter(
        "ringcast_hls_waiters_full",
        "LL-HLS blocking requests answered 503 because their playlist had the most waiting.",
        load(&h.waiters_full),
    );
    o.counter(
        "ringcast_hls_delta_playlists",
        "LL-HLS playlist requests answered with a delta update (_HLS_skip).",
        load(&h.delta_playlists),
    );
    o.gauge(
        "ringcast_hls_waiting",
        "LL-HLS blocking requests waiting now, all playlists together.",
        shared.hls.waiting(),
    );
}

/// Renders every metric: ringcast's, then SRS's when the exporter is enabled.
pub(super) fn render(shared: &Shared) -> String {
    let mut o = Out(String::with_capacity(4096));
    ringcast(shared, &mut o);
    if shared.config().exporter.enabled {
        srs(&SrsReadings::now(shared), &mut o);
    }
    o.0
}

/// The exporter listener's `/metrics`: SRS's metrics alone, as SRS's exporter port serves them.
pub(super) fn exporter(shared: &Shared) -> ApiReply {
    let mut o = Out(String::with_capacity(2048));
    srs(&SrsReadings::now(shared), &mut o);
    ApiReply {
        status: 200,
        content_type: CONTENT_TYPE,
        headers: Vec::new(),
        body: o.0.into(),
        sealed: None,
    }
}

/// An edge's pulls from its origins (`cluster { mode remote; }`).
fn edge(shared: &Shared, o: &mut Out) {
    let edge = &shared.edges.stats;
    for (name, help, value) in [
        (
            "ringcast_edge_pulls",
            "Plays an edge started on an origin (first ones and reconnects).",
            &edge.pulls,
        ),
        (
            "ringcast_edge_failovers",
            "Moves of an edge pull to the next origin after one refused, was down or died.",
            &edge.failovers,
        ),
        (
            "ringcast_edge_upstream_bytes",
            "Bytes an edge received from its origins.",
            &edge.upstream_bytes,
        ),
        (
            "ringcast_edge_gave_up",
            "Edge pulls that failed on every origin and closed their players.",
            &edge.gave_up,
        ),
    ] {
        o.counter(name, help, value.load(Ordering::Relaxed));
    }
}

/// ringcast's own metrics.
fn ringcast(shared: &Shared, o: &mut Out) {
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
        "ringcast_dvr_files",
        "DVR files closed and renamed to their final name.",
        load(&shared.stats.dvr_files),
    );
    o.counter(
        "ringcast_dvr_errors",
        "DVR files that could not be created, written or renamed (full disk, bad path).",
        load(&shared.stats.dvr_errors),
    );
    o.counter(
        "ringcast_players_cut",
        "Players cut because their writes took no data for queue_length.",
        load(&shared.stats.players_cut),
    );
    edge(shared, o);
    hls(shared, o);
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
}

/// What SRS's exporter reports, read at one scrape; [`srs`] renders it, a pure function that
/// the tests feed fixed values.
#[derive(Debug, Clone)]
struct SrsReadings {
    /// SRS's `server` and `service` ids (ringcast has one id for both, as in its API).
    server: String,
    pid: u32,
    build_date: &'static str,
    /// `exporter.label` and `exporter.tag`; empty ones are left out, as SRS does.
    label: String,
    tag: String,
    uname: Option<Uname>,
    /// CPU use of the process over the rates' window, 100 = one core (SRS: `percent * 100`).
    cpu_percent: f64,
    /// Resident memory in KiB (SRS: `rss * 4`, its page count times 4 KiB).
    memory_kib: u64,
    send_bytes: u64,
    receive_bytes: u64,
    streams: usize,
    clients: usize,
    clients_total: u64,
    clients_errs: u64,
}

impl SrsReadings {
    fn now(shared: &Shared) -> Self {
        let config = shared.config();
        let stats = &shared.stats;
        Self {
            server: shared.server_id.clone(),
            pid: std::process::id(),
            build_date: build_date(),
            label: config.exporter.label.clone(),
            tag: config.exporter.tag.clone(),
            uname: system::uname(),
            cpu_percent: shared.rates.cpu_percent().0,
            memory_kib: system::resident_bytes().unwrap_or(0) / 1024,
            send_bytes: stats.bytes_out.load(Ordering::Relaxed),
            receive_bytes: stats.bytes_in.load(Ordering::Relaxed),
            streams: shared.hub.sources().len(),
            // SRS counts its WebRTC sessions among the clients; ringcast's registry holds the
            // RTMP and HTTP-FLV ones.
            clients: shared.clients.all().len() + shared.rtc.stats.sessions.load(Ordering::Relaxed),
            clients_total: shared.clients.registered(),
            clients_errs: stats.client_errors.load(Ordering::Relaxed),
        }
    }
}

/// When the binary was built, as SRS's `SRS_BUILD_DATE` (`YYYY-MM-DD HH:MM:SS`): the
/// executable's modification time, in UTC, which the linker set.
fn build_date() -> &'static str {
    static DATE: OnceLock<String> = OnceLock::new();
    DATE.get_or_init(|| {
        let modified = std::env::current_exe().and_then(|p| p.metadata()?.modified());
        let Ok(t) = modified else {
            return "unknown".to_owned();
        };
        // `YYYYMMDD-HHMMSS-mmm`.
        let s = crate::profile::timestamp(t);
        format!(
            "{}-{}-{} {}:{}:{}",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15]
        )
    })
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `a="x",b="y"`.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out
}

/// SRS 5's exporter metrics, in SRS's order with SRS's HELP and TYPE lines (its counters'
/// families are named with `_total`, as SRS writes them).
fn srs(r: &SrsReadings, o: &mut Out) {
    if let Some(u) = &r.uname {
        o.family(
            "srs_node_uname_info",
            "gauge",
            "Labeled system information as provided by the uname system call.",
        );
        let l = labels(&[
            ("sysname", &u.sysname),
            ("nodename", &u.nodename),
            ("release", &u.release),
            ("version", &u.version),
            ("machine", &u.machine),
        ]);
        o.sample("srs_node_uname_info", &l, 1);
    }
    o.family(
        "srs_build_info",
        "gauge",
        "A metric with a constant '1' value labeled by build_date, version from which SRS was built.",
    );
    let version = env!("CARGO_PKG_VERSION");
    let major = version.split('.').next().unwrap_or(version);
    let pid = r.pid.to_string();
    let mut pairs = vec![
        ("server", r.server.as_str()),
        ("service", r.server.as_str()),
        ("pid", pid.as_str()),
        ("build_date", r.build_date),
        ("major", major),
        ("version", version),
        ("code", "ringcast"),
    ];
    if !r.label.is_empty() {
        pairs.push(("label", &r.label));
    }
    if !r.tag.is_empty() {
        pairs.push(("tag", &r.tag));
    }
    o.sample("srs_build_info", &labels(&pairs), 1);
    o.gauge("srs_cpu_percent", "SRS cpu used percent.", r.cpu_percent);
    o.gauge("srs_memory", "SRS memory used.", r.memory_kib);
    let counter = |o: &mut Out, name: &str, help: &str, value: u64| {
        o.family(name, "counter", help);
        o.sample(name, "", value);
    };
    counter(
        o,
        "srs_send_bytes_total",
        "SRS total sent bytes.",
        r.send_bytes,
    );
    counter(
        o,
        "srs_receive_bytes_total",
        "SRS total received bytes.",
        r.receive_bytes,
    );
    o.gauge(
        "srs_streams",
        "The number of SRS concurrent streams.",
        r.streams,
    );
    o.gauge(
        "srs_clients",
        "The number of SRS concurrent clients.",
        r.clients,
    );
    counter(
        o,
        "srs_clients_total",
        "The total counts of SRS clients.",
        r.clients_total,
    );
    counter(
        o,
        "srs_clients_errs_total",
        "The total errors of SRS clients.",
        r.clients_errs,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn readings() -> SrsReadings {
        SrsReadings {
            server: "vid-0000002a".into(),
            pid: 4242,
            build_date: "2026-01-02 03:04:05",
            label: "cn-beijing".into(),
            tag: "cn-edge".into(),
            uname: Some(Uname {
                sysname: "Linux".into(),
                nodename: "edge-1".into(),
                release: "6.1.0".into(),
                version: "#1 SMP \"x\"".into(),
                machine: "x86_64".into(),
            }),
            cpu_percent: 12.5,
            memory_kib: 20480,
            send_bytes: 1000,
            receive_bytes: 2000,
            streams: 3,
            clients: 4,
            clients_total: 5,
            clients_errs: 1,
        }
    }

    fn text(r: &SrsReadings) -> String {
        let mut o = Out(String::new());
        srs(r, &mut o);
        o.0
    }

    #[test]
    fn srs_names_labels_help_and_types_as_srs_writes_them() {
        let t = text(&readings());
        let version = env!("CARGO_PKG_VERSION");
        let major = version.split('.').next().expect("a major version");
        let expected = format!(
            "# HELP srs_node_uname_info Labeled system information as provided by the uname system call.\n\
             # TYPE srs_node_uname_info gauge\n\
             srs_node_uname_info{{sysname=\"Linux\",nodename=\"edge-1\",release=\"6.1.0\",version=\"#1 SMP \\\"x\\\"\",machine=\"x86_64\"}} 1\n\
             # HELP srs_build_info A metric with a constant '1' value labeled by build_date, version from which SRS was built.\n\
             # TYPE srs_build_info gauge\n\
             srs_build_info{{server=\"vid-0000002a\",service=\"vid-0000002a\",pid=\"4242\",build_date=\"2026-01-02 03:04:05\",major=\"{major}\",version=\"{version}\",code=\"ringcast\",label=\"cn-beijing\",tag=\"cn-edge\"}} 1\n\
             # HELP srs_cpu_percent SRS cpu used percent.\n\
             # TYPE srs_cpu_percent gauge\n\
             srs_cpu_percent 12.5\n\
             # HELP srs_memory SRS memory used.\n\
             # TYPE srs_memory gauge\n\
             srs_memory 20480\n\
             # HELP srs_send_bytes_total SRS total sent bytes.\n\
             # TYPE srs_send_bytes_total counter\n\
             srs_send_bytes_total 1000\n\
             # HELP srs_receive_bytes_total SRS total received bytes.\n\
             # TYPE srs_receive_bytes_total counter\n\
             srs_receive_bytes_total 2000\n\
             # HELP srs_streams The number of SRS concurrent streams.\n\
             # TYPE srs_streams gauge\n\
             srs_streams 3\n\
             # HELP srs_clients The number of SRS concurrent clients.\n\
             # TYPE srs_clients gauge\n\
             srs_clients 4\n\
             # HELP srs_clients_total The total counts of SRS clients.\n\
             # TYPE srs_clients_total counter\n\
             srs_clients_total 5\n\
             # HELP srs_clients_errs_total The total errors of SRS clients.\n\
             # TYPE srs_clients_errs_total counter\n\
             srs_clients_errs_total 1\n"
        );
        assert_eq!(t, expected);
    }

    #[test]
    fn empty_label_and_tag_are_left_out_and_uname_is_optional() {
        let r = SrsReadings {
            label: String::new(),
            tag: String::new(),
            uname: None,
            ..readings()
        };
        let t = text(&r);
        assert!(!t.contains("srs_node_uname_info"), "{t}");
        let build = t
            .lines()
            .find(|l| l.starts_with("srs_build_info{"))
            .expect("srs_build_info");
        assert!(build.ends_with("code=\"ringcast\"} 1"), "{build}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(labels(&[("a", "1"), ("b", "\"")]), r#"a="1",b="\"""#);
    }

    #[test]
    fn build_date_is_srs_shaped() {
        let d = build_date();
        let shape: String = d
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99:99", "{d}");
    }

    #[test]
    fn api_metrics_carry_srs_only_with_the_exporter_on() {
        let off = render(&Shared::new(Config::default()));
        assert!(
            off.contains("ringcast_build_info") && !off.contains("srs_"),
            "{off}"
        );
        let mut config = Config::default();
        config.exporter.enabled = true;
        config.exporter.label = "cn-beijing".into();
        let shared = Shared::new(config);
        let on = render(&shared);
        assert!(on.contains("ringcast_build_info"), "{on}");
        assert!(on.contains("label=\"cn-beijing\""), "{on}");
        assert!(on.contains("\nsrs_clients_errs_total 0\n"), "{on}");
        let alone = String::from_utf8(exporter(&shared).body.to_vec()).expect("utf-8");
        assert!(alone.contains("srs_build_info{") && !alone.contains("ringcast_"));
        assert_eq!(exporter(&shared).content_type, CONTENT_TYPE);
    }
}
