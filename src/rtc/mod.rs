//! WebRTC: WHIP/WHEP signalling, sessions on str0m (sans-IO) and batched UDP I/O. It owns the
//! RTC UDP sockets; the HTTP API ([`crate::http`], once it exists) hands it the signalling
//! requests under `/rtc/v1/` through [`handle_api`].
//!
//! - [`signal`]: which request it is (WHIP, WHEP, SRS's JSON publish and play), and replies.
//! - [`hub`]: what the cores share: sessions waiting for their first STUN binding, streams,
//!   one inbox per core, counters.
//! - [`engine`]: one core's sessions (str0m, ICE-lite, DTLS-SRTP, H.264 and Opus) and the
//!   forwarding of publishers' frames to players, sans-IO.
//! - [`packetize`]: frames cut into RTP payloads once per stream and core, shared by players.
//! - [`udp`]: the I/O layer: a SO_REUSEPORT socket per core, recvmmsg/sendmmsg batches.
//! - [`stun`]: the binding's USERNAME, to route a new peer's first datagram.

pub mod bridge;
pub mod engine;
pub mod hub;
pub mod packetize;
pub mod signal;
pub mod stun;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub use hub::RtcHub;

use crate::config::{RtcServer, DEFAULT_VHOST};
use crate::http::ApiReply;
use crate::state::Shared;
use engine::{Session, SessionParams};
use hub::HubError;
use signal::{AnswerInfo, Request, Role, SignalError};

/// Serves the signalling paths under `/rtc/v1/` (WHIP, WHEP, SRS's JSON publish and play);
/// `None` for any other path. `query` is the raw query string without `?`; `body` the request
/// body (an SDP offer, or SRS's JSON).
pub async fn handle_api(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Arc<Shared>,
) -> Option<ApiReply> {
    let style = signal::style_of(path);
    let result = match signal::parse(method, path, query, body) {
        Ok(None) => return None,
        Ok(Some(request)) => serve(request, shared),
        Err(e) => Err(e),
    };
    Some(result.unwrap_or_else(|e| {
        shared
            .rtc
            .stats
            .refused_requests
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("rtc signalling {method} {path}?{query}: {e}");
        signal::error_reply(style, &e)
    }))
}

fn serve(request: Request, shared: &Arc<Shared>) -> Result<ApiReply, SignalError> {
    let hub = &shared.rtc;
    match request {
        Request::Stats => {
            let s = &hub.stats;
            let sent = s.sent.load(Ordering::Relaxed);
            let calls = s.send_calls.load(Ordering::Relaxed);
            let received = s.received.load(Ordering::Relaxed);
            let recv_calls = s.recv_calls.load(Ordering::Relaxed);
            let body = serde_json::json!({
                "code": 0,
                "sessions": s.sessions.load(Ordering::Relaxed),
                "pending": hub.pending_count(),
                "received": received,
                "recv_calls": recv_calls,
                "recv_calls_per_packet": recv_calls as f64 / received.max(1) as f64,
                "rejected": s.rejected.load(Ordering::Relaxed),
                "refused_requests": s.refused_requests.load(Ordering::Relaxed),
                "sent": sent,
                "send_calls": calls,
                "send_calls_per_packet": calls as f64 / sent.max(1) as f64,
                "inbox_overflows": s.inbox_overflows.load(Ordering::Relaxed),
                "simulated_drops": s.simulated_drops.load(Ordering::Relaxed),
                "loss": { "r": hub.rx_drops(), "s": s.send_drops.load(Ordering::Relaxed) },
            });
            Ok(json_reply(body))
        }
        Request::SimulateLoss { drop_every } => {
            hub.stats
                .simulate_drop_every
                .store(drop_every, Ordering::Relaxed);
            tracing::warn!(
                "rtc: simulating loss, dropping one in {drop_every} datagrams sent (0: off)"
            );
            Ok(json_reply(
                serde_json::json!({"code": 0, "drop": drop_every}),
            ))
        }
        Request::Delete { session } => {
            let id = u64::from_str_radix(&session, 16)
                .map_err(|_| SignalError::NotFound(format!("no session {session}")))?;
            if hub.close(id) {
                Ok(ApiReply {
                    status: 200,
                    content_type: "text/plain",
                    headers: Vec::new(),
                    body: Vec::new(),
                })
            } else {
                Err(SignalError::NotFound(format!("no session {session}")))
            }
        }
        Request::Offer {
            role,
            style,
            vhost,
            app,
            stream,
            sdp,
        } => {
            let config = shared.config();
            if !config.rtc_server.enabled {
                return Err(SignalError::Forbidden("rtc_server is disabled".into()));
            }
            let (key, settings) =
                shared.stream(vhost.as_deref().unwrap_or(DEFAULT_VHOST), &app, &stream);
            let vhost = config.vhost(&key.vhost);
            if !vhost.enabled || !vhost.rtc.enabled {
                return Err(SignalError::Forbidden(format!(
                    "WebRTC is disabled for vhost {}",
                    key.vhost
                )));
            }
            let (rtc_stream, bridge) = match role {
                Role::Publish => (hub.create_stream(&key).map_err(hub_error)?, None),
                Role::Play => match hub.stream(&key) {
                    Ok(s) => (s, None),
                    // No WebRTC publisher: play the RTMP stream, published now or later.
                    Err(_) if vhost.rtc.rtmp_to_rtc => {
                        (hub.detached_stream(&key), Some(settings.clone()))
                    }
                    Err(e) => return Err(hub_error(e)),
                },
            };
            let now = Instant::now();
            let id = rand::random::<u64>() >> 1;
            let params = SessionParams {
                role,
                stream: rtc_stream.clone(),
                candidate: SocketAddr::new(
                    candidate_ip(&config.rtc_server),
                    config.rtc_server.listen.port(),
                ),
                nack: vhost.rtc.nack,
                bridge,
            };
            let forget = |e: String| {
                if role == Role::Publish {
                    hub.remove_stream(&rtc_stream);
                }
                SignalError::BadRequest(e)
            };
            let (session, answer) =
                Session::from_offer(id, params, &sdp, now).map_err(|e| forget(e.to_string()))?;
            let ufrag = session.ufrag().to_owned();
            hub.add_pending(ufrag, session, now).map_err(hub_error)?;
            let session_id = format!("{id:016x}");
            tracing::info!(
                session = %session_id,
                stream = %key,
                "rtc {} offer answered",
                if role == Role::Publish { "publish" } else { "play" }
            );
            Ok(signal::answer_reply(
                style,
                role,
                &AnswerInfo {
                    app: &app,
                    stream: &stream,
                    session: &session_id,
                    sdp: &answer,
                },
                "ringcast",
            ))
        }
    }
}

fn json_reply(body: serde_json::Value) -> ApiReply {
    ApiReply {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }
}

fn hub_error(e: HubError) -> SignalError {
    match e {
        HubError::Busy(_) => SignalError::Forbidden(e.to_string()),
        HubError::NoStream(_) => SignalError::NotFound(e.to_string()),
        HubError::TooManyPending => SignalError::Unavailable(e.to_string()),
    }
}

/// The address clients are told to send to: the configured candidate, else the listen address
/// if it names one, else the host's first non-loopback IPv4 address, else loopback.
pub fn candidate_ip(rtc: &RtcServer) -> IpAddr {
    if let Some(ip) = rtc.candidate {
        return ip;
    }
    if !rtc.listen.ip().is_unspecified() {
        return rtc.listen.ip();
    }
    nix::ifaddrs::getifaddrs()
        .ok()
        .and_then(|mut addrs| {
            addrs.find_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                (!ip.is_loopback()).then_some(IpAddr::V4(ip))
            })
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests;
