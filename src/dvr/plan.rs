//! When a recording's files begin and end, and the timestamps written in them: SRS 6's
//! session plan (one file per publish) and segment plan (a new file once the current one is
//! `dvr_duration` long, at the next video keyframe when `dvr_wait_keyframe`), and its
//! `time_jitter` correction, fresh for each file as SRS makes a new jitter per file.
//!
//! Pure: frames' kinds and stream timestamps in, [`Step`]s out; no file, no clock.
#![forbid(unsafe_code)]

use crate::config::{Dvr, DvrPlan, TimeJitter};
use crate::media::{FrameRole, Jitter, MediaKind};

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Close the current file, if any, open a new one, then write the frame at this time.
    Open(u32),
    /// Write the frame at this time into the current file.
    Write(u32),
}

/// One file's clock: its timestamp correction and how long it runs.
#[derive(Debug)]
struct FileClock {
    correct: Correct,
    start: Option<u32>,
    end: u32,
}

#[derive(Debug)]
enum Correct {
    /// From 0, steps over 250 ms made 10 ms (the stream's own [`Jitter`], restarted).
    Full(Jitter),
    /// From 0, steps kept: the file's first stream timestamp.
    Zero(Option<u32>),
    /// The stream's timestamps.
    Off,
}

impl FileClock {
    fn new(mode: TimeJitter) -> Self {
        let correct = match mode {
            TimeJitter::Full => Correct::Full(Jitter::default()),
            TimeJitter::Zero => Correct::Zero(None),
            TimeJitter::Off => Correct::Off,
        };
        Self {
            correct,
            start: None,
            end: 0,
        }
    }

    fn stamp(&mut self, ts: u32) -> u32 {
        let out = match &mut self.correct {
            Correct::Full(j) => j.correct(ts),
            Correct::Zero(first) => ts.wrapping_sub(*first.get_or_insert(ts)),
            Correct::Off => ts,
        };
        // SRS's fragment duration: from the earliest timestamp to the latest.
        let start = *self.start.get_or_insert(out);
        self.start = Some(start.min(out));
        self.end = self.end.max(out);
        out
    }

    fn duration_ms(&self) -> u32 {
        self.start.map_or(0, |s| self.end.saturating_sub(s))
    }
}

/// A recording's plan.
#[derive(Debug)]
pub struct Planner {
    /// The segment plan's length in ms; `None` (session plan, or a duration of 0) never cuts.
    segment: Option<u32>,
    wait_keyframe: bool,
    mode: TimeJitter,
    file: Option<FileClock>,
}

impl Planner {
    /// The plan `dvr` configures.
    pub fn new(dvr: &Dvr) -> Self {
        let ms = u32::try_from(dvr.duration.as_millis()).unwrap_or(u32::MAX);
        Self {
            segment: (dvr.plan == DvrPlan::Segment && ms > 0).then_some(ms),
            wait_keyframe: dvr.wait_keyframe,
            mode: dvr.time_jitter,
            file: None,
        }
    }

    /// The step for an audio or video frame at stream time `ts`.
    pub fn frame(&mut self, kind: MediaKind, role: FrameRole, ts: u32) -> Step {
        let reap = match (&self.file, self.segment) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(file), Some(len)) => {
                file.duration_ms() >= len
                    && (!self.wait_keyframe
                        || (kind == MediaKind::Video && role == FrameRole::Keyframe))
            }
        };
        if reap {
            let mut file = FileClock::new(self.mode);
            let at = file.stamp(ts);
            self.file = Some(file);
            Step::Open(at)
        } else {
            let file = self.file.as_mut().expect("a file is open unless reaping");
            Step::Write(file.stamp(ts))
        }
    }

    /// The next frame opens a new file (the codec changed mid-file, or a write failed).
    pub fn reopen(&mut self) {
        self.file = None;
    }

    /// How long the current file runs, ms: its first to its latest timestamp.
    pub fn duration_ms(&self) -> u32 {
        self.file.as_ref().map_or(0, FileClock::duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn dvr(plan: DvrPlan, secs: u64, wait_keyframe: bool, jitter: TimeJitter) -> Dvr {
        Dvr {
            enabled: true,
            plan,
            duration: Duration::from_secs(secs),
            wait_keyframe,
            time_jitter: jitter,
            ..Dvr::default()
        }
    }

    /// 25 fps video with a keyframe every 2 s and audio between, from stream time `from`.
    fn stream(from: u32, secs: u32) -> Vec<(MediaKind, FrameRole, u32)> {
        let mut out = Vec::new();
        for i in 0..secs * 25 {
            let ts = from + i * 40;
            let role = if i % 50 == 0 {
                FrameRole::Keyframe
            } else {
                FrameRole::Other
            };
            out.push((MediaKind::Video, role, ts));
            out.push((MediaKind::Audio, FrameRole::Other, ts + 20));
        }
        out
    }

    fn opens(p: &mut Planner, frames: &[(MediaKind, FrameRole, u32)]) -> Vec<(u32, u32)> {
        frames
            .iter()
            .filter_map(|&(k, r, ts)| match p.frame(k, r, ts) {
                Step::Open(at) => Some((ts, at)),
                Step::Write(_) => None,
            })
            .collect()
    }

    #[test]
    fn session_plan_is_one_file_from_zero() {
        let mut p = Planner::new(&dvr(DvrPlan::Session, 3, true, TimeJitter::Full));
        assert_eq!(opens(&mut p, &stream(5000, 10)), [(5000, 0)]);
        assert_eq!(p.duration_ms(), 9980);
    }

    #[test]
    fn segment_plan_cuts_at_the_keyframe_past_the_duration() {
        let mut p = Planner::new(&dvr(DvrPlan::Segment, 3, true, TimeJitter::Full));
        // Keyframes every 2 s: the 3 s files end at the keyframes of 4 s and 8 s.
        assert_eq!(
            opens(&mut p, &stream(0, 10)),
            [(0, 0), (4000, 0), (8000, 0)]
        );
        let mut p = Planner::new(&dvr(DvrPlan::Segment, 3, false, TimeJitter::Full));
        let cuts: Vec<u32> = opens(&mut p, &stream(0, 10)).iter().map(|c| c.0).collect();
        assert_eq!(
            cuts,
            [0, 3020, 6040, 9060],
            "the first frame once 3 s are in"
        );
    }

    #[test]
    fn time_jitter_per_file() {
        let mut off = Planner::new(&dvr(DvrPlan::Segment, 3, true, TimeJitter::Off));
        assert_eq!(
            opens(&mut off, &stream(1000, 6)),
            [(1000, 1000), (5000, 5000)]
        );
        let mut zero = Planner::new(&dvr(DvrPlan::Session, 0, true, TimeJitter::Zero));
        assert_eq!(
            zero.frame(MediaKind::Video, FrameRole::Keyframe, 700),
            Step::Open(0)
        );
        // Zero keeps a leap; full makes it a 10 ms step.
        assert_eq!(
            zero.frame(MediaKind::Video, FrameRole::Other, 60_700),
            Step::Write(60_000)
        );
        let mut full = Planner::new(&dvr(DvrPlan::Session, 0, true, TimeJitter::Full));
        full.frame(MediaKind::Video, FrameRole::Keyframe, 700);
        assert_eq!(
            full.frame(MediaKind::Video, FrameRole::Other, 60_700),
            Step::Write(10)
        );
        full.reopen();
        assert_eq!(
            full.frame(MediaKind::Audio, FrameRole::Other, 60_720),
            Step::Open(0)
        );
    }

    #[test]
    fn a_zero_duration_never_cuts() {
        let mut p = Planner::new(&dvr(DvrPlan::Segment, 0, false, TimeJitter::Full));
        assert_eq!(opens(&mut p, &stream(0, 5)).len(), 1);
    }
}
