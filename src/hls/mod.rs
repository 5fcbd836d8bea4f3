//! HLS, sans-IO: the per-stream [`Segmenter`] (frames in, segments and playlists out, the
//! wall clock passed in), the MPEG-TS muxer ([`ts`]) behind the [`Muxer`] seam ([`mux`]), and the FLV
//! to elementary-stream conversions ([`es`]) they share. It owns no file, socket or clock and
//! must not import a driver: the driver that feeds it from the hub and publishes its output
//! is `server/hls.rs`, the store the HTTP server reads is `state/hls.rs`.
#![forbid(unsafe_code)]

pub mod es;
pub mod exercise;
pub mod mux;
pub mod segmenter;
pub mod ts;

pub use mux::Muxer;
pub use segmenter::{fill_stream, Options, Output, Segment, Segmenter};
