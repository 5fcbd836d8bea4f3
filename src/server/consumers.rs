//! The one place where a producer of a stream starts the consumers its vhost configures for
//! it: forwards (`forward`), the HLS segmenter (`hls {}`) and the DVR recorder (`dvr {}`).
//! Every producer calls [`start`] once it holds the stream's publish in the hub and before
//! it pushes a frame, so that each consumer starts from the first frame: an RTMP publisher
//! (`conn.rs`), an edge's pull from its origin (`edge.rs`), and a WHIP publisher whose vhost
//! has `rtc_to_rtmp` (`whip.rs`).
//!
//! It decides what starts for which producer, nothing more: the consumers themselves are
//! `forward.rs`, `hls.rs` and [`crate::dvr`], and it stops nothing. Each consumer ends on
//! its own when the hub source's publish ends (forwards and DVR at once, HLS after
//! `hls_dispose` without a new publish), whoever the producer was.

use std::sync::Arc;

use super::{forward, hls};
use crate::hub::{StreamKey, StreamSettings};
use crate::state::Shared;

/// Who produces a stream, with the connection id that holds its publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Producer {
    /// A publisher on this server's RTMP listener (an edge's publisher, relayed to its
    /// origin, too).
    Publish(u64),
    /// An edge's pull of the stream from its origin.
    EdgePull(u64),
    /// A WHIP publisher (`rtc_to_rtmp`), by its WebRTC session id: a publisher here, as an
    /// RTMP one.
    Whip(u64),
}

impl Producer {
    fn id(self) -> u64 {
        match self {
            Self::Publish(id) | Self::EdgePull(id) | Self::Whip(id) => id,
        }
    }
}

/// Starts what `key`'s vhost configures for a stream that `producer` has just begun to
/// publish: forwards, HLS and DVR for a publisher here (RTMP or WHIP); HLS and DVR for an
/// edge's pull.
///
/// An edge's pull forwards nothing: the forward runs where the publisher is, on the origin,
/// which sends the stream once to each destination; an edge forwarding too would send each
/// destination one more copy per edge (and a destination that is an origin of the edge
/// would take a second publish of the stream it serves).
pub(super) fn start(
    shared: &Arc<Shared>,
    key: &StreamKey,
    settings: &StreamSettings,
    producer: Producer,
) {
    let id = producer.id();
    if let Producer::Publish(_) | Producer::Whip(_) = producer {
        let config = shared.config();
        for dest in &config.vhost(&key.vhost).forward {
            compio::runtime::spawn(forward::run(
                shared.clone(),
                key.clone(),
                settings.clone(),
                dest.clone(),
                id,
            ))
            .detach();
        }
    }
    hls::spawn(shared, key, settings);
    crate::dvr::spawn(shared, key, settings, id);
}
