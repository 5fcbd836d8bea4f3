//! SRS's `/api/v1/clusters`: whether this server has a stream published, and where a
//! coworker should send its players for it (the JSON in [`crate::coworkers`]). SRS's
//! coworkers ask with POST, scripts with GET: both are answered. It reads the hub and the
//! config and changes nothing.

use super::parser::Request;
use super::reply::ApiReply;
use crate::coworkers::{answer, ClusterQuery, Listening, Origin};
use crate::state::Shared;

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
        body: answer(&query, origin.as_ref()).into_bytes(),
    }
}
