//! One HTTP connection: reads requests through the sans-IO parser, routes each, writes the
//! answers and keeps the connection alive between requests, with an idle and a per-request
//! deadline. An HTTP-FLV request turns the connection into a player until either side closes
//! it. Errors are answered with a JSON body and a close, and logged here, once. A plain
//! connection sends a reply that has its body in a sealed memfd (HLS segments and parts) with
//! `sendfile`; HTTPS encrypts its bytes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::BufResult;
use compio::net::TcpStream;
use rustls::ServerConfig;

use super::error::HttpConnError;
use super::flv;
use super::parser::{Limits, RequestParser};
use super::reply::{error, head, ApiReply};
use super::router::{route, Roles, Routed};
use super::tls::{Stream, TlsStream};
use crate::runtime::set_nonblocking;
use crate::state::Shared;

/// How long a kept-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may take to arrive once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What one read takes at most. A kept-alive connection holds it in its pending read between
/// requests (an HLS player, for the whole of its play), where a GET is a few hundred bytes:
/// at 16 KiB, 5000 players held 80 MB for it. A larger request (a WHIP offer) takes a few
/// reads.
const READ_BUFFER: usize = 4 * 1024;

/// Serves one accepted HTTP connection until it ends, and logs how it ended; with `tls`, the
/// connection is HTTPS and starts with the TLS handshake.
pub async fn serve(
    id: u64,
    peer: SocketAddr,
    stream: TcpStream,
    roles: Roles,
    tls: Option<Arc<ServerConfig>>,
    shared: &Arc<Shared>,
) {
    let conn = Conn {
        id,
        peer,
        roles,
        shared,
    };
    let served = match tls {
        None => match set_nonblocking(&stream) {
            Ok(()) => conn.serve(&Stream::Plain(&stream)).await,
            Err(e) => Err(e.into()),
        },
        Some(config) => match TlsStream::accept(&stream, config).await {
            Ok(tls) => conn.serve(&Stream::Tls(&tls)).await,
            Err(e) => Err(e),
        },
    };
    match served {
        Ok(()) => {}
        Err(HttpConnError::Io(e)) if is_disconnect(&e) => {
            tracing::debug!(cid = id, "http peer disconnected: {e}")
        }
        Err(e) => tracing::info!(cid = id, "http closing: {e}"),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// The peer closed or reset the connection: how a player usually leaves, not an error.
fn peer_left(e: &HttpConnError) -> bool {
    matches!(e, HttpConnError::Io(io) if is_disconnect(io))
}

/// One HTTP connection.
struct Conn<'a> {
    id: u64,
    peer: SocketAddr,
    roles: Roles,
    shared: &'a Arc<Shared>,
}

impl Conn<'_> {
    async fn serve(&self, stream: &Stream<'_>) -> Result<(), HttpConnError> {
        // The request loop's buffers are gone by the time an HTTP-FLV play starts: a player
        // holds its connection for hours, and thousands of them must not each keep 16 KiB.
        match self.serve_requests(stream).await? {
            Some((play, head)) => {
                let played = flv::run(self.id, self.peer, self.shared, stream, play, head).await;
                // A player is a client in SRS's statistics (srs_clients_errs_total); an API
                // request is not.
                if played.as_ref().is_err_and(|e| !peer_left(e)) {
                    let errors = &self.shared.stats.client_errors;
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                played
            }
            None => Ok(()),
        }
    }

    /// Answers requests until the connection ends, or returns the HTTP-FLV play it asked for.
    async fn serve_requests(
        &self,
        stream: &Stream<'_>,
    ) -> Result<Option<(flv::Play, bool)>, HttpConnError> {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = Vec::with_capacity(READ_BUFFER);
        let mut request_started = None;
        loop {
            loop {
                let request = match parser.next_request() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        let reply = error(e.status(), &e.to_string());
                        write_reply(stream, &reply, false, false).await?;
                        return Err(e.into());
                    }
                };
                request_started = None;
                tracing::debug!(cid = self.id, "{} {}", request.method, request.path);
                let keep_alive = request.keep_alive();
                let head = request.method == "HEAD";
                match route(&request, self.roles, self.shared, self.id, self.peer).await {
                    Routed::Reply(reply) => {
                        write_reply(stream, &reply, keep_alive, head).await?;
                        if !keep_alive {
                            return Ok(None);
                        }
                    }
                    Routed::Flv(play) => return Ok(Some((play, head))),
                }
            }
            // A request's deadline runs from its first byte, so that a client trickling a
            // byte at a time cannot hold the connection past it.
            let (deadline, what) = if parser.buffered() == 0 {
                (Instant::now() + IDLE_TIMEOUT, "waiting for a request")
            } else {
                let started = *request_started.get_or_insert_with(Instant::now);
                (started + REQUEST_TIMEOUT, "reading a request")
            };
            buf.clear();
            let BufResult(r, b) = compio::time::timeout_at(deadline, stream.read(buf))
                .await
                .map_err(|_| HttpConnError::Timeout(what))?;
            buf = b;
            let n = r?;
            if n == 0 {
                return Ok(None);
            }
            parser.push(&buf[..n]);
        }
    }
}

async fn write_reply(
    stream: &Stream<'_>,
    reply: &ApiReply,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let head = head(
        reply.status,
        reply.content_type,
        Some(reply.body.len()),
        keep_alive,
        &reply.headers,
    );
    if let (Stream::Plain(tcp), Some(sealed), false) = (stream, &reply.sealed, head_only) {
        return sealed.send(tcp, head.as_bytes()).await;
    }
    let mut iov = vec![Bytes::from(head)];
    // The body goes as the shared bytes it is, not copied behind the head.
    if !head_only && !reply.body.is_empty() {
        iov.push(reply.body.clone());
    }
    stream.write_all_vectored(iov).await
}
