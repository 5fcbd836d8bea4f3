//! When a core's players write: the merged-write schedule (SRS's `mw_latency`) on the
//! media's own clock, and the waiters that a flush wakes.
//!
//! On a 528 kbps stream a player gets ~70 messages a second, and the kernel's TCP cost per
//! send dwarfs ours, so players write what arrived since the last flush in one send. A flush
//! falls on the arrival of a video frame, chosen so that no frame waits longer than
//! `mw_latency`: the frame that triggers it waits not at all, where a free-running tick of
//! the same period would have held each video frame half a period on average.
//!
//! Pure: the time is passed in (an `Instant` on a worker, any ordered clock in the tests),
//! and it owns no timer; the relay task ([`super::relay`]) sleeps until [`Flush::deadline`].
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::ops::Add;
use std::task::Waker;
use std::time::{Duration, Instant};

/// A core's flush schedule for one stream, on the clock `T`.
#[derive(Debug)]
pub(super) struct Flush<T: Copy = Instant> {
    /// Counts flushes; a waiter is done when it changes.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// When the last flush was (or the first frame came).
    last: Cell<Option<T>>,
    /// Frames arrived since the last flush.
    pending: Cell<bool>,
    /// Timestamp of the last video frame, and the gap to the one before: the wait for the
    /// next video frame that a flush at this one saves.
    last_video: Cell<Option<u32>>,
    video_gap: Cell<Duration>,
}

impl<T: Copy> Default for Flush<T> {
    fn default() -> Self {
        Self {
            generation: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            last: Cell::new(None),
            pending: Cell::new(false),
            last_video: Cell::new(None),
            video_gap: Cell::new(Duration::ZERO),
        }
    }
}

impl<T: Copy + Ord + Add<Duration, Output = T>> Flush<T> {
    /// The longest gap between video frames taken as the stream's frame interval; a larger
    /// one is a stall or a timestamp jump, not a frame rate.
    const MAX_GAP_MS: u32 = 1000;

    /// Notes frames that arrived at `now`, `video` holding the timestamp of the last video
    /// frame among them; true when the players should write now rather than wait for the
    /// next video frame, with `merge` the longest any frame may wait. Measured from the last
    /// flush, not from the oldest waiting frame, so that the period stays a whole number of
    /// video frames: an audio frame that came late in one period would otherwise push the
    /// next flush a frame later and make the video frames before it wait longer.
    pub(super) fn arrived(&self, now: T, video: Option<u32>, merge: Option<Duration>) -> bool {
        self.pending.set(true);
        let last = self.last.get().unwrap_or(now);
        self.last.set(Some(last));
        let Some(merge) = merge else {
            return true;
        };
        let Some(ts) = video else {
            return now >= last + merge;
        };
        if let Some(gap) = self.last_video.get().map(|prev| ts.wrapping_sub(prev)) {
            if (1..=Self::MAX_GAP_MS).contains(&gap) {
                self.video_gap.set(Duration::from_millis(u64::from(gap)));
            }
        }
        self.last_video.set(Some(ts));
        // Waiting for the next video frame would take this period past `merge`.
        now + self.video_gap.get() > last + merge
    }

    /// When the period ends with frames waiting: the flush's deadline when no video frame
    /// comes first (audio-only streams, a stalled encoder).
    pub(super) fn deadline(&self, merge: Option<Duration>) -> Option<T> {
        if !self.pending.get() {
            return None;
        }
        Some(self.last.get()? + merge?)
    }

    /// Flushes at `now`: every waiter wakes.
    pub(super) fn fire(&self, now: T) {
        self.pending.set(false);
        self.last.set(Some(now));
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.take() {
            w.wake();
        }
    }
}

impl<T: Copy> Flush<T> {
    /// Counts the flushes so far: a waiter that saw another count is done.
    pub(super) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes `waker` at the next flush.
    pub(super) fn wake_at_next(&self, waker: Waker) {
        self.waiters.borrow_mut().push(waker);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// Milliseconds on a virtual clock.
    fn ms(t: u64) -> Duration {
        Duration::from_millis(t)
    }

    /// The flush schedule on source.flv's interleaving (25 fps video, 44.1 kHz AAC, each
    /// frame arriving at its timestamp): the times at which frames were flushed, and how long
    /// each video frame waited.
    fn schedule(merge: Option<Duration>) -> (Vec<u64>, Vec<u64>) {
        let flush = Flush::<Duration>::default();
        let (mut flushes, mut waits, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        let mut audio = 0u64;
        for v in 0..100u64 {
            let tv = v * 40;
            let mut arrivals = Vec::new();
            while audio * 1024 * 1000 / 44100 < tv + 40 {
                arrivals.push((audio * 1024 * 1000 / 44100, false));
                audio += 1;
            }
            arrivals.push((tv, true));
            arrivals.sort_unstable();
            for (t, video) in arrivals {
                // A frame whose deadline passed before it arrived: the timer flushed first.
                if let Some(d) = flush.deadline(merge) {
                    let dt = d.as_millis() as u64;
                    if dt < t {
                        flushes.push(dt);
                        waits.extend(pending.drain(..).map(|p| dt - p));
                        flush.fire(d);
                    }
                }
                if video {
                    pending.push(t);
                }
                if flush.arrived(ms(t), video.then_some(t as u32), merge) {
                    flushes.push(t);
                    waits.extend(pending.drain(..).map(|p| t - p));
                    flush.fire(ms(t));
                }
            }
        }
        (flushes, waits)
    }

    #[test]
    fn flushes_fall_on_video_frames_and_no_frame_waits_past_mw_latency() {
        let (flushes, waits) = schedule(Some(ms(100)));
        let steady = &flushes[5..];
        for pair in steady.windows(2) {
            assert_eq!(pair[1] - pair[0], 80, "flushes at {flushes:?}");
        }
        assert!(
            steady.iter().all(|t| t % 40 == 0),
            "off the video frames: {steady:?}"
        );
        assert_eq!(waits[10..].iter().max(), Some(&40), "video waits {waits:?}");

        // 120 ms: every third video frame; the first of three waits 80 ms.
        let (flushes, waits) = schedule(Some(ms(120)));
        for pair in flushes[5..].windows(2) {
            assert_eq!(pair[1] - pair[0], 120, "flushes at {flushes:?}");
        }
        assert_eq!(waits[10..].iter().max(), Some(&80));

        // 50 ms at 25 fps: every video frame flushes at once.
        let (flushes, waits) = schedule(Some(ms(50)));
        // (The first frame waits for the second: the frame rate is not known before it.)
        assert_eq!(flushes.len(), 99);
        assert!(waits[2..].iter().all(|&w| w == 0), "video waits {waits:?}");

        // mw_latency 0: every arrival.
        let (flushes, _) = schedule(None);
        assert!(flushes.len() > 200);
    }

    #[test]
    fn an_audio_only_stream_flushes_at_the_deadline_and_wakes_its_waiters() {
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let flush = Flush::<Duration>::default();
        let merge = Some(ms(100));
        assert_eq!(flush.deadline(merge), None, "nothing waits yet");
        assert!(!flush.arrived(ms(5), None, merge));
        assert_eq!(flush.deadline(merge), Some(ms(105)));
        assert!(!flush.arrived(ms(60), None, merge));
        assert!(flush.arrived(ms(105), None, merge), "the period is over");

        let woken = Arc::new(Count(AtomicUsize::new(0)));
        flush.wake_at_next(Waker::from(woken.clone()));
        let before = flush.generation();
        flush.fire(ms(105));
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert_ne!(flush.generation(), before);
        assert_eq!(flush.deadline(merge), None, "nothing waits after a flush");
        assert!(!flush.arrived(ms(150), None, merge));
        assert_eq!(flush.deadline(merge), Some(ms(205)));
    }
}
