//! The fragmented-MP4 muxer: samples in, an init segment (`ftyp` + `moov` with `mvex`) and
//! fragments (`moof` + `mdat`, every track's samples of a time range) out, built with
//! mp4-atom's typed boxes.
//!
//! Order of calls: [`Muxer::set_video`] / [`Muxer::set_audio`] for the sequence headers,
//! [`Muxer::push_video`] / [`Muxer::push_audio`] for each frame, then [`Muxer::init`] once to take the init segment (it is
//! ready once a frame arrived after the headers), and [`Muxer::fragment`] to cut the samples
//! before a time into a fragment, or [`Muxer::flush`] for all of them at the end. It owns no
//! file and no clock: what to cut when is the caller's plan (a file recorder cuts on each
//! keyframe; HLS's CMAF segments and LL-HLS parts cut with [`Muxer::fragment_at`]).
//!
//! Timescales: video 90 kHz, audio its sample rate; the milliseconds of FLV are converted at
//! each sample's absolute time, so durations never drift. A sample's duration is the time to
//! the next sample of its track: the newest sample of each track waits in the muxer until
//! its successor (or [`Muxer::flush`]) tells how long it lasts.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Audio, Avc1, Codec, Dinf, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Hvc1, Mdhd, Mdia, Mfhd, Minf,
    Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

use super::tag::{AudioConfig, Sample, VideoCodec, VideoConfig};

const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
const VIDEO_TIMESCALE: u32 = 90_000;
/// `sample_depends_on` = 2 (depends on no other), not a non-sync sample.
const SYNC_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on` = 1, `sample_is_non_sync_sample`.
const NON_SYNC_FLAGS: u32 = 0x0101_0000;
/// An AAC frame's 1024 samples at 44.1 kHz, and a 25 fps frame: the last sample's duration
/// when a track has only one.
const DEFAULT_AUDIO_MS: u64 = 23;
const DEFAULT_VIDEO_MS: u64 = 40;

/// Why the muxer could not build a box.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// mp4-atom refused a box (a value out of its field's range).
    #[error("encoding {0}: {1}")]
    Encode(&'static str, mp4_atom::Error),
}

#[derive(Debug)]
struct Track {
    id: u32,
    timescale: u32,
    /// Samples not yet in a fragment, in decode order; the newest has no duration yet.
    queue: VecDeque<Sample>,
    /// The duration of the last sample cut, for a final sample with no successor.
    last_ms: u64,
}

impl Track {
    fn new(id: u32, timescale: u32, default_ms: u64) -> Self {
        Self {
            id,
            timescale,
            queue: VecDeque::new(),
            last_ms: default_ms,
        }
    }

    fn ticks(&self, ms: u64) -> u64 {
        (u128::from(ms) * u128::from(self.timescale) / 1000).min(u128::from(u64::MAX)) as u64
    }
}

/// What one fragment holds, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `moof` then `mdat`, contiguous.
    pub bytes: Bytes,
    /// The earliest decode time in it, ms.
    pub start: u64,
    /// The end of its last sample, ms.
    pub end: u64,
}

/// One stream's fragmented-MP4 muxer.
#[derive(Debug, Default)]
pub struct Muxer {
    video_config: Option<VideoConfig>,
    audio_config: Option<AudioConfig>,
    video: Option<Track>,
    audio: Option<Track>,
    /// The init segment has been taken: the track set is fixed.
    started: bool,
    /// A video track's first sync sample has arrived (samples before it are dropped).
    synced: bool,
    sequence: u32,
}

impl Muxer {
    /// A muxer with no track yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the video track's configuration. Once the init segment is out, a different one
    /// cannot apply to this file: false tells the caller to start a new one.
    pub fn set_video(&mut self, config: VideoConfig) -> bool {
        self.set(config, |m| &mut m.video_config)
    }

    /// Sets the audio track's configuration; false as for [`Muxer::set_video`].
    pub fn set_audio(&mut self, config: AudioConfig) -> bool {
        self.set(config, |m| &mut m.audio_config)
    }

    fn set<T: PartialEq>(&mut self, config: T, slot: impl Fn(&mut Self) -> &mut Option<T>) -> bool {
        let started = self.started;
        let slot = slot(self);
        if started {
            return slot.as_ref() == Some(&config);
        }
        *slot = Some(config);
        true
    }

    /// True once the file has a video track (its header came before the first frame).
    pub fn has_video(&self) -> bool {
        self.video_config.is_some()
    }

    /// True when the init segment could be taken: a header arrived and the track set is
    /// decided by a first frame.
    fn tracks_decided(&self) -> bool {
        self.video.is_some() || self.audio.is_some()
    }

    /// Queues a video frame. Frames before the first keyframe, and frames of a track with no
    /// configuration (or one that came after the init segment), are dropped.
    pub fn push_video(&mut self, sample: Sample) {
        if self.video_config.is_none() || (self.started && self.video.is_none()) {
            return;
        }
        if !self.synced && !sample.sync {
            return;
        }
        self.synced = true;
        let track = self
            .video
            .get_or_insert_with(|| Track::new(VIDEO_TRACK, VIDEO_TIMESCALE, DEFAULT_VIDEO_MS));
        push(track, sample);
    }

    /// Queues an audio frame, on the same terms as [`Muxer::push_video`]; with a video track,
    /// audio waits for its first keyframe so that the file starts decodable.
    pub fn push_audio(&mut self, sample: Sample) {
        let Some(config) = &self.audio_config else {
            return;
        };
        if (self.started && self.audio.is_none()) || (self.video_config.is_some() && !self.synced) {
            return;
        }
        let rate = config.sample_rate;
        let track = self
            .audio
            .get_or_insert_with(|| Track::new(AUDIO_TRACK, rate, DEFAULT_AUDIO_MS));
        push(track, sample);
    }

    /// The init segment, once: `ftyp` and a `moov` with the tracks that have frames, empty
    /// sample tables and `mvex`. `None` before the first frame, and after it was taken.
    pub fn init(&mut self) -> Result<Option<Bytes>, MuxError> {
        if self.started || !self.tracks_decided() {
            return Ok(None);
        }
        self.started = true;
        // Every track with a header is in the file, even one whose first frame is still to
        // come (audio behind the first keyframe).
        if self.video_config.is_some() {
            self.video
                .get_or_insert_with(|| Track::new(VIDEO_TRACK, VIDEO_TIMESCALE, DEFAULT_VIDEO_MS));
        }
        if let Some(config) = &self.audio_config {
            let rate = config.sample_rate;
            self.audio
                .get_or_insert_with(|| Track::new(AUDIO_TRACK, rate, DEFAULT_AUDIO_MS));
        }
        let mut out = Vec::new();
        let mut brands: Vec<FourCC> = vec![b"isom".into(), b"iso6".into(), b"mp41".into()];
        let mut traks = Vec::new();
        let mut trex = Vec::new();
        if let (Some(track), Some(config)) = (&self.video, &self.video_config) {
            let (codec, brand): (Codec, FourCC) = match &config.codec {
                VideoCodec::Avc(avcc) => (
                    Avc1 {
                        visual: visual(config),
                        avcc: avcc.clone(),
                        ..Default::default()
                    }
                    .into(),
                    b"avc1".into(),
                ),
                VideoCodec::Hevc(hvcc) => (
                    Hvc1 {
                        visual: visual(config),
                        hvcc: hvcc.clone(),
                        ..Default::default()
                    }
                    .into(),
                    b"hvc1".into(),
                ),
            };
            brands.push(brand);
            let tkhd = Tkhd {
                track_id: track.id,
                enabled: true,
                in_movie: true,
                width: config.width.into(),
                height: config.height.into(),
                ..Default::default()
            };
            let minf = Minf {
                vmhd: Some(Vmhd::default()),
                ..minf(codec)
            };
            traks.push(trak(tkhd, track.timescale, b"vide", "VideoHandler", minf));
            trex.push(trex_of(track.id));
        }
        if let (Some(track), Some(config)) = (&self.audio, &self.audio_config) {
            let tkhd = Tkhd {
                track_id: track.id,
                alternate_group: 1,
                enabled: true,
                in_movie: true,
                volume: 1.into(),
                ..Default::default()
            };
            let minf = Minf {
                smhd: Some(Smhd::default()),
                ..minf(mp4a(config).into())
            };
            traks.push(trak(tkhd, track.timescale, b"soun", "SoundHandler", minf));
            trex.push(trex_of(track.id));
        }
        let ftyp = Ftyp {
            major_brand: b"isom".into(),
            minor_version: 512,
            compatible_brands: std::mem::take(&mut brands),
        };
        ftyp.encode(&mut out)
            .map_err(|e| MuxError::Encode("ftyp", e))?;
        let moov = Moov {
            mvhd: Mvhd {
                timescale: 1000,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: AUDIO_TRACK + 1,
                ..Default::default()
            },
            mvex: Some(Mvex { mehd: None, trex }),
            trak: traks,
            ..Default::default()
        };
        moov.encode(&mut out)
            .map_err(|e| MuxError::Encode("moov", e))?;
        Ok(Some(Bytes::from(out)))
    }

    /// Cuts every sample that starts before `until` ms and whose duration is known (its
    /// successor was pushed: push a keyframe, then cut at its time) into one
    /// fragment: a `moof` with a `traf` per track (its `tfdt` the track's first decode time)
    /// and one `mdat`. `None` when there is no such sample, or before the init segment.
    pub fn fragment(&mut self, until: u64) -> Result<Option<Fragment>, MuxError> {
        self.cut(Some(until), false)
    }

    /// Cuts as [`Muxer::fragment`] does, except that the newest video sample, whose
    /// successor is still to come, ends at `until`: a live packager (HLS's CMAF segments and
    /// parts) cuts before it pushes the frame at `until`, and a player must have that last
    /// frame now, not one part later. Audio's newest sample still waits for its successor:
    /// AAC frames have a fixed length a cut must not change.
    pub fn fragment_at(&mut self, until: u64) -> Result<Option<Fragment>, MuxError> {
        self.cut(Some(until), true)
    }

    /// Cuts everything queued, the newest sample of each track lasting as long as the one
    /// before it: the end of a file.
    pub fn flush(&mut self) -> Result<Option<Fragment>, MuxError> {
        self.cut(None, false)
    }

    fn cut(&mut self, until: Option<u64>, close_video: bool) -> Result<Option<Fragment>, MuxError> {
        if !self.started {
            return Ok(None);
        }
        let mut runs: Vec<(u32, u64, Vec<TrunEntry>, Vec<Bytes>)> = Vec::new();
        let (mut start, mut end) = (u64::MAX, 0u64);
        for track in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            let mut entries = Vec::new();
            let mut data = Vec::new();
            let mut base = None;
            while let Some(first) = track.queue.front() {
                if until.is_some_and(|u| first.dts >= u) {
                    break;
                }
                let next_dts = match (track.queue.get(1), until) {
                    (Some(next), _) => next.dts,
                    // `first.dts < u` was checked above, so the duration is positive.
                    (None, Some(u)) if close_video && track.id == VIDEO_TRACK => u,
                    (None, Some(_)) => break,
                    (None, None) => first.dts.saturating_add(track.last_ms),
                };
                let sample = track.queue.pop_front().expect("front checked above");
                track.last_ms = next_dts - sample.dts;
                let dts = track.ticks(sample.dts);
                base.get_or_insert(dts);
                let pts = track.ticks(sample.dts.saturating_add_signed(i64::from(sample.cts)));
                start = start.min(sample.dts);
                end = end.max(next_dts);
                entries.push(TrunEntry {
                    duration: Some(track.ticks(next_dts).saturating_sub(dts) as u32),
                    size: Some(sample.data.len() as u32),
                    flags: Some(if sample.sync {
                        SYNC_FLAGS
                    } else {
                        NON_SYNC_FLAGS
                    }),
                    cts: Some(
                        (pts as i64)
                            .saturating_sub(dts as i64)
                            .clamp(i32::MIN.into(), i32::MAX.into()),
                    ),
                });
                data.push(sample.data);
            }
            if let Some(base) = base {
                runs.push((track.id, base, entries, data));
            }
        }
        if runs.is_empty() {
            return Ok(None);
        }
        self.sequence += 1;
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence,
            },
            traf: runs
                .iter()
                .map(|(id, base, entries, _)| Traf {
                    tfhd: Tfhd {
                        track_id: *id,
                        default_base_is_moof: true,
                        ..Default::default()
                    },
                    tfdt: Some(Tfdt {
                        base_media_decode_time: *base,
                    }),
                    trun: vec![Trun {
                        data_offset: Some(0),
                        samples: TrunSamples::Explicit(entries.clone()),
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        // The data offsets count from the moof's first byte, so its size must be known
        // first; they are fixed-width fields, so a second encoding keeps the size.
        let mut probe = Vec::new();
        moof.encode(&mut probe)
            .map_err(|e| MuxError::Encode("moof", e))?;
        let mut offset = probe.len() + 8;
        for (traf, (_, _, _, data)) in moof.traf.iter_mut().zip(&runs) {
            traf.trun[0].data_offset = Some(i32::try_from(offset).unwrap_or(i32::MAX));
            offset += data.iter().map(Bytes::len).sum::<usize>();
        }
        let mut head = Vec::with_capacity(probe.len() + 8);
        moof.encode(&mut head)
            .map_err(|e| MuxError::Encode("moof", e))?;
        let mdat_len = offset - probe.len();
        let mut out = BytesMut::with_capacity(probe.len() + mdat_len);
        out.put_slice(&head);
        out.put_u32(u32::try_from(mdat_len).unwrap_or(u32::MAX));
        out.put_slice(b"mdat");
        for (_, _, _, data) in &runs {
            for d in data {
                out.put_slice(d);
            }
        }
        Ok(Some(Fragment {
            bytes: out.freeze(),
            start,
            end,
        }))
    }
}

/// Appends in decode order: a sample stamped before its predecessor is moved up to it, so
/// that durations never go negative.
fn push(track: &mut Track, mut sample: Sample) {
    if let Some(last) = track.queue.back() {
        sample.dts = sample.dts.max(last.dts);
    }
    track.queue.push_back(sample);
}

fn visual(config: &VideoConfig) -> Visual {
    Visual {
        data_reference_index: 1,
        width: config.width,
        height: config.height,
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    }
}

fn mp4a(config: &AudioConfig) -> Mp4a {
    use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
    let asc = &config.asc;
    let (a0, a1) = (
        asc.first().copied().unwrap_or(0),
        asc.get(1).copied().unwrap_or(0),
    );
    Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: config.channels,
            sample_size: 16,
            // The field is 16.16: rates past 65535 Hz (88.2, 96 kHz) keep their true rate in
            // the timescale and the AudioSpecificConfig.
            sample_rate: u16::try_from(config.sample_rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: AUDIO_TRACK as u16,
                dec_config: DecoderConfig {
                    // MPEG-4 audio (ISO/IEC 14496-3), an audio stream.
                    object_type_indication: 0x40,
                    stream_type: 5,
                    dec_specific: Some(DecoderSpecific {
                        profile: a0 >> 3,
                        freq_index: ((a0 & 7) << 1) | (a1 >> 7),
                        chan_conf: (a1 >> 3) & 0x0f,
                        raw: asc.clone(),
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig {},
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    }
}

fn minf(codec: Codec) -> Minf {
    Minf {
        dinf: Dinf {
            dref: Dref {
                entries: vec![Url {
                    location: String::new(),
                }
                .into()],
            },
        },
        stbl: Stbl {
            stsd: Stsd {
                codecs: vec![codec],
            },
            stco: Some(Stco::default()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn trak(tkhd: Tkhd, timescale: u32, handler: &[u8; 4], name: &str, minf: Minf) -> Trak {
    Trak {
        tkhd,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: name.into(),
            },
            minf,
        },
        ..Default::default()
    }
}

fn trex_of(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use mp4_atom::{Any, Decode, Moof, Moov};

    use super::*;
    use crate::flv::FlvReader;
    use crate::media::MediaKind;
    use crate::mp4::tag::{read_tag, Tag};

    /// Muxes the first `secs` of the test media, a fragment cut at each keyframe, as DVR does.
    pub(crate) fn mux_test_media(secs: u64) -> (Bytes, Vec<Fragment>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/media/source.flv");
        let data = std::fs::read(path).expect("the test media lives beside the checkout");
        let mut r = FlvReader::new();
        r.push(&data);
        let mut mux = Muxer::new();
        let (mut init, mut frags) = (None, Vec::new());
        while let Some(t) = r.next_tag().expect("source.flv parses") {
            let ts = u64::from(t.timestamp);
            if ts > secs * 1000 {
                break;
            }
            let kind = MediaKind::from_type_id(t.type_id).expect("media");
            match read_tag(kind, ts, &t.data).expect("valid tags") {
                Tag::VideoConfig(c) => assert!(mux.set_video(c)),
                Tag::AudioConfig(c) => assert!(mux.set_audio(c)),
                Tag::Video(s) => {
                    let cut = s.sync.then_some(s.dts);
                    mux.push_video(s);
                    if let Some(at) = cut {
                        frags.extend(mux.fragment(at).expect("encodes"));
                    }
                }
                Tag::Audio(s) => mux.push_audio(s),
                Tag::Other => {}
            }
            if init.is_none() {
                init = mux.init().expect("encodes");
            }
        }
        frags.extend(mux.flush().expect("encodes"));
        (init.expect("an init segment"), frags)
    }

    #[test]
    fn init_then_fragments_decode_and_tile_the_timeline() {
        let (init, frags) = mux_test_media(9);
        let mut buf = init.as_ref();
        let Any::Ftyp(_) = Any::decode(&mut buf).expect("ftyp") else {
            panic!("no ftyp first")
        };
        let moov = Moov::decode(&mut buf).expect("moov");
        assert!(buf.is_empty());
        assert_eq!(moov.trak.len(), 2, "video and audio");
        assert_eq!(moov.mvex.expect("mvex").trex.len(), 2);
        assert!(frags.len() >= 4, "one per 2 s GOP: {}", frags.len());
        let mut next_base = [None, None];
        let mut last_end = 0;
        for (i, f) in frags.iter().enumerate() {
            assert!(f.start >= last_end.min(f.start) && f.end > f.start);
            last_end = f.end;
            let mut buf = f.bytes.as_ref();
            let moof = Moof::decode(&mut buf).expect("moof");
            assert_eq!(moof.mfhd.sequence_number, i as u32 + 1);
            let mdat_len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert_eq!(&buf[4..8], b"mdat");
            assert_eq!(mdat_len, buf.len(), "one mdat, sized to the end");
            let moof_len = f.bytes.len() - buf.len();
            let mut data_end = moof_len + 8;
            for traf in &moof.traf {
                let trun = &traf.trun[0];
                assert_eq!(
                    trun.data_offset,
                    Some(data_end as i32),
                    "runs follow each other"
                );
                let size: u32 = trun.samples.iter().map(|s| s.size.unwrap()).sum();
                data_end += size as usize;
                let t = traf.tfhd.track_id as usize - 1;
                let base = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                if let Some(expected) = next_base[t] {
                    assert_eq!(base, expected, "track {t}: fragments tile the timeline");
                }
                let dur: u64 = trun
                    .samples
                    .iter()
                    .map(|s| u64::from(s.duration.unwrap()))
                    .sum();
                next_base[t] = Some(base + dur);
                if t == 0 {
                    let first = trun.samples.get(0).unwrap();
                    assert_eq!(
                        first.flags,
                        Some(SYNC_FLAGS),
                        "video fragments open on a keyframe"
                    );
                }
            }
            assert_eq!(data_end, f.bytes.len(), "the mdat holds exactly the runs");
        }
        // About 9 s of video at 90 kHz.
        let video_end = next_base[0].unwrap();
        assert!(
            (8 * 90_000..=10 * 90_000).contains(&video_end),
            "{video_end}"
        );
    }

    #[test]
    fn nothing_before_the_first_keyframe_and_no_track_added_late() {
        let mut mux = Muxer::new();
        let sample = |dts, sync| Sample {
            dts,
            cts: 0,
            sync,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        };
        mux.push_video(sample(0, true));
        assert_eq!(mux.init().unwrap(), None, "no config, no track");
        let avc = match read_tag(
            MediaKind::Video,
            0,
            &Bytes::from_static(super::super::tag::tests::AVC_HEADER),
        )
        .unwrap()
        {
            Tag::VideoConfig(c) => c,
            other => panic!("{other:?}"),
        };
        assert!(mux.set_video(avc.clone()));
        mux.push_video(sample(0, false));
        assert_eq!(mux.init().unwrap(), None, "waits for a keyframe");
        mux.push_video(sample(40, true));
        mux.push_video(sample(80, false));
        assert!(mux.init().unwrap().is_some());
        assert!(mux.init().unwrap().is_none(), "once");
        assert!(mux.set_video(avc.clone()), "the same header again is fine");
        let mut other = avc;
        other.width += 16;
        assert!(!mux.set_video(other), "a new header needs a new file");
        let f = mux.fragment(80).unwrap().expect("the keyframe is complete");
        assert_eq!((f.start, f.end), (40, 80));
        let f = mux.flush().unwrap().expect("the rest");
        assert_eq!(
            (f.start, f.end),
            (80, 120),
            "the last frame lasts as its predecessor"
        );
        assert!(mux.flush().unwrap().is_none());
    }

    #[test]
    fn fragment_at_closes_the_newest_video_frame_but_not_audio() {
        let mut mux = Muxer::new();
        let video = |dts, sync| Sample {
            dts,
            cts: 0,
            sync,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        let Tag::VideoConfig(avc) = read_tag(
            MediaKind::Video,
            0,
            &Bytes::from_static(super::super::tag::tests::AVC_HEADER),
        )
        .unwrap() else {
            panic!("not a video config")
        };
        let Tag::AudioConfig(aac) = read_tag(
            MediaKind::Audio,
            0,
            &Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        )
        .unwrap() else {
            panic!("not an audio config")
        };
        assert!(mux.set_video(avc) && mux.set_audio(aac));
        mux.push_video(video(0, true));
        mux.push_audio(Sample {
            sync: true,
            ..video(10, false)
        });
        mux.push_video(video(40, false));
        assert!(mux.init().unwrap().is_some());
        let f = mux.fragment_at(80).unwrap().expect("both video frames");
        assert_eq!((f.start, f.end), (0, 80), "the frame at 40 ends at the cut");
        let moof = Moof::decode(&mut f.bytes.as_ref()).expect("moof");
        assert_eq!(
            moof.traf.len(),
            1,
            "the lone audio frame waits for its length"
        );
        assert_eq!(moof.traf[0].trun[0].samples.len(), 2);
        assert!(
            mux.fragment_at(80).unwrap().is_none(),
            "nothing before 80 is left"
        );
    }

    #[test]
    fn hevc_gets_an_hvc1_entry_with_its_record() {
        // libheif's hvcC (from mp4-atom's tests), behind a legacy FLV HEVC header.
        const HVCC: &[u8] = &[
            0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78, 0xf0,
            0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x19,
            0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00,
            0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78, 0x99, 0x8a, 0x02, 0x40, 0x21, 0x00, 0x01,
            0x00, 0x30, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
            0x03, 0x00, 0x00, 0x03, 0x00, 0x78, 0xa0, 0x02, 0x80, 0x80, 0x35, 0x9f, 0x59, 0x66,
            0x62, 0xa4, 0x91, 0x26, 0xbf, 0xfc, 0x1a, 0xb0, 0x1a, 0xac, 0x04, 0x00, 0x00, 0x03,
            0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x64, 0x20, 0x22, 0x00, 0x01, 0x00, 0x07, 0x44,
            0x01, 0xc1, 0x72, 0xb6, 0x62, 0x40,
        ];
        let header = Bytes::from([&[0x1c, 0, 0, 0, 0][..], HVCC].concat());
        let Tag::VideoConfig(config) = read_tag(MediaKind::Video, 0, &header).expect("valid")
        else {
            panic!("not a video config")
        };
        let mut mux = Muxer::new();
        assert!(mux.set_video(config));
        let frame = Bytes::from_static(&[0x1c, 1, 0, 0, 40, 0, 0, 0, 1, 0x26]);
        let Tag::Video(sample) = read_tag(MediaKind::Video, 0, &frame).expect("valid") else {
            panic!("not a frame")
        };
        mux.push_video(sample);
        let init = mux.init().expect("encodes").expect("an init segment");
        let mut buf = init.as_ref();
        let _ = Any::decode(&mut buf).expect("ftyp");
        let moov = Moov::decode(&mut buf).expect("moov");
        let Codec::Hvc1(hvc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not hvc1")
        };
        let mut record = Vec::new();
        mp4_atom::Atom::encode_body(&hvc1.hvcc, &mut record).expect("encodes");
        assert_eq!(record, HVCC, "the publisher's record, as it came");
        let f = mux.flush().expect("encodes").expect("the frame");
        let moof = Moof::decode(&mut f.bytes.as_ref()).expect("moof");
        let first = moof.traf[0].trun[0].samples.get(0).expect("a sample");
        assert_eq!(
            (first.cts, first.flags),
            (Some(3600), Some(SYNC_FLAGS)),
            "40 ms at 90 kHz"
        );
    }
}
