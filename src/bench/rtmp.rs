//! RTMP load: a player task that counts bytes and reads latency stamps, and a publisher task
//! that sends an FLV file at its own pace, looped, stamping every video frame. Both drive
//! ringcast's sans-IO client session over a compio socket.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use super::{sei, wall_ms, ClientState, LatencyProbe, Stats};
use crate::flv::Tag;
use crate::rtmp::client::{ClientEvent, ClientSession};
use crate::rtmp::message::{MSG_DATA_AMF0, MSG_VIDEO};
use crate::rtmp::session::SessionError;
use crate::runtime::Connection;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client stopped early.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server broke the protocol.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The server refused publish or play.
    #[error("refused: {0}")]
    Refused(String),
    /// Connecting took too long.
    #[error("timed out connecting")]
    Timeout,
    /// The server closed the connection.
    #[error("server closed the connection")]
    Closed,
}

/// Where a client connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// `rtmp://host:port/app`.
    pub tc_url: String,
    /// The stream name.
    pub stream: String,
}

/// Connects to `addr`, reading `read_buffer` bytes at a time at most.
pub(super) async fn connect(addr: &str, read_buffer: usize) -> Result<Connection, LoadError> {
    Ok(Connection::connect(addr, CONNECT_TIMEOUT, read_buffer)
        .await
        .map_err(|_| LoadError::Timeout)??)
}

async fn flush(conn: &Connection, session: &mut ClientSession) -> io::Result<()> {
    while let Some(b) = session.poll_transmit() {
        conn.write_all(b).await?;
    }
    Ok(())
}

/// Plays `target` until `stop`, recording bytes and latency as client `id`.
pub async fn play(id: usize, target: Target, stats: Arc<Stats>, stop: Instant) {
    super::until_stop(id, "player", &stats, stop, play_inner(id, &target, &stats)).await;
}

async fn play_inner(id: usize, target: &Target, stats: &Stats) -> Result<(), LoadError> {
    let conn = connect(&target.addr, 64 * 1024).await?;
    let mut session = ClientSession::play(&target.tc_url, &target.stream, &mut rand::thread_rng());
    let mut probe = LatencyProbe::new();
    loop {
        flush(&conn, &mut session).await?;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Playing => stats.set_state(id, ClientState::Alive),
                ClientEvent::Refused(why) => return Err(LoadError::Refused(why)),
                ClientEvent::Media(m) if m.type_id == MSG_VIDEO => probe.video(&m.payload, stats),
                _ => {}
            }
        }
        let input = conn.read_some().await?;
        if input.is_empty() {
            return Err(LoadError::Closed);
        }
        stats.bytes[id].fetch_add(input.len() as u64, Ordering::Relaxed);
        session.handle_input(&input)?;
    }
}

/// Publishes `tags` to `target` at their own pace, looped, until `stop`.
pub async fn publish(
    id: usize,
    target: Target,
    tags: Arc<Vec<Tag>>,
    stats: Arc<Stats>,
    stop: Instant,
) {
    super::until_stop(
        id,
        "publisher",
        &stats,
        stop,
        publish_inner(id, &target, &tags, &stats),
    )
    .await;
}

async fn publish_inner(
    id: usize,
    target: &Target,
    tags: &[Tag],
    stats: &Stats,
) -> Result<(), LoadError> {
    let conn = connect(&target.addr, 16 * 1024).await?;
    let mut session = ClientSession::publish(
        &target.tc_url,
        &target.stream,
        4096,
        &mut rand::thread_rng(),
    );
    'setup: loop {
        flush(&conn, &mut session).await?;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Publishing => break 'setup,
                ClientEvent::Refused(why) => return Err(LoadError::Refused(why)),
                _ => {}
            }
        }
        let input = conn.read_some().await?;
        if input.is_empty() {
            return Err(LoadError::Closed);
        }
        session.handle_input(&input)?;
    }
    stats.set_state(id, ClientState::Alive);

    let session = RefCell::new(session);
    let reader = async {
        conn.read_each(|input| Ok::<_, LoadError>(session.borrow_mut().handle_input(input)?))
            .await?;
        Err(LoadError::Closed)
    };
    let writer = async {
        let loop_ms = tags.last().map_or(0, |t| t.timestamp) + 40;
        let nalu_len = sei::file_nalu_len_size(tags);
        let start = Instant::now();
        for round in 0u32.. {
            let offset = round.wrapping_mul(loop_ms);
            for tag in tags {
                // Metadata once: a looped file would otherwise resend it every round.
                if round > 0 && tag.type_id == MSG_DATA_AMF0 {
                    continue;
                }
                let ts = tag.timestamp.wrapping_add(offset);
                compio::time::sleep_until(start + Duration::from_millis(u64::from(ts))).await;
                let data = if tag.type_id == MSG_VIDEO && sei::is_avc_nalus(&tag.data) {
                    sei::stamp(&tag.data, nalu_len, wall_ms())
                } else {
                    tag.data.clone()
                };
                let out = {
                    let mut sess = session.borrow_mut();
                    sess.send_media(tag.type_id, ts, &data);
                    sess.poll_transmit()
                };
                if let Some(b) = out {
                    stats.bytes[id].fetch_add(b.len() as u64, Ordering::Relaxed);
                    conn.write_all(b).await?;
                }
            }
        }
        Ok::<(), LoadError>(())
    };
    let end = match select(std::pin::pin!(reader), std::pin::pin!(writer)).await {
        Either::Left((r, _)) => r,
        Either::Right((r, _)) => r,
    };
    end
}
