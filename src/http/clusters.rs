//! SRS's origin cluster over HTTP: `/api/v1/clusters`, whether this server has a stream
//! published and where a coworker should send its players for it (the JSON in
//! [`crate::coworkers`]; SRS's coworkers ask with POST, scripts with GET: both are
//! answered), and the HTTP-FLV player's side of the search ([`crate::server::origin_cluster`]):
//! a 302 to the coworker that has the stream. It reads the hub and the config and changes
//! nothing.

use super::parser::Request;
use super::reply::{error, ApiReply};
use crate::coworkers::{answer, http_redirect, Asked, ClusterQuery, Listening, Origin};
use crate::hub::StreamKey;
use crate::server::origin_cluster::{self, ClusterError, Lookup};
use crate::state::Shared;
use bytes::Bytes;

/// Answers one clusters query: always HTTP 200 and code 0, with a null `origin` when the
/// stream is not published here, as SRS answers.
pub(super) fn handle(req: &Request, shared: &Shared) -> ApiReply {
    let query = ClusterQuery::parse(&req.query);
    let (key, _) = shared.stream(&query.vhost, &query.app, &query.stream);
    let live = shared
        .hub
        .get(&key)
        .is_some_and(|s| s.publisher().is_some());
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
