//! SRS's HTTP API: the same URLs and JSON shapes (`code`, `server`, `service`, `pid`, then
//! `data` or a named field), so SRS's console, scripts and exporters work unchanged. Paths of
//! the profiling tools and of WebRTC signalling are handed to [`crate::profile`] and
//! [`crate::rtc`]; `/metrics` to the Prometheus renderer. It reads the hub, the client
//! registry and the counters, and changes nothing but a kicked client's fate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{json, Map, Value};

use super::metrics;
use super::parser::Request;
use super::reply::{envelope, error, reply, ApiReply};
use crate::hub::Source;
use crate::media::codec;
use crate::state::edge::Pull;
use crate::state::Shared;
use crate::stats::clients::Client;
use crate::stats::system;

/// Paths that `profile::handle_api` serves.
const PROFILE_PATHS: &[&str] = &[
    "/api/v1/valgrind",
    "/api/v1/meminfos",
    "/api/v1/rusages",
    "/api/v1/self_proc_stats",
    "/api/v1/system_proc_stats",
];
/// SRS's error code for an unknown stream (ERROR_RTMP_STREAM_NOT_FOUND).
const CODE_STREAM_NOT_FOUND: i64 = 2048;
/// SRS's error code for an unknown client (ERROR_RTMP_CLIENT_NOT_FOUND).
const CODE_CLIENT_NOT_FOUND: i64 = 2049;
/// How many items a list returns when `count` is not given, as in SRS.
const DEFAULT_COUNT: usize = 10;

/// Serves one API request; `offered`: an RTC offer's session id and offerer, as its hooks
/// were told ([`super::rtc::hooked`]).
pub(super) async fn handle(
    req: &Request,
    shared: &Arc<Shared>,
    offered: Option<crate::rtc::Offered>,
) -> ApiReply {
    let path = req.path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    if path.starts_with("/api/v1/profile") || PROFILE_PATHS.contains(&path) {
        return super::profile::handle_api(&req.method, path, &req.query, shared)
            .await
            .unwrap_or_else(|| error(404, "not available in this build"));
    }
    if req.path.starts_with("/rtc/v1/") {
        return super::rtc::handle(
            &req.method,
            &req.path,
            &req.query,
            &req.body,
            shared,
            offered,
        )
        .unwrap_or_else(|| error(404, "not found"));
    }
    let (collection, item) = match path.strip_prefix("/api/v1/") {
        Some(rest) => match rest.split_once('/') {
            Some((c, i)) => (c, Some(i)),
            None => (rest, None),
        },
        None => (path, None),
    };
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    if collection == "clusters" && item.is_none() && (get || req.method == "POST") {
        return super::clusters::handle(req, shared);
    }
    if collection == "clients" && req.method == "DELETE" {
        return match item.and_then(|i| i.parse().ok()) {
            Some(id) => kick(shared, id),
            None => error(400, "DELETE needs /api/v1/clients/{id}"),
        };
    }
    if !get {
        return error(405, "method not allowed");
    }
    let page = match Page::parse(&req.query) {
        Ok(p) => p,
        Err(e) => return error(400, e),
    };
    match (collection, item) {
        ("/", _) => ok(shared, "urls", json!({"api": "the api root"})),
        ("/api", _) => ok(shared, "urls", json!({"v1": "the api version 1.0"})),
        ("/api/v1", _) => ok(shared, "urls", index()),
        ("/metrics", _) => ApiReply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
            body: metrics::render(shared).into(),
            sealed: None,
        },
        ("versions", None) => ok(shared, "data", versions()),
        ("summaries", None) => ok(shared, "data", summaries(shared)),
        ("features", None) => ok(shared, "data", features()),
        ("vhosts", None) => ok(shared, "vhosts", Value::Array(vhosts(shared))),
        ("vhosts", Some(id)) => match vhosts(shared).into_iter().find(|v| v["id"] == id) {
            Some(v) => ok(shared, "vhost", v),
            None => not_found(shared, 404, "no such vhost"),
        },
        ("streams", None) => {
            let clients = shared.clients.all();
            let list = sources(shared)
                .iter()
                .skip(page.start)
                .take(page.count)
                .map(|s| stream_json(s, shared, &clients))
                .collect();
            ok(shared, "streams", Value::Array(list))
        }
        ("streams", Some(id)) => {
            let clients = shared.clients.all();
            match sources(shared).iter().find(|s| s.id().to_string() == id) {
                Some(s) => ok(shared, "stream", stream_json(s, shared, &clients)),
                None => not_found(shared, CODE_STREAM_NOT_FOUND, "no such stream"),
            }
        }
        ("clients", None) => {
            let list = shared
                .clients
                .all()
                .iter()
                .skip(page.start)
                .take(page.count)
                .map(|c| client_json(c, shared))
                .collect();
            ok(shared, "clients", Value::Array(list))
        }
        ("clients", Some(id)) => match id.parse().ok().and_then(|id| shared.clients.get(id)) {
            Some(c) => ok(shared, "client", client_json(&c, shared)),
            None => not_found(shared, CODE_CLIENT_NOT_FOUND, "no such client"),
        },
        _ => error(404, "not found"),
    }
}

/// `?start=&count=`.
struct Page {
    start: usize,
    count: usize,
}

impl Page {
    fn parse(query: &str) -> Result<Self, &'static str> {
        let mut page = Page {
            start: 0,
            count: DEFAULT_COUNT,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let slot = match k {
                "start" => &mut page.start,
                "count" => &mut page.count,
                _ => continue,
            };
            *slot = v
                .parse()
                .map_err(|_| "start and count must be whole numbers")?;
        }
        Ok(page)
    }
}

fn ok(shared: &Shared, field: &str, value: Value) -> ApiReply {
    let mut m = envelope(&shared.server_id, 0);
    m.insert(field.into(), value);
    reply(200, &Value::Object(m))
}

fn not_found(shared: &Shared, code: i64, message: &str) -> ApiReply {
    let mut m = envelope(&shared.server_id, code);
    m.insert("error".into(), json!(message));
    reply(404, &Value::Object(m))
}

fn kick(shared: &Shared, id: u64) -> ApiReply {
    match shared.clients.get(id) {
        Some(c) => {
            tracing::info!(cid = id, "kicked by the API");
            c.kick();
            reply(200, &Value::Object(envelope(&shared.server_id, 0)))
        }
        None => not_found(shared, CODE_CLIENT_NOT_FOUND, "no such client"),
    }
}

fn index() -> Value {
    json!({
        "versions": "the version of ringcast",
        "summaries": "the summary (pid, argv, pwd, cpu, mem) of ringcast",
        "features": "the features of ringcast",
        "vhosts": "manage all vhosts or specified vhost",
        "streams": "manage all streams or specified stream",
        "clients": "manage all clients or specified client, default query top 10 clients",
        "clusters": "origin cluster server API",
        "rusages": "the rusage of ringcast",
        "self_proc_stats": "the self process stats",
        "system_proc_stats": "the system process stats",
        "meminfos": "the meminfo of system",
        "metrics": "/metrics: Prometheus text format",
    })
}

fn versions() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    json!({
        "major": parts.next().unwrap_or(0),
        "minor": parts.next().unwrap_or(0),
        "revision": parts.next().unwrap_or(0),
        "version": v,
    })
}

fn features() -> Value {
    json!({
        "options": "",
        "options2": "",
        "build": env!("CARGO_PKG_VERSION"),
        "build2": env!("CARGO_PKG_VERSION"),
        "features": {
            "ssl": false, "hls": false, "hds": false, "callback": false, "api": true,
            "httpd": true, "dvr": false, "transcode": false, "ingest": false, "stat": true,
            "caster": false, "complex_send": true, "tcp_nodelay": true, "so_sendbuf": true,
            "mr": false, "http_flv": true, "rtc": true, "metrics": true,
        },
    })
}

fn summaries(shared: &Shared) -> Value {
    let now_ms = UNIX_EPOCH.elapsed().map_or(0, |d| d.as_millis() as u64);
    let (cpu_self, cpu_system) = shared.rates.cpu_percent();
    let rss_kb = system::resident_bytes().unwrap_or(0) / 1024;
    let (mem_total, mem_avail) = system::memory_kib().unwrap_or((0, 0));
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64 * 100.0
        }
    };
    let load = system::load_average().unwrap_or([0.0; 3]);
    let kbps = shared.rates.server();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "ok": true,
        "now_ms": now_ms,
        "self": {
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "ppid": nix::unistd::getppid().as_raw(),
            "argv": std::env::args().collect::<Vec<_>>().join(" "),
            "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "mem_kbyte": rss_kb,
            "mem_percent": pct(rss_kb, mem_total),
            "cpu_percent": cpu_self,
            "srs_uptime": shared.started.elapsed().as_secs(),
        },
        "system": {
            "cpu_percent": cpu_system,
            "cpus": cpus,
            "cpus_online": cpus,
            "mem_ram_kbyte": mem_total,
            "mem_ram_percent": pct(mem_total.saturating_sub(mem_avail), mem_total),
            "load_1m": load[0],
            "load_5m": load[1],
            "load_15m": load[2],
            "uptime": system::machine_uptime().unwrap_or(0.0),
            "srs_recv_bytes": shared.stats.bytes_in.load(Ordering::Relaxed),
            "srs_send_bytes": shared.stats.bytes_out.load(Ordering::Relaxed),
            "conn_srs": shared.stats.connections.load(Ordering::Relaxed),
            "kbps": {"recv_30s": kbps.recv, "send_30s": kbps.send},
        },
        "kbps": {"recv_30s": kbps.recv, "send_30s": kbps.send},
    })
}

fn sources(shared: &Shared) -> Vec<Arc<Source>> {
    let mut v = shared.hub.sources();
    v.sort_by_key(|s| s.id());
    v
}

fn vhosts(shared: &Shared) -> Vec<Value> {
    let config = shared.config();
    let clients = shared.clients.all();
    let sources = sources(shared);
    config
        .vhosts
        .iter()
        .map(|v| {
            let streams: Vec<_> = sources.iter().filter(|s| s.key().vhost == v.name).collect();
            let mine: Vec<_> = clients.iter().filter(|c| c.key.vhost == v.name).collect();
            let (recv, send) = streams.iter().fold((0, 0), |(r, s), src| {
                let k = shared.rates.stream(src.id());
                (r + k.recv, s + k.send)
            });
            json!({
                "id": v.name,
                "name": v.name,
                "enabled": v.enabled,
                "clients": mine.len(),
                "streams": streams.len(),
                "send_bytes": mine.iter().map(|c| c.send_bytes.load(Ordering::Relaxed)).sum::<u64>(),
                "recv_bytes": mine.iter().map(|c| c.recv_bytes.load(Ordering::Relaxed)).sum::<u64>(),
                "kbps": {"recv_30s": recv, "send_30s": send},
                "hls": {"enabled": false},
                "http_remux": {"enabled": v.http_remux.is_some(), "mount": v.http_remux},
            })
        })
        .collect()
}

fn stream_json(s: &Source, shared: &Shared, clients: &[Arc<Client>]) -> Value {
    let key = s.key();
    let mine: Vec<_> = clients.iter().filter(|c| &c.key == key).collect();
    let publisher = s.publisher();
    let tc_url = mine.iter().find(|c| c.kind.is_publish()).map_or_else(
        || format!("rtmp://{}/{}", key.vhost, key.app),
        |c| c.tc_url.clone(),
    );
    let send_bytes: u64 = mine
        .iter()
        .filter(|c| !c.kind.is_publish())
        .map(|c| c.send_bytes.load(Ordering::Relaxed))
        .sum();
    let (video_sh, audio_sh) = s.sequence_headers();
    let video = video_sh
        .and_then(|f| codec::video_info(&f.payload))
        .map_or(Value::Null, |v| {
            json!({"codec": v.codec, "profile": v.profile, "level": v.level,
                   "width": v.width, "height": v.height})
        });
    let audio = audio_sh
        .and_then(|f| codec::audio_info(&f.payload))
        .map_or(Value::Null, |a| {
            json!({"codec": a.codec, "sample_rate": a.sample_rate, "channel": a.channels,
                   "profile": a.profile})
        });
    let kbps = shared.rates.stream(s.id());
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id().to_string()));
    m.insert("name".into(), json!(key.stream));
    m.insert("vhost".into(), json!(key.vhost));
    m.insert("app".into(), json!(key.app));
    m.insert("tcUrl".into(), json!(tc_url));
    m.insert("url".into(), json!(format!("/{}/{}", key.app, key.stream)));
    m.insert(
        "live_ms".into(),
        json!(s
            .created()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)),
    );
    m.insert("clients".into(), json!(mine.len()));
    m.insert(
        "frames".into(),
        json!(s.stats.frames_in.load(Ordering::Relaxed)),
    );
    m.insert("send_bytes".into(), json!(send_bytes));
    m.insert(
        "recv_bytes".into(),
        json!(s.stats.bytes_in.load(Ordering::Relaxed)),
    );
    m.insert(
        "kbps".into(),
        json!({"recv_30s": kbps.recv, "send_30s": kbps.send}),
    );
    m.insert(
        "publish".into(),
        json!({"active": publisher.is_some(), "cid": publisher.map(|p| p.to_string())}),
    );
    m.insert("video".into(), video);
    m.insert("audio".into(), audio);
    if let Some(pull) = shared.edges.get(key) {
        m.insert("edge".into(), edge_json(&pull));
    }
    let hls = shared.hls.status(key).map_or(
        Value::Null,
        |h| json!({"sequence": h.sequence, "segments": h.segments}),
    );
    m.insert("hls".into(), hls);
    m.insert(
        "dvr".into(),
        json!({"files": s.stats.dvr_files.load(Ordering::Relaxed),
               "errors": s.stats.dvr_errors.load(Ordering::Relaxed)}),
    );
    Value::Object(m)
}

/// A pulled stream's upstream: SRS's streams carry no such field; ringcast adds it for edges.
fn edge_json(pull: &Pull) -> Value {
    let status = pull.status();
    let since = status
        .since
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "origin": status.origin,
        "state": if status.playing { "playing" } else { "connecting" },
        "since": since,
        "reconnects": pull.reconnects.load(Ordering::Relaxed),
        "recv_bytes": pull.bytes.load(Ordering::Relaxed),
    })
}

fn client_json(c: &Client, shared: &Shared) -> Value {
    let alive = c.started.elapsed().as_secs_f64();
    let send = c.send_bytes.load(Ordering::Relaxed);
    let recv = c.recv_bytes.load(Ordering::Relaxed);
    // A client's rate is its average since it started: clients are too many to sample.
    let kbps = |bytes: u64| {
        if alive > 0.0 {
            (bytes as f64 * 8.0 / 1000.0 / alive).round() as u64
        } else {
            0
        }
    };
    let stream = shared.hub.get(&c.key).map(|s| s.id().to_string());
    json!({
        "id": c.id.to_string(),
        "vhost": c.key.vhost,
        "stream": stream,
        "ip": c.ip.to_string(),
        "pageUrl": "",
        "swfUrl": "",
        "tcUrl": c.tc_url,
        "url": format!("/{}/{}", c.key.app, c.key.stream),
        "name": c.key.stream,
        "type": c.kind.as_str(),
        "publish": c.kind.is_publish(),
        "alive": alive,
        "send_bytes": send,
        "recv_bytes": recv,
        "kbps": {"recv_30s": kbps(recv), "send_30s": kbps(send)},
    })
}
