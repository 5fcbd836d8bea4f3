//! HLS load: a player task that plays a live media playlist the way a real player does,
//! against any HLS server (ringcast, nginx-rtmp's files behind nginx, SRS). It loads the
//! playlist, starts three target durations behind the live edge (hls.js's
//! `liveSyncDurationCount`), reloads the playlist every target duration or half of one
//! after an unchanged reload (RFC 8216 section 6.3.4), fetches new segments in order over
//! one keep-alive connection, and plays their video on a playout clock: the latency is the
//! time a frame would be shown minus the publisher's stamp in it (see [`Playout`]).
//!
//! A player keeps up while it sees no 404, skips no segment that left the playlist before
//! it was fetched, and never stalls (a frame arriving after its time to be shown); each such
//! event is counted in [`HlsCounters`]. The playlist's schedule ([`Schedule`]) and the
//! playout clock are pure; the task only moves bytes. Playlists are parsed by the `m3u8-rs`
//! crate, segments by [`super::ts`].
//!
//! Thousands of players share the load tool's core with the servers it measures, so only
//! one in `--sample` is full ([`PlayMode`]): it demuxes its segments' video for the stamps
//! and plays each frame on the clock. The others are light: they fetch every segment whole
//! and in order like the full ones, count its bytes without reading them, and play each
//! segment on the same clock at its `#EXTINF` duration after the one before, due when its
//! last byte came; stricter than a frame clock by a segment's transfer time (milliseconds
//! on loopback). Latency comes from the full players alone. A response's first read takes
//! the player's own 4 KiB; the reads after it, while the body flows, take large buffers
//! ([`READ`]) lent by the worker: idle or waiting players hold none.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::AsyncRead;

use super::flv::{FlvTarget, ResponseError, ResponseReader};
use super::rtmp::{connect, LoadError};
use super::ts::{SyncCheck, TsDemuxer};
use super::{sei, wall_ms, ClientState, PlayMode, Stats, PLAYER_WARMUP};

/// Target durations behind the live edge where playback starts, as hls.js.
pub const LIVE_SYNC_COUNT: f32 = 3.0;
/// A frame later than this after its time to be shown is a stall; less is jitter that a
/// player's buffer absorbs.
pub const STALL_TOLERANCE_MS: i64 = 100;
/// A PTS jump larger than this (either way) is a discontinuity: the clock starts over.
const PTS_JUMP_MS: i64 = 10_000;
/// Bytes of each video frame read for its stamp.
const FRAME_HEAD: usize = 1024;
/// The longest reload interval honoured, whatever a playlist says.
const MAX_TARGET: Duration = Duration::from_secs(60);
/// Retry interval while the playlist does not exist yet (publisher still starting).
const NOT_YET: Duration = Duration::from_secs(1);
/// Master playlists followed in a row before the player gives up: each is loaded at once,
/// so a master that names itself must not spin.
const MAX_MASTERS: u32 = 3;
/// The most one read of a body in flight takes: a 2 s segment of the 528 kbps stream (about
/// 150 KB) in one or two reads, where 16 KiB took ten system calls.
pub const READ: usize = 256 * 1024;
/// A player's own buffer, for the first read of each response: the head, a playlist, a
/// segment's first bytes. That read waits while the server is busy with others, so the
/// large buffers are lent only to the reads after it, when the body is flowing.
const FIRST_READ: usize = 4 * 1024;
/// Large read buffers a worker keeps between reads; beyond this, returned ones are freed.
const POOLED: usize = 128;

thread_local! {
    /// This worker's read buffers not lent out.
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of [`READ`] bytes from this worker's pool.
fn lend() -> Vec<u8> {
    BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(READ))
}

/// Returns a buffer from [`lend`] to the pool.
fn give_back(mut buf: Vec<u8>) {
    buf.clear();
    BUFFERS.with_borrow_mut(|pool| {
        if pool.len() < POOLED {
            pool.push(buf);
        }
    });
}

/// Why a playlist could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    /// Not an M3U8 media playlist.
    #[error("not an HLS media playlist: {0}")]
    Parse(String),
    /// Bytes that are not UTF-8, which RFC 8216 requires of a playlist.
    #[error("HLS playlist is not UTF-8")]
    NotUtf8,
    /// A segment URI on another server, which one keep-alive connection cannot fetch.
    #[error("segment URI {0:?} is on another host")]
    OtherHost(String),
    /// A master playlist with no variant stream to play.
    #[error("HLS master playlist without a variant stream")]
    NoVariant,
}

/// A segment to fetch: its media sequence number, path on the server and duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// The path (and query) to GET.
    pub path: String,
    /// Its `#EXTINF` duration in milliseconds, within 0 and `MAX_TARGET` (m3u8-rs takes
    /// any float: negative, NaN and infinite ones too).
    pub duration_ms: i64,
}

/// What a playlist reload decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// When to reload next, from the moment this reload began.
    pub after: Duration,
    /// Segments that left the playlist before the player fetched them.
    pub skipped: u64,
    /// The playlist has `#EXT-X-ENDLIST`: the stream is over.
    pub ended: bool,
    /// It was a master playlist: the path of the media playlist to load now instead, its
    /// first variant (SRS answers a first request so, naming its `hls_ctx` session).
    pub variant: Option<String>,
}

/// Which segments to fetch, from successive reloads of one media playlist.
#[derive(Debug)]
pub struct Schedule {
    /// The playlist's path, against which relative URIs resolve.
    playlist: String,
    /// The host segments must be on.
    host: String,
    /// The next media sequence number to queue.
    next: Option<u64>,
    /// The playlist's end (last MSN + 1) at the previous reload.
    seen_end: Option<u64>,
    queue: VecDeque<Segment>,
}

impl Schedule {
    /// A schedule for the playlist at `playlist` (a path) on `host`.
    pub fn new(host: &str, playlist: &str) -> Self {
        Self {
            playlist: playlist.to_owned(),
            host: host.to_owned(),
            next: None,
            seen_end: None,
            queue: VecDeque::new(),
        }
    }

    /// Takes a reload's body: queues the segments that are new.
    pub fn playlist(&mut self, text: &[u8]) -> Result<Reload, PlaylistError> {
        // RFC 8216 4.1: a playlist is UTF-8. m3u8-rs reads a comment line that is not UTF-8
        // as a segment URI (found by fuzz/hls_playlist), so such text is refused first.
        if std::str::from_utf8(text).is_err() {
            return Err(PlaylistError::NotUtf8);
        }
        let refused = || {
            let head = String::from_utf8_lossy(&text[..text.len().min(40)]);
            PlaylistError::Parse(format!("{head:?}"))
        };
        if m3u8_rs::is_master_playlist(text) {
            let master = m3u8_rs::parse_master_playlist_res(text).map_err(|_| refused())?;
            let uri = master
                .variants
                .iter()
                .find(|v| !v.is_i_frame && !v.uri.is_empty())
                .ok_or(PlaylistError::NoVariant)?;
            let path = self.resolve(&uri.uri)?;
            // Another media playlist: its numbering owes nothing to what was queued.
            *self = Self::new(&self.host, &path);
            return Ok(Reload {
                after: Duration::ZERO,
                skipped: 0,
                ended: false,
                variant: Some(path),
            });
        }
        let pl = m3u8_rs::parse_media_playlist_res(text).map_err(|_| refused())?;
        let target = Duration::from_secs(pl.target_duration.max(1)).min(MAX_TARGET);
        let first = pl.media_sequence;
        let end = first.saturating_add(pl.segments.len() as u64);
        let changed = self.seen_end != Some(end);
        self.seen_end = Some(end);
        let mut skipped = 0;
        while self.queue.front().is_some_and(|s| s.msn < first) {
            self.queue.pop_front();
            skipped += 1;
        }
        let next = match self.next {
            // Numbering went back: the server restarted the stream. Start over.
            Some(n) if n > end => None,
            n => n,
        };
        let next = match next {
            Some(n) if n < first => {
                skipped += first - n;
                first
            }
            Some(n) => n,
            None => {
                // Three target durations of media behind the live edge.
                let behind = LIVE_SYNC_COUNT * target.as_secs_f32();
                let mut sum = 0.0;
                let mut at = pl.segments.len();
                while at > 0 && sum < behind {
                    at -= 1;
                    sum += pl.segments[at].duration.max(0.0);
                }
                first.saturating_add(at as u64)
            }
        };
        let from = usize::try_from(next - first).unwrap_or(usize::MAX);
        // Resolved before any is queued: a reload refused for one URI on another host queues
        // none of its segments (fuzz/hls_playlist found the half-queued reload).
        let fresh = pl
            .segments
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, s)| {
                Ok(Segment {
                    msn: first + i as u64,
                    path: self.resolve(&s.uri)?,
                    duration_ms: (f64::from(s.duration) * 1000.0)
                        .clamp(0.0, MAX_TARGET.as_millis() as f64)
                        as i64,
                })
            })
            .collect::<Result<Vec<_>, PlaylistError>>()?;
        self.queue.extend(fresh);
        self.next = Some(next.max(end));
        Ok(Reload {
            after: if changed { target } else { target / 2 },
            skipped,
            ended: pl.end_list,
            variant: None,
        })
    }

    /// The next segment to fetch, in order.
    pub fn next_segment(&mut self) -> Option<Segment> {
        self.queue.pop_front()
    }

    /// A segment URI as a path on the playlist's server.
    fn resolve(&self, uri: &str) -> Result<String, PlaylistError> {
        if let Some(rest) = uri.strip_prefix("http://") {
            return match rest.split_once('/') {
                Some((host, path)) if host == self.host => Ok(format!("/{path}")),
                _ => Err(PlaylistError::OtherHost(uri.to_owned())),
            };
        }
        if uri.contains("://") {
            return Err(PlaylistError::OtherHost(uri.to_owned()));
        }
        if uri.starts_with('/') {
            return Ok(uri.to_owned());
        }
        let path = self.playlist.split(['?', '#']).next().unwrap_or("");
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        Ok(format!("{dir}/{uri}"))
    }
}

/// A player's playout clock, in wall-clock milliseconds: the first frame is shown when it
/// arrives and each later one its PTS distance after; a frame that arrives after its time
/// is shown on arrival and moves the clock (the player rebuffered). A frame's latency is
/// the time it is shown minus the time the publisher stamped it.
#[derive(Debug, Default)]
pub struct Playout {
    /// Wall time at which PTS 0 is shown.
    base: Option<i64>,
    last_pts: i64,
}

/// One frame through the playout clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// When it is shown minus its stamp, ms (when it has a stamp).
    pub latency_ms: Option<u64>,
    /// It arrived more than [`STALL_TOLERANCE_MS`] after its time to be shown.
    pub stalled: bool,
    /// How long after its time to be shown it arrived, ms; 0 when in time.
    pub late_ms: i64,
}

impl Playout {
    /// A frame of PTS `pts_ms` that arrived at `now_ms`, stamped `stamp_ms` if it is.
    pub fn frame(&mut self, pts_ms: i64, now_ms: i64, stamp_ms: Option<u64>) -> Shown {
        let base = match self.base {
            Some(b) if (pts_ms - self.last_pts).abs() <= PTS_JUMP_MS => b,
            _ => now_ms - pts_ms,
        };
        self.last_pts = pts_ms;
        let late = now_ms - (base + pts_ms);
        let base = base + late.max(0);
        self.base = Some(base);
        let shown = base + pts_ms;
        Shown {
            latency_ms: stamp_ms.map(|s| u64::try_from(shown).unwrap_or(0).saturating_sub(s)),
            stalled: late > STALL_TOLERANCE_MS,
            late_ms: late.max(0),
        }
    }
}

/// A light player's playout clock: whole segments, each due its `#EXTINF` duration after the
/// one before, shown when its last byte came.
#[derive(Debug, Default)]
pub struct SegmentClock {
    playout: Playout,
    /// Where the next segment starts on the media timeline, ms.
    media_ms: i64,
}

impl SegmentClock {
    /// A segment of `duration_ms` fetched whole at `now_ms`, through the clock.
    pub fn segment(&mut self, duration_ms: i64, now_ms: i64) -> Shown {
        let shown = self.playout.frame(self.media_ms, now_ms, None);
        self.media_ms = self.media_ms.saturating_add(duration_ms);
        shown
    }
}

/// The HLS players' own counters, beside [`Stats`].
#[derive(Debug)]
pub struct HlsCounters {
    /// Per player: 404s, skipped segments and stalls, the events of not keeping up.
    pub late: Vec<AtomicU64>,
    /// Segments fetched whole.
    pub segments: AtomicU64,
    /// Playlist and segment requests answered 404 after the player started.
    pub not_found: AtomicU64,
    /// Segments that left the playlist before they were fetched.
    pub skipped: AtomicU64,
    /// Frames that arrived after their time to be shown.
    pub stalls: AtomicU64,
}

/// [`HlsCounters`] at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSnapshot {
    late: Vec<u64>,
    /// Segments fetched.
    pub segments: u64,
    /// 404s.
    pub not_found: u64,
    /// Skipped segments.
    pub skipped: u64,
    /// Stalls.
    pub stalls: u64,
}

impl HlsCounters {
    /// Counters for `players` players.
    pub fn new(players: usize) -> Self {
        Self {
            late: (0..players).map(|_| AtomicU64::new(0)).collect(),
            segments: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        }
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> HlsSnapshot {
        HlsSnapshot {
            late: self
                .late
                .iter()
                .map(|l| l.load(Ordering::Relaxed))
                .collect(),
            segments: self.segments.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }

    fn late(&self, id: usize, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        self.late[id].fetch_add(1, Ordering::Relaxed);
    }
}

impl HlsSnapshot {
    /// Players that had an event of not keeping up since `earlier`, by index.
    pub fn fell_behind(&self, earlier: &HlsSnapshot) -> Vec<usize> {
        self.late
            .iter()
            .zip(&earlier.late)
            .enumerate()
            .filter(|(_, (now, then))| now != then)
            .map(|(i, _)| i)
            .collect()
    }

    /// Players alive in `stats` now that had no event of not keeping up since `earlier`.
    pub fn keeping_up(&self, earlier: &HlsSnapshot, stats: &Stats) -> usize {
        self.late
            .iter()
            .zip(&earlier.late)
            .zip(&stats.state)
            .filter(|((now, then), state)| {
                now == then && state.load(Ordering::Relaxed) == ClientState::Alive as u8
            })
            .count()
    }
}

/// Plays `target` until `stop`, recording bytes, latency and lateness as player `id`.
pub async fn play(
    id: usize,
    target: FlvTarget,
    mode: PlayMode,
    stats: Arc<Stats>,
    hls: Arc<HlsCounters>,
    stop: Instant,
) {
    super::until_stop(
        id,
        "hls player",
        &stats,
        stop,
        play_inner(id, &target, mode, &stats, &hls),
    )
    .await;
}

/// One keep-alive HTTP connection, opened again when the server closes it.
struct Client<'a> {
    target: &'a FlvTarget,
    conn: Option<crate::runtime::Connection>,
    /// The buffer of each response's first read ([`FIRST_READ`]).
    first: Vec<u8>,
}

/// How a GET ended.
enum Got {
    Ok,
    NotFound,
}

impl Client<'_> {
    /// GETs `path`, handing the body's bytes to `body` as they arrive.
    async fn get(
        &mut self,
        id: usize,
        path: &str,
        stats: &Stats,
        body: &mut dyn FnMut(&[u8]),
    ) -> Result<Got, LoadError> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-bench\r\nAccept: */*\r\n\r\n",
            self.target.host
        );
        // A kept connection the server closed meanwhile fails before any byte: retry on a
        // fresh one, once.
        let reused = self.conn.is_some();
        match self.exchange(id, &request, stats, body).await {
            Err(LoadError::Closed | LoadError::Io(_)) if reused => {
                self.exchange(id, &request, stats, body).await
            }
            r => r,
        }
    }

    async fn exchange(
        &mut self,
        id: usize,
        request: &str,
        stats: &Stats,
        body: &mut dyn FnMut(&[u8]),
    ) -> Result<Got, LoadError> {
        let conn = match self.conn.take() {
            // Reads go through the worker's lent buffers, not the connection's own.
            None => connect(&self.target.addr, 0).await?,
            Some(c) => c,
        };
        conn.write_all(request.as_bytes().to_vec()).await?;
        let mut response = ResponseReader::new();
        let mut first = true;
        loop {
            let buf = if first {
                let mut own = std::mem::take(&mut self.first);
                // Empty after a cancelled read, which kept it.
                own.reserve_exact(FIRST_READ);
                own
            } else {
                lend()
            };
            let BufResult(read, mut buf) = conn.socket().read(buf).await;
            let pushed = read.map(|n| (n, response.push_each(&buf[..n], &mut *body)));
            if first {
                buf.clear();
                self.first = buf;
            } else {
                give_back(buf);
            }
            first = false;
            let (n, pushed) = pushed?;
            if n == 0 {
                // A body that lasts until the server closes ends here.
                return if response.started() {
                    Ok(Got::Ok)
                } else {
                    Err(LoadError::Closed)
                };
            }
            stats.bytes[id].fetch_add(n as u64, Ordering::Relaxed);
            match pushed {
                Ok(()) => {}
                Err(ResponseError::Status(404)) => return Ok(Got::NotFound),
                Err(e) => return Err(LoadError::Refused(e.to_string())),
            }
            if response.done() {
                if response.keep_alive() {
                    self.conn = Some(conn);
                }
                return Ok(Got::Ok);
            }
        }
    }
}

async fn play_inner(
    id: usize,
    target: &FlvTarget,
    mode: PlayMode,
    stats: &Stats,
    hls: &HlsCounters,
) -> Result<(), LoadError> {
    let started = Instant::now();
    let mut client = Client {
        target,
        conn: None,
        first: Vec::with_capacity(FIRST_READ),
    };
    let mut schedule = Schedule::new(&target.host, &target.path);
    let mut playout = Playout::default();
    let mut clock = SegmentClock::default();
    let mut text = Vec::new();
    let mut alive = false;
    // The media playlist reloaded: the URL's, or the variant a master playlist named.
    let mut playlist = target.path.clone();
    let mut masters = 0;
    loop {
        let began = Instant::now();
        text.clear();
        let got = client
            .get(id, &playlist, stats, &mut |b| text.extend_from_slice(b))
            .await?;
        let reload = match got {
            Got::NotFound => {
                if alive {
                    hls.late(id, &hls.not_found, 1);
                }
                compio::time::sleep_until(began + NOT_YET).await;
                continue;
            }
            Got::Ok => schedule
                .playlist(&text)
                .map_err(|e| LoadError::Refused(e.to_string()))?,
        };
        if let Some(variant) = reload.variant {
            masters += 1;
            if masters > MAX_MASTERS {
                return Err(LoadError::Refused(
                    "master playlists name master playlists".into(),
                ));
            }
            playlist = variant;
            continue;
        }
        masters = 0;
        if reload.skipped > 0 {
            hls.late(id, &hls.skipped, reload.skipped);
        }
        while let Some(segment) = schedule.next_segment() {
            let warm = started.elapsed() >= PLAYER_WARMUP;
            let asked = Instant::now();
            let (got, stalls, late_ms) = match mode {
                PlayMode::Full => {
                    full_segment(&mut client, id, &segment, &mut playout, warm, stats).await?
                }
                PlayMode::Light => {
                    // Not demuxed, but checked to be TS: a packet's sync byte every 188.
                    let mut sync = SyncCheck::default();
                    let mut bad = None;
                    let got = client
                        .get(id, &segment.path, stats, &mut |b| {
                            if bad.is_none() {
                                bad = sync.push(b).err();
                            }
                        })
                        .await?;
                    if let Some(e) = bad {
                        return Err(LoadError::Refused(format!("{}: {e}", segment.path)));
                    }
                    let shown = matches!(got, Got::Ok)
                        .then(|| clock.segment(segment.duration_ms, wall_ms() as i64));
                    let stalled = warm && shown.is_some_and(|s| s.stalled);
                    (got, u64::from(stalled), shown.map_or(0, |s| s.late_ms))
                }
            };
            match got {
                Got::Ok => {
                    hls.segments.fetch_add(1, Ordering::Relaxed);
                    if !alive {
                        alive = true;
                        stats.set_state(id, ClientState::Alive);
                    }
                }
                Got::NotFound => hls.late(id, &hls.not_found, 1),
            }
            if stalls > 0 {
                hls.late(id, &hls.stalls, stalls);
                // Whether the server was slow to send it or the player late to ask for it.
                tracing::debug!(
                    player = id,
                    msn = segment.msn,
                    late_ms,
                    fetch_ms = asked.elapsed().as_millis() as u64,
                    "stalled"
                );
            }
        }
        if reload.ended {
            return Err(LoadError::Refused(
                "the playlist ended (EXT-X-ENDLIST)".into(),
            ));
        }
        compio::time::sleep_until(began + reload.after).await;
    }
}

/// A full player's segment: its video demuxed as it arrives, each frame on the playout
/// clock, latency recorded once `warm`. How the GET ended, the frames that stalled and the
/// latest of them, ms after its time.
async fn full_segment(
    client: &mut Client<'_>,
    id: usize,
    segment: &Segment,
    playout: &mut Playout,
    warm: bool,
    stats: &Stats,
) -> Result<(Got, u64, i64), LoadError> {
    let mut demux = TsDemuxer::new(FRAME_HEAD);
    let mut stalls = 0;
    let mut late_ms = 0;
    let mut on_frame = |f: super::ts::VideoPes<'_>| {
        let Some(pts) = f.pts else { return };
        let shown = playout.frame(
            (pts / 90) as i64,
            wall_ms() as i64,
            sei::find_stamp_annexb(f.head),
        );
        if warm {
            if let Some(ms) = shown.latency_ms {
                stats.latency_ms(ms);
            }
            stalls += u64::from(shown.stalled);
            late_ms = late_ms.max(shown.late_ms);
        }
    };
    // The first bad packet ends the demuxing; the segment is refused after its GET.
    let mut bad = None;
    let got = client
        .get(id, &segment.path, stats, &mut |b| {
            if bad.is_none() {
                bad = demux.push(b, &mut on_frame).err();
            }
        })
        .await?;
    if let Some(e) = bad {
        return Err(LoadError::Refused(format!("{}: {e}", segment.path)));
    }
    if matches!(got, Got::Ok) {
        demux.finish(&mut on_frame);
    }
    Ok((got, stalls, late_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist(first: u64, n: u64, target: u64, end: bool) -> Vec<u8> {
        let mut s = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        for msn in first..first + n {
            s.push_str(&format!("#EXTINF:2.000,\nlivestream-{msn}.ts\n"));
        }
        if end {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s.into_bytes()
    }

    fn drain(s: &mut Schedule) -> Vec<u64> {
        std::iter::from_fn(|| s.next_segment())
            .map(|s| s.msn)
            .collect()
    }

    #[test]
    fn a_playlist_that_is_not_utf8_is_refused_not_read_as_segments() {
        let mut s = Schedule::new("h:8080", "/live/livestream.m3u8");
        assert!(matches!(
            s.playlist(b"#EXTM3U\n#\xd9XT-X-V"),
            Err(PlaylistError::NotUtf8)
        ));
        assert_eq!(s.next_segment(), None);
    }

    #[test]
    fn a_reload_refused_for_one_uri_queues_none_of_its_segments() {
        let mut s = Schedule::new("127.0.0.1:8080", "/live/livestream.m3u8");
        let text = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nlivestream-7.ts\n\
            #EXTINF:2.000,\nhttp://other:8080/live/livestream-8.ts\n";
        assert!(matches!(s.playlist(text), Err(PlaylistError::OtherHost(_))));
        assert_eq!(s.next_segment(), None);
    }

    #[test]
    fn starts_three_target_durations_back_and_fetches_new_segments_in_order() {
        let mut s = Schedule::new("h:8080", "/live/livestream.m3u8?token=1");
        let r = s.playlist(&playlist(10, 6, 2, false)).expect("playlist");
        assert_eq!(
            (r.after, r.skipped, r.ended),
            (Duration::from_secs(2), 0, false)
        );
        // 3 x 2 s back from the end of 10..=15: segments 13, 14, 15.
        let first = s.next_segment().expect("a segment");
        assert_eq!(first.path, "/live/livestream-13.ts");
        assert_eq!(drain(&mut s), [14, 15]);
        // Unchanged: half a target duration; then one new segment.
        let r = s.playlist(&playlist(10, 6, 2, false)).expect("playlist");
        assert_eq!(r.after, Duration::from_secs(1));
        assert!(drain(&mut s).is_empty());
        let r = s.playlist(&playlist(11, 6, 2, false)).expect("playlist");
        assert_eq!((r.after, r.skipped), (Duration::from_secs(2), 0));
        assert_eq!(drain(&mut s), [16]);
    }

    #[test]
    fn segments_gone_before_they_were_fetched_are_skipped_and_counted() {
        let mut s = Schedule::new("h", "/a/b.m3u8");
        s.playlist(&playlist(0, 3, 2, false)).expect("playlist");
        assert_eq!(drain(&mut s), [0, 1, 2]);
        // The player fell behind: 3..=9 came and 3..=6 left before this reload.
        let r = s.playlist(&playlist(7, 3, 2, false)).expect("playlist");
        assert_eq!(r.skipped, 4);
        assert_eq!(drain(&mut s), [7, 8, 9]);
        // Queued but not fetched, then gone.
        s.playlist(&playlist(8, 4, 2, false)).expect("playlist");
        let r = s.playlist(&playlist(11, 3, 2, true)).expect("playlist");
        assert_eq!((r.skipped, r.ended), (1, true));
        assert_eq!(drain(&mut s), [11, 12, 13]);
        // The server restarted its numbering: start again near the live edge.
        s.playlist(&playlist(0, 5, 2, false)).expect("playlist");
        assert_eq!(drain(&mut s), [2, 3, 4]);
    }

    #[test]
    fn uris_resolve_on_the_playlists_server() {
        let s = Schedule::new("h:1", "/live/s.m3u8");
        assert_eq!(s.resolve("x.ts").as_deref(), Ok("/live/x.ts"));
        assert_eq!(s.resolve("/o/x.ts?a=1").as_deref(), Ok("/o/x.ts?a=1"));
        assert_eq!(s.resolve("http://h:1/y/x.ts").as_deref(), Ok("/y/x.ts"));
        assert!(s.resolve("http://other/x.ts").is_err());
        assert!(s.resolve("https://h:1/x.ts").is_err());
        let mut s = Schedule::new("h", "/s.m3u8");
        assert!(matches!(
            s.playlist(b"not a playlist"),
            Err(PlaylistError::Parse(_))
        ));
        assert!(s
            .playlist(b"#EXTM3U\n#EXTINF:2,\nhttps://cdn/x.ts\n")
            .is_err());
    }

    #[test]
    fn playout_shows_frames_at_their_pace_and_counts_late_ones() {
        let mut p = Playout::default();
        // A segment of 3 frames arriving at once at t=10_000, stamped 6 s earlier.
        let a = p.frame(0, 10_000, Some(4_000));
        let b = p.frame(40, 10_001, Some(4_040));
        assert_eq!(
            a,
            Shown {
                latency_ms: Some(6_000),
                stalled: false,
                late_ms: 0
            }
        );
        assert_eq!(b.latency_ms, Some(6_000));
        // The next frame's segment is 300 ms late: a stall, and the latency grows.
        let c = p.frame(2_000, 12_300, Some(6_000));
        assert_eq!(
            c,
            Shown {
                latency_ms: Some(6_300),
                stalled: true,
                late_ms: 300
            }
        );
        // Within the tolerance: jitter, not a stall.
        assert!(!p.frame(2_040, 12_400, None).stalled);
        // A discontinuity restarts the clock.
        let d = p.frame(500_000, 13_000, Some(12_000));
        assert_eq!(
            d,
            Shown {
                latency_ms: Some(1_000),
                stalled: false,
                late_ms: 0
            }
        );
    }

    #[test]
    fn a_master_playlist_leads_to_its_first_variant() {
        let mut s = Schedule::new("h:8080", "/live/livestream.m3u8");
        // SRS's answer to a first request: a master naming the session's media playlist.
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n\
            /live/livestream.m3u8?hls_ctx=k1\n";
        let r = s.playlist(master).expect("master playlist");
        assert_eq!(
            r.variant.as_deref(),
            Some("/live/livestream.m3u8?hls_ctx=k1")
        );
        assert_eq!(s.next_segment(), None);
        // Its segments resolve against the variant.
        s.playlist(&playlist(3, 1, 2, false)).expect("playlist");
        assert_eq!(
            s.next_segment().map(|s| s.path).as_deref(),
            Some("/live/livestream-3.ts")
        );
        // I-frame variants are not played; relative variants resolve against the master.
        let mut s = Schedule::new("h", "/a/master.m3u8");
        let text = b"#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=9,URI=\"i.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=5\nlow/index.m3u8\n";
        let r = s.playlist(text).expect("master playlist");
        assert_eq!(r.variant.as_deref(), Some("/a/low/index.m3u8"));
        let mut s = Schedule::new("h", "/a/master.m3u8");
        assert_eq!(
            s.playlist(b"#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=9,URI=\"i.m3u8\"\n"),
            Err(PlaylistError::NoVariant)
        );
    }

    #[test]
    fn segments_carry_their_extinf_duration_within_bounds() {
        let mut s = Schedule::new("h", "/live/s.m3u8");
        // A 30 s target duration: all three start within three of the live edge.
        let text = b"#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:90000.5,\na.ts\n\
            #EXTINF:-3,\nb.ts\n#EXTINF:2.042,\nc.ts\n";
        s.playlist(text).expect("playlist");
        let durations: Vec<i64> = std::iter::from_fn(|| s.next_segment())
            .map(|s| s.duration_ms)
            .collect();
        assert_eq!(durations, [60_000, 0, 2_042]);
    }

    #[test]
    fn a_light_players_segments_stall_when_one_comes_after_its_time() {
        let mut c = SegmentClock::default();
        // Three segments back to back at the start, then one each 2 s: on time.
        for now in [10_000, 10_050, 10_100, 12_000] {
            assert_eq!(c.segment(2_000, now).late_ms, 0);
        }
        // The fifth is due at 18_000 (4 x 2 s after the first): 80 ms late is jitter,
        // then one that comes 500 ms after its time stalls.
        assert!(!c.segment(2_000, 18_080).stalled);
        let late = c.segment(2_000, 20_580);
        assert!(late.stalled && late.late_ms == 500);
        // The clock moved with the stall: the next on its new time is fine.
        assert!(!c.segment(2_000, 22_580).stalled);
    }

    #[test]
    fn players_that_fell_behind_are_named() {
        let hls = HlsCounters::new(4);
        let before = hls.snapshot();
        hls.late(3, &hls.stalls, 2);
        hls.late(1, &hls.skipped, 1);
        assert_eq!(hls.snapshot().fell_behind(&before), [1, 3]);
        assert!(hls.snapshot().fell_behind(&hls.snapshot()).is_empty());
    }

    #[test]
    fn read_buffers_are_lent_and_a_bounded_number_kept() {
        let lent: Vec<Vec<u8>> = (0..POOLED + 5).map(|_| lend()).collect();
        assert!(lent.iter().all(|b| b.capacity() >= READ && b.is_empty()));
        for mut b in lent {
            b.extend_from_slice(b"used");
            give_back(b);
        }
        assert_eq!(BUFFERS.with_borrow(Vec::len), POOLED);
        assert!(lend().is_empty(), "a returned buffer comes back cleared");
    }

    #[test]
    fn players_keeping_up() {
        let stats = Stats::new(3);
        let hls = HlsCounters::new(3);
        for i in 0..3 {
            stats.set_state(i, ClientState::Alive);
        }
        let before = hls.snapshot();
        hls.late(1, &hls.not_found, 1);
        stats.set_state(2, ClientState::Failed);
        let now = hls.snapshot();
        assert_eq!(now.keeping_up(&before, &stats), 1);
        assert_eq!(now.not_found, 1);
    }

    #[test]
    fn stamps_survive_the_ts_path() {
        // An AVC frame stamped as the publisher does, in Annex B as a TS muxer writes it.
        let tag = [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let stamped = sei::stamp(&tag, 4, 1_234_567);
        let len = u32::from_be_bytes(stamped[5..9].try_into().expect("4 bytes")) as usize;
        let mut es = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        es.extend_from_slice(&stamped[9..9 + len]);
        es.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        let seg = super::super::ts::tests::segment(&[(180_000, &es)]);
        let mut d = TsDemuxer::new(FRAME_HEAD);
        let mut found = Vec::new();
        let mut on = |f: super::super::ts::VideoPes<'_>| {
            found.push((f.pts, sei::find_stamp_annexb(f.head)));
        };
        d.push(&seg, &mut on).expect("valid TS");
        d.finish(&mut on);
        assert_eq!(found, [(Some(180_000), Some(1_234_567))]);
    }
}
