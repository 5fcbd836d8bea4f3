//! One small HTTP/1.1 server for SRS's HTTP API (`http_api`, port 1985) and HTTP-FLV
//! (`http_server`, port 8080), on the workers' io_uring runtime: each worker has its own
//! SO_REUSEPORT listener per port (opened by the worker start in `app/`), and a connection lives on the
//! worker that accepted it.
//!
//! Map, each file importing only those above it: [`parser`] (sans-IO requests with size
//! limits), `reply` (answers, headers, SRS's envelope), `error` (why a connection ended),
//! `tls` (HTTPS's stream: rustls's sans-IO connection under a thin adapter, or the plain
//! socket), `metrics` (Prometheus text), `profile` (the performance tools' routes), `rtc`
//! (WebRTC signalling's HTTP replies), `clusters` (SRS's origin cluster query), `hls`
//! (playlists and segments from memory), `api` (SRS's JSON endpoints), `flv` (HTTP-FLV
//! players, a cursor over the same shared frames as RTMP players), `access` (the API's auth
//! and the `security` rules of players and WebRTC offers), `router` (which of them answers),
//! `https` (the HTTPS listeners and their certificates), `conn` (the connection loop). It must
//! not touch the RTMP sessions; it reads the hub, the client registry and the counters.

#![forbid(unsafe_code)]

mod access;
mod api;
mod clusters;
mod conn;
mod error;
mod flv;
mod hls;
mod https;
mod metrics;
pub mod parser;
mod profile;
mod reply;
mod router;
mod rtc;
mod tls;

pub use access::exposure_warning;
pub use conn::serve;
pub use https::{https_listeners, HttpsListener, TlsSetupError};
pub use router::{listeners, Roles};
