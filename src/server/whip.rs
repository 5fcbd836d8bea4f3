//! A WHIP publisher as an RTMP stream's producer (`rtc_to_rtmp`): the server's side of
//! [`RtmpSink`]. The RTC loop converts the publisher's frames ([`crate::rtc::to_rtmp`]) and
//! hands each message here; this takes the stream's publish in the hub as an RTMP publisher
//! would, starts the stream's consumers (`consumers::start`, as for a publish: forwards,
//! HLS, DVR) and lists the publisher in the API's clients (`rtc-publish`). The hooks are
//! not sent here: `on_publish` was asked at signalling, before the offer was answered, and
//! `on_unpublish` is sent when the WHIP session ends, as for every WHIP publish
//! (the end hook HTTP signalling gives the session). It converts nothing and owns no
//! socket.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::consumers::{self, Producer};
use crate::hub::PublishGuard;
use crate::rtc::to_rtmp::sink::{Offerer, PublishRequest, Refused, RtmpPublish, RtmpSink};
use crate::rtc::to_rtmp::Message;
use crate::state::Shared;
use crate::stats::clients::{ClientGuard, ClientKind};

/// The server's [`RtmpSink`], one per worker's RTC loop.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    /// The sink publishing into `shared`'s hub.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// One WHIP publisher's RTMP publish; dropping it unpublishes.
struct WhipPublish {
    shared: Arc<Shared>,
    guard: PublishGuard,
    client: ClientGuard,
}

impl RtmpSink for Sink {
    fn start(&self, request: PublishRequest) -> Result<Box<dyn RtmpPublish>, Refused> {
        let shared = &self.shared;
        let PublishRequest {
            session,
            ip,
            offerer,
            key,
            settings,
        } = request;
        let guard = shared
            .hub
            .publish(&key, &settings, session)
            .map_err(|e| Refused(e.to_string()))?;
        tracing::info!(cid = session, "rtc_to_rtmp publish {key}");
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // Who the offer came from when it came through signalling, as the hooks were told.
        let offerer = offerer.unwrap_or_else(|| Offerer {
            ip: ip.to_string(),
            tc_url: format!("webrtc://{}/{}", key.vhost, key.app),
            param: String::new(),
        });
        let client = shared.clients.register(
            session,
            ip,
            key.clone(),
            offerer.tc_url,
            offerer.param,
            ClientKind::RtcPublish,
        );
        consumers::start(shared, &key, &settings, Producer::Whip(session));
        Ok(Box::new(WhipPublish {
            shared: shared.clone(),
            guard,
            client,
        }))
    }
}

impl RtmpPublish for WhipPublish {
    fn push(&mut self, message: Message) -> bool {
        let n = message.payload.len() as u64;
        self.client
            .client()
            .recv_bytes
            .fetch_add(n, Ordering::Relaxed);
        self.shared.stats.bytes_in.fetch_add(n, Ordering::Relaxed);
        self.guard
            .push(message.kind, message.timestamp, message.payload);
        !self.client.client().is_kicked()
    }
}

impl Drop for WhipPublish {
    fn drop(&mut self) {
        tracing::info!(
            cid = self.client.client().id,
            "rtc_to_rtmp unpublish {}",
            self.guard.source().key()
        );
    }
}
