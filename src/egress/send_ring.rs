//! Sends one batch of shared bytes to many TCP sockets: the system-call layer under
//! [`super::cohort`]. On io_uring, each socket's send is a SEND request on a ring of the
//! core's own, every request of a flush goes to the kernel in one `io_uring_enter`, and their
//! completions are read from the shared completion queue later, with no system call; on the
//! epoll fallback, each is a non-blocking `send` that completes at once.
//!
//! Why a ring of its own beside the runtime's: compio's ops carry a boxed future and a waker
//! per send, which a player that has nothing to learn from the completion until its next
//! flush does not need. This ring's requests carry a slab key; the batch they read stays in
//! the slab until the kernel says it is done with it. Nothing here knows about players or
//! frames: a batch is bytes, a token is whatever the caller needs back at completion.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, types, IoUring};
use nix::libc;
use nix::sys::socket::MsgFlags;
use slab::Slab;

/// Submission queue entries of a core's send ring; a flush with more sends than this
/// submits in several steps.
const RING_ENTRIES: u32 = 1024;
/// `user_data` of cancel requests, apart from the slab keys of sends.
const CANCEL: u64 = 1 << 63;
/// Flags of every send: a peer that has gone must give an error, not a SIGPIPE.
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;

/// One flush's bytes, ready to send to any number of sockets: one contiguous buffer. The
/// frames arrive as many shared `Bytes` (two or three per frame); a player's send of them as
/// an iovec array made the kernel import and walk ~15 segments per send, so the batch copies
/// them once into one buffer, for every player of the core: a 5 KB copy per flush, against
/// a msghdr copy, an iovec import and a segment walk per player.
pub(crate) struct Batch {
    buf: Bytes,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.buf.len())
            .finish()
    }
}

impl Batch {
    /// The batch of `bufs`, in order.
    pub(crate) fn new(bufs: Vec<Bytes>) -> Self {
        let buf = match <[Bytes; 1]>::try_from(bufs) {
            Ok([one]) => one,
            Err(bufs) => {
                let mut buf = BytesMut::with_capacity(bufs.iter().map(Bytes::len).sum());
                for b in &bufs {
                    buf.extend_from_slice(b);
                }
                buf.freeze()
            }
        };
        Self { buf }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes from offset `sent` on, for a send that fell short.
    pub(crate) fn rest(&self, sent: usize) -> Vec<Bytes> {
        if sent < self.buf.len() {
            vec![self.buf.slice(sent..)]
        } else {
            Vec::new()
        }
    }

    /// Sends it on `fd` at once, without blocking: the bytes taken, 0 when the socket's
    /// buffer is full.
    pub(crate) fn send_now(&self, fd: RawFd) -> io::Result<usize> {
        match nix::sys::socket::send(fd, &self.buf, SEND_FLAGS | MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

/// A core's send ring, with the batch and token of each send in flight.
pub(crate) struct Ring<T> {
    ring: IoUring,
    flying: Slab<(T, Rc<Batch>)>,
    /// Requests pushed since the last submit.
    unsubmitted: bool,
}

impl<T> Ring<T> {
    /// A ring, or the kernel's refusal (no io_uring, or a seccomp filter that blocks it).
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .build(RING_ENTRIES)
            .or_else(|_| IoUring::new(RING_ENTRIES))?;
        Ok(Self {
            ring,
            flying: Slab::new(),
            unsubmitted: false,
        })
    }

    /// Queues a send of `batch` on `fd`; `token` comes back with its completion. The key it
    /// returns names the send for [`Ring::cancel`] until then. Nothing reaches the kernel
    /// before [`Ring::submit`].
    pub(crate) fn send(&mut self, fd: RawFd, batch: &Rc<Batch>, token: T) -> usize {
        let entry = self.flying.vacant_entry();
        let key = entry.key();
        let sqe = opcode::Send::new(types::Fd(fd), batch.buf.as_ptr(), batch.len() as u32)
            .flags(SEND_FLAGS.bits())
            .build()
            .user_data(key as u64);
        entry.insert((token, batch.clone()));
        self.push(&sqe);
        key
    }

    /// Cancels send `key` if it is still in flight; its completion then comes with
    /// `ECANCELED` (or with what it sent, if it finished first).
    pub(crate) fn cancel(&mut self, key: usize) {
        if self.flying.contains(key) {
            let sqe = opcode::AsyncCancel::new(key as u64)
                .build()
                .user_data(CANCEL);
            self.push(&sqe);
            self.submit();
        }
    }

    fn push(&mut self, sqe: &io_uring::squeue::Entry) {
        // SAFETY: a send's buffer belongs to its batch, which `flying`
        // holds until the completion comes back (and leaks if the ring goes first, see Drop);
        // a cancel request points to no memory.
        while unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.submit();
        }
        self.unsubmitted = true;
    }

    /// Hands the queued requests to the kernel in one system call.
    pub(crate) fn submit(&mut self) {
        if !self.unsubmitted {
            return;
        }
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // EBUSY: the completion queue overflowed; the kernel takes the requests once
                // completions are read. Read them here and try again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return,
                Err(e) => {
                    tracing::warn!("send ring: submit failed: {e}");
                    return;
                }
            }
        }
        self.unsubmitted = false;
    }

    /// Takes every completion the kernel has posted: `done(token, batch, result)` for each
    /// send, with the bytes sent (0 for a socket whose buffer was full) or the error.
    pub(crate) fn complete(&mut self, mut done: impl FnMut(T, Rc<Batch>, io::Result<usize>)) {
        // A submit that failed for want of completion space goes through now.
        self.submit();
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let key = cqe.user_data();
            if key & CANCEL != 0 {
                continue;
            }
            let Some((token, batch)) = self.flying.try_remove(key as usize) else {
                continue;
            };
            let result = match cqe.result() {
                n if n >= 0 => Ok(n as usize),
                e if e == -libc::EAGAIN => Ok(0),
                e => Err(io::Error::from_raw_os_error(-e)),
            };
            done(token, batch, result);
        }
    }

    /// Sends in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.flying.len()
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Sends still in flight may read their batches until the kernel tears the ring down,
        // after its fd closes: their memory must outlive this, so it is leaked (this happens
        // only when a worker thread ends).
        std::mem::forget(std::mem::take(&mut self.flying));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let a = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    fn batch() -> Rc<Batch> {
        Rc::new(Batch::new(vec![
            Bytes::from_static(b"hello, "),
            Bytes::from_static(b"shared "),
            Bytes::from_static(b"world"),
        ]))
    }

    #[test]
    fn one_batch_reaches_every_socket_and_its_rest_is_exact() {
        let b = batch();
        assert_eq!(b.len(), 19);
        assert_eq!(b.rest(9).concat(), b"ared world");
        assert_eq!(b.rest(7).concat(), b"shared world");
        assert!(b.rest(19).is_empty());

        let (mut r1, w1) = pair();
        let (mut r2, w2) = pair();
        assert_eq!(b.send_now(w1.as_raw_fd()).expect("send"), 19);
        let mut got = [0; 19];
        r1.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello, shared world");

        let mut ring = match Ring::<u8>::new() {
            Ok(ring) => ring,
            Err(e) => return crate::runtime::no_uring("the send ring's half of this test", e),
        };
        ring.send(w1.as_raw_fd(), &b, 1);
        ring.send(w2.as_raw_fd(), &b, 2);
        ring.submit();
        let mut done = Vec::new();
        while done.len() < 2 {
            ring.complete(|t, batch, r| done.push((t, batch.len(), r.expect("sent"))));
        }
        done.sort_unstable();
        assert_eq!(done, [(1, 19, 19), (2, 19, 19)]);
        assert_eq!(ring.in_flight(), 0);
        for r in [&mut r1, &mut r2] {
            r.read_exact(&mut got).expect("read");
            assert_eq!(&got, b"hello, shared world");
        }
    }

    #[test]
    fn a_send_to_a_full_socket_is_cancelled() {
        let mut ring = match Ring::<()>::new() {
            Ok(ring) => ring,
            Err(e) => return crate::runtime::no_uring("cancelling a send", e),
        };
        let (_reader, w) = pair();
        let big = Rc::new(Batch::new(vec![Bytes::from(vec![0u8; 64 << 20])]));
        let key = ring.send(w.as_raw_fd(), &big, ());
        ring.submit();
        ring.cancel(key);
        let mut result = None;
        let start = std::time::Instant::now();
        while result.is_none() && start.elapsed() < std::time::Duration::from_secs(5) {
            ring.complete(|(), _, r| result = Some(r));
        }
        let result = result.expect("a completion after the cancel");
        match result {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
            // Or it sent what fit before the cancel came.
            Ok(n) => assert!(n < big.len(), "a 64 MB send to a reader that never reads"),
        }
    }
}
