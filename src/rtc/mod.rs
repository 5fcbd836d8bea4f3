//! WebRTC: WHIP/WHEP signalling, sessions on str0m (sans-IO) and batched UDP I/O. It owns the
//! RTC UDP sockets. It imports no server state: the HTTP API hands it the signalling requests
//! under `/rtc/v1/` through [`handle_signal`] with a [`SignalContext`] (the config, the stream
//! settings, the shared [`RtcHub`]) and writes its typed answers; each worker starts
//! [`udp::run`] with the `rtc_server` config, the hub and the stream registry.
//!
//! Pure (sans-IO, `forbid(unsafe_code)`, no runtime):
//! - [`signal`]: which request it is (WHIP, WHEP, SRS's JSON publish and play), and why one is
//!   refused.
//! - [`sdp`]: the offer checks made before str0m's.
//! - [`stun`]: the binding's USERNAME, to route a new peer's first datagram.
//! - [`packetize`]: frames cut into RTP payloads once per stream and core, shared by players.
//! - [`bridge`]: RTMP's FLV H.264 and AAC made into what WebRTC players take.
//! - [`to_rtmp`]: the reverse (`rtc_to_rtmp`): a WHIP publisher's H.264 and Opus made into
//!   FLV messages (AVC, AAC) on one monotonic timeline, and the keyframe requests that
//!   needs; its [`to_rtmp::sink`] is what the server implements to publish them.
//!
//! Sessions and state, sans-IO but shared between cores:
//! - [`engine`]: one core's sessions (str0m, ICE-lite, DTLS-SRTP, H.264 and Opus), their
//!   timers and the forwarding of frames to players; and the [`RtcHub`] the cores and
//!   signalling share.
//! - [`api`]: signalling served against the hub: offers become sessions.
//!
//! I/O: [`udp`]: a SO_REUSEPORT socket per core, recvmmsg/multishot and sendmmsg batches with
//! GSO, and the loop that drives the engine.

pub mod api;
pub mod bridge;
pub mod engine;
pub mod packetize;
pub mod sdp;
pub mod signal;
pub mod stun;
pub mod to_rtmp;
pub mod udp;

pub use api::{handle_signal, new_session_id, Offered, RtcCounters, SignalAnswer, SignalContext};
pub use engine::hub::RtcHub;

#[cfg(test)]
mod tests;
