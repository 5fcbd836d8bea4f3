//! The HLS driver: one task per stream, started when the stream is published, on that core,
//! that feeds the stream's frames (a hub [`Consumer`], like a forwarder's) to the sans-IO
//! [`Segmenter`] (writing MPEG-TS, or CMAF with `hls_fmp4`) and publishes what comes out:
//! segments, init segments, LL-HLS parts and playlists to the in-memory store the HTTP server
//! reads ([`crate::state::HlsStore`]), segments and parts also in a sealed memfd each, which
//! plain HTTP sends to every player with `sendfile` instead of copying it in, each LL-HLS
//! playlist's edge to the store's waiters once what it names is there, and, under `hls_path`,
//! segments, init segments and playlists (not parts: only this server answers LL-HLS's blocking
//! requests) to files.
//!
//! The task outlives a publish: a publisher that comes back within `hls_dispose` continues
//! the same playlist after an `#EXT-X-DISCONTINUITY`. When none does, the stream's playlist
//! and segments leave memory, and with `hls_dispose` above 0 its files go too.
//!
//! Files are written by one process-wide writer thread fed through a bounded queue: opening,
//! writing, renaming and unlinking are blocking calls (compio's epoll fallback runs them on
//! a thread pool anyway), one thread keeps each stream's order (segment, then the playlist
//! that names it, then the removal of the expired one) with no locks, and a slow or full
//! disk then costs dropped file jobs, counted, never a stalled worker. Errors are counted
//! and logged at the first failure after a success, not at every segment.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam::channel::{bounded, Sender, TrySendError};

use crate::config::VhostHls;
use crate::hls::{fill_stream, CmafMuxer, Muxer, Options, Output, Segmenter};
use crate::hub::{Consumer, StreamKey, StreamSettings, Wake};
use crate::runtime::SealedFile;
use crate::state::{delta_name, Body, Shared, StreamHls};

/// Frames fed to the segmenter per turn.
const BATCH: usize = 64;
/// File jobs queued for the writer thread at most (a few minutes of segments of many
/// streams); past this, jobs are dropped and counted.
const FILE_QUEUE: usize = 4096;

/// Starts `key`'s segmenter if its vhost has `hls { enabled on; }` and none runs yet.
pub(super) fn spawn(shared: &Arc<Shared>, key: &StreamKey, settings: &StreamSettings) {
    let config = shared.config();
    let hls = config.vhost(&key.vhost).hls.clone();
    if !hls.enabled || !shared.hls.claim(key) {
        return;
    }
    // Subscribed here, before the publisher's first frame: the task starts later, and a
    // publisher that sends a burst first would otherwise leave it only the last GOP.
    let consumer = Consumer::subscribe_own(&shared.hub, key, settings);
    compio::runtime::spawn(run(shared.clone(), key.clone(), consumer, hls)).detach();
}

fn options(hls: &VhostHls, key: &StreamKey) -> Options {
    let fill = |t: &str| fill_stream(t, &key.vhost, &key.app, &key.stream);
    Options {
        fragment_ms: hls.fragment.as_millis() as u64,
        td_ratio: hls.td_ratio,
        aof_ratio: hls.aof_ratio,
        window_ms: hls.window.as_millis() as u64,
        wait_keyframe: hls.wait_keyframe,
        video: hls.video,
        audio: hls.audio,
        m3u8: fill(&hls.m3u8_file),
        ts_file: segment_file(&fill(&hls.ts_file), hls.fmp4),
        entry_prefix: hls.entry_prefix.clone(),
        part_ms: if hls.ll {
            hls.part.as_millis() as u64
        } else {
            0
        },
    }
}

/// `hls_ts_file`'s name, with `.m4s` for `.ts` when the segments are fMP4.
pub(crate) fn segment_file(template: &str, fmp4: bool) -> String {
    match template.strip_suffix(".ts") {
        Some(stem) if fmp4 => format!("{stem}.m4s"),
        _ => template.to_owned(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn run(shared: Arc<Shared>, key: StreamKey, consumer: Consumer, hls: VhostHls) {
    let opts = options(&hls, &key);
    if hls.fmp4 {
        let segmenter = Segmenter::with_muxer(opts, CmafMuxer::new());
        segment(shared, key, consumer, hls, segmenter).await;
    } else {
        segment(shared, key, consumer, hls, Segmenter::new(opts)).await;
    }
}

async fn segment<M: Muxer>(
    shared: Arc<Shared>,
    key: StreamKey,
    mut consumer: Consumer,
    hls: VhostHls,
    mut segmenter: Segmenter<M>,
) {
    let files = Files {
        dir: hls.path.clone(),
        cleanup: hls.cleanup,
    };
    tracing::info!("hls {key}: segmenting to {}", segmenter.options().m3u8);
    let linger = linger(&hls);
    loop {
        let n = consumer.next_batch(BATCH, |f| {
            segmenter.handle_frame(f.kind, f.timestamp, &f.payload, now_ms())
        });
        publish(&shared, &key, &mut segmenter, &files);
        if n > 0 {
            continue;
        }
        if consumer.wait().await == Wake::Data {
            continue;
        }
        segmenter.handle_unpublish();
        publish(&shared, &key, &mut segmenter, &files);
        // Wait for a publisher to come back, or give up after linger.
        let back = loop {
            match compio::time::timeout(linger, consumer.wait()).await {
                Ok(Wake::Data) => break true,
                Ok(Wake::Unpublished) => continue,
                Err(_) => {
                    let source = consumer.source().clone();
                    if shared.hls.release_if(&key, || source.publisher().is_none()) {
                        break false;
                    }
                }
            }
        };
        if back {
            continue;
        }
        let names: Vec<String> = segmenter.dispose();
        let m3u8 = segmenter.options().m3u8.clone();
        shared.hls.end_live(&m3u8);
        let delta = delta_name(&m3u8);
        shared.hls.remove(
            names
                .iter()
                .map(String::as_str)
                .chain([m3u8.as_str(), delta.as_str()]),
        );
        if !hls.dispose.is_zero() {
            for name in names.iter().chain([&m3u8]) {
                files.remove(&shared, name);
            }
        }
        tracing::info!("hls {key}: disposed");
        return;
    }
}

/// Hands the segmenter's outputs to the store and the files.
fn publish<M: Muxer>(
    shared: &Arc<Shared>,
    key: &StreamKey,
    segmenter: &mut Segmenter<M>,
    files: &Files,
) {
    let mut changed = false;
    while let Some(out) = segmenter.poll_output() {
        changed = true;
        match out {
            Output::Init(name, data) => {
                shared.hls.put(&name, data.clone());
                files.write(shared, &name, data);
            }
            Output::Segment(s) => {
                shared.hls.stats.segments.fetch_add(1, Ordering::Relaxed);
                shared
                    .hls
                    .put_body(&s.name, sealed(&s.name, s.data.clone(), true));
                files.write(shared, &s.name, s.data);
            }
            Output::Part(p) => shared.hls.put_body(&p.name, sealed(&p.name, p.data, false)),
            Output::Playlist(p) => {
                let name = &segmenter.options().m3u8;
                shared.hls.put_playlist(name, p.text, p.delta);
                if let Some(file) = p.file {
                    files.write(shared, name, file);
                }
                // Only LL-HLS playlists hint a part and take blocking requests.
                if p.edge.hint.is_some() {
                    shared.hls.set_edge(name, p.edge);
                }
            }
            Output::Expired(name) => {
                if files.cleanup {
                    files.remove(shared, &name);
                }
            }
            Output::Forget(name) => shared.hls.remove([name.as_str()]),
        }
    }
    if changed {
        let (sequence, segments) = segmenter.status();
        shared.hls.set_status(key, StreamHls { sequence, segments });
    }
}

/// What every player fetches: `data` in a sealed memfd for `sendfile`, and as bytes for the
/// connections that cannot send a file (TLS); as `data` alone when no memfd can be made (the
/// process is out of files or memory). With `map`, the bytes are a map of the memfd, so the
/// window's segments are held once, not on the heap as well: a 60 s window of a 528 kbps
/// stream is 3.9 MB. A part keeps its own bytes: parts go five times a second a stream, and
/// unmapping each would interrupt every core of the process to flush its TLB, for 13 KB.
fn sealed(name: &str, data: Bytes, map: bool) -> Body {
    let file = match SealedFile::new(&data) {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!("hls {name}: no memfd, served from memory: {e}");
            return Body { data, sealed: None };
        }
    };
    let data = match map.then(|| file.map()) {
        Some(Ok(mapped)) => mapped,
        Some(Err(e)) => {
            tracing::debug!("hls {name}: memfd not mapped, its bytes kept: {e}");
            data
        }
        None => data,
    };
    Body {
        data,
        sealed: Some(Arc::new(file)),
    }
}

/// A stream's files under `hls_path`.
struct Files {
    dir: PathBuf,
    cleanup: bool,
}

enum Job {
    Write(PathBuf, Bytes),
    Remove(PathBuf),
}

impl Files {
    fn write(&self, shared: &Arc<Shared>, name: &str, data: Bytes) {
        send(shared, Job::Write(self.dir.join(name), data));
    }

    fn remove(&self, shared: &Arc<Shared>, name: &str) {
        send(shared, Job::Remove(self.dir.join(name)));
    }
}

/// The writer thread's queue, started at the first file job of the process.
static WRITER: OnceLock<Sender<Job>> = OnceLock::new();

fn send(shared: &Arc<Shared>, job: Job) {
    let tx = WRITER.get_or_init(|| {
        let (tx, rx) = bounded::<Job>(FILE_QUEUE);
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("hls-files".into())
            .spawn(move || {
                let mut failing = false;
                for job in rx {
                    let (what, path, result) = match &job {
                        Job::Write(path, data) => ("write", path, write_atomically(path, data)),
                        Job::Remove(path) => ("remove", path, remove(path)),
                    };
                    match result {
                        Ok(()) => failing = false,
                        Err(e) => {
                            shared.hls.stats.file_errors.fetch_add(1, Ordering::Relaxed);
                            if !failing {
                                tracing::warn!("hls: cannot {what} {}: {e}", path.display());
                            }
                            failing = true;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("hls: no file writer thread: {e}");
        }
        tx
    });
    match tx.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            shared.hls.stats.file_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes `path` as a whole: to `path.tmp`, then renamed over it, so that a reader (nginx,
/// a CDN) sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// How long a stream nobody republishes keeps its HLS: `hls_dispose`, or `hls_window` when
/// files are kept for ever (`hls_dispose 0`), so that memory stays bounded either way.
fn linger(hls: &VhostHls) -> Duration {
    if hls.dispose.is_zero() {
        hls.window
    } else {
        hls.dispose
    }
}
