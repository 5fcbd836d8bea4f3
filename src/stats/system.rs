//! Readings of the process and the machine from Linux's /proc, for the API's summaries and the
//! metrics: CPU ticks of the process, of each worker thread and of the machine, resident
//! memory, load averages, the kernel's names (uname). Each reading is one small file read; where /proc is missing or
//! unreadable a reading is `None` rather than an error, since it only feeds statistics.

use std::fs;

/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second for user space.
pub const TICKS_PER_SEC: f64 = 100.0;

/// Fields 14 and 15 (utime, stime) of a `stat` file, summed.
fn stat_ticks(path: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks the process has used.
pub fn process_ticks() -> Option<u64> {
    stat_ticks("/proc/self/stat")
}

/// CPU ticks thread `tid` of this process has used.
pub fn thread_ticks(tid: i32) -> Option<u64> {
    stat_ticks(&format!("/proc/self/task/{tid}/stat"))
}

/// The machine's (busy, total) CPU ticks, all cores summed.
pub fn system_ticks() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Resident memory of the process, bytes.
pub fn resident_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The machine's (total, available) memory, KiB.
pub fn memory_kib() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Load averages over 1, 5 and 15 minutes.
pub fn load_average() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Seconds since the machine booted.
pub fn machine_uptime() -> Option<f64> {
    fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What `uname(2)` says, read from /proc/sys/kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uname {
    /// The kernel's name, e.g. `Linux`.
    pub sysname: String,
    /// The host name.
    pub nodename: String,
    /// The kernel release, e.g. `6.1.0-18-amd64`.
    pub release: String,
    /// The kernel's build string, e.g. `#1 SMP PREEMPT_DYNAMIC ...`.
    pub version: String,
    /// The machine, e.g. `x86_64`.
    pub machine: String,
}

/// The kernel's names; the machine is the one this binary was built for, which is what
/// `uname -m` prints for it.
pub fn uname() -> Option<Uname> {
    let read = |name: &str| -> Option<String> {
        let text = fs::read_to_string(format!("/proc/sys/kernel/{name}")).ok()?;
        Some(text.trim_end().to_owned())
    };
    Some(Uname {
        sysname: read("ostype")?,
        nodename: read("hostname")?,
        release: read("osrelease")?,
        version: read("version")?,
        machine: std::env::consts::ARCH.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_exist_on_linux() {
        assert!(process_ticks().is_some());
        let (busy, total) = system_ticks().expect("/proc/stat");
        assert!(busy <= total && total > 0);
        assert!(resident_bytes().expect("VmRSS") > 0);
        let (total, avail) = memory_kib().expect("meminfo");
        assert!(avail <= total);
        assert!(load_average().is_some());
        assert!(thread_ticks(nix::unistd::gettid().as_raw()).is_some());
        let u = uname().expect("/proc/sys/kernel");
        assert_eq!(u.sysname, "Linux");
        assert!(!u.release.is_empty() && !u.nodename.is_empty());
    }
}
