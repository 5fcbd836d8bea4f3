//! Signalling served against the shared RTC state: an offer becomes a pending session and its
//! answer, a DELETE ends a session, and the counters and the loss simulation are read and
//! set. What it needs from the server around it (the config, the stream settings, the
//! [`RtcHub`], the time and a random source) is passed in; it answers with typed results,
//! which the HTTP layer (its `rtc.rs`) writes out. It knows no HTTP beyond the
//! request's method, path, query and body.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rand::RngCore;

use crate::config::{Config, DEFAULT_VHOST};
use crate::hub::{StreamKey, StreamSettings};
use crate::rtc::engine::hub::{HubError, RtcHub};
use crate::rtc::engine::session::{Session, SessionEnd, SessionParams};
use crate::rtc::signal::{self, Request, Role, SignalError, Style};
use crate::rtc::to_rtmp::sink::Offerer;
use crate::rtc::udp::socket::candidate_ips;

/// What signalling reads from the server around it.
pub struct SignalContext<'a> {
    /// The config in force.
    pub config: &'a Config,
    /// The shared RTC state.
    pub hub: &'a RtcHub,
    /// The key and settings of stream `(vhost, app, stream)`, as the RTMP side makes them
    /// (an unknown vhost falls back to the default one).
    pub stream: &'a dyn Fn(&str, &str, &str) -> (StreamKey, StreamSettings),
    /// Whether an RTMP publisher (or an edge's pull) holds stream `key`: a WHIP publish with
    /// `rtc_to_rtmp` is refused then, as SRS refuses a busy source.
    pub rtmp_published: &'a dyn Fn(&StreamKey) -> bool,
    /// For an offer whose hooks already ran and allowed it: what they were told.
    pub offered: Option<Offered>,
}

/// An offer whose hooks allowed it, as signalling is told of it.
#[derive(Debug)]
pub struct Offered {
    /// The session id the hooks were given as the client's: the session takes it, so the
    /// API, the hooks and the session's end name one client.
    pub session: u64,
    /// Who offered.
    pub offerer: Offerer,
    /// The session's end hook, which the session made for the offer holds (none is made
    /// when the offer is refused after its hooks: a bad SDP, a busy stream).
    pub end: Box<dyn SessionEnd>,
}

impl std::fmt::Debug for SignalContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalContext").finish_non_exhaustive()
    }
}

/// A served signalling request.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalAnswer {
    /// An offer accepted: a session waits for its first binding.
    Answer {
        /// The request's wire form, which the reply keeps.
        style: Style,
        /// Publish or play.
        role: Role,
        /// Application.
        app: String,
        /// Stream name.
        stream: String,
        /// The new session's id (16 hex digits).
        session: String,
        /// The SDP answer.
        sdp: String,
    },
    /// The counters (`GET /rtc/v1/stats/`).
    Stats(RtcCounters),
    /// The loss simulation is set to drop one in `drop_every` datagrams (0: off).
    SimulateLoss {
        /// One in this many datagrams sent to players is dropped.
        drop_every: u64,
    },
    /// A session was ended (DELETE).
    Deleted,
}

/// The RTC counters as `GET /rtc/v1/stats/` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcCounters {
    /// Sessions adopted by a core and alive.
    pub sessions: usize,
    /// Sessions waiting for their first binding.
    pub pending: usize,
    /// Datagrams received.
    pub received: u64,
    /// Receive system calls (epoll).
    pub recv_calls: u64,
    /// Datagrams rejected.
    pub rejected: u64,
    /// RTP packets of publishers dropped for an SSRC their offer did not announce.
    pub unannounced_ssrc: u64,
    /// RTCP datagrams of players dropped past their budget.
    pub rtcp_over_budget: u64,
    /// Signalling requests refused.
    pub refused_requests: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Send system calls.
    pub send_calls: u64,
    /// RTP packets to players sealed as they were written.
    pub rtp_sent_at_once: u64,
    /// RTP packets to players queued in str0m for the next poll.
    pub rtp_queued: u64,
    /// Messages dropped on full core inboxes.
    pub inbox_overflows: u64,
    /// Datagrams dropped by the loss simulation.
    pub simulated_drops: u64,
    /// The kernel's receive drops (the `r` of `loss=(r:N,s:N)`).
    pub rx_drops: u64,
    /// Failed or short sends (the `s`).
    pub send_drops: u64,
    /// `rtc_to_rtmp`: malformed frames of publishers dropped.
    pub to_rtmp_bad_frames: u64,
    /// `rtc_to_rtmp`: publishers closed for sending no media.
    pub stale_publishers: u64,
}

impl RtcCounters {
    /// The counters of `hub` now.
    pub fn of(hub: &RtcHub) -> Self {
        let s = &hub.stats;
        Self {
            sessions: s.sessions.load(Ordering::Relaxed),
            pending: hub.pending_count(),
            received: s.received.load(Ordering::Relaxed),
            recv_calls: s.recv_calls.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            unannounced_ssrc: s.unannounced_ssrc.load(Ordering::Relaxed),
            rtcp_over_budget: s.rtcp_over_budget.load(Ordering::Relaxed),
            refused_requests: s.refused_requests.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            send_calls: s.send_calls.load(Ordering::Relaxed),
            rtp_sent_at_once: s.rtp_sent_at_once.load(Ordering::Relaxed),
            rtp_queued: s.rtp_queued.load(Ordering::Relaxed),
            inbox_overflows: s.inbox_overflows.load(Ordering::Relaxed),
            simulated_drops: s.simulated_drops.load(Ordering::Relaxed),
            rx_drops: hub.rx_drops(),
            send_drops: s.send_drops.load(Ordering::Relaxed),
            to_rtmp_bad_frames: s.to_rtmp_bad_frames.load(Ordering::Relaxed),
            stale_publishers: s.stale_publishers.load(Ordering::Relaxed),
        }
    }
}

/// Serves the signalling paths under `/rtc/v1/` (WHIP, WHEP, SRS's JSON publish and play,
/// stats, the loss simulation) at `now`, drawing session ids and ICE credentials from `rng`;
/// `None` for any other path. `query` is the raw query string without `?`; `body` the
/// request body (an SDP offer, or SRS's JSON). A refused request is counted and logged here;
/// its reply's form follows [`signal::style_of`] the path. `ctx` is taken: a session made
/// keeps its [`SignalContext::offered`] end hook.
pub fn handle_signal(
    mut ctx: SignalContext<'_>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now: Instant,
    rng: &mut impl RngCore,
) -> Option<Result<SignalAnswer, SignalError>> {
    let result = match signal::parse(method, path, query, body) {
        Ok(None) => return None,
        Ok(Some(request)) => serve(&mut ctx, request, now, rng),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        ctx.hub
            .stats
            .refused_requests
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("rtc signalling {method} {path}?{query}: {e}");
    }
    Some(result)
}

/// A new session id: random, so that a session's URL (its `DELETE`) cannot be guessed, and
/// below 2^63, as SRS's JSON and the API print it.
pub fn new_session_id(rng: &mut impl RngCore) -> u64 {
    rng.next_u64() >> 1
}

fn serve(
    ctx: &mut SignalContext<'_>,
    request: Request,
    now: Instant,
    rng: &mut impl RngCore,
) -> Result<SignalAnswer, SignalError> {
    let hub = ctx.hub;
    match request {
        Request::Stats => Ok(SignalAnswer::Stats(RtcCounters::of(hub))),
        Request::SimulateLoss { drop_every } => {
            hub.stats
                .simulate_drop_every
                .store(drop_every, Ordering::Relaxed);
            tracing::warn!(
                "rtc: simulating loss, dropping one in {drop_every} datagrams sent (0: off)"
            );
            Ok(SignalAnswer::SimulateLoss { drop_every })
        }
        Request::Delete { session } => {
            let id = u64::from_str_radix(&session, 16)
                .map_err(|_| SignalError::NotFound(format!("no session {session}")))?;
            if hub.close(id) {
                Ok(SignalAnswer::Deleted)
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
            let config = ctx.config;
            if !config.rtc_server.enabled {
                return Err(SignalError::Forbidden("rtc_server is disabled".into()));
            }
            let (key, settings) =
                (ctx.stream)(vhost.as_deref().unwrap_or(DEFAULT_VHOST), &app, &stream);
            let vhost = config.vhost(&key.vhost);
            if !vhost.enabled || !vhost.rtc.enabled {
                return Err(SignalError::Forbidden(format!(
                    "WebRTC is disabled for vhost {}",
                    key.vhost
                )));
            }
            let to_rtmp = role == Role::Publish && vhost.rtc.rtc_to_rtmp;
            if to_rtmp && (ctx.rtmp_published)(&key) {
                return Err(SignalError::Forbidden(format!(
                    "stream {key} is already being published over RTMP"
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
                    // Or wait for the next WHIP publisher, as SRS's players may.
                    Err(_) => (hub.detached_stream(&key), None),
                },
            };
            let (id, offerer, end) = match ctx.offered.take() {
                Some(o) => (o.session, Some(o.offerer), Some(o.end)),
                None => (new_session_id(rng), None, None),
            };
            let params = SessionParams {
                role,
                stream: rtc_stream.clone(),
                candidates: candidate_ips(&config.rtc_server)
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, config.rtc_server.listen.port()))
                    .collect(),
                nack: vhost.rtc.nack,
                bridge,
                to_rtmp: to_rtmp.then_some((settings, offerer)),
                crypto: hub.certs.provider().clone(),
                cert: hub.certs.current(now),
            };
            let forget = |e: String| {
                if role == Role::Publish {
                    hub.remove_stream(&rtc_stream);
                }
                SignalError::BadRequest(e)
            };
            let (mut session, answer) = Session::from_offer(id, params, &sdp, now, rng)
                .map_err(|e| forget(e.to_string()))?;
            if let Some(end) = end {
                session.set_end(end);
            }
            let ufrag = session.ufrag().to_owned();
            hub.add_pending(ufrag, session, now).map_err(hub_error)?;
            let session = format!("{id:016x}");
            tracing::info!(
                session = %session,
                stream = %key,
                "rtc {} offer answered",
                if role == Role::Publish { "publish" } else { "play" }
            );
            Ok(SignalAnswer::Answer {
                style,
                role,
                app,
                stream,
                session,
                sdp: answer,
            })
        }
    }
}

fn hub_error(e: HubError) -> SignalError {
    match e {
        HubError::Busy(_) => SignalError::Forbidden(e.to_string()),
        HubError::NoStream(_) => SignalError::NotFound(e.to_string()),
        HubError::TooManyPending => SignalError::Unavailable(e.to_string()),
    }
}
