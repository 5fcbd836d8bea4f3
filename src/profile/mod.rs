//! Built-in performance tooling: CPU profiles (pprof), heap profiles (jemalloc feature), the
//! incremental leak check and the process statistics that SRS's API reports. It owns no
//! socket and knows no HTTP: the HTTP API's routes for it (`http/profile.rs`) call its
//! functions, and `main` drives the whole-run profiles through [`Session`] (start, SIGUSR2,
//! exit).
//!
//! - [`cpu`]: pprof's sampler, whole-run or N seconds on demand, one at a time.
//! - `heap`: jemalloc's heap profiles (only with the `jemalloc` feature).
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

/// A heap profile now: its flamegraph and its gzipped pprof.
#[cfg(feature = "jemalloc")]
pub fn dump_heap() -> Result<(Vec<u8>, Vec<u8>), ProfileError> {
    heap::dump()
}

/// A heap profile now: this build has no heap profiler, so always the error saying so.
#[cfg(not(feature = "jemalloc"))]
pub fn dump_heap() -> Result<(Vec<u8>, Vec<u8>), ProfileError> {
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
pub fn timestamp(t: std::time::SystemTime) -> String {
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

/// The value of `name` in a raw query string (`a=1&b`: `b` has the empty value).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// pprof has one sampler per process: tests that profile take turns.
#[cfg(test)]
pub(crate) static CPU_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_050_112_345);
        assert_eq!(timestamp(t), "20251125-055512-345");
        assert_eq!(timestamp(std::time::UNIX_EPOCH), "19700101-000000-000");
    }
}
