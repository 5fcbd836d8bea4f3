//! The fan-out writers: what sends the hub's shared frames to players' sockets, for RTMP and
//! HTTP-FLV (and next, HLS and edges). `cohort.rs` writes each flush's batch to every player
//! of a stream that is in step, through the core's send ring (`send_ring.rs`, the system-call
//! layer); `write.rs` is a player's own write while it is out of its cohort.
//!
//! It imports only hub, media, rtmp, stats, runtime and config: it knows nothing of the
//! sessions, connections and shared state above it, which hand it a socket, a consumer and
//! the `Counters` to add to.

pub(crate) mod cohort;
mod send_ring;
mod write;

pub(crate) use write::{write_batch, BatchError, Counters, MAX_BATCH};
