//! WebRTC signalling over HTTP: hands the requests under `/rtc/v1/` to
//! [`crate::rtc::handle_signal`] with what it needs from the server (the config, the stream
//! settings, the shared RTC state, the clock and a random source), and writes its typed
//! answers and refusals as WHIP/WHEP replies (SDP bodies, `201` with `Location`, plain-text
//! errors) or SRS's JSON (`{"code", "sdp", "sessionid"}`, `{"code", "msg"}`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::parser::Request;
use super::reply::{error, reply as json_reply, ApiReply};
use crate::config::DEFAULT_VHOST;
use crate::rtc::engine::session::SessionEnd;
use crate::rtc::signal::{self, Role, SignalError, Style};
use crate::rtc::to_rtmp::sink::Offerer;
use crate::rtc::{handle_signal, Offered, RtcCounters, SignalAnswer, SignalContext};
use crate::state::Shared;

/// The server id SRS's JSON answers carry in `server` and `service`.
const SERVER_ID: &str = "ringcast";

/// Serves a signalling request (an offer whose hooks allowed it: `offered`, made of what
/// [`hooked`] was given and returned); `None` for a path under `/rtc/v1/` that is not one.
pub(super) fn handle(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Arc<Shared>,
    offered: Option<Offered>,
) -> Option<ApiReply> {
    let config = shared.config();
    let asked = std::cell::RefCell::new(None);
    let stream = |vhost: &str, app: &str, name: &str| {
        let found = shared.stream(vhost, app, name);
        *asked.borrow_mut() = Some(found.clone());
        found
    };
    let ctx = SignalContext {
        config: &config,
        hub: &shared.rtc,
        stream: &stream,
        rtmp_published: &|key| shared.hub.get(key).is_some_and(|s| s.publisher().is_some()),
        offered,
    };
    let now = Instant::now();
    let result = handle_signal(ctx, method, path, query, body, now, &mut rand::thread_rng())?;
    if let (
        Ok(SignalAnswer::Answer {
            role: Role::Play, ..
        }),
        Some((key, settings)),
    ) = (&result, asked.take())
    {
        // A WHEP player of an RTMP stream (`rtmp_to_rtc`) on an edge: the stream is pulled.
        crate::server::edge::want(shared, &key, &settings, query);
    }
    Some(match result {
        Ok(answer) => answer_reply(&answer),
        Err(e) => error_reply(signal::style_of(path), &e),
    })
}

/// Who an offer is from and what it asks for: read once, for the `security` rules and the
/// hooks that run before the signalling serves it.
#[derive(Debug, Clone)]
pub(super) struct Offer {
    pub role: Role,
    pub style: Style,
    pub vhost: Option<String>,
    pub app: String,
    pub stream: String,
    /// The id of the session it will start, drawn now: the hooks are told it as the
    /// client's id, as the API lists the session and as `on_unpublish` tells them again.
    pub session: u64,
}

/// The offer `req` makes, if it is a WHIP/WHEP (or SRS JSON) publish or play.
pub(super) fn offer(req: &Request) -> Option<Offer> {
    let Ok(Some(signal::Request::Offer {
        role,
        style,
        vhost,
        app,
        stream,
        ..
    })) = signal::parse(&req.method, &req.path, &req.query, &req.body)
    else {
        return None;
    };
    Some(Offer {
        role,
        style,
        vhost,
        app,
        stream,
        session: crate::rtc::new_session_id(&mut rand::thread_rng()),
    })
}

/// Who makes offer `req`, from `peer`, as the hooks are told.
pub(super) fn offerer(req: &Request, offer: &Offer, peer: SocketAddr) -> Offerer {
    Offerer {
        ip: peer.ip().to_string(),
        tc_url: format!(
            "webrtc://{}/{}",
            req.header("host").unwrap_or(""),
            offer.app
        ),
        // SRS's WHIP and WHEP send the raw query.
        param: req.query.clone(),
    }
}

/// Whether `offer` is a WHEP play, which an origin cluster may redirect. SRS's JSON play is
/// left as it was: its body names the API and the stream URL, which a redirect would not
/// rewrite.
pub(super) fn is_whep(offer: &Offer) -> bool {
    offer.role == Role::Play && offer.style == Style::Whip
}

/// Asks the HTTP hooks (`on_publish` for WHIP, `on_play` for WHEP) about an offer by
/// `offerer` before it is served: the end hook of the session it may start, or the 403 that
/// refuses it (the denial logged here, once). HTTP connection `conn` names the request in
/// the log.
pub(super) async fn hooked(
    req: &Request,
    offer: &Offer,
    offerer: &Offerer,
    shared: &Arc<Shared>,
    conn: u64,
) -> Result<Box<dyn SessionEnd>, ApiReply> {
    let vhost = offer.vhost.as_deref().unwrap_or(DEFAULT_VHOST);
    let hook = crate::hooks::rtc(offer.session, offerer, vhost, &offer.app, &offer.stream);
    let role = offer.role;
    let allowed = match role {
        Role::Publish => crate::hooks::on_publish(shared, &hook).await,
        Role::Play => crate::hooks::on_play(shared, &hook).await,
    };
    match allowed {
        Ok(()) => Ok(Box::new(Ending {
            shared: shared.clone(),
            role,
            hook,
        })),
        Err(e) => {
            tracing::warn!(
                cid = conn,
                "rtc signalling {} {}: {e}",
                req.method,
                req.path
            );
            Err(error(403, &e.public()))
        }
    }
}

/// The end of a WebRTC session whose offer its hooks allowed: `on_unpublish` for a WHIP
/// publish, `on_stop` for a WHEP play, with the request its `on_publish` or `on_play` was
/// asked with, so that hook servers pair them. Every WHIP publish ends here, `rtc_to_rtmp`
/// or not, once.
#[derive(Debug)]
struct Ending {
    shared: Arc<Shared>,
    role: Role,
    hook: crate::hooks::Request,
}

impl SessionEnd for Ending {
    fn ended(self: Box<Self>) {
        match self.role {
            Role::Publish => crate::hooks::on_unpublish(&self.shared, &self.hook),
            Role::Play => crate::hooks::on_stop(&self.shared, &self.hook),
        }
    }
}

/// The reply to a served request.
fn answer_reply(answer: &SignalAnswer) -> ApiReply {
    match answer {
        SignalAnswer::Answer {
            style: Style::Whip,
            role,
            app,
            stream,
            session,
            sdp,
        } => {
            let kind = match role {
                Role::Publish => "whip",
                Role::Play => "whep",
            };
            ApiReply {
                status: 201,
                content_type: "application/sdp",
                headers: vec![(
                    "Location",
                    format!("/rtc/v1/{kind}/?app={app}&stream={stream}&session={session}"),
                )],
                body: sdp.as_bytes().to_vec().into(),
                sealed: None,
            }
        }
        SignalAnswer::Answer {
            style: Style::Json,
            session,
            sdp,
            ..
        } => json_reply(
            200,
            &serde_json::json!({
                "code": 0,
                "server": SERVER_ID,
                "service": SERVER_ID,
                "pid": std::process::id().to_string(),
                "sdp": sdp,
                "sessionid": session,
            }),
        ),
        SignalAnswer::Stats(c) => json_reply(200, &stats_body(c)),
        SignalAnswer::SimulateLoss { drop_every } => {
            json_reply(200, &serde_json::json!({"code": 0, "drop": drop_every}))
        }
        SignalAnswer::Deleted => ApiReply {
            status: 200,
            content_type: "text/plain",
            headers: Vec::new(),
            body: Default::default(),
            sealed: None,
        },
    }
}

fn stats_body(c: &RtcCounters) -> serde_json::Value {
    serde_json::json!({
        "code": 0,
        "sessions": c.sessions,
        "pending": c.pending,
        "received": c.received,
        "recv_calls": c.recv_calls,
        "recv_calls_per_packet": c.recv_calls as f64 / c.received.max(1) as f64,
        "rejected": c.rejected,
        "unannounced_ssrc": c.unannounced_ssrc,
        "rtcp_over_budget": c.rtcp_over_budget,
        "refused_requests": c.refused_requests,
        "sent": c.sent,
        "send_calls": c.send_calls,
        "send_calls_per_packet": c.send_calls as f64 / c.sent.max(1) as f64,
        "rtp_sent_at_once": c.rtp_sent_at_once,
        "rtp_queued": c.rtp_queued,
        "inbox_overflows": c.inbox_overflows,
        "simulated_drops": c.simulated_drops,
        "loss": { "r": c.rx_drops, "s": c.send_drops },
        "rtc_to_rtmp": {
            "bad_frames": c.to_rtmp_bad_frames,
            "stale_publishers": c.stale_publishers,
        },
    })
}

/// The reply to a refused request: plain text for WHIP/WHEP, SRS's `{"code": N}` for JSON.
fn error_reply(style: Style, error: &SignalError) -> ApiReply {
    match style {
        Style::Whip => ApiReply {
            status: error.status(),
            content_type: "text/plain",
            headers: Vec::new(),
            body: format!("{error}\n").into(),
            sealed: None,
        },
        Style::Json => json_reply(
            error.status(),
            &serde_json::json!({"code": error.code(), "msg": error.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(style: Style, role: Role) -> SignalAnswer {
        SignalAnswer::Answer {
            style,
            role,
            app: "live".into(),
            stream: "cam".into(),
            session: "s1".into(),
            sdp: "v=0".into(),
        }
    }

    #[test]
    fn answers_as_whip_and_as_srs_json() {
        let reply = answer_reply(&answer(Style::Json, Role::Play));
        assert_eq!(
            (reply.status, reply.content_type),
            (200, "application/json")
        );
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(
            (v["code"].as_i64(), v["sdp"].as_str()),
            (Some(0), Some("v=0"))
        );
        assert_eq!(
            (v["sessionid"].as_str(), v["server"].as_str()),
            (Some("s1"), Some("ringcast"))
        );
        let reply = answer_reply(&answer(Style::Whip, Role::Publish));
        assert_eq!((reply.status, reply.content_type), (201, "application/sdp"));
        assert_eq!(
            reply.headers,
            [(
                "Location",
                "/rtc/v1/whip/?app=live&stream=cam&session=s1".to_owned()
            )]
        );
        assert_eq!(reply.body, &b"v=0"[..]);
        let deleted = answer_reply(&SignalAnswer::Deleted);
        assert_eq!((deleted.status, deleted.body.len()), (200, 0));
    }

    #[test]
    fn refusals_carry_their_status_and_code() {
        let e = SignalError::NotFound("no session x".into());
        let whip = error_reply(Style::Whip, &e);
        assert_eq!((whip.status, whip.content_type), (404, "text/plain"));
        assert_eq!(whip.body, &b"no session x\n"[..]);
        let json = error_reply(Style::Json, &SignalError::Unavailable("busy".into()));
        assert_eq!(json.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["msg"].as_str()),
            (Some(503), Some("busy"))
        );
    }
}
