//! One core's inbox: what other cores and signalling send to a core's engine (frames of a
//! WebRTC publisher on another core, keyframe requests, closes), in a bounded queue with the
//! waker of the core's loop. Lock-free; a full inbox drops the message, and the sender counts
//! it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind};

/// Messages a core's inbox holds; a core that falls this far behind loses frames (counted).
const INBOX_CAPACITY: usize = 16 * 1024;

/// A media frame of a stream, shared by every core and player (the payload is an `Arc`).
#[derive(Debug)]
pub struct SharedFrame {
    /// Audio or video.
    pub kind: MediaKind,
    /// The frame as the publisher's session depacketized it.
    pub data: MediaData,
    /// The publisher's session.
    pub publisher: u64,
}

/// A message to one core.
#[derive(Debug)]
pub enum CoreMsg {
    /// A frame for the core's players of stream `stream`.
    Frame {
        /// The stream's id.
        stream: u64,
        /// The frame.
        frame: Arc<SharedFrame>,
    },
    /// A player wants a keyframe: ask publisher session `session`.
    Keyframe {
        /// The publisher's session id.
        session: u64,
        /// PLI or FIR.
        kind: KeyframeRequestKind,
    },
    /// Close session `session` (WHIP/WHEP DELETE).
    Close {
        /// The session id.
        session: u64,
    },
}

/// One core's inbox: a bounded queue and the waker of the core's loop.
#[derive(Debug)]
pub struct Inbox {
    queue: ArrayQueue<CoreMsg>,
    waker: AtomicWaker,
    notified: AtomicBool,
    /// The socket's receive drop count (SO_RXQ_OVFL), as last reported by the kernel.
    pub rx_drops: AtomicU64,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            queue: ArrayQueue::new(INBOX_CAPACITY),
            waker: AtomicWaker::new(),
            notified: AtomicBool::new(false),
            rx_drops: AtomicU64::new(0),
        }
    }
}

impl Inbox {
    /// Queues `msg` and wakes the core; `false` if the inbox is full and `msg` was dropped.
    pub fn push(&self, msg: CoreMsg) -> bool {
        let ok = self.queue.push(msg).is_ok();
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
        ok
    }

    /// The next message, if any.
    pub fn pop(&self) -> Option<CoreMsg> {
        self.queue.pop()
    }

    /// Registers the core loop's waker; `true` if messages arrived since the last call, in
    /// which case the loop must not sleep.
    pub fn poll_notified(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.notified.swap(false, Ordering::AcqRel)
    }
}
