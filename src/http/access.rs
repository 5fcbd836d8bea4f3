//! Who may use the HTTP listeners: the API's Basic authentication (`http_api { auth }`) on the
//! paths SRS guards, and the vhosts' `security {}` rules for HTTP-FLV players and WHIP/WHEP
//! offers. Each check answers `None` (go on) or the reply that refuses, and logs the refusal
//! once with the connection's id. The decisions themselves are [`crate::access`]'s.
//!
//! Guarded by auth, as SRS's `SrsHttpAuthMux` guards them: every path holding `/api/` (the
//! JSON API, DELETE of a client, the profiles, the leak check, the heap); besides, as
//! ringcast's own, `/metrics` on the API listener (unless `public_metrics on;`, or the
//! listener is the exporter's too, which SRS leaves open) and the RTC counters and loss
//! simulation (`/rtc/v1/stats/`, `/rtc/v1/nack/`). Left open, as in SRS: the CORS preflight,
//! `/` and `/api`, and WebRTC signalling (WHIP, WHEP, `/rtc/v1/publish/`, `/rtc/v1/play/`),
//! which the `security` rules and the hooks govern.

use std::net::SocketAddr;

use serde_json::json;

use super::flv::Play;
use super::parser::Request;
use super::reply::{error, reply, ApiReply};
use super::rtc::Offer;
use crate::access::security::{self, Action, Denied};
use crate::config::{Config, DEFAULT_VHOST};
use crate::rtc::signal::Role;

/// The realm browsers show in their login prompt.
const REALM: &str = "ringcast";

/// The 401 for a guarded API path without the right credentials; `None` when auth is off,
/// the path is open, or the credentials match. `exporter` says whether this listener is also
/// the `exporter {}` one.
pub(super) fn api_auth(
    req: &Request,
    exporter: bool,
    config: &Config,
    id: u64,
) -> Option<ApiReply> {
    let auth = &config.api_auth;
    if !auth.enabled || !guarded(&req.path, exporter || auth.public_metrics) {
        return None;
    }
    let e = auth.credentials.verify(req.header("authorization")).err()?;
    tracing::info!(cid = id, "{} {}: 401, {e}", req.method, req.path);
    let mut refused = error(401, "authentication required");
    refused
        .headers
        .push(("WWW-Authenticate", format!("Basic realm=\"{REALM}\"")));
    Some(refused)
}

fn guarded(path: &str, metrics_open: bool) -> bool {
    path.contains("/api/")
        || (path == "/metrics" && !metrics_open)
        || path.starts_with("/rtc/v1/stats")
        || path.starts_with("/rtc/v1/nack")
}

/// The 403 for an HTTP-FLV player that its vhost's `security` refuses.
pub(super) fn flv_play(
    play: &Play,
    config: &Config,
    id: u64,
    peer: SocketAddr,
) -> Option<ApiReply> {
    let vhost = config.vhost(&play.key().vhost);
    let why = security::check(&vhost.security, Action::Play, peer.ip()).err()?;
    Some(refuse(
        &why,
        id,
        peer,
        &format!("HTTP-FLV play {}", play.key()),
    ))
}

/// The 403 for a WHIP/WHEP (or SRS JSON) offer that its vhost's `security` refuses; `None`
/// when the rules let it in.
pub(super) fn rtc_offer(
    offer: &Offer,
    config: &Config,
    id: u64,
    peer: SocketAddr,
) -> Option<ApiReply> {
    let Offer {
        role,
        vhost,
        app,
        stream,
        ..
    } = offer;
    let (action, what) = match role {
        Role::Publish => (Action::Publish, "WebRTC publish"),
        Role::Play => (Action::Play, "WebRTC play"),
    };
    let v = config.vhost(vhost.as_deref().unwrap_or(DEFAULT_VHOST));
    let why = security::check(&v.security, action, peer.ip()).err()?;
    Some(refuse(
        &why,
        id,
        peer,
        &format!("{what} {}/{app}/{stream}", v.name),
    ))
}

/// A `security` refusal, logged and answered with SRS's code for it.
fn refuse(why: &Denied, id: u64, peer: SocketAddr, what: &str) -> ApiReply {
    let ip = peer.ip();
    tracing::warn!(cid = id, "{what} from {ip}: 403, {why}");
    reply(
        403,
        &json!({"code": why.code(), "msg": format!("{ip}: {why}")}),
    )
}

/// The start-up warning for an API that anyone on the network may use: `http_api` on an
/// address other than loopback with auth off. It names both fixes.
pub fn exposure_warning(config: &Config) -> Option<String> {
    let api = &config.http_api;
    if !api.enabled || config.api_auth.enabled || api.listen.ip().is_loopback() {
        return None;
    }
    let port = api.listen.port();
    Some(format!(
        "http_api listens on {} without auth: anyone who reaches it can kick clients, start CPU \
         profiles and read the heap. Listen on loopback (`http_api {{ listen 127.0.0.1:{port}; }}`) \
         or turn auth on (`http_api {{ auth {{ enabled on; username NAME; password PASS; }} }}`)",
        api.listen
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_what_srs_guards_and_the_costly_extras() {
        for path in [
            "/api/v1/clients/12",
            "/api/v1/profile/cpu",
            "/api/v1/valgrind",
            "/api/v1/",
            "/api/v1/summaries",
            "/rtc/v1/nack/",
            "/rtc/v1/stats/",
            "/metrics",
        ] {
            assert!(guarded(path, false), "{path}");
        }
        for path in [
            "/",
            "/api",
            "/rtc/v1/whip/",
            "/rtc/v1/whep/",
            "/rtc/v1/publish/",
            "/rtc/v1/play/",
        ] {
            assert!(!guarded(path, false), "{path}");
        }
        assert!(!guarded("/metrics", true));
    }

    fn config(text: &str) -> Config {
        Config::parse(text, "t.conf").unwrap().0
    }

    #[test]
    fn warns_of_an_open_api_off_loopback_only() {
        let warning = exposure_warning(&config("http_api { enabled on; listen 1985; }")).unwrap();
        assert!(warning.contains("0.0.0.0:1985 without auth"), "{warning}");
        assert!(warning.contains("listen 127.0.0.1:1985;"), "{warning}");
        assert!(warning.contains("auth { enabled on;"), "{warning}");
        for quiet in [
            "http_api { enabled on; listen 127.0.0.1:1985; }",
            "http_api { enabled on; listen [::1]:1985; }",
            "http_api { enabled off; listen 1985; }",
            "http_api { enabled on; listen 1985; auth { enabled on; username a; password b; } }",
        ] {
            assert_eq!(exposure_warning(&config(quiet)), None, "{quiet}");
        }
    }
}
