//! Where the converted messages go: the seam between the RTC loop and the server. The RTC
//! side imports no server state, so the server implements [`RtmpSink`] (it takes the stream's
//! publish in the hub, starts the stream's consumers, registers the client and runs the
//! hooks) and hands it to each worker's RTC loop, which calls it for the WHIP publishers of
//! vhosts with `rtc_to_rtmp on`.

use std::net::IpAddr;

use super::Message;
use crate::hub::{StreamKey, StreamSettings};

/// Who offered a WebRTC session, as the signalling told the HTTP hooks at `on_publish` or
/// `on_play`: a `rtc_to_rtmp` publish is listed in the API's clients with its address and
/// tcUrl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offerer {
    /// The signalling request's peer address.
    pub ip: String,
    /// `webrtc://HOST/APP`, HOST from the request's `Host`.
    pub tc_url: String,
    /// The request's raw query, SRS's `param` for WebRTC.
    pub param: String,
}

/// A WHIP publisher whose stream is to be published to RTMP.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The WebRTC session's id, the client id the API and the hooks know it by.
    pub session: u64,
    /// The publisher's media address, where known.
    pub ip: Option<IpAddr>,
    /// Who offered it, when the offer came through the server's signalling.
    pub offerer: Option<Offerer>,
    /// The stream.
    pub key: StreamKey,
    /// Its settings.
    pub settings: StreamSettings,
}

/// Why a stream could not be published.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Starts RTMP publishes for WHIP publishers.
pub trait RtmpSink: Send + Sync {
    /// Takes `request`'s stream's publish; the publish lasts as long as what it returns.
    fn start(&self, request: PublishRequest) -> Result<Box<dyn RtmpPublish>, Refused>;
}

/// One stream's RTMP publish, held by the RTC loop; dropping it unpublishes.
pub trait RtmpPublish {
    /// Publishes one message; `false` when the publish was ended from outside (the API
    /// kicked the client), and the session should close.
    fn push(&mut self, message: Message) -> bool;
}
