use std::collections::VecDeque;
use std::iter::Sum;
use std::ops::{AddAssign, SubAssign};
use std::time::{Duration, Instant};

/// Holds a history values of type T for up to a certain Duration, as well as the
/// cumulated (total) value.
#[derive(Debug)]
pub(crate) struct ValueHistory<T> {
    value: T,
    history: VecDeque<(Instant, T)>,
    max_time: Duration,
}

const DEFAULT_VALUE_HISTORY_DURATION: Duration = Duration::from_secs(1);

/// ringcast: the resolution of a history, in parts of its `max_time`.
const HISTORY_GRANULES: u32 = 16;

impl<T: Default> Default for ValueHistory<T> {
    fn default() -> Self {
        Self {
            value: Default::default(),
            history: Default::default(),
            max_time: DEFAULT_VALUE_HISTORY_DURATION,
        }
    }
}

impl<T> ValueHistory<T>
where
    T: Copy + AddAssign + SubAssign + Sum,
{
    /// Adds a timed value
    /// Note: time should always monotonically increase in subsequent calls to add()
    ///
    /// ringcast: values less than a sixteenth of `max_time` after the newest entry are added to
    /// it (so they expire up to that much early), and a history past twice that many entries
    /// is purged. `purge_old` runs only where a sum is read (a stream's resend ratio, when it
    /// resends), so a stream that never resent kept one entry per packet for its whole life:
    /// 24 bytes a packet, megabytes an hour for every WebRTC player.
    pub fn push(&mut self, t: Instant, v: T) {
        self.value += v;
        let granule = self.max_time / HISTORY_GRANULES;
        if let Some((newest, sum)) = self.history.back_mut() {
            if t >= *newest && t - *newest < granule {
                *sum += v;
                return;
            }
        }
        self.history.push_back((t, v));
        if self.history.len() > 2 * HISTORY_GRANULES as usize {
            self.purge_old(t);
        }
    }

    /// Returns the sum of all values in the history up to max_time. Might
    /// return stale value unless [`ValueHistory::purge_old`] is called before.
    pub fn sum(&self) -> T {
        self.value
    }

    /// Recalculates sum purging values older than `now - max_time`.
    pub fn purge_old(&mut self, now: Instant) {
        while {
            let Some(front_t) = self.history.front().map(|v| v.0) else {
                return;
            };
            now.duration_since(front_t) > self.max_time
        } {
            if let Some((_, v)) = self.history.pop_front() {
                self.value -= v;
            }
        }
    }
}

#[allow(clippy::unchecked_time_subtraction)]
#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use super::{HISTORY_GRANULES, ValueHistory};

    #[test]
    fn with_value_test() {
        let now = Instant::now();

        let mut h = ValueHistory {
            value: 11,
            max_time: Duration::from_secs(1),
            ..Default::default()
        };

        assert_eq!(h.sum(), 11);
        h.purge_old(now);
        assert_eq!(h.sum(), 11);
        h.push(now - Duration::from_millis(1500), 22);
        h.push(now - Duration::from_millis(500), 22);
        assert_eq!(h.sum(), 11 + 22 + 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 11 + 22);
        h.push(now, 0);
        assert_eq!(h.sum(), 11 + 22);
    }

    #[test]
    fn test() {
        let now = Instant::now();
        let mut h = ValueHistory::default();

        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(1500), 22);
        assert_eq!(h.sum(), 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(700), 22);
        h.push(now - Duration::from_millis(500), 33);
        assert_eq!(h.sum(), 22 + 33);
        h.purge_old(now);
        assert_eq!(h.sum(), 22 + 33);

        h.purge_old(now + Duration::from_millis(400));
        assert_eq!(h.sum(), 33);
        h.purge_old(now + Duration::from_millis(600));
        assert_eq!(h.sum(), 0);
    }

    /// ringcast: a history that is only ever pushed to stays bounded, and its sum still covers
    /// the last `max_time`, give or take one granule.
    #[test]
    fn a_history_never_read_stays_bounded() {
        let start = Instant::now();
        let mut h = ValueHistory::default();
        for i in 0..10_000u64 {
            h.push(start + Duration::from_millis(i * 10), 1);
        }
        assert!(h.history.len() <= 2 * HISTORY_GRANULES as usize + 1);
        h.purge_old(start + Duration::from_millis(99_990));
        let sum = h.sum();
        assert!((94..=101).contains(&sum), "sum of the last second: {sum}");
    }
}
