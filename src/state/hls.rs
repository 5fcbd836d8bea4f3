//! The process-wide HLS store: the playlists and segments of every stream's segmenter, by URL
//! path (their names under `hls_path`), as shared `Bytes` the HTTP server hands to every
//! request without a copy; each stream's HLS state for the API; HLS's counters. It runs
//! nothing and touches no file: the segmenter's driver (`server/hls.rs`) fills it, the HTTP
//! server reads it.
//!
//! Locks: a request takes the files' read lock for one map lookup and a refcount bump; the
//! driver takes the write lock once per segment (a few times a stream per `hls_fragment`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use bytes::Bytes;

use crate::hub::StreamKey;

/// HLS's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct HlsStats {
    /// Playlist requests answered (any status).
    pub playlist_requests: AtomicU64,
    /// Segment requests answered (any status).
    pub segment_requests: AtomicU64,
    /// Requests for playlists or segments that are not (or no longer) there.
    pub not_found: AtomicU64,
    /// Body bytes of playlists and segments sent.
    pub bytes_sent: AtomicU64,
    /// Segments made.
    pub segments: AtomicU64,
    /// Files under `hls_path` that could not be written or removed.
    pub file_errors: AtomicU64,
}

/// One stream's HLS state, for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamHls {
    /// The newest segment's sequence number, if any.
    pub sequence: Option<u64>,
    /// Segments in the playlist.
    pub segments: usize,
}

/// Playlists and segments of every stream, and who segments which stream.
#[derive(Debug, Default)]
pub struct HlsStore {
    files: RwLock<HashMap<String, Bytes>>,
    streams: Mutex<HashMap<StreamKey, StreamHls>>,
    /// Counters.
    pub stats: HlsStats,
}

impl HlsStore {
    /// The playlist or segment at `name` (a URL path without its leading `/`).
    pub fn get(&self, name: &str) -> Option<Bytes> {
        self.files
            .read()
            .expect("hls files lock poisoned")
            .get(name)
            .cloned()
    }

    /// Serves `data` at `name` from now on.
    pub fn put(&self, name: &str, data: Bytes) {
        self.files
            .write()
            .expect("hls files lock poisoned")
            .insert(name.to_owned(), data);
    }

    /// Stops serving each of `names`.
    pub fn remove<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut files = self.files.write().expect("hls files lock poisoned");
        for name in names {
            files.remove(name);
        }
    }

    /// Claims `key` for a new segmenter; false when one runs for it already.
    pub fn claim(&self, key: &StreamKey) -> bool {
        let mut streams = self.streams.lock().expect("hls streams lock poisoned");
        if streams.contains_key(key) {
            return false;
        }
        streams.insert(key.clone(), StreamHls::default());
        true
    }

    /// Updates the API's view of `key`'s segmenter.
    pub fn set_status(&self, key: &StreamKey, status: StreamHls) {
        if let Some(s) = self
            .streams
            .lock()
            .expect("hls streams lock poisoned")
            .get_mut(key)
        {
            *s = status;
        }
    }

    /// Ends the claim on `key` if `idle()` still holds under the lock (no publisher came
    /// back), so that a publish either finds the running segmenter or claims a new one.
    pub fn release_if(&self, key: &StreamKey, idle: impl FnOnce() -> bool) -> bool {
        let mut streams = self.streams.lock().expect("hls streams lock poisoned");
        if !idle() {
            return false;
        }
        streams.remove(key);
        true
    }

    /// `key`'s HLS state, if a segmenter runs for it.
    pub fn status(&self, key: &StreamKey) -> Option<StreamHls> {
        self.streams
            .lock()
            .expect("hls streams lock poisoned")
            .get(key)
            .copied()
    }
}
