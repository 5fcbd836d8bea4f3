//! Directive tree to [`Config`]: the builder that walks what parser.rs produced, validates
//! every known directive's value (ranges, forms, blocks), and turns everything it does not
//! support into [`Warning`]s; plus [`Config::load`] and [`Config::parse`], the entry points.
//! It owns the compatibility rules listed in the module doc. It reads files only through
//! include.rs, applies no setting and opens no socket.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{overlay, Environment};
use super::error::{at, ConfigError};
use super::include::{expand, read_text};
use super::model::{
    any_v4, ApiAuth, Cluster, ClusterMode, Config, Dvr, DvrPlan, Exporter, HttpHooks, Https,
    Listener, LogLevel, LogTank, RtcCandidate, RtcServer, TimeJitter, Vhost, VhostHls, VhostRtc,
    DEFAULT_FLV_MOUNT, DEFAULT_VHOST, HTTPS_API_PORT, HTTPS_SERVER_PORT, HTTP_API_PORT,
    HTTP_SERVER_PORT, RTMP_PORT,
};
use super::parser::{parse_tree, Directive};
use crate::access::basic::Credentials;
use crate::access::security::{Rule, RuleError, Security};

/// SRS's accepted chunk sizes; the RTMP spec allows larger, but clients in the
/// wild are only tested against what SRS sends.
const CHUNK_SIZE: RangeInclusive<u64> = 128..=65536;
/// Linux's default `fs.nr_open`, the most descriptors one process can open,
/// so a larger limit could never be reached.
const MAX_CONNECTIONS: RangeInclusive<u64> = 1..=1_048_576;
const WORKERS: RangeInclusive<u64> = 1..=1024;
/// A minute of merge-write delay is already useless for live playback; the
/// bound catches values written in microseconds by mistake.
const MW_LATENCY_MS: RangeInclusive<u64> = 0..=60_000;
/// An hour of queued media per player is far past any real need and would let
/// one slow player pin a great deal of memory.
const MAX_QUEUE_SECS: f64 = 3600.0;
/// glibc's `cpu_set_t` holds 1024 CPUs, the most `sched_setaffinity` can name.
const CPUS: RangeInclusive<u64> = 0..=1023;
/// Nice values, from highest priority to lowest.
const PRIORITY: RangeInclusive<i64> = -20..=19;
/// Far past any real need (Linux's `fs.nr_open` default is 1048576); the bound
/// catches a value with a digit too many.
const RLIMIT_NOFILE: RangeInclusive<u64> = 1..=1 << 30;
/// The kernel keeps socket buffer sizes in an `int` and doubles what is asked,
/// so 1 GiB is the most that means anything; below a page is a typo.
const SOCKET_BUFFER: RangeInclusive<u64> = 4096..=1 << 30;

/// Something in the config that was accepted but deserves the operator's
/// attention, such as an unsupported directive that was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The config file name as given to [`Config::parse`], an included file's path, or
    /// the environment variable that set the directive.
    pub file: String,
    /// 1-based line; 0 for a directive set by an environment variable.
    pub line: usize,
    /// What was noticed.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", at(&self.file, &self.line), self.message)
    }
}

impl Config {
    /// Reads and parses the config file at `path`. Messages name the path
    /// as given.
    ///
    /// # Errors
    /// [`ConfigError::Io`], [`ConfigError::TooLarge`] or
    /// [`ConfigError::NotUtf8`] for the file itself, otherwise as
    /// [`Config::parse`].
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        Self::load_with(Some(path), &Environment::default())
    }

    /// Like [`Config::load`], with the directives `env` sets overriding the file's, as SRS
    /// reads them (see [`Environment`]); with no `path`, the environment alone, as `-e`.
    ///
    /// # Errors
    /// As [`Config::load`]; a bad value set by a variable names the variable.
    pub fn load_with(
        path: Option<&Path>,
        env: &Environment,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        let Some(path) = path else {
            return Self::parse_with("", ENV_ONLY_FILE, env);
        };
        let file = path.display().to_string();
        let text = read_text(path, &file)?;
        let mut tree = parse(&text, &file)?;
        expand(&mut tree, path, &file, 0)?;
        let loaded = build(tree, &file, env)?;
        tracing::debug!(
            file = %file,
            vhosts = loaded.0.vhosts.len(),
            warnings = loaded.1.len(),
            "config loaded"
        );
        Ok(loaded)
    }

    /// Parses config text. `file` is only used in messages.
    ///
    /// # Errors
    /// The first syntax error or invalid value found; see [`ConfigError`].
    pub fn parse(text: &str, file: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Self::parse_with(text, file, &Environment::default())
    }

    /// Like [`Config::parse`], with the directives `env` sets overriding the text's.
    ///
    /// # Errors
    /// As [`Config::parse`]; a bad value set by a variable names the variable.
    pub fn parse_with(
        text: &str,
        file: &str,
        env: &Environment,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        build(parse(text, file)?, file, env)
    }
}

fn parse(text: &str, file: &str) -> Result<Vec<Directive>, ConfigError> {
    parse_tree(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.line,
        kind: e.kind,
    })
}

/// The environment over the tree, then the tree to a [`Config`].
fn build(
    mut tree: Vec<Directive>,
    file: &str,
    env: &Environment,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let warnings = overlay(&mut tree, env)
        .into_iter()
        .map(|(var, message)| Warning {
            file: var,
            line: 0,
            message,
        })
        .collect();
    let mut builder = Builder {
        file,
        warnings,
        reported_unknown: HashSet::new(),
    };
    let config = builder.config(&tree)?;
    Ok((config, builder.warnings))
}

/// What messages name as the file when there is none (`-e`).
const ENV_ONLY_FILE: &str = "(environment)";

/// The mount endings SRS's `http_remux` serves: FLV, HTTP-TS, and audio-only AAC and MP3.
const REMUX_EXTENSIONS: &[&str] = &[".flv", ".ts", ".aac", ".mp3"];

/// Known directive names per context. Anything else warns and is skipped.
const GLOBAL_KEYS: &[&str] = &[
    "listen",
    "max_connections",
    "daemon",
    "pid",
    "srs_log_tank",
    "srs_log_file",
    "srs_log_level",
    "srs_log_level_v2",
    "chunk_size",
    "workers",
    "http_api",
    "http_server",
    "http_stream",
    "rtc_server",
    "exporter",
    "cpu_affinity",
    "priority",
    "rlimit_nofile",
    "vhost",
];
const VHOST_KEYS: &[&str] = &[
    "enabled",
    "gop_cache",
    "queue_length",
    "mw_latency",
    "chunk_size",
    "tcp_nodelay",
    "forward",
    "play",
    "http_remux",
    "rtc",
    "security",
    "cluster",
    "mode",
    "origin",
    "token_traverse",
    "http_hooks",
    "hls",
    "dvr",
];
const HTTP_REMUX_KEYS: &[&str] = &["enabled", "mount"];
const PLAY_KEYS: &[&str] = &["gop_cache", "queue_length", "mw_latency"];
const FORWARD_KEYS: &[&str] = &["enabled", "destination"];
const LISTENER_KEYS: &[&str] = &["enabled", "listen", "https"];
const HTTP_API_KEYS: &[&str] = &["enabled", "listen", "https", "auth"];
const HTTPS_KEYS: &[&str] = &["enabled", "listen", "key", "cert"];
const AUTH_KEYS: &[&str] = &["enabled", "username", "password", "public_metrics"];
const SECURITY_KEYS: &[&str] = &["enabled", "allow", "deny"];
const RTC_SERVER_KEYS: &[&str] = &["enabled", "listen", "candidate", "sndbuf", "rcvbuf"];
const EXPORTER_KEYS: &[&str] = &["enabled", "listen", "label", "tag"];
const VHOST_RTC_KEYS: &[&str] = &["enabled", "rtmp_to_rtc", "rtc_to_rtmp", "nack"];
const CLUSTER_KEYS: &[&str] = &[
    "mode",
    "origin",
    "token_traverse",
    "origin_cluster",
    "coworkers",
];
/// The port SRS's URL `http://HOST/api/v1/clusters` implies for a coworker named without one.
const COWORKER_PORT: u16 = 80;
const HTTP_HOOKS_KEYS: &[&str] = &[
    "enabled",
    "on_connect",
    "on_close",
    "on_publish",
    "on_unpublish",
    "on_play",
    "on_stop",
    "on_dvr",
    "on_hls",
    "on_hls_notify",
];
/// The `hls {}` directives ringcast implements; SRS's others (`hls_keys`, `hls_ctx`, ...)
/// warn as unsupported.
const HLS_KEYS: &[&str] = &[
    "enabled",
    "hls_fragment",
    "hls_td_ratio",
    "hls_aof_ratio",
    "hls_window",
    "hls_path",
    "hls_m3u8_file",
    "hls_ts_file",
    "hls_entry_prefix",
    "hls_dispose",
    "hls_nb_notify",
    "hls_cleanup",
    "hls_wait_keyframe",
    "hls_acodec",
    "hls_vcodec",
    "hls_fmp4",
    "hls_ll",
    "hls_ll_part",
];
/// SRS `hls {}` switches ringcast does not implement, with the value that means what
/// ringcast does anyway: that value loads silently, the other one warns.
const HLS_AS_RINGCAST: &[(&str, &str)] = &[
    ("hls_ctx", "off"),
    ("hls_ts_ctx", "off"),
    ("hls_keys", "off"),
    ("hls_ts_floor", "off"),
    ("hls_dts_directly", "on"),
    ("hls_on_error", "continue"),
];
/// `hls_nb_notify` bounds, bytes: a notice's answer is read only to see that it was taken;
/// 64 KiB is the HTTP client's body limit.
const NB_NOTIFY: RangeInclusive<u64> = 1..=65_536;
/// `hls_ll_part` bounds, seconds: Apple's 0.2 to 0.33 s and room either side; past 5 s a part
/// is a segment.
const HLS_PART_SECS: RangeInclusive<f64> = 0.1..=5.0;
/// `hls_dispose` bound: a day; more is a typo for a value in milliseconds.
const HLS_DISPOSE_SECS: RangeInclusive<u64> = 0..=86_400;
const DVR_KEYS: &[&str] = &[
    "enabled",
    "dvr_apply",
    "dvr_plan",
    "dvr_path",
    "dvr_duration",
    "dvr_wait_keyframe",
    "time_jitter",
];
/// A day per file is past any real recording plan; the bound catches milliseconds.
const DVR_DURATION_SECS: RangeInclusive<u64> = 0..=86_400;

/// The settings SRS 4+ keeps in `play {}` but older configs put directly in
/// the vhost, each with the directive that set it.
#[derive(Default)]
struct PlaySettings<'t> {
    gop_cache: Option<(bool, &'t Directive)>,
    queue_length: Option<(Duration, &'t Directive)>,
    mw_latency: Option<(u32, &'t Directive)>,
}

/// The edge settings SRS 3+ keeps in `cluster {}` but SRS 1/2 configs put directly in the
/// vhost, each with the directive that set it.
#[derive(Default)]
struct ClusterSettings<'t> {
    mode: Option<(ClusterMode, &'t Directive)>,
    origin: Option<(Vec<String>, &'t Directive)>,
    token_traverse: Option<(bool, &'t Directive)>,
}

/// Remembers the first line of each single-valued directive in one block.
#[derive(Default)]
struct Seen<'t>(HashMap<&'t str, usize>);

struct Builder<'f> {
    file: &'f str,
    warnings: Vec<Warning>,
    /// Dotted paths already warned about as unknown.
    reported_unknown: HashSet<String>,
}

impl Builder<'_> {
    fn config(&mut self, tree: &[Directive]) -> Result<Config, ConfigError> {
        let mut config = Config {
            vhosts: Vec::new(),
            ..Config::default()
        };
        let mut seen = Seen::default();
        let mut vhost_lines: HashMap<String, usize> = HashMap::new();
        let mut level_v2 = None;
        let mut api_https_listen_set = false;
        for d in tree {
            if !self.known("", GLOBAL_KEYS, d) {
                continue;
            }
            // SRS 2 called the HTTP server `http_stream`; both set one thing.
            let key = if d.name == "http_stream" {
                "http_server"
            } else {
                d.name.as_str()
            };
            if key != "vhost" && !self.first(&mut seen, key, d) {
                continue;
            }
            match key {
                "listen" => config.listen = self.rtmp_listen(d)?,
                "max_connections" => config.max_connections = self.number(d, MAX_CONNECTIONS)?,
                "daemon" => config.daemon = self.flag(d)?,
                "pid" => config.pid = self.path(d)?,
                "srs_log_tank" => {
                    config.log_tank = self.keyword(
                        d,
                        &[("console", LogTank::Console), ("file", LogTank::File)],
                        "`console` or `file`",
                    )?;
                }
                "srs_log_file" => config.log_file = self.path(d)?,
                "srs_log_level" => {
                    config.log_level = self.keyword(
                        d,
                        &[
                            ("verbose", LogLevel::Verbose),
                            ("info", LogLevel::Info),
                            ("trace", LogLevel::Trace),
                            ("warn", LogLevel::Warn),
                            ("error", LogLevel::Error),
                        ],
                        "one of `verbose`, `info`, `trace`, `warn`, `error`",
                    )?;
                }
                "srs_log_level_v2" => {
                    // log4j's names for the same levels; SRS 5+ prefers it when set.
                    level_v2 = Some(self.keyword(
                        d,
                        &[
                            ("trace", LogLevel::Verbose),
                            ("debug", LogLevel::Info),
                            ("info", LogLevel::Trace),
                            ("warn", LogLevel::Warn),
                            ("error", LogLevel::Error),
                        ],
                        "one of `trace`, `debug`, `info`, `warn`, `error`",
                    )?);
                }
                "chunk_size" => config.chunk_size = self.number(d, CHUNK_SIZE)?,
                "workers" => config.workers = Some(self.number(d, WORKERS)?),
                "http_api" => {
                    (config.http_api, api_https_listen_set) =
                        self.listener(d, HTTP_API_PORT, HTTPS_API_PORT)?;
                    config.api_auth = self.api_auth(d)?;
                }
                "http_server" => {
                    config.http_server = self.listener(d, HTTP_SERVER_PORT, HTTPS_SERVER_PORT)?.0;
                }
                "rtc_server" => config.rtc_server = self.rtc_server(d)?,
                "exporter" => config.exporter = self.exporter(d)?,
                "cpu_affinity" => config.cpu_affinity = self.cpu_list(d)?,
                "priority" => config.priority = Some(self.signed(d, PRIORITY)?),
                "rlimit_nofile" => config.rlimit_nofile = Some(self.number(d, RLIMIT_NOFILE)?),
                _ => {
                    let vhost = self.vhost(d)?;
                    let key = vhost.name.to_ascii_lowercase();
                    if let Some(&first_line) = vhost_lines.get(&key) {
                        return Err(ConfigError::DuplicateVhost {
                            file: self.file_of(d),
                            line: d.line,
                            name: vhost.name,
                            first_line,
                        });
                    }
                    vhost_lines.insert(key, d.line);
                    config.vhosts.push(vhost);
                }
            }
        }
        if let Some(level) = level_v2 {
            config.log_level = level;
        }
        // SRS: an API on the HTTP server's port follows the server's HTTPS port too.
        if !api_https_listen_set && config.http_api.listen == config.http_server.listen {
            config.http_api.https.listen = config.http_server.https.listen;
        }
        if !vhost_lines.contains_key(&DEFAULT_VHOST.to_ascii_lowercase()) {
            config.vhosts.push(Vhost::with_defaults(DEFAULT_VHOST));
        }
        Ok(config)
    }

    fn vhost(&mut self, d: &Directive) -> Result<Vhost, ConfigError> {
        self.require_block(d)?;
        let name = self.value(d)?;
        if name.is_empty() {
            return Err(self.invalid(d, name, "a vhost name"));
        }
        let mut vhost = Vhost::with_defaults(name);
        let mut seen = Seen::default();
        let mut legacy = PlaySettings::default();
        let mut play = PlaySettings::default();
        let mut legacy_cluster = ClusterSettings::default();
        let mut cluster = ClusterSettings::default();
        for c in &d.children {
            if !self.known("vhost.", VHOST_KEYS, c) {
                continue;
            }
            // Destinations accumulate across `forward` lines, so it alone
            // may repeat.
            if c.name != "forward" && !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => vhost.enabled = self.flag(c)?,
                "chunk_size" => vhost.chunk_size = Some(self.number(c, CHUNK_SIZE)?),
                "tcp_nodelay" => vhost.tcp_nodelay = self.flag(c)?,
                "forward" => self.forward(c, &mut vhost.forward)?,
                "play" => self.play_block(c, &mut play)?,
                "http_remux" => vhost.http_remux = self.http_remux(c)?,
                "rtc" => vhost.rtc = self.vhost_rtc(c)?,
                "security" => vhost.security = self.security(c)?,
                "cluster" => self.cluster_block(c, &mut cluster, &mut vhost.cluster)?,
                "mode" | "origin" | "token_traverse" => {
                    self.cluster_setting(c, &mut legacy_cluster)?;
                }
                "http_hooks" => vhost.http_hooks = self.http_hooks(c)?,
                "hls" => vhost.hls = self.hls(c)?,
                "dvr" => vhost.dvr = self.dvr(c)?,
                _ => self.play_setting(c, &mut legacy)?,
            }
        }
        self.merge_cluster(&vhost.name, cluster, legacy_cluster, &mut vhost.cluster)?;
        if let Some(v) = self.merge("gop_cache", play.gop_cache, legacy.gop_cache) {
            vhost.gop_cache = v;
        }
        if let Some(v) = self.merge("queue_length", play.queue_length, legacy.queue_length) {
            vhost.queue_length = v;
        }
        vhost.mw_latency = self.merge("mw_latency", play.mw_latency, legacy.mw_latency);
        Ok(vhost)
    }

    fn play_block<'t>(
        &mut self,
        d: &'t Directive,
        play: &mut PlaySettings<'t>,
    ) -> Result<(), ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        for c in &d.children {
            if self.known("vhost.play.", PLAY_KEYS, c) && self.first(&mut seen, &c.name, c) {
                self.play_setting(c, play)?;
            }
        }
        Ok(())
    }

    fn play_setting<'t>(
        &mut self,
        d: &'t Directive,
        out: &mut PlaySettings<'t>,
    ) -> Result<(), ConfigError> {
        match d.name.as_str() {
            "gop_cache" => out.gop_cache = Some((self.flag(d)?, d)),
            "queue_length" => out.queue_length = Some((self.seconds(d)?, d)),
            _ => out.mw_latency = Some((self.number(d, MW_LATENCY_MS)?, d)),
        }
        Ok(())
    }

    /// Picks the `play {}` value over the legacy vhost-level one.
    fn merge<T>(
        &mut self,
        name: &str,
        play: Option<(T, &Directive)>,
        legacy: Option<(T, &Directive)>,
    ) -> Option<T> {
        self.merge_in("play", name, play, legacy)
    }

    /// Picks the value set in the block `block {}` over the legacy vhost-level one.
    fn merge_in<T>(
        &mut self,
        block: &str,
        name: &str,
        inner: Option<(T, &Directive)>,
        legacy: Option<(T, &Directive)>,
    ) -> Option<T> {
        match (inner, legacy) {
            (Some((value, at)), Some((_, legacy))) => {
                let line = at.line;
                self.warn(
                    legacy,
                    format!(
                        "{name}: also set in `{block} {{}}` at line {line}, which takes precedence"
                    ),
                );
                Some(value)
            }
            (Some((value, _)), None) | (None, Some((value, _))) => Some(value),
            (None, None) => None,
        }
    }

    /// `cluster { ... }`: the edge settings into `settings` (merged with their legacy forms
    /// later), the origin-cluster ones straight into `out`.
    fn cluster_block<'t>(
        &mut self,
        d: &'t Directive,
        settings: &mut ClusterSettings<'t>,
        out: &mut Cluster,
    ) -> Result<(), ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("vhost.cluster.", CLUSTER_KEYS, c) || !self.first(&mut seen, &c.name, c)
            {
                continue;
            }
            match c.name.as_str() {
                "origin_cluster" => out.origin_cluster = self.flag(c)?,
                "coworkers" => {
                    out.coworkers = self.host_ports(c, COWORKER_PORT)?;
                }
                _ => self.cluster_setting(c, settings)?,
            }
        }
        Ok(())
    }

    fn cluster_setting<'t>(
        &mut self,
        d: &'t Directive,
        out: &mut ClusterSettings<'t>,
    ) -> Result<(), ConfigError> {
        match d.name.as_str() {
            "mode" => {
                let mode = self.keyword(
                    d,
                    &[
                        ("local", ClusterMode::Local),
                        ("remote", ClusterMode::Remote),
                    ],
                    "`local` or `remote`",
                )?;
                out.mode = Some((mode, d));
            }
            "origin" => out.origin = Some((self.host_ports(d, RTMP_PORT)?, d)),
            _ => out.token_traverse = Some((self.flag(d)?, d)),
        }
        Ok(())
    }

    /// Merges `cluster {}` over the legacy vhost-level settings into `out`; an edge must name
    /// an origin.
    fn merge_cluster(
        &mut self,
        vhost: &str,
        block: ClusterSettings<'_>,
        legacy: ClusterSettings<'_>,
        out: &mut Cluster,
    ) -> Result<(), ConfigError> {
        let mode_at = block.mode.or(legacy.mode).map(|(_, at)| at);
        if let Some(mode) = self.merge_in("cluster", "mode", block.mode, legacy.mode) {
            out.mode = mode;
        }
        if let Some(origin) = self.merge_in("cluster", "origin", block.origin, legacy.origin) {
            out.origin = origin;
        }
        if let Some(on) = self.merge_in(
            "cluster",
            "token_traverse",
            block.token_traverse,
            legacy.token_traverse,
        ) {
            out.token_traverse = on;
        }
        match mode_at {
            Some(at) if out.is_edge() && out.origin.is_empty() => {
                Err(ConfigError::EdgeWithoutOrigin {
                    file: self.file_of(at),
                    line: at.line,
                    vhost: vhost.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// One or more `HOST[:PORT]` values, `default_port` where a value has none.
    fn host_ports(&mut self, d: &Directive, default_port: u16) -> Result<Vec<String>, ConfigError> {
        if d.block {
            return Err(self.err_block_unexpected(d));
        }
        if d.args.is_empty() {
            return Err(self.missing(d));
        }
        d.args
            .iter()
            .map(|arg| self.host_port(d, arg, default_port))
            .collect()
    }

    /// Handles `forward A B;` and `forward { enabled on; destination A B; }`.
    fn forward(&mut self, d: &Directive, out: &mut Vec<String>) -> Result<(), ConfigError> {
        if !d.block {
            if d.args.is_empty() {
                return Err(self.missing(d));
            }
            for arg in &d.args {
                out.push(self.destination(d, arg)?);
            }
            return Ok(());
        }
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        let mut enabled = None;
        let mut destinations = Vec::new();
        for c in &d.children {
            if !self.known("vhost.forward.", FORWARD_KEYS, c) {
                continue;
            }
            if c.name == "enabled" {
                if self.first(&mut seen, "enabled", c) {
                    enabled = Some(self.flag(c)?);
                }
                continue;
            }
            if c.block {
                return Err(self.err_block_unexpected(c));
            }
            if c.args.is_empty() {
                return Err(self.missing(c));
            }
            for arg in &c.args {
                destinations.push(self.destination(c, arg)?);
            }
        }
        match enabled {
            Some(true) => out.append(&mut destinations),
            Some(false) => {}
            None if destinations.is_empty() => {}
            // SRS defaults the block form to off; staying compatible matters
            // more than guessing, but the operator should know.
            None => self.warn(
                d,
                "forward: block has destinations but no `enabled on;`, so it is off as in SRS"
                    .to_owned(),
            ),
        }
        Ok(())
    }

    /// `http_remux { enabled on; mount TEMPLATE; }`; the mount when enabled.
    fn http_remux(&mut self, d: &Directive) -> Result<Option<String>, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        let mut enabled = false;
        let mut mount = DEFAULT_FLV_MOUNT.to_owned();
        let mut mount_at = d;
        for c in &d.children {
            if !self.known("vhost.http_remux.", HTTP_REMUX_KEYS, c)
                || !self.first(&mut seen, &c.name, c)
            {
                continue;
            }
            if c.name == "enabled" {
                enabled = self.flag(c)?;
            } else {
                let value = self.leaf_value(c)?;
                let ok = REMUX_EXTENSIONS.iter().any(|ext| value.ends_with(ext))
                    && value.contains("[app]")
                    && value.contains("[stream]")
                    && !value.split('/').any(|s| s == "..")
                    && value.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(self.invalid(
                        c,
                        value,
                        "a path ending in .flv, .ts, .aac or .mp3 with [app] and [stream], \
                         e.g. [vhost]/[app]/[stream].flv",
                    ));
                }
                mount = value.to_owned();
                mount_at = c;
            }
        }
        if !mount.ends_with(".flv") {
            // SRS serves these as HTTP-TS or audio-only streams; ringcast has no muxer for
            // them, and serving FLV under a .ts name would mislead every player.
            if enabled {
                self.warn(
                    mount_at,
                    format!("http_remux: mount {mount}: not served yet, only .flv mounts are"),
                );
            }
            return Ok(None);
        }
        Ok(enabled.then_some(mount))
    }

    /// `http_api {}` or `http_server {}`, and whether its `https {}` set its own `listen`.
    fn listener(
        &mut self,
        d: &Directive,
        default_port: u16,
        https_port: u16,
    ) -> Result<(Listener, bool), ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut listener = Listener::disabled_on(default_port, https_port);
        let mut seen = Seen::default();
        let context = format!("{}.", d.name);
        let mut https = None;
        let keys = if d.name == "http_api" {
            HTTP_API_KEYS
        } else {
            LISTENER_KEYS
        };
        for c in &d.children {
            // `auth` is read by `api_auth`, which warns about a repeated one.
            if !self.known(&context, keys, c) || c.name == "auth" {
                continue;
            }
            if !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => listener.enabled = self.flag(c)?,
                "listen" => {
                    let value = self.leaf_value(c)?;
                    listener.listen = self.socket_addr(c, value)?;
                }
                _ => https = Some(c),
            }
        }
        let Some(h) = https else {
            return Ok((listener, false));
        };
        let (listen_set, enabled) = self.https(h, &context, &mut listener.https)?;
        if let Some(enabled) = enabled.filter(|_| listener.https.enabled && !listener.enabled) {
            // SRS refuses this too ("https api depends on http").
            return Err(self.invalid(
                enabled,
                "on",
                "`off`: https needs its http_api or http_server enabled, as in SRS",
            ));
        }
        Ok((listener, listen_set))
    }

    /// `https { ... }` in `context` (`http_api.`): whether it set `listen`, and its `enabled`.
    fn https<'t>(
        &mut self,
        d: &'t Directive,
        context: &str,
        https: &mut Https,
    ) -> Result<(bool, Option<&'t Directive>), ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        let context = format!("{context}https.");
        let (mut listen_set, mut enabled) = (false, None);
        for c in &d.children {
            if !self.known(&context, HTTPS_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => {
                    https.enabled = self.flag(c)?;
                    enabled = Some(c);
                }
                "listen" => {
                    let value = self.leaf_value(c)?;
                    https.listen = self.socket_addr(c, value)?;
                    listen_set = true;
                }
                "key" => https.key = self.path(c)?,
                _ => https.cert = self.path(c)?,
            }
        }
        Ok((listen_set, enabled))
    }

    /// `http_api { auth { ... } }`: the API's Basic authentication. On, it needs both a
    /// username and a password: SRS would take an empty pair, which anyone can send.
    fn api_auth(&mut self, api: &Directive) -> Result<ApiAuth, ConfigError> {
        let mut auth = ApiAuth::default();
        let mut seen = Seen::default();
        let Some(d) = api
            .children
            .iter()
            .filter(|c| c.name == "auth")
            .find(|c| self.first(&mut seen, "auth", c))
        else {
            return Ok(auth);
        };
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut seen = Seen::default();
        let (mut user, mut password) = (None, None);
        for c in &d.children {
            if !self.known("http_api.auth.", AUTH_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => auth.enabled = self.flag(c)?,
                "public_metrics" => auth.public_metrics = self.flag(c)?,
                "username" => user = Some(self.leaf_value(c)?.to_owned()),
                _ => password = Some(self.leaf_value(c)?.to_owned()),
            }
        }
        let user = user.unwrap_or_default();
        let password = password.unwrap_or_default();
        if auth.enabled {
            let missing = if user.is_empty() {
                "username"
            } else {
                "password"
            };
            if user.is_empty() || password.is_empty() {
                return Err(ConfigError::MissingValue {
                    file: self.file_of(d),
                    line: d.line,
                    directive: format!("http_api.auth.{missing} (auth is enabled)"),
                });
            }
        }
        auth.credentials = Credentials::new(&user, &password);
        Ok(auth)
    }

    /// A vhost's `security { enabled on; allow|deny publish|play all|IP|CIDR; ... }`.
    fn security(&mut self, d: &Directive) -> Result<Security, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut security = Security::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("vhost.security.", SECURITY_KEYS, c) {
                continue;
            }
            if c.name == "enabled" {
                if self.first(&mut seen, "enabled", c) {
                    security.enabled = self.flag(c)?;
                }
                continue;
            }
            if c.block {
                return Err(self.err_block_unexpected(c));
            }
            let [action, address, rest @ ..] = c.args.as_slice() else {
                return Err(self.missing(c));
            };
            self.warn_args_ignored(c, rest);
            let rule = Rule::parse(c.name == "allow", action, address).map_err(|e| match e {
                RuleError::Action(word) => self.invalid(c, &word, "`publish` or `play`"),
                RuleError::Address(word) => self.invalid(
                    c,
                    &word,
                    "`all`, an IP address or a CIDR block, e.g. 10.0.0.0/8",
                ),
            })?;
            security.rules.push(rule);
        }
        Ok(security)
    }

    /// `exporter { ... }`: SRS 5's Prometheus exporter.
    fn exporter(&mut self, d: &Directive) -> Result<Exporter, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut exporter = Exporter::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("exporter.", EXPORTER_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => exporter.enabled = self.flag(c)?,
                "listen" => {
                    let value = self.leaf_value(c)?;
                    exporter.listen = self.socket_addr(c, value)?;
                }
                "label" => exporter.label = self.leaf_value(c)?.to_owned(),
                _ => exporter.tag = self.leaf_value(c)?.to_owned(),
            }
        }
        Ok(exporter)
    }

    /// `rtc_server { ... }`. Kept apart from the other blocks: it grows with the RTC server.
    fn rtc_server(&mut self, d: &Directive) -> Result<RtcServer, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut rtc = RtcServer::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("rtc_server.", RTC_SERVER_KEYS, c) || !self.first(&mut seen, &c.name, c)
            {
                continue;
            }
            match c.name.as_str() {
                "enabled" => rtc.enabled = self.flag(c)?,
                "listen" => {
                    let value = self.leaf_value(c)?;
                    rtc.listen = self.socket_addr(c, value)?;
                }
                "candidate" => rtc.candidate = self.candidate(c)?,
                "sndbuf" => rtc.sndbuf = Some(self.size(c, SOCKET_BUFFER)?),
                _ => rtc.rcvbuf = Some(self.size(c, SOCKET_BUFFER)?),
            }
        }
        Ok(rtc)
    }

    /// CPU lists such as `1-3`, `0,2,4` or `1-2 5`, expanded in the order
    /// written; a CPU named twice counts once.
    fn cpu_list(&mut self, d: &Directive) -> Result<Vec<usize>, ConfigError> {
        const EXPECTED: &str = "a CPU list, e.g. 1-3 or 0,2,4";
        if d.block {
            return Err(self.err_block_unexpected(d));
        }
        if d.args.is_empty() {
            return Err(self.missing(d));
        }
        let mut cpus = Vec::new();
        for arg in &d.args {
            for item in arg.split(',') {
                let (lo, hi) = item.split_once('-').unwrap_or((item, item));
                if !is_digits(lo) || !is_digits(hi) {
                    return Err(self.invalid(d, arg, EXPECTED));
                }
                let cpu = |digits: &str| {
                    digits
                        .parse::<u64>()
                        .ok()
                        .filter(|n| CPUS.contains(n))
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| self.out_of_range(d, digits, CPUS))
                };
                let (lo, hi) = (cpu(lo)?, cpu(hi)?);
                if lo > hi {
                    return Err(self.invalid(d, arg, EXPECTED));
                }
                for n in lo..=hi {
                    if !cpus.contains(&n) {
                        cpus.push(n);
                    }
                }
            }
        }
        Ok(cpus)
    }

    /// SRS's candidate forms, one or more: an IP, `*` (every host address), or `$NAME` (an
    /// environment variable holding those, separated by spaces or commas; unset or empty,
    /// `*`).
    fn candidate(&mut self, d: &Directive) -> Result<Vec<RtcCandidate>, ConfigError> {
        if d.block {
            return Err(self.err_block_unexpected(d));
        }
        if d.args.is_empty() {
            return Err(self.missing(d));
        }
        let mut out = Vec::new();
        for arg in &d.args {
            let resolved = match arg.strip_prefix('$') {
                Some(name) => std::env::var(name).unwrap_or_default(),
                None => arg.clone(),
            };
            let mut words = resolved
                .split([' ', ',', '\t'])
                .filter(|w| !w.is_empty())
                .peekable();
            if words.peek().is_none() {
                out.push(RtcCandidate::Host);
            }
            for word in words {
                let c = if word == "*" {
                    RtcCandidate::Host
                } else {
                    word.parse::<IpAddr>()
                        .map(RtcCandidate::Ip)
                        .map_err(|_| self.invalid(d, word, "an IP address, `*` or `$ENV_VAR`"))?
                };
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// A vhost's `hls { ... }`.
    fn hls(&mut self, d: &Directive) -> Result<VhostHls, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut hls = VhostHls::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if let Some((_, ours)) = HLS_AS_RINGCAST.iter().find(|(n, _)| *n == c.name) {
                if c.args.first().is_some_and(|v| v != ours) {
                    self.warn(
                        c,
                        format!(
                            "vhost.hls.{} {}: not supported by ringcast, ignored (it does `{ours}`)",
                            c.name, c.args[0]
                        ),
                    );
                }
                continue;
            }
            if !self.known("vhost.hls.", HLS_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            // SRS reads an empty value as the default (`hls_entry_prefix;`).
            if c.args.is_empty() && !c.block {
                continue;
            }
            match c.name.as_str() {
                "enabled" => hls.enabled = self.flag(c)?,
                "hls_fragment" => hls.fragment = self.seconds(c)?,
                "hls_td_ratio" => hls.td_ratio = self.ratio(c)?,
                "hls_aof_ratio" => hls.aof_ratio = self.ratio(c)?,
                "hls_window" => hls.window = self.seconds(c)?,
                "hls_path" => hls.path = self.path(c)?,
                "hls_m3u8_file" => hls.m3u8_file = self.hls_template(c, ".m3u8")?,
                "hls_ts_file" => hls.ts_file = self.hls_template(c, "")?,
                "hls_entry_prefix" => hls.entry_prefix = self.leaf_value(c)?.to_owned(),
                "hls_dispose" => {
                    let secs: u64 = self.number(c, HLS_DISPOSE_SECS)?;
                    hls.dispose = Duration::from_secs(secs);
                }
                "hls_nb_notify" => hls.nb_notify = self.number(c, NB_NOTIFY)?,
                "hls_cleanup" => hls.cleanup = self.flag(c)?,
                "hls_wait_keyframe" => hls.wait_keyframe = self.flag(c)?,
                "hls_acodec" => {
                    let codec = self.keyword(
                        c,
                        &[("aac", "aac"), ("mp3", "mp3"), ("an", "an")],
                        "`aac`, `mp3` or `an`",
                    )?;
                    if codec == "mp3" {
                        self.warn(c, "hls_acodec mp3: MP3 audio is not segmented".to_owned());
                    }
                    hls.audio = codec != "an";
                }
                "hls_fmp4" => hls.fmp4 = self.flag(c)?,
                "hls_ll" => hls.ll = self.flag(c)?,
                "hls_ll_part" => {
                    let secs = self.decimal(
                        c,
                        |s| HLS_PART_SECS.contains(&s),
                        "seconds from 0.1 to 5, e.g. 0.2",
                    )?;
                    hls.part = Duration::from_secs_f64(secs);
                }
                _ => {
                    let codec = self.keyword(
                        c,
                        &[
                            ("h264", true),
                            ("h265", true),
                            ("hevc", true),
                            ("vn", false),
                        ],
                        "`h264`, `h265` or `vn`",
                    )?;
                    hls.video = codec;
                }
            }
        }
        Ok(hls)
    }

    /// A ratio such as `1.5`: a plain decimal from 1 to 100.
    fn ratio(&mut self, d: &Directive) -> Result<f64, ConfigError> {
        self.decimal(
            d,
            |r| (1.0..=100.0).contains(&r),
            "a ratio from 1 to 100, e.g. 1.5",
        )
    }

    /// A plain decimal (`10`, `0.5`) that `ok` accepts; exponents, signs, `inf` and `nan`,
    /// which `f64::from_str` would accept, are refused.
    fn decimal(
        &mut self,
        d: &Directive,
        ok: impl Fn(f64) -> bool,
        expected: &'static str,
    ) -> Result<f64, ConfigError> {
        let value = self.leaf_value(d)?;
        if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(self.invalid(d, value, expected));
        }
        value
            .parse::<f64>()
            .ok()
            .filter(|v| ok(*v))
            .ok_or_else(|| self.invalid(d, value, expected))
    }

    /// An HLS file template: relative, no `..`, printable, with `[stream]` (and `ending`).
    fn hls_template(&mut self, d: &Directive, ending: &str) -> Result<String, ConfigError> {
        let value = self.leaf_value(d)?;
        let ok = value.contains("[stream]")
            && value.ends_with(ending)
            && !value.starts_with('/')
            && !value.split('/').any(|s| s == ".." || s.is_empty())
            && value.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(self.invalid(
                d,
                value,
                "a relative path with [stream] and no `..`, e.g. [app]/[stream].m3u8",
            ));
        }
        Ok(value.to_owned())
    }

    /// A vhost's `rtc { ... }`.
    fn vhost_rtc(&mut self, d: &Directive) -> Result<VhostRtc, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut rtc = VhostRtc::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("vhost.rtc.", VHOST_RTC_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            let on = self.flag(c)?;
            match c.name.as_str() {
                "enabled" => rtc.enabled = on,
                "rtmp_to_rtc" => rtc.rtmp_to_rtc = on,
                "rtc_to_rtmp" => rtc.rtc_to_rtmp = on,
                _ => rtc.nack = on,
            }
        }
        Ok(rtc)
    }

    /// A vhost's `http_hooks { ... }`: the URLs per event, checked to be `http://`.
    fn http_hooks(&mut self, d: &Directive) -> Result<HttpHooks, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut hooks = HttpHooks::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("vhost.http_hooks.", HTTP_HOOKS_KEYS, c)
                || !self.first(&mut seen, &c.name, c)
            {
                continue;
            }
            if c.name == "enabled" {
                hooks.enabled = self.flag(c)?;
                continue;
            }
            if c.block {
                return Err(self.err_block_unexpected(c));
            }
            let list = match c.name.as_str() {
                "on_connect" => &mut hooks.on_connect,
                "on_close" => &mut hooks.on_close,
                "on_publish" => &mut hooks.on_publish,
                "on_unpublish" => &mut hooks.on_unpublish,
                "on_play" => &mut hooks.on_play,
                "on_stop" => &mut hooks.on_stop,
                "on_dvr" => &mut hooks.on_dvr,
                "on_hls" => &mut hooks.on_hls,
                "on_hls_notify" => &mut hooks.on_hls_notify,
                // `known` lets only HTTP_HOOKS_KEYS through, and `enabled` went above.
                _ => continue,
            };
            for url in &c.args {
                if url
                    .get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
                {
                    list.push(url.clone());
                } else if url
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
                {
                    // SRS calls https hooks; loading the config and denying every client
                    // beats refusing the file or calling in clear.
                    self.warn(
                        c,
                        format!(
                            "http_hooks.{}: {url}: https hooks are not supported yet, \
                             so every call to it denies",
                            c.name
                        ),
                    );
                    list.push(url.clone());
                } else {
                    return Err(self.invalid(c, url, "an http:// URL"));
                }
            }
        }
        Ok(hooks)
    }

    /// A vhost's `dvr { ... }`, read as SRS 6 reads it.
    fn dvr(&mut self, d: &Directive) -> Result<Dvr, ConfigError> {
        self.require_block(d)?;
        self.warn_args_ignored(d, &d.args);
        let mut dvr = Dvr::default();
        let mut seen = Seen::default();
        for c in &d.children {
            if !self.known("vhost.dvr.", DVR_KEYS, c) || !self.first(&mut seen, &c.name, c) {
                continue;
            }
            match c.name.as_str() {
                "enabled" => dvr.enabled = self.flag(c)?,
                "dvr_apply" => {
                    if c.block {
                        return Err(self.err_block_unexpected(c));
                    }
                    // SRS: `all` alone means every stream; otherwise each word is an
                    // `app/stream` (an `all` among others is a stream's name).
                    dvr.apply = match c.args.as_slice() {
                        [] => return Err(self.missing(c)),
                        [all] if all == "all" => None,
                        names => Some(names.to_vec()),
                    };
                }
                "dvr_plan" => {
                    dvr.plan = self.keyword(
                        c,
                        &[("session", DvrPlan::Session), ("segment", DvrPlan::Segment)],
                        "`session` or `segment`",
                    )?;
                }
                "dvr_path" => {
                    let value = self.leaf_value(c)?;
                    if value.is_empty() {
                        return Err(self.invalid(c, value, "a file path, e.g. [app]/[stream].flv"));
                    }
                    dvr.path = value.to_owned();
                }
                "dvr_duration" => {
                    let secs: u64 = self.number(c, DVR_DURATION_SECS)?;
                    dvr.duration = Duration::from_secs(secs);
                }
                "dvr_wait_keyframe" => dvr.wait_keyframe = self.flag(c)?,
                _ => {
                    dvr.time_jitter = self.keyword(
                        c,
                        &[
                            ("full", TimeJitter::Full),
                            ("zero", TimeJitter::Zero),
                            ("off", TimeJitter::Off),
                        ],
                        "one of `full`, `zero`, `off`",
                    )?;
                }
            }
        }
        Ok(dvr)
    }

    fn rtmp_listen(&mut self, d: &Directive) -> Result<Vec<SocketAddr>, ConfigError> {
        if d.block {
            return Err(self.err_block_unexpected(d));
        }
        if d.args.is_empty() {
            return Err(self.missing(d));
        }
        let mut addrs = Vec::with_capacity(d.args.len());
        for arg in &d.args {
            let addr = self.socket_addr(d, arg)?;
            if addrs.contains(&addr) {
                self.warn(d, format!("listen: {addr} is listed twice"));
            } else {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }

    /// `PORT` (meaning `0.0.0.0:PORT`), `IPv4:PORT` or `[IPv6]:PORT`. Host
    /// names are refused: resolving them would need the network.
    fn socket_addr(&self, d: &Directive, value: &str) -> Result<SocketAddr, ConfigError> {
        if is_digits(value) {
            return Ok(any_v4(self.port(d, value)?));
        }
        match value.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Ok(addr),
            Ok(addr) => Err(self.out_of_range(d, &addr.port().to_string(), 1..=65535)),
            Err(_) => Err(self.invalid(
                d,
                value,
                "a port or IP:PORT, e.g. 1935, 127.0.0.1:1935 or [::]:1935",
            )),
        }
    }

    /// An RTMP `HOST[:PORT]`, the port defaulting to 1935; see [`Self::host_port`].
    fn destination(&self, d: &Directive, value: &str) -> Result<String, ConfigError> {
        self.host_port(d, value, RTMP_PORT)
    }

    /// Normalizes `HOST[:PORT]` to `HOST:PORT`, or `[V6]:PORT` for IPv6.
    fn host_port(
        &self,
        d: &Directive,
        value: &str,
        default_port: u16,
    ) -> Result<String, ConfigError> {
        const EXPECTED: &str = "HOST[:PORT], e.g. 127.0.0.1:19350 or [::1]:1935";
        let invalid = || self.invalid(d, value, EXPECTED);
        // A bare IPv6 address has several colons; without brackets any port
        // would be ambiguous, so it can only mean the default port.
        if let Ok(ip) = value.parse::<Ipv6Addr>() {
            return Ok(format!("[{ip}]:{default_port}"));
        }
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(invalid)?;
            let ip = ip.parse::<Ipv6Addr>().map_err(|_| invalid())?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
            };
            (format!("[{ip}]"), port)
        } else {
            let (host, port) = match value.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (value, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !host_ok {
                return Err(invalid());
            }
            (host.to_owned(), port)
        };
        let port = match port {
            None => default_port,
            Some(p) if is_digits(p) => self.port(d, p)?,
            Some(_) => return Err(invalid()),
        };
        Ok(format!("{host}:{port}"))
    }

    fn port(&self, d: &Directive, digits: &str) -> Result<u16, ConfigError> {
        match digits.parse::<u16>() {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(self.out_of_range(d, digits, 1..=65535)),
        }
    }

    /// The directive's single value; extra arguments are ignored with a
    /// warning because SRS reads only the first.
    fn value<'d>(&mut self, d: &'d Directive) -> Result<&'d str, ConfigError> {
        let Some((first, rest)) = d.args.split_first() else {
            return Err(self.missing(d));
        };
        self.warn_args_ignored(d, rest);
        Ok(first)
    }

    /// Like [`Self::value`] for directives that must not have a block.
    fn leaf_value<'d>(&mut self, d: &'d Directive) -> Result<&'d str, ConfigError> {
        if d.block {
            return Err(self.err_block_unexpected(d));
        }
        self.value(d)
    }

    /// `on` or `off`, nothing else: SRS treats any other word as one of
    /// the two depending on the default, which hides typos like `of`.
    fn flag(&mut self, d: &Directive) -> Result<bool, ConfigError> {
        match self.leaf_value(d)? {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(self.invalid(d, other, "`on` or `off`")),
        }
    }

    fn number<T: TryFrom<u64>>(
        &mut self,
        d: &Directive,
        range: RangeInclusive<u64>,
    ) -> Result<T, ConfigError> {
        let value = self.leaf_value(d)?;
        // `u64::from_str` also takes a leading `+`; SRS configs never use
        // one, so only plain digits count as a number.
        if !is_digits(value) {
            return Err(self.invalid(d, value, "a whole number"));
        }
        value
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.out_of_range(d, value, range))
    }

    /// A whole number with an optional `-`, such as a nice value.
    fn signed<T: TryFrom<i64>>(
        &mut self,
        d: &Directive,
        range: RangeInclusive<i64>,
    ) -> Result<T, ConfigError> {
        let value = self.leaf_value(d)?;
        let expected = "a whole number from -20 (highest priority) to 19 (lowest), e.g. -15";
        if !is_digits(value.strip_prefix('-').unwrap_or(value)) {
            return Err(self.invalid(d, value, expected));
        }
        value
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.invalid(d, value, expected))
    }

    /// Bytes, or with a `K`, `M` or `G` suffix (powers of 1024, either case).
    fn size(&mut self, d: &Directive, range: RangeInclusive<u64>) -> Result<usize, ConfigError> {
        let value = self.leaf_value(d)?;
        let (digits, unit) = match value.char_indices().last() {
            Some((at, 'k' | 'K')) => (&value[..at], 1 << 10),
            Some((at, 'm' | 'M')) => (&value[..at], 1 << 20),
            Some((at, 'g' | 'G')) => (&value[..at], 1 << 30),
            _ => (value, 1),
        };
        if !is_digits(digits) {
            return Err(self.invalid(d, value, "a size in bytes, e.g. 16M, 512K or 8388608"));
        }
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .filter(|n| range.contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.out_of_range(d, value, range))
    }

    /// Seconds as a plain decimal (`10`, `0.5`), above 0 and at most an hour.
    fn seconds(&mut self, d: &Directive) -> Result<Duration, ConfigError> {
        const EXPECTED: &str = "a number of seconds above 0 and at most 3600, e.g. 10 or 0.5";
        let secs = self.decimal(d, |s| s > 0.0 && s <= MAX_QUEUE_SECS, EXPECTED)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            // A tiny positive value can still round to zero nanoseconds.
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.invalid(d, &d.args[0], EXPECTED))
    }

    fn path(&mut self, d: &Directive) -> Result<PathBuf, ConfigError> {
        let value = self.leaf_value(d)?;
        if value.is_empty() {
            return Err(self.invalid(d, value, "a file path"));
        }
        Ok(PathBuf::from(value))
    }

    fn keyword<T: Copy>(
        &mut self,
        d: &Directive,
        table: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        let value = self.leaf_value(d)?;
        table
            .iter()
            .find(|(word, _)| *word == value)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.invalid(d, value, expected))
    }

    /// Whether `d` is in `keys`; otherwise warns once per dotted path.
    fn known(&mut self, context: &str, keys: &[&str], d: &Directive) -> bool {
        if keys.contains(&d.name.as_str()) {
            return true;
        }
        let path = format!("{context}{}", d.name);
        if self.reported_unknown.insert(path.clone()) {
            self.warn(
                d,
                format!("{path}: not supported by ringcast, ignored (reported once)"),
            );
        }
        false
    }

    /// Whether this is the first `key` in the block; later ones warn and
    /// are skipped, matching SRS, which reads the first.
    fn first<'t>(&mut self, seen: &mut Seen<'t>, key: &'t str, d: &Directive) -> bool {
        match seen.0.entry(key) {
            Entry::Occupied(first) => {
                let first_line = *first.get();
                self.warn(
                    d,
                    format!(
                        "{}: repeated, first set at line {first_line}, which is used",
                        d.name
                    ),
                );
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(d.line);
                true
            }
        }
    }

    fn require_block(&self, d: &Directive) -> Result<(), ConfigError> {
        if d.block {
            Ok(())
        } else {
            Err(ConfigError::BlockExpected {
                file: self.file_of(d),
                line: d.line,
                directive: d.name.clone(),
            })
        }
    }

    fn warn_args_ignored(&mut self, d: &Directive, extra: &[String]) {
        if !extra.is_empty() {
            self.warn(
                d,
                format!(
                    "{}: ignoring extra arguments `{}`; is a `;` missing?",
                    d.name,
                    extra.join(" ")
                ),
            );
        }
    }

    fn warn(&mut self, d: &Directive, message: String) {
        self.warnings.push(Warning {
            file: self.file_of(d),
            line: d.line,
            message,
        });
    }

    /// The file a directive was read from (or the variable that set it).
    fn file_of(&self, d: &Directive) -> String {
        d.origin.as_deref().unwrap_or(self.file).to_owned()
    }

    fn missing(&self, d: &Directive) -> ConfigError {
        ConfigError::MissingValue {
            file: self.file_of(d),
            line: d.line,
            directive: d.name.clone(),
        }
    }

    fn invalid(&self, d: &Directive, value: &str, expected: &'static str) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file_of(d),
            line: d.line,
            directive: d.name.clone(),
            value: value.to_owned(),
            expected,
        }
    }

    fn out_of_range(&self, d: &Directive, value: &str, range: RangeInclusive<u64>) -> ConfigError {
        ConfigError::OutOfRange {
            file: self.file_of(d),
            line: d.line,
            directive: d.name.clone(),
            value: value.to_owned(),
            min: *range.start(),
            max: *range.end(),
        }
    }

    fn err_block_unexpected(&self, d: &Directive) -> ConfigError {
        ConfigError::BlockUnexpected {
            file: self.file_of(d),
            line: d.line,
            directive: d.name.clone(),
        }
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}
