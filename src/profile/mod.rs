//! Built-in performance tooling: CPU profiles (pprof), heap profiles (jemalloc feature), the
//! incremental leak check and the process statistics that SRS's API reports. It owns no
//! socket: the HTTP API ([`crate::http`]) hands it the requests under its
//! paths through [`handle_api`] and writes back what it returns, and `main` drives the
//! whole-run profiles through [`Session`] (start, SIGUSR2, exit).
//!
//! - [`cpu`]: pprof's sampler, whole-run or N seconds on demand, one at a time.
//! - [`heap`]: jemalloc's heap profiles (only with the `jemalloc` feature).
//! - [`alloc`]: the counting layer over the global allocator.
//! - [`leak`]: `/api/v1/valgrind`, SRS's incremental leak check.
//! - [`valgrind`]: valgrind's client requests.
//! - [`procfs`]: rusages, self_proc_stats, system_proc_stats, meminfos.

pub mod alloc;
pub mod cpu;
#[cfg(feature = "jemalloc")]
pub mod heap;
pub mod leak;
pub mod procfs;
pub mod valgrind;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::server::Shared;

/// An answer to an API request, as the HTTP layer writes it. Shared by every module that
/// serves API paths (profiling here, WebRTC signalling in [`crate::rtc`]).
#[derive(Debug)]
pub struct ApiReply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// Extra response headers, such as WHIP's `Location`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiReply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    /// SRS's success shape: `{"code":0,"server":..,"service":..,"pid":"..","data":{..}}`.
    fn ok(shared: &Shared, data: Value) -> Self {
        Self::json(
            200,
            &json!({
                "code": 0,
                "server": shared.server_id,
                "service": shared.server_id,
                "pid": std::process::id().to_string(),
                "data": data,
            }),
        )
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "code": status, "error": message }))
    }

    fn file(content_type: &'static str, name: &str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type,
            headers: vec![(
                "Content-Disposition",
                format!("attachment; filename=\"{name}\""),
            )],
            body,
        }
    }
}

/// Errors of the profiling tools.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A CPU profile is already running; says whose.
    #[error("a CPU profile is already running ({0}); one at a time")]
    Busy(&'static str),
    /// No CPU profile is running.
    #[error("no CPU profile is running")]
    NotRunning,
    /// pprof failed.
    #[error("CPU profile: {0}")]
    Cpu(String),
    /// jemalloc's profiler failed, or this build has none.
    #[error("heap profile: {0}")]
    Heap(String),
    /// A profile could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// What `--profile` asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// CPU sampling for the whole run.
    pub cpu: bool,
    /// Heap profiling for the whole run (jemalloc builds).
    pub heap: bool,
    /// CPU sampling rate.
    pub hz: i32,
    /// Where profiles are written.
    pub dir: PathBuf,
}

/// The whole-run profiles of one server process.
#[derive(Debug)]
pub struct Session {
    options: Options,
}

impl Session {
    /// Starts what `options` asks for. Called before the workers start, so that nothing
    /// runs unsampled.
    pub fn start(options: Options) -> Result<Self, ProfileError> {
        if options.heap {
            start_heap()?;
        }
        if options.cpu {
            cpu::start(options.hz, "--profile=cpu")?;
            tracing::info!("CPU profiling at {} Hz", options.hz);
        }
        Ok(Self { options })
    }

    /// Writes the profiles so far and keeps profiling (SIGUSR2).
    pub fn dump(&self) {
        if !self.options.cpu && !self.options.heap {
            tracing::info!("nothing to dump: start with --profile=cpu or --profile=heap");
        }
        if self.options.cpu {
            self.write_cpu(cpu::snapshot());
        }
        if self.options.heap {
            self.write_heap();
        }
    }

    /// Writes the final profiles and stops (exit).
    pub fn finish(self) {
        if self.options.cpu {
            self.write_cpu(cpu::stop());
        }
        if self.options.heap {
            self.write_heap();
        }
    }

    fn write_cpu(&self, profile: Result<cpu::Profile, ProfileError>) {
        let written = profile.and_then(|p| {
            let paths = write_pair(&self.options.dir, "cpu", &p.svg, &p.pb_gz)?;
            Ok((paths, p.samples))
        });
        match written {
            Ok(((svg, pb), samples)) => tracing::info!(
                "CPU profile written: {} {} ({samples} samples)",
                svg.display(),
                pb.display()
            ),
            Err(e) => tracing::error!("{e}"),
        }
    }

    fn write_heap(&self) {
        match dump_heap().and_then(|(svg, pb)| write_pair(&self.options.dir, "heap", &svg, &pb)) {
            Ok((svg, pb)) => {
                tracing::info!("heap profile written: {} {}", svg.display(), pb.display())
            }
            Err(e) => tracing::error!("{e}"),
        }
    }
}

#[cfg(feature = "jemalloc")]
fn start_heap() -> Result<(), ProfileError> {
    heap::activate()
}

#[cfg(not(feature = "jemalloc"))]
fn start_heap() -> Result<(), ProfileError> {
    Err(ProfileError::Heap(
        "this build has no heap profiler: build with --features jemalloc".into(),
    ))
}

#[cfg(feature = "jemalloc")]
fn dump_heap() -> Result<(Vec<u8>, Vec<u8>), ProfileError> {
    heap::dump()
}

#[cfg(not(feature = "jemalloc"))]
fn dump_heap() -> Result<(Vec<u8>, Vec<u8>), ProfileError> {
    start_heap().map(|()| (Vec::new(), Vec::new()))
}

/// Writes `<dir>/<kind>-<timestamp>.svg` and `.pb.gz`; returns their paths.
pub fn write_pair(
    dir: &Path,
    kind: &str,
    svg: &[u8],
    pb_gz: &[u8],
) -> Result<(PathBuf, PathBuf), ProfileError> {
    std::fs::create_dir_all(dir).map_err(|source| ProfileError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let stem = format!("{kind}-{}", timestamp(std::time::SystemTime::now()));
    let svg_path = dir.join(format!("{stem}.svg"));
    let pb_path = dir.join(format!("{stem}.pb.gz"));
    for (path, data) in [(&svg_path, svg), (&pb_path, pb_gz)] {
        std::fs::write(path, data).map_err(|source| ProfileError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok((svg_path, pb_path))
}

/// `YYYYMMDD-HHMMSS-mmm` in UTC: sorts by time, and two dumps in one second differ.
fn timestamp(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Decompresses a gzip stream (for tests and tools reading the `.pb.gz` files).
pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Serves the API paths this module owns (`/api/v1/profile/*`, `/api/v1/valgrind`,
/// `/api/v1/meminfos`, `/api/v1/rusages`, `/api/v1/self_proc_stats`,
/// `/api/v1/system_proc_stats`); `None` for any other path. `query` is the raw query string
/// without `?`. Async because a CPU profile of N seconds waits N seconds.
pub async fn handle_api(
    method: &str,
    path: &str,
    query: &str,
    shared: &Arc<Shared>,
) -> Option<ApiReply> {
    let path = path.trim_end_matches('/');
    let known = matches!(
        path,
        "/api/v1/profile/cpu"
            | "/api/v1/profile/heap"
            | "/api/v1/valgrind"
            | "/api/v1/meminfos"
            | "/api/v1/rusages"
            | "/api/v1/self_proc_stats"
            | "/api/v1/system_proc_stats"
    );
    if !known {
        return None;
    }
    if method != "GET" {
        return Some(ApiReply::error(405, "only GET is allowed here"));
    }
    Some(match path {
        "/api/v1/profile/cpu" => cpu_profile(query).await,
        "/api/v1/profile/heap" => heap_profile(query),
        "/api/v1/valgrind" => ApiReply::ok(
            shared,
            leak::check(
                valgrind::LeakCheck::parse(query_param(query, "check").unwrap_or("")),
                shared,
            ),
        ),
        "/api/v1/meminfos" => ApiReply::ok(shared, procfs::meminfos()),
        "/api/v1/rusages" => ApiReply::ok(shared, procfs::rusages()),
        "/api/v1/self_proc_stats" => ApiReply::ok(shared, procfs::self_proc_stats()),
        _ => ApiReply::ok(shared, procfs::system_proc_stats()),
    })
}

#[derive(Clone, Copy)]
enum Format {
    Svg,
    Pb,
}

fn format(query: &str) -> Result<Format, ApiReply> {
    match query_param(query, "format") {
        None | Some("svg") => Ok(Format::Svg),
        Some("pb") | Some("pprof") => Ok(Format::Pb),
        Some(other) => Err(ApiReply::error(
            400,
            &format!("format={other}: use format=svg or format=pb"),
        )),
    }
}

fn profile_reply(kind: &str, format: Format, svg: Vec<u8>, pb_gz: Vec<u8>) -> ApiReply {
    let stem = format!("{kind}-{}", timestamp(std::time::SystemTime::now()));
    match format {
        Format::Svg => ApiReply::file("image/svg+xml", &format!("{stem}.svg"), svg),
        Format::Pb => ApiReply::file("application/octet-stream", &format!("{stem}.pb.gz"), pb_gz),
    }
}

async fn cpu_profile(query: &str) -> ApiReply {
    let format = match format(query) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let seconds = match query_param(query, "seconds").map(str::parse::<u64>) {
        None => 10,
        Some(Ok(s)) if (1..=cpu::MAX_SECONDS).contains(&s) => s,
        Some(_) => {
            return ApiReply::error(400, &format!("seconds must be 1..={}", cpu::MAX_SECONDS))
        }
    };
    let hz = match query_param(query, "hz").map(str::parse::<i32>) {
        None => cpu::DEFAULT_HZ,
        Some(Ok(hz)) if (1..=1000).contains(&hz) => hz,
        Some(_) => return ApiReply::error(400, "hz must be 1..=1000"),
    };
    match cpu::profile_for(seconds, hz).await {
        Ok(p) => profile_reply("cpu", format, p.svg, p.pb_gz),
        Err(e @ ProfileError::Busy(_)) => ApiReply::error(409, &e.to_string()),
        Err(e) => ApiReply::error(500, &e.to_string()),
    }
}

fn heap_profile(query: &str) -> ApiReply {
    let format = match format(query) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    #[cfg(feature = "jemalloc")]
    let dumped = heap::activate().and_then(|()| heap::dump());
    #[cfg(not(feature = "jemalloc"))]
    let dumped = dump_heap();
    match dumped {
        Ok((svg, pb)) => profile_reply("heap", format, svg, pb),
        Err(e) if cfg!(feature = "jemalloc") => ApiReply::error(500, &e.to_string()),
        Err(e) => ApiReply::error(501, &e.to_string()),
    }
}

/// pprof has one sampler per process: tests that profile take turns.
#[cfg(test)]
static CPU_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn run<F: std::future::Future>(f: F) -> F::Output {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(f)
    }

    fn shared() -> Arc<Shared> {
        Shared::new(crate::config::Config::default())
    }

    fn body(r: &ApiReply) -> Value {
        serde_json::from_slice(&r.body).expect("JSON body")
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_050_112_345);
        assert_eq!(timestamp(t), "20251125-055512-345");
        assert_eq!(timestamp(std::time::UNIX_EPOCH), "19700101-000000-000");
    }

    #[test]
    fn other_paths_are_not_ours_and_only_get_is_served() {
        let s = shared();
        run(async {
            assert!(handle_api("GET", "/api/v1/streams", "", &s).await.is_none());
            let r = handle_api("POST", "/api/v1/rusages", "", &s)
                .await
                .expect("ours");
            assert_eq!(r.status, 405);
            for path in [
                "/api/v1/meminfos",
                "/api/v1/rusages",
                "/api/v1/self_proc_stats",
                "/api/v1/system_proc_stats/",
            ] {
                let r = handle_api("GET", path, "", &s).await.expect("ours");
                assert_eq!(r.status, 200, "{path}");
                let v = body(&r);
                assert_eq!(v["code"], 0, "{path}");
                assert_eq!(v["data"]["ok"], true, "{path}: {v}");
            }
        });
    }

    #[test]
    fn bad_profile_requests_get_a_400_and_heap_without_jemalloc_a_501() {
        let s = shared();
        run(async {
            for q in [
                "seconds=0",
                "seconds=abc",
                "seconds=100000",
                "format=png",
                "hz=0",
            ] {
                let r = handle_api("GET", "/api/v1/profile/cpu", q, &s)
                    .await
                    .expect("ours");
                assert_eq!(r.status, 400, "{q}");
                assert!(body(&r)["error"].is_string());
            }
            let r = handle_api("GET", "/api/v1/profile/heap", "", &s)
                .await
                .expect("ours");
            if cfg!(feature = "jemalloc") {
                // The test binary's allocator is not jemalloc with prof:true.
                assert_ne!(r.status, 200);
            } else {
                assert_eq!(r.status, 501);
            }
        });
    }

    #[test]
    fn a_cpu_profile_on_demand_and_a_409_for_a_second_one() {
        let _serial = CPU_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let s = shared();
        run(async {
            let first = handle_api("GET", "/api/v1/profile/cpu", "seconds=1&format=pb", &s);
            let second = async {
                compio::time::sleep(std::time::Duration::from_millis(200)).await;
                let r = handle_api("GET", "/api/v1/profile/cpu", "seconds=1", &s)
                    .await
                    .expect("ours");
                // Burn some CPU while the first samples.
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed().as_millis() < 300 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                r
            };
            let (first, second) = futures_util::future::join(first, second).await;
            assert_eq!(second.status, 409);
            assert!(body(&second)["error"]
                .as_str()
                .is_some_and(|e| e.contains("already running")));
            let first = first.expect("ours");
            assert_eq!(first.status, 200);
            let raw = gunzip(&first.body).expect("gzipped");
            use pprof::protos::Message;
            pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof Profile");
            // The first is done: the next one may run, and an idle one still draws.
            let svg = handle_api("GET", "/api/v1/profile/cpu", "seconds=1&format=svg", &s)
                .await
                .expect("ours");
            assert_eq!(svg.status, 200);
            assert_eq!(svg.content_type, "image/svg+xml");
            assert!(String::from_utf8_lossy(&svg.body).contains("<svg"));
        });
    }
}
