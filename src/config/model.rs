//! The typed configuration: [`Config`], its sections ([`Vhost`], [`Listener`],
//! [`RtcServer`], ...) with their defaults, and the small lookups callers make on them
//! ([`Config::vhost`], [`Config::nofile_wanted`]). It owns what a setting means once read,
//! not how it is read: it must not know the directive syntax, the builder or the errors
//! (build.rs maps the directive tree onto these types), and touches no file or socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use crate::access::basic::Credentials;
use crate::access::security::Security;

/// Name of the vhost used when a client names no vhost or an unknown one.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// SRS's default HTTP-FLV mount.
pub const DEFAULT_FLV_MOUNT: &str = "[vhost]/[app]/[stream].flv";

pub(super) const RTMP_PORT: u16 = 1935;
pub(super) const HTTP_API_PORT: u16 = 1985;
pub(super) const HTTP_SERVER_PORT: u16 = 8080;
pub(super) const HTTPS_API_PORT: u16 = 1990;
pub(super) const HTTPS_SERVER_PORT: u16 = 8088;
const EXPORTER_PORT: u16 = 9972;
const RTC_PORT: u16 = 8000;

/// Where log lines go (`srs_log_tank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTank {
    /// Standard error. ringcast's default (SRS defaults to `file`), because
    /// it usually runs under systemd or in a container, which collect stderr.
    Console,
    /// The file named by [`Config::log_file`].
    File,
}

/// Least severe level that is logged (`srs_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything, including per-packet detail.
    Verbose,
    /// Informational detail.
    Info,
    /// Connection and stream lifecycle events; the default.
    Trace,
    /// Recoverable problems.
    Warn,
    /// Failures only.
    Error,
}

/// An optional HTTP listener (`http_api {}` or `http_server {}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `enabled on|off;`, default off as in SRS.
    pub enabled: bool,
    /// `listen PORT|IP:PORT;`.
    pub listen: SocketAddr,
    /// `https { ... }`: the same roles over TLS on a listener of its own.
    pub https: Https,
}

impl Listener {
    pub(super) fn disabled_on(port: u16, https_port: u16) -> Self {
        Self {
            enabled: false,
            listen: any_v4(port),
            https: Https::disabled_on(https_port),
        }
    }
}

/// `https { enabled on; listen 1990; key ./conf/server.key; cert ./conf/server.crt; }` inside
/// `http_api` (default port 1990, or `http_server`'s HTTPS port when both share their plain
/// port, as SRS) or `http_server` (default 8088). The files are read at start, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Https {
    /// `enabled on|off;`, default off as in SRS; on needs the enclosing block enabled.
    pub enabled: bool,
    /// `listen PORT|IP:PORT;`.
    pub listen: SocketAddr,
    /// `key FILE;`: the PEM private key (PKCS#8, PKCS#1 or SEC1), default
    /// `./conf/server.key`.
    pub key: PathBuf,
    /// `cert FILE;`: the PEM certificate chain, leaf first, default `./conf/server.crt`.
    pub cert: PathBuf,
}

impl Https {
    fn disabled_on(port: u16) -> Self {
        Self {
            enabled: false,
            listen: any_v4(port),
            key: PathBuf::from("./conf/server.key"),
            cert: PathBuf::from("./conf/server.crt"),
        }
    }
}

/// `http_api { auth { enabled on; username NAME; password PASS; } }` (SRS 5+): HTTP Basic
/// authentication on the API's `/api/` paths, and on its `/metrics` unless `public_metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAuth {
    /// `enabled on|off;`, default off as in SRS.
    pub enabled: bool,
    /// `username NAME;` and `password PASS;`, kept as digests.
    pub credentials: Credentials,
    /// `public_metrics on|off;` (ringcast's), default off: whether the API listener's
    /// `/metrics` stays open when auth is on. The `exporter {}` listener is always open.
    pub public_metrics: bool,
}

impl Default for ApiAuth {
    fn default() -> Self {
        Self {
            enabled: false,
            credentials: Credentials::new("", ""),
            public_metrics: false,
        }
    }
}

/// `exporter { enabled on; listen 9972; label cn-beijing; tag cn-edge; }`: SRS 5's Prometheus
/// exporter, its metrics (`srs_*`) served at `/metrics` on a listener of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// `enabled on|off;`, default off as in SRS.
    pub enabled: bool,
    /// `listen PORT|IP:PORT;`, default `0.0.0.0:9972` as in SRS.
    pub listen: SocketAddr,
    /// `label NAME;`: the `label` of `srs_build_info`, left out when empty (the default).
    pub label: String,
    /// `tag NAME;`: the `tag` of `srs_build_info`, left out when empty (the default).
    pub tag: String,
}

impl Default for Exporter {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: any_v4(EXPORTER_PORT),
            label: String::new(),
            tag: String::new(),
        }
    }
}

/// Per-vhost settings (`vhost NAME { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    /// The vhost name, e.g. `__defaultVhost__` or `live.example.com`.
    pub name: String,
    /// `enabled on|off;`, default on. A disabled vhost still matches by name
    /// in [`Config::vhost`], so clients of it are refused rather than being
    /// silently served by the default vhost.
    pub enabled: bool,
    /// `gop_cache on|off;` (in the vhost or its `play {}`), default on: new
    /// players start from the last keyframe instead of waiting for the next.
    pub gop_cache: bool,
    /// `queue_length SECONDS;` (in the vhost or its `play {}`), default 10 s:
    /// how much media a slow player may fall behind before it is dropped.
    pub queue_length: Duration,
    /// Forward destinations as `HOST:PORT` (`[V6]:PORT` for IPv6), from
    /// `forward A B;` or `forward { enabled on; destination A B; }`.
    pub forward: Vec<String>,
    /// `chunk_size N;` override of [`Config::chunk_size`].
    pub chunk_size: Option<u32>,
    /// `mw_latency MS;` (in the vhost or its `play {}`): merged-write delay;
    /// `None` leaves the choice to the server.
    pub mw_latency: Option<u32>,
    /// `tcp_nodelay on|off;`, default off as in SRS.
    pub tcp_nodelay: bool,
    /// `http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }`: the HTTP-FLV mount
    /// template when enabled, default off as in SRS. SRS's HTTP-TS and audio-only mounts
    /// (`.ts`, `.aac`, `.mp3`) load with a warning and leave this `None`: not served yet.
    pub http_remux: Option<String>,
    /// `rtc { ... }`: WebRTC for this vhost's streams.
    pub rtc: VhostRtc,
    /// `security { enabled on; allow publish 10.0.0.0/8; deny play all; }`: who may publish
    /// and play, by address, evaluated as SRS does ([`crate::access::security`]).
    pub security: Security,
    /// `cluster { ... }` (or SRS 1/2's vhost-level `mode`, `origin`, `token_traverse`): whether
    /// this vhost is an origin or an edge, and of which origins.
    pub cluster: Cluster,
    /// `http_hooks { ... }`: SRS's HTTP callbacks that allow or deny this vhost's clients.
    pub http_hooks: HttpHooks,
    /// `hls { ... }`: HLS segments and playlists of this vhost's streams.
    pub hls: VhostHls,
    /// `dvr { ... }`: recording this vhost's streams to files.
    pub dvr: Dvr,
}

/// `cluster { mode local|remote; }`: what a vhost does with a stream it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// An origin, the default: streams are published here and played from here.
    #[default]
    Local,
    /// An edge: players make it pull the stream from an origin, publishers are relayed to one.
    Remote,
}

/// A vhost's `cluster { mode; origin; token_traverse; origin_cluster; coworkers; }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cluster {
    /// `mode local|remote;`, default local.
    pub mode: ClusterMode,
    /// `origin HOST[:PORT] ...;`: an edge's origins as `HOST:PORT` (`[V6]:PORT`), tried in
    /// order, the port defaulting to 1935. Never empty when [`ClusterMode::Remote`].
    pub origin: Vec<String>,
    /// `token_traverse on|off;`, default off: an edge passes each client's query (its token)
    /// to the origin on the client's own connection, so the origin does the auth.
    pub token_traverse: bool,
    /// `origin_cluster on|off;`, default off: an origin asks its coworkers for streams it does
    /// not have.
    pub origin_cluster: bool,
    /// `coworkers HOST[:PORT] ...;`: the HTTP APIs of the other origins of the cluster, as
    /// `HOST:PORT`, the port defaulting to 80 as in the URL SRS builds from them.
    pub coworkers: Vec<String>,
}

impl Cluster {
    /// Whether this vhost is an edge (`mode remote;`).
    #[must_use]
    pub fn is_edge(&self) -> bool {
        self.mode == ClusterMode::Remote
    }
}

/// A vhost's `http_hooks { enabled on; on_publish URL...; ... }`: the URLs SRS POSTs each
/// event of a client to. Each list is in file order; an event with several URLs needs all
/// of them to allow. Off by default, as in SRS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpHooks {
    /// `enabled on|off;`, default off: when off no hook is called.
    pub enabled: bool,
    /// `on_connect URL...;`: after an RTMP connect; a deny closes the connection.
    pub on_connect: Vec<String>,
    /// `on_close URL...;`: when an RTMP connection ends; its answer is not waited for.
    pub on_close: Vec<String>,
    /// `on_publish URL...;`: before a publish is accepted; a deny refuses it.
    pub on_publish: Vec<String>,
    /// `on_unpublish URL...;`: after a publish ends; its answer is not waited for.
    pub on_unpublish: Vec<String>,
    /// `on_play URL...;`: before a play is accepted; a deny refuses it.
    pub on_play: Vec<String>,
    /// `on_stop URL...;`: after a play ends; its answer is not waited for.
    pub on_stop: Vec<String>,
    /// `on_dvr URL...;`: after a DVR file is closed; its answer is not waited for.
    pub on_dvr: Vec<String>,
    /// `on_hls URL...;`: after an HLS segment is written to `hls_path`; its answer is not
    /// waited for.
    pub on_hls: Vec<String>,
    /// `on_hls_notify URL...;`: after an HLS segment is written, a GET of each URL, its
    /// `[server_id]`, `[service_id]`, `[app]`, `[stream]`, `[ts_url]` and `[param]` filled in
    /// (a CDN told to fetch the segment); `hls_nb_notify` bytes of the answer are read.
    pub on_hls_notify: Vec<String>,
}

/// A vhost's `hls { ... }`, SRS 6's directives with SRS 6's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct VhostHls {
    /// `enabled on|off;`, default off.
    pub enabled: bool,
    /// `hls_fragment SECONDS;`, default 10 s: the shortest segment cut at a keyframe
    /// (times `hls_td_ratio`).
    pub fragment: Duration,
    /// `hls_td_ratio R;`, default 1.0: segments are cut at keyframes past
    /// `hls_fragment * R`, and `#EXT-X-TARGETDURATION` is at least that.
    pub td_ratio: f64,
    /// `hls_aof_ratio R;`, default 2.1: any audio frame past `hls_fragment * R` cuts a
    /// segment (how pure-audio streams are cut, and a bound when keyframes stop).
    pub aof_ratio: f64,
    /// `hls_window SECONDS;`, default 60 s: the playlist covers this much.
    pub window: Duration,
    /// `hls_path DIR;`, default `./objs/nginx/html`: where files are written.
    pub path: PathBuf,
    /// `hls_m3u8_file TEMPLATE;`, default `[app]/[stream].m3u8`.
    pub m3u8_file: String,
    /// `hls_ts_file TEMPLATE;`, default `[app]/[stream]-[seq].ts`.
    pub ts_file: String,
    /// `hls_entry_prefix URL;`, default empty: the base of segment URLs in the playlist.
    pub entry_prefix: String,
    /// `hls_dispose SECONDS;`, default 120 s: files of a stream not republished within this
    /// are removed; 0 keeps them.
    pub dispose: Duration,
    /// `hls_nb_notify BYTES;`, default 64: how much of an `on_hls_notify` answer is read.
    pub nb_notify: usize,
    /// `hls_cleanup on|off;`, default on: segment files that leave the playlist are removed.
    pub cleanup: bool,
    /// `hls_wait_keyframe on|off;`, default on: cut only at keyframes.
    pub wait_keyframe: bool,
    /// `hls_acodec an;` turns audio off (`aac`, the default, or `mp3`: the stream's own).
    pub audio: bool,
    /// `hls_vcodec vn;` turns video off (`h264`, the default, or `h265`: the stream's own).
    pub video: bool,
    /// `hls_fmp4 on|off;`, default off: CMAF (fMP4) segments, `.m4s`, with an init segment,
    /// instead of MPEG-TS.
    pub fmp4: bool,
    /// `hls_ll on|off;`, default off: low-latency HLS, with parts of `part`.
    pub ll: bool,
    /// `hls_ll_part SECONDS;`, default 0.2 s: LL-HLS's part target, 0.1 to 5 s.
    pub part: Duration,
}

// The ratios are never NaN: build.rs accepts only plain positive decimals.
impl Eq for VhostHls {}

impl Default for VhostHls {
    fn default() -> Self {
        Self {
            enabled: false,
            fragment: Duration::from_secs(10),
            td_ratio: 1.0,
            aof_ratio: 2.1,
            window: Duration::from_secs(60),
            path: PathBuf::from("./objs/nginx/html"),
            m3u8_file: "[app]/[stream].m3u8".to_owned(),
            ts_file: "[app]/[stream]-[seq].ts".to_owned(),
            entry_prefix: String::new(),
            dispose: Duration::from_secs(120),
            nb_notify: 64,
            cleanup: true,
            wait_keyframe: true,
            audio: true,
            video: true,
            fmp4: false,
            ll: false,
            part: Duration::from_millis(200),
        }
    }
}

/// SRS's default `dvr_path`.
pub const DEFAULT_DVR_PATH: &str = "./objs/nginx/html/[app]/[stream].[timestamp].flv";

/// A vhost's `dvr { enabled on; dvr_apply all; dvr_plan session; dvr_path P; dvr_duration 30;
/// dvr_wait_keyframe on; time_jitter full; }`, with SRS 6's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dvr {
    /// `enabled on|off;`, default off.
    pub enabled: bool,
    /// `dvr_apply all;` (`None`, the default) or `dvr_apply live/a live/b;`: the `app/stream`
    /// names recorded.
    pub apply: Option<Vec<String>>,
    /// `dvr_plan session|segment;`, default session.
    pub plan: DvrPlan,
    /// `dvr_path TEMPLATE;`: the file's path with SRS's variables; its extension (`.flv` or
    /// `.mp4`) picks the format, and one with neither is a folder that gets
    /// `/[stream].[timestamp].flv` appended, as in SRS 1.
    pub path: String,
    /// `dvr_duration SECONDS;`, default 30: the segment plan's file length; 0 never cuts.
    pub duration: Duration,
    /// `dvr_wait_keyframe on|off;`, default on: segments are cut on a video keyframe.
    pub wait_keyframe: bool,
    /// `time_jitter full|zero|off;`, default full: how each file's timestamps are made.
    pub time_jitter: TimeJitter,
}

impl Default for Dvr {
    fn default() -> Self {
        Self {
            enabled: false,
            apply: None,
            plan: DvrPlan::Session,
            path: DEFAULT_DVR_PATH.to_owned(),
            duration: Duration::from_secs(30),
            wait_keyframe: true,
            time_jitter: TimeJitter::Full,
        }
    }
}

impl Dvr {
    /// Whether stream `app/stream` is recorded: enabled, and named by `dvr_apply`.
    #[must_use]
    pub fn applies_to(&self, app: &str, stream: &str) -> bool {
        self.enabled
            && self.apply.as_ref().is_none_or(|names| {
                let id = format!("{app}/{stream}");
                names.contains(&id)
            })
    }
}

/// `dvr_plan`: when a file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrPlan {
    /// One file per publish, closed when the publisher leaves.
    Session,
    /// A new file every `dvr_duration`.
    Segment,
}

/// `time_jitter`: SRS's timestamp correction of each recorded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeJitter {
    /// The file starts at 0 and never steps back or leaps (steps over 250 ms become 10 ms).
    Full,
    /// The file starts at 0; steps are kept as they are.
    Zero,
    /// The stream's own timestamps.
    Off,
}

/// A vhost's `rtc { enabled on; rtmp_to_rtc on; rtc_to_rtmp on; nack on; }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostRtc {
    /// `enabled on|off;`, default off as in SRS: WHIP publish and WHEP play are refused unless
    /// the stream's vhost turns them on.
    pub enabled: bool,
    /// `rtmp_to_rtc on|off;`, default off: RTMP publishes of this vhost are offered to WHEP
    /// players.
    pub rtmp_to_rtc: bool,
    /// `rtc_to_rtmp on|off;`, default off: WHIP publishes of this vhost are published as RTMP
    /// streams too (H.264 as is, Opus as AAC), for RTMP, HTTP-FLV and HLS players.
    pub rtc_to_rtmp: bool,
    /// `nack on|off;`, default on: lost packets a player reports are resent.
    pub nack: bool,
}

impl Default for VhostRtc {
    fn default() -> Self {
        Self {
            enabled: false,
            rtmp_to_rtc: false,
            rtc_to_rtmp: false,
            nack: true,
        }
    }
}

/// One address of `rtc_server.candidate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcCandidate {
    /// This address.
    Ip(IpAddr),
    /// `*`: every non-loopback address of the host, as its interfaces have them.
    Host,
}

/// `rtc_server { enabled on; listen 8000; candidate 127.0.0.1; }`: the WebRTC UDP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcServer {
    /// `enabled on|off;`, default off.
    pub enabled: bool,
    /// `listen PORT;` (or `IP:PORT`): the UDP address every worker binds, default
    /// `0.0.0.0:8000`.
    pub listen: SocketAddr,
    /// `candidate ADDR ...;`: the addresses put in SDP answers for clients to send to, each
    /// an IP, `*` (SRS's default: every non-loopback address of the host) or `$ENV_VAR` (its
    /// value, one or more of those; unset, `*`). Empty (unset) means `*`.
    pub candidate: Vec<RtcCandidate>,
    /// `sndbuf SIZE;` (bytes, or with a K, M or G suffix): the UDP send buffer
    /// to ask for; `None` keeps the kernel's default (`net.core.wmem_default`).
    pub sndbuf: Option<usize>,
    /// `rcvbuf SIZE;`: the UDP receive buffer to ask for; `None` keeps the
    /// kernel's default (`net.core.rmem_default`).
    pub rcvbuf: Option<usize>,
}

impl Default for RtcServer {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: any_v4(RTC_PORT),
            candidate: Vec::new(),
            sndbuf: None,
            rcvbuf: None,
        }
    }
}

/// `mw_latency` where the config leaves it unset, in ms: the longest a message waits on the
/// server. At 25 fps the players write every second video frame (12.5 sends a second
/// instead of ~70 at once), and a video frame waits at most 40 ms. Measured in bench.sh
/// (`--mw-latency`).
pub const DEFAULT_MW_LATENCY_MS: u32 = 100;

impl Vhost {
    /// The merged-write bound of this vhost's players (the hub's flush schedule); `None`
    /// when `mw_latency 0;` asks for a write per message.
    #[must_use]
    pub fn merged_write(&self) -> Option<Duration> {
        let ms = self.mw_latency.unwrap_or(DEFAULT_MW_LATENCY_MS);
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// A vhost with every setting at its default.
    #[must_use]
    pub fn with_defaults(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: true,
            gop_cache: true,
            queue_length: Duration::from_secs(10),
            forward: Vec::new(),
            chunk_size: None,
            mw_latency: None,
            tcp_nodelay: false,
            http_remux: None,
            rtc: VhostRtc::default(),
            security: Security::default(),
            cluster: Cluster::default(),
            http_hooks: HttpHooks::default(),
            hls: VhostHls::default(),
            dvr: Dvr::default(),
        }
    }
}

/// The typed server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// RTMP listen addresses from `listen 1935 127.0.0.1:19350;`; a bare port
    /// means `0.0.0.0:PORT`. Default `0.0.0.0:1935`.
    pub listen: Vec<SocketAddr>,
    /// `max_connections N;`, default 1000.
    pub max_connections: usize,
    /// `daemon on|off;`. Default off, unlike SRS (on): under systemd or in a
    /// container, forking into the background is wrong.
    pub daemon: bool,
    /// `pid PATH;`, default `./objs/ringcast.pid`.
    pub pid: PathBuf,
    /// `srs_log_tank console|file;`, default [`LogTank::Console`].
    pub log_tank: LogTank,
    /// `srs_log_file PATH;`, default `./objs/ringcast.log`.
    pub log_file: PathBuf,
    /// `srs_log_level verbose|info|trace|warn|error;`, default trace.
    pub log_level: LogLevel,
    /// `chunk_size N;` outgoing RTMP chunk size, 128..=65536, default 60000.
    pub chunk_size: u32,
    /// `workers N;` (1..=1024); `None` means one per CPU core.
    pub workers: Option<usize>,
    /// `http_api { enabled on; listen 1985; }`, default off on port 1985.
    pub http_api: Listener,
    /// `http_api { auth { ... } }`, default off.
    pub api_auth: ApiAuth,
    /// `http_server { ... }` (or SRS 2's `http_stream`), default off on 8080.
    pub http_server: Listener,
    /// `rtc_server { ... }`, default off on UDP 8000.
    pub rtc_server: RtcServer,
    /// `exporter { ... }`, default off on 9972.
    pub exporter: Exporter,
    /// `cpu_affinity 1-3;`: worker `i` runs on the `i`-th CPU of the list, round
    /// robin, in the order written; empty (the default) leaves them unpinned.
    pub cpu_affinity: Vec<usize>,
    /// `priority -15;`: the nice value of the process, -20..=19, as with
    /// `renice -n -15`; `None` keeps the one it was started with.
    pub priority: Option<i32>,
    /// `rlimit_nofile N;`: the open-file limit to raise to; `None` means
    /// [`Config::nofile_wanted`]'s default, enough for `max_connections`.
    pub rlimit_nofile: Option<u64>,
    /// All vhosts in file order; always contains [`DEFAULT_VHOST`].
    pub vhosts: Vec<Vhost>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![any_v4(RTMP_PORT)],
            max_connections: 1000,
            daemon: false,
            pid: PathBuf::from("./objs/ringcast.pid"),
            log_tank: LogTank::Console,
            log_file: PathBuf::from("./objs/ringcast.log"),
            log_level: LogLevel::Trace,
            chunk_size: 60000,
            workers: None,
            http_api: Listener::disabled_on(HTTP_API_PORT, HTTPS_API_PORT),
            api_auth: ApiAuth::default(),
            http_server: Listener::disabled_on(HTTP_SERVER_PORT, HTTPS_SERVER_PORT),
            rtc_server: RtcServer::default(),
            exporter: Exporter::default(),
            cpu_affinity: Vec::new(),
            priority: None,
            rlimit_nofile: None,
            vhosts: vec![Vhost::with_defaults(DEFAULT_VHOST)],
        }
    }
}

impl Config {
    /// The vhost named `name` (ignoring ASCII case), else [`DEFAULT_VHOST`].
    #[must_use]
    pub fn vhost(&self, name: &str) -> &Vhost {
        self.find_vhost(name)
            .or_else(|| self.find_vhost(DEFAULT_VHOST))
            // Only reachable if a caller removed the default vhost from the
            // public field; answering with defaults beats panicking.
            .unwrap_or_else(|| &FALLBACK_VHOST)
    }

    /// The open-file limit the process wants: `rlimit_nofile`, else
    /// [`Config::nofile_needed`].
    #[must_use]
    pub fn nofile_wanted(&self) -> u64 {
        self.rlimit_nofile.unwrap_or_else(|| self.nofile_needed())
    }

    /// Descriptors for `max_connections` plus room for listeners, the io_uring
    /// and epoll descriptors of every worker, forwards and the log.
    #[must_use]
    pub fn nofile_needed(&self) -> u64 {
        self.max_connections as u64 + NOFILE_SLACK
    }

    fn find_vhost(&self, name: &str) -> Option<&Vhost> {
        self.vhosts
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }
}

/// Descriptors beyond one per connection; see [`Config::nofile_wanted`].
const NOFILE_SLACK: u64 = 1024;

static FALLBACK_VHOST: LazyLock<Vhost> = LazyLock::new(|| Vhost::with_defaults(DEFAULT_VHOST));

pub(super) fn any_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}
