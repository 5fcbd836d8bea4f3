//! The DVR segment planner and the fragmented-MP4 muxer (and the FLV file writer beside it)
//! on random frame sequences: valid and broken sequence headers, keyframes, inter frames and
//! audio at timestamps that step forward, back and leap. Nothing may panic, and every MP4
//! file must be well formed: top-level boxes whose sizes add up to the file, containers
//! whose children add up to them, an init segment and fragments that mp4-atom decodes, and
//! each `trun` pointing inside its `mdat`.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mp4_atom::{Decode, Moof, Moov};
use ringcast::config::{Dvr, DvrPlan, TimeJitter};
use ringcast::dvr::format::{Encoder, Format, Headers, Wrote};
use ringcast::dvr::plan::{Planner, Step};
use ringcast::media::{FrameRole, MediaKind};

/// A real AVC sequence header (1280x720, profile 100) and an AAC one (LC, 44.1 kHz, stereo).
const AVC: &[u8] = &[
    0x17, 0, 0, 0, 0, 1, 100, 0, 31, 0xff, 0xe1, 0, 25, 0x67, 0x64, 0x00, 0x1f, 0xac, 0x24, 0x84,
    0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0, 0, 3, 0, 0x40, 0, 0, 0x0c, 0x23, 0xc6, 0x0c, 0x92, 1, 0,
    5, 0x68, 0xee, 0x32, 0xc8, 0xb0,
];
const AAC: &[u8] = &[0xaf, 0, 0x12, 0x10];

const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf",
];

/// Checks that `data` is a run of boxes whose sizes add up to it, recursing into containers.
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a box header cut short");
        let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().unwrap();
        assert!(
            size >= 8 && size <= rest.len(),
            "box {kind:?} of {size} in {}",
            rest.len()
        );
        let body = &rest[8..size];
        if CONTAINERS.contains(&&kind) {
            boxes(body);
        }
        out.push((kind, body));
        rest = &rest[size..];
    }
    out
}

fn check_mp4(file: &[u8]) {
    let top = boxes(file);
    let mut i = 0;
    if top.is_empty() {
        return;
    }
    assert_eq!(&top[0].0, b"ftyp");
    assert_eq!(&top[1].0, b"moov");
    let mut at = 8 + top[0].1.len();
    let moov = &file[at..at + 8 + top[1].1.len()];
    Moov::decode(&mut &moov[..]).expect("moov decodes");
    at += moov.len();
    i += 2;
    while i < top.len() {
        assert_eq!(&top[i].0, b"moof");
        assert_eq!(&top[i + 1].0, b"mdat", "a moof without its mdat");
        let moof_len = 8 + top[i].1.len();
        let moof = Moof::decode(&mut &file[at..at + moof_len]).expect("moof decodes");
        let mdat_end = moof_len + 8 + top[i + 1].1.len();
        let mut end = moof_len + 8;
        for traf in &moof.traf {
            for trun in &traf.trun {
                let offset = trun.data_offset.expect("a data offset") as usize;
                assert_eq!(offset, end, "runs tile the mdat");
                end += trun
                    .samples
                    .iter()
                    .map(|s| s.size.unwrap_or(0) as usize)
                    .sum::<usize>();
            }
        }
        assert_eq!(end, mdat_end, "the mdat holds exactly the runs");
        at += mdat_end;
        i += 2;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, ops)) = data.split_first() else {
        return;
    };
    let format = if cfg & 1 == 0 {
        Format::Mp4
    } else {
        Format::Flv
    };
    let dvr = Dvr {
        enabled: true,
        plan: if cfg & 2 == 0 {
            DvrPlan::Segment
        } else {
            DvrPlan::Session
        },
        duration: std::time::Duration::from_secs(u64::from(cfg >> 6)),
        wait_keyframe: cfg & 4 == 0,
        time_jitter: [TimeJitter::Full, TimeJitter::Zero, TimeJitter::Off]
            [usize::from(cfg >> 3 & 3) % 3],
        ..Dvr::default()
    };
    let mut plan = Planner::new(&dvr);
    let mut headers = Headers::default();
    let mut enc: Option<Encoder> = None;
    let mut file = BytesMut::new();
    let finish = |enc: &mut Option<Encoder>, file: &mut BytesMut| {
        if let Some(mut e) = enc.take() {
            if e.finish(file).is_ok() && format == Format::Mp4 {
                check_mp4(file);
            }
        }
        file.clear();
    };
    let mut ts: u32 = 0;
    let mut rest = ops;
    while rest.len() >= 4 {
        let (op, delta, len) = (rest[0], i16::from_be_bytes([rest[1], rest[2]]), rest[3]);
        rest = &rest[4..];
        let n = usize::from(len).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        rest = tail;
        ts = ts.wrapping_add_signed(i32::from(delta));
        let (kind, body): (MediaKind, Bytes) = match op % 8 {
            0 => (MediaKind::Video, Bytes::from_static(AVC)),
            1 => (MediaKind::Audio, Bytes::from_static(AAC)),
            2 => (
                MediaKind::Video,
                [&[0x17, 1, 0, 0, op >> 3][..], payload].concat().into(),
            ),
            3 => (
                MediaKind::Video,
                [&[0x27, 1, 0xff, 0xff, op][..], payload].concat().into(),
            ),
            4 => (MediaKind::Audio, [&[0xaf, 1][..], payload].concat().into()),
            5 => (MediaKind::Video, Bytes::copy_from_slice(payload)),
            6 => (MediaKind::Audio, Bytes::copy_from_slice(payload)),
            _ => (MediaKind::Data, Bytes::copy_from_slice(payload)),
        };
        let role = FrameRole::of(kind, &body);
        if kind == MediaKind::Data {
            headers.metadata = Some(body);
            continue;
        }
        for _ in 0..2 {
            let at = match plan.frame(kind, role, ts) {
                Step::Open(at) => {
                    finish(&mut enc, &mut file);
                    enc = Encoder::open(format, &headers, at, &mut file).ok();
                    at
                }
                Step::Write(at) => at,
            };
            let Some(e) = enc.as_mut() else { break };
            match e.frame(kind, role, at, &body, &mut file) {
                Ok(Wrote::NewFile) => plan.reopen(),
                Ok(Wrote::Done) => break,
                Err(_) => {
                    enc = None;
                    file.clear();
                    break;
                }
            }
        }
        match role {
            FrameRole::VideoSequenceHeader => headers.video = Some(body),
            FrameRole::AudioSequenceHeader => headers.audio = Some(body),
            _ => {}
        }
        if let Some(e) = &enc {
            let _ = e.patches(plan.duration_ms(), file.len() as u64);
        }
    }
    finish(&mut enc, &mut file);
});
