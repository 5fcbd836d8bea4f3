//! The segmenter: one per stream, sans-IO. Frames go in ([`Segmenter::handle_frame`], with
//! the wall clock passed in for file names), segments and playlists come out
//! ([`Segmenter::poll_output`]). It cuts on keyframes once `hls_fragment * hls_td_ratio` has
//! passed (any video frame with `hls_wait_keyframe off`), and on any audio frame once
//! `hls_fragment * hls_aof_ratio` has (which is how pure-audio streams are cut); it keeps the
//! newest segments that cover `hls_window`, marks the first segment after a republish or a
//! codec change with `#EXT-X-DISCONTINUITY`, and never ends a live playlist.
//!
//! The container is a [`Muxer`]: the segmenter decides where segments start and hands the
//! muxer samples; [`super::ts::TsMuxer`] writes MPEG-TS. Another container (fMP4) or partial
//! segments (LL-HLS) plug in at those two seams. It owns no file, socket or clock.

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::Bytes;

use super::es::{self, AacConfig, AudioTag, VideoConfig, VideoPacket};
use super::mux::{AudioSample, Muxer, Tracks, VideoSample};
use super::ts::TsMuxer;
use crate::media::MediaKind;

/// The shortest segment SRS keeps: shorter ones are dropped at unpublish, and no cut
/// happens before twice this (`SRS_HLS_SEGMENT_MIN_DURATION`).
const MIN_SEGMENT_MS: u64 = 100;
/// Segments kept fetchable after they left the playlist: a player that read the previous
/// playlist may still ask for them.
const EXPIRED_KEPT: usize = 2;

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
    /// The container bytes, shared by every request.
    pub data: Bytes,
}

/// What the segmenter has for its driver.
#[derive(Debug, Clone)]
pub enum Output {
    /// A new segment, to serve and to store.
    Segment(Segment),
    /// The playlist changed; its text.
    Playlist(Bytes),
    /// A segment left the playlist (named `name`); files of it may go (`hls_cleanup`).
    Expired(String),
    /// A segment left the grace period: stop serving it.
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
}

/// One stream's HLS segmenter.
#[derive(Debug)]
pub struct Segmenter<M: Muxer = TsMuxer> {
    opts: Options,
    muxer: M,
    video: Option<VideoConfig>,
    audio: Option<AacConfig>,
    declared: Tracks,
    open: Option<Open>,
    window: VecDeque<Segment>,
    /// Names of segments out of the window but still served.
    expired: VecDeque<String>,
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
            declared: Tracks::default(),
            open: None,
            window: VecDeque::new(),
            expired: VecDeque::new(),
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

    /// The names the driver serves now: the playlist's segments and the expired ones kept.
    pub fn served(&self) -> impl Iterator<Item = &str> {
        self.window
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.expired.iter().map(String::as_str))
    }

    /// The next output, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
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
            self.reap(end);
        }
        self.discontinuity_next = true;
        self.video = None;
        self.audio = None;
        self.clock = Unwrap::default();
    }

    fn video_frame(&mut self, ms: u64, payload: &[u8], now_ms: u64) {
        let Some(tag) = es::video_tag(payload) else {
            return;
        };
        match tag.packet {
            VideoPacket::Config => {
                let config = es::video_config(tag.codec, tag.data);
                self.set_video(config);
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
                        self.reap(ms);
                    }
                }
                if !self.ensure_open(ms, now_ms) {
                    return;
                }
                self.keyframe_seen = true;
                let open = self.open.as_mut().expect("opened above");
                open.last_ms = open.last_ms.max(ms);
                let dts = ms * 90;
                let pts = (ms as i64 + i64::from(tag.cts)).max(0) as u64 * 90;
                let sample = VideoSample {
                    dts,
                    pts,
                    keyframe: tag.keyframe,
                    data: tag.data,
                };
                self.muxer.video(&sample, &config);
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
                        self.reap(ms);
                    }
                }
                if data.is_empty() || !self.ensure_open(ms, now_ms) {
                    return;
                }
                let open = self.open.as_mut().expect("opened above");
                open.last_ms = open.last_ms.max(ms);
                self.muxer
                    .audio(&AudioSample { dts: ms * 90, data }, &config);
            }
            None => {}
        }
    }

    fn set_video(&mut self, config: Option<VideoConfig>) {
        if config == self.video {
            return;
        }
        if self.video.is_some() {
            self.discontinuity_next = true;
        }
        self.video = config;
        self.keyframe_seen = false;
        self.redeclare();
    }

    /// Declares changed tracks to the open segment's muxer.
    fn redeclare(&mut self) {
        let tracks = self.tracks();
        if self.open.is_some() && tracks != self.declared {
            self.muxer.tracks(&tracks);
            self.declared = tracks;
        }
    }

    fn tracks(&self) -> Tracks {
        Tracks {
            video: self.video.clone(),
            audio: self.audio,
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
        });
        self.muxer.tracks(&tracks);
        self.declared = tracks;
        true
    }

    /// Finishes the open segment, ending at `end_ms`.
    fn reap(&mut self, end_ms: u64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let data = self.muxer.finish();
        let duration_ms = end_ms.saturating_sub(open.start_ms);
        if duration_ms < MIN_SEGMENT_MS || data.is_empty() {
            // SRS drops what is too short to play and reuses its number.
            self.next_seq = open.seq;
            self.discontinuity_next |= open.discontinuity;
            return;
        }
        let name = open.name.replace("[duration]", &duration_ms.to_string());
        let segment = Segment {
            seq: open.seq,
            duration_ms,
            uri: self.uri(&name),
            name,
            discontinuity: open.discontinuity,
            data,
        };
        self.out.push_back(Output::Segment(segment.clone()));
        self.window.push_back(segment);
        self.shrink();
        let playlist = self.playlist();
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
            self.out.push_back(Output::Expired(gone.name.clone()));
            self.expired.push_back(gone.name);
            if self.expired.len() > EXPIRED_KEPT {
                let forgotten = self.expired.pop_front().expect("not empty");
                self.out.push_back(Output::Forget(forgotten));
            }
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

    /// The live playlist of the window.
    pub fn playlist(&self) -> Bytes {
        let max_td = self.opts.fragment_ms as f64 * self.opts.td_ratio;
        let longest = self.window.iter().map(|s| s.duration_ms).max().unwrap_or(0);
        let target = (longest as f64).max(max_td) / 1000.0;
        let mut p = String::with_capacity(64 + self.window.len() * 64);
        p.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let first = self.window.front().map_or(self.next_seq, |s| s.seq);
        let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{first}");
        let _ = writeln!(p, "#EXT-X-TARGETDURATION:{}", target.ceil() as u64);
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                p,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        for s in &self.window {
            if s.discontinuity {
                p.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                p,
                "#EXTINF:{:.3}, no desc\n{}",
                s.duration_ms as f64 / 1000.0,
                s.uri
            );
        }
        Bytes::from(p)
    }

    /// Everything it still serves, as outputs to forget (`hls_dispose`).
    pub fn dispose(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self.window.drain(..).map(|s| s.name).collect();
        names.extend(self.expired.drain(..));
        names
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
                Output::Playlist(p) => playlist = Some(String::from_utf8(p.to_vec()).unwrap()),
                Output::Expired(n) => expired.push(n),
                Output::Forget(_) => {}
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
}
