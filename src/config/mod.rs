//! Server configuration: reads SRS (Simple Realtime Server) style config files
//! so that an SRS user's existing config works with ringcast. This module owns
//! the typed layer: mapping the directives ringcast supports onto [`Config`],
//! validating their values, and turning everything else into [`Warning`]s. Apart from
//! [`Config::load`], which reads the file it is given and those it includes, nothing here
//! touches the file system or reads the process environment (callers pass an
//! [`Environment`]), and nothing opens sockets or applies settings: callers act on the
//! returned values.
//!
//! Files, each importing only those listed before it:
//! - `parser.rs`: the generic syntax, text to a [`Directive`] tree.
//! - `error.rs`: [`ConfigError`].
//! - `model.rs`: the typed [`Config`] and its sections, with their defaults.
//! - `env.rs`: directives set by `SRS_*` and `RINGCAST_*` environment variables, spliced
//!   into the directive tree ([`Environment`]).
//! - `include.rs`: reading the config file and the files its `include`s name.
//! - `build.rs`: the directive tree to [`Config`], validation and [`Warning`]s.
//!
//! Compatibility rules, chosen so real SRS configs load unchanged:
//! - Directives ringcast does not support (`srt_server`, `hls_keys`, ...)
//!   are skipped with one [`Warning`] per dotted path (`vhost.hls.hls_keys`), however
//!   often they repeat, so a large SRS config stays readable in the log.
//! - Known directives with bad values are errors, even inside disabled blocks,
//!   so a typo never silently falls back to a default.
//! - A repeated single-valued directive keeps its first value, like SRS's
//!   `SrsConfDirective::get`, and warns.
//! - Values take their first argument, like SRS's `arg0()`; extra arguments
//!   warn, which catches a missing `;` (SRS's own realtime.conf has
//!   `tcp_nodelay on` with no `;`).
//! - SRS 4+ moved `gop_cache`, `queue_length` and `mw_latency` into
//!   `vhost { play {} }`; both places are accepted, and `play {}` wins. Likewise SRS 3
//!   moved `mode`, `origin` and `token_traverse` into `vhost { cluster {} }`, which wins.

#![forbid(unsafe_code)]

mod build;
mod env;
mod error;
mod include;
mod model;
mod parser;
#[cfg(test)]
mod tests;

pub use build::Warning;
pub use env::Environment;
pub use error::ConfigError;
pub use include::{MAX_FILE_BYTES, MAX_INCLUDE_DEPTH};
pub use model::{
    ApiAuth, Cluster, ClusterMode, Config, Dvr, DvrPlan, Exporter, HttpHooks, Https, Listener,
    LogLevel, LogTank, RtcCandidate, RtcServer, TimeJitter, Vhost, VhostHls, VhostRtc,
    DEFAULT_DVR_PATH, DEFAULT_FLV_MOUNT, DEFAULT_MW_LATENCY_MS, DEFAULT_VHOST,
};
pub use parser::{parse_tree, Directive, ParseError, ParseErrorKind, MAX_DEPTH};
