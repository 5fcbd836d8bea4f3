//! The seam between the segmenter and a container: the [`Muxer`] trait, the [`Tracks`] a
//! segment declares and the samples it is handed, timestamps on the 90 kHz clock. MPEG-TS
//! ([`super::ts`]) implements it; fMP4 would be another implementation, and LL-HLS partial
//! segments a finer cut by the segmenter over the same calls. Pure types, no I/O.

use bytes::Bytes;

use super::es::{AacConfig, VideoConfig};

/// The elementary streams a segment carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracks {
    /// The video configuration, if there is video.
    pub video: Option<VideoConfig>,
    /// The AAC configuration, if there is audio.
    pub audio: Option<AacConfig>,
}

/// One video access unit, timestamps on the 90 kHz clock.
#[derive(Debug, Clone, Copy)]
pub struct VideoSample<'a> {
    /// Decoding time.
    pub dts: u64,
    /// Presentation time.
    pub pts: u64,
    /// A frame a decoder can start from.
    pub keyframe: bool,
    /// Length-prefixed NAL units, as in the FLV tag.
    pub data: &'a [u8],
}

/// One raw AAC frame, timestamp on the 90 kHz clock.
#[derive(Debug, Clone, Copy)]
pub struct AudioSample<'a> {
    /// Decoding (and presentation) time.
    pub dts: u64,
    /// The raw frame.
    pub data: &'a [u8],
}

/// A segment container.
pub trait Muxer {
    /// Declares the tracks: at the start of each segment and whenever they change.
    fn tracks(&mut self, tracks: &Tracks);
    /// Writes a video sample of the declared video track.
    fn video(&mut self, sample: &VideoSample<'_>, config: &VideoConfig);
    /// Writes an audio sample of the declared audio track.
    fn audio(&mut self, sample: &AudioSample<'_>, config: &AacConfig);
    /// Ends the segment and hands out its bytes.
    fn finish(&mut self) -> Bytes;
}
