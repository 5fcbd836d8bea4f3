//! DVR, SRS's `dvr {}`: while a stream is published, a task on the stream's core consumes it
//! like a player ([`crate::hub::Consumer`], no copy of a frame) and writes it to files, FLV
//! or fragmented MP4 by the path's extension, one file per publish (session plan) or one per
//! `dvr_duration` (segment plan). Files are written as `PATH.tmp` and renamed to `PATH` when
//! closed, as SRS does; the `.tmp` is itself playable at every moment, so a crash leaves a
//! usable recording.
//!
//! Files: `path.rs` (the file's name from `dvr_path`), `plan.rs` (when files begin and end,
//! and their timestamps) and `format.rs` (the bytes of each format) are pure; this file is
//! the driver, the only one that touches files.
//!
//! File I/O goes through compio's fs: io_uring reads and writes on the worker's own ring (on
//! the epoll fallback, compio's blocking pool), so a slow disk never stalls the worker's
//! other connections, and no thread or queue of our own is needed. While a write is in
//! flight the task reads no frames; the stream's ring is the bounded queue, and a recording
//! that falls `queue_length` behind skips to a keyframe like a slow player. A full disk or
//! a path that cannot be written is logged once per publish, counted (`/metrics`' and the
//! stream's API entry), and only this recording stops: the segment plan tries again with
//! its next file, and players never notice. Each file renamed to its final name is told to
//! the vhost's `on_dvr` hooks, with the publisher's request, as SRS does.

#![forbid(unsafe_code)]

pub mod format;
pub mod path;
pub mod plan;

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use compio::io::AsyncWriteAtExt;

use self::format::{Encoder, Format, FormatError, Headers, Wrote};
use self::plan::{Planner, Step};
use crate::config::{Dvr, DvrPlan};
use crate::hub::{Consumer, Source, StreamKey, StreamSettings, Wake};
use crate::media::{FrameRole, MediaKind};
use crate::state::Shared;

/// Frames taken from the ring per read; their bytes go to the file in one write.
const BATCH: usize = 64;

/// Why a recording's file failed.
#[derive(Debug, thiserror::Error)]
enum DvrError {
    /// SRS refuses to append to a recording: the name is taken.
    #[error("{0} exists, not overwritten")]
    Exists(String),
    /// Creating, writing or renaming the file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// A frame the format cannot take.
    #[error("{0}")]
    Format(#[from] FormatError),
}

/// Starts recording `key`, published by connection `publisher`, if its vhost's `dvr {}`
/// applies to it.
pub fn spawn(shared: &Arc<Shared>, key: &StreamKey, settings: &StreamSettings, publisher: u64) {
    let config = shared.config();
    let dvr = &config.vhost(&key.vhost).dvr;
    if !dvr.applies_to(&key.app, &key.stream) {
        return;
    }
    let consumer = Consumer::subscribe_own(&shared.hub, key, settings);
    if consumer.source().publisher() != Some(publisher) {
        return;
    }
    let recorder = Recorder {
        shared: shared.clone(),
        source: consumer.source().clone(),
        key: key.clone(),
        format: Format::of(&dvr.path),
        planner: Planner::new(dvr),
        dvr: dvr.clone(),
        publisher,
        hook: None,
        headers: Headers::default(),
        file: None,
        buf: BytesMut::new(),
        failed: false,
        stopped: false,
    };
    compio::runtime::spawn(run(consumer, recorder)).detach();
}

async fn run(mut consumer: Consumer, mut rec: Recorder) {
    let mut frames = Vec::with_capacity(BATCH);
    while !rec.stopped {
        let n = consumer.next_batch(BATCH, |f| {
            frames.push((f.kind, f.role, f.timestamp, f.payload.clone()));
        });
        for (kind, role, ts, body) in frames.drain(..) {
            rec.frame(kind, role, ts, body).await;
        }
        rec.write_out().await;
        if n == 0 && consumer.wait().await == Wake::Unpublished {
            break;
        }
    }
    rec.close().await;
}

/// A file being written.
struct OpenFile {
    file: compio::fs::File,
    /// Bytes written so far.
    pos: u64,
    /// The final name, `[duration]` still in it.
    path: String,
    tmp: String,
    enc: Encoder,
    duration_ms: u32,
}

/// One publish's recording.
struct Recorder {
    shared: Arc<Shared>,
    source: Arc<Source>,
    key: StreamKey,
    dvr: Dvr,
    format: Format,
    planner: Planner,
    publisher: u64,
    /// The publisher's request, for `on_dvr`: taken at the first file, while the publisher
    /// is surely still listed (the session plan's file closes after it left).
    hook: Option<crate::hooks::Request>,
    headers: Headers,
    file: Option<OpenFile>,
    /// Bytes not yet written to the file.
    buf: BytesMut,
    /// An error was logged: later ones of this publish are only counted.
    failed: bool,
    /// Nothing more will be recorded (the session plan's file failed).
    stopped: bool,
}

impl Recorder {
    async fn frame(&mut self, kind: MediaKind, role: FrameRole, ts: u32, body: Bytes) {
        if kind == MediaKind::Data {
            self.headers.metadata = Some(body);
            return;
        }
        // At most twice: a codec change that the file cannot take reopens once.
        for _ in 0..2 {
            let at = match self.planner.frame(kind, role, ts) {
                Step::Open(at) => {
                    self.close().await;
                    if let Err(e) = self.open(at).await {
                        self.fail(e);
                    }
                    at
                }
                Step::Write(at) => at,
            };
            let Some(f) = self.file.as_mut() else {
                break;
            };
            match f.enc.frame(kind, role, at, &body, &mut self.buf) {
                Ok(Wrote::Done) => {
                    f.duration_ms = self.planner.duration_ms();
                    break;
                }
                Ok(Wrote::NewFile) => self.planner.reopen(),
                Err(e) => {
                    self.fail(e.into());
                    break;
                }
            }
        }
        match role {
            FrameRole::VideoSequenceHeader => self.headers.video = Some(body),
            FrameRole::AudioSequenceHeader => self.headers.audio = Some(body),
            _ => {}
        }
    }

    async fn open(&mut self, at: u32) -> Result<(), DvrError> {
        let now = chrono::Local::now();
        let key = &self.key;
        let path = path::expand(
            &self.dvr.path,
            (&key.vhost, &key.app, &key.stream),
            now.naive_local(),
            now.timestamp_millis(),
        );
        if compio::fs::metadata(&path).await.is_ok() {
            return Err(DvrError::Exists(path));
        }
        let io = |path: &str| {
            let path = path.to_owned();
            move |source| DvrError::Io { path, source }
        };
        if let Some(dir) = Path::new(&path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            compio::fs::create_dir_all(dir)
                .await
                .map_err(io(&dir.display().to_string()))?;
        }
        let tmp = path::temporary(&path);
        let file = compio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        self.buf.clear();
        let enc = Encoder::open(self.format, &self.headers, at, &mut self.buf)?;
        tracing::info!(cid = self.publisher, "dvr {key} to {path}");
        if self.hook.is_none() {
            self.hook = Some(crate::hooks::publisher(&self.shared, key, self.publisher));
        }
        self.file = Some(OpenFile {
            file,
            pos: 0,
            path,
            tmp,
            enc,
            duration_ms: 0,
        });
        Ok(())
    }

    /// Writes what the frames so far produced.
    async fn write_out(&mut self) {
        let Some(f) = self.file.as_mut() else {
            self.buf.clear();
            return;
        };
        if self.buf.is_empty() {
            return;
        }
        let bytes = self.buf.split().freeze();
        let n = bytes.len() as u64;
        let compio::BufResult(written, _) = f.file.write_all_at(bytes, f.pos).await;
        match written {
            Ok(()) => f.pos += n,
            Err(source) => {
                let path = f.tmp.clone();
                self.fail(DvrError::Io { path, source });
            }
        }
    }

    /// Ends the current file: its last bytes, then the rename to its final name.
    async fn close(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = f.enc.finish(&mut self.buf) {
            self.fail(e.into());
            return;
        }
        self.write_out().await;
        let Some(mut f) = self.file.take() else {
            return;
        };
        for (at, value) in f.enc.patches(f.duration_ms, f.pos) {
            let compio::BufResult(written, _) = f.file.write_all_at(value.to_vec(), at).await;
            if let Err(source) = written {
                self.fail(DvrError::Io {
                    path: f.tmp,
                    source,
                });
                return;
            }
        }
        let done = path::reaped(&f.path, u64::from(f.duration_ms));
        let closed = f.file.close().await;
        let renamed = match closed {
            Ok(()) => compio::fs::rename(&f.tmp, &done).await,
            Err(e) => Err(e),
        };
        if let Err(source) = renamed {
            self.fail(DvrError::Io {
                path: f.tmp,
                source,
            });
            return;
        }
        self.source.stats.dvr_files.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.dvr_files.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            cid = self.publisher,
            "dvr {} done: {done} ({} ms)",
            self.key,
            f.duration_ms
        );
        if let Some(req) = &self.hook {
            crate::hooks::on_dvr(&self.shared, req, &done);
        }
    }

    /// Drops the current file (its `.tmp` stays, playable up to its last write), counts the
    /// error and logs the first of this publish.
    fn fail(&mut self, e: DvrError) {
        self.file = None;
        self.buf.clear();
        self.source.stats.dvr_errors.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.dvr_errors.fetch_add(1, Ordering::Relaxed);
        if !self.failed {
            self.failed = true;
            let then = match self.dvr.plan {
                DvrPlan::Session => "this publish is not recorded further",
                DvrPlan::Segment => "the next segment tries again",
            };
            tracing::warn!(
                cid = self.publisher,
                "dvr {}: {e}; {then}, players are not affected",
                self.key
            );
        }
        self.stopped = self.dvr.plan == DvrPlan::Session;
    }
}
