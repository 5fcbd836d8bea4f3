//! A recording's bytes, per file format: FLV (the header, onMetaData and the sequence
//! headers at the file's start, then each frame as a tag, through [`crate::flv`]'s framing)
//! and fragmented MP4 ([`crate::mp4`]'s init segment once the tracks are known, then a
//! fragment cut at each video keyframe, or each second of an audio-only stream). Both are
//! playable at the end of every write: FLV is a sequence of tags, and the MP4 file is its
//! init segment and whole fragments.
//!
//! The MP4 file ends with its last fragment, with no `mfra`: ffmpeg and players find the
//! duration and every keyframe from the fragments themselves (ffprobe reads the `tfdt`s), and
//! a file cut off by a crash then looks the same as one closed cleanly.
//!
//! Pure: frames in, bytes appended to the caller's buffer.
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};

use crate::flv;
use crate::media::{FrameRole, MediaKind};
use crate::mp4::{self, MuxError, Muxer, Tag, TagError};
use crate::rtmp::amf0::{self, Amf0Value};

/// Longest fragment of an audio-only MP4: what a crash may lose.
const AUDIO_FRAGMENT_MS: u64 = 1000;

/// Why a frame could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A sequence header the MP4 muxer cannot use.
    #[error("{0}")]
    Tag(#[from] TagError),
    /// A box could not be encoded.
    #[error("{0}")]
    Mux(#[from] MuxError),
}

/// The file formats, by `dvr_path`'s ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.flv`, and any path without a known ending (SRS's default).
    Flv,
    /// `.mp4`: fragmented MP4.
    Mp4,
}

impl Format {
    /// The format a `dvr_path` template records in.
    pub fn of(template: &str) -> Self {
        if template.ends_with(".mp4") {
            Self::Mp4
        } else {
            Self::Flv
        }
    }
}

/// What the stream sent that every new file starts with.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    /// The latest onMetaData.
    pub metadata: Option<Bytes>,
    /// The latest video sequence header.
    pub video: Option<Bytes>,
    /// The latest audio sequence header.
    pub audio: Option<Bytes>,
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrote {
    /// In the file (or dropped as the format wants, such as video before a keyframe).
    Done,
    /// A new codec configuration that this file cannot take: start a new file with it.
    NewFile,
}

/// One file's encoder.
#[derive(Debug)]
pub enum Encoder {
    /// FLV.
    Flv {
        /// A video keyframe is in the file: video before it is not decodable.
        keyed: bool,
        /// Where the onMetaData's `duration` and `filesize` numbers sit in the file, to be
        /// filled in when it closes.
        patch: Option<(u64, u64)>,
    },
    /// Fragmented MP4.
    Mp4 {
        /// The muxer.
        mux: Box<Muxer>,
        /// Where the last fragment was cut, ms.
        last_cut: u64,
    },
}

impl Encoder {
    /// A new file in `format` starting at `ts` with `headers`, whose first bytes go to `out`.
    pub fn open(
        format: Format,
        headers: &Headers,
        ts: u32,
        out: &mut BytesMut,
    ) -> Result<Self, FormatError> {
        match format {
            Format::Flv => {
                flv::write_header(true, true, out);
                let mut patch = None;
                if let Some(meta) = &headers.metadata {
                    let at = (out.len() + flv::TAG_HEADER_LEN) as u64;
                    match file_metadata(meta) {
                        Some((body, duration, filesize)) => {
                            flv::write_tag(MediaKind::Data.type_id(), ts, &body, out);
                            patch = Some((at + duration as u64, at + filesize as u64));
                        }
                        None => flv::write_tag(MediaKind::Data.type_id(), ts, meta, out),
                    }
                }
                for (kind, body) in [
                    (MediaKind::Video, &headers.video),
                    (MediaKind::Audio, &headers.audio),
                ] {
                    if let Some(body) = body {
                        flv::write_tag(kind.type_id(), ts, body, out);
                    }
                }
                Ok(Self::Flv {
                    keyed: false,
                    patch,
                })
            }
            Format::Mp4 => {
                let mut enc = Self::Mp4 {
                    mux: Box::default(),
                    last_cut: u64::from(ts),
                };
                for (kind, body) in [
                    (MediaKind::Video, &headers.video),
                    (MediaKind::Audio, &headers.audio),
                ] {
                    if let Some(body) = body {
                        enc.frame(kind, FrameRole::of(kind, body), ts, body, out)?;
                    }
                }
                Ok(enc)
            }
        }
    }

    /// Records one audio or video frame at file time `ts` (metadata is the file's start's).
    pub fn frame(
        &mut self,
        kind: MediaKind,
        role: FrameRole,
        ts: u32,
        body: &Bytes,
        out: &mut BytesMut,
    ) -> Result<Wrote, FormatError> {
        match self {
            Self::Flv { keyed, .. } => {
                if kind == MediaKind::Data {
                    return Ok(Wrote::Done);
                }
                if kind == MediaKind::Video {
                    *keyed |= role == FrameRole::Keyframe;
                    if !*keyed && role != FrameRole::VideoSequenceHeader {
                        return Ok(Wrote::Done);
                    }
                }
                flv::write_tag(kind.type_id(), ts, body, out);
                Ok(Wrote::Done)
            }
            Self::Mp4 { mux, last_cut } => {
                let dts = u64::from(ts);
                let cut = match mp4::read_tag(kind, dts, body)? {
                    Tag::VideoConfig(c) => {
                        return Ok(if mux.set_video(c) {
                            Wrote::Done
                        } else {
                            Wrote::NewFile
                        });
                    }
                    Tag::AudioConfig(c) => {
                        return Ok(if mux.set_audio(c) {
                            Wrote::Done
                        } else {
                            Wrote::NewFile
                        });
                    }
                    Tag::Video(s) => {
                        let key = s.sync;
                        mux.push_video(s);
                        key
                    }
                    Tag::Audio(s) => {
                        mux.push_audio(s);
                        !mux.has_video() && dts >= *last_cut + AUDIO_FRAGMENT_MS
                    }
                    Tag::Other => return Ok(Wrote::Done),
                };
                if let Some(init) = mux.init()? {
                    out.extend_from_slice(&init);
                }
                if cut {
                    if let Some(f) = mux.fragment(dts)? {
                        out.extend_from_slice(&f.bytes);
                    }
                    *last_cut = dts;
                }
                Ok(Wrote::Done)
            }
        }
    }

    /// The file's last bytes: the MP4's queued samples as a final fragment.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), FormatError> {
        if let Self::Mp4 { mux, .. } = self {
            if let Some(f) = mux.flush()? {
                out.extend_from_slice(&f.bytes);
            }
        }
        Ok(())
    }
}

impl Encoder {
    /// What to overwrite in place once the file is complete, `duration_ms` long and `size`
    /// bytes: the FLV onMetaData's `duration` (seconds) and `filesize`, as SRS does, since
    /// players take a file's length from there.
    pub fn patches(&self, duration_ms: u32, size: u64) -> Vec<(u64, [u8; 8])> {
        match self {
            Self::Flv {
                patch: Some((duration, filesize)),
                ..
            } => vec![
                (*duration, (f64::from(duration_ms) / 1000.0).to_be_bytes()),
                (*filesize, (size as f64).to_be_bytes()),
            ],
            _ => Vec::new(),
        }
    }
}

/// The stream's onMetaData for a file: its `duration` and `filesize` (the publisher's, or
/// none for live) replaced by two numbers at the end, filled in at close, with the offsets of
/// their values in the returned body. `None` when the body is not an onMetaData.
fn file_metadata(body: &[u8]) -> Option<(Bytes, usize, usize)> {
    let values = amf0::decode_all(body).ok()?;
    let [name, props] = values.as_slice() else {
        return None;
    };
    let props = match props {
        Amf0Value::EcmaArray(p) | Amf0Value::Object(p) => p,
        _ => return None,
    };
    let mut props: Vec<(String, Amf0Value)> = props
        .iter()
        .filter(|(k, _)| k != "duration" && k != "filesize")
        .cloned()
        .collect();
    props.push(("duration".into(), Amf0Value::Number(0.0)));
    props.push(("filesize".into(), Amf0Value::Number(0.0)));
    let mut out = BytesMut::new();
    amf0::encode_all(&[name.clone(), Amf0Value::EcmaArray(props)], &mut out);
    // The array ends `... 00 08 "filesize" 00 <f64> 00 00 09`: the last number's value is
    // 11 bytes from the end, `duration`'s 8 + 1 + 10 bytes before it.
    let filesize = out.len().checked_sub(3 + 8)?;
    let duration = filesize.checked_sub(8 + 1 + 10)?;
    Some((out.freeze(), duration, filesize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_metadata_gets_patchable_duration_and_filesize() {
        let mut meta = BytesMut::new();
        amf0::encode_all(
            &[
                Amf0Value::String("onMetaData".into()),
                Amf0Value::EcmaArray(vec![
                    ("duration".into(), Amf0Value::Number(10.0)),
                    ("width".into(), Amf0Value::Number(640.0)),
                    ("filesize".into(), Amf0Value::Number(1.0)),
                ]),
            ],
            &mut meta,
        );
        let headers = Headers {
            metadata: Some(meta.freeze()),
            ..Headers::default()
        };
        let mut out = BytesMut::new();
        let enc = Encoder::open(Format::Flv, &headers, 0, &mut out).expect("opens");
        let patches = enc.patches(8500, 4096);
        assert_eq!(patches.len(), 2);
        let mut file = out.to_vec();
        for (at, value) in &patches {
            file[*at as usize..*at as usize + 8].copy_from_slice(value);
        }
        let mut r = flv::FlvReader::new();
        r.push(&file);
        let tag = r.next_tag().expect("valid").expect("a tag");
        let values = amf0::decode_all(&tag.data).expect("amf0");
        let props = &values[1];
        assert_eq!(props.get("duration").and_then(Amf0Value::as_f64), Some(8.5));
        assert_eq!(
            props.get("filesize").and_then(Amf0Value::as_f64),
            Some(4096.0)
        );
        assert_eq!(props.get("width").and_then(Amf0Value::as_f64), Some(640.0));
        assert!(file_metadata(b"junk").is_none());
    }
}
