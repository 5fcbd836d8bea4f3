//! bench.sh end to end, at a tiny scale, so that the benchmark cannot rot: it must start
//! ringcast and nginx-rtmp, publish, play, sample them, print the seed's table with a ratio
//! row, write the CSV and the chart, and leave nothing running; and the same for its WebRTC
//! table (WHEP players of the RTMP publish) and its HLS table (HLS players of nginx-rtmp's
//! files, served by nginx). No timing is asserted: the
//! numbers belong to the benchmark, not to tests.

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;

use common::require;

#[test]
fn bench_sh_measures_ringcast_and_nginx_rtmp_and_cleans_up() {
    if !require("nginx") {
        return;
    }
    let base = free_base(0);
    let (stdout, out) = bench_sh(
        base,
        &[
            "--levels",
            "20",
            "--servers",
            "ringcast nginx-rtmp",
            "--warmup",
            "1",
        ],
    );

    assert!(
        stdout.contains("| Server | CPU | Mem | Conn | ENbps | ANbps | sb | Lat |"),
        "{stdout}"
    );
    assert!(stdout.contains("| ringcast, 20 players |"), "{stdout}");
    assert!(stdout.contains("| nginx-rtmp, 20 players |"), "{stdout}");
    assert!(
        stdout.contains("| **ringcast / nginx-rtmp**, 20 players |"),
        "{stdout}"
    );

    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        // Every player of both servers stayed and received the stream.
        assert_eq!(cells[14], "20", "alive: {row}");
        assert_eq!(cells[15], "0", "failed: {row}");
        let mbps: f64 = cells[10].parse().expect("anbps");
        assert!(mbps > 0.0, "no bandwidth: {row}");
    }
    let svg = std::fs::read_to_string(out.path().join("chart.svg")).expect("chart.svg");
    assert!(svg.contains("<polyline") && svg.contains("nginx-rtmp"));

    // Nothing it started still listens.
    for port in [base, base + 1, base + 10] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port} after bench.sh"
        );
    }
}

#[test]
fn bench_sh_measures_webrtc_players() {
    let base = free_base(1);
    let (stdout, out) = bench_sh(
        base,
        &[
            "--proto",
            "whep",
            "--levels",
            "5",
            "--servers",
            "ringcast",
            "--warmup",
            "2",
        ],
    );
    assert!(
        stdout.contains("| ringcast (whep), 5 players |"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let row = csv.lines().nth(1).expect("a row");
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells[1], "whep", "{row}");
    assert_eq!(cells[14], "5", "alive: {row}");
    let loss: f64 = cells[16].parse().expect("loss_pct");
    assert!(loss < 5.0, "{row}");
    assert!(
        cells[10].parse::<f64>().expect("anbps") > 0.0,
        "no media: {row}"
    );
    assert!(TcpStream::connect(("127.0.0.1", base + 10)).is_err());
}

/// `--topology edge`: one server, then an origin and two edges with the players spread over
/// the edges; the origin holds its publisher and one pull per edge, whatever the players.
#[test]
fn bench_sh_measures_an_origin_and_two_edges() {
    let base = free_base(2);
    let (stdout, out) = bench_sh(
        base,
        &["--topology", "edge", "--levels", "6", "--warmup", "1"],
    );
    for name in [
        "ringcast",
        "ringcast-origin",
        "ringcast-edges",
        "ringcast-cluster",
    ] {
        assert!(
            stdout.contains(&format!("| {name}, 6 players |")),
            "{stdout}"
        );
    }
    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let origin = rows
        .iter()
        .find(|r| r[0] == "ringcast-origin")
        .expect("origin row");
    assert_eq!(origin[8], "3", "the publisher and one pull per edge: {csv}");
    for row in &rows {
        assert_eq!(row[14], "6", "alive: {row:?}");
        assert!(
            row[10].parse::<f64>().expect("anbps") > 0.0,
            "no media: {row:?}"
        );
    }
    let table = std::fs::read_to_string(out.path().join("topology.md")).expect("topology.md");
    assert!(
        table
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("| 6 | ")),
        "{table}"
    );
    for port in [base, base + 5, base + 6, base + 10, base + 15, base + 16] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{port} still open"
        );
    }
}

#[test]
fn bench_sh_measures_hls_players_of_nginx_rtmp_files() {
    if !require("nginx") {
        return;
    }
    let base = free_base(2);
    let (stdout, out) = bench_sh(
        base,
        &[
            "--proto",
            "hls",
            "--levels",
            "5",
            "--servers",
            "nginx-rtmp",
            "--warmup",
            "2",
        ],
    );
    assert!(
        stdout.contains("| nginx-rtmp (hls), 5 players |") && stdout.contains("keeping up"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let row = csv.lines().nth(1).expect("a row");
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells[1], "hls", "{row}");
    // Every player fetched segments of nginx-rtmp's files through nginx.
    assert_eq!(cells[14], "5", "alive: {row}");
    let keeping_up: u64 = cells[17].parse().expect("keeping_up");
    assert!(keeping_up <= 5, "{row}");
    // Latency from the one full player (index 0 of one in 10), p95 beside p50 and p99.
    let p95: i64 = cells[18].parse().expect("lat_p95_ms");
    assert!(p95 > 0, "no latency: {row}");
    assert!(
        cells[10].parse::<f64>().expect("anbps") > 0.0,
        "no media: {row}"
    );
    for port in [base + 1, base + 11] {
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}

/// Runs bench.sh with `args` on the ports from `base`, a 1 s ramp and a 2 s window, on this
/// build's binaries; returns its output and the results folder.
fn bench_sh(base: u16, args: &[&str]) -> (String, tempfile::TempDir) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ringcast"))
        .parent()
        .expect("binary dir")
        .to_owned();
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new("./bench.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RINGCAST_BIN_DIR", &bin_dir)
        .args(args)
        .args(["--ramp", "1", "--measure", "2"])
        .args(["--port-base", &base.to_string()])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running bench.sh");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench.sh failed:\n{stdout}\n{stderr}");
    (stdout, out)
}

/// A port base whose ports bench.sh uses (TCP base..base+2, base+10..=base+13, and the
/// edges' base+5, base+6, base+15, base+16; UDP base+20, base+22) are all free, so the test never meets another server, a developer's
/// benchmark included. `slot` keeps this binary's tests, which run at once, on ranges apart.
fn free_base(slot: u16) -> u16 {
    let start = 20000 + (std::process::id() % 200) as u16 * 50 + slot * 7000;
    (0..200)
        .map(|i| start.wrapping_add(i * 30) % 30000 + 2000)
        .find(|&base| {
            [0, 1, 2, 5, 6, 10, 11, 12, 13, 15, 16]
                .iter()
                .all(|d| TcpListener::bind(("127.0.0.1", base + d)).is_ok())
                && [20, 22]
                    .iter()
                    .all(|d| UdpSocket::bind(("127.0.0.1", base + d)).is_ok())
        })
        .expect("no free port range for bench.sh")
}
