//! CPU profiles: pprof's SIGPROF sampler, for the whole run (`--profile=cpu`) or for N
//! seconds on demand (the API). One profile at a time: pprof has one process-wide sampler.
//!
//! ITIMER_PROF is a process-wide timer: the kernel sends SIGPROF to whichever thread is
//! running when the process's CPU time crosses a tick, so every worker is sampled without
//! registering threads. No thread of ringcast blocks SIGPROF (the signal thread blocks only
//! INT, TERM, HUP and USR2), and a worker waiting in io_uring_enter or epoll_wait that gets
//! SIGPROF sees EINTR, which compio's runtime treats as a wake-up with nothing done.

use std::sync::Mutex;
use std::time::Instant;

use pprof::protos::Message;
use pprof::ProfilerGuard;

use super::ProfileError;

/// Sampling rate when none is given: 99 Hz, off the beat of 100 Hz timers.
pub const DEFAULT_HZ: i32 = 99;
/// Longest profile the API takes.
pub const MAX_SECONDS: u64 = 300;

/// Libraries whose frames the sampler must not unwind through: unwinding from a signal that
/// landed inside libc or the vDSO can deadlock or crash.
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

const EMPTY_SVG: &str = "<?xml version=\"1.0\" standalone=\"no\"?>\n\
<svg version=\"1.1\" width=\"600\" height=\"40\" xmlns=\"http://www.w3.org/2000/svg\">\
<text x=\"10\" y=\"25\">No samples: ringcast used no CPU while it was profiled.</text></svg>\n";

/// The sampler in use, if any.
static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

struct Active {
    guard: ProfilerGuard<'static>,
    /// Who runs it, for the 409's message.
    owner: &'static str,
}

/// A finished profile, in the two forms ringcast writes.
#[derive(Debug)]
pub struct Profile {
    /// The flamegraph.
    pub svg: Vec<u8>,
    /// pprof's protobuf, gzipped (what `pprof` and `go tool pprof` read).
    pub pb_gz: Vec<u8>,
    /// Samples taken.
    pub samples: usize,
}

fn lock() -> std::sync::MutexGuard<'static, Option<Active>> {
    // A panic while holding this lock left at worst a stale guard: keep going.
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts sampling at `hz` for `owner` ("--profile=cpu", "the API"); Busy when a profile
/// is already running.
pub fn start(hz: i32, owner: &'static str) -> Result<(), ProfileError> {
    let mut active = lock();
    if let Some(a) = active.as_ref() {
        return Err(ProfileError::Busy(a.owner));
    }
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| ProfileError::Cpu(e.to_string()))?;
    *active = Some(Active { guard, owner });
    Ok(())
}

/// True while a profile runs.
pub fn running() -> bool {
    lock().is_some()
}

/// The profile so far, sampling goes on.
pub fn snapshot() -> Result<Profile, ProfileError> {
    let active = lock();
    let a = active.as_ref().ok_or(ProfileError::NotRunning)?;
    render(&a.guard)
}

/// Stops sampling and returns the profile.
pub fn stop() -> Result<Profile, ProfileError> {
    let active = lock().take().ok_or(ProfileError::NotRunning)?;
    let profile = render(&active.guard);
    drop(active);
    profile
}

fn render(guard: &ProfilerGuard<'static>) -> Result<Profile, ProfileError> {
    let report = guard
        .report()
        .build()
        .map_err(|e| ProfileError::Cpu(e.to_string()))?;
    let samples = report.data.values().sum::<isize>().max(0) as usize;
    let mut svg = Vec::new();
    if samples == 0 {
        // inferno draws nothing from no samples; an idle server still deserves an answer.
        svg = EMPTY_SVG.as_bytes().to_vec();
    } else {
        report
            .flamegraph(&mut svg)
            .map_err(|e| ProfileError::Cpu(e.to_string()))?;
    }
    let proto = report
        .pprof()
        .map_err(|e| ProfileError::Cpu(e.to_string()))?;
    let pb_gz = super::gzip(&proto.encode_to_vec());
    Ok(Profile {
        svg,
        pb_gz,
        samples,
    })
}

/// Profiles the next `seconds` seconds at `hz` (the API's on-demand profile). Sleeps on the
/// calling worker's runtime, so the worker keeps serving while it waits.
pub async fn profile_for(seconds: u64, hz: i32) -> Result<Profile, ProfileError> {
    start(hz, "another API request")?;
    let started = Instant::now();
    // Stop even when the request is dropped half-way (client gone): a sampler left running
    // would answer 409 to every later request.
    struct StopOnDrop;
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let _ = stop();
        }
    }
    let on_drop = StopOnDrop;
    compio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    std::mem::forget(on_drop);
    let profile = stop()?;
    tracing::info!(
        "CPU profile of {:.1}s taken for the API: {} samples",
        started.elapsed().as_secs_f64(),
        profile.samples
    );
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(ms: u64) -> u64 {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < u128::from(ms) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        x
    }

    #[test]
    fn one_profile_at_a_time_and_both_forms_decode() {
        let _serial = super::super::CPU_SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        start(999, "the test").expect("first profile starts");
        assert!(matches!(
            start(99, "a second"),
            Err(ProfileError::Busy("the test"))
        ));
        spin(300);
        let mid = snapshot().expect("snapshot while running");
        assert!(running(), "a snapshot must not stop sampling");
        spin(100);
        let p = stop().expect("stop");
        assert!(!running());
        assert!(p.samples >= mid.samples && p.samples > 0);
        assert!(String::from_utf8_lossy(&p.svg).contains("<svg"));
        let raw = super::super::gunzip(&p.pb_gz).expect("gzip");
        let proto = pprof::protos::Profile::decode(raw.as_slice()).expect("pprof protobuf");
        assert!(!proto.sample.is_empty());
        assert!(matches!(stop(), Err(ProfileError::NotRunning)));
    }
}
