//! The engine's timer table: each session's next deadline, ordered, so that a loop turn visits
//! only the sessions whose timer is due and the loop's next wake-up is the first entry, not a
//! scan of every session (quinn keeps its timers the same way). Exact, not lazy: setting a
//! session's deadline replaces its entry, so the table holds one entry per session. Sans-IO:
//! time is what the caller says.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Sessions' deadlines, ordered.
#[derive(Debug, Default)]
pub struct Timers {
    order: BTreeSet<(Instant, u64)>,
    at: HashMap<u64, Instant>,
}

impl Timers {
    /// Sets session `id`'s deadline, replacing any earlier one.
    pub fn set(&mut self, id: u64, deadline: Instant) {
        if let Some(old) = self.at.insert(id, deadline) {
            if old == deadline {
                return;
            }
            self.order.remove(&(old, id));
        }
        self.order.insert((deadline, id));
    }

    /// Forgets session `id`.
    pub fn remove(&mut self, id: u64) {
        if let Some(old) = self.at.remove(&id) {
            self.order.remove(&(old, id));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|&(t, _)| t)
    }

    /// Takes a session whose deadline is at or before `now`, earliest first; it has no
    /// deadline until it is set again.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        let &(t, id) = self.order.first()?;
        if t > now {
            return None;
        }
        self.order.pop_first();
        self.at.remove(&id);
        Some(id)
    }

    /// Sessions with a deadline.
    pub fn scheduled(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_due_sessions_come_out_earliest_first() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.set(1, ms(30));
        timers.set(2, ms(10));
        timers.set(3, ms(20));
        assert_eq!(timers.next(), Some(ms(10)));
        assert_eq!(timers.pop_due(ms(5)), None, "nothing is due yet");
        assert_eq!(timers.pop_due(ms(20)), Some(2));
        assert_eq!(timers.pop_due(ms(20)), Some(3));
        assert_eq!(timers.pop_due(ms(20)), None);
        assert_eq!(timers.next(), Some(ms(30)));
        assert_eq!(timers.scheduled(), 1);
    }

    #[test]
    fn a_new_deadline_replaces_the_old_one() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.set(1, ms(10));
        timers.set(1, ms(50));
        timers.set(1, ms(50));
        timers.set(2, ms(40));
        assert_eq!(timers.scheduled(), 2);
        assert_eq!(timers.pop_due(ms(45)), Some(2), "1's old deadline is gone");
        assert_eq!(timers.pop_due(ms(45)), None);
        timers.set(1, ms(5));
        assert_eq!(timers.next(), Some(ms(5)), "and an earlier one moves it up");
        timers.remove(1);
        timers.remove(7);
        assert_eq!((timers.next(), timers.scheduled()), (None, 0));
        // Equal deadlines keep both sessions.
        timers.set(3, ms(1));
        timers.set(4, ms(1));
        assert_eq!(timers.pop_due(ms(1)), Some(3));
        assert_eq!(timers.pop_due(ms(1)), Some(4));
    }
}
