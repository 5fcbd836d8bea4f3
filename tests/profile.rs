//! End-to-end tests of the built-in performance tools: `--profile=cpu` on a loaded server,
//! with SIGUSR2 and SIGINT dumps, on whichever I/O driver RINGCAST_IO selects (test.sh runs
//! both, which is what shows the io_uring and epoll loops surviving SIGPROF).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pprof::protos::Message;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The thread names of a pprof profile's samples (pprof-rs labels each sample "thread").
fn sample_threads(profile: &pprof::protos::Profile) -> BTreeSet<String> {
    let s = |i: i64| profile.string_table[usize::try_from(i).expect("index")].clone();
    profile
        .sample
        .iter()
        .flat_map(|sample| &sample.label)
        .filter(|l| s(l.key) == "thread")
        .map(|l| s(l.str))
        .collect()
}

/// 10 s of publish and 200 players under `--profile=cpu`: SIGUSR2 writes a profile without
/// stopping the server, SIGINT writes the final one; the flamegraph shows the fan-out and the
/// protobuf decodes with samples from both workers. Every player stays up the whole time,
/// so the workers' I/O loops survived thousands of SIGPROFs.
#[test]
fn cpu_profile_of_a_loaded_server_on_sigusr2_and_sigint() {
    if !require("ffmpeg") {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().to_str().expect("utf-8 path").to_owned();
    let mut server = Server::start_with(
        2,
        "",
        "gop_cache on;",
        &[
            "--profile=cpu",
            "--profile-hz",
            "999",
            "--profile-dir",
            &out_dir,
        ],
    );
    assert!(server.wait_log("CPU profiling at 999 Hz", Duration::from_secs(2)));
    match std::env::var("RINGCAST_IO").as_deref() {
        Ok("uring") => assert!(server.wait_log("on io_uring", Duration::from_secs(2))),
        Ok("epoll") => assert!(server.wait_log("on epoll", Duration::from_secs(2))),
        _ => {}
    }
    let url = server.url("profiled");
    let _publisher = ffmpeg_publish(&url);
    assert!(server.wait_log(
        "publish __defaultVhost__/live/profiled",
        Duration::from_secs(10)
    ));
    let bench = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args([
            "rtmp-play",
            "-c",
            "200",
            "-r",
            &url,
            "-d",
            "10",
            "--interval",
            "2",
        ])
        .output()
        .expect("running ringcast-bench");
    let report = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "ringcast-bench failed:\n{report}");
    let summary = report
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .unwrap_or_else(|| panic!("no SUMMARY line:\n{report}"));
    assert!(
        summary.contains("alive=200 failed=0"),
        "players dropped under profiling:\n{report}"
    );
    // Every interval line has every player receiving: no worker stalled on a signal.
    for line in report.lines().filter(|l| l.contains("alive=")) {
        if let Some(min) = line
            .split("kbps(min/median/max)=")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse::<u64>().ok())
        {
            assert!(min > 0, "a player received nothing:\n{report}");
        }
    }

    kill(
        Pid::from_raw(i32::try_from(server.pid()).expect("pid")),
        Signal::SIGUSR2,
    )
    .expect("SIGUSR2");
    assert!(
        server.wait_log("CPU profile written", Duration::from_secs(30)),
        "no profile after SIGUSR2"
    );
    assert!(server.alive(), "SIGUSR2 stopped the server");
    assert_eq!(files(out.path(), ".svg").len(), 1);

    kill(
        Pid::from_raw(i32::try_from(server.pid()).expect("pid")),
        Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits on SIGINT");
    assert!(status.success(), "exit status {status}");
    let log = server.log();
    assert_eq!(log.matches("CPU profile written").count(), 2, "{log}");

    let svgs = files(out.path(), ".svg");
    let pbs = files(out.path(), ".pb.gz");
    assert_eq!((svgs.len(), pbs.len()), (2, 2), "{svgs:?} {pbs:?}");
    for p in svgs.iter().chain(&pbs) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(name.starts_with("cpu-"), "{name}");
        assert!(
            log.contains(&p.display().to_string()),
            "{} not logged",
            p.display()
        );
    }

    let final_svg = std::fs::read_to_string(&svgs[1]).expect("reading the SVG");
    assert!(final_svg.starts_with("<?xml") && final_svg.contains("<svg"));
    assert!(
        final_svg.contains("write_loop"),
        "the player's write loop is not in the flamegraph"
    );
    assert!(
        final_svg.contains("next_batch") || final_svg.contains("relay_task"),
        "the hub's fan-out is not in the flamegraph"
    );

    let raw = ringcast::profile::gunzip(&std::fs::read(&pbs[1]).expect("reading the .pb.gz"))
        .expect("the .pb.gz is gzip");
    let profile = pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof Profile");
    assert!(
        profile.sample.len() > 10,
        "{} samples",
        profile.sample.len()
    );
    assert!(!profile.function.is_empty() && !profile.location.is_empty());
    let threads = sample_threads(&profile);
    for worker in ["ringcast-w0", "ringcast-w1"] {
        assert!(
            threads.contains(worker),
            "no samples from {worker}: {threads:?}"
        );
    }
}

/// With `--features jemalloc`, `--profile=heap` writes a heap flamegraph and a pprof
/// protobuf of live bytes on SIGUSR2 and on exit.
#[cfg(feature = "jemalloc")]
#[test]
fn heap_profile_with_jemalloc() {
    if !require("ffmpeg") {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().to_str().expect("utf-8 path").to_owned();
    let mut server = Server::start_with(
        2,
        "",
        "gop_cache on;",
        &["--profile=heap", "--profile-dir", &out_dir],
    );
    assert!(server.wait_log("heap profiling active", Duration::from_secs(2)));
    let url = server.url("heap");
    let _publisher = ffmpeg_publish(&url);
    assert!(server.wait_log(
        "publish __defaultVhost__/live/heap",
        Duration::from_secs(10)
    ));
    let players: Vec<Client> = (0..20)
        .map(|_| Client::play(server.port, "heap").expect("play"))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    kill(
        Pid::from_raw(i32::try_from(server.pid()).expect("pid")),
        Signal::SIGUSR2,
    )
    .expect("SIGUSR2");
    assert!(server.wait_log("heap profile written", Duration::from_secs(30)));
    assert!(server.alive(), "SIGUSR2 stopped the server");
    kill(
        Pid::from_raw(i32::try_from(server.pid()).expect("pid")),
        Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits on SIGINT");
    assert!(status.success(), "exit status {status}");
    drop(players);

    let svgs = files(out.path(), ".svg");
    let pbs = files(out.path(), ".pb.gz");
    assert_eq!((svgs.len(), pbs.len()), (2, 2), "{svgs:?} {pbs:?}");
    for p in svgs.iter().chain(&pbs) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(name.starts_with("heap-"), "{name}");
    }
    let svg = std::fs::read_to_string(&svgs[0]).expect("reading the SVG");
    assert!(svg.contains("<svg"), "not an SVG");
    let raw = ringcast::profile::gunzip(&std::fs::read(&pbs[0]).expect("reading the .pb.gz"))
        .expect("the .pb.gz is gzip");
    let profile = pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof Profile");
    assert!(!profile.sample.is_empty(), "no live allocations sampled");
    assert!(
        profile.string_table.iter().any(|s| s.contains("ringcast")),
        "no ringcast frames in the heap profile"
    );
}
