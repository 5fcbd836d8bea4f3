//! The per-core write tick behind `mw_latency` (SRS's merged write): players (RTMP and
//! HTTP-FLV) that merge
//! writes wait for their core's next tick, then each writes everything that arrived since its
//! last write in one vectored write. Every such player of a core writes in the same loop turn,
//! so their sends go to the kernel in one io_uring submission: batching across connections,
//! with a delay bounded by one period instead of SRS's per-connection 350 ms.
//!
//! Why merge at all: on a 528 kbps stream a player gets ~70 messages a second, and the
//! kernel's TCP cost per send dwarfs ours. bench.sh measures the trade (CPU against latency)
//! for each period. One timer task per core and period, alive while players wait on it; it
//! owns no socket.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

#[derive(Debug, Default)]
struct Tick {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

thread_local! {
    static TICKS: RefCell<HashMap<Duration, Rc<Tick>>> = RefCell::new(HashMap::new());
}

/// Waits for this core's next tick of `period`.
pub async fn next(period: Duration) {
    let tick = TICKS.with(|t| {
        t.borrow_mut()
            .entry(period)
            .or_insert_with(|| {
                let tick = Rc::new(Tick::default());
                compio::runtime::spawn(run(period, tick.clone())).detach();
                tick
            })
            .clone()
    });
    let start = tick.generation.get();
    let mut registered: Option<Waker> = None;
    poll_fn(|cx| {
        if tick.generation.get() != start {
            return Poll::Ready(());
        }
        // Polled again by a wake that was not the tick (the player's reader): register only
        // if the waker changed, so the list stays one entry per waiting player.
        if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            registered = Some(cx.waker().clone());
            tick.waiters.borrow_mut().push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await;
}

/// Ticks while anyone waits; a tick with no waiter ends the task (the next waiter starts one).
async fn run(period: Duration, tick: Rc<Tick>) {
    loop {
        compio::time::sleep(period).await;
        tick.generation.set(tick.generation.get() + 1);
        let waiters = tick.waiters.take();
        if waiters.is_empty() {
            TICKS.with(|t| t.borrow_mut().remove(&period));
            return;
        }
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn waiters_of_a_core_wake_together_within_a_period() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let period = Duration::from_millis(20);
            let woke = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let woke = woke.clone();
                    compio::runtime::spawn(async move {
                        next(period).await;
                        woke.borrow_mut().push(Instant::now());
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            let woke = woke.borrow().clone();
            assert_eq!(woke.len(), 3);
            let spread = *woke.iter().max().unwrap() - *woke.iter().min().unwrap();
            assert!(spread < period, "waiters woke {spread:?} apart");
            assert!(start.elapsed() >= period);
            // The timer task ends at the first tick nobody waits for.
            compio::time::sleep(period * 3).await;
            assert!(TICKS.with(|t| t.borrow().is_empty()));
        });
    }
}
