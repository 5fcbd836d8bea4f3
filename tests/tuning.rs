//! The process tuning ringcast does itself from its config: a real ringcast with
//! `cpu_affinity`, `priority` and `rlimit_nofile`, checked from the outside through
//! /proc/PID/task/*/stat and status, /proc/PID/limits, and its start-up log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The CPUs a task may run on, from `Cpus_allowed_list` in its status file.
fn cpus_allowed(status: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(status).expect("reading status");
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in status")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap());
    }
    cpus
}

/// The nice value of a task: field 19 of its stat file.
fn nice(stat: &Path) -> i32 {
    let text = std::fs::read_to_string(stat).expect("reading stat");
    // The command name may hold spaces; the fields after it start with the state (field 3).
    let after_comm = &text[text.rfind(')').expect("comm in stat") + 2..];
    after_comm
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

/// The worker threads of `pid` as (worker index, /proc/PID/task/TID), sorted by index.
fn workers(pid: u32) -> Vec<(usize, std::path::PathBuf)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if let Some(i) = comm.trim().strip_prefix("ringcast-w") {
            found.push((i.parse().expect("worker index"), dir));
        }
    }
    found.sort();
    found
}

/// Whether this process may lower a nice value below 0: CAP_SYS_NICE (bit 23 of CapEff) or
/// an RLIMIT_NICE that allows it (the limit is 20 - nice).
fn may_renice_to(nice: i32) -> bool {
    let rlimit_nice = getrlimit(Resource::RLIMIT_NICE).map_or(0, |(soft, _)| soft);
    has_capability(23) || rlimit_nice >= (20 - i64::from(nice)) as u64
}

/// Whether this process has capability `bit` in effect (23 CAP_SYS_NICE, 24
/// CAP_SYS_RESOURCE).
fn has_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    cap_eff & (1 << bit) != 0
}

/// The soft and hard "Max open files" of a process.
fn open_files(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn workers_are_pinned_reniced_and_get_their_fd_limit() {
    // The last two CPUs this test may use, in reverse order, so that the check also proves
    // worker i takes the i-th CPU as written, round robin.
    let allowed = cpus_allowed(Path::new("/proc/self/status"));
    let order: Vec<usize> = allowed.iter().rev().take(2).copied().collect();
    let list: Vec<String> = order.iter().map(ToString::to_string).collect();
    let priority = -5;
    let server = Server::start(
        3,
        &format!(
            "cpu_affinity {};\npriority {priority};\nrlimit_nofile 4096;\n\
             rtc_server {{ rcvbuf 1M; }}",
            list.join(",")
        ),
        "",
    );
    assert!(
        server.wait_log("worker 2 pinned to CPU", Duration::from_secs(5)),
        "no pinning logged"
    );
    let found = workers(server.pid());
    assert_eq!(
        found.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1, 2],
        "three ringcast-w* threads"
    );
    let renice_permitted = may_renice_to(priority);
    for (i, task) in &found {
        let want = order[i % order.len()];
        assert_eq!(
            cpus_allowed(&task.join("status")),
            [want],
            "worker {i}: Cpus_allowed_list"
        );
        assert!(server
            .log()
            .contains(&format!("worker {i} pinned to CPU {want}")));
        let got = nice(&task.join("stat"));
        if renice_permitted {
            assert_eq!(got, priority, "worker {i}: nice");
        } else {
            eprintln!(
                "SKIPPED the nice assertion for worker {i}: this test may not set a negative \
                 nice (no CAP_SYS_NICE, RLIMIT_NICE too low); it runs at {got}"
            );
        }
    }
    let log = server.log();
    if renice_permitted {
        assert!(log.contains("priority: nice -5"), "{log}");
    } else {
        assert!(log.contains("priority -5 not set"), "{log}");
    }

    // rlimit_nofile: raised to 4096 where the hard limit allows.
    let (soft, _) = open_files(server.pid());
    let (_, our_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Past the hard limit only with CAP_SYS_RESOURCE.
    assert!(
        soft >= if has_capability(24) {
            4096
        } else {
            4096.min(our_hard)
        },
        "open files {soft}"
    );
    assert!(log.contains("open-file limit"), "{log}");
    assert!(log.contains("rtc_server: UDP sockets get"), "{log}");
}

#[test]
fn what_cannot_be_set_is_warned_about() {
    // Started with a low soft fd limit (inherited from this process, briefly lowered) and
    // an rlimit_nofile that does not raise it, below max_connections; and a CPU no machine
    // here has.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).unwrap();
    let server = Server::start(
        2,
        "cpu_affinity 1023;\nmax_connections 100000;\nrlimit_nofile 64;",
        "",
    );
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let pid = server.pid();
    assert!(server.wait_log("serving RTMP", Duration::from_secs(5)));
    let log = server.log();
    assert!(
        log.contains("cpu_affinity: CPU 1023 not available to this process")
            && log.contains("workers run unpinned"),
        "{log}"
    );
    assert!(
        log.contains("open-file limit 256 is below max_connections 100000")
            && log.contains("LimitNOFILE=101024"),
        "{log}"
    );
    assert!(!log.contains("pinned to CPU"), "{log}");
    let allowed = cpus_allowed(Path::new("/proc/self/status"));
    for (i, task) in workers(pid) {
        assert_eq!(cpus_allowed(&task.join("status")), allowed, "worker {i}");
        assert_eq!(nice(&task.join("stat")), nice(Path::new("/proc/self/stat")));
    }
    assert_eq!(open_files(pid).0, 256);
}
