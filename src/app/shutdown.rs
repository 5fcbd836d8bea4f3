//! Shutdown by broadcast and drop, as mini-redis does it: `main` triggers one [`Shutdown`]
//! that every worker awaits; a worker that sees it returns from its main future, which drops
//! its accept loops (closing the listeners) and then its runtime with every connection task
//! still on it (closing their sockets). Nothing here knows what a worker runs.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// A one-shot broadcast: cloned into every worker, triggered once by `main`.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    /// One per waiter: each worker waits once, for its whole life.
    waiters: Mutex<Vec<Waker>>,
}

impl Shutdown {
    /// A broadcast nobody has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every waiter, now and later, to stop.
    pub fn trigger(&self) {
        self.0.fired.store(true, Ordering::Release);
        for w in self
            .0
            .waiters
            .lock()
            .expect("shutdown lock poisoned")
            .drain(..)
        {
            w.wake();
        }
    }

    /// True once [`Shutdown::trigger`] ran.
    pub fn is_triggered(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Resolves once the shutdown is triggered.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_triggered() {
                return Poll::Ready(());
            }
            let mut waiters = self.0.waiters.lock().expect("shutdown lock poisoned");
            // Checked again under the lock: a trigger between the first check and the lock
            // drained the list before this waker was in it.
            if self.is_triggered() {
                return Poll::Ready(());
            }
            match waiters.iter_mut().find(|w| w.will_wake(cx.waker())) {
                Some(w) => w.clone_from(cx.waker()),
                None => waiters.push(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_waiter_sees_the_trigger_even_a_late_one() {
        let shutdown = Shutdown::new();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let s = shutdown.clone();
                std::thread::spawn(move || {
                    compio::runtime::Runtime::new()
                        .expect("runtime")
                        .block_on(s.wait())
                })
            })
            .collect();
        shutdown.trigger();
        for t in threads {
            t.join().expect("a waiter returns");
        }
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(shutdown.wait());
        assert!(shutdown.is_triggered());
    }
}
