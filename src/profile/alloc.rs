//! The counting layer over the global allocator: live heap bytes and blocks, for the leak
//! check. Cheap enough to stay on: each allocation and free adds to a counter of its own
//! thread's shard (a relaxed atomic add on a cache line no other thread writes, unless more
//! threads than shards run), and only a reader sums the shards.
//!
//! It wraps whichever allocator the binary uses (`#[global_allocator]` in `main.rs`) and
//! changes nothing about how memory is allocated.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;

const SHARDS: usize = 64;

struct Shard {
    bytes: AtomicI64,
    blocks: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: CachePadded<Shard> = CachePadded::new(Shard {
    bytes: AtomicI64::new(0),
    blocks: AtomicI64::new(0),
});

static COUNTS: [CachePadded<Shard>; SHARDS] = [EMPTY; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised and without Drop: reading it never allocates and works while the
    // thread is being torn down, as an allocator's bookkeeping must.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn shard() -> &'static Shard {
    let i = SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    &COUNTS[i]
}

#[inline]
fn count(bytes: i64, blocks: i64) {
    let s = shard();
    s.bytes.fetch_add(bytes, Ordering::Relaxed);
    s.blocks.fetch_add(blocks, Ordering::Relaxed);
}

/// Live heap memory, as counted by [`Counting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Bytes asked for and not yet freed (the allocator's own overhead excluded).
    pub bytes: i64,
    /// Allocations not yet freed.
    pub blocks: i64,
}

/// The live heap now; `None` when the binary's allocator is not wrapped in [`Counting`]
/// (a build without the `alloc-count` feature, or a test binary).
pub fn live() -> Option<Live> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    let mut live = Live {
        bytes: 0,
        blocks: 0,
    };
    for s in &COUNTS {
        live.bytes += s.bytes.load(Ordering::Relaxed);
        live.blocks += s.blocks.load(Ordering::Relaxed);
    }
    Some(live)
}

/// A global allocator that counts live bytes and blocks, then calls `A`.
#[derive(Debug)]
pub struct Counting<A>(pub A);

impl<A> Counting<A> {
    /// Records that this allocator serves the process, so that [`live`] reports its counts.
    /// Called by `main` before anything else.
    pub fn install(&self) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `A`, which upholds GlobalAlloc's
// contract, and returns `A`'s result unchanged; the counting touches only atomics and a
// const-initialised thread-local, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees about `layout` are passed on as they are.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64, 1);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64, 1);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `A`) with
        // `layout`.
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as i64), -1);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout`, and
        // that `new_size` is valid for it.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64, 0);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static UNDER_TEST: Counting<std::alloc::System> = Counting(std::alloc::System);

    fn sum() -> (i64, i64) {
        COUNTS.iter().fold((0, 0), |(b, n), s| {
            (
                b + s.bytes.load(Ordering::Relaxed),
                n + s.blocks.load(Ordering::Relaxed),
            )
        })
    }

    #[test]
    fn counts_what_is_live_across_threads() {
        // The test binary's own allocator is not wrapped: only UNDER_TEST moves the counts,
        // but other tests may run beside this one, so compare deltas from calls made here.
        let layout = Layout::from_size_align(1000, 8).expect("layout");
        let before = sum();
        // SAFETY: a non-zero-size layout; the block is freed below with the same layout.
        let p = unsafe { UNDER_TEST.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` came from UNDER_TEST with `layout`; 3000 is a valid size.
        let p = unsafe { UNDER_TEST.realloc(p, layout, 3000) };
        assert!(!p.is_null());
        assert_eq!(sum(), (before.0 + 3000, before.1 + 1));
        let addr = p as usize;
        // Freed on another thread: another shard goes negative, the sum stays right.
        std::thread::spawn(move || {
            let layout = Layout::from_size_align(3000, 8).expect("layout");
            // SAFETY: the block above, with its current layout, freed once.
            unsafe { UNDER_TEST.dealloc(addr as *mut u8, layout) };
        })
        .join()
        .expect("thread");
        assert_eq!(sum(), before);
    }
}
