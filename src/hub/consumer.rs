//! The consuming side of the fan-out: a [`Consumer`] is a player's or forwarder's cursor into
//! its stream's ring on this core ([`super::relay`]'s `CoreStream`). Its state is a position
//! and two counters, whatever the number of players or the bitrate.
//!
//! It must not touch sockets: players and forwarders own theirs and read frames through
//! [`Consumer::next_batch`]. Its futures ([`Consumer::wait`], [`Consumer::flushed`]) are
//! wakers on the core's stream; the runtime and the clock stay in the relay task.
#![forbid(unsafe_code)]

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::relay::CoreStream;
use super::ring::Position;
use super::source::Source;
use super::{Hub, StreamKey, StreamSettings};
use crate::media::Frame;

/// What woke a consumer up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Frames are ready.
    Data,
    /// The publisher left (players usually keep waiting; forwarders stop).
    Unpublished,
}

/// A player's or forwarder's position in a stream on this core.
#[derive(Debug)]
pub struct Consumer {
    stream: Rc<CoreStream>,
    at: Position,
    unpublishes: u64,
    skips: u64,
    /// Counted in the Source's consumers (the API's clients); a fork is not.
    counted: bool,
    /// Counted in the Source's own consumers too.
    own: bool,
}

impl Consumer {
    /// Starts consuming `key` on this core: from the GOP cache's keyframe when there is one,
    /// else from the next keyframe.
    pub fn subscribe(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Self {
        let stream = CoreStream::open(hub, key, settings);
        stream
            .source
            .stats
            .consumers
            .fetch_add(1, Ordering::Relaxed);
        let (at, unpublishes) = {
            let ring = stream.ring.borrow();
            (
                ring.start(stream.source.settings().gop_cache),
                ring.unpublishes(),
            )
        };
        Self {
            stream,
            at,
            unpublishes,
            skips: 0,
            counted: true,
            own: false,
        }
    }

    /// As [`Consumer::subscribe`], for a consumer that the stream runs for itself (its HLS
    /// segmenter, its DVR recorder), counted in the Source's `own_consumers` as well: an
    /// edge ends its pull when no consumer but these is left.
    pub fn subscribe_own(hub: &Arc<Hub>, key: &StreamKey, settings: &StreamSettings) -> Self {
        let mut consumer = Self::subscribe(hub, key, settings);
        consumer
            .stream
            .source
            .stats
            .own_consumers
            .fetch_add(1, Ordering::Relaxed);
        consumer.own = true;
        consumer
    }

    /// A consumer of the same stream at the same position, not counted as a client: one
    /// cursor that serves many players (the fan-out writers' cohorts).
    pub fn fork(&self) -> Self {
        let stream = self.stream.clone();
        stream.one_more();
        Self {
            stream,
            at: self.at,
            unpublishes: self.unpublishes,
            skips: 0,
            counted: false,
            own: false,
        }
    }

    /// True when both consume the same stream on this core.
    pub fn same_stream(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.stream, &other.stream)
    }

    /// Where it stands.
    pub fn position(&self) -> Position {
        self.at
    }

    /// Moves it to where a consumer of the same stream stood (a player leaving its cohort).
    pub fn set_position(&mut self, at: Position) {
        self.at = at;
    }

    /// Waits for the core's next flush: the moment its players write what arrived since the
    /// last one (`mw_latency`, see `hub/flush.rs`).
    pub fn flushed(&self) -> impl Future<Output = ()> + 'static {
        let stream = self.stream.clone();
        let start = stream.flush.generation();
        let mut registered: Option<Waker> = None;
        poll_fn(move |cx| {
            let flush = &stream.flush;
            if flush.generation() != start {
                return Poll::Ready(());
            }
            // Polled again by a wake that was not the flush (a player's reader): register
            // only if the waker changed, so the list stays one entry per waiting task.
            if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                registered = Some(cx.waker().clone());
                flush.wake_at_next(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// The stream's Source.
    pub fn source(&self) -> &Arc<Source> {
        &self.stream.source
    }

    /// Times this consumer fell behind queue_length and skipped to a keyframe.
    pub fn skips(&self) -> u64 {
        self.skips
    }

    /// Counts `n` more players' skips: a fork's skip is that of every player it serves.
    pub fn count_skips(&self, n: u64) {
        self.stream
            .hub
            .stats
            .player_skips
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Waits until there is something to send, or the publisher left.
    pub async fn wait(&mut self) -> Wake {
        poll_fn(|cx| {
            let ring = self.stream.ring.borrow();
            if ring.unpublishes() != self.unpublishes {
                self.unpublishes = ring.unpublishes();
                return Poll::Ready(Wake::Unpublished);
            }
            if ring.ready(&self.at) {
                return Poll::Ready(Wake::Data);
            }
            self.stream.wake_at_frames(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Visits up to `max` frames from the cursor on (after the metadata and sequence headers
    /// where a start or a skip calls for them) and moves the cursor past them. A consumer that
    /// fell behind the ring's tail is moved to the next keyframe and counted.
    pub fn next_batch(&mut self, max: usize, visit: impl FnMut(&Frame)) -> usize {
        let read = self.stream.ring.borrow().read(&mut self.at, max, visit);
        if read.skipped {
            self.skips += 1;
            self.count_skips(1);
        }
        read.frames
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Own first: a reader in between sees one player more, never one less.
        if self.own {
            self.stream
                .source
                .stats
                .own_consumers
                .fetch_sub(1, Ordering::Relaxed);
        }
        if self.counted {
            self.stream
                .source
                .stats
                .consumers
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.stream.close_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::media::MediaKind;

    fn video(key: bool) -> Bytes {
        Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0xaa, 0xbb])
    }

    #[test]
    fn consumers_on_a_core_share_one_copy_and_leave_nothing_behind() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let hub = Hub::new();
            let (key, settings) = crate::hub::test_stream(Duration::from_secs(10));
            let mut publisher = hub.publish(&key, &settings, 1).expect("publish");
            let mut a = Consumer::subscribe(&hub, &key, &settings);
            let mut b = Consumer::subscribe(&hub, &key, &settings);
            publisher.push(MediaKind::Video, 0, video(true));
            assert_eq!(a.wait().await, Wake::Data);
            assert_eq!(b.wait().await, Wake::Data);
            let (mut pa, mut pb) = (None, None);
            a.next_batch(1, |f| pa = Some(f.rtmp.as_ptr()));
            b.next_batch(1, |f| pb = Some(f.rtmp.as_ptr()));
            assert!(
                pa.is_some() && pa == pb,
                "players do not share the serialized bytes"
            );

            drop((a, b));
            assert_eq!(super::super::relay::local_streams(), 0);
            drop(publisher);
            assert!(
                hub.sources().is_empty(),
                "the Source outlived its publisher and players"
            );
        });
    }

    #[test]
    fn a_skip_is_counted_for_the_consumer_and_the_hub() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let hub = Hub::new();
            let (key, settings) = crate::hub::test_stream(Duration::from_millis(100));
            let mut publisher = hub.publish(&key, &settings, 1).expect("publish");
            let mut slow = Consumer::subscribe(&hub, &key, &settings);
            // 2 s of 25 fps video, a keyframe every second, all reaching the core at once:
            // the ring keeps the last GOP, and the consumer at the first frame is behind it.
            for i in 0..50u32 {
                publisher.push(MediaKind::Video, i * 40, video(i % 25 == 0));
            }
            assert_eq!(slow.wait().await, Wake::Data);
            let mut first = None;
            slow.next_batch(1, |f| first = Some(f.seq));
            assert_eq!(first, Some(25), "not resumed on the last keyframe");
            assert_eq!(slow.skips(), 1);
            assert_eq!(hub.stats.player_skips.load(Ordering::Relaxed), 1);
        });
    }
}
