//! A playing connection. In the steady state the player sits in its stream's cohort on this
//! core ([`crate::egress::cohort`]), which writes each flush's shared batch to it with the other
//! players in step; this task only waits. It writes on its own while it catches up (its start
//! from the GOP cache, a send that fell short, a skip to a keyframe) and while it has
//! something of its own to send: the reader's replies to the peer's control messages, which
//! travel through the writer so that the two never interleave bytes on the socket.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::{select, Either};

use super::error::ConnError;
use crate::egress::cohort;
use crate::egress::{write_batch, MAX_BATCH};
use crate::hub::Consumer;
use crate::media::wire::Form;
use crate::rtmp::session::{Event, ServerSession};
use crate::runtime::Connection;
use crate::state::Shared;
use crate::stats::clients::Client;

/// Bytes a player's reads take at most: it only sends acknowledgements, pings and pause,
/// and it holds the buffer for life.
const PLAYER_READ_BUFFER: usize = 512;

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
    conn: &Connection,
    session: Box<ServerSession>,
    consumer: Consumer,
    shared: &Arc<Shared>,
    client: &Arc<Client>,
    limits: Limits,
) -> Result<(), ConnError> {
    let link = Link::default();
    let stop = limits.duration.map(|d| (d, session.play_stop_message()));
    conn.set_read_buffer(PLAYER_READ_BUFFER);
    let reader = pin!(read_loop(conn, session, &link));
    let writer = pin!(write_loop(
        conn,
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

async fn read_loop(
    conn: &Connection,
    mut session: Box<ServerSession>,
    link: &Link,
) -> Result<(), ConnError> {
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
        let input = conn.read_some().await?;
        if input.is_empty() {
            return Ok(());
        }
        session.handle_input(&input)?;
    }
}

/// `stop`: the play's duration and the status message that ends it.
async fn write_loop(
    conn: &Connection,
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
            let fd = conn.socket().as_raw_fd();
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
            iov = write_batch(conn.socket(), iov, shared.as_ref(), client, limits.stall).await?;
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
