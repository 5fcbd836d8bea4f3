//! A playing connection. In the steady state the player sits in its stream's cohort on this
//! core ([`super::cohort`]), which writes each flush's shared batch to it with the other
//! players in step; this task only waits. It writes on its own while it catches up (its start
//! from the GOP cache, a send that fell short, a skip to a keyframe) and while it has
//! something of its own to send: the reader's replies to the peer's control messages, which
//! travel through the writer so that the two never interleave bytes on the socket.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use futures_util::future::{select, Either};

use super::cohort::{self, MAX_BATCH};
use super::conn::ConnError;
use super::Shared;
use crate::hub::core::Consumer;
use crate::media::wire::Form;
use crate::rtmp::session::{Event, ServerSession};
use crate::stats::clients::Client;

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

    /// The writer has something of its own to do: control replies to send, or a pause.
    fn busy(&self) -> bool {
        !self.control.borrow().is_empty() || self.paused.get()
    }
}

/// What bounds a player's output.
pub(super) struct Limits {
    /// Chunk size of the shared bytes, announced at connect.
    pub(super) chunk_size: u32,
    /// Stream time after which the play stops, when the client asked for one.
    pub(super) duration: Option<u32>,
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
    client: &Arc<Client>,
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
    let Ok(BufResult(r, mut iov)) =
        compio::time::timeout(stall, stream.write_vectored_all(iov)).await
    else {
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

async fn read_loop(
    mut stream: &TcpStream,
    mut session: Box<ServerSession>,
    link: &Link,
) -> Result<(), ConnError> {
    // A player only sends acknowledgements, pings and pause: a small buffer, held for life.
    let mut buf = Vec::with_capacity(PLAYER_READ_BUFFER);
    loop {
        // Events first: the read that carried the play may have carried a pause behind it.
        while let Some(event) = session.poll_event() {
            match event {
                Event::StopPlay => return Ok(()),
                Event::Pause(p) => link.paused.set(p),
                _ => {}
            }
        }
        link.control
            .borrow_mut()
            .extend(std::iter::from_fn(|| session.poll_transmit()));
        link.wake();
        buf.clear();
        let BufResult(r, b) = stream.read(buf).await;
        buf = b;
        let n = r?;
        if n == 0 {
            return Ok(());
        }
        session.handle_input(&buf[..n])?;
    }
}

/// `stop`: the play's duration and the status message that ends it.
async fn write_loop(
    stream: &TcpStream,
    mut consumer: Consumer,
    link: &Link,
    (shared, client): (&Arc<Shared>, &Arc<Client>),
    limits: &Limits,
    mut stop: Option<(u32, Bytes)>,
) -> Result<(), ConnError> {
    let mut form = Form::rtmp(limits.chunk_size);
    let mut scratch = BytesMut::new();
    let mut iov: Vec<Bytes> = Vec::new();
    let mut first_ts = None;
    let mut done = false;
    loop {
        // Caught up, with nothing of its own to send: the cohort writes for it. A play with a
        // duration counts its frames itself, so it stays out.
        if iov.is_empty() && stop.is_none() && !link.busy() {
            let fd = stream.as_raw_fd();
            if let Some(seat) = cohort::seat(&consumer, form, fd, (client, shared), limits.stall) {
                let back = seat.hold(|| link.busy()).await;
                consumer.set_position(back.at);
                form = back.form;
                iov = back.rest;
                back.result?;
            }
        }
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
                    form.append(f, &mut iov, &mut scratch);
                }
            });
            if done {
                if let Some((_, msg)) = stop.take() {
                    iov.push(msg);
                }
            }
        }
        if !iov.is_empty() {
            iov = write_batch(stream, iov, shared, client, limits.stall).await?;
            if done {
                return Ok(());
            }
            continue;
        }
        // Nothing to send until the core's next flush, a control reply or the end of a pause.
        let mut flushed = pin!(consumer.flushed());
        poll_fn(|cx| {
            if !link.control.borrow().is_empty() {
                return Poll::Ready(());
            }
            *link.waker.borrow_mut() = Some(cx.waker().clone());
            if link.paused.get() {
                return Poll::Pending;
            }
            flushed.as_mut().poll(cx)
        })
        .await;
    }
}
