//! SRS's HTTP hooks (`vhost { http_hooks { ... } }`): before a client connects, publishes or
//! plays, the server POSTs what it asks to each configured URL and lets it in only if every
//! one allows; when it leaves, it tells them. Every way in calls here with one [`Request`]:
//! RTMP (`server/`), HTTP-FLV and WHIP/WHEP (`http/`), which sit above it; forwards are not
//! hooked, as in SRS.
//!
//! - [`body`]: SRS's JSON bodies and request fields, pure.
//! - [`verdict`]: SRS's rule for an answer, pure; fuzzed.
//! - `call`: the driver: the config in force, [`crate::httpc`] on the client's own task
//!   (a slow hook delays only the client that waits for it), the logs.
//!
//! It owns no client's socket and answers no client: the callers turn a denial into their
//! protocol's refusal (an RTMP onStatus error, an HTTP 403) and log it once.

#![forbid(unsafe_code)]

pub mod body;
mod call;
pub mod verdict;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use body::{is_http_url, Action, Details, HlsSegment, Request, Traffic};
pub use call::{HookError, TIMEOUT};

use crate::hub::StreamKey;
use crate::rtc::to_rtmp::sink::Offerer;
use crate::rtmp::session::ServerSession;
use crate::state::Shared;
use crate::stats::clients::Client;

/// A WebRTC session's request for `stream` of `app` of `vhost`: session `session`, offered
/// by `offerer`. The offer's hook asks with it, and the session's end tells it again.
#[must_use]
pub fn rtc(session: u64, offerer: &Offerer, vhost: &str, app: &str, stream: &str) -> Request {
    Request {
        client_id: session,
        ip: offerer.ip.clone(),
        vhost: vhost.to_owned(),
        app: app.to_owned(),
        stream: stream.to_owned(),
        param: offerer.param.clone(),
        tc_url: offerer.tc_url.clone(),
        page_url: String::new(),
    }
}

/// An RTMP client's request for `stream` of `vhost`, from its connect and its publish or
/// play (the stream's query is SRS's `param`); `stream` is "" at connect.
#[must_use]
pub fn rtmp(
    client_id: u64,
    peer: SocketAddr,
    session: &ServerSession,
    vhost: &str,
    stream: &str,
    tc_url: &str,
) -> Request {
    let query = if stream.is_empty() {
        ""
    } else {
        session.stream_query()
    };
    Request {
        client_id,
        ip: peer.ip().to_string(),
        vhost: vhost.to_owned(),
        app: session.app().to_owned(),
        stream: stream.to_owned(),
        param: body::param(query, tc_url),
        tc_url: tc_url.to_owned(),
        page_url: session.page_url().to_owned(),
    }
}

/// `on_connect`: whether the client may go on.
pub async fn on_connect(shared: &Shared, req: &Request) -> Result<(), HookError> {
    call::decide(shared, Action::Connect, req).await
}

/// `on_publish`: whether the client may publish; the publish waits for it.
pub async fn on_publish(shared: &Shared, req: &Request) -> Result<(), HookError> {
    call::decide(shared, Action::Publish, req).await
}

/// `on_play`: whether the client may play.
pub async fn on_play(shared: &Shared, req: &Request) -> Result<(), HookError> {
    call::decide(shared, Action::Play, req).await
}

/// `on_unpublish`, not waited for.
pub fn on_unpublish(shared: &Shared, req: &Request) {
    call::notify(shared, Action::Unpublish, req, &Details::None);
}

/// `on_stop`, not waited for.
pub fn on_stop(shared: &Shared, req: &Request) {
    call::notify(shared, Action::Stop, req, &Details::None);
}

/// `on_close` with the connection's byte counts, not waited for.
pub fn on_close(shared: &Shared, req: &Request, traffic: Traffic) {
    call::notify(shared, Action::Close, req, &Details::Traffic(traffic));
}

/// Whether `vhost` calls hooks on `action`: a caller skips making what only they read.
#[must_use]
pub fn wanted(shared: &Shared, vhost: &str, action: Action) -> bool {
    let config = shared.config();
    call::urls(&config.vhost(vhost).http_hooks, action).is_some_and(|u| !u.is_empty())
}

/// The request of `key`'s publisher `id` as its `on_publish` was asked (the API's client
/// list keeps it), for the hooks of what the publish makes: SRS sends the publisher's
/// request with each file. A producer that is no client (an edge's pull) sends the
/// stream's names alone.
#[must_use]
pub fn publisher(shared: &Shared, key: &StreamKey, id: u64) -> Request {
    let client = shared.clients.get(id).filter(|c| c.key == *key);
    Request {
        client_id: id,
        ip: client.as_ref().map_or(String::new(), |c| c.ip.to_string()),
        vhost: key.vhost.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
        param: client.as_ref().map_or(String::new(), |c| c.param.clone()),
        tc_url: client.map_or(String::new(), |c| c.tc_url.clone()),
        page_url: String::new(),
    }
}

/// `on_dvr` for the DVR file `file` (as `dvr_path` named it), closed; not waited for.
pub fn on_dvr(shared: &Shared, req: &Request, file: &str) {
    call::notify(shared, Action::Dvr, req, &Details::Dvr(file.to_owned()));
}

/// `on_hls` for `segment`, written under `hls_path`; not waited for.
pub fn on_hls(shared: &Shared, req: &Request, segment: HlsSegment) {
    call::notify(shared, Action::Hls, req, &Details::Hls(segment));
}

/// `on_hls_notify` for the segment at `ts_url` (its playlist line), written under
/// `hls_path`: a GET of each URL, `nb` bytes of each answer read; not waited for.
pub fn on_hls_notify(shared: &Shared, req: &Request, ts_url: &str, nb: usize) {
    call::notify_get(shared, req, ts_url, nb);
}

/// Sends `on_close` when dropped: an RTMP connection whose connect was allowed has ended.
/// Its byte counts are those of the publish or play it [`Closing::counts`], as the API
/// shows them (0 when it did neither).
#[derive(Debug)]
pub struct Closing<'a> {
    shared: &'a Shared,
    req: Request,
    client: RefCell<Option<Arc<Client>>>,
}

impl<'a> Closing<'a> {
    /// The `on_close` of the client `req` connected as.
    #[must_use]
    pub fn new(shared: &'a Shared, req: Request) -> Self {
        Self {
            shared,
            req,
            client: RefCell::new(None),
        }
    }

    /// Reports `client`'s byte counts at the close.
    pub fn counts(&self, client: &Arc<Client>) {
        *self.client.borrow_mut() = Some(client.clone());
    }
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        let traffic = self
            .client
            .borrow()
            .as_ref()
            .map_or(Traffic::default(), |c| Traffic {
                sent: c.send_bytes.load(Ordering::Relaxed),
                received: c.recv_bytes.load(Ordering::Relaxed),
            });
        on_close(self.shared, &self.req, traffic);
    }
}
