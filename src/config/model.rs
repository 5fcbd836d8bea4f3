//! The typed configuration: [`Config`], its sections ([`Vhost`], [`Listener`],
//! [`RtcServer`], ...) with their defaults, and the small lookups callers make on them
//! ([`Config::vhost`], [`Config::nofile_wanted`]). It owns what a setting means once read,
//! not how it is read: it must not know the directive syntax, the builder or the errors
//! (build.rs maps the directive tree onto these types), and touches no file or socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// Name of the vhost used when a client names no vhost or an unknown one.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// SRS's default HTTP-FLV mount.
pub const DEFAULT_FLV_MOUNT: &str = "[vhost]/[app]/[stream].flv";

pub(super) const RTMP_PORT: u16 = 1935;
pub(super) const HTTP_API_PORT: u16 = 1985;
pub(super) const HTTP_SERVER_PORT: u16 = 8080;
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
}

impl Listener {
    pub(super) fn disabled_on(port: u16) -> Self {
        Self {
            enabled: false,
            listen: any_v4(port),
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
    /// `dvr { ... }`: recording this vhost's streams to files.
    pub dvr: Dvr,
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

/// A vhost's `rtc { enabled on; rtmp_to_rtc on; nack on; }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostRtc {
    /// `enabled on|off;`, default off as in SRS: WHIP publish and WHEP play are refused unless
    /// the stream's vhost turns them on.
    pub enabled: bool,
    /// `rtmp_to_rtc on|off;`, default off: RTMP publishes of this vhost are offered to WHEP
    /// players.
    pub rtmp_to_rtc: bool,
    /// `nack on|off;`, default on: lost packets a player reports are resent.
    pub nack: bool,
}

impl Default for VhostRtc {
    fn default() -> Self {
        Self {
            enabled: false,
            rtmp_to_rtc: false,
            nack: true,
        }
    }
}

/// `rtc_server { enabled on; listen 8000; candidate 127.0.0.1; }`: the WebRTC UDP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcServer {
    /// `enabled on|off;`, default off.
    pub enabled: bool,
    /// `listen PORT;` (or `IP:PORT`): the UDP address every worker binds, default
    /// `0.0.0.0:8000`.
    pub listen: SocketAddr,
    /// `candidate IP;`: the address put in SDP answers for clients to send to. `*` (SRS's
    /// default) or an unset `$ENV_VAR` mean `None`: detect it from the host's interfaces.
    pub candidate: Option<IpAddr>,
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
            candidate: None,
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
            http_api: Listener::disabled_on(HTTP_API_PORT),
            http_server: Listener::disabled_on(HTTP_SERVER_PORT),
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
