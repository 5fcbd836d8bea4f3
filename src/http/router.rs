//! Which handler answers a request: the API's paths (on `http_api` listeners), HTTP-FLV mounts
//! (on `http_server` listeners), SRS's exporter metrics (on the `exporter` listener), or 404.
//! It decides and hands over; it writes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use super::parser::Request;
use super::reply::{error, preflight, ApiReply};
use super::{access, api, clusters, flv, hls, metrics, rtc};
use crate::config::Config;
use crate::state::Shared;

/// What a listener serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// The API (`http_api`).
    pub api: bool,
    /// HTTP-FLV streams (`http_server`).
    pub streams: bool,
    /// SRS's exporter metrics at `/metrics` (`exporter`).
    pub exporter: bool,
}

/// The HTTP listeners `config` asks for; `http_api`, `http_server` and `exporter` on one
/// address share one listener, as SRS shares one for the first two.
pub fn listeners(config: &Config) -> Vec<(SocketAddr, Roles)> {
    let mut out = Vec::new();
    if config.http_api.enabled {
        roles_at(&mut out, config.http_api.listen).api = true;
    }
    if config.http_server.enabled {
        roles_at(&mut out, config.http_server.listen).streams = true;
    }
    if config.exporter.enabled {
        roles_at(&mut out, config.exporter.listen).exporter = true;
    }
    out
}

/// The roles of the listener on `addr` in `out`, added with none yet if it is new.
fn roles_at(out: &mut Vec<(SocketAddr, Roles)>, addr: SocketAddr) -> &mut Roles {
    let i = match out.iter().position(|(a, _)| *a == addr) {
        Some(i) => i,
        None => {
            out.push((addr, Roles::default()));
            out.len() - 1
        }
    };
    &mut out[i].1
}

/// What the router decided.
pub(super) enum Routed {
    /// Answer and go on.
    Reply(ApiReply),
    /// Turn the connection into an HTTP-FLV player.
    Flv(flv::Play),
}

/// Routes `req` from connection `id` of `peer` for a listener with `roles`.
pub(super) async fn route(
    req: &Request,
    roles: Roles,
    shared: &Arc<Shared>,
    id: u64,
    peer: SocketAddr,
) -> Routed {
    let path = req.path.as_str();
    if roles.api {
        if req.method == "OPTIONS" {
            return Routed::Reply(preflight());
        }
        let config = shared.config();
        let offer = rtc::offer(req);
        let refused = access::api_auth(req, roles.exporter, &config, id).or_else(|| {
            let offer = offer.as_ref()?;
            access::rtc_offer(offer, &config, id, peer)
        });
        if let Some(refused) = refused {
            return Routed::Reply(refused);
        }
        if path == "/"
            || path == "/metrics"
            || path.starts_with("/api/")
            || path == "/api"
            || path.starts_with("/rtc/")
        {
            let mut offered = None;
            if let Some(offer) = &offer {
                // Before the hooks: the coworker that serves the offer asks its own, and a
                // play asked of this server's would never see its stop.
                if rtc::is_whep(offer) {
                    if let Some(sent) = clusters::redirect_whep(req, offer, shared, id).await {
                        return Routed::Reply(sent);
                    }
                }
                let offerer = rtc::offerer(req, offer, peer);
                match rtc::hooked(req, offer, &offerer, shared, id).await {
                    Ok(end) => {
                        offered = Some(crate::rtc::Offered {
                            session: offer.session,
                            offerer,
                            end,
                        });
                    }
                    Err(denied) => return Routed::Reply(denied),
                }
            }
            return Routed::Reply(api::handle(req, shared, offered).await);
        }
    }
    // The API's `/metrics` above carries SRS's metrics too; this listener has them alone.
    if roles.exporter && path == "/metrics" {
        if req.method != "GET" && req.method != "HEAD" {
            return Routed::Reply(error(405, "/metrics takes GET"));
        }
        return Routed::Reply(metrics::exporter(shared));
    }
    if roles.streams && hls::is_hls(path) {
        // Only a read starts an edge's pull: any other method gets hls::handle's 405 at once.
        if req.method == "GET" || req.method == "HEAD" {
            crate::server::edge::hls_request(shared, path, &req.query).await;
        }
        return Routed::Reply(hls::handle(req, shared).await);
    }
    if roles.streams && path.ends_with(".flv") {
        if req.method != "GET" && req.method != "HEAD" {
            return Routed::Reply(error(405, "HTTP-FLV takes GET"));
        }
        return match flv::find(req, shared) {
            Ok(play) => match access::flv_play(&play, &shared.config(), id, peer) {
                Some(refused) => Routed::Reply(refused),
                None => Routed::Flv(play),
            },
            Err(Some(key)) => Routed::Reply(clusters::redirect_flv(req, shared, &key, id).await),
            Err(None) => Routed::Reply(error(404, "no such stream")),
        };
    }
    Routed::Reply(error(404, "not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_gets_a_listener_of_its_own_or_shares_the_apis() {
        let mut config = Config::default();
        config.http_api.enabled = true;
        assert_eq!(listeners(&config).len(), 1);
        config.exporter.enabled = true;
        let roles = |r: Roles| (r.api, r.streams, r.exporter);
        let got: Vec<_> = listeners(&config)
            .into_iter()
            .map(|(a, r)| (a.port(), roles(r)))
            .collect();
        assert_eq!(
            got,
            [(1985, (true, false, false)), (9972, (false, false, true))]
        );
        config.exporter.listen = config.http_api.listen;
        let got: Vec<_> = listeners(&config)
            .into_iter()
            .map(|(a, r)| (a.port(), roles(r)))
            .collect();
        assert_eq!(got, [(1985, (true, false, true))]);
    }
}
