//! Directives set by environment variables, as SRS reads them (`SRS_LISTEN=1935`,
//! `SRS_HTTP_API_ENABLED=on`, `SRS_VHOST_HTTP_REMUX_ENABLED=on`), for container deployments
//! written for SRS; each also as a `RINGCAST_` twin (`RINGCAST_LISTEN`). It owns the table of
//! names and how a variable's value becomes a directive spliced into the directive tree
//! before the tree is built, so that an environment value is validated exactly as the same
//! value in the file. It reads no process environment itself: the caller hands the
//! variables over in an [`Environment`].
//!
//! SRS's rules (`srs_app_config.cpp`, its `SRS_OVERWRITE_BY_ENV_*` getters and
//! `srs_getenv`), which ringcast keeps:
//! - The name is `SRS_` and the directive's dotted path, uppercased, `.` as `_`:
//!   `http_api.listen` is `SRS_HTTP_API_LISTEN`, `vhost.play.gop_cache` is
//!   `SRS_VHOST_PLAY_GOP_CACHE`. The `srs_log_*` directives have two names each,
//!   `SRS_SRS_LOG_LEVEL` first, then `SRS_LOG_LEVEL`; the global `chunk_size` is also set by
//!   `SRS_VHOST_CHUNK_SIZE`, as in SRS.
//! - A variable overrides the file; an empty one counts as unset.
//! - Vhost variables apply to every vhost (SRS's vhost getters read them first, whatever the
//!   vhost), and so to `__defaultVhost__`, which they create when the file has none.
//! - `SRS_LISTEN` and the other lists take several values separated by spaces.
//!
//! Where ringcast differs: a `RINGCAST_` variable wins over its `SRS_` twin, so that a
//! deployment can share SRS's variables and still set ringcast apart; values are checked as
//! strictly as the file's (`on`/`off`, ranges), where SRS would read a typo as `off` or 0;
//! directives SRS does not read from the environment (`workers`, `cpu_affinity`,
//! `vhost.forward`, ...) get names by the same rule; and set variables that name nothing
//! ringcast knows, or lose to a twin, are reported as warnings.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::model::DEFAULT_VHOST;
use super::parser::Directive;

/// The two prefixes, the first winning.
const PREFIXES: [&str; 2] = ["RINGCAST_", "SRS_"];

/// Variables that are not directives: the process reads them itself, or bench.sh does
/// (`SRS_BIN`, `RINGCAST_BIN_DIR`).
const NOT_DIRECTIVES: &[&str] = &["ENV_ONLY", "CONFIG_FILE", "IO", "BIN_DIR", "BIN"];

/// One directive the environment can set.
struct Setting {
    /// The names after the prefix, the first found winning.
    names: &'static [&'static str],
    /// The directive's place in the tree, `vhost` meaning every vhost.
    path: &'static [&'static str],
    /// Whether the value is a list separated by spaces, one argument each.
    list: bool,
}

/// Every directive ringcast knows, with its variable names.
const SETTINGS: &[Setting] = &[
    Setting {
        names: &["LISTEN"],
        path: &["listen"],
        list: true,
    },
    Setting {
        names: &["MAX_CONNECTIONS"],
        path: &["max_connections"],
        list: false,
    },
    Setting {
        names: &["DAEMON"],
        path: &["daemon"],
        list: false,
    },
    Setting {
        names: &["PID"],
        path: &["pid"],
        list: false,
    },
    Setting {
        names: &["SRS_LOG_TANK", "LOG_TANK"],
        path: &["srs_log_tank"],
        list: false,
    },
    Setting {
        names: &["SRS_LOG_FILE", "LOG_FILE"],
        path: &["srs_log_file"],
        list: false,
    },
    Setting {
        names: &["SRS_LOG_LEVEL", "LOG_LEVEL"],
        path: &["srs_log_level"],
        list: false,
    },
    Setting {
        names: &["SRS_LOG_LEVEL_V2", "LOG_LEVEL_V2"],
        path: &["srs_log_level_v2"],
        list: false,
    },
    Setting {
        names: &["CHUNK_SIZE", "VHOST_CHUNK_SIZE"],
        path: &["chunk_size"],
        list: false,
    },
    Setting {
        names: &["WORKERS"],
        path: &["workers"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_ENABLED"],
        path: &["http_api", "enabled"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_LISTEN"],
        path: &["http_api", "listen"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_AUTH_ENABLED"],
        path: &["http_api", "auth", "enabled"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_AUTH_USERNAME"],
        path: &["http_api", "auth", "username"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_AUTH_PASSWORD"],
        path: &["http_api", "auth", "password"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_AUTH_PUBLIC_METRICS"],
        path: &["http_api", "auth", "public_metrics"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_ENABLED"],
        path: &["http_server", "enabled"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_LISTEN"],
        path: &["http_server", "listen"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_HTTPS_ENABLED"],
        path: &["http_api", "https", "enabled"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_HTTPS_LISTEN"],
        path: &["http_api", "https", "listen"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_HTTPS_KEY"],
        path: &["http_api", "https", "key"],
        list: false,
    },
    Setting {
        names: &["HTTP_API_HTTPS_CERT"],
        path: &["http_api", "https", "cert"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_HTTPS_ENABLED"],
        path: &["http_server", "https", "enabled"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_HTTPS_LISTEN"],
        path: &["http_server", "https", "listen"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_HTTPS_KEY"],
        path: &["http_server", "https", "key"],
        list: false,
    },
    Setting {
        names: &["HTTP_SERVER_HTTPS_CERT"],
        path: &["http_server", "https", "cert"],
        list: false,
    },
    Setting {
        names: &["RTC_SERVER_ENABLED"],
        path: &["rtc_server", "enabled"],
        list: false,
    },
    Setting {
        names: &["RTC_SERVER_LISTEN"],
        path: &["rtc_server", "listen"],
        list: false,
    },
    Setting {
        names: &["RTC_SERVER_CANDIDATE"],
        path: &["rtc_server", "candidate"],
        list: true,
    },
    Setting {
        names: &["RTC_SERVER_SNDBUF"],
        path: &["rtc_server", "sndbuf"],
        list: false,
    },
    Setting {
        names: &["RTC_SERVER_RCVBUF"],
        path: &["rtc_server", "rcvbuf"],
        list: false,
    },
    Setting {
        names: &["CPU_AFFINITY"],
        path: &["cpu_affinity"],
        list: true,
    },
    Setting {
        names: &["PRIORITY"],
        path: &["priority"],
        list: false,
    },
    Setting {
        names: &["RLIMIT_NOFILE"],
        path: &["rlimit_nofile"],
        list: false,
    },
    Setting {
        names: &["VHOST_ENABLED"],
        path: &["vhost", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_PLAY_GOP_CACHE"],
        path: &["vhost", "play", "gop_cache"],
        list: false,
    },
    Setting {
        names: &["VHOST_PLAY_QUEUE_LENGTH"],
        path: &["vhost", "play", "queue_length"],
        list: false,
    },
    Setting {
        names: &["VHOST_PLAY_MW_LATENCY"],
        path: &["vhost", "play", "mw_latency"],
        list: false,
    },
    Setting {
        names: &["VHOST_CHUNK_SIZE"],
        path: &["vhost", "chunk_size"],
        list: false,
    },
    Setting {
        names: &["VHOST_TCP_NODELAY"],
        path: &["vhost", "tcp_nodelay"],
        list: false,
    },
    Setting {
        names: &["VHOST_FORWARD_ENABLED"],
        path: &["vhost", "forward", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_FORWARD_DESTINATION"],
        path: &["vhost", "forward", "destination"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_REMUX_ENABLED"],
        path: &["vhost", "http_remux", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_HTTP_REMUX_MOUNT"],
        path: &["vhost", "http_remux", "mount"],
        list: false,
    },
    Setting {
        names: &["VHOST_RTC_ENABLED"],
        path: &["vhost", "rtc", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_RTC_RTMP_TO_RTC"],
        path: &["vhost", "rtc", "rtmp_to_rtc"],
        list: false,
    },
    Setting {
        names: &["VHOST_RTC_RTC_TO_RTMP"],
        path: &["vhost", "rtc", "rtc_to_rtmp"],
        list: false,
    },
    Setting {
        names: &["VHOST_RTC_NACK"],
        path: &["vhost", "rtc", "nack"],
        list: false,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ENABLED"],
        path: &["vhost", "http_hooks", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_CONNECT"],
        path: &["vhost", "http_hooks", "on_connect"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_CLOSE"],
        path: &["vhost", "http_hooks", "on_close"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_PUBLISH"],
        path: &["vhost", "http_hooks", "on_publish"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_UNPUBLISH"],
        path: &["vhost", "http_hooks", "on_unpublish"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_PLAY"],
        path: &["vhost", "http_hooks", "on_play"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_STOP"],
        path: &["vhost", "http_hooks", "on_stop"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_DVR"],
        path: &["vhost", "http_hooks", "on_dvr"],
        list: true,
    },
    Setting {
        names: &["VHOST_HTTP_HOOKS_ON_HLS"],
        path: &["vhost", "http_hooks", "on_hls"],
        list: true,
    },
    Setting {
        names: &["VHOST_DVR_ENABLED"],
        path: &["vhost", "dvr", "enabled"],
        list: false,
    },
    Setting {
        names: &["VHOST_DVR_DVR_APPLY"],
        path: &["vhost", "dvr", "dvr_apply"],
        list: true,
    },
    Setting {
        names: &["VHOST_DVR_DVR_PLAN"],
        path: &["vhost", "dvr", "dvr_plan"],
        list: false,
    },
    Setting {
        names: &["VHOST_DVR_DVR_PATH"],
        path: &["vhost", "dvr", "dvr_path"],
        list: false,
    },
    Setting {
        names: &["VHOST_DVR_DVR_DURATION"],
        path: &["vhost", "dvr", "dvr_duration"],
        list: false,
    },
    Setting {
        names: &["VHOST_DVR_DVR_WAIT_KEYFRAME"],
        path: &["vhost", "dvr", "dvr_wait_keyframe"],
        list: false,
    },
    Setting {
        names: &["VHOST_DVR_TIME_JITTER"],
        path: &["vhost", "dvr", "time_jitter"],
        list: false,
    },
];

/// The `SRS_` and `RINGCAST_` variables of a process, taken once: the config's overlay, the
/// environment-only switch and the config file override read them from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: HashMap<String, String>,
}

impl Environment {
    /// Keeps the variables with either prefix and a non-empty value, as SRS ignores empty
    /// ones. Pass `std::env::vars_os()` converted, or a map in tests.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars
                .into_iter()
                .filter(|(k, v)| !v.is_empty() && PREFIXES.iter().any(|p| k.starts_with(p)))
                .collect(),
        }
    }

    /// `SRS_ENV_ONLY` or `RINGCAST_ENV_ONLY`: read the environment alone, no config file,
    /// as `-e` does.
    #[must_use]
    pub fn env_only(&self) -> bool {
        self.lookup(&["ENV_ONLY"]).is_some()
    }

    /// `RINGCAST_CONFIG_FILE` or `SRS_CONFIG_FILE`: the config file to read instead of the
    /// one named on the command line, as SRS does.
    #[must_use]
    pub fn config_file(&self) -> Option<PathBuf> {
        self.lookup(&["CONFIG_FILE"]).map(|(_, v)| PathBuf::from(v))
    }

    /// The first set variable of `names`, every `RINGCAST_` one before every `SRS_` one.
    fn lookup(&self, names: &[&str]) -> Option<(String, &str)> {
        self.candidates(names)
            .find_map(|var| self.vars.get(&var).map(|v| (var, v.as_str())))
    }

    fn candidates<'n>(&self, names: &'n [&str]) -> impl Iterator<Item = String> + 'n {
        PREFIXES
            .iter()
            .flat_map(move |p| names.iter().map(move |n| format!("{p}{n}")))
    }
}

/// Splices every directive `env` sets into `tree`, replacing what the file set there, and
/// returns what to warn about the variables it did not use, as (variable, message) pairs.
pub(super) fn overlay(tree: &mut Vec<Directive>, env: &Environment) -> Vec<(String, String)> {
    let mut used = HashSet::new();
    let mut shadowed = Vec::new();
    for setting in SETTINGS {
        let Some((var, value)) = env.lookup(setting.names) else {
            continue;
        };
        for other in env.candidates(setting.names) {
            if other != var && env.vars.contains_key(&other) {
                shadowed.push((other, var.clone()));
            }
        }
        let args = if setting.list {
            value.split_whitespace().map(str::to_owned).collect()
        } else {
            vec![value.to_owned()]
        };
        let origin: Arc<str> = Arc::from(var.as_str());
        let leaf = directive(setting.path[setting.path.len() - 1], args, false, &origin);
        apply(tree, setting.path, leaf, &origin);
        used.insert(var);
    }
    let mut warnings: Vec<(String, String)> = shadowed
        .into_iter()
        .filter(|(var, _)| !used.contains(var))
        .map(|(var, winner)| (var, format!("ignored, {winner} is set too and wins")))
        .collect();
    warnings.dedup();
    for var in env.vars.keys() {
        let name = PREFIXES
            .iter()
            .find_map(|p| var.strip_prefix(p))
            .unwrap_or(var);
        let known =
            NOT_DIRECTIVES.contains(&name) || SETTINGS.iter().any(|s| s.names.contains(&name));
        if !known {
            warnings.push((
                var.clone(),
                "not a directive ringcast supports, ignored".to_owned(),
            ));
        }
    }
    warnings.sort();
    warnings
}

fn directive(name: &str, args: Vec<String>, block: bool, origin: &Arc<str>) -> Directive {
    Directive {
        name: name.to_owned(),
        args,
        line: 0,
        children: Vec::new(),
        block,
        origin: Some(origin.clone()),
    }
}

/// Puts `leaf` at `path`, every vhost for a path under `vhost`.
fn apply(tree: &mut Vec<Directive>, path: &[&str], leaf: Directive, origin: &Arc<str>) {
    let ["vhost", inner @ ..] = path else {
        set(tree, path, leaf, origin);
        return;
    };
    let has_default = tree.iter().any(|d| {
        d.name == "vhost"
            && d.args
                .first()
                .is_some_and(|name| name.eq_ignore_ascii_case(DEFAULT_VHOST))
    });
    if !has_default {
        tree.push(directive(
            "vhost",
            vec![DEFAULT_VHOST.to_owned()],
            true,
            origin,
        ));
    }
    for vhost in tree.iter_mut().filter(|d| d.name == "vhost" && d.block) {
        if let ["play", name] = inner {
            // SRS 3's vhost-level twin of the `play {}` setting would only warn against it.
            vhost.children.retain(|d| d.name != *name);
        }
        set(&mut vhost.children, inner, leaf.clone(), origin);
    }
}

/// Replaces the directive at `path` in `list`, creating the blocks on the way.
fn set(list: &mut Vec<Directive>, path: &[&str], leaf: Directive, origin: &Arc<str>) {
    let Some((&first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        list.retain(|d| d.name != first);
        list.push(leaf);
        return;
    }
    if first == "forward" {
        fold_short_forwards(list);
    }
    // The builder reads the first block by either of the HTTP server's names.
    let names: &[&str] = if first == "http_server" {
        &["http_server", "http_stream"]
    } else {
        std::slice::from_ref(&first)
    };
    let at = match list
        .iter()
        .position(|d| d.block && names.contains(&d.name.as_str()))
    {
        Some(at) => at,
        None => {
            list.push(directive(first, Vec::new(), true, origin));
            list.len() - 1
        }
    };
    set(&mut list[at].children, rest, leaf, origin);
}

/// Turns `forward A; forward B;` into `forward { enabled on; destination A B; }` where the
/// first of them was, so that a variable can set either part of the block form.
fn fold_short_forwards(list: &mut Vec<Directive>) {
    let mut first: Option<Directive> = None;
    let mut destinations = Vec::new();
    list.retain(|d| {
        let short = d.name == "forward" && !d.block;
        if short {
            destinations.extend(d.args.iter().cloned());
            first.get_or_insert_with(|| d.clone());
        }
        !short
    });
    let Some(first) = first else {
        return;
    };
    let child = |name: &str, args| Directive {
        name: name.to_owned(),
        args,
        ..first.clone()
    };
    let block = Directive {
        args: Vec::new(),
        children: vec![
            child("enabled", vec!["on".to_owned()]),
            child("destination", destinations),
        ],
        block: true,
        ..first.clone()
    };
    list.push(block);
}
