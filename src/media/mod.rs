//! Media as the hub shares it: [`frame`] (what a frame is: [`Frame`], its kind and role, and
//! the timestamp [`Jitter`] corrector), [`wire`] (every wire form of a frame: the RTMP chunks
//! serialized once, a player's own start headers, the FLV tag, and a player's [`wire::Form`]),
//! and [`codec`] (codec sniffing of FLV tag bodies: AVC/HEVC/AAC sequence headers).
//!
//! It builds on [`crate::rtmp`] and [`crate::flv`] and owns no connection and no clock; it
//! must not know about players, cores or sockets.
#![forbid(unsafe_code)]

pub mod codec;
pub mod frame;
pub mod wire;

pub use frame::{Frame, FrameRole, Jitter, MediaKind};
