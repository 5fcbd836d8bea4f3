//! DVR end to end, every case at once on one server: ffmpeg publishes the test media in real
//! time for 10 s to streams recorded as FLV and MP4, in the session and the segment plan; a
//! publisher killed with SIGKILL, a path that cannot be written, and the server itself killed
//! mid-recording. Each file must pass `ffmpeg -v error` with nothing printed and last as long
//! as what was published (or `dvr_duration`, up to the next keyframe).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    assert_ffmpeg_decoded, curl, ffmpeg_publish, ffmpeg_publish_with, ffprobe_duration as duration,
    poll_until, require, wait_until, Reaper, Server,
};

/// Seconds each bounded publisher sends.
const PUBLISH_SECS: f64 = 10.0;
/// The segment plan's `dvr_duration`; the test media has a keyframe every 2 s.
const SEGMENT_SECS: f64 = 3.0;
const GOP_SECS: f64 = 2.0;

/// `ffmpeg -v error -i FILE -f null -` succeeded and printed nothing.
fn assert_clean(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{}: not clean:\n{stderr}",
        file.display()
    );
}

/// The files in `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn is_tmp(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "tmp")
}

/// Waits for `publisher`, which sends a bounded time, to end.
fn wait_done(publisher: &mut Reaper, what: &str) {
    wait_until(Duration::from_secs(30), what, || {
        publisher.0.try_wait().ok().flatten().is_some()
    });
}

#[test]
fn flv_and_mp4_sessions_and_segments_are_clean_and_survive_kills_and_bad_paths() {
    if !require("ffmpeg") || !require("ffprobe") || !require("curl") {
        return;
    }
    let rec = tempfile::tempdir().expect("temp dir");
    let root = rec.path();
    let blocked = root.join("blocked");
    std::fs::write(&blocked, "a file where the recording's folder should be").expect("file");
    let dvr =
        |vhost: &str, body: &str| format!("vhost {vhost} {{ dvr {{ enabled on; {body} }} }}\n");
    let r = root.display();
    let global = [
        dvr("s.flv", &format!("dvr_path {r}/s/[stream].flv;")),
        dvr(
            "s.mp4",
            &format!("dvr_plan session; dvr_path {r}/s/[stream].mp4;"),
        ),
        dvr(
            "g.flv",
            &format!("dvr_plan segment; dvr_duration 3; dvr_path {r}/g/[stream]/[timestamp].flv;"),
        ),
        dvr(
            "g.mp4",
            &format!(
                "dvr_plan segment; dvr_duration 3; dvr_wait_keyframe on; \
                 dvr_path {r}/g/[stream]/[2006][01][02]-[15][04][05].[999].mp4;"
            ),
        ),
        dvr(
            "bad",
            &format!(
                "dvr_plan segment; dvr_duration 1; dvr_wait_keyframe off; \
                 dvr_path {}/[stream].[timestamp].flv;",
                blocked.display()
            ),
        ),
    ]
    .concat();
    let server = Server::start(2, &global, "");
    let url = |vhost: &str, name: &str| {
        format!("rtmp://127.0.0.1:{}/live?vhost={vhost}/{name}", server.port)
    };
    let bounded = |vhost: &str, name: &str| {
        ffmpeg_publish_with(&["-c", "copy", "-t", "10"], &url(vhost, name))
    };
    let mut sessions = [bounded("s.flv", "sflv"), bounded("s.mp4", "smp4")];
    let mut segments = [bounded("g.flv", "gflv"), bounded("g.mp4", "gmp4")];
    let _bad = ffmpeg_publish(&url("bad", "bad"));
    let killed = ffmpeg_publish(&url("s.mp4", "killed"));
    let _crash = ffmpeg_publish(&url("s.mp4", "crash"));

    // The stream whose recording cannot be written plays on, and its errors are counted:
    // one a second (a segment each), logged once.
    server.wait_frames_in("bad", 10, Duration::from_secs(10));
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(url("bad", "bad"))
        .args(["-t", "3", "-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    assert_ffmpeg_decoded(&out, 50);
    let errors = |s: &Server| {
        s.stream("bad")
            .map_or(0, |s| s["dvr"]["errors"].as_u64().unwrap_or(0))
    };
    assert!(
        poll_until(Duration::from_secs(10), || errors(&server) >= 2),
        "dvr errors of the bad path: {}",
        errors(&server)
    );
    let (_, metrics) = curl(&[], &server.api_url("/metrics"));
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_dvr_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        counted >= 2.0,
        "ringcast_dvr_errors_total {counted}:\n{metrics}"
    );
    let warned = server
        .log()
        .lines()
        .filter(|l| l.contains("dvr bad/live/bad:"))
        .count();
    assert_eq!(warned, 1, "logged once:\n{}", server.log());

    // A publisher killed with SIGKILL: its session is closed and renamed, and plays.
    drop(killed);
    let killed_mp4 = root.join("s/killed.mp4");
    wait_until(Duration::from_secs(10), "killed.mp4 closed", || {
        killed_mp4.exists()
    });
    assert_clean(&killed_mp4);
    assert!(duration(&killed_mp4) >= 2.0, "{}", duration(&killed_mp4));

    for (p, what) in sessions
        .iter_mut()
        .chain(segments.iter_mut())
        .zip(["sflv", "smp4", "gflv", "gmp4"])
    {
        wait_done(p, what);
    }
    for name in ["sflv.flv", "smp4.mp4"] {
        let file = root.join("s").join(name);
        wait_until(Duration::from_secs(10), name, || file.exists());
        assert_clean(&file);
        let d = duration(&file);
        assert!(
            (d - PUBLISH_SECS).abs() <= 1.0,
            "{name}: {d} s of {PUBLISH_SECS}"
        );
    }
    for name in ["gflv", "gmp4"] {
        let dir = root.join("g").join(name);
        let closed = poll_until(Duration::from_secs(10), || {
            let f = files(&dir);
            f.len() >= 3 && !f.iter().any(|p| is_tmp(p))
        });
        let segs = files(&dir);
        assert!(closed, "{name}: {segs:?}");
        let mut total = 0.0;
        for (i, seg) in segs.iter().enumerate() {
            assert_clean(seg);
            let d = duration(seg);
            total += d;
            if i + 1 < segs.len() {
                assert!(
                    (SEGMENT_SECS - 0.5..=SEGMENT_SECS + GOP_SECS + 0.5).contains(&d),
                    "{}: {d} s, dvr_duration {SEGMENT_SECS} cut on a keyframe",
                    seg.display()
                );
            }
        }
        assert!(
            (total - PUBLISH_SECS).abs() <= 1.5,
            "{name}: {total} s in {segs:?}"
        );
    }

    // The server killed mid-recording leaves the .tmp, playable up to its last fragment.
    let crash = root.join("s/crash.mp4.tmp");
    assert!(crash.exists(), "{:?}", files(&root.join("s")));
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("killing ringcast");
    let mut server = server;
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    assert_clean(&crash);
    assert!(duration(&crash) >= 8.0, "{}", duration(&crash));
}
