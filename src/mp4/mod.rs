//! Fragmented MP4 (ISO-BMFF), sans-IO: [`tag`] reads FLV tag bodies into track
//! configurations (`avcC`, `hvcC`, AAC's AudioSpecificConfig) and samples, and [`mux`]'s
//! [`Muxer`] turns them into an init segment (`ftyp` + `moov` with `mvex`) and fragments
//! (`moof` + `mdat`), for H.264, HEVC and AAC, with composition offsets, sync-sample flags
//! and a `tfdt` per track and fragment. The boxes are mp4-atom's.
//!
//! A file of the init segment and whole fragments plays however it ends, so a recorder that
//! writes each fragment as it is cut leaves a playable file after a crash. It owns no file,
//! socket or clock and knows nothing of streams or players: DVR writes its output to files,
//! and the same init segment and fragments are CMAF's.
#![forbid(unsafe_code)]

pub mod mux;
pub mod tag;

pub use mux::{Fragment, MuxError, Muxer};
pub use tag::{read_tag, AudioConfig, Sample, Tag, TagError, VideoCodec, VideoConfig};
