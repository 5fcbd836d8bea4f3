//! The process side of SRS's performance advice, done by ringcast itself from its config:
//! workers pinned to CPUs (`cpu_affinity`, instead of `taskset`), the nice value
//! (`priority`, instead of `renice`), the open-file limit (`rlimit_nofile`, instead of
//! `ulimit -n`) and UDP socket buffers (`rtc_server { sndbuf; rcvbuf; }`, past
//! `net.core.rmem_max` as root). [`tune_process`] logs what it set and warns, with the fix,
//! about what it could not; nothing here is fatal, because a server that runs untuned beats
//! one that does not start.
//!
//! Kernel-wide settings (sysctl, IRQ affinity) are the operator's: `tuning/*.sh`. This module
//! changes only the calling process, its threads and the sockets it is handed.

use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::unistd::Pid;

use crate::config::Config;

/// Why a tuning step failed; each names the call and what the kernel said.
#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    /// `setpriority` refused the nice value (a negative one needs root or `CAP_SYS_NICE`).
    #[error("setpriority({nice}): {source}")]
    Priority {
        /// The nice value asked for.
        nice: i32,
        /// What the kernel said.
        source: Errno,
    },
    /// `sched_setaffinity` refused the CPU set.
    #[error("sched_setaffinity({cpus}): {source}")]
    Affinity {
        /// The CPUs asked for, as a list.
        cpus: String,
        /// What the kernel said.
        source: Errno,
    },
    /// The CPUs this process may run on could not be read.
    #[error("sched_getaffinity: {0}")]
    AllowedCpus(Errno),
    /// `getrlimit` or `setrlimit` on `RLIMIT_NOFILE` failed.
    #[error("RLIMIT_NOFILE: {0}")]
    Nofile(Errno),
}

/// A CPU list in the kernel's form: `[0, 1, 2, 5]` is `0-2,5`.
#[must_use]
pub fn format_cpus(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&start.to_string());
        if sorted[i] > start {
            out.push_str(&format!("-{}", sorted[i]));
        }
        i += 1;
    }
    out
}

/// The CPUs the calling thread may run on (its affinity mask, narrowed by `taskset`, a
/// cgroup cpuset or systemd's `CPUAffinity=`).
///
/// # Errors
/// [`TuningError::AllowedCpus`] when the kernel will not say.
pub fn allowed_cpus() -> Result<Vec<usize>, TuningError> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(TuningError::AllowedCpus)?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Restricts the calling thread to `cpus`; threads it starts afterwards inherit the mask.
///
/// # Errors
/// [`TuningError::Affinity`] when a CPU is out of range or none of them is available to
/// this process.
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), TuningError> {
    let err = |source| TuningError::Affinity {
        cpus: format_cpus(cpus),
        source,
    };
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(err)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(err)
}

/// Sets the nice value of the calling thread. Linux keeps nice per thread and new threads
/// inherit it, so calling this before any other thread starts renices the whole process.
///
/// # Errors
/// [`TuningError::Priority`], e.g. `EACCES` for a negative value without root or
/// `CAP_SYS_NICE`.
pub fn set_priority(nice: i32) -> Result<(), TuningError> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours. `who` 0 is the
    // calling thread.
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) };
    if rc == -1 {
        return Err(TuningError::Priority {
            nice,
            source: Errno::last(),
        });
    }
    Ok(())
}

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit now in force.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to `want`, never lowering it. Above the hard limit only
/// root may go (up to `fs.nr_open`); anyone else gets the hard limit.
///
/// # Errors
/// [`TuningError::Nofile`] when the limit cannot be read or set at all.
pub fn raise_nofile(want: u64) -> Result<NofileLimit, TuningError> {
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(TuningError::Nofile)?;
    if before >= want {
        return Ok(NofileLimit {
            before,
            soft: before,
            hard,
        });
    }
    if want > hard && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(NofileLimit {
            before,
            soft: want,
            hard: want,
        });
    }
    let soft = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(TuningError::Nofile)?;
    Ok(NofileLimit { before, soft, hard })
}

fn limit_text(limit: u64) -> String {
    if limit == RLIM_INFINITY {
        "unlimited".into()
    } else {
        limit.to_string()
    }
}

/// A UDP socket's buffer sizes as the kernel reports them after [`set_udp_buffers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBuffers {
    /// `SO_SNDBUF` read back: the kernel doubles what was asked, for its bookkeeping.
    pub sndbuf: usize,
    /// `SO_RCVBUF` read back, doubled likewise.
    pub rcvbuf: usize,
    /// Whether the sizes were forced past `net.core.{w,r}mem_max` (`SO_*BUFFORCE`, which
    /// needs `CAP_NET_ADMIN`).
    pub forced: bool,
}

impl UdpBuffers {
    /// One warning, with the fix, per buffer the kernel capped below what was asked.
    #[must_use]
    pub fn shortfalls(&self, sndbuf: Option<usize>, rcvbuf: Option<usize>) -> Vec<String> {
        [
            ("sndbuf", sndbuf, self.sndbuf, "wmem_max", "SO_SNDBUFFORCE"),
            ("rcvbuf", rcvbuf, self.rcvbuf, "rmem_max", "SO_RCVBUFFORCE"),
        ]
        .into_iter()
        .filter_map(|(name, asked, got, sysctl, force)| {
            let asked = asked?;
            // The kernel stores twice the size asked (capped at INT_MAX / 2 first); less
            // than that means a sysctl ceiling cut it.
            let full = asked.min(i32::MAX as usize / 2) * 2;
            (got < full).then(|| {
                format!(
                    "UDP {name} {asked} capped by net.core.{sysctl}: the kernel reports {got} \
                     where it would report {full} (twice the size asked) uncapped; fix: \
                     sysctl -w net.core.{sysctl}={asked} (tuning/sysctl.sh apply), or run as \
                     root so that {force} passes the limit"
                )
            })
        })
        .collect()
    }
}

/// Asks for UDP buffer sizes on `socket`: `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` where permitted
/// (root), else `SO_SNDBUF`/`SO_RCVBUF`, which the kernel caps at `net.core.wmem_max` and
/// `rmem_max`. `None` leaves that buffer as it is. Returns what the kernel gave, for
/// [`UdpBuffers::shortfalls`].
///
/// # Errors
/// The kernel's error for a socket option other than the forced ones' `EPERM`.
pub fn set_udp_buffers(
    socket: &impl AsFd,
    sndbuf: Option<usize>,
    rcvbuf: Option<usize>,
) -> io::Result<UdpBuffers> {
    let mut forced = true;
    if let Some(size) = sndbuf {
        match setsockopt(socket, sockopt::SndBufForce, &size) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                forced = false;
                setsockopt(socket, sockopt::SndBuf, &size)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(size) = rcvbuf {
        match setsockopt(socket, sockopt::RcvBufForce, &size) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                forced = false;
                setsockopt(socket, sockopt::RcvBuf, &size)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(UdpBuffers {
        sndbuf: getsockopt(socket, sockopt::SndBuf)?,
        rcvbuf: getsockopt(socket, sockopt::RcvBuf)?,
        forced: forced && (sndbuf.is_some() || rcvbuf.is_some()),
    })
}

/// Applies the config's process settings, to be called from the main thread before any
/// other thread starts (so that every thread inherits the nice value and CPU mask). Logs
/// what it set and warns about what it could not. Returns the CPUs for the workers, in
/// order, for [`super::spawn_pinned_workers`]: `cpu_affinity` less the CPUs this process
/// may not use; empty leaves them unpinned.
pub fn tune_process(config: &Config) -> Vec<usize> {
    nofile(config);
    if let Some(nice) = config.priority {
        match set_priority(nice) {
            Ok(()) => tracing::info!("priority: nice {nice} (renice -n {nice})"),
            Err(e) => tracing::warn!(
                "priority {nice} not set: {e}; a negative nice needs root or CAP_SYS_NICE. \
                 Fix: run as root, or Nice={nice} in the systemd unit, or \
                 renice -n {nice} -p {}",
                std::process::id()
            ),
        }
    }
    let cpus = worker_cpus(&config.cpu_affinity);
    udp_buffers(config);
    cpus
}

fn nofile(config: &Config) {
    let want = config.nofile_wanted();
    let max = config.max_connections as u64;
    match raise_nofile(want) {
        Ok(l) => {
            if l.soft > l.before {
                tracing::info!(
                    "open-file limit {} -> {} (hard {})",
                    limit_text(l.before),
                    limit_text(l.soft),
                    limit_text(l.hard)
                );
            } else {
                tracing::info!(
                    "open-file limit {} (hard {}), {want} wanted",
                    limit_text(l.soft),
                    limit_text(l.hard)
                );
            }
            if l.soft < max {
                let fix = want.max(config.nofile_needed());
                tracing::warn!(
                    "open-file limit {} is below max_connections {max}: connections past it \
                     fail. Fix: LimitNOFILE={fix} in the systemd unit, or ulimit -n {fix} \
                     before starting, or rlimit_nofile {fix}; with root, which may raise the \
                     hard limit",
                    limit_text(l.soft)
                );
            }
        }
        Err(e) => tracing::warn!("open-file limit not raised to {want}: {e}"),
    }
}

/// `cpu_affinity` less the CPUs this process may not run on; pins the calling thread to
/// what is left so that the threads it starts stay off the other CPUs too.
fn worker_cpus(wanted: &[usize]) -> Vec<usize> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let allowed = match allowed_cpus() {
        Ok(allowed) => allowed,
        Err(e) => {
            tracing::warn!("cpu_affinity ignored: {e}");
            return Vec::new();
        }
    };
    let (usable, refused): (Vec<usize>, Vec<usize>) =
        wanted.iter().partition(|cpu| allowed.contains(cpu));
    if !refused.is_empty() {
        tracing::warn!(
            "cpu_affinity: CPU {} not available to this process (it may use {}); {}. Fix: \
             list CPUs from {}, or lift the limit (taskset, cgroup cpuset, CPUAffinity=)",
            format_cpus(&refused),
            format_cpus(&allowed),
            if usable.is_empty() {
                "workers run unpinned"
            } else {
                "workers use the others"
            },
            format_cpus(&allowed)
        );
    }
    if usable.is_empty() {
        return usable;
    }
    if let Err(e) = pin_current_thread(&usable) {
        tracing::warn!("cpu_affinity ignored, workers run unpinned: {e}");
        return Vec::new();
    }
    usable
}

/// With `rtc_server { sndbuf; rcvbuf; }` set, asks for the sizes on a throwaway UDP socket,
/// so that a kernel cap is reported at start, before any WebRTC socket exists.
fn udp_buffers(config: &Config) {
    let rtc = &config.rtc_server;
    if rtc.sndbuf.is_none() && rtc.rcvbuf.is_none() {
        return;
    }
    let probe = std::net::UdpSocket::bind(("127.0.0.1", 0))
        .and_then(|socket| set_udp_buffers(&socket, rtc.sndbuf, rtc.rcvbuf));
    match probe {
        Ok(got) => {
            for w in got.shortfalls(rtc.sndbuf, rtc.rcvbuf) {
                tracing::warn!("rtc_server: {w}");
            }
            tracing::info!(
                "rtc_server: UDP sockets get sndbuf {} and rcvbuf {} bytes{}",
                got.sndbuf,
                got.rcvbuf,
                if got.forced {
                    " (forced past the sysctl limits)"
                } else {
                    ""
                }
            );
        }
        Err(e) => tracing::warn!("rtc_server: cannot check the UDP buffer sizes: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_format_like_the_kernel() {
        assert_eq!(format_cpus(&[]), "");
        assert_eq!(format_cpus(&[0]), "0");
        assert_eq!(format_cpus(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpus(&[3, 1, 2, 1, 7, 9, 8]), "1-3,7-9");
    }

    #[test]
    fn shortfalls_name_the_fix() {
        let got = UdpBuffers {
            sndbuf: 8 << 20,
            rcvbuf: 32 << 20,
            forced: false,
        };
        let w = got.shortfalls(Some(16 << 20), Some(16 << 20));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("UDP sndbuf 16777216 capped by net.core.wmem_max"),
            "{}",
            w[0]
        );
        assert!(
            w[0].contains("sysctl -w net.core.wmem_max=16777216"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("SO_SNDBUFFORCE"), "{}", w[0]);
        assert!(got.shortfalls(None, Some(16 << 20)).is_empty());
        assert!(got.shortfalls(None, None).is_empty());
        let w = got.shortfalls(None, Some(64 << 20));
        assert!(w[0].contains("net.core.rmem_max=67108864"), "{w:?}");
        // The kernel's own ceiling (INT_MAX / 2, doubled) is not a shortfall.
        let top = UdpBuffers {
            sndbuf: (i32::MAX as usize / 2) * 2,
            rcvbuf: 0,
            forced: true,
        };
        assert!(top.shortfalls(Some(1 << 30), None).is_empty());
    }

    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(usize::MAX)
    }

    /// On a real UDP socket: what the kernel reports back, forced or not.
    #[test]
    fn udp_buffers_on_a_real_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let untouched = set_udp_buffers(&socket, None, None).unwrap();
        assert!(!untouched.forced);
        assert!(untouched.sndbuf > 0 && untouched.rcvbuf > 0);

        let small = 64 << 10;
        let got = set_udp_buffers(&socket, Some(small), Some(small)).unwrap();
        // Below every limit: granted in full, doubled.
        assert_eq!((got.sndbuf, got.rcvbuf), (2 * small, 2 * small));
        assert!(got.shortfalls(Some(small), Some(small)).is_empty());

        // Past rmem_max: only SO_RCVBUFFORCE gets it; otherwise the cap is reported.
        let max = rmem_max();
        if max >= 1 << 29 {
            eprintln!("rmem_max {max} is too large to exceed: cap path not checked");
            return;
        }
        let big = (max * 2).max(8 << 20);
        let got = set_udp_buffers(&socket, None, Some(big)).unwrap();
        if got.forced {
            assert_eq!(got.rcvbuf, 2 * big);
            assert!(got.shortfalls(None, Some(big)).is_empty());
        } else {
            assert_eq!(got.rcvbuf, 2 * max);
            assert_eq!(got.shortfalls(None, Some(big)).len(), 1);
        }
        // What an unprivileged process gets, whoever runs the test: the plain option is
        // capped at rmem_max, and that is reported.
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt(&plain, sockopt::RcvBuf, &big).unwrap();
        let capped = UdpBuffers {
            sndbuf: getsockopt(&plain, sockopt::SndBuf).unwrap(),
            rcvbuf: getsockopt(&plain, sockopt::RcvBuf).unwrap(),
            forced: false,
        };
        assert_eq!(capped.rcvbuf, 2 * max);
        let w = capped.shortfalls(None, Some(big));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains(&format!("sysctl -w net.core.rmem_max={big}")),
            "{w:?}"
        );
    }

    fn thread_stat_field(index_after_comm: usize) -> String {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace()
            .nth(index_after_comm)
            .unwrap()
            .to_owned()
    }

    #[test]
    fn priority_applies_to_the_calling_thread() {
        // A positive nice (lower priority) is always permitted; in its own thread so that
        // the test harness keeps its priority.
        std::thread::spawn(|| {
            set_priority(7).unwrap();
            // Field 19 of stat, the 17th after the command name.
            assert_eq!(thread_stat_field(16), "7");
            let child = std::thread::spawn(|| thread_stat_field(16)).join().unwrap();
            assert_eq!(child, "7", "new threads inherit the nice value");
            assert!(matches!(
                set_priority(100),
                Ok(()) | Err(TuningError::Priority { nice: 100, .. })
            ));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pinning_the_calling_thread() {
        std::thread::spawn(|| {
            let allowed = allowed_cpus().unwrap();
            assert!(!allowed.is_empty());
            let last = *allowed.last().unwrap();
            pin_current_thread(&[last]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), [last]);
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(
                status.contains(&format!("Cpus_allowed_list:\t{last}\n")),
                "{status}"
            );
            let e = pin_current_thread(&[CpuSet::count() + 1]).unwrap_err();
            assert!(matches!(e, TuningError::Affinity { .. }), "{e}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn nofile_is_raised_never_lowered() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let l = raise_nofile(1).unwrap();
        assert_eq!((l.before, l.soft, l.hard), (soft, soft, hard));
        let want = hard.min(soft.saturating_add(16));
        let l = raise_nofile(want).unwrap();
        assert_eq!((l.before, l.soft), (soft, want.max(soft)));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, l.soft);
    }
}
