//! HLS, sans-IO: the per-stream [`Segmenter`] (frames in, segments, LL-HLS parts and playlists
//! out, the wall clock passed in), the MPEG-TS ([`ts`]) and CMAF ([`cmaf`]) muxers behind the
//! [`Muxer`] seam ([`mux`]), the FLV to elementary-stream conversions ([`es`]) they share, and
//! LL-HLS's blocking-reload directives ([`reload`]). It owns no file, socket or clock and must
//! not import a driver: the driver that feeds it from the hub and publishes its output is
//! `server/hls.rs`, the store the HTTP server reads is `state/hls.rs`.
#![forbid(unsafe_code)]

pub mod cmaf;
pub mod es;
pub mod exercise;
pub mod mux;
pub mod reload;
pub mod segmenter;
pub mod ts;

pub use cmaf::CmafMuxer;
pub use mux::Muxer;
pub use reload::{Edge, Hint, Reload, ReloadError};
pub use segmenter::{fill_stream, Options, Output, Part, Playlist, Segment, Segmenter};
