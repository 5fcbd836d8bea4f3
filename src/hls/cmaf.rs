//! The CMAF muxer: HLS's fMP4 segments (`hls_fmp4 on`) through the fragmented-MP4 writer DVR
//! uses ([`crate::mp4::Muxer`]). The init segment (`ftyp` + `moov` with `mvex`, for
//! `#EXT-X-MAP`) comes once per track set; each [`Muxer::cut`] is one `moof` + `mdat`, so a
//! segment is one fragment, or, with LL-HLS, one fragment per part, the segment being its
//! parts end to end. Pure: samples in, bytes out.
//!
//! It owns the mapping from the segmenter's samples (90 kHz) to the MP4 writer's (ms, the
//! FLV sequence headers as they came) and nothing else: where segments and parts end is the
//! segmenter's, the boxes are `mp4`'s.

use bytes::Bytes;

use super::es::{AacConfig, VideoConfig};
use super::mux::{AudioSample, Muxer, Tracks, VideoSample};
use crate::media::MediaKind;
use crate::mp4::{self, read_tag, Sample, Tag};

/// Writes CMAF init segments and fragments.
#[derive(Debug, Default)]
pub struct CmafMuxer {
    /// The writer of the declared tracks; a new declaration or the end of the stream starts
    /// a new one (its decode times start over, as a republish's do).
    inner: Option<mp4::Muxer>,
    declared: Option<Tracks>,
    /// The init segment of `inner` is still to be handed out.
    init_due: bool,
}

impl CmafMuxer {
    /// A muxer with no tracks yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The sequence header's configuration, if the MP4 writer can carry it.
fn header(kind: MediaKind, body: Option<&Bytes>) -> Option<Tag> {
    match read_tag(kind, 0, body?) {
        Ok(tag) => Some(tag),
        Err(e) => {
            tracing::debug!("hls fmp4: {e}");
            None
        }
    }
}

/// Milliseconds of a 90 kHz time.
fn ms(t: u64) -> u64 {
    t / 90
}

impl Muxer for CmafMuxer {
    const TRACKS_IN_INIT: bool = true;

    fn tracks(&mut self, tracks: &Tracks) {
        if self.inner.is_some() && self.declared.as_ref() == Some(tracks) {
            return;
        }
        let mut inner = mp4::Muxer::new();
        if tracks.video.is_some() {
            if let Some(Tag::VideoConfig(c)) =
                header(MediaKind::Video, tracks.video_header.as_ref())
            {
                inner.set_video(c);
            }
        }
        if tracks.audio.is_some() {
            if let Some(Tag::AudioConfig(c)) =
                header(MediaKind::Audio, tracks.audio_header.as_ref())
            {
                inner.set_audio(c);
            }
        }
        self.inner = Some(inner);
        self.declared = Some(tracks.clone());
        self.init_due = true;
    }

    fn video(&mut self, sample: &VideoSample<'_>, _config: &VideoConfig) {
        let cts = (sample.pts as i64).saturating_sub(sample.dts as i64) / 90;
        let sample = Sample {
            dts: ms(sample.dts),
            cts: cts.clamp(i32::MIN.into(), i32::MAX.into()) as i32,
            sync: sample.keyframe,
            data: Bytes::copy_from_slice(sample.data),
        };
        if let Some(w) = self.inner.as_mut() {
            w.push_video(sample);
        }
    }

    fn audio(&mut self, sample: &AudioSample<'_>, _config: &AacConfig) {
        let sample = Sample {
            dts: ms(sample.dts),
            cts: 0,
            sync: true,
            data: Bytes::copy_from_slice(sample.data),
        };
        if let Some(w) = self.inner.as_mut() {
            w.push_audio(sample);
        }
    }

    fn init(&mut self) -> Option<Bytes> {
        if !self.init_due {
            return None;
        }
        match self.inner.as_mut()?.init() {
            Ok(Some(init)) => {
                self.init_due = false;
                Some(init)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("hls fmp4 init: {e}");
                None
            }
        }
    }

    fn cut(&mut self, end: u64) -> Bytes {
        let Some(w) = self.inner.as_mut() else {
            return Bytes::new();
        };
        match w.fragment_at(ms(end)) {
            Ok(f) => f.map(|f| f.bytes).unwrap_or_default(),
            Err(e) => {
                tracing::debug!("hls fmp4 fragment: {e}");
                Bytes::new()
            }
        }
    }

    fn finish(&mut self) -> Bytes {
        self.declared = None;
        let Some(mut w) = self.inner.take() else {
            return Bytes::new();
        };
        match w.flush() {
            Ok(f) => f.map(|f| f.bytes).unwrap_or_default(),
            Err(e) => {
                tracing::debug!("hls fmp4 fragment: {e}");
                Bytes::new()
            }
        }
    }
}
