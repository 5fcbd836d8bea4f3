//! SRS's origin cluster over HTTP: `/api/v1/clusters`, whether this server has a stream
//! published and where a coworker should send its players for it (the JSON in
//! [`crate::coworkers`]; SRS's coworkers ask with POST, scripts with GET: both are
//! answered), and the HTTP players' side of the search ([`crate::server::origin_cluster`]):
//! an HTTP-FLV player gets a 302 to the coworker that has the stream, a WHEP offer a 307 to
//! the coworker's API. It reads the hubs and the config and changes nothing.

use super::parser::Request;
use super::reply::{error, ApiReply};
use super::rtc::Offer;
use crate::config::DEFAULT_VHOST;
use crate::coworkers::{
    answer, api_of, api_redirect, http_redirect, Asked, ClusterQuery, Listening, Origin,
};
use crate::hub::StreamKey;
use crate::server::origin_cluster::{self, ClusterError, Lookup};
use crate::state::Shared;
use bytes::Bytes;

/// Answers one clusters query: always HTTP 200 and code 0, with a null `origin` when the
/// stream is not published here, as SRS answers.
pub(super) fn handle(req: &Request, shared: &Shared) -> ApiReply {
    let query = ClusterQuery::parse(&req.query);
    let (key, _) = shared.stream(&query.vhost, &query.app, &query.stream);
    // An RTMP publisher, or a WHIP one (whose players are WebRTC only).
    let live = shared
        .hub
        .get(&key)
        .is_some_and(|s| s.publisher().is_some())
        || shared.rtc.stream(&key).is_ok();
    let origin = live.then(|| {
        let host = req.header("host").unwrap_or("");
        let o = Origin::here(&Listening::of(&shared.config()), &key.vhost, &query, host);
        tracing::info!(
            "cluster: {key} is here, coworker {} is told ip={} port={} api={}",
            query.coworker,
            o.ip,
            o.port,
            o.api
        );
        o
    });
    ApiReply {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        body: answer(&query, origin.as_ref()).into_bytes().into(),
        sealed: None,
    }
}

/// An HTTP-FLV player of `key`, which is not published here, on connection `id`: sent with
/// a 302 to where a coworker has it (SRS's RTMP 302, in HTTP), else refused: 404 as before
/// when no coworker has it, 508 when the player has gone round the cluster.
pub(super) async fn redirect_flv(
    req: &Request,
    shared: &Shared,
    key: &StreamKey,
    id: u64,
) -> ApiReply {
    let asked = Asked {
        host: req.header("host").unwrap_or(""),
        vhost: &key.vhost,
        query: &req.query,
    };
    let own = Listening::of(&shared.config()).http.map_or(0, |a| a.port());
    let is_self = |o: &Origin| asked.is_here(&o.ip, o.http_port.unwrap_or(own), own);
    match origin_cluster::lookup(shared, key, &asked, is_self).await {
        Lookup::Serve => error(404, "no such stream"),
        Lookup::Redirect { origin, coworker } => {
            let location = http_redirect(&origin, own, &req.path, &asked);
            tracing::info!(
                cid = id,
                "redirect {key} to {location} (coworker {coworker})"
            );
            ApiReply {
                status: 302,
                content_type: "text/plain",
                headers: vec![("Location", location)],
                body: Bytes::new(),
                sealed: None,
            }
        }
        Lookup::Refuse(e) => {
            tracing::warn!(cid = id, "refused: {e}");
            let status = if matches!(e, ClusterError::Loop { .. }) {
                508
            } else {
                404
            };
            error(status, &e.to_string())
        }
    }
}

/// A WHEP offer (`offer`, from `req` on connection `id`) for a stream published neither here
/// over RTMP nor over WHIP: `None` to serve it here as ever (no origin cluster, or the
/// stream is here), else a 307 to the API of the coworker that has it, or the refusal (404
/// when no coworker has it, 508 when the offer has gone round the cluster). 307, not the
/// 302 an HTTP-FLV player gets: a client may turn a 302's POST into a GET without the body,
/// and a 307 keeps the method and the SDP offer, which the client posts again there. The
/// `Location` names the coworker's API, not its `http_server`, as that is where signalling is
/// served.
pub(super) async fn redirect_whep(
    req: &Request,
    offer: &Offer,
    shared: &Shared,
    id: u64,
) -> Option<ApiReply> {
    let vhost = offer.vhost.as_deref().unwrap_or(DEFAULT_VHOST);
    let (key, _) = shared.stream(vhost, &offer.app, &offer.stream);
    if shared.rtc.stream(&key).is_ok() {
        return None;
    }
    let asked = Asked {
        host: req.header("host").unwrap_or(""),
        vhost: &key.vhost,
        query: &req.query,
    };
    let own = Listening::of(&shared.config()).api.port();
    let is_self = |o: &Origin| {
        let (host, port) = api_of(o, own);
        asked.is_here(host, port, own)
    };
    let (status, location, body) = match origin_cluster::lookup(shared, &key, &asked, is_self).await
    {
        Lookup::Serve => return None,
        Lookup::Redirect { origin, coworker } => {
            let location = api_redirect(&origin, own, &req.path, &asked);
            tracing::info!(
                cid = id,
                "redirect WHEP {key} to {location} (coworker {coworker})"
            );
            (307, Some(location), Bytes::new())
        }
        Lookup::Refuse(e) => {
            tracing::warn!(cid = id, "WHEP refused: {e}");
            let status = if matches!(e, ClusterError::Loop { .. }) {
                508
            } else {
                404
            };
            (status, None, format!("{e}\n").into())
        }
    };
    Some(ApiReply {
        status,
        content_type: "text/plain",
        headers: location.map(|l| ("Location", l)).into_iter().collect(),
        body,
        sealed: None,
    })
}
