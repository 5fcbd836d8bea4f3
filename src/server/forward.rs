//! Forwarding: while a stream is published here, push it to another RTMP server with our own
//! client session, reconnecting when the destination drops. Each attempt starts a fresh
//! consumer, so the destination gets metadata, sequence headers and the GOP cache first.
//! Runs on the publisher's core and stops when that publish ends. An edge's publish to its
//! origin (`edge.rs`) goes through the same [`connect_publish`] and [`relay`].

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};

use crate::hub::{Consumer, Wake};
use crate::hub::{StreamKey, StreamSettings};
use crate::rtmp::client::{ClientEvent, ClientSession, Redirect};
use crate::rtmp::session::SessionError;
use crate::runtime::Connection;
use crate::state::Shared;

/// Pause between connection attempts.
const RETRY: Duration = Duration::from_secs(1);
/// How long connect, handshake and publish may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames sent per write.
const BATCH: usize = 64;
/// Bytes a read takes at most: the destination only answers commands and acknowledges.
const READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("refused: {0}")]
    Refused(String),
    /// An RTMP 302: the server sent the client elsewhere (the edge follows it).
    #[error("redirected to {}", .0.url)]
    Redirected(Redirect),
    #[error("timed out setting up")]
    Timeout,
    #[error("the peer closed the connection")]
    Closed,
}

/// How an attempt ended without error.
pub(super) enum End {
    /// The publish this forwarder serves ended.
    Unpublished,
}

/// Forwards `key` to `dest` for as long as connection `publisher` publishes it.
pub(super) async fn run(
    shared: Arc<Shared>,
    key: StreamKey,
    settings: StreamSettings,
    dest: String,
    publisher: u64,
) {
    let tc_url = format!("rtmp://{dest}/{}?vhost={}", key.app, key.vhost);
    let mut failures = 0u32;
    loop {
        let consumer = Consumer::subscribe(&shared.hub, &key, &settings);
        if consumer.source().publisher() != Some(publisher) {
            return;
        }
        match attempt(&dest, &tc_url, &key, consumer, settings.chunk_size).await {
            Ok(End::Unpublished) => {
                tracing::info!(cid = publisher, "forward {key} to {dest} done");
                return;
            }
            Err(e) => {
                // Log the first failure and then every 30th, not once a second.
                if failures.is_multiple_of(30) {
                    tracing::warn!(cid = publisher, "forward {key} to {dest}: {e}; retrying");
                }
                failures += 1;
            }
        }
        compio::time::sleep(RETRY).await;
    }
}

async fn attempt(
    dest: &str,
    tc_url: &str,
    key: &StreamKey,
    consumer: Consumer,
    chunk_size: u32,
) -> Result<End, ForwardError> {
    let (conn, session) = connect_publish(dest, tc_url, &key.stream, chunk_size).await?;
    tracing::info!("forwarding {key} to {dest}");
    relay(&conn, session, consumer).await
}

/// Connects to `dest` and publishes `stream` of `tc_url` there, within [`SETUP_TIMEOUT`].
pub(super) async fn connect_publish(
    dest: &str,
    tc_url: &str,
    stream: &str,
    chunk_size: u32,
) -> Result<(Connection, ClientSession), ForwardError> {
    let conn = Connection::connect(dest, SETUP_TIMEOUT, READ_BUFFER)
        .await
        .map_err(|_| ForwardError::Timeout)??;
    let mut session = ClientSession::publish(tc_url, stream, chunk_size, &mut rand::thread_rng());
    let setup = until_started(&conn, &mut session, &ClientEvent::Publishing);
    compio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| ForwardError::Timeout)??;
    Ok((conn, session))
}

/// Drives a client session's handshake and commands on `conn` until the server answers with
/// `started` (`Publishing` or `Playing`), refuses, redirects, or closes. No deadline: the
/// caller's.
pub(super) async fn until_started(
    conn: &Connection,
    session: &mut ClientSession,
    started: &ClientEvent,
) -> Result<(), ForwardError> {
    loop {
        while let Some(b) = session.poll_transmit() {
            conn.write_all(b).await?;
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Refused(why) => return Err(ForwardError::Refused(why)),
                ClientEvent::Redirected(to) => return Err(ForwardError::Redirected(to)),
                ev if ev == *started => return Ok(()),
                _ => {}
            }
        }
        let input = conn.read_some().await?;
        if input.is_empty() {
            return Err(ForwardError::Closed);
        }
        session.handle_input(&input)?;
    }
}

/// Sends what `consumer` reads to the publishing `session` on `conn` until the publish ends
/// here or the destination fails.
pub(super) async fn relay(
    conn: &Connection,
    session: ClientSession,
    mut consumer: Consumer,
) -> Result<End, ForwardError> {
    let session = RefCell::new(session);
    let reader = async {
        conn.read_each(|input| Ok::<_, ForwardError>(session.borrow_mut().handle_input(input)?))
            .await?;
        Err(ForwardError::Closed)
    };
    let writer = async {
        loop {
            let n = {
                let mut sess = session.borrow_mut();
                consumer.next_batch(BATCH, |f| {
                    sess.send_media(f.kind.type_id(), f.timestamp, &f.payload)
                })
            };
            let out = session.borrow_mut().poll_transmit();
            if let Some(b) = out {
                conn.write_all(b).await?;
            }
            if n == 0 && consumer.wait().await == Wake::Unpublished {
                return Ok::<_, ForwardError>(End::Unpublished);
            }
        }
    };
    let end = match select(std::pin::pin!(reader), std::pin::pin!(writer)).await {
        Either::Left((r, _)) => r,
        Either::Right((r, _)) => r,
    };
    end
}
