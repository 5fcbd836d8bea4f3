//! HTTP-FLV players: the mount that maps a request path to a stream, and the player loop. A
//! player is a [`Consumer`] cursor over the same shared frames as RTMP players; each frame
//! goes out as the FLV tag form that [`Frame::flv_tag`] builds once for every player (its
//! payload is the very bytes the publisher sent). In the steady state the player sits in its
//! stream's FLV cohort on this core ([`crate::egress::cohort`]), which writes each flush's
//! batch to every player in step; on its own it writes its start and catches up, everything
//! between the cursor and the head in one vectored write. An HTTPS player cannot share the
//! cohort's bytes once they are encrypted: it takes the same batches and seals them itself,
//! which is chosen once at its start. The body is close-delimited: it ends when either side
//! closes.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use compio::buf::BufResult;
use compio::net::TcpStream;
use futures_util::future::{select, Either};

use super::error::HttpConnError;
use super::parser::Request;
use super::reply::{error, head};
use super::tls::{Stream, TlsStream};
use crate::egress::cohort;
use crate::egress::{write_batch, MAX_BATCH};
use crate::hub::Consumer;
use crate::hub::{StreamKey, StreamSettings};
use crate::media::wire::Form;
use crate::state::Shared;
use crate::stats::clients::{Client, ClientKind};

/// Bytes a player's reads take at most: it has nothing more to say.
const DRAIN_BUFFER: usize = 512;
/// The FLV file header (audio and video) and PreviousTagSize0.
const FLV_HEADER: &[u8] = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

/// A stream an HTTP-FLV request asked for.
pub(super) struct Play {
    key: StreamKey,
    settings: StreamSettings,
    url: String,
    /// What the HTTP hooks are told, but for the client's id and address (boxed: a router's
    /// decision holds a Play, and most decisions are replies).
    hook: Box<crate::hooks::Request>,
    query: String,
}

impl Play {
    /// The stream asked for.
    pub(super) fn key(&self) -> &StreamKey {
        &self.key
    }
}

/// The published stream `req` names through a vhost's `http_remux` mount, if any. The vhost
/// comes from `?vhost=`, else the Host header, else the default vhost. Else the first stream
/// a mount named, not published here, for an origin cluster to look for, if any.
pub(super) fn find(req: &Request, shared: &Shared) -> Result<Play, Option<StreamKey>> {
    let config = shared.config();
    let query_vhost = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("vhost="))
        .map(str::to_owned);
    let host = req
        .header("host")
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned());
    let mut named = None;
    let names = [
        query_vhost,
        host,
        Some(crate::config::DEFAULT_VHOST.to_owned()),
    ];
    for name in names.into_iter().flatten() {
        let vhost = config.vhost(&name);
        let Some(mount) = vhost.http_remux.as_deref().filter(|_| vhost.enabled) else {
            continue;
        };
        let Some((app, stream)) = match_mount(mount, &req.path) else {
            continue;
        };
        let (key, settings) = shared.stream(&vhost.name, &app, &stream);
        let live = shared
            .hub
            .get(&key)
            .is_some_and(|s| s.publisher().is_some());
        // An edge serves what its origin has: the pull starts when the player comes.
        if live || vhost.cluster.is_edge() {
            let host = req.header("host").unwrap_or("");
            let hook = Box::new(crate::hooks::Request {
                vhost: key.vhost.clone(),
                app: key.app.clone(),
                stream: key.stream.clone(),
                param: crate::hooks::body::param(&req.query, ""),
                tc_url: format!("http://{host}/{}", key.app),
                ..Default::default()
            });
            return Ok(Play {
                key,
                settings,
                // The URL as the client asked for it, the API's tcUrl.
                url: format!("http://{host}{}", req.path),
                query: req.query.clone(),
                hook,
            });
        }
        named.get_or_insert(key);
    }
    Err(named)
}

/// `(app, stream)` when `path` fits `template` (`[vhost]/[app]/[stream].flv`; the vhost is not
/// part of the path: it is chosen by the Host header or `?vhost=`).
fn match_mount(template: &str, path: &str) -> Option<(String, String)> {
    let t = template.trim_start_matches('/');
    let t = t.strip_prefix("[vhost]/").unwrap_or(t);
    let p = path.strip_prefix('/')?;
    let (ts, ps): (Vec<_>, Vec<_>) = (t.split('/').collect(), p.split('/').collect());
    if ts.len() != ps.len() {
        return None;
    }
    let (mut app, mut stream) = (None, None);
    for (t, p) in ts.into_iter().zip(ps) {
        let mut matched = false;
        for (placeholder, slot) in [("[app]", &mut app), ("[stream]", &mut stream)] {
            if let Some((prefix, suffix)) = t.split_once(placeholder) {
                let v = p.strip_prefix(prefix)?.strip_suffix(suffix)?;
                if v.is_empty() {
                    return None;
                }
                *slot = Some(v.to_owned());
                matched = true;
                break;
            }
        }
        if !matched && t != p {
            return None;
        }
    }
    Some((app?, stream?))
}

/// Plays `play` on `stream` until the client leaves, is kicked, or the socket fails.
pub(super) async fn run(
    id: u64,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    stream: &Stream<'_>,
    play: Play,
    head_only: bool,
) -> Result<(), HttpConnError> {
    let response = head(
        200,
        "video/x-flv",
        None,
        false,
        &[("Cache-Control", "no-cache".into())],
    );
    if head_only {
        return stream
            .write_all(response.into_bytes().into())
            .await
            .map_err(Into::into);
    }
    let hook = crate::hooks::Request {
        client_id: id,
        ip: peer.ip().to_string(),
        ..*play.hook
    };
    if let Err(e) = crate::hooks::on_play(shared, &hook).await {
        let reply = error(403, &e.public());
        let mut out =
            head(403, reply.content_type, Some(reply.body.len()), false, &[]).into_bytes();
        out.extend_from_slice(&reply.body);
        stream.write_all(out.into()).await?;
        return Err(e.into());
    }
    crate::server::edge::want(shared, &play.key, &play.settings, &play.query);
    let consumer = Consumer::subscribe(&shared.hub, &play.key, &play.settings);
    let registered = shared.clients.register(
        id,
        peer.ip(),
        play.key.clone(),
        // `find` saw the request, not the socket: an HTTPS player's URL says so here.
        match stream {
            Stream::Plain(_) => play.url,
            Stream::Tls(_) => play.url.replacen("http://", "https://", 1),
        },
        hook.param.clone(),
        ClientKind::FlvPlay,
    );
    let client = registered.client();
    tracing::info!(cid = id, "flv play {}", play.key);
    let start = vec![Bytes::from(response), Bytes::from_static(FLV_HEADER)];
    let reader = pin!(drain(stream));
    let stall = play.settings.queue_length;
    // The one check a player makes: a TLS player cannot share the cohort's ciphertext.
    let writer = pin!(async {
        match stream {
            Stream::Plain(tcp) => write_loop(tcp, consumer, (shared, client), stall, start).await,
            Stream::Tls(tls) => write_loop_tls(tls, consumer, (shared, client), stall, start).await,
        }
    });
    let result = client
        .until_kicked(pin!(async {
            match select(reader, writer).await {
                Either::Left((r, _)) | Either::Right((r, _)) => r,
            }
        }))
        .await;
    tracing::info!(cid = id, "stop flv play {}", play.key);
    crate::hooks::on_stop(shared, &hook);
    result
}

/// Reads until the client closes; a player has nothing more to say, so what it sends is
/// dropped.
async fn drain(stream: &Stream<'_>) -> Result<(), HttpConnError> {
    let mut buf = Vec::with_capacity(DRAIN_BUFFER);
    loop {
        buf.clear();
        let BufResult(r, b) = stream.read(buf).await;
        buf = b;
        if r? == 0 {
            return Ok(());
        }
    }
}

async fn write_loop(
    stream: &TcpStream,
    mut consumer: Consumer,
    (shared, client): (&Arc<Shared>, &Arc<Client>),
    stall: Duration,
    mut iov: Vec<Bytes>,
) -> Result<(), HttpConnError> {
    loop {
        if iov.is_empty() {
            let fd = stream.as_raw_fd();
            if let Some(seat) = cohort::seat(&consumer, Form::Flv, fd, (client, shared), stall) {
                let back = seat.hold(|| false).await;
                consumer.set_position(back.at);
                iov = back.rest;
                back.result?;
            }
        }
        consumer.next_batch(MAX_BATCH, |f| f.flv_tag(&mut iov));
        if iov.is_empty() {
            // Data, or an unpublish: players keep waiting for the next publisher.
            consumer.flushed().await;
            continue;
        }
        iov = write_batch(stream, iov, shared.as_ref(), client, stall).await?;
    }
}

/// A TLS player's loop: the same consumer and batches as [`write_loop`], each sealed for
/// this player alone, so it never sits in a cohort.
async fn write_loop_tls(
    stream: &TlsStream<'_>,
    mut consumer: Consumer,
    (shared, client): (&Arc<Shared>, &Arc<Client>),
    stall: Duration,
    mut iov: Vec<Bytes>,
) -> Result<(), HttpConnError> {
    loop {
        consumer.next_batch(MAX_BATCH, |f| f.flv_tag(&mut iov));
        if iov.is_empty() {
            consumer.flushed().await;
            continue;
        }
        iov = stream
            .write_batch(iov, shared.as_ref(), client, stall)
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::match_mount;

    #[test]
    fn mounts() {
        let m = |t, p| match_mount(t, p);
        let hit = |a: &str, s: &str| Some((a.to_owned(), s.to_owned()));
        assert_eq!(
            m("[vhost]/[app]/[stream].flv", "/live/livestream.flv"),
            hit("live", "livestream")
        );
        assert_eq!(m("[app]/[stream].flv", "/live/a.b.flv"), hit("live", "a.b"));
        assert_eq!(
            m("/flv/[app]/s-[stream].flv", "/flv/x/s-y.flv"),
            hit("x", "y")
        );
        assert_eq!(m("[app]/[stream].flv", "/live/.flv"), None);
        assert_eq!(m("[app]/[stream].flv", "/a/b/c.flv"), None);
        assert_eq!(m("/flv/[app]/[stream].flv", "/hls/x/y.flv"), None);
        assert_eq!(m("[app]/[stream].flv", "live/s.flv"), None);
    }
}
