//! One RTMP connection from accept to close: handshake and connect under a deadline, then
//! the publisher's read loop or the player's tasks. Errors end only this connection and are
//! logged here, once, with the connection's id.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use compio::net::TcpStream;

use super::consumers::{self, Producer};
use super::error::ConnError;
use super::origin_cluster::{self, Outcome};
use super::{access, edge, player, HANDSHAKE_TIMEOUT, PUBLISH_TIMEOUT};
use crate::access::security::Action;
use crate::hub::Consumer;
use crate::hub::StreamKey;
use crate::media::MediaKind;
use crate::rtmp::session::{Event, ServerSession, SessionConfig};
use crate::runtime::Connection;
use crate::state::Shared;
use crate::stats::clients::{ClientGuard, ClientKind};

/// Size of a connection's read buffer until it publishes: the handshake and commands are
/// small, and a player keeps this buffer for life, so it must be small (players outnumber
/// publishers by thousands).
const CONTROL_READ_BUFFER: usize = 4 * 1024;
/// Size of a publisher's read buffer: a whole 60000-byte chunk per read.
const PUBLISH_READ_BUFFER: usize = 64 * 1024;

/// Serves one accepted RTMP connection until it ends.
pub async fn serve(id: u64, peer: SocketAddr, stream: TcpStream, shared: &Arc<Shared>) {
    let conn = Connection::new(stream, CONTROL_READ_BUFFER);
    match run(id, peer, &conn, shared).await {
        Ok(()) => {}
        Err(ConnError::Io(e)) if is_disconnect(&e) => {
            tracing::info!(cid = id, "peer disconnected: {e}")
        }
        Err(e) => {
            if !matches!(e, ConnError::Eof(_)) {
                shared.stats.client_errors.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(cid = id, "closing: {e}")
        }
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// Writes everything the session has to say.
async fn flush(conn: &Connection, session: &mut ServerSession) -> io::Result<()> {
    while let Some(b) = session.poll_transmit() {
        conn.write_all(b).await?;
    }
    Ok(())
}

async fn run(
    id: u64,
    peer: SocketAddr,
    conn: &Connection,
    shared: &Arc<Shared>,
) -> Result<(), ConnError> {
    let config = shared.config();
    // Boxed: the session moves through publish or play into the player's reader, and each
    // async fn it passes through would otherwise keep a copy of it in its state.
    let cfg = SessionConfig {
        out_chunk_size: config.chunk_size,
        ..SessionConfig::default()
    };
    let mut session = Box::new(ServerSession::new(cfg, &mut rand::thread_rng()));
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut phase = "handshaking";
    let mut app = String::new();
    let mut tc = String::new();
    let mut closing = None;
    loop {
        let input = conn
            .read_some_by(deadline)
            .await
            .map_err(|_| ConnError::Timeout(phase))??;
        if input.is_empty() {
            return Err(ConnError::Eof(phase));
        }
        session.handle_input(&input)?;
        // The buffer goes back before publish or play sizes it for its phase.
        drop(input);
        flush(conn, &mut session).await?;
        while let Some(event) = session.poll_event() {
            let (publishing, name, vhost, duration) = match event {
                Event::HandshakeDone(kind) => {
                    tracing::debug!(cid = id, "{kind:?} handshake done");
                    phase = "waiting for connect";
                    continue;
                }
                Event::Connect {
                    app: a,
                    tc_url,
                    vhost,
                } => {
                    tracing::info!(cid = id, "connect app={a} tcUrl={tc_url} vhost={vhost}");
                    let hook = crate::hooks::rtmp(id, peer, &session, &vhost, "", &tc_url);
                    crate::hooks::on_connect(shared, &hook).await?;
                    closing = Some(crate::hooks::Closing::new(shared, hook));
                    app = a;
                    tc = tc_url;
                    phase = "waiting for publish or play";
                    continue;
                }
                Event::Publish { stream, vhost } => (true, stream, vhost, None),
                Event::Play {
                    stream,
                    vhost,
                    duration,
                } => (false, stream, vhost, duration),
                _ => continue,
            };
            let vhost = vhost.unwrap_or_else(|| session.vhost().to_owned());
            let target = Target {
                id,
                peer,
                tc_url: &tc,
                vhost: &vhost,
                app: &app,
                name: &name,
                duration,
                closing: closing.as_ref(),
            };
            return if publishing {
                publish(conn, session, shared, target).await
            } else {
                play(conn, session, shared, target).await
            };
        }
    }
}

fn check_vhost(shared: &Shared, vhost: &str) -> Result<(), ConnError> {
    let config = shared.config();
    let v = config.vhost(vhost);
    if v.enabled {
        Ok(())
    } else {
        Err(ConnError::VhostDisabled(v.name.clone()))
    }
}

async fn publish(
    conn: &Connection,
    mut session: Box<ServerSession>,
    shared: &Arc<Shared>,
    target: Target<'_>,
) -> Result<(), ConnError> {
    let (id, vhost) = (target.id, target.vhost);
    let (key, settings) = shared.stream(vhost, target.app, target.name);
    let hook = target.hook(&session);
    let refused: Result<_, ConnError> = async {
        check_vhost(shared, vhost)?;
        access::check(shared, vhost, Action::Publish, target.peer)?;
        crate::hooks::on_publish(shared, &hook).await?;
        let up = edge::publish_upstream(shared, &key, &settings, session.stream_query()).await?;
        Ok((shared.hub.publish(&key, &settings, id)?, up))
    }
    .await;
    let (mut guard, upstream) = match refused {
        Ok(g) => g,
        Err(e) => {
            session.reject_publish(&e.description());
            flush(conn, &mut session).await?;
            return Err(e);
        }
    };
    session.accept_publish();
    session.handle_input(&[])?;
    flush(conn, &mut session).await?;
    tracing::info!(cid = id, "publish {key}");
    conn.set_read_buffer(PUBLISH_READ_BUFFER);
    // Listed before its consumers start: the HLS and DVR hooks name it from the list.
    let registered = target.register(shared, &key, &hook.param, ClientKind::RtmpPublish);
    consumers::start(shared, &key, &settings, Producer::Publish(id));
    let client = registered.client();
    let work = pin!(async {
        loop {
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Media(m) => {
                        if let Some(kind) = MediaKind::from_type_id(m.type_id) {
                            guard.push(kind, m.timestamp, m.payload);
                        }
                    }
                    Event::Unpublish => {
                        tracing::info!(cid = id, "unpublish {key}");
                        return Ok(());
                    }
                    _ => {}
                }
            }
            flush(conn, &mut session).await?;
            let input = conn
                .read_some_by(Instant::now() + PUBLISH_TIMEOUT)
                .await
                .map_err(|_| ConnError::Timeout("publishing"))??;
            let n = input.len() as u64;
            if n == 0 {
                tracing::info!(cid = id, "publisher left {key}");
                return Ok(());
            }
            client.recv_bytes.fetch_add(n, Ordering::Relaxed);
            shared.stats.bytes_in.fetch_add(n, Ordering::Relaxed);
            session.handle_input(&input)?;
        }
    });
    let work = pin!(edge::beside(upstream, shared, &key, &settings, work));
    let result = client.until_kicked(work).await;
    crate::hooks::on_unpublish(shared, &hook);
    result
}

/// What a publish or play asks for, and who asks.
struct Target<'a> {
    id: u64,
    peer: SocketAddr,
    tc_url: &'a str,
    vhost: &'a str,
    app: &'a str,
    name: &'a str,
    duration: Option<u32>,
    /// The connection's `on_close`, told this client's byte counts.
    closing: Option<&'a crate::hooks::Closing<'a>>,
}

impl Target<'_> {
    /// What the HTTP hooks are told of this request.
    fn hook(&self, session: &ServerSession) -> crate::hooks::Request {
        crate::hooks::rtmp(
            self.id,
            self.peer,
            session,
            self.vhost,
            self.name,
            self.tc_url,
        )
    }

    /// Enters this connection in the API's client registry for as long as the guard lives.
    fn register(
        &self,
        shared: &Shared,
        key: &StreamKey,
        param: &str,
        kind: ClientKind,
    ) -> ClientGuard {
        let guard = shared.clients.register(
            self.id,
            self.peer.ip(),
            key.clone(),
            self.tc_url.to_owned(),
            param.to_owned(),
            kind,
        );
        if let Some(closing) = self.closing {
            closing.counts(guard.client());
        }
        guard
    }
}

async fn play(
    conn: &Connection,
    mut session: Box<ServerSession>,
    shared: &Arc<Shared>,
    target: Target<'_>,
) -> Result<(), ConnError> {
    let id = target.id;
    let (key, settings) = shared.stream(target.vhost, target.app, target.name);
    let hook = target.hook(&session);
    let refused: Result<(), ConnError> = async {
        check_vhost(shared, target.vhost)?;
        access::check(shared, target.vhost, Action::Play, target.peer)?;
        let local = conn.socket().local_addr().ok();
        edge::refuse_loop(shared, &key, (target.peer, local))?;
        Ok(crate::hooks::on_play(shared, &hook).await?)
    }
    .await;
    if let Err(e) = refused {
        session.reject_play(&e.description());
        flush(conn, &mut session).await?;
        return Err(e);
    }
    let asked = (target.tc_url, target.app, target.name);
    match origin_cluster::rtmp_player(conn, &mut session, shared, &key, asked, id).await? {
        Outcome::Here => {}
        Outcome::Redirected => return Ok(()),
        Outcome::Refused(e) => return Err(e.into()),
    }
    edge::want(shared, &key, &settings, session.stream_query());
    session.accept_play();
    session.handle_input(&[])?;
    flush(conn, &mut session).await?;
    let consumer = Consumer::subscribe(&shared.hub, &key, &settings);
    tracing::info!(cid = id, "play {key}");
    let limits = player::Limits {
        chunk_size: settings.chunk_size,
        duration: target.duration,
        stall: settings.queue_length,
    };
    let registered = target.register(shared, &key, &hook.param, ClientKind::RtmpPlay);
    let client = registered.client();
    let result = client
        .until_kicked(pin!(player::run(
            conn, session, consumer, shared, client, limits,
        )))
        .await;
    tracing::info!(cid = id, "stop playing {key}");
    crate::hooks::on_stop(shared, &hook);
    result
}
