//! The RTMP server's I/O drivers: the tasks that move bytes between an accepted connection's
//! socket and the sans-IO sessions ([`crate::rtmp`]) and the hub ([`crate::hub`]), and the
//! forwards to other servers, the edge's pulls from its origins, an origin cluster's search
//! of its coworkers, and the start of each stream's own consumers (`consumers.rs`). The
//! worker start (`app/`) accepts; this serves.
//!
//! This is the thin layer that owns sockets: it awaits the socket in one place per task,
//! applies timeouts and connection limits, and logs each connection's events once, with the
//! connection's id. Protocol decisions belong to the sessions, fan-out to the hub.

#![forbid(unsafe_code)]

mod access;
mod conn;
mod consumers;
pub(crate) mod edge;
mod error;
mod forward;
mod hls;
pub(crate) mod origin_cluster;
mod player;
pub mod whip;

pub use conn::serve;

use std::time::Duration;

/// How long a new connection may take to handshake and send publish or play. Short, so that
/// port scanners and stuck clients give their slot back quickly.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publisher may stay silent before it is dropped.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(20);
