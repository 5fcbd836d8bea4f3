//! The stream hub: the registry of live streams ([`Hub`]), one [`Source`] per stream, and the
//! per-core fan-out ([`Consumer`]) that feeds every player of every core from one serialized
//! copy of each message.
//!
//! Data flow: a publisher's connection pushes messages into its stream's [`Source`] through a
//! [`PublishGuard`]; the Source serializes each once into a [`Frame`] and hands an `Arc` of it
//! to one relay queue per core that has consumers, waking that core. On each core the relay
//! appends frames to a ring, and consumers (players, forwarders) are cursors into that ring.
//!
//! Files: `source.rs` (the publisher's side), `ring.rs` (a core's ring and the cursor logic)
//! and `flush.rs` (the merged-write schedule) are pure; `relay.rs` (a stream's presence on a
//! core and its relay task) is the only one that touches the runtime and the clock;
//! `consumer.rs` is the cursor players and forwarders hold.
//!
//! Locks: the registry's lock is taken when a stream is looked up or removed; a Source's lock
//! when its publisher pushes a frame and when a core attaches or detaches. No lock is taken per
//! player, and none per frame on the consuming cores. It owns no socket.

mod consumer;
mod flush;
mod relay;
mod ring;
mod source;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use consumer::{Consumer, Wake};
pub use ring::Position;
pub use source::{PublishGuard, Relay, Snapshot, Source};

use crate::config::Config;
use crate::media::Frame;

/// Identifies a stream: vhost, app and stream name, as in `rtmp://host/app/stream?vhost=v`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The vhost (`__defaultVhost__` unless named).
    pub vhost: String,
    /// The application, such as `live`.
    pub app: String,
    /// The stream name, without query parameters.
    pub stream: String,
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

/// Per-stream settings, fixed when the stream's Source is created (a reload applies to new
/// streams, as in SRS).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Keep the frames since the last keyframe for new players.
    pub gop_cache: bool,
    /// How far behind the live head a player may fall before it skips to a keyframe.
    pub queue_length: Duration,
    /// Chunk size of the shared RTMP form; every player is told this size at connect.
    pub chunk_size: u32,
    /// `mw_latency`: the longest a frame waits on a core before its players' write (the
    /// flush, see `flush.rs`); `None` writes at each arrival.
    pub merge: Option<Duration>,
}

/// The key and settings of stream `app/stream` of `vhost` under `config` (an unknown vhost
/// falls back to the default one): what every way in (RTMP, HTTP-FLV, WHIP/WHEP) resolves.
pub fn stream_of(
    config: &Config,
    vhost: &str,
    app: &str,
    stream: &str,
) -> (StreamKey, StreamSettings) {
    let v = config.vhost(vhost);
    let key = StreamKey {
        vhost: v.name.clone(),
        app: app.to_owned(),
        stream: stream.to_owned(),
    };
    let settings = StreamSettings {
        gop_cache: v.gop_cache,
        queue_length: v.queue_length,
        chunk_size: v.chunk_size.unwrap_or(config.chunk_size),
        merge: v.merged_write(),
    };
    (key, settings)
}

/// Stream `v/live/s` with SRS's settings and no merged write (a flush at each arrival),
/// frames kept for `queue_length`: the tests' stream.
#[cfg(test)]
pub(crate) fn test_stream(queue_length: Duration) -> (StreamKey, StreamSettings) {
    let key = StreamKey {
        vhost: "v".into(),
        app: "live".into(),
        stream: "s".into(),
    };
    let settings = StreamSettings {
        gop_cache: true,
        queue_length,
        chunk_size: 60000,
        merge: None,
    };
    (key, settings)
}

/// Process-wide counters of the hub, for logs and the API.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Times a player fell behind `queue_length` and skipped to a keyframe.
    pub player_skips: AtomicU64,
    /// Frames lost on a relay queue because a core did not drain it in time.
    pub relay_overflows: AtomicU64,
}

/// The registry of streams. Shared by all cores.
#[derive(Debug, Default)]
pub struct Hub {
    streams: Mutex<HashMap<StreamKey, Arc<Source>>>,
    next_id: AtomicU64,
    /// Counters.
    pub stats: HubStats,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another connection publishes this stream.
    #[error("stream {0} is already being published")]
    Busy(StreamKey),
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The stream's Source, created with `settings` if it does not exist.
    pub fn source(&self, key: &StreamKey, settings: &StreamSettings) -> Arc<Source> {
        let mut map = self.streams.lock().expect("hub lock poisoned");
        map.entry(key.clone())
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                Arc::new(Source::new(id, key.clone(), settings.clone()))
            })
            .clone()
    }

    /// Starts publishing `key` for connection `conn_id`.
    pub fn publish(
        self: &Arc<Self>,
        key: &StreamKey,
        settings: &StreamSettings,
        conn_id: u64,
    ) -> Result<PublishGuard, PublishError> {
        loop {
            let source = self.source(key, settings);
            match source.start_publish(self.clone(), conn_id) {
                Ok(Some(guard)) => return Ok(guard),
                Ok(None) => continue, // removed between lookup and start: look up again
                Err(()) => return Err(PublishError::Busy(key.clone())),
            }
        }
    }

    /// Removes `source` from the registry if nothing uses it any more.
    pub(crate) fn release(&self, source: &Arc<Source>) {
        let mut map = self.streams.lock().expect("hub lock poisoned");
        if let Some(current) = map.get(source.key()) {
            if Arc::ptr_eq(current, source) && source.mark_removed_if_idle() {
                map.remove(source.key());
            }
        }
    }

    /// The stream `key`, if it exists.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<Source>> {
        self.streams
            .lock()
            .expect("hub lock poisoned")
            .get(key)
            .cloned()
    }

    /// The Sources alive now, for stats.
    pub fn sources(&self) -> Vec<Arc<Source>> {
        let map = self.streams.lock().expect("hub lock poisoned");
        map.values().cloned().collect()
    }
}

/// A frame on its way to a core, or the end of a publish.
#[derive(Debug, Clone)]
pub enum RelayItem {
    /// The next frame of the stream.
    Frame(Arc<Frame>),
    /// The publisher left: the GOP and sequence headers are no longer current.
    Unpublish,
}
