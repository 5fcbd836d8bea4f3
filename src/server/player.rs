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
use std::task::{Poll, Waker};

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
}

/// Serves a player until it stops, disconnects, reaches its duration, or its socket fails.
pub(super) async fn run(
    stream: &mut TcpStream,
    session: ServerSession,
    consumer: Consumer,
    shared: &Arc<Shared>,
    client: &Client,
    limits: Limits,
    buf: Vec<u8>,
) -> Result<(), ConnError> {
    let link = Link::default();
    let stop = limits.duration.map(|d| (d, session.play_stop_message()));
    let reader = pin!(read_loop(&*stream, session, &link, buf));
    let writer = pin!(write_loop(
        &*stream,
        consumer,
        &link,
        (shared, client),
        limits.chunk_size,
        stop
    ));
    match select(reader, writer).await {
        Either::Left((r, _)) | Either::Right((r, _)) => r,
    }
}

async fn read_loop(
    mut stream: &TcpStream,
    mut session: ServerSession,
    link: &Link,
    mut buf: Vec<u8>,
) -> Result<(), ConnError> {
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
    mut stream: &TcpStream,
    mut consumer: Consumer,
    link: &Link,
    (shared, client): (&Arc<Shared>, &Client),
    chunk_size: u32,
    mut stop: Option<(u32, Bytes)>,
) -> Result<(), ConnError> {
    let mut writer = PlayerWriter {
        chunk_size,
        last: [None; 3],
        scratch: BytesMut::new(),
    };
    let mut iov: Vec<Bytes> = Vec::new();
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
            continue;
        }
        let len: usize = iov.iter().map(Bytes::len).sum();
        let BufResult(r, v) = stream.write_vectored_all(iov).await;
        iov = v;
        iov.clear();
        r?;
        shared
            .stats
            .bytes_out
            .fetch_add(len as u64, Ordering::Relaxed);
        client.send_bytes.fetch_add(len as u64, Ordering::Relaxed);
        if done {
            return Ok(());
        }
    }
}
