//! The seam between the segmenter and a container: the [`Muxer`] trait, the [`Tracks`] a
//! segment declares and the samples it is handed, timestamps on the 90 kHz clock. MPEG-TS
//! ([`super::ts`]) and CMAF ([`super::cmaf`]) implement it; LL-HLS partial segments are the
//! segmenter's finer [`Muxer::cut`]s over the same calls. Pure types, no I/O.

use bytes::Bytes;

use super::es::{AacConfig, VideoConfig};

/// The elementary streams a segment carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracks {
    /// The video configuration, if there is video.
    pub video: Option<VideoConfig>,
    /// The AAC configuration, if there is audio.
    pub audio: Option<AacConfig>,
    /// The video sequence header as it came (an FLV tag body), for a container that carries
    /// the decoder configuration record whole (fMP4's `avcC`/`hvcC`).
    pub video_header: Option<Bytes>,
    /// The AAC sequence header as it came (an FLV tag body), for fMP4's `esds`.
    pub audio_header: Option<Bytes>,
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
///
/// Order of calls: [`Muxer::tracks`] at the start of each segment (and when the tracks
/// change, if [`Muxer::TRACKS_IN_INIT`] is false), samples, [`Muxer::init`] after each
/// sample until it gives the init segment, [`Muxer::cut`] at the end of each part and
/// segment, [`Muxer::finish`] when the stream ends.
pub trait Muxer {
    /// The tracks are declared once, in an init segment (`#EXT-X-MAP`): a change of tracks
    /// starts a new segment with a new init segment, never a new declaration mid-segment.
    const TRACKS_IN_INIT: bool;
    /// Declares the tracks: at the start of each segment and whenever they change.
    fn tracks(&mut self, tracks: &Tracks);
    /// Writes a video sample of the declared video track.
    fn video(&mut self, sample: &VideoSample<'_>, config: &VideoConfig);
    /// Writes an audio sample of the declared audio track.
    fn audio(&mut self, sample: &AudioSample<'_>, config: &AacConfig);
    /// The init segment of the declared tracks, once after they were declared anew and a
    /// sample came; `None` otherwise, and always for a container without one.
    fn init(&mut self) -> Option<Bytes>;
    /// Ends a part or a segment before `end` (the next frame's decode time, not yet written)
    /// and hands out the bytes since the last cut; empty when there are none.
    fn cut(&mut self, end: u64) -> Bytes;
    /// The stream ended: hands out everything still held; the next declaration starts over.
    fn finish(&mut self) -> Bytes;
}
