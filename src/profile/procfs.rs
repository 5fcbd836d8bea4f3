//! The process and system statistics of SRS's API (`/api/v1/rusages`, `self_proc_stats`,
//! `system_proc_stats`, `meminfos`), read from getrusage(2) and /proc with SRS's field names.
//! CPU percentages cover the time since the previous request of the same kind (since the
//! process started, for the first `self_proc_stats`).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Map, Value};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// getrusage(RUSAGE_SELF), as SRS's `/api/v1/rusages` answers it.
pub fn rusages() -> Value {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(r) => json!({
            "ok": true,
            "sample_time": now_ms(),
            "ru_utime": r.user_time().tv_sec(),
            "ru_stime": r.system_time().tv_sec(),
            "ru_maxrss": r.max_rss(),
            "ru_ixrss": r.shared_integral(),
            "ru_idrss": r.unshared_data_integral(),
            "ru_isrss": r.unshared_stack_integral(),
            "ru_minflt": r.minor_page_faults(),
            "ru_majflt": r.major_page_faults(),
            "ru_nswap": r.full_swaps(),
            "ru_inblock": r.block_reads(),
            "ru_oublock": r.block_writes(),
            "ru_msgsnd": r.ipc_sends(),
            "ru_msgrcv": r.ipc_receives(),
            "ru_nsignals": r.signals(),
            "ru_nvcsw": r.voluntary_context_switches(),
            "ru_nivcsw": r.involuntary_context_switches(),
        }),
        Err(_) => json!({ "ok": false, "sample_time": now_ms() }),
    }
}

/// The fields of /proc/self/stat after `comm`, in proc(5)'s order, as SRS names them.
const SELF_FIELDS: [&str; 42] = [
    "state",
    "ppid",
    "pgrp",
    "session",
    "tty_nr",
    "tpgid",
    "flags",
    "minflt",
    "cminflt",
    "majflt",
    "cmajflt",
    "utime",
    "stime",
    "cutime",
    "cstime",
    "priority",
    "nice",
    "num_threads",
    "itrealvalue",
    "starttime",
    "vsize",
    "rss",
    "rsslim",
    "startcode",
    "endcode",
    "startstack",
    "kstkesp",
    "kstkeip",
    "signal",
    "blocked",
    "sigignore",
    "sigcatch",
    "wchan",
    "nswap",
    "cnswap",
    "exit_signal",
    "processor",
    "rt_priority",
    "policy",
    "delayacct_blkio_ticks",
    "guest_time",
    "cguest_time",
];

/// Parses /proc/PID/stat: pid, comm (which may hold spaces and parentheses) and the rest.
fn parse_self_stat(text: &str) -> Option<(i64, String, Vec<&str>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest = text.get(close + 1..)?.split_whitespace().collect();
    Some((pid, comm, rest))
}

static SELF_LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// /proc/self/stat, as SRS's `/api/v1/self_proc_stats` answers it; `percent` is the CPU
/// used (1.0 = one core) since the previous call.
pub fn self_proc_stats() -> Value {
    let Some(text) = std::fs::read_to_string("/proc/self/stat").ok() else {
        return json!({ "ok": false, "sample_time": now_ms() });
    };
    let Some((pid, comm, rest)) = parse_self_stat(&text) else {
        return json!({ "ok": false, "sample_time": now_ms() });
    };
    let mut data = Map::new();
    data.insert("ok".into(), true.into());
    data.insert("sample_time".into(), now_ms().into());
    data.insert("pid".into(), pid.into());
    data.insert("comm".into(), comm.into());
    let mut ticks = 0u64;
    for (name, value) in SELF_FIELDS.iter().zip(&rest) {
        let v = if *name == "state" {
            Value::from(*value)
        } else {
            value.parse::<i64>().map_or_else(
                // rsslim and a few addresses exceed i64 on some kernels.
                |_| value.parse::<u64>().map_or(Value::Null, Value::from),
                Value::from,
            )
        };
        if *name == "utime" || *name == "stime" {
            ticks += value.parse::<u64>().unwrap_or(0);
        }
        data.insert((*name).into(), v);
    }
    let hz = crate::stats::system::TICKS_PER_SEC;
    let now = Instant::now();
    let mut last = SELF_LAST.lock().unwrap_or_else(|e| e.into_inner());
    let percent = match *last {
        Some((at, before)) => {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                ticks.saturating_sub(before) as f64 / hz / secs
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    *last = Some((now, ticks));
    data.insert("percent".into(), json!(percent));
    Value::Object(data)
}

/// The `cpu` line of /proc/stat: user, nice, sys, idle, iowait, irq, softirq, steal, guest.
fn parse_system_stat(text: &str) -> Option<[u64; 9]> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut v = [0u64; 9];
    for (slot, field) in v.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = field.parse().ok()?;
    }
    Some(v)
}

static SYSTEM_LAST: Mutex<Option<[u64; 9]>> = Mutex::new(None);

/// /proc/stat's total CPU line, as SRS's `/api/v1/system_proc_stats` answers it; `percent`
/// is the busy share of all CPUs since the previous call.
pub fn system_proc_stats() -> Value {
    let Some(v) = std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(parse_system_stat)
    else {
        return json!({ "ok": false, "sample_time": now_ms() });
    };
    let mut last = SYSTEM_LAST.lock().unwrap_or_else(|e| e.into_inner());
    // Guest time is already counted in user time.
    let total = |s: &[u64; 9]| s[..8].iter().sum::<u64>();
    let idle = |s: &[u64; 9]| s[3] + s[4];
    let percent = match *last {
        Some(before) if total(&v) > total(&before) => {
            let t = (total(&v) - total(&before)) as f64;
            1.0 - idle(&v).saturating_sub(idle(&before)) as f64 / t
        }
        _ => 0.0,
    };
    *last = Some(v);
    json!({
        "ok": true,
        "sample_time": now_ms(),
        "percent": percent,
        "user": v[0],
        "nice": v[1],
        "sys": v[2],
        "idle": v[3],
        "iowait": v[4],
        "irq": v[5],
        "softirq": v[6],
        "steal": v[7],
        "guest": v[8],
    })
}

/// /proc/meminfo, in kB, as SRS's `/api/v1/meminfos` answers it.
pub fn meminfos() -> Value {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return json!({ "ok": false, "sample_time": now_ms() });
    };
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (total, free, buffers, cached) = (
        field("MemTotal"),
        field("MemFree"),
        field("Buffers"),
        field("Cached"),
    );
    let (swap_total, swap_free) = (field("SwapTotal"), field("SwapFree"));
    // SRS's definitions: what is neither free nor cache is in real use.
    let not_in_use = free + buffers + cached;
    let real_in_use = total.saturating_sub(not_in_use);
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    json!({
        "ok": true,
        "sample_time": now_ms(),
        "percent_ram": ratio(real_in_use, total),
        "percent_swap": ratio(swap_total.saturating_sub(swap_free), swap_total),
        "MemActive": field("Active"),
        "RealInUse": real_in_use,
        "NotInUse": not_in_use,
        "MemTotal": total,
        "MemFree": free,
        "Buffers": buffers,
        "Cached": cached,
        "SwapTotal": swap_total,
        "SwapFree": swap_free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comm_with_spaces_and_parentheses_parses() {
        let (pid, comm, rest) =
            parse_self_stat("42 (ring (cast) x) S 1 42 42 0 -1 4194560 100").expect("parses");
        assert_eq!((pid, comm.as_str()), (42, "ring (cast) x"));
        assert_eq!(rest[0], "S");
        assert_eq!(rest[1], "1");
    }

    #[test]
    fn this_process_reads_as_srs_shapes_it() {
        let s = self_proc_stats();
        assert_eq!(s["ok"], true);
        assert_eq!(s["pid"], i64::from(std::process::id()));
        assert!(s["num_threads"].as_i64().unwrap_or(0) >= 1);
        assert!(s["rss"].as_i64().unwrap_or(0) > 0);
        let m = meminfos();
        assert!(m["MemTotal"].as_u64().unwrap_or(0) > 0);
        assert!(rusages()["ru_maxrss"].as_i64().unwrap_or(0) > 0);
        let first = system_proc_stats();
        assert!(first["idle"].as_u64().is_some());
        let p = system_proc_stats()["percent"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&p), "percent {p}");
    }

    #[test]
    fn system_cpu_line_parses() {
        let v = parse_system_stat("cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 5 0 2 50 1 0 0 0 0 0\n")
            .expect("parses");
        assert_eq!(v, [10, 1, 5, 100, 2, 0, 1, 0, 0]);
    }
}
