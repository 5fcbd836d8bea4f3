//! The converter driven with a virtual clock: frames in, messages and keyframe requests out.

use super::*;

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

fn annex_b(units: &[&[u8]]) -> Vec<u8> {
    units
        .iter()
        .flat_map(|u| [&[0u8, 0, 0, 1][..], u].concat())
        .collect()
}

fn idr() -> Vec<u8> {
    annex_b(&[SPS, PPS, &[0x65, 0x88, 1]])
}

fn p_frame() -> Vec<u8> {
    annex_b(&[&[0x41, 0x9a, 2]])
}

struct Run {
    c: ToRtmp,
    t0: Instant,
}

impl Run {
    fn new() -> Self {
        let t0 = Instant::now();
        Self {
            c: ToRtmp::new(t0),
            t0,
        }
    }

    /// A frame of `track` with RTP time `rtp` that arrived at `at_ms`.
    fn push(&mut self, track: Track, data: &[u8], rtp: u64, at_ms: u64, contiguous: bool) {
        self.push_reported(track, data, rtp, at_ms, contiguous, None);
    }

    /// [`Self::push`], the track's last sender report `report` with it.
    fn push_reported(
        &mut self,
        track: Track,
        data: &[u8],
        rtp: u64,
        at_ms: u64,
        contiguous: bool,
        sender_report: Option<SenderReport>,
    ) {
        let at = self.t0 + Duration::from_millis(at_ms);
        let clock_rate = if track == Track::Video {
            90_000
        } else {
            48_000
        };
        self.c.handle_frame(
            at,
            Frame {
                track,
                data,
                rtp_time: rtp,
                clock_rate,
                network_time: at,
                contiguous,
                sender_report,
            },
        );
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.c.poll_output()).collect()
    }
}

fn messages(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Message(m) => Some(m),
            Output::RequestKeyframe => None,
        })
        .collect()
}

#[test]
fn waits_for_a_keyframe_asking_once_a_second() {
    let mut r = Run::new();
    let mut requests = 0;
    // 2 s of P-frames at 30 fps: two requests, nothing published.
    for i in 0..60u64 {
        r.push(Track::Video, &p_frame(), i * 3000, i * 33, true);
        let out = r.drain();
        assert!(messages(&out).is_empty());
        requests += out.len();
    }
    assert_eq!(requests, 2);
    assert_eq!(r.c.stats().waiting_for_keyframe, 60);
    // The keyframe: its sequence header, then the frame, cts 0.
    r.push(Track::Video, &idr(), 60 * 3000, 60 * 33, true);
    let out = r.drain();
    let m = messages(&out);
    assert_eq!(m.len(), 2);
    assert_eq!(&m[0].payload[..2], &[0x17, 0]);
    assert_eq!(&m[1].payload[..5], &[0x17, 1, 0, 0, 0]);
    assert_eq!(m[0].timestamp, m[1].timestamp);
    assert_eq!(m[1].timestamp, 2000);
    r.push(Track::Video, &p_frame(), 61 * 3000, 61 * 33, true);
    assert_eq!(&messages(&r.drain())[0].payload[..5], &[0x27, 1, 0, 0, 0]);
    // A loss: frames are dropped until the next keyframe, which is asked for at once.
    r.push(Track::Video, &p_frame(), 63 * 3000, 63 * 33, false);
    assert_eq!(r.drain(), [Output::RequestKeyframe]);
    r.push(Track::Video, &p_frame(), 64 * 3000, 64 * 33, true);
    assert!(r.drain().is_empty(), "the request is rate-limited");
    r.push(Track::Video, &idr(), 65 * 3000, 65 * 33, true);
    let out = r.drain();
    assert_eq!(messages(&out).len(), 1, "same SPS/PPS: no new header");
    assert_eq!(messages(&out)[0].timestamp, 2166);
    // 6 s with no keyframe (from 2145 ms): one is asked for, then once a second, and the
    // frames still go out.
    let mut asked = Vec::new();
    for i in 66..320u64 {
        r.push(Track::Video, &p_frame(), i * 3000, i * 33, true);
        let out = r.drain();
        assert_eq!(messages(&out).len(), 1);
        if out.contains(&Output::RequestKeyframe) {
            asked.push(i * 33);
        }
    }
    assert_eq!(asked, [8151, 9174, 10197]);
}

#[test]
fn timestamps_rebase_to_zero_align_tracks_and_survive_the_rtp_wrap() {
    let mut r = Run::new();
    // Video starts near the top of the 32-bit RTP clock and wraps after 10 frames.
    let v0 = u64::from(u32::MAX) - 10 * 3000 + 1;
    let audio = crate::rtc::to_rtmp::audio::tests::opus_packets(150);
    let mut video_ts = Vec::new();
    let mut audio_ts = Vec::new();
    let mut all_ts = Vec::new();
    // Audio arrives first (at 0 ms), video 100 ms later, each with its own RTP base; both
    // in arrival order.
    let mut frames: Vec<(u64, Track, u64, Vec<u8>)> = (0..150u64)
        .map(|i| {
            let rtp = (1_000_000 + i * 960) & 0xffff_ffff;
            (i * 20, Track::Audio, rtp, audio[i as usize].clone())
        })
        .chain((0..50u64).map(|n| {
            let frame = if n == 0 { idr() } else { p_frame() };
            let rtp = (v0 + n * 3000) & 0xffff_ffff;
            (100 + n * 33, Track::Video, rtp, frame)
        }))
        .collect();
    frames.sort_by_key(|f| f.0);
    for (at, track, rtp, data) in frames {
        r.push(track, &data, rtp, at, true);
        for m in messages(&r.drain()) {
            all_ts.push(m.timestamp);
            match m.kind {
                MediaKind::Video => video_ts.push(m.timestamp),
                _ => audio_ts.push(m.timestamp),
            }
        }
    }
    // Video: the header and 50 frames, 33.3 ms apart from 100 ms, through the wrap.
    assert_eq!(video_ts.len(), 51);
    assert_eq!(video_ts[1], 100);
    assert_eq!(video_ts[50], 100 + 49 * 3000 / 90);
    assert!(video_ts.windows(2).all(|w| w[0] <= w[1]));
    // Audio: the header, then AAC frames 21.33 ms apart from 0 (less the encoder delay,
    // clamped), never going back.
    assert!(audio_ts.len() > 130, "{}", audio_ts.len());
    assert_eq!(audio_ts[0], 0);
    assert!(audio_ts.windows(2).all(|w| w[0] <= w[1]));
    let last = *audio_ts.last().unwrap();
    assert!((2800..=3000).contains(&last), "{last}");
    // Interleaved: the stream's timestamps never go back across the tracks either.
    assert!(all_ts.windows(2).all(|w| w[0] <= w[1]), "{all_ts:?}");
}

/// Audio captured every 20 ms from 0 and arriving at once; video captured every 33.3 ms from
/// 0 but arriving 100 ms later; each frame carries `report(track, rtp)`, `rtp` its RTP time.
/// The timestamps of each track's messages.
fn late_video(report: impl Fn(Track, u64) -> Option<SenderReport>) -> (Vec<u32>, Vec<u32>) {
    let mut r = Run::new();
    let audio = crate::rtc::to_rtmp::audio::tests::opus_packets(150);
    let mut frames: Vec<(u64, Track, u64, Vec<u8>)> = (0..150u64)
        .map(|i| {
            (
                i * 20,
                Track::Audio,
                1_000_000 + i * 960,
                audio[i as usize].clone(),
            )
        })
        .chain((0..50u64).map(|n| {
            let frame = if n == 0 { idr() } else { p_frame() };
            (100 + n * 100 / 3, Track::Video, 7_000 + n * 3000, frame)
        }))
        .collect();
    frames.sort_by_key(|f| f.0);
    let (mut video_ts, mut audio_ts, mut all_ts) = (Vec::new(), Vec::new(), Vec::new());
    for (at, track, rtp, data) in frames {
        r.push_reported(track, &data, rtp, at, true, report(track, rtp));
        for m in messages(&r.drain()) {
            all_ts.push(m.timestamp);
            match m.kind {
                MediaKind::Video => video_ts.push(m.timestamp),
                _ => audio_ts.push(m.timestamp),
            }
        }
    }
    assert!(all_ts.windows(2).all(|w| w[0] <= w[1]), "{all_ts:?}");
    assert!(audio_ts.windows(2).all(|w| w[0] <= w[1]), "{audio_ts:?}");
    (video_ts, audio_ts)
}

#[test]
fn sender_reports_sync_the_tracks_on_capture_time() {
    // Without reports, each track starts where it arrived: the video shows 100 ms late.
    let (video, audio) = late_video(|_, _| None);
    let last_audio = i64::from(*audio.last().unwrap());
    assert_eq!(video[1], 100);
    assert!((2800..=3000).contains(&last_audio), "{last_audio}");
    // The reports say that RTP time 1,000,000 of audio and 7,000 of video were captured at
    // the same wall-clock time: audio, the track ahead, moves 100 ms forward to meet video,
    // once, and stays in step.
    let at = Duration::from_secs(1_700_000_000);
    let report = |track, _| {
        Some(SenderReport {
            rtp_time: if track == Track::Audio {
                1_000_000
            } else {
                7_000
            },
            ntp: at,
        })
    };
    let (synced_video, synced_audio) = late_video(report);
    assert_eq!(synced_video, video);
    let last = i64::from(*synced_audio.last().unwrap());
    assert_eq!(last - last_audio, 100, "{synced_audio:?}");
    let steps: Vec<u32> = synced_audio.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps.iter().filter(|s| **s > 60).count(), 1, "{steps:?}");
    // A report an hour off is not believed: the timeline is as without reports.
    let off = |track, rtp| {
        let mut r = report(track, rtp)?;
        if track == Track::Video {
            r.ntp += Duration::from_secs(3600);
        }
        Some(r)
    };
    assert_eq!(late_video(off), (video, audio));
}

/// [`late_video`] with both tracks reported at each second of their RTP time from the first
/// frame, captured together at 0 ms, the report's wall clock `off(track, second)` ms late.
fn reported_each_second(off: impl Fn(Track, u64) -> i64) -> (Vec<u32>, Vec<u32>) {
    let at = Duration::from_secs(1_700_000_000);
    late_video(|track, rtp| {
        let (base, rate) = match track {
            Track::Audio => (1_000_000, 48_000),
            Track::Video => (7_000, 90_000),
        };
        let second = (rtp - base) / rate;
        let (wall, off) = (at + Duration::from_secs(second), off(track, second));
        let ntp = if off < 0 {
            wall - Duration::from_millis(off.unsigned_abs())
        } else {
            wall + Duration::from_millis(off.unsigned_abs())
        };
        Some(SenderReport {
            rtp_time: base + second * rate,
            ntp,
        })
    })
}

#[test]
fn later_reports_move_a_track_only_past_the_tolerance() {
    let (video, audio) = reported_each_second(|_, _| 0);
    // Reports of the same clocks that disagree by milliseconds move nothing: a step in the
    // video would make a GOP a millisecond short of an HLS fragment.
    let noisy = |track, second| match (track, second) {
        (_, 0) => 0,
        (Track::Video, _) => -1,
        (Track::Audio, s) => [16, -12][s as usize % 2],
    };
    assert_eq!(reported_each_second(noisy), (video.clone(), audio.clone()));
    // The video's clock ran 50 ms slow against its sender's wall clock in its first second:
    // from the report at its 31st frame (1 s), the video is 50 ms later.
    let (drifted, _) = reported_each_second(|track, second| match (track, second) {
        (Track::Video, 1..) => 50,
        _ => 0,
    });
    let steps: Vec<i64> = drifted
        .iter()
        .zip(&video)
        .map(|(d, v)| i64::from(*d) - i64::from(*v))
        .collect();
    assert_eq!(steps.iter().filter(|s| **s == 0).count(), 31, "{steps:?}");
    assert!(steps[31..].iter().all(|s| *s == 50), "{steps:?}");
}

#[test]
fn a_jump_in_rtp_time_is_reanchored_on_arrival_times() {
    let mut r = Run::new();
    r.push(Track::Video, &idr(), 0, 0, true);
    r.push(Track::Video, &p_frame(), 3000, 33, true);
    // The publisher's clock jumps an hour; the frame arrived 33 ms later.
    r.push(Track::Video, &p_frame(), 3000 + 90_000 * 3600, 66, true);
    r.push(Track::Video, &p_frame(), 6000 + 90_000 * 3600, 99, true);
    // And back: the timeline never goes back.
    r.push(Track::Video, &p_frame(), 9000, 132, true);
    let ts: Vec<u32> = messages(&r.drain()).iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, [0, 0, 33, 66, 99, 132]);
}

#[test]
fn garbage_is_counted_and_dropped_and_silence_goes_stale() {
    let mut r = Run::new();
    r.push(Track::Video, &[0xde, 0xad], 0, 0, true);
    r.push(Track::Video, &[0, 0, 1, 0x67], 0, 0, true);
    r.push(Track::Audio, &[0xff, 0xff, 0xff], 0, 0, true);
    assert_eq!(r.c.stats().bad_video, 2);
    assert_eq!(r.c.stats().bad_audio, 1);
    assert!(messages(&r.drain()).is_empty());
    assert!(!r.c.is_stale(r.t0 + Duration::from_secs(9)));
    assert!(r.c.is_stale(r.t0 + MEDIA_TIMEOUT));
    assert_eq!(r.c.deadline(), r.t0 + MEDIA_TIMEOUT);
    // An undrained converter keeps a bounded queue.
    for i in 0..2000u64 {
        r.push(Track::Video, &idr(), i * 3000, i * 33, true);
    }
    assert_eq!(r.drain().len(), MAX_QUEUED);
    assert!(r.c.stats().overflows > 0);
}
