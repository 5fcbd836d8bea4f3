//! A playing connection: the writer gathers every frame between the player's cursor and the
//! ring's head into one vectored write of shared `Bytes` (an iovec per frame, plus a small
//! header of its own where its stream starts or resumes), and the reader keeps answering the
//! peer's control messages. Both run in one task; control replies travel through the writer,
//! so the two never interleave bytes on the socket.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use futures_util::future::{select, Either};

use super::conn::ConnError;
use super::Shared;
use crate::hub::core::Consumer;
use crate::media::Frame;
use crate::rtmp::session::{Event, ServerSession};
use crate::rtmp::STREAM_ID;
use crate::stats::clients::Client;

/// Frames gathered into one write at most; each costs at most two iovecs, under IOV_MAX.
const MAX_BATCH: usize = 256;
/// Bytes a player's reads take at most.
const PLAYER_READ_BUFFER: usize = 512;
/// iovecs a player keeps room for between writes.
const IOV_KEEP: usize = 16;

/// What the reader tells the writer.
#[derive(Default)]
struct Link {
    control: RefCell<Vec<Bytes>>,
    paused: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Link {
    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Builds a player's iovecs: shared bytes where they fit, its own headers where not.
struct PlayerWriter {
    chunk_size: u32,
    /// `seq` of the last frame sent of each kind: a frame whose `prev_seq` matches goes out
    /// as the shared bytes, anything else with a type-0 header of its own.
    last: [Option<u64>; 3],
    scratch: BytesMut,
}

impl PlayerWriter {
    fn append(&mut self, f: &Frame, iov: &mut Vec<Bytes>) {
        let k = f.kind.index();
        if f.prev_seq.is_some() && self.last[k] == f.prev_seq {
            iov.push(f.rtmp.clone());
        } else if f.needs_own_chunks {
            f.own_chunks(STREAM_ID, self.chunk_size, &mut self.scratch);
            iov.push(self.scratch.split().freeze());
        } else {
            self.scratch.reserve(32);
            f.type0_header(STREAM_ID, &mut self.scratch);
            iov.push(self.scratch.split().freeze());
            iov.push(f.rtmp.slice(f.rtmp_header_len..));
        }
        self.last[k] = Some(f.seq);
    }
}

/// What bounds a player's output.
pub(super) struct Limits {
    /// Chunk size of the shared bytes, announced at connect.
    pub(super) chunk_size: u32,
    /// Stream time after which the play stops, when the client asked for one.
    pub(super) duration: Option<u32>,
    /// `mw_latency`: wait for the core's next write tick of this period before writing what
    /// arrived ([`crate::runtime::tick`]); `None` writes as soon as anything arrives.
    pub(super) merge: Option<Duration>,
    /// `queue_length`: a write that cannot complete for this long means the player stopped
    /// reading; it is cut, since what it would get next is older than the ring keeps.
    pub(super) stall: Duration,
}

/// Serves a player until it stops, disconnects, reaches its duration, or its socket fails.
pub(super) async fn run(
    stream: &mut TcpStream,
    session: Box<ServerSession>,
    consumer: Consumer,
    shared: &Arc<Shared>,
    client: &Client,
    limits: Limits,
) -> Result<(), ConnError> {
    let link = Link::default();
    let stop = limits.duration.map(|d| (d, session.play_stop_message()));
    let reader = pin!(read_loop(&*stream, session, &link));
    let writer = pin!(write_loop(
        &*stream,
        consumer,
        &link,
        (shared, client),
        &limits,
        stop
    ));
    match select(reader, writer).await {
        Either::Left((r, _)) | Either::Right((r, _)) => r,
    }
}

/// Why a player's batch did not go out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The write took no data for queue_length.
    #[error("player stopped reading for {0:?} (queue_length): cut")]
    Stalled(Duration),
}

/// Writes a player's batch (RTMP or HTTP-FLV) in one vectored write, counts it, and hands
/// the vector back emptied. A write that cannot complete within `stall` (queue_length) means
/// the player stopped reading: it never comes back to `next_batch`, where a slow player skips
/// to a keyframe, so without this bound it would hold its slot and socket forever.
pub(crate) async fn write_batch(
    mut stream: &TcpStream,
    iov: Vec<Bytes>,
    shared: &Shared,
    client: &Client,
    stall: Duration,
) -> Result<Vec<Bytes>, BatchError> {
    let len: usize = iov.iter().map(Bytes::len).sum();
    let result = compio::time::timeout(stall, stream.write_vectored_all(iov)).await;
    written(result.ok(), len, (shared, client), stall)
}

/// What a batch's write of `len` bytes came to: its vector back, emptied, and the bytes
/// counted; the socket's error; or, for `None` (no data taken for `stall`, queue_length),
/// the player cut.
fn written(
    result: Option<BufResult<(), Vec<Bytes>>>,
    len: usize,
    (shared, client): (&Shared, &Client),
    stall: Duration,
) -> Result<Vec<Bytes>, BatchError> {
    let Some(BufResult(r, mut iov)) = result else {
        shared.stats.players_cut.fetch_add(1, Ordering::Relaxed);
        return Err(BatchError::Stalled(stall));
    };
    r?;
    iov.clear();
    // A GOP-cache burst needs hundreds of iovecs once; a live player needs a few per turn.
    // Keeping the burst's capacity would cost every player kilobytes for life.
    iov.shrink_to(IOV_KEEP);
    shared
        .stats
        .bytes_out
        .fetch_add(len as u64, Ordering::Relaxed);
    client.send_bytes.fetch_add(len as u64, Ordering::Relaxed);
    Ok(iov)
}

/// A player's writes when they merge on the core's tick (`mw_latency`): each batch is
/// submitted and the player goes straight back to wait for the next tick; the completion is
/// collected there, before the next batch goes out. On io_uring that saves a task wake-up
/// and poll per write (the completion wakes no one: the tick wakes the player anyway), and
/// no timer is armed per write: only a write still in flight at the next tick waits, bounded
/// by `stall` (queue_length), as in [`write_batch`].
pub(crate) struct TickWriter<'a> {
    stream: &'a TcpStream,
    inflight: InFlight<'a>,
    /// Bytes of the write in flight.
    len: usize,
    /// The emptied vector of the last completed write, for the next batch.
    spare: Vec<Bytes>,
}

type WriteAll<'a> = std::pin::Pin<Box<dyn Future<Output = BufResult<(), Vec<Bytes>>> + 'a>>;

enum InFlight<'a> {
    Idle,
    Flying(WriteAll<'a>),
    /// Completed when submitted (the epoll driver tries the send at once).
    Done(BufResult<(), Vec<Bytes>>),
}

impl<'a> TickWriter<'a> {
    /// A writer on `stream` with nothing in flight.
    pub(crate) fn new(stream: &'a TcpStream) -> Self {
        Self {
            stream,
            inflight: InFlight::Idle,
            len: 0,
            spare: Vec::new(),
        }
    }

    /// Waits for the write in flight to complete (at once, usually: a period has passed),
    /// and counts it; a write that takes no data for `stall` more cuts the player.
    pub(crate) async fn settle(
        &mut self,
        shared: &Shared,
        client: &Client,
        stall: Duration,
    ) -> Result<(), BatchError> {
        let result = match std::mem::replace(&mut self.inflight, InFlight::Idle) {
            InFlight::Idle => return Ok(()),
            InFlight::Done(result) => Some(result),
            InFlight::Flying(mut write) => {
                let now = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                match now {
                    Poll::Ready(result) => Some(result),
                    Poll::Pending => compio::time::timeout(stall, write).await.ok(),
                }
            }
        };
        self.spare = written(result, self.len, (shared, client), stall)?;
        Ok(())
    }

    /// Submits `iov` (after [`TickWriter::settle`]) and returns an empty vector for the next
    /// batch.
    pub(crate) fn start(&mut self, iov: Vec<Bytes>) -> Vec<Bytes> {
        debug_assert!(matches!(self.inflight, InFlight::Idle));
        self.len = iov.iter().map(Bytes::len).sum();
        let mut stream = self.stream;
        let mut write: WriteAll<'a> = Box::pin(async move { stream.write_vectored_all(iov).await });
        // Submitted with a waker that does nothing: the tick, not the completion, wakes the
        // player next.
        self.inflight = match write.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => InFlight::Done(result),
            Poll::Pending => InFlight::Flying(write),
        };
        std::mem::take(&mut self.spare)
    }
}

async fn read_loop(
    mut stream: &TcpStream,
    mut session: Box<ServerSession>,
    link: &Link,
) -> Result<(), ConnError> {
    // A player only sends acknowledgements, pings and pause: a small buffer, held for life.
    let mut buf = Vec::with_capacity(PLAYER_READ_BUFFER);
    loop {
        buf.clear();
        let BufResult(r, b) = stream.read(buf).await;
        buf = b;
        let n = r?;
        if n == 0 {
            return Ok(());
        }
        session.handle_input(&buf[..n])?;
        while let Some(event) = session.poll_event() {
            match event {
                Event::StopPlay => return Ok(()),
                Event::Pause(p) => link.paused.set(p),
                _ => {}
            }
        }
        let mut control = link.control.borrow_mut();
        while let Some(b) = session.poll_transmit() {
            control.push(b);
        }
        drop(control);
        link.wake();
    }
}

/// `stop`: the play's duration and the status message that ends it.
async fn write_loop(
    stream: &TcpStream,
    mut consumer: Consumer,
    link: &Link,
    (shared, client): (&Arc<Shared>, &Client),
    limits: &Limits,
    mut stop: Option<(u32, Bytes)>,
) -> Result<(), ConnError> {
    let mut writer = PlayerWriter {
        chunk_size: limits.chunk_size,
        last: [None; 3],
        scratch: BytesMut::new(),
    };
    let mut iov: Vec<Bytes> = Vec::new();
    let mut ticked = TickWriter::new(stream);
    let mut first_ts = None;
    let mut done = false;
    loop {
        iov.append(&mut link.control.borrow_mut());
        if !link.paused.get() && !done {
            consumer.next_batch(MAX_BATCH, |f| {
                let start = *first_ts.get_or_insert(f.timestamp);
                if let Some((duration, _)) = &stop {
                    if f.timestamp.wrapping_sub(start) >= *duration {
                        done = true;
                    }
                }
                if !done {
                    writer.append(f, &mut iov);
                }
            });
            if done {
                if let Some((_, msg)) = stop.take() {
                    iov.push(msg);
                }
            }
        }
        if iov.is_empty() {
            let mut wait = pin!(consumer.wait());
            poll_fn(|cx| {
                if !link.control.borrow().is_empty() {
                    return Poll::Ready(());
                }
                *link.waker.borrow_mut() = Some(cx.waker().clone());
                if link.paused.get() {
                    return Poll::Pending;
                }
                // Data or an unpublish: either way, look again (players keep waiting for
                // the next publisher).
                wait.as_mut().poll(cx).map(|_| ())
            })
            .await;
            if let Some(period) = limits.merge {
                crate::runtime::tick::next(period).await;
            }
            continue;
        }
        let Some(period) = limits.merge else {
            iov = write_batch(stream, iov, shared, client, limits.stall).await?;
            if done {
                return Ok(());
            }
            continue;
        };
        ticked.settle(shared, client, limits.stall).await?;
        iov = ticked.start(iov);
        if done {
            ticked.settle(shared, client, limits.stall).await?;
            return Ok(());
        }
        // A live stream has something new by the next tick almost always: wait for the tick
        // alone, not for the data and then the tick.
        crate::runtime::tick::next(period).await;
    }
}
