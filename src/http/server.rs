//! The HTTP I/O driver: one accept loop per listener and worker, and the connection loop that
//! reads requests through the sans-IO parser, routes them, and writes the answers, keeping
//! the connection alive between requests. An HTTP-FLV request turns its connection into a
//! player until either side closes it. Errors are answered with a JSON body and a close, and
//! logged here, once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use serde_json::json;

use super::parser::{HttpError, Limits, Request, RequestParser};
use super::{api, flv};
use crate::config::Config;
use crate::profile::ApiReply;
use crate::server::{Shared, WorkerInfo};
use crate::stats::clients::Kicked;

/// How long a kept-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may take to arrive once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 16 * 1024;

/// What a listener serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// The API (`http_api`).
    pub api: bool,
    /// HTTP-FLV streams (`http_server`).
    pub streams: bool,
}

/// The HTTP listeners `config` asks for; `http_api` and `http_server` on one address share
/// one listener, as in SRS.
pub fn listeners(config: &Config) -> Vec<(SocketAddr, Roles)> {
    let mut out: Vec<(SocketAddr, Roles)> = Vec::new();
    for (l, api) in [(&config.http_api, true), (&config.http_server, false)] {
        if !l.enabled {
            continue;
        }
        let i = match out.iter().position(|(a, _)| *a == l.listen) {
            Some(i) => i,
            None => {
                out.push((l.listen, Roles::default()));
                out.len() - 1
            }
        };
        if api {
            out[i].1.api = true;
        } else {
            out[i].1.streams = true;
        }
    }
    out
}

/// Opens this worker's listeners and spawns their accept loops.
pub fn spawn_listeners(
    shared: &Arc<Shared>,
    worker: &Arc<WorkerInfo>,
) -> Vec<compio::runtime::JoinHandle<()>> {
    let mut loops = Vec::new();
    for (addr, roles) in listeners(&shared.config()) {
        let listener = match crate::runtime::reuseport_listener(addr)
            .map_err(|e| e.to_string())
            .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = worker.index, "http: {e}");
                continue;
            }
        };
        if worker.index == 0 {
            tracing::info!(
                "HTTP on {addr}: {}",
                match (roles.api, roles.streams) {
                    (true, true) => "API and HTTP-FLV",
                    (true, false) => "API",
                    _ => "HTTP-FLV",
                }
            );
        }
        loops.push(compio::runtime::spawn(accept_loop(
            listener,
            roles,
            shared.clone(),
            worker.clone(),
        )));
    }
    loops
}

async fn accept_loop(
    listener: TcpListener,
    roles: Roles,
    shared: Arc<Shared>,
    worker: Arc<WorkerInfo>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("http accept: {e}");
                compio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.next_conn_id();
        let Some(_) = shared.open_connection(&worker) else {
            let max = shared.config().max_connections;
            tracing::warn!(cid = id, %peer, "http refused: max_connections {max} reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, worker) = (shared.clone(), worker.clone());
        compio::runtime::spawn(async move {
            tracing::debug!(cid = id, %peer, "http accepted");
            let conn = Conn {
                id,
                peer,
                roles,
                shared: &shared,
            };
            match conn.serve(&stream).await {
                Ok(()) => {}
                Err(HttpConnError::Io(e)) if is_disconnect(&e) => {
                    tracing::debug!(cid = id, "http peer disconnected: {e}")
                }
                Err(e) => tracing::info!(cid = id, "http closing: {e}"),
            }
            shared.close_connection(&worker);
        })
        .detach();
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// Why an HTTP connection ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpConnError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The request was refused (and answered).
    #[error("{0}")]
    Request(#[from] HttpError),
    /// The peer was silent too long.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The API kicked the client.
    #[error("kicked by the HTTP API")]
    Kicked,
    /// An HTTP-FLV player's socket took no data for queue_length.
    #[error("player stopped reading for {0:?} (queue_length): cut")]
    Stalled(std::time::Duration),
}

impl From<crate::egress::BatchError> for HttpConnError {
    fn from(e: crate::egress::BatchError) -> Self {
        match e {
            crate::egress::BatchError::Io(e) => Self::Io(e),
            crate::egress::BatchError::Stalled(d) => Self::Stalled(d),
        }
    }
}

impl From<Kicked> for HttpConnError {
    fn from(_: Kicked) -> Self {
        Self::Kicked
    }
}

/// What the router decided.
pub(super) enum Routed {
    /// Answer and go on.
    Reply(ApiReply),
    /// Turn the connection into an HTTP-FLV player.
    Flv(flv::Play),
}

/// One HTTP connection.
pub(super) struct Conn<'a> {
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    roles: Roles,
    pub(super) shared: &'a Arc<Shared>,
}

impl Conn<'_> {
    async fn serve(&self, stream: &TcpStream) -> Result<(), HttpConnError> {
        // The request loop's buffers are gone by the time an HTTP-FLV play starts: a player
        // holds its connection for hours, and thousands of them must not each keep 16 KiB.
        match self.serve_requests(stream).await? {
            Some((play, head)) => flv::run(self, stream, play, head).await,
            None => Ok(()),
        }
    }

    /// Answers requests until the connection ends, or returns the HTTP-FLV play it asked for.
    async fn serve_requests(
        &self,
        stream: &TcpStream,
    ) -> Result<Option<(flv::Play, bool)>, HttpConnError> {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = Vec::with_capacity(READ_BUFFER);
        let mut s = stream;
        let mut request_started = None;
        loop {
            loop {
                let request = match parser.next_request() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        let reply = api::error(e.status(), &e.to_string());
                        write_reply(stream, &reply, false, false).await?;
                        return Err(e.into());
                    }
                };
                request_started = None;
                tracing::debug!(cid = self.id, "{} {}", request.method, request.path);
                let keep_alive = request.keep_alive();
                let head = request.method == "HEAD";
                match self.route(&request).await {
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
            let BufResult(r, b) = compio::time::timeout_at(deadline, s.read(buf))
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

    async fn route(&self, req: &Request) -> Routed {
        let path = req.path.as_str();
        if self.roles.api {
            if req.method == "OPTIONS" {
                return Routed::Reply(api::preflight());
            }
            if path == "/"
                || path == "/metrics"
                || path.starts_with("/api/")
                || path == "/api"
                || path.starts_with("/rtc/")
            {
                return Routed::Reply(api::handle(req, self.shared).await);
            }
        }
        if self.roles.streams && path.ends_with(".flv") {
            if req.method != "GET" && req.method != "HEAD" {
                return Routed::Reply(api::error(405, "HTTP-FLV takes GET"));
            }
            return match flv::find(req, self.shared) {
                Some(play) => Routed::Flv(play),
                None => Routed::Reply(api::error(404, "no such stream")),
            };
        }
        Routed::Reply(api::error(404, "not found"))
    }
}

/// The status line and headers of a response, CORS included.
pub(super) fn head(
    status: u16,
    content_type: &str,
    length: Option<usize>,
    keep_alive: bool,
    extra: &[(&'static str, String)],
) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nServer: ringcast/{}\r\nContent-Type: {content_type}\r\n\
         Access-Control-Allow-Origin: *\r\nConnection: {}\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION"),
        if keep_alive { "keep-alive" } else { "close" },
    );
    if let Some(len) = length {
        h.push_str(&format!("Content-Length: {len}\r\n"));
    }
    for (name, value) in extra {
        // Header values come from our own modules; a stray line break must still not split
        // the response.
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h.push_str("\r\n");
    h
}

async fn write_reply(
    stream: &TcpStream,
    reply: &ApiReply,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = head(
        reply.status,
        reply.content_type,
        Some(reply.body.len()),
        keep_alive,
        &reply.headers,
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    let mut s = stream;
    let BufResult(r, _) = s.write_all(Bytes::from(out)).await;
    r
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// SRS's envelope for errors and simple answers: `{"code": N, "server": ..., ...}`.
pub(super) fn envelope(shared: &Shared, code: i64) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("code".into(), json!(code));
    m.insert("server".into(), json!(shared.server_id));
    m.insert("service".into(), json!(shared.server_id));
    m.insert("pid".into(), json!(std::process::id().to_string()));
    m
}
