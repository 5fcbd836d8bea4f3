//! WebRTC to RTMP (SRS's `rtc_to_rtmp`), sans-IO: a WHIP publisher's frames, as str0m
//! depacketized, reordered and NACK-repaired them, become the FLV-level messages an RTMP
//! publisher would send, and decisions to ask the publisher for a keyframe. It reads no
//! clock (each frame carries its arrival time, and `now` is passed in), owns no socket and
//! knows nothing of the hub: the engine feeds it and hands its messages to the driver, which
//! publishes them ([`sink`]).
//!
//! - [`avc`]: Annex B access units to AVCC frames and sequence headers from SPS/PPS.
//! - [`audio`]: Opus decoded (libopus) and encoded to AAC-LC (libfdk-aac).
//!
//! One timeline in milliseconds for both tracks, from the first frame of either: each track is
//! anchored at the arrival time of its first frame, then advances by its RTP time deltas (taken
//! modulo 2^32, so a wrap of the 32-bit RTP clock is a small step), and never goes backwards; a
//! track whose RTP time strays more than [`RESYNC`] from its arrival times is re-anchored on
//! them, so a publisher's jump or garbage timestamps cannot stretch the stream. Arrival is not
//! capture: a browser's video leaves its encoder later than its audio, and a keyframe takes
//! longer to arrive than an audio packet, so once both tracks have had an RTCP sender report
//! the tracks are re-anchored on the reports' wall-clock times instead (as SRS's `rtc_to_rtmp`
//! syncs them). That first sync moves one track forward, never back. A later report re-anchors
//! its track only when the track strayed more than [`SYNC_TOLERANCE`] from it, which follows
//! the drift between the sender's clocks in rare steps: a step at every report, even of a
//! millisecond, would make a 2 s GOP 1999 ms, and HLS would not cut a 2 s segment there. The
//! two tracks' messages are then interleaved in timestamp order, each held at most
//! [`MAX_INTERLEAVE`] for the other track to catch up, so the stream's timestamps never go
//! back across tracks either: AAC comes out a frame (21 ms) and the encoder's delay after its
//! Opus, and str0m releases audio in bursts behind a lost packet, which an RTMP timeline (and
//! the hub's jitter correction, which takes a step back of over 250 ms for a discontinuity)
//! must not see. Video waits for an IDR with SPS and PPS (asking for one at most once per
//! [`KEYFRAME_INTERVAL`]), and again after a frame str0m could not make contiguous: frames that
//! reference what was lost are dropped rather than shown broken. A keyframe is asked for too
//! when none came for [`PLI_FOR_RTMP`], as SRS does, to bound the GOP RTMP players join.

#![forbid(unsafe_code)]

pub mod audio;
pub mod avc;
pub mod sink;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::MediaKind;
use audio::{AacFrame, OpusToAac};
use avc::AvcToFlv;

/// Keyframe requests are sent at most this often while video waits for one.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// A keyframe is asked for when the publisher sent none for this long (SRS's
/// `pli_for_rtmp`, 6 s): a browser sends IDRs only when asked, and RTMP, HTTP-FLV and HLS
/// players start at one, from a GOP cache that holds everything since the last.
pub const PLI_FOR_RTMP: Duration = Duration::from_secs(6);
/// A publisher that sends no frame for this long is stale: its RTMP publish ends (SRS's
/// `normal_timeout` is 5-7 s; a browser's tab in the background still sends audio).
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// A track whose RTP time and arrival time disagree by more than this is re-anchored; a sender
/// report that disagrees with the arrival times by more than this is ignored.
pub const RESYNC: Duration = Duration::from_secs(3);
/// How far a track may stray from its sender's reports before a report re-anchors it. The
/// reports of the same clock disagree by milliseconds (the load tool's audio by up to 16 ms),
/// while lip sync is noticed from about 45 ms of audio ahead of video (ITU-R BT.1359).
pub const SYNC_TOLERANCE: Duration = Duration::from_millis(30);
/// The longest a message waits for the other track's to be interleaved with it.
pub const MAX_INTERLEAVE: Duration = Duration::from_millis(500);
/// Messages held for the caller; it drains them after every frame, so only a caller that
/// does not can reach it, and the oldest are dropped (counted).
pub const MAX_QUEUED: usize = 256;

/// A WebRTC track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// H.264.
    Video,
    /// Opus.
    Audio,
}

/// One depacketized frame of a publisher, as str0m's `MediaData` has it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Its track.
    pub track: Track,
    /// An Annex B access unit (video) or an Opus packet (audio).
    pub data: &'a [u8],
    /// Its RTP time; only the low 32 bits are read.
    pub rtp_time: u64,
    /// The track's RTP clock rate (90000 for video, 48000 for Opus).
    pub clock_rate: u32,
    /// When its first packet arrived.
    pub network_time: Instant,
    /// Whether it follows the track's previous frame with nothing lost between.
    pub contiguous: bool,
    /// The track's latest RTCP sender report when the frame arrived, if one came.
    pub sender_report: Option<SenderReport>,
}

/// What an RTCP sender report says: the sender's wall-clock time at one RTP time of its track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The RTP time; only the low 32 bits are read.
    pub rtp_time: u64,
    /// The NTP timestamp, as the time since the Unix epoch.
    pub ntp: Duration,
}

/// An FLV-level message, as an RTMP publisher sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Audio or video.
    pub kind: MediaKind,
    /// Milliseconds on the stream's timeline.
    pub timestamp: u32,
    /// The FLV tag body.
    pub payload: Bytes,
}

/// What the converter asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Publish this message.
    Message(Message),
    /// Ask the publisher for a keyframe (a PLI).
    RequestKeyframe,
}

/// What was dropped, and why; for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Video frames that were not H.264 Annex B, too large, or had a malformed SPS/PPS.
    pub bad_video: u64,
    /// Video frames dropped while waiting for a keyframe.
    pub waiting_for_keyframe: u64,
    /// Opus packets libopus refused, or AAC frames libfdk-aac did not make.
    pub bad_audio: u64,
    /// Keyframe requests made.
    pub keyframe_requests: u64,
    /// Messages dropped because the caller did not drain them.
    pub overflows: u64,
}

/// One track's clock: its RTP time extended past the 32-bit wrap, and where it is anchored.
#[derive(Debug, Default)]
struct TrackClock {
    /// The last RTP time seen (low 32 bits) and its extended value.
    last: Option<(u32, i64)>,
    /// Extended RTP time and timeline milliseconds that correspond.
    anchor: (i64, i64),
    /// The track's last timestamp out: the next is never below it.
    floor: i64,
    rate: i64,
    /// The sender report last taken, as its extended RTP time and its wall clock in ms.
    report: Option<(SenderReport, i64, i64)>,
}

impl TrackClock {
    /// The extended form of `rtp`, the step from the last one taken as signed 32-bit.
    fn extend(&mut self, rtp: u32) -> i64 {
        let ext = match self.last {
            Some((last, ext)) => ext + i64::from(rtp.wrapping_sub(last) as i32),
            None => i64::from(rtp),
        };
        self.last = Some((rtp, ext));
        ext
    }

    /// Milliseconds of extended RTP time `ext`, unclamped.
    fn ms(&self, ext: i64) -> i64 {
        self.anchor.1 + (ext - self.anchor.0) * 1000 / self.rate.max(1)
    }

    /// How far the sender's wall clock (its last report's) is ahead of the timeline, in ms.
    fn ahead(&self) -> Option<i64> {
        let (_, report_ext, wall) = self.report?;
        Some(wall - self.ms(report_ext))
    }

    /// Anchors the track on its last report, the wall clock `offset` ms ahead of the timeline,
    /// if that moves it by more than `tolerance` ms, and not more than [`RESYNC`]: such a
    /// report is not believed. How far the track moved, if it did.
    fn anchor_on_report(&mut self, offset: i64, tolerance: i64) -> Option<i64> {
        let (_, report_ext, wall) = self.report?;
        let shift = wall - offset - self.ms(report_ext);
        if shift.abs() <= tolerance || shift.abs() > RESYNC.as_millis() as i64 {
            return None;
        }
        self.anchor = (report_ext, wall - offset);
        Some(shift)
    }

    /// The timestamp out for `ext`: never below the last, never negative.
    fn stamp(&mut self, ext: i64) -> u32 {
        let ms = self.ms(ext).max(self.floor).max(0);
        self.floor = ms;
        ms as u32
    }
}

/// One WHIP publisher's conversion.
pub struct ToRtmp {
    avc: AvcToFlv,
    /// `None` once libopus or libfdk-aac failed to start: the stream goes on without audio.
    audio: Option<OpusToAac>,
    audio_header_sent: bool,
    /// Arrival time of the first frame: the timeline's zero.
    epoch: Option<Instant>,
    clocks: [TrackClock; 2],
    /// Sender wall-clock ms minus timeline ms, fixed when both tracks first had a sender
    /// report.
    sync: Option<i64>,
    waiting_for_keyframe: bool,
    last_request: Option<Instant>,
    /// When the last keyframe went out.
    last_keyframe: Option<Instant>,
    last_input: Instant,
    out: VecDeque<Output>,
    /// Each track's messages (video, audio) waiting to be interleaved, with when each came.
    pending: [VecDeque<(Message, Instant)>; 2],
    /// When each track last had a message: a track silent for [`MAX_INTERLEAVE`] (or
    /// absent) is not waited for.
    last_message: [Option<Instant>; 2],
    /// The last timestamp out, of either track.
    last_out: u32,
    aac: Vec<AacFrame>,
    stats: Stats,
}

impl std::fmt::Debug for ToRtmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToRtmp")
            .field("waiting_for_keyframe", &self.waiting_for_keyframe)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ToRtmp {
    /// A converter for a publisher that connected at `now`.
    pub fn new(now: Instant) -> Self {
        let audio = match OpusToAac::new() {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!("rtc_to_rtmp: no audio: {e}");
                None
            }
        };
        Self {
            avc: AvcToFlv::default(),
            audio,
            audio_header_sent: false,
            epoch: None,
            clocks: Default::default(),
            sync: None,
            waiting_for_keyframe: true,
            last_request: None,
            last_keyframe: None,
            last_input: now,
            out: VecDeque::new(),
            pending: Default::default(),
            last_message: [None; 2],
            last_out: 0,
            aac: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// What was dropped so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether no frame came for [`MEDIA_TIMEOUT`]: the publish should end.
    pub fn is_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_input) >= MEDIA_TIMEOUT
    }

    /// When the converter becomes stale unless a frame comes.
    pub fn deadline(&self) -> Instant {
        self.last_input + MEDIA_TIMEOUT
    }

    /// The next output; call until `None` after each input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn emit(&mut self, output: Output) {
        if self.out.len() >= MAX_QUEUED {
            self.out.pop_front();
            self.stats.overflows += 1;
        }
        self.out.push_back(output);
    }

    /// Queues a message of track `track` (0 video, 1 audio) for [`Self::interleave`].
    fn message(&mut self, track: usize, now: Instant, timestamp: u32, payload: Bytes) {
        let kind = if track == 0 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        self.last_message[track] = Some(now);
        let queue = &mut self.pending[track];
        if queue.len() >= MAX_QUEUED {
            queue.pop_front();
            self.stats.overflows += 1;
        }
        queue.push_back((
            Message {
                kind,
                timestamp,
                payload,
            },
            now,
        ));
    }

    /// Moves the waiting messages out in timestamp order: the earlier of the two tracks'
    /// first, while the other track has one waiting, has been silent for
    /// [`MAX_INTERLEAVE`], or the message waited that long.
    fn interleave(&mut self, now: Instant) {
        loop {
            let next = match (self.pending[0].front(), self.pending[1].front()) {
                (Some(v), Some(a)) => usize::from(a.0.timestamp < v.0.timestamp),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => return,
            };
            let other = 1 - next;
            let waited = self.pending[next]
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= MAX_INTERLEAVE);
            let other_live = self.last_message[other]
                .is_some_and(|t| now.saturating_duration_since(t) < MAX_INTERLEAVE);
            if self.pending[other].is_empty() && other_live && !waited {
                return;
            }
            let (mut message, _) = self.pending[next]
                .pop_front()
                .expect("the track picked has a message");
            message.timestamp = message.timestamp.max(self.last_out);
            self.last_out = message.timestamp;
            self.emit(Output::Message(message));
        }
    }

    /// Asks for a keyframe unless one was asked for within [`KEYFRAME_INTERVAL`].
    fn request_keyframe(&mut self, now: Instant) {
        if self
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        self.last_request = Some(now);
        self.stats.keyframe_requests += 1;
        self.emit(Output::RequestKeyframe);
    }

    /// Places `frame` on its track's clock: its extended RTP time.
    fn clock(&mut self, frame: &Frame<'_>) -> (usize, i64) {
        let epoch = *self.epoch.get_or_insert(frame.network_time);
        let arrived = frame
            .network_time
            .saturating_duration_since(epoch)
            .as_millis() as i64;
        let i = usize::from(frame.track == Track::Audio);
        let clock = &mut self.clocks[i];
        let first = clock.last.is_none();
        let ext = clock.extend(frame.rtp_time as u32);
        let rate = i64::from(frame.clock_rate.max(1));
        if first
            || clock.rate != rate
            || (clock.ms(ext) - arrived).abs() > RESYNC.as_millis() as i64
        {
            clock.rate = rate;
            clock.anchor = (ext, arrived);
        }
        if let Some(report) = frame.sender_report {
            self.take_report(i, ext, frame.rtp_time as u32, report);
        }
        (i, ext)
    }

    /// Takes track `i`'s sender report, seen on a frame at extended RTP time `ext` (`rtp` its
    /// low bits). Once both tracks had one, the offset between the sender's wall clock and the
    /// timeline is fixed, the smallest that moves neither track back, and from then on each
    /// track is anchored on its reports.
    fn take_report(&mut self, i: usize, ext: i64, rtp: u32, report: SenderReport) {
        let clock = &mut self.clocks[i];
        if clock.report.is_some_and(|(r, ..)| r == report) {
            return;
        }
        let report_ext = ext + i64::from((report.rtp_time as u32).wrapping_sub(rtp) as i32);
        let Ok(wall) = i64::try_from(report.ntp.as_millis()) else {
            return;
        };
        clock.report = Some((report, report_ext, wall));
        let anchor_both = self.sync.is_none();
        let offset = match self.sync {
            Some(offset) => offset,
            None => {
                let (Some(v), Some(a)) = (self.clocks[0].ahead(), self.clocks[1].ahead()) else {
                    return;
                };
                *self.sync.insert(v.min(a))
            }
        };
        if !anchor_both {
            let tolerance = SYNC_TOLERANCE.as_millis() as i64;
            if let Some(ms) = self.clocks[i].anchor_on_report(offset, tolerance) {
                let track = if i == 0 { "video" } else { "audio" };
                tracing::debug!("rtc_to_rtmp: {track} re-anchored on its report: {ms} ms");
            }
            return;
        }
        // The first sync anchors both tracks, even on a shift of 0.
        let [video, audio] = self
            .clocks
            .each_mut()
            .map(|c| c.anchor_on_report(offset, -1));
        let moved = |m: Option<i64>| {
            m.map_or("not moved (its report is off)".into(), |ms| {
                format!("{ms} ms later")
            })
        };
        tracing::info!(
            "rtc_to_rtmp: tracks synced on sender reports: video {}, audio {}",
            moved(video),
            moved(audio),
        );
    }

    /// Takes one frame of the publisher, at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame<'_>) {
        self.last_input = now;
        let (clock, ext) = self.clock(&frame);
        match frame.track {
            Track::Video => self.video(now, &frame, clock, ext),
            Track::Audio => self.audio(now, frame.data, clock, ext),
        }
        self.interleave(now);
    }

    fn video(&mut self, now: Instant, frame: &Frame<'_>, clock: usize, ext: i64) {
        if !frame.contiguous && !self.waiting_for_keyframe {
            // What follows a loss references what was lost until the next IDR.
            self.waiting_for_keyframe = true;
        }
        let converted = match self.avc.push(frame.data) {
            Ok(c) => c,
            Err(e) => {
                self.stats.bad_video += 1;
                tracing::trace!("rtc_to_rtmp: video frame dropped: {e}");
                return;
            }
        };
        let ts = self.clocks[clock].stamp(ext);
        if let Some(header) = converted.sequence_header {
            self.message(clock, now, ts, header);
        }
        let Some(body) = converted.frame else {
            return;
        };
        if self.waiting_for_keyframe {
            if !(converted.keyframe && self.avc.has_parameter_sets()) {
                self.stats.waiting_for_keyframe += 1;
                self.request_keyframe(now);
                return;
            }
            self.waiting_for_keyframe = false;
        }
        if converted.keyframe {
            self.last_keyframe = Some(now);
        } else if self
            .last_keyframe
            .is_some_and(|t| now.saturating_duration_since(t) >= PLI_FOR_RTMP)
        {
            self.request_keyframe(now);
        }
        self.message(clock, now, ts, body);
    }

    fn audio(&mut self, now: Instant, data: &[u8], clock: usize, ext: i64) {
        let Some(audio) = self.audio.as_mut() else {
            return;
        };
        let mut aac = std::mem::take(&mut self.aac);
        if let Err(e) = audio.push(data, ext, &mut aac) {
            self.stats.bad_audio += 1;
            tracing::trace!("rtc_to_rtmp: audio packet dropped: {e}");
        }
        if !aac.is_empty() && !self.audio_header_sent {
            self.audio_header_sent = true;
            let header = audio.sequence_header().clone();
            let ts = self.clocks[clock].stamp(aac[0].rtp_time);
            self.message(clock, now, ts, header);
        }
        for f in aac.drain(..) {
            let ts = self.clocks[clock].stamp(f.rtp_time);
            self.message(clock, now, ts, f.body);
        }
        self.aac = aac;
    }
}

#[cfg(test)]
mod tests;
