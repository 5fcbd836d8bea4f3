//! ringcast: a live-streaming media server (RTMP in and out, HTTP-FLV out, SRS's HTTP API,
//! forwarding to other RTMP servers), io_uring thread-per-core, with zero-copy fan-out: each
//! message is serialized once into refcounted bytes that every player on every core shares.
//!
//! Module map, one folder per concern:
//! - [`bench`]: the load tool behind `ringcast-bench` (players, publishers, SEI latency).
//! - [`config`]: the SRS/nginx-style config file, parsed into a typed [`config::Config`].
//! - [`rtmp`]: the RTMP protocol, sans-IO (handshake, chunks, AMF0, server and client sessions).
//! - [`flv`]: FLV tags, read and written, for the test publisher and HTTP-FLV.
//! - [`media`]: frames as shared by the fan-out, codec sniffing, timestamp correction.
//! - [`http`]: the HTTP/1.1 server: SRS's API, HTTP-FLV players, Prometheus metrics.
//! - [`hub`]: the stream registry, one Source per stream, per-core rings and consumers, and
//!   the per-core flush schedule (`mw_latency` on the video frames).
//! - [`runtime`]: worker threads on io_uring (epoll fallback), listeners, and the process
//!   tuning from the config (CPU pinning, nice, open-file limit, UDP buffer sizes).
//! - [`server`]: the I/O drivers that connect sockets, sessions and the hub, and the cohorts
//!   that send each flush's batch to every player in step, through a per-core send ring.
//! - [`stats`]: the periodic log line, the client registry, rates, /proc readings.
//! - [`profile`]: CPU and heap profiles, the counting allocator, the incremental leak check,
//!   SRS's process statistics.
//!
//! Protocol code is sans-IO and has no `unsafe`; the I/O layer and [`profile`]'s allocator
//! and valgrind hooks are the only places that may.
#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod app;
pub mod bench;
pub mod config;
pub mod egress;
pub mod flv;
pub mod http;
pub mod hub;
pub mod media;
pub mod profile;
pub mod rtc;
pub mod rtmp;
pub mod runtime;
pub mod server;
pub mod state;
pub mod stats;
