//! A stream's presence on one worker core, and its relay task: the only part of the hub that
//! touches the runtime (it spawns the task and sleeps on the flush deadline) and the clock.
//!
//! For each stream that has consumers on this core there is one [`CoreStream`]: the ring of
//! recent frames ([`super::ring`]), the flush schedule ([`super::flush`]) and the relay queue
//! from the publisher's core. Its task moves frames from the queue into the ring, wakes the
//! consumers that were waiting (one wake-up of the core per frame, however many players it
//! has) and fires the flushes. Everything here is thread-local (`Rc`, `RefCell`): no lock and
//! no atomic per player. It must not touch sockets.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use futures_util::future::{select, Either};

use super::flush::Flush;
use super::ring::Ring;
use super::source::{Relay, Source};
use super::{Hub, RelayItem, StreamKey, StreamSettings};
use crate::media::MediaKind;

thread_local! {
    static STREAMS: RefCell<HashMap<StreamKey, Rc<CoreStream>>> = RefCell::new(HashMap::new());
}

/// The number of streams with consumers on this core.
#[cfg(test)]
pub(super) fn local_streams() -> usize {
    STREAMS.with(|s| s.borrow().len())
}

/// One stream's presence on this core.
#[derive(Debug)]
pub(super) struct CoreStream {
    key: StreamKey,
    pub(super) source: Arc<Source>,
    pub(super) hub: Arc<Hub>,
    relay: Arc<Relay>,
    pub(super) ring: RefCell<Ring>,
    /// Consumers waiting for frames.
    waiters: RefCell<Vec<Waker>>,
    pub(super) flush: Flush,
    /// Consumers on this core, forks included: the last one out closes it.
    consumers: Cell<usize>,
}

impl CoreStream {
    /// The stream `key` on this core, joined (and its relay task started) if it was not,
    /// with one more consumer counted.
    pub(super) fn open(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Rc<Self> {
        let stream = STREAMS
            .with(|s| s.borrow().get(key).cloned())
            .unwrap_or_else(|| Self::join(hub, key, settings));
        stream.one_more();
        stream
    }

    /// Counts one more consumer (a fork of one already counted).
    pub(super) fn one_more(&self) {
        self.consumers.set(self.consumers.get() + 1);
    }

    fn join(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Rc<Self> {
        let (source, relay, snap) = loop {
            let source = hub.source(key, settings);
            let relay = Relay::new();
            if let Ok(snap) = source.attach(relay.clone()) {
                break (source, relay, snap);
            }
        };
        let queue_ms =
            u32::try_from(source.settings().queue_length.as_millis()).unwrap_or(u32::MAX);
        let stream = Rc::new(Self {
            key: key.clone(),
            source,
            hub: hub.clone(),
            relay,
            ring: RefCell::new(Ring::new(snap, queue_ms)),
            waiters: RefCell::new(Vec::new()),
            flush: Flush::default(),
            consumers: Cell::new(0),
        });
        STREAMS.with(|s| s.borrow_mut().insert(key.clone(), stream.clone()));
        compio::runtime::spawn(relay_task(stream.clone())).detach();
        stream
    }

    /// Wakes `waker` when the next frames reach the ring.
    pub(super) fn wake_at_frames(&self, waker: Waker) {
        self.waiters.borrow_mut().push(waker);
    }

    /// One consumer left; the last one leaves the stream on this core, and the hub's
    /// registry once nothing else uses it.
    pub(super) fn close_one(self: &Rc<Self>) {
        let left = self.consumers.get() - 1;
        self.consumers.set(left);
        if left == 0 {
            STREAMS.with(|s| {
                let mut map = s.borrow_mut();
                if map.get(&self.key).is_some_and(|s| Rc::ptr_eq(s, self)) {
                    map.remove(&self.key);
                }
            });
            self.source.detach(&self.relay);
            self.hub.release(&self.source);
        }
    }

    fn wake_consumers(&self) {
        for w in self.waiters.take() {
            w.wake();
        }
    }
}

/// Moves frames from the cross-core queue into this core's ring, wakes the consumers that
/// were waiting, and flushes the players' writes on the schedule of [`Flush`].
async fn relay_task(stream: Rc<CoreStream>) {
    let merge = stream.source.settings().merge;
    loop {
        let relay = poll_fn(|cx| {
            if stream.relay.register(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        if let Some(deadline) = stream.flush.deadline(merge) {
            let timer = std::pin::pin!(compio::time::sleep_until(deadline));
            if let Either::Right(_) = select(std::pin::pin!(relay), timer).await {
                stream.flush.fire(Instant::now());
                continue;
            }
        } else {
            relay.await;
        }
        if stream.relay.is_closed() {
            stream.flush.fire(Instant::now());
            return;
        }
        let mut video = None;
        {
            let mut ring = stream.ring.borrow_mut();
            while let Some(item) = stream.relay.pop() {
                match item {
                    RelayItem::Frame(f) => {
                        if f.kind == MediaKind::Video {
                            video = Some(f.timestamp);
                        }
                        ring.push(f);
                    }
                    RelayItem::Unpublish => ring.unpublish(),
                }
            }
        }
        stream.wake_consumers();
        let now = Instant::now();
        if stream.flush.arrived(now, video, merge) {
            stream.flush.fire(now);
        }
    }
}
