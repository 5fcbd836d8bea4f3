//! One small HTTP/1.1 server for SRS's HTTP API (`http_api`, port 1985) and HTTP-FLV
//! (`http_server`, port 8080), on the workers' io_uring runtime: each worker has its own
//! SO_REUSEPORT listener per port, and a connection lives on the worker that accepted it.
//!
//! Map: [`parser`] (sans-IO requests with size limits), `server` (listeners, the connection
//! loop, the router), `api` (SRS's JSON endpoints, handing profiling and WebRTC paths to
//! [`crate::profile`] and [`crate::rtc`]), `flv` (HTTP-FLV players, a cursor over the same
//! shared frames as RTMP players), `rtc` (WebRTC signalling's HTTP replies), `metrics`
//! (Prometheus text). It must not touch the RTMP sessions; it reads the hub, the client
//! registry and the counters.

mod api;
mod flv;
mod metrics;
pub mod parser;
mod rtc;
mod server;

pub use server::{listeners, spawn_listeners, Roles};
