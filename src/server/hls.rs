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
//!
//! A vhost with `on_hls` or `on_hls_notify` hooks has each segment told to them once its file
//! is in place (the writer thread's rename), with the request of the publisher it was cut
//! from, as SRS does: a hook server that copies segments to a CDN or a bucket reads a whole
//! file.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam::channel::{bounded, Sender, TrySendError};

use crate::config::VhostHls;
use crate::hls::Segment;
use crate::hls::{fill_stream, CmafMuxer, Muxer, Options, Output, Segmenter};
use crate::hooks::{Action, HlsSegment, Request};
use crate::hub::{Consumer, Source, StreamKey, StreamSettings, Wake};
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
        nb_notify: hls.nb_notify,
    };
    tracing::info!("hls {key}: segmenting to {}", segmenter.options().m3u8);
    let linger = linger(&hls);
    let mut named = Named {
        source: consumer.source().clone(),
        last: None,
    };
    loop {
        let n = consumer.next_batch(BATCH, |f| {
            segmenter.handle_frame(f.kind, f.timestamp, &f.payload, now_ms())
        });
        publish(&shared, &key, &mut segmenter, &files, &mut named);
        if n > 0 {
            continue;
        }
        if consumer.wait().await == Wake::Data {
            continue;
        }
        segmenter.handle_unpublish();
        publish(&shared, &key, &mut segmenter, &files, &mut named);
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

/// Who a stream's `on_hls` hooks name: the request of the publisher the segment was cut from,
/// looked up again when the publisher changed (a republish), and kept after it left, when
/// its last segment closes.
struct Named {
    source: Arc<Source>,
    last: Option<(u64, Request)>,
}

impl Named {
    fn request(&mut self, shared: &Shared, key: &StreamKey) -> Request {
        let now = self.source.publisher();
        let (id, req) = match (now, self.last.take()) {
            (Some(id), Some((last, req))) if id == last => (id, req),
            (None, Some(last)) => last,
            (now, _) => {
                let id = now.unwrap_or_default();
                (id, crate::hooks::publisher(shared, key, id))
            }
        };
        self.last = Some((id, req.clone()));
        req
    }
}

/// What `on_hls` tells of segment `s` of a playlist at `m3u8`, its files under `dir`.
fn hook_segment(s: &Segment, m3u8: &str, dir: &Path) -> HlsSegment {
    // SRS's ts_url: the playlist's line, under the playlist's folder unless absolute.
    let url = match m3u8.rsplit_once('/') {
        Some((folder, _)) if !crate::hooks::is_http_url(&s.uri) => format!("{folder}/{}", s.uri),
        _ => s.uri.clone(),
    };
    HlsSegment {
        duration_ms: s.duration_ms,
        file: dir.join(&s.name).display().to_string(),
        url,
        m3u8: dir.join(m3u8).display().to_string(),
        m3u8_url: m3u8.to_owned(),
        seq_no: s.seq,
    }
}

/// Where the vhost has `on_hls` or `on_hls_notify` hooks, a task that calls them for segment
/// `s` once the writer thread says its file is in place, and what the writer tells it with;
/// a file that could not be written drops the sender, and the hooks are not called.
fn file_hooks(
    shared: &Arc<Shared>,
    key: &StreamKey,
    s: &Segment,
    opts: &Options,
    files: &Files,
    named: &mut Named,
) -> Option<futures_channel::oneshot::Sender<()>> {
    let hls = crate::hooks::wanted(shared, &key.vhost, Action::Hls);
    let notify = crate::hooks::wanted(shared, &key.vhost, Action::HlsNotify);
    if !hls && !notify {
        return None;
    }
    let req = named.request(shared, key);
    let segment = hook_segment(s, &opts.m3u8, &files.dir);
    let (ts_url, nb) = (s.uri.clone(), files.nb_notify);
    let (tx, rx) = futures_channel::oneshot::channel();
    let shared = shared.clone();
    compio::runtime::spawn(async move {
        if rx.await.is_err() {
            return;
        }
        if hls {
            crate::hooks::on_hls(&shared, &req, segment);
        }
        if notify {
            crate::hooks::on_hls_notify(&shared, &req, &ts_url, nb);
        }
    })
    .detach();
    Some(tx)
}

/// Hands the segmenter's outputs to the store and the files.
fn publish<M: Muxer>(
    shared: &Arc<Shared>,
    key: &StreamKey,
    segmenter: &mut Segmenter<M>,
    files: &Files,
    named: &mut Named,
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
                let written = file_hooks(shared, key, &s, segmenter.options(), files, named);
                send(shared, Job::Write(files.dir.join(&s.name), s.data, written));
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
    /// `hls_nb_notify`, for the segments' `on_hls_notify`.
    nb_notify: usize,
}

enum Job {
    /// A file to write, and whom to tell once it is in place.
    Write(PathBuf, Bytes, Option<futures_channel::oneshot::Sender<()>>),
    Remove(PathBuf),
}

impl Files {
    fn write(&self, shared: &Arc<Shared>, name: &str, data: Bytes) {
        send(shared, Job::Write(self.dir.join(name), data, None));
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
                    let (what, path, result, written) = match job {
                        Job::Write(path, data, written) => {
                            let result = write_atomically(&path, &data);
                            ("write", path, result, written)
                        }
                        Job::Remove(path) => {
                            let result = remove(&path);
                            ("remove", path, result, None)
                        }
                    };
                    match result {
                        Ok(()) => {
                            failing = false;
                            if let Some(tx) = written {
                                let _ = tx.send(());
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(name: &str, uri: &str) -> Segment {
        Segment {
            seq: 3,
            duration_ms: 2_000,
            name: name.into(),
            uri: uri.into(),
            discontinuity: false,
            map: None,
            parts: Vec::new(),
            data: Bytes::new(),
        }
    }

    #[test]
    fn on_hls_names_the_files_and_urls_as_srs() {
        let dir = Path::new("./objs/nginx/html");
        let s = hook_segment(&segment("live/cam-3.ts", "cam-3.ts"), "live/cam.m3u8", dir);
        assert_eq!(s.file, "./objs/nginx/html/live/cam-3.ts");
        assert_eq!(s.url, "live/cam-3.ts");
        assert_eq!(s.m3u8, "./objs/nginx/html/live/cam.m3u8");
        assert_eq!((s.m3u8_url.as_str(), s.seq_no), ("live/cam.m3u8", 3));
        // Under an `hls_entry_prefix` of a CDN, the playlist's line is the URL.
        let cdn = "http://cdn.example/live/cam-3.ts";
        let s = hook_segment(&segment("live/cam-3.ts", cdn), "live/cam.m3u8", dir);
        assert_eq!(s.url, cdn);
        let s = hook_segment(&segment("cam-3.ts", "cam-3.ts"), "cam.m3u8", dir);
        assert_eq!(s.url, "cam-3.ts");
    }
}
