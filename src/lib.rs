//! ringcast: a live-streaming media server (RTMP in and out, HTTP-FLV out, SRS's HTTP API,
//! forwarding to other RTMP servers), io_uring thread-per-core, with zero-copy fan-out: each
//! message is serialized once into refcounted bytes that every player on every core shares.
//!
//! Module map, one folder per concern, listed from the top of the import graph down: a folder
//! imports only folders below it, and no two files inside a folder import each other
//! (`tests/layering.rs` checks both, and prints the graph with `-- --nocapture`).
//! - [`app`]: what starts a worker (its listeners, accept loops and WebRTC socket), shutdown
//!   by broadcast and drop, the SRS log line layout, the periodic log and the rates sampler.
//!   The only folder that knows every driver.
//! - [`http`]: the HTTP/1.1 driver: connection loop, router, replies, SRS's API, the
//!   profiling and WebRTC signalling routes, HTTP-FLV players, Prometheus metrics.
//! - [`server`]: the RTMP driver: a connection's control phase, publishers, players, forwards.
//! - [`hooks`]: SRS's HTTP hooks: the bodies and the verdict (pure), the calls on the
//!   client's own task through [`httpc`] with the config in force.
//! - [`dvr`]: recording a stream to FLV or MP4 files, a consumer task per stream.
//! - [`profile`]: CPU and heap profiles, the counting allocator, the incremental leak check,
//!   SRS's process statistics; no HTTP.
//! - [`state`]: [`state::Shared`], what every worker updates and the API reads.
//! - [`rtc`]: WebRTC: pure signalling, SDP, STUN, packetizing and bridging; the sans-IO
//!   engine (str0m sessions, a timer table, fan-out) fed datagrams, frames and time by its
//!   UDP driver; no server state.
//! - [`egress`]: the fan-out writers: cohorts of players in step, the per-core send ring,
//!   a player's own vectored writes.
//! - [`httpc`]: the HTTP/1.1 client of the server's own calls (hooks, other servers' APIs):
//!   a sans-IO response parser, a driver on the worker's runtime with a keep-alive pool.
//! - [`runtime`]: worker threads on io_uring (epoll fallback), listeners, the one
//!   [`runtime::Connection`] read loop, and the process tuning from the config.
//! - [`stats`]: the client registry, the 30-second rates, /proc readings.
//! - [`hub`]: the stream registry, one Source per stream, per-core rings (pure), the flush
//!   schedule on `mw_latency` (pure, any clock), consumers, and the relay task per core.
//! - [`hls`]: HLS, sans-IO: the per-stream segmenter (frames in, segments and playlists
//!   out), the MPEG-TS muxer, FLV to elementary streams.
//! - [`media`]: frames as the fan-out shares them and every wire form of a frame
//!   ([`media::wire`]: RTMP chunks, FLV tags), codec sniffing, timestamp correction.
//! - [`rtmp`]: the RTMP protocol, sans-IO (handshake with the caller's rng, chunks, AMF0,
//!   message types, server and client sessions).
//! - [`mp4`]: fragmented MP4, sans-IO: FLV tag bodies to an init segment and fragments.
//! - [`flv`]: FLV tags, read and written. [`config`]: the SRS/nginx-style config file, the
//!   environment's `SRS_*` overrides, parsed into a typed [`config::Config`].
//! - [`access`]: who may publish, play and administer, pure: a vhost's `security {}` rules
//!   and the API's Basic authentication; the bottom of the graph, below [`config`].
//! - [`coworkers`]: SRS's origin cluster, sans-IO: the clusters API's question and answer,
//!   redirect URLs and their hop count.
//! - [`bench`](mod@bench): the load tool behind `ringcast-bench` (players, publishers, SEI
//!   latency), a client of the protocol folders only.
//!
//! Protocol code is sans-IO and forbids `unsafe`; the I/O layer ([`runtime`], the send ring,
//! the WebRTC UDP driver) and [`profile`]'s allocator and valgrind hooks are the only places
//! that may use it, each block with its `SAFETY` note.
#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access;
pub mod app;
pub mod bench;
pub mod config;
pub mod coworkers;
pub mod dvr;
pub mod egress;
pub mod flv;
pub mod hls;
pub mod hooks;
pub mod http;
pub mod httpc;
pub mod hub;
pub mod media;
pub mod mp4;
pub mod profile;
pub mod rtc;
pub mod rtmp;
pub mod runtime;
pub mod server;
pub mod state;
pub mod stats;
