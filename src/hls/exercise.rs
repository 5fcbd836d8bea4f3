//! The segmenter driven by arbitrary bytes, for its fuzz target and the unit test that replays
//! the target's seeds and past crashes: frames of any kind, timestamps that jump back and
//! forth, AVC, HEVC and AAC configs or none, junk payloads and unpublishes, all read from the
//! input, into MPEG-TS or, with the first byte's top bit, LL-HLS parts of CMAF or TS. The TS
//! between two discontinuities (where a player resets its demuxer, and a segment too short to
//! keep may have been dropped) must be whole packets whose continuity counters step by one on
//! each PID; with parts, each segment must be its parts end to end, and each playlist must
//! hint the part being written. Pure: it touches only the segmenter.

use super::ts::check_continuity;
use super::{CmafMuxer, Muxer, Options, Output, Segmenter};
use crate::media::MediaKind;

const AVC_CONFIG: &[u8] = &[
    0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0xaa, 1, 0, 1, 0x68,
];
const HEVC_CONFIG: &[u8] = &[
    0x90, b'h', b'v', b'c', b'1', 1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 60, 0xf0, 0, 0xfc,
    0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 1, 0xa0, 0, 1, 0, 2, 0x40, 0x01,
];
const AAC_CONFIG: &[u8] = &[0xaf, 0, 0x12, 0x10];
/// Frame headers the input picks from, followed by its own bytes.
const HEADERS: &[&[u8]] = &[
    &[0x17, 1, 0, 0, 0],
    &[0x27, 1, 0, 0, 0],
    &[0x93, b'h', b'v', b'c', b'1'],
    &[0xa1, b'h', b'v', b'c', b'1', 0, 0, 0],
    &[0x1c, 1, 0, 0, 0],
    &[0xaf, 1],
    &[],
];

/// Feeds `data` to a segmenter; the first TS run that breaks continuity, a segment without a
/// duration, or (with parts) a segment that is not its parts or a playlist without its hint,
/// is the error.
pub fn replay(data: &[u8]) -> Result<(), String> {
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(());
    };
    let ll = flags & 0x80 != 0;
    let opts = Options {
        fragment_ms: 100 + u64::from(flags & 0x0f) * 100,
        td_ratio: 1.0,
        aof_ratio: 2.1,
        window_ms: 1000,
        wait_keyframe: flags & 0x10 == 0,
        video: flags & 0x20 == 0,
        audio: flags & 0x40 == 0,
        m3u8: "live/s.m3u8".into(),
        ts_file: "live/s-[seq]-[duration].ts".into(),
        entry_prefix: String::new(),
        // Parts of 50 to 400 ms: under the 100 ms floor too.
        part_ms: if ll {
            50 + u64::from(flags & 0x07) * 50
        } else {
            0
        },
    };
    if ll && flags & 0x08 != 0 {
        drive(Segmenter::with_muxer(opts, CmafMuxer::new()), rest, false)
    } else {
        drive(Segmenter::new(opts), rest, true)
    }
}

fn drive<M: Muxer>(mut s: Segmenter<M>, mut rest: &[u8], ts_out: bool) -> Result<(), String> {
    let mut ts: u32 = 0;
    let mut run = Run {
        ts: ts_out,
        ..Run::default()
    };
    while let [op, dt_hi, dt_lo, len, tail @ ..] = rest {
        let dt = i16::from_be_bytes([*dt_hi, *dt_lo]);
        ts = ts.wrapping_add_signed(i32::from(dt));
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let kind = if op & 1 == 0 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let payload: Vec<u8> = match op >> 1 & 0x0f {
            0 => AVC_CONFIG.to_vec(),
            1 => HEVC_CONFIG.to_vec(),
            2 => AAC_CONFIG.to_vec(),
            3 => {
                s.handle_unpublish();
                run.collect(&mut s)?;
                continue;
            }
            n => [HEADERS[usize::from(n) % HEADERS.len()], body].concat(),
        };
        let kind = if payload.first() == Some(&0xaf) {
            MediaKind::Audio
        } else if payload
            .first()
            .is_some_and(|b| b & 0x0f == 7 || b & 0x80 != 0)
        {
            MediaKind::Video
        } else {
            kind
        };
        s.handle_frame(kind, ts, &payload, 0);
        run.collect(&mut s)?;
    }
    s.handle_unpublish();
    run.collect(&mut s)?;
    let _ = s.playlist();
    if ts_out {
        check_continuity(&run.bytes)?;
    }
    Ok(())
}

/// What the outputs so far must agree with.
#[derive(Default)]
struct Run {
    /// The segments are TS, whose continuity is checked.
    ts: bool,
    /// The TS since the last discontinuity.
    bytes: Vec<u8>,
    /// The parts of the segment being written, end to end.
    parts: Vec<u8>,
}

impl Run {
    /// Takes the new outputs; at a discontinuity the TS so far is checked and a new run
    /// starts. Every drain goes through here, the last unpublish's too.
    fn collect<M: Muxer>(&mut self, s: &mut Segmenter<M>) -> Result<(), String> {
        while let Some(out) = s.poll_output() {
            match out {
                Output::Segment(seg) => {
                    if seg.discontinuity && self.ts {
                        check_continuity(&self.bytes)?;
                        self.bytes.clear();
                    }
                    if seg.duration_ms == 0 {
                        return Err(format!("segment {} has no duration", seg.seq));
                    }
                    let parts = std::mem::take(&mut self.parts);
                    if !seg.parts.is_empty() && parts != seg.data {
                        return Err(format!("segment {} is not its parts", seg.seq));
                    }
                    if self.ts {
                        self.bytes.extend_from_slice(&seg.data);
                    }
                }
                Output::Part(p) => {
                    if p.data.is_empty() {
                        return Err(format!("part {} is empty", p.name));
                    }
                    self.parts.extend_from_slice(&p.data);
                }
                Output::Playlist(p) => {
                    if let Some(hint) = &p.edge.hint {
                        let text = std::str::from_utf8(&p.text).map_err(|e| e.to_string())?;
                        let uri = hint.name.trim_start_matches("live/");
                        if !text.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"")) {
                            return Err(format!("no hint of {uri}: {text}"));
                        }
                    }
                }
                Output::Init(..) | Output::Expired(_) | Output::Forget(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::replay;

    #[test]
    fn the_fuzz_seeds_keep_continuity() {
        for seed in [
            &include_bytes!("../../fuzz/seeds/hls_segmenter/audio_only")[..],
            include_bytes!("../../fuzz/seeds/hls_segmenter/avc_aac"),
            include_bytes!("../../fuzz/seeds/hls_segmenter/hevc_republish"),
            include_bytes!("../../fuzz/seeds/hls_segmenter/avc_aac_cmaf_ll"),
            include_bytes!("../../fuzz/seeds/hls_segmenter/avc_aac_ts_ll"),
            include_bytes!("../../fuzz/seeds/hls_segmenter/hevc_republish_cmaf_ll"),
        ] {
            replay(seed).expect("continuity");
        }
    }

    /// The fuzzer's crash "segment 3 is not its parts": at an unpublish, a segment under
    /// 100 ms handed out its tail as a part, then was dropped and its number reused.
    #[test]
    fn a_dropped_segment_hands_out_no_part() {
        replay(include_bytes!(
            "../../fuzz/seeds/hls_segmenter/ll_tail_part_of_a_dropped_segment"
        ))
        .expect("segments are their parts");
    }

    /// The fuzzer's crash "segment 0 is not its parts": a part cut on an empty audio frame
    /// (never written), then timestamps stepping back, left the segment ending before its
    /// part, short enough to drop with its part listed.
    #[test]
    fn a_segment_never_ends_before_its_parts() {
        replay(include_bytes!(
            "../../fuzz/seeds/hls_segmenter/ll_part_then_timestamps_back"
        ))
        .expect("segments are their parts");
    }

    /// The fuzzer's crash "pid 0x0 cc 1 then 3": a segment under 100 ms dropped at an
    /// unpublish took a PAT with it, and the next segment, a discontinuity, may jump; see
    /// segmenter's `continuity_may_break_only_at_a_discontinuity`.
    #[test]
    fn the_dropped_segment_crash_is_a_discontinuity() {
        replay(include_bytes!(
            "../../fuzz/seeds/hls_segmenter/pat_cc_across_dropped_segment"
        ))
        .expect("continuity");
    }
}
