//! Which handler answers a request: the API's paths (on `http_api` listeners), HTTP-FLV mounts
//! (on `http_server` listeners), or 404. It decides and hands over; it writes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use super::parser::Request;
use super::reply::{error, preflight, ApiReply};
use super::{api, flv};
use crate::config::Config;
use crate::state::Shared;

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

/// What the router decided.
pub(super) enum Routed {
    /// Answer and go on.
    Reply(ApiReply),
    /// Turn the connection into an HTTP-FLV player.
    Flv(flv::Play),
}

/// Routes `req` for a listener with `roles`.
pub(super) async fn route(req: &Request, roles: Roles, shared: &Arc<Shared>) -> Routed {
    let path = req.path.as_str();
    if roles.api {
        if req.method == "OPTIONS" {
            return Routed::Reply(preflight());
        }
        if path == "/"
            || path == "/metrics"
            || path.starts_with("/api/")
            || path == "/api"
            || path.starts_with("/rtc/")
        {
            return Routed::Reply(api::handle(req, shared).await);
        }
    }
    if roles.streams && path.ends_with(".flv") {
        if req.method != "GET" && req.method != "HEAD" {
            return Routed::Reply(error(405, "HTTP-FLV takes GET"));
        }
        return match flv::find(req, shared) {
            Some(play) => Routed::Flv(play),
            None => Routed::Reply(error(404, "no such stream")),
        };
    }
    Routed::Reply(error(404, "not found"))
}
