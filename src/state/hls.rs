//! The process-wide HLS store: the playlists, segments, init segments and LL-HLS parts of every
//! stream's segmenter, by URL path (their names under `hls_path`), as shared `Bytes` the HTTP
//! server hands to every request without a copy, segments and parts also in a sealed memfd that
//! plain HTTP sends with `sendfile` (no copy into each socket either); each LL-HLS playlist's
//! live edge and the requests blocked on it ([`Live`]); each stream's HLS state for the API;
//! HLS's counters. It runs nothing and touches no file: the segmenter's driver
//! (`server/hls.rs`) fills it, the HTTP server reads it and waits on it.
//!
//! Locks: a request takes the files' read lock for one map lookup and a refcount bump; the
//! driver takes the write lock once per segment or part (five times a second a stream with
//! 200 ms parts). A blocked request costs one slot of its playlist's waiter list, which is
//! capped ([`MAX_WAITERS`]), and is woken by the driver's edge update from whichever core
//! segments the stream: no task polls.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use slab::Slab;

use crate::hls::Edge;
use crate::hub::StreamKey;
use crate::runtime::SealedFile;

/// Blocked LL-HLS requests (playlist reloads and hinted parts) one playlist holds at most;
/// past this a request is answered at once with 503 and `Retry-After`, which players retry
/// after a pause, where the current playlist would bring them straight back. A slot is a
/// waker; the connection behind it is the HTTP server's, bounded by `max_connections`.
pub const MAX_WAITERS: usize = 4096;

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
    /// LL-HLS requests refused because their playlist's waiter list was full.
    pub waiters_full: AtomicU64,
    /// LL-HLS playlist requests answered with a delta update (`_HLS_skip`).
    pub delta_playlists: AtomicU64,
}

/// One stream's HLS state, for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamHls {
    /// The newest segment's sequence number, if any.
    pub sequence: Option<u64>,
    /// Segments in the playlist.
    pub segments: usize,
}

/// A hinted part's playlist and its position (segment, index).
type Hinted = (Arc<Live>, (u64, u64));

/// What the store serves at a name: the bytes, and for a segment or part the same bytes in a
/// sealed file, closed when the last request sending it is done after the name went.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes.
    pub data: Bytes,
    /// The same bytes in a sealed memfd, for `sendfile`.
    pub sealed: Option<Arc<SealedFile>>,
}

/// Where the store keeps LL-HLS playlist `m3u8`'s delta update: a name no request path maps
/// to (a path has no `?`), served for `_HLS_skip` ([`crate::hls::Playlist::delta`]).
pub(crate) fn delta_name(m3u8: &str) -> String {
    format!("{m3u8}?_HLS_skip")
}

/// Playlists and segments of every stream, and who segments which stream.
#[derive(Debug, Default)]
pub struct HlsStore {
    files: RwLock<HashMap<String, Body>>,
    /// LL-HLS playlists by name.
    live: RwLock<HashMap<String, Arc<Live>>>,
    /// The part each LL-HLS playlist hints, by name: its playlist and position.
    hints: Mutex<HashMap<String, Hinted>>,
    streams: Mutex<HashMap<StreamKey, StreamHls>>,
    /// Counters.
    pub stats: HlsStats,
}

impl HlsStore {
    /// The playlist or segment at `name` (a URL path without its leading `/`).
    pub fn get(&self, name: &str) -> Option<Body> {
        self.files
            .read()
            .expect("hls files lock poisoned")
            .get(name)
            .cloned()
    }

    /// Serves playlist `text` at `m3u8` from now on, and its delta update (or none, when the
    /// playlist has none), under one lock.
    pub fn put_playlist(&self, m3u8: &str, text: Bytes, delta: Option<Bytes>) {
        let mut files = self.files.write().expect("hls files lock poisoned");
        files.insert(
            m3u8.to_owned(),
            Body {
                data: text,
                sealed: None,
            },
        );
        match delta {
            Some(data) => {
                files.insert(delta_name(m3u8), Body { data, sealed: None });
            }
            None => {
                files.remove(&delta_name(m3u8));
            }
        }
    }

    /// The delta update of playlist `m3u8`, while it has one.
    pub fn get_delta(&self, m3u8: &str) -> Option<Body> {
        self.get(&delta_name(m3u8))
    }

    /// Serves `data` at `name` from now on.
    pub fn put(&self, name: &str, data: Bytes) {
        self.put_body(name, Body { data, sealed: None });
    }

    /// Serves `body` at `name` from now on.
    pub fn put_body(&self, name: &str, body: Body) {
        self.files
            .write()
            .expect("hls files lock poisoned")
            .insert(name.to_owned(), body);
    }

    /// Stops serving each of `names`.
    pub fn remove<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut files = self.files.write().expect("hls files lock poisoned");
        for name in names {
            files.remove(name);
        }
    }

    /// Publishes LL-HLS playlist `m3u8`'s new edge (after the part and playlist it names are
    /// in the store) and wakes the requests waiting on it.
    pub fn set_edge(&self, m3u8: &str, edge: Edge) {
        let live = {
            let mut live = self.live.write().expect("hls live lock poisoned");
            live.entry(m3u8.to_owned()).or_default().clone()
        };
        {
            let mut hints = self.hints.lock().expect("hls hints lock poisoned");
            let old = live.state().edge.hint.take();
            if let Some(old) = old {
                hints.remove(&old.name);
            }
            if let Some(hint) = &edge.hint {
                hints.insert(hint.name.clone(), (live.clone(), hint.at));
            }
        }
        live.update(|state| state.edge = edge);
    }

    /// LL-HLS playlist `m3u8`, if it is one.
    pub fn live(&self, m3u8: &str) -> Option<Arc<Live>> {
        self.live
            .read()
            .expect("hls live lock poisoned")
            .get(m3u8)
            .cloned()
    }

    /// The playlist hinting part `name` and the part's position, while it is the hint.
    pub fn hinted(&self, name: &str) -> Option<Hinted> {
        self.hints
            .lock()
            .expect("hls hints lock poisoned")
            .get(name)
            .cloned()
    }

    /// Blocked requests now, all playlists together.
    pub fn waiting(&self) -> usize {
        self.live
            .read()
            .expect("hls live lock poisoned")
            .values()
            .map(|l| l.waiting())
            .sum()
    }

    /// `m3u8` is no longer live: its waiters are answered now.
    pub fn end_live(&self, m3u8: &str) {
        let Some(live) = self
            .live
            .write()
            .expect("hls live lock poisoned")
            .remove(m3u8)
        else {
            return;
        };
        let hint = live.state().edge.hint.take();
        if let Some(hint) = hint {
            self.hints
                .lock()
                .expect("hls hints lock poisoned")
                .remove(&hint.name);
        }
        live.update(|state| state.ended = true);
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

/// One LL-HLS playlist's live edge and the requests blocked on it.
#[derive(Debug, Default)]
pub struct Live {
    state: Mutex<LiveState>,
}

#[derive(Debug, Default)]
struct LiveState {
    edge: Edge,
    /// The playlist is gone (its stream disposed): every wait ends.
    ended: bool,
    /// One slot per blocked request, its waker once it was polled.
    waiters: Slab<Option<Waker>>,
}

impl Live {
    fn state(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().expect("hls live state lock poisoned")
    }

    /// Changes the state, then wakes every waiter (outside the lock) to look again.
    fn update(&self, change: impl FnOnce(&mut LiveState)) {
        let wakers: Vec<Waker> = {
            let mut state = self.state();
            change(&mut state);
            state
                .waiters
                .iter_mut()
                .filter_map(|(_, w)| w.take())
                .collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// The edge now.
    pub fn edge(&self) -> Edge {
        self.state().edge.clone()
    }

    /// A future that is ready once `ready` holds for the edge (or the playlist ended);
    /// `None` when [`MAX_WAITERS`] requests wait already.
    pub fn wait<F: Fn(&Edge) -> bool + Unpin>(self: &Arc<Self>, ready: F) -> Option<Wait<F>> {
        let mut state = self.state();
        if state.waiters.len() >= MAX_WAITERS {
            return None;
        }
        let slot = state.waiters.insert(None);
        Some(Wait {
            live: self.clone(),
            slot,
            ready,
        })
    }

    /// Requests blocked now.
    pub fn waiting(&self) -> usize {
        self.state().waiters.len()
    }
}

/// A request blocked on a playlist's edge; dropping it (a timeout) frees its slot.
#[derive(Debug)]
pub struct Wait<F> {
    live: Arc<Live>,
    slot: usize,
    ready: F,
}

impl<F: Fn(&Edge) -> bool + Unpin> Future for Wait<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.live.state();
        if state.ended || (this.ready)(&state.edge) {
            return Poll::Ready(());
        }
        if let Some(w) = state.waiters.get_mut(this.slot) {
            match w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for Wait<F> {
    fn drop(&mut self) {
        let mut state = self
            .live
            .state
            .lock()
            .expect("hls live state lock poisoned");
        state.waiters.try_remove(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::hls::Hint;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn edge(segment: u64, part: u64) -> Edge {
        Edge {
            segment: Some(segment),
            part: Some((segment + 1, part)),
            hint: Some(Hint {
                name: format!("live/s-{}.{}.m4s", segment + 1, part + 1),
                at: (segment + 1, part + 1),
            }),
            target_ms: 1000,
        }
    }

    #[test]
    fn waiters_wake_on_the_edge_and_are_capped() {
        let store = HlsStore::default();
        store.set_edge("live/s.m3u8", edge(3, 0));
        let live = store.live("live/s.m3u8").expect("live");
        assert!(store.hinted("live/s-4.1.m4s").is_some());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut w = live.wait(|e| e.reached((4, 1))).expect("room");
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        let mut held = Vec::new();
        while let Some(w) = live.wait(|_| false) {
            held.push(w);
        }
        assert_eq!(live.waiting(), MAX_WAITERS, "capped");
        store.set_edge("live/s.m3u8", edge(3, 1));
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "woken once");
        assert!(
            store.hinted("live/s-4.1.m4s").is_none() && store.hinted("live/s-4.2.m4s").is_some()
        );
        assert!(Pin::new(&mut w).poll(&mut cx).is_ready());
        drop(held);
        drop(w);
        assert_eq!(live.waiting(), 0, "slots free when the waits go");
        let mut w = live.wait(|_| false).expect("room");
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        store.end_live("live/s.m3u8");
        assert!(
            Pin::new(&mut w).poll(&mut cx).is_ready(),
            "a disposed playlist ends waits"
        );
        assert!(store.live("live/s.m3u8").is_none() && store.hinted("live/s-4.2.m4s").is_none());
    }
}
