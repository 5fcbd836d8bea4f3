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
use serde_json::Value;

/// `curl -s URL` with a time limit: the status and the body's bytes.
fn get(url: &str, limit_s: u64) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-m", &limit_s.to_string(), "-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("running curl");
    let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&out.stdout[split..]).trim().parse();
    (status.unwrap_or(0), out.stdout[..split].to_vec())
}

/// GETs an API path; asserts 200 and SRS's `code` 0, and returns the JSON.
fn api(server: &Server, path: &str) -> Value {
    let (status, body) = get(&server.api_url(path), 10);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "GET {path}: {text}");
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    assert_eq!(v["code"], 0, "GET {path}: {text}");
    v
}

/// As [`api`], on the keep-alive connection `conn`.
fn api_on(conn: &mut ApiConn, path: &str) -> Value {
    let v = conn.get(path);
    assert_eq!(v["code"], 0, "GET {path}: {v}");
    v
}

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

/// The sample counts of a pprof profile taken on thread `thread` whose stack has a function
/// whose name contains `frame`.
fn samples_in(profile: &pprof::protos::Profile, thread: &str, frame: &str) -> i64 {
    let s = |i: i64| profile.string_table[usize::try_from(i).expect("index")].as_str();
    let function = |id: u64| profile.function.iter().find(|f| f.id == id);
    let location = |id: u64| profile.location.iter().find(|l| l.id == id);
    profile
        .sample
        .iter()
        .filter(|sample| {
            sample
                .label
                .iter()
                .any(|l| s(l.key) == "thread" && s(l.str) == thread)
        })
        .filter(|sample| {
            sample
                .location_id
                .iter()
                .filter_map(|&id| location(id))
                .flat_map(|l| &l.line)
                .filter_map(|line| function(line.function_id))
                .any(|f| s(f.name).contains(frame))
        })
        .filter_map(|sample| sample.value.first())
        .sum()
}

/// 10 s of publish and 200 players under `--profile=cpu`: SIGUSR2 writes a profile without
/// stopping the server, SIGINT writes the final one; the flamegraph has both workers and their
/// runtime, and the protobuf decodes with the same samples, from both workers. Every player stays up the whole time,
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
    // Which task was on the CPU at a given SIGPROF is luck: the fan-out and the players'
    // write loops (the cohorts send for them) get a few samples in a hundred or none. What
    // every sample of a loaded worker has is the flamegraph's structure: the thread as a root
    // below "all", and the worker's runtime under it.
    let svg_samples = |frame: &str| -> u64 {
        final_svg
            .split(&format!("<title>{frame} ("))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.replace(',', "").parse().ok())
            .unwrap_or(0)
    };
    for worker in ["ringcast-w0", "ringcast-w1"] {
        assert!(
            svg_samples(worker) > 0,
            "{worker} is not a root of the flamegraph"
        );
    }
    assert!(
        final_svg.contains("compio_runtime::Runtime::enter"),
        "the workers' runtime is not in the flamegraph"
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
        assert!(
            samples_in(&profile, worker, "compio_runtime::Runtime::enter") > 0,
            "no sample of {worker} runs in its runtime"
        );
    }
    // The flamegraph and the protobuf are drawn from one report: the same samples.
    let counted: i64 = profile.sample.iter().filter_map(|s| s.value.first()).sum();
    assert_eq!(
        u64::try_from(counted).ok(),
        Some(svg_samples("all")),
        "the SVG and the .pb.gz disagree on the samples"
    );
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
    // The leak check lists the allocation stacks whose live bytes grew between two checks.
    api(&server, "/api/v1/valgrind?check=added");
    let players: Vec<Client> = (0..20)
        .map(|_| Client::play(server.port, "heap").expect("play"))
        .collect();
    // What the players hold grows once the stream is written to every one of them.
    wait_until(
        Duration::from_secs(10),
        "media sent to all 20 players",
        || {
            let clients = api(&server, "/api/v1/clients?count=100");
            clients["clients"]
                .as_array()
                .expect("clients")
                .iter()
                .filter(|c| c["type"] == "rtmp-play")
                .filter(|c| c["send_bytes"].as_u64().unwrap_or(0) > 0)
                .count()
                == players.len()
        },
    );
    let check = api(&server, "/api/v1/valgrind?check=added");
    let stacks = check["data"]["stacks"].as_array().expect("stacks");
    assert!(
        stacks.iter().any(|s| s["bytes"].as_i64().unwrap_or(0) > 0
            && s["frames"].as_array().is_some_and(|f| f
                .iter()
                .any(|f| f.as_str().is_some_and(|f| f.contains("ringcast::"))))),
        "no growing ringcast stack: {check}"
    );
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

/// The API's CPU profile: N seconds on demand in either form while the server works, a 409
/// for a second request meanwhile; and SRS's statistics endpoints answer in SRS's shape.
#[test]
fn api_cpu_profile_on_demand_one_at_a_time() {
    if !require("ffmpeg") || !require("curl") {
        return;
    }
    let server = Server::start(2, "", "gop_cache on;");
    let url = server.url("api");
    let _publisher = ffmpeg_publish(&url);
    assert!(server.wait_log("publish __defaultVhost__/live/api", Duration::from_secs(10)));
    let _players: Vec<Client> = (0..20)
        .map(|_| Client::play(server.port, "api").expect("play"))
        .collect();

    // No profiler ran yet, so no SIGPROF handler is installed; pprof installs one when the
    // first request starts sampling, and the second must come while it samples.
    let pid = server.pid();
    assert!(
        !catches_signal(pid, Signal::SIGPROF as i32),
        "a profiler already runs"
    );
    let pb_url = server.api_url("/api/v1/profile/cpu?seconds=3&format=pb");
    let first = std::thread::spawn(move || get(&pb_url, 30));
    wait_until(Duration::from_secs(2), "the first profile samples", || {
        catches_signal(pid, Signal::SIGPROF as i32)
    });
    let (status, body) = get(&server.api_url("/api/v1/profile/cpu?seconds=1"), 10);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 409, "{text}");
    let err: Value = serde_json::from_str(&text).expect("a JSON error");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("already running")),
        "{text}"
    );
    let (status, body) = first.join().expect("curl thread");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let raw = ringcast::profile::gunzip(&body).expect("the profile is gzip");
    pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof Profile");

    let (status, svg) = get(
        &server.api_url("/api/v1/profile/cpu?seconds=1&format=svg"),
        30,
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    let (status, _) = get(&server.api_url("/api/v1/profile/cpu?seconds=nope"), 10);
    assert_eq!(status, 400);

    let ru = api(&server, "/api/v1/rusages");
    assert!(ru["data"]["ru_maxrss"].as_i64().unwrap_or(0) > 0, "{ru}");
    let me = api(&server, "/api/v1/self_proc_stats");
    assert_eq!(me["data"]["pid"], server.pid());
    // Main thread, two workers, the stats thread at least.
    assert!(me["data"]["num_threads"].as_i64().unwrap_or(0) >= 4, "{me}");
    let sys = api(&server, "/api/v1/system_proc_stats");
    assert!(sys["data"]["user"].as_u64().is_some(), "{sys}");
    let mem = api(&server, "/api/v1/meminfos");
    assert!(mem["data"]["MemTotal"].as_u64().unwrap_or(0) > 0, "{mem}");
    let (status, _) = get(&server.api_url("/api/v1/profile/heap"), 10);
    assert_eq!(status, if cfg!(feature = "jemalloc") { 200 } else { 501 });
}

/// Waits until the API lists no stream and no client, and counts no connection but `api`'s
/// own: connection tasks count themselves out just after they leave the registry.
fn wait_idle(api: &mut ApiConn) {
    let mut left = String::new();
    let idle = poll_until(Duration::from_secs(10), || {
        let streams = api_on(api, "/api/v1/streams");
        let clients = api_on(api, "/api/v1/clients");
        let (_, metrics) = api.get_raw("/metrics");
        let metrics = String::from_utf8_lossy(&metrics).into_owned();
        let empty = |v: &Value, k: &str| v[k].as_array().is_some_and(|a| a.is_empty());
        let only_this = metrics.lines().any(|l| l == "ringcast_connections 1");
        left = format!("{streams} {clients} only this connection: {only_this}");
        empty(&streams, "streams") && empty(&clients, "clients") && only_this
    });
    assert!(idle, "streams, clients or connections left: {left}");
}

/// One round: a publisher with a GOP, 50 players that each receive it, then everyone leaves.
fn round(server: &Server, gop: &[ringcast::flv::Tag]) {
    let mut publisher = Client::publish(server.port, "leak").expect("publish");
    for tag in gop {
        publisher.send(tag, tag.timestamp).expect("sending a tag");
    }
    let mut players = Vec::new();
    for _ in 0..50 {
        let mut p = Client::play(server.port, "leak").expect("play");
        let got = p
            .media_for(Duration::from_secs(5), |m| !m.is_empty())
            .expect("media");
        assert!(!got.is_empty(), "a player got nothing");
        players.push(p);
    }
    drop(players);
    drop(publisher);
}

/// SRS's incremental leak check, without valgrind: 20 rounds of publish, 50 players and
/// stop; after a warm-up round, `check=added` finds no growth in live heap blocks beyond a
/// small bound, and the live objects are back to zero after every round.
#[test]
fn leak_check_finds_no_growth_over_twenty_rounds() {
    if !require("curl") {
        return;
    }
    // Blocks that may legitimately appear after the warm-up: caches that grow to a peak
    // (per-core tables, the runtime's op slab) and the API's own request.
    const BOUND_PER_ROUND: i64 = 16;
    const BOUND_TOTAL: i64 = 64;
    let server = Server::start(2, "", "gop_cache on;");
    let tags = media_tags();
    // Metadata, sequence headers and the first GOP: up to the second keyframe.
    let second_key = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| t.type_id == 9 && t.data.first().is_some_and(|b| b >> 4 == 1))
        .nth(1)
        .map_or(tags.len(), |(i, _)| i);
    let gop = &tags[..second_key];

    // Every check asks on this one connection: the count of connections it sees is its own.
    let mut api = ApiConn::connect(server.api_port);
    round(&server, gop);
    wait_idle(&mut api);
    let base = api_on(&mut api, "/api/v1/valgrind?check=added");
    let data = &base["data"];
    assert_eq!(data["check"], "added", "{base}");
    assert_eq!(data["call"], "VALGRIND_DO_ADDED_LEAK_CHECK");
    assert_eq!(data["heap"]["counted"], true, "{base}");
    let start_blocks = data["heap"]["live_blocks"].as_i64().expect("live_blocks");
    let mut growths = Vec::new();
    for _ in 1..20 {
        round(&server, gop);
        wait_idle(&mut api);
        let check = api_on(&mut api, "/api/v1/valgrind?check=added");
        let data = &check["data"];
        assert_eq!(
            data["objects"],
            serde_json::json!({"connections": 1, "sessions": 0, "sources": 0, "players": 0, "queued_messages": 0}),
            "{check}"
        );
        let delta = data["heap"]["delta_blocks"].as_i64().expect("delta_blocks");
        growths.push(delta);
        assert!(
            delta <= BOUND_PER_ROUND,
            "{delta} more live blocks after a round: {check}"
        );
    }
    let end = api_on(&mut api, "/api/v1/valgrind?check=quick");
    let end_blocks = end["data"]["heap"]["live_blocks"]
        .as_i64()
        .expect("live_blocks");
    eprintln!("live blocks: {start_blocks} after warm-up, {end_blocks} after 20 rounds; per round {growths:?}");
    assert!(
        end_blocks - start_blocks <= BOUND_TOTAL,
        "{} blocks grew over 19 rounds: {growths:?}",
        end_blocks - start_blocks
    );
}
