//! The segmenter: one per stream, sans-IO. Frames go in ([`Segmenter::handle_frame`], with
//! the wall clock passed in for file names), segments, parts and playlists come out
//! ([`Segmenter::poll_output`]). It cuts on keyframes once `hls_fragment * hls_td_ratio` has
//! passed (any video frame with `hls_wait_keyframe off`), and on any audio frame once
//! `hls_fragment * hls_aof_ratio` has (which is how pure-audio streams are cut); it keeps the
//! newest segments that cover `hls_window`, marks the first segment after a republish or a
//! codec change with `#EXT-X-DISCONTINUITY`, and never ends a live playlist.
//!
//! The container is a [`Muxer`]: the segmenter decides where segments start and hands the
//! muxer samples; [`super::ts::TsMuxer`] writes MPEG-TS, [`super::cmaf::CmafMuxer`] CMAF,
//! whose init segments it names and lists with `#EXT-X-MAP`. With LL-HLS (`part_ms`), each
//! segment is also cut into parts at the first video frame (audio frame, for pure audio)
//! `part_ms` after the last part began; the playlist lists the parts of the segments within
//! three target durations of its end, hints the part being written and advertises blocking
//! reloads, whose bookkeeping ([`Edge`]) goes out with each playlist. It owns no file,
//! socket or clock.

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::es::{self, AacConfig, AudioTag, VideoConfig, VideoPacket};
use super::mux::{AudioSample, Muxer, Tracks, VideoSample};
use super::reload::{Edge, Hint};
use super::ts::TsMuxer;
use crate::media::MediaKind;

/// The shortest segment SRS keeps: shorter ones are dropped at unpublish, and no cut
/// happens before twice this (`SRS_HLS_SEGMENT_MIN_DURATION`). It is also the shortest part,
/// so that a dropped segment never had a part listed.
const MIN_SEGMENT_MS: u64 = 100;
/// Segments kept fetchable after they left the playlist: a player that read the previous
/// playlist may still ask for them. Parts stay fetchable as long after they left it.
const EXPIRED_KEPT: usize = 2;
/// Parts are listed for the segments within this many target durations of the playlist's
/// end (RFC 8216bis 4.4.4.9), and `PART-HOLD-BACK` is this many part targets (at least two,
/// three recommended).
const PART_SPAN: u64 = 3;
/// LL-HLS's skip boundary (`CAN-SKIP-UNTIL`) in target durations, the least the spec allows
/// (RFC 8216bis 4.4.3.8): a delta playlist replaces the segments that start further than this
/// from the playlist's end with one `#EXT-X-SKIP`.
const SKIP_SPAN: u64 = 6;

/// The settings of one stream's segmenter, from its vhost's `hls {}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `hls_fragment`, ms.
    pub fragment_ms: u64,
    /// `hls_td_ratio`.
    pub td_ratio: f64,
    /// `hls_aof_ratio`.
    pub aof_ratio: f64,
    /// `hls_window`, ms.
    pub window_ms: u64,
    /// `hls_wait_keyframe`.
    pub wait_keyframe: bool,
    /// `hls_vcodec vn` turns video off.
    pub video: bool,
    /// `hls_acodec an` turns audio off.
    pub audio: bool,
    /// The playlist's name under `hls_path` (`hls_m3u8_file` with vhost, app and stream).
    pub m3u8: String,
    /// `hls_ts_file` with vhost, app and stream; `[seq]`, `[duration]` and the time
    /// variables are filled per segment.
    pub ts_file: String,
    /// `hls_entry_prefix`.
    pub entry_prefix: String,
    /// LL-HLS (`hls_ll`): the part target (`hls_ll_part`), ms; 0 for no parts. Parts are
    /// never shorter than 100 ms.
    pub part_ms: u64,
}

/// A finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub seq: u64,
    /// Milliseconds.
    pub duration_ms: u64,
    /// Path under `hls_path`, which is also the URL path.
    pub name: String,
    /// The line in the playlist.
    pub uri: String,
    /// Preceded by `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The name of its init segment (`#EXT-X-MAP`), for a container that has one.
    pub map: Option<String>,
    /// Its parts, while they are listed or still served (LL-HLS).
    pub parts: Vec<Part>,
    /// The container bytes, shared by every request; none in the segmenter's window, which
    /// lists segments and leaves holding their bytes to whoever serves them.
    pub data: Bytes,
}

impl Segment {
    /// The segment as the window lists it: without its bytes or its parts' bytes.
    fn listing(&self) -> Self {
        let parts = self
            .parts
            .iter()
            .map(|p| Part {
                data: Bytes::new(),
                ..p.clone()
            })
            .collect();
        Self {
            parts,
            data: Bytes::new(),
            ..self.clone()
        }
    }
}

/// A part of a segment (LL-HLS), served from memory only.
#[derive(Debug, Clone)]
pub struct Part {
    /// The URL path (without `/`).
    pub name: String,
    /// Its `URI` in the playlist.
    pub uri: String,
    /// Milliseconds.
    pub duration_ms: u64,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The container bytes.
    pub data: Bytes,
}

/// A playlist's new text.
#[derive(Debug, Clone)]
pub struct Playlist {
    /// What HTTP serves.
    pub text: Bytes,
    /// LL-HLS's Playlist Delta Update, what HTTP serves for `_HLS_skip=YES` (or `v2`): `text`
    /// with the segments older than the skip boundary replaced by `#EXT-X-SKIP`; `None` while
    /// none is that old (or without LL-HLS), when `text` is the answer.
    pub delta: Option<Bytes>,
    /// What goes to the file, when that changed: without LL-HLS's tags, whose parts and
    /// blocking reloads only ringcast's HTTP server has.
    pub file: Option<Bytes>,
    /// Its live edge, for blocking reloads.
    pub edge: Edge,
}

/// What the segmenter has for its driver.
#[derive(Debug, Clone)]
pub enum Output {
    /// An init segment (its name and bytes), to serve and to store.
    Init(String, Bytes),
    /// A new segment, to serve and to store.
    Segment(Segment),
    /// A new part, to serve (before the playlist that lists it).
    Part(Part),
    /// The playlist changed.
    Playlist(Playlist),
    /// A segment or init segment left the playlist (named `name`); files of it may go
    /// (`hls_cleanup`).
    Expired(String),
    /// A segment, part or init segment left the grace period: stop serving it.
    Forget(String),
}

/// The segment being written.
#[derive(Debug)]
struct Open {
    seq: u64,
    start_ms: u64,
    last_ms: u64,
    /// The name with everything but `[duration]` filled in.
    name: String,
    discontinuity: bool,
    map: Option<String>,
    parts: Vec<Part>,
    /// Where the part being written began.
    part_start_ms: u64,
    /// Whether the part being written began with a keyframe; `None` before its first sample.
    part_key: Option<bool>,
}

/// One stream's HLS segmenter.
#[derive(Debug)]
pub struct Segmenter<M: Muxer = TsMuxer> {
    opts: Options,
    muxer: M,
    video: Option<VideoConfig>,
    audio: Option<AacConfig>,
    video_header: Option<Bytes>,
    audio_header: Option<Bytes>,
    declared: Tracks,
    open: Option<Open>,
    /// The listed segments, without their bytes ([`Segment::listing`]).
    window: VecDeque<Segment>,
    /// Names of segments out of the window but still served.
    expired: VecDeque<String>,
    /// Parts no longer listed but still served, oldest first, with the segment they are of.
    expired_parts: VecDeque<(u64, String)>,
    /// Init segments still served, oldest first; the newest is the current one.
    maps: VecDeque<String>,
    inits_made: u64,
    next_seq: u64,
    /// Count of discontinuities that left the window (`#EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_seq: u64,
    discontinuity_next: bool,
    /// A keyframe was written since the video configuration: frames before one are dropped,
    /// no decoder could use them.
    keyframe_seen: bool,
    clock: Unwrap,
    out: VecDeque<Output>,
}

/// Unwraps RTMP's 32-bit millisecond timestamps onto 64 bits.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<u32>,
    high: u64,
}

impl Unwrap {
    fn ms(&mut self, ts: u32) -> u64 {
        if let Some(last) = self.last {
            if ts < last && last - ts > 1 << 31 {
                self.high += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.high + u64::from(ts)
    }
}

impl Segmenter<TsMuxer> {
    /// A segmenter writing MPEG-TS.
    pub fn new(opts: Options) -> Self {
        Self::with_muxer(opts, TsMuxer::new())
    }
}

impl<M: Muxer> Segmenter<M> {
    /// A segmenter writing through `muxer`.
    pub fn with_muxer(opts: Options, muxer: M) -> Self {
        Self {
            opts,
            muxer,
            video: None,
            audio: None,
            video_header: None,
            audio_header: None,
            declared: Tracks::default(),
            open: None,
            window: VecDeque::new(),
            expired: VecDeque::new(),
            expired_parts: VecDeque::new(),
            maps: VecDeque::new(),
            inits_made: 0,
            next_seq: 0,
            discontinuity_seq: 0,
            discontinuity_next: false,
            keyframe_seen: false,
            clock: Unwrap::default(),
            out: VecDeque::new(),
        }
    }

    /// The settings it runs with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Takes the settings of a new publish (a reload applies at the next publish).
    pub fn set_options(&mut self, opts: Options) {
        self.opts = opts;
    }

    /// The sequence number of the newest finished segment and the count in the playlist.
    pub fn status(&self) -> (Option<u64>, usize) {
        (self.window.back().map(|s| s.seq), self.window.len())
    }

    /// The next output, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The part target, ms, with LL-HLS.
    fn part_ms(&self) -> Option<u64> {
        (self.opts.part_ms > 0).then_some(self.opts.part_ms.max(MIN_SEGMENT_MS))
    }

    /// Takes one frame of the stream (an FLV tag body of `kind`, its timestamp in ms); `now_ms`
    /// is the wall clock (Unix ms), for the time variables of segment names.
    pub fn handle_frame(&mut self, kind: MediaKind, timestamp: u32, payload: &[u8], now_ms: u64) {
        let ms = self.clock.ms(timestamp);
        match kind {
            MediaKind::Video if self.opts.video => self.video_frame(ms, payload, now_ms),
            MediaKind::Audio if self.opts.audio => self.audio_frame(ms, payload, now_ms),
            _ => {}
        }
    }

    /// The publisher left: the open segment is finished (dropped if under 100 ms), and the
    /// first segment of the next publish starts with a discontinuity.
    pub fn handle_unpublish(&mut self) {
        if let Some(open) = &self.open {
            let end = open.last_ms;
            self.reap(end, true);
        } else {
            // Nothing open holds samples; the container starts over at the next publish.
            let _ = self.muxer.finish();
        }
        self.discontinuity_next = true;
        self.video = None;
        self.audio = None;
        self.video_header = None;
        self.audio_header = None;
        self.clock = Unwrap::default();
    }

    fn video_frame(&mut self, ms: u64, payload: &[u8], now_ms: u64) {
        let Some(tag) = es::video_tag(payload) else {
            return;
        };
        match tag.packet {
            VideoPacket::Config => {
                let config = es::video_config(tag.codec, tag.data);
                self.set_video(config, payload);
            }
            VideoPacket::Frame => {
                let Some(config) = self.video.as_ref().filter(|c| c.codec == tag.codec) else {
                    return;
                };
                let config = config.clone();
                if !self.keyframe_seen && !tag.keyframe {
                    return;
                }
                if let Some(open) = &self.open {
                    let elapsed = ms.saturating_sub(open.start_ms);
                    let due = elapsed >= 2 * MIN_SEGMENT_MS
                        && elapsed as f64 >= self.opts.fragment_ms as f64 * self.opts.td_ratio;
                    if due && (tag.keyframe || !self.opts.wait_keyframe) {
                        self.reap(ms, false);
                    } else {
                        self.cut_part_if_due(ms);
                    }
                }
                if !self.ensure_open(ms, now_ms) {
                    return;
                }
                self.keyframe_seen = true;
                let open = self.open.as_mut().expect("opened above");
                open.last_ms = open.last_ms.max(ms);
                open.part_key.get_or_insert(tag.keyframe);
                let dts = ms * 90;
                let pts = (ms as i64 + i64::from(tag.cts)).max(0) as u64 * 90;
                let sample = VideoSample {
                    dts,
                    pts,
                    keyframe: tag.keyframe,
                    data: tag.data,
                };
                self.muxer.video(&sample, &config);
                self.take_init();
            }
            VideoPacket::Other => {}
        }
    }

    fn audio_frame(&mut self, ms: u64, payload: &[u8], now_ms: u64) {
        match es::audio_tag(payload) {
            Some(AudioTag::Config(asc)) => {
                let config = es::aac_config(asc);
                if config != self.audio {
                    if self.audio.is_some() {
                        self.discontinuity_next = true;
                    }
                    self.audio = config;
                    self.audio_header = config.map(|_| Bytes::copy_from_slice(payload));
                    self.redeclare();
                }
            }
            Some(AudioTag::Frame(data)) => {
                let Some(config) = self.audio else {
                    return;
                };
                if let Some(open) = &self.open {
                    let elapsed = ms.saturating_sub(open.start_ms);
                    if elapsed >= 2 * MIN_SEGMENT_MS
                        && elapsed as f64 >= self.opts.fragment_ms as f64 * self.opts.aof_ratio
                    {
                        self.reap(ms, false);
                    } else if self.video.is_none() && !data.is_empty() {
                        // Parts follow the video frames when there is video, so that each
                        // part holds whole frames of it; an empty frame is not written, so it
                        // ends nothing.
                        self.cut_part_if_due(ms);
                    }
                }
                if data.is_empty() || !self.ensure_open(ms, now_ms) {
                    return;
                }
                let pure_audio = self.video.is_none();
                let open = self.open.as_mut().expect("opened above");
                open.last_ms = open.last_ms.max(ms);
                if pure_audio {
                    open.part_key.get_or_insert(true);
                }
                self.muxer
                    .audio(&AudioSample { dts: ms * 90, data }, &config);
                self.take_init();
            }
            None => {}
        }
    }

    fn set_video(&mut self, config: Option<VideoConfig>, header: &[u8]) {
        if config == self.video {
            return;
        }
        if self.video.is_some() {
            self.discontinuity_next = true;
        }
        self.video_header = config.as_ref().map(|_| Bytes::copy_from_slice(header));
        self.video = config;
        self.keyframe_seen = false;
        self.redeclare();
    }

    /// Declares changed tracks to the open segment's muxer; a container that declares them
    /// in its init segment gets a new segment for them instead.
    fn redeclare(&mut self) {
        let tracks = self.tracks();
        let Some(open) = &self.open else {
            return;
        };
        if tracks == self.declared {
            return;
        }
        if M::TRACKS_IN_INIT {
            let end = open.last_ms;
            self.reap(end, true);
            self.discontinuity_next = true;
        } else {
            self.muxer.tracks(&tracks);
            self.declared = tracks;
        }
    }

    fn tracks(&self) -> Tracks {
        Tracks {
            video: self.video.clone(),
            audio: self.audio,
            video_header: self.video_header.clone(),
            audio_header: self.audio_header.clone(),
        }
    }

    /// Opens a segment at `ms` if none is open; false when there is nothing to declare.
    fn ensure_open(&mut self, ms: u64, now_ms: u64) -> bool {
        if self.open.is_some() {
            return true;
        }
        let tracks = self.tracks();
        if tracks.video.is_none() && tracks.audio.is_none() {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let name = fill_time(
            &self.opts.ts_file.replace("[seq]", &seq.to_string()),
            now_ms,
        );
        self.open = Some(Open {
            seq,
            start_ms: ms,
            last_ms: ms,
            name,
            discontinuity: std::mem::take(&mut self.discontinuity_next),
            map: self.maps.back().cloned(),
            parts: Vec::new(),
            part_start_ms: ms,
            part_key: None,
        });
        self.muxer.tracks(&tracks);
        self.declared = tracks;
        true
    }

    /// Names and hands out a new init segment, if the muxer made one.
    fn take_init(&mut self) {
        let Some(init) = self.muxer.init() else {
            return;
        };
        let name = format!("{}-init-{}.mp4", self.stem(), self.inits_made);
        self.inits_made += 1;
        self.out.push_back(Output::Init(name.clone(), init));
        self.maps.push_back(name.clone());
        if let Some(open) = &mut self.open {
            open.map = Some(name);
        }
    }

    /// The playlist's name without `.m3u8`: the base of part and init names.
    fn stem(&self) -> &str {
        let m3u8 = &self.opts.m3u8;
        m3u8.strip_suffix(".m3u8").unwrap_or(m3u8)
    }

    /// Part `index` of segment `seq`: `[stem]-[seq].[index].m4s` (`.ts` for TS segments).
    fn part_name(&self, seq: u64, index: u64) -> String {
        let ext = if M::TRACKS_IN_INIT { "m4s" } else { "ts" };
        format!("{}-{seq}.{index}.{ext}", self.stem())
    }

    /// With LL-HLS, ends the part being written before the frame at `ms` once it lasted the
    /// part target.
    fn cut_part_if_due(&mut self, ms: u64) {
        let Some(part_ms) = self.part_ms() else {
            return;
        };
        let Some(open) = &self.open else {
            return;
        };
        if ms.saturating_sub(open.part_start_ms) < part_ms {
            return;
        }
        let data = self.muxer.cut(ms * 90);
        self.add_part(data, ms);
        // A part a player may start from declares the tracks again (TS's PAT and PMT; the
        // same tracks again are nothing to a container with an init segment).
        let tracks = self.declared.clone();
        self.muxer.tracks(&tracks);
        let playlist = self.playlist_output(false);
        self.out.push_back(Output::Playlist(playlist));
    }

    /// Lists `data` as the open segment's next part, ending at `end_ms`; a new part starts.
    fn add_part(&mut self, data: Bytes, end_ms: u64) {
        let Some(open) = &self.open else {
            return;
        };
        let (seq, index) = (open.seq, open.parts.len() as u64);
        let name = self.part_name(seq, index);
        let uri = self.uri(&name);
        let open = self.open.as_mut().expect("checked above");
        if !data.is_empty() {
            let part = Part {
                name,
                uri,
                duration_ms: end_ms.saturating_sub(open.part_start_ms),
                independent: open.part_key == Some(true),
                data,
            };
            self.out.push_back(Output::Part(part.clone()));
            open.parts.push(part);
        }
        open.part_start_ms = end_ms;
        open.part_key = None;
    }

    /// Finishes the open segment, ending at `end_ms` (the stream's end with `last`).
    fn reap(&mut self, end_ms: u64, last: bool) {
        if self.open.is_none() {
            return;
        }
        let tail = if last {
            self.muxer.finish()
        } else {
            self.muxer.cut(end_ms * 90)
        };
        let open = self.open.as_ref().expect("checked above");
        // A segment ends no earlier than its last part did (timestamps may step back).
        let end_ms = end_ms.max(open.part_start_ms);
        let duration_ms = end_ms.saturating_sub(open.start_ms);
        if duration_ms < MIN_SEGMENT_MS || (tail.is_empty() && open.parts.is_empty()) {
            // SRS drops what is too short to play and reuses its number (and its parts'
            // names: the parts listed so far are withdrawn, the tail never was).
            let open = self.open.take().expect("checked above");
            self.next_seq = open.seq;
            self.discontinuity_next |= open.discontinuity;
            let listed = !open.parts.is_empty();
            for p in open.parts {
                self.out.push_back(Output::Forget(p.name));
            }
            if listed {
                let playlist = self.playlist_output(false);
                self.out.push_back(Output::Playlist(playlist));
            }
            return;
        }
        let ll = self.part_ms().is_some();
        if ll {
            self.add_part(tail.clone(), end_ms);
        }
        let open = self.open.take().expect("checked above");
        let data = if ll {
            let mut all = BytesMut::with_capacity(open.parts.iter().map(|p| p.data.len()).sum());
            for p in &open.parts {
                all.extend_from_slice(&p.data);
            }
            all.freeze()
        } else {
            tail
        };
        let name = open.name.replace("[duration]", &duration_ms.to_string());
        let segment = Segment {
            seq: open.seq,
            duration_ms,
            uri: self.uri(&name),
            name,
            discontinuity: open.discontinuity,
            map: open.map,
            parts: open.parts,
            data,
        };
        self.window.push_back(segment.listing());
        self.out.push_back(Output::Segment(segment));
        self.shrink();
        self.trim_parts();
        let playlist = self.playlist_output(true);
        self.out.push_back(Output::Playlist(playlist));
    }

    /// Keeps the newest segments whose durations add up to `hls_window`, and the one that
    /// crosses it, as SRS does.
    fn shrink(&mut self) {
        let mut total = 0;
        let mut keep = self.window.len();
        for (i, s) in self.window.iter().enumerate().rev() {
            total += s.duration_ms;
            if total > self.opts.window_ms {
                keep = self.window.len() - i;
                break;
            }
        }
        while self.window.len() > keep {
            let gone = self.window.pop_front().expect("longer than keep");
            if gone.discontinuity {
                self.discontinuity_seq += 1;
            }
            for p in gone.parts {
                self.out.push_back(Output::Forget(p.name));
            }
            self.out.push_back(Output::Expired(gone.name.clone()));
            self.expired.push_back(gone.name);
            if self.expired.len() > EXPIRED_KEPT {
                let forgotten = self.expired.pop_front().expect("not empty");
                self.out.push_back(Output::Forget(forgotten));
            }
        }
        // An init segment goes with the last segment that used it, past the same grace.
        let oldest_used = self.window.front().and_then(|s| s.map.as_ref());
        while self.maps.len() > 1 && self.maps.front() != oldest_used {
            let gone = self.maps.pop_front().expect("longer than one");
            self.out.push_back(Output::Expired(gone.clone()));
            self.out.push_back(Output::Forget(gone));
        }
    }

    /// The target duration, ms: the longest segment, and never under `hls_fragment *
    /// hls_td_ratio`.
    fn target_ms(&self) -> u64 {
        let max_td = self.opts.fragment_ms as f64 * self.opts.td_ratio;
        let longest = self.window.iter().map(|s| s.duration_ms).max().unwrap_or(0);
        ((longest as f64).max(max_td) / 1000.0).ceil() as u64 * 1000
    }

    /// The index in the window of the oldest segment whose parts are listed.
    fn parts_listed_from(&self) -> usize {
        self.starting_within(PART_SPAN * self.target_ms(), 0)
    }

    /// The index in the window of the oldest segment that starts within `span_ms` of the
    /// playlist's end, `after_ms` of media following the window's last segment.
    fn starting_within(&self, span_ms: u64, after_ms: u64) -> usize {
        let mut from_end = after_ms;
        for (i, s) in self.window.iter().enumerate().rev() {
            from_end += s.duration_ms;
            if from_end > span_ms {
                return i + 1;
            }
        }
        0
    }

    /// Parts of segments that left the listing stay served for a while, then go.
    fn trim_parts(&mut self) {
        let from = self.parts_listed_from();
        for s in self.window.iter_mut().take(from) {
            for p in s.parts.drain(..) {
                self.expired_parts.push_back((s.seq, p.name));
            }
        }
        let newest_expired = self.expired_parts.back().map(|(seq, _)| *seq);
        while let Some((seq, _)) = self.expired_parts.front() {
            if newest_expired.is_some_and(|n| n.saturating_sub(*seq) < EXPIRED_KEPT as u64) {
                break;
            }
            let (_, name) = self.expired_parts.pop_front().expect("not empty");
            self.out.push_back(Output::Forget(name));
        }
    }

    /// A segment's line in the playlist, SRS's way: relative to the playlist's folder, after
    /// `hls_entry_prefix` (and the playlist's folder, when the prefix has no trailing `/`).
    fn uri(&self, name: &str) -> String {
        let dir = self.opts.m3u8.rsplit_once('/').map_or("", |(d, _)| d);
        let relative = if dir.is_empty() {
            name
        } else {
            name.strip_prefix(dir)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(name)
        };
        let prefix = &self.opts.entry_prefix;
        let mut uri = prefix.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            uri.push('/');
            if !dir.is_empty() {
                uri.push_str(dir);
                uri.push('/');
            }
        }
        uri.push_str(relative.trim_start_matches('/'));
        uri
    }

    /// The part being written: the open segment's next, or the next segment's first.
    fn hint(&self) -> Hint {
        let at = match &self.open {
            Some(open) => (open.seq, open.parts.len() as u64),
            None => (self.next_seq, 0),
        };
        Hint {
            name: self.part_name(at.0, at.1),
            at,
        }
    }

    /// The playlist as served and, when a segment finished (`segment`), as written to the
    /// file, with its live edge.
    fn playlist_output(&self, segment: bool) -> Playlist {
        let text = self.playlist();
        let ll = self.part_ms().is_some();
        let skip = if ll { self.skippable() } else { 0 };
        let delta = (skip > 0).then(|| self.render(true, skip));
        let file = match (segment, ll) {
            (false, _) => None,
            (true, false) => Some(text.clone()),
            (true, true) => Some(self.render(false, 0)),
        };
        let edge = Edge {
            segment: self.window.back().map(|s| s.seq),
            part: match &self.open {
                Some(o) if !o.parts.is_empty() => Some((o.seq, o.parts.len() as u64 - 1)),
                _ => self
                    .window
                    .back()
                    .filter(|s| !s.parts.is_empty())
                    .map(|s| (s.seq, s.parts.len() as u64 - 1)),
            },
            hint: ll.then(|| self.hint()),
            target_ms: self.target_ms(),
        };
        Playlist {
            text,
            delta,
            file,
            edge,
        }
    }

    /// The live playlist of the window, as HTTP serves it.
    pub fn playlist(&self) -> Bytes {
        self.render(self.part_ms().is_some(), 0)
    }

    /// How many of the window's oldest segments start further than the skip boundary from
    /// the playlist's end (the open segment's parts included).
    fn skippable(&self) -> usize {
        let open_ms = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.duration_ms).sum());
        self.starting_within(SKIP_SPAN * self.target_ms(), open_ms)
    }

    /// The playlist, with LL-HLS's tags when `ll`; its first `skip` segments replaced by an
    /// `#EXT-X-SKIP`, a delta update, when `skip` is not 0.
    fn render(&self, ll: bool, skip: usize) -> Bytes {
        let part_ms = self.part_ms().filter(|_| ll);
        let mut p = String::with_capacity(128 + self.window.len() * 64);
        // EXT-X-SKIP needs protocol version 9 (RFC 8216bis section 7).
        let version = match (skip > 0, M::TRACKS_IN_INIT) {
            (true, _) => 9,
            (false, true) => 7,
            (false, false) => 3,
        };
        let _ = write!(p, "#EXTM3U\n#EXT-X-VERSION:{version}\n");
        let first = self.window.front().map_or(self.next_seq, |s| s.seq);
        let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{first}");
        let _ = writeln!(p, "#EXT-X-TARGETDURATION:{}", self.target_ms() / 1000);
        if let Some(part_ms) = part_ms {
            let _ = writeln!(
                p,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},\
                 CAN-SKIP-UNTIL={:.3}",
                (PART_SPAN * part_ms) as f64 / 1000.0,
                (SKIP_SPAN * self.target_ms()) as f64 / 1000.0
            );
            let _ = writeln!(
                p,
                "#EXT-X-PART-INF:PART-TARGET={:.3}",
                part_ms as f64 / 1000.0
            );
        }
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                p,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        let listed_from = self.parts_listed_from();
        let mut map: Option<&str> = None;
        if skip > 0 {
            let _ = writeln!(p, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
        }
        for (i, s) in self.window.iter().enumerate().skip(skip) {
            self.head(&mut p, &mut map, s.discontinuity, s.map.as_deref());
            if part_ms.is_some() && i >= listed_from {
                write_parts(&mut p, &s.parts);
            }
            let _ = writeln!(
                p,
                "#EXTINF:{:.3}, no desc\n{}",
                s.duration_ms as f64 / 1000.0,
                s.uri
            );
        }
        if part_ms.is_some() {
            if let Some(open) = self.open.as_ref().filter(|o| !o.parts.is_empty()) {
                self.head(&mut p, &mut map, open.discontinuity, open.map.as_deref());
                write_parts(&mut p, &open.parts);
            }
            let hint = self.hint();
            let _ = writeln!(
                p,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                self.uri(&hint.name)
            );
        }
        Bytes::from(p)
    }

    /// The tags before a segment's (or the open segment's parts') lines: a discontinuity, and
    /// the init segment when it is not the one before (`map`).
    fn head<'a>(
        &self,
        p: &mut String,
        map: &mut Option<&'a str>,
        discontinuity: bool,
        m: Option<&'a str>,
    ) {
        if discontinuity {
            p.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(m) = m.filter(|m| *map != Some(*m)) {
            let _ = writeln!(p, "#EXT-X-MAP:URI=\"{}\"", self.uri(m));
            *map = Some(m);
        }
    }

    /// Everything it still serves, as outputs to forget (`hls_dispose`).
    pub fn dispose(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for s in self.window.drain(..) {
            names.extend(s.parts.into_iter().map(|p| p.name));
            names.push(s.name);
        }
        names.extend(self.expired.drain(..));
        names.extend(self.expired_parts.drain(..).map(|(_, n)| n));
        names.extend(self.maps.drain(..));
        names
    }
}

fn write_parts(p: &mut String, parts: &[Part]) {
    for part in parts {
        let _ = write!(
            p,
            "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
            part.duration_ms as f64 / 1000.0,
            part.uri
        );
        p.push_str(if part.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }
}

/// Fills SRS's time variables of a path: `[2006]` (year), `[01]` (month), `[02]` (day),
/// `[15]` (hour), `[04]` (minute), `[05]` (second), `[999]` (millisecond), `[timestamp]`
/// (Unix ms), from `now_ms` in local time as SRS does.
pub fn fill_time(template: &str, now_ms: u64) -> String {
    if !template.contains('[') {
        return template.to_owned();
    }
    let mut s = template.replace("[timestamp]", &now_ms.to_string());
    if !s.contains('[') {
        return s;
    }
    use chrono::{Datelike, Local, TimeZone, Timelike};
    let Some(t) = Local.timestamp_millis_opt(now_ms as i64).single() else {
        return s;
    };
    for (var, value) in [
        ("[2006]", format!("{:04}", t.year())),
        ("[01]", format!("{:02}", t.month())),
        ("[02]", format!("{:02}", t.day())),
        ("[15]", format!("{:02}", t.hour())),
        ("[04]", format!("{:02}", t.minute())),
        ("[05]", format!("{:02}", t.second())),
        ("[999]", format!("{:03}", t.timestamp_subsec_millis())),
    ] {
        s = s.replace(var, &value);
    }
    s
}

/// `template` with `[vhost]`, `[app]` and `[stream]` filled in.
pub fn fill_stream(template: &str, vhost: &str, app: &str, stream: &str) -> String {
    template
        .replace("[vhost]", vhost)
        .replace("[app]", app)
        .replace("[stream]", stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::ts::check_continuity;

    fn opts() -> Options {
        Options {
            fragment_ms: 2000,
            td_ratio: 1.0,
            aof_ratio: 2.1,
            window_ms: 6000,
            wait_keyframe: true,
            video: true,
            audio: true,
            m3u8: "live/s.m3u8".into(),
            ts_file: "live/s-[seq].ts".into(),
            entry_prefix: String::new(),
            part_ms: 0,
        }
    }

    const AVC_CONFIG: &[u8] = &[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0xaa, 1, 0, 1, 0x68,
    ];
    const AAC_CONFIG: &[u8] = &[0xaf, 0, 0x12, 0x10];

    fn video(key: bool) -> Vec<u8> {
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 3];
        v.extend_from_slice(if key { &[0x65, 1, 2] } else { &[0x41, 1, 2] });
        v
    }

    /// `secs` of 25 fps video, a keyframe each second, and AAC frames between.
    fn feed(s: &mut Segmenter, from_ms: u32, secs: u32) {
        s.handle_frame(MediaKind::Video, from_ms, AVC_CONFIG, 0);
        s.handle_frame(MediaKind::Audio, from_ms, AAC_CONFIG, 0);
        for i in 0..secs * 25 {
            let t = from_ms + i * 40;
            s.handle_frame(MediaKind::Video, t, &video(i % 25 == 0), 0);
            s.handle_frame(MediaKind::Audio, t + 20, &[0xaf, 1, 0x21, 0x10], 0);
        }
    }

    fn drain(s: &mut Segmenter) -> (Vec<Segment>, Option<String>, Vec<String>) {
        let (mut segs, mut playlist, mut expired) = (Vec::new(), None, Vec::new());
        while let Some(o) = s.poll_output() {
            match o {
                Output::Segment(seg) => segs.push(seg),
                Output::Playlist(p) => playlist = Some(String::from_utf8(p.text.to_vec()).unwrap()),
                Output::Expired(n) => expired.push(n),
                Output::Init(..) | Output::Part(_) | Output::Forget(_) => {}
            }
        }
        (segs, playlist, expired)
    }

    #[test]
    fn cuts_at_keyframes_past_the_fragment_and_keeps_the_window() {
        let mut s = Segmenter::new(opts());
        feed(&mut s, 0, 11);
        let (segs, playlist, expired) = drain(&mut s);
        assert_eq!(segs.len(), 5, "cut at 2, 4, 6, 8, 10 s");
        for seg in &segs {
            assert_eq!(seg.duration_ms, 2000);
            check_continuity(&seg.data).expect("continuity");
            assert_eq!(seg.data[0], 0x47);
        }
        assert_eq!(segs[1].name, "live/s-1.ts");
        assert_eq!(segs[1].uri, "s-1.ts");
        // 6 s of window: the newest three cover it, and the one that crosses it stays.
        assert_eq!(expired, ["live/s-0.ts"]);
        let playlist = playlist.expect("playlist");
        assert!(
            playlist.starts_with(
                "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-TARGETDURATION:2\n"
            ),
            "{playlist}"
        );
        assert!(
            playlist.contains("#EXTINF:2.000, no desc\ns-4.ts\n"),
            "{playlist}"
        );
        assert!(!playlist.contains("ENDLIST") && !playlist.contains("DISCONTINUITY"));
        assert_eq!(s.status(), (Some(4), 4));
    }

    #[test]
    fn a_republish_is_a_discontinuity_and_numbers_go_on() {
        let mut s = Segmenter::new(opts());
        feed(&mut s, 0, 5);
        s.handle_unpublish();
        let (first, _, _) = drain(&mut s);
        assert_eq!(first.last().map(|s| (s.seq, s.duration_ms)), Some((2, 980)));
        feed(&mut s, 5000, 5);
        let (segs, playlist, _) = drain(&mut s);
        assert_eq!(segs[0].seq, 3);
        assert!(segs[0].discontinuity && !segs[1].discontinuity);
        let playlist = playlist.expect("playlist");
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000, no desc\ns-3.ts\n"),
            "{playlist}"
        );
    }

    #[test]
    fn pure_audio_is_cut_on_time_and_frames_before_a_keyframe_wait() {
        let mut s = Segmenter::new(opts());
        s.handle_frame(MediaKind::Audio, 0, AAC_CONFIG, 0);
        for i in 0..500u32 {
            s.handle_frame(MediaKind::Audio, i * 23, &[0xaf, 1, 0x21], 0);
        }
        let (segs, _, _) = drain(&mut s);
        assert!(!segs.is_empty());
        assert!(segs
            .iter()
            .all(|s| s.duration_ms >= 4200 && s.duration_ms < 4300));

        let mut v = Segmenter::new(opts());
        v.handle_frame(MediaKind::Video, 0, AVC_CONFIG, 0);
        v.handle_frame(MediaKind::Video, 0, &video(false), 0);
        assert!(
            v.open.is_none(),
            "no segment starts on a frame no decoder can use"
        );
    }

    /// The fuzzer's crash "pid 0x0 cc 1 then 3": a segment under 100 ms dropped at an
    /// unpublish took a PAT with it; the next publish's first segment, which the last
    /// unpublish finishes, is a discontinuity, so the counters may jump there.
    #[test]
    fn continuity_may_break_only_at_a_discontinuity() {
        let mut s = Segmenter::new(opts());
        feed(&mut s, 0, 2);
        s.handle_frame(MediaKind::Video, 2000, &video(true), 0);
        s.handle_frame(MediaKind::Video, 2040, &video(false), 0);
        s.handle_unpublish();
        let (kept, _, _) = drain(&mut s);
        assert_eq!(kept.len(), 1, "the 40 ms segment is dropped");
        feed(&mut s, 3000, 1);
        s.handle_unpublish();
        let (next, _, _) = drain(&mut s);
        assert_eq!(next[0].seq, 1, "the dropped segment's number is reused");
        assert!(next[0].discontinuity, "after a dropped segment");
        let joined = [&kept[0].data[..], &next[0].data[..]].concat();
        assert!(check_continuity(&joined).is_err(), "its PAT went with it");
    }

    #[test]
    fn entry_prefix_and_time_variables_as_srs() {
        let mut o = opts();
        o.entry_prefix = "http://cdn".into();
        let s = Segmenter::new(o.clone());
        assert_eq!(s.uri("live/s-1.ts"), "http://cdn/live/s-1.ts");
        o.entry_prefix = "http://cdn/".into();
        let s = Segmenter::new(o);
        assert_eq!(s.uri("live/s-1.ts"), "http://cdn/s-1.ts");
        assert_eq!(fill_time("a-[timestamp].ts", 42), "a-42.ts");
        assert_eq!(
            fill_stream("[vhost]/[app]/[stream]", "v", "a", "s"),
            "v/a/s"
        );
    }

    /// `secs` of 25 fps video with a keyframe every `gop` frames, and AAC, into `s`.
    fn feed_gop<M: Muxer>(s: &mut Segmenter<M>, from_ms: u32, secs: u32, gop: u32) {
        s.handle_frame(MediaKind::Video, from_ms, AVC_CONFIG, 0);
        s.handle_frame(MediaKind::Audio, from_ms, AAC_CONFIG, 0);
        for i in 0..secs * 25 {
            let t = from_ms + i * 40;
            s.handle_frame(MediaKind::Video, t, &video(i % gop == 0), 0);
            s.handle_frame(MediaKind::Audio, t + 20, &[0xaf, 1, 0x21, 0x10], 0);
        }
    }

    fn outputs<M: Muxer>(s: &mut Segmenter<M>) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn text(p: &Playlist) -> String {
        String::from_utf8(p.text.to_vec()).unwrap()
    }

    /// The newest playlist among a turn's outputs.
    fn last_playlist(out: &[Output]) -> &Playlist {
        out.iter()
            .rev()
            .find_map(|o| match o {
                Output::Playlist(p) => Some(p),
                _ => None,
            })
            .expect("the turn published a playlist")
    }

    #[test]
    fn fmp4_segments_have_an_init_segment_and_moof_mdat() {
        use crate::hls::CmafMuxer;
        use mp4_atom::{Any, Decode, Moof, Moov};
        let mut o = opts();
        o.ts_file = "live/s-[seq].m4s".into();
        let mut s = Segmenter::with_muxer(o, CmafMuxer::new());
        feed_gop(&mut s, 0, 7, 25);
        let out = outputs(&mut s);
        let inits: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Init(name, data) => Some((name.clone(), data.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(inits.len(), 1, "one track set, one init segment");
        assert_eq!(inits[0].0, "live/s-init-0.mp4");
        let mut buf = inits[0].1.as_ref();
        assert!(matches!(Any::decode(&mut buf), Ok(Any::Ftyp(_))));
        let moov = Moov::decode(&mut buf).expect("moov");
        assert_eq!(moov.trak.len(), 2);
        assert!(moov.mvex.is_some());
        let segs: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(segs.len(), 3, "cut at 2, 4, 6 s");
        let mut next_video = None;
        for seg in &segs {
            assert_eq!(seg.map.as_deref(), Some("live/s-init-0.mp4"));
            let mut buf = seg.data.as_ref();
            let moof = Moof::decode(&mut buf).expect("moof");
            assert_eq!(&buf[4..8], b"mdat");
            let video = &moof.traf[0];
            let base = video.tfdt.as_ref().unwrap().base_media_decode_time;
            if let Some(n) = next_video {
                assert_eq!(base, n, "segments tile the video timeline");
            }
            let trun = &video.trun[0];
            assert_eq!(
                trun.samples.len(),
                50,
                "2 s of 25 fps, the last frame closed at the cut"
            );
            next_video = Some(
                base + trun
                    .samples
                    .iter()
                    .map(|e| u64::from(e.duration.unwrap()))
                    .sum::<u64>(),
            );
        }
        let playlist = text(last_playlist(&out));
        assert!(
            playlist.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"),
            "{playlist}"
        );
        assert!(
            playlist.contains("#EXT-X-MAP:URI=\"s-init-0.mp4\"\n#EXTINF:2.000, no desc\ns-0.m4s\n"),
            "{playlist}"
        );
        assert_eq!(playlist.matches("#EXT-X-MAP").count(), 1, "{playlist}");
        assert!(!playlist.contains("PART"), "{playlist}");

        // A republish starts a new init segment after a discontinuity.
        s.handle_unpublish();
        feed_gop(&mut s, 0, 5, 25);
        let out = outputs(&mut s);
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Init(n, _) if n == "live/s-init-1.mp4")));
        let playlist = text(last_playlist(&out));
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"s-init-1.mp4\"\n"),
            "{playlist}"
        );
    }

    #[test]
    fn ll_hls_cuts_parts_lists_recent_ones_and_hints_the_next() {
        use crate::hls::CmafMuxer;
        let mut o = opts();
        o.fragment_ms = 1000;
        o.window_ms = 10_000;
        o.ts_file = "live/s-[seq].m4s".into();
        o.part_ms = 200;
        let mut s = Segmenter::with_muxer(o, CmafMuxer::new());
        feed_gop(&mut s, 0, 8, 25);
        s.handle_frame(MediaKind::Video, 8000, &video(true), 0);
        s.handle_frame(MediaKind::Video, 8040, &video(false), 0);
        s.handle_frame(MediaKind::Video, 8200, &video(false), 0);
        let out = outputs(&mut s);
        let parts: Vec<Part> = out
            .iter()
            .filter_map(|o| match o {
                Output::Part(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        // 8 s of 1 s segments of five 200 ms parts, and part 0 of segment 8.
        assert_eq!(
            parts.len(),
            41,
            "{:?}",
            parts.iter().map(|p| &p.name).collect::<Vec<_>>()
        );
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.duration_ms, 200, "{}", p.name);
            assert_eq!(
                p.independent,
                i % 5 == 0,
                "{}: keyframes each second",
                p.name
            );
        }
        assert_eq!(parts[7].name, "live/s-1.2.m4s");
        let segs: Vec<Segment> = out
            .iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(segs.len(), 8);
        let joined: Vec<u8> = parts[5..10].iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(segs[1].data.as_ref(), &joined[..], "a segment is its parts");
        let last = last_playlist(&out).clone();
        let playlist = text(&last);
        for tag in [
            "#EXT-X-VERSION:7\n",
            "#EXT-X-TARGETDURATION:1\n",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,\
             CAN-SKIP-UNTIL=6.000\n",
            "#EXT-X-PART-INF:PART-TARGET=0.200\n",
            "#EXT-X-PART:DURATION=0.200,URI=\"s-7.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.200,URI=\"s-7.1.m4s\"\n",
            "#EXT-X-PART:DURATION=0.200,URI=\"s-7.4.m4s\"\n#EXTINF:1.000, no desc\ns-7.m4s\n\
             #EXT-X-PART:DURATION=0.200,URI=\"s-8.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-8.1.m4s\"\n",
        ] {
            assert!(playlist.contains(tag), "no {tag}: {playlist}");
        }
        // Parts of the segments within three target durations only: 5, 6, 7 and the open 8.
        assert!(
            playlist.contains("URI=\"s-5.0.m4s\"") && !playlist.contains("URI=\"s-4."),
            "{playlist}"
        );
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Forget(n) if n == "live/s-0.0.m4s")));
        assert!(playlist.ends_with("\n") && playlist.matches("PRELOAD-HINT").count() == 1);
        let edge = &last.edge;
        assert_eq!((edge.segment, edge.part), (Some(7), Some((8, 0))));
        assert_eq!(
            edge.hint.as_ref().map(|h| (h.name.as_str(), h.at)),
            Some(("live/s-8.1.m4s", (8, 1)))
        );
        assert!(
            last.file.is_none(),
            "a part changes only the served playlist"
        );
        let file = out
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Playlist(p) => p.file.clone(),
                _ => None,
            })
            .unwrap();
        let file = String::from_utf8(file.to_vec()).unwrap();
        assert!(
            !file.contains("PART") && !file.contains("SERVER-CONTROL"),
            "{file}"
        );
        // The delta update: segments 0, 1 and 2 start more than 6 s (six target durations)
        // from the end (8.2 s), so one EXT-X-SKIP stands for them; the rest is the playlist's.
        let delta = String::from_utf8(last.delta.clone().unwrap().to_vec()).unwrap();
        let (head, tail) = playlist.split_once("s-0.m4s\n").unwrap();
        let kept = &tail[tail.find("s-2.m4s\n").unwrap() + "s-2.m4s\n".len()..];
        let head = head
            .replace("#EXT-X-VERSION:7", "#EXT-X-VERSION:9")
            .replace("#EXTINF:1.000, no desc\n", "");
        let map = "#EXT-X-MAP:URI=\"s-init-0.mp4\"\n";
        assert_eq!(
            delta,
            format!(
                "{}#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n{map}{kept}",
                head.replace(map, "")
            )
        );
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && !delta.contains("s-3.0.m4s"));
        // Nothing older than the boundary, no delta: the playlist is the answer.
        let mut young = Segmenter::with_muxer(s.options().clone(), CmafMuxer::new());
        feed_gop(&mut young, 0, 4, 25);
        assert!(last_playlist(&outputs(&mut young)).delta.is_none());
    }

    #[test]
    fn ll_hls_over_ts_starts_each_part_with_pat_and_pmt() {
        let mut o = opts();
        o.fragment_ms = 1000;
        o.part_ms = 200;
        let mut s = Segmenter::new(o);
        feed_gop(&mut s, 0, 3, 25);
        let parts: Vec<Part> = outputs(&mut s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Part(p) => Some(p),
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 10);
        let mut all = Vec::new();
        for p in &parts {
            assert!(p.name.ends_with(".ts"), "{}", p.name);
            // The PAT on PID 0, first.
            assert_eq!(
                (p.data[0], p.data[1] & 0x1f, p.data[2]),
                (0x47, 0, 0),
                "{}",
                p.name
            );
            all.extend_from_slice(&p.data);
        }
        check_continuity(&all).expect("parts end to end keep continuity");
    }
}
