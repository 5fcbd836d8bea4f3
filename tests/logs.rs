//! The log as operators' tools read it: `srs_log_tank file` writes SRS's line layout with the
//! connection id and no colour codes, the console writes no colour codes into a pipe, and
//! SIGUSR1 after a logrotate-style rename makes the server write a new file at the
//! configured path.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, poll_until, wait_port, Client, Reaper};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WITHIN: Duration = Duration::from_secs(10);

/// A server whose config is `global` plus a listen port, pid file and one worker.
struct Logged {
    child: Reaper,
    port: u16,
    /// Holds the config, pid and log files until the test ends.
    _dir: tempfile::TempDir,
}

impl Logged {
    fn start(dir: tempfile::TempDir, global: &str, stderr: Stdio) -> Self {
        let port = free_port();
        let conf = dir.path().join("test.conf");
        std::fs::write(
            &conf,
            format!(
                "listen 127.0.0.1:{port};\nworkers 1;\ndaemon off;\npid {};\n{global}\n",
                dir.path().join("ringcast.pid").display()
            ),
        )
        .expect("writing the config");
        let child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting ringcast");
        let server = Self {
            child: Reaper(child),
            port,
            _dir: dir,
        };
        wait_port(port, WITHIN);
        server
    }

    fn with_log_file(level: &str) -> (Self, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        // In a directory the server must create, as SRS users' `./objs/srs.log` often is.
        let log = dir.path().join("logs").join("srs.log");
        let global = format!(
            "srs_log_tank file;\nsrs_log_file {};\nsrs_log_level {level};",
            log.display()
        );
        (Self::start(dir, &global, Stdio::null()), log)
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

fn wait_file(path: &Path, what: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let held = poll_until(WITHIN, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        what(&text)
    });
    assert!(
        held,
        "{} never got there; it holds:\n{text}",
        path.display()
    );
    text
}

/// `[YYYY-MM-DD HH:MM:SS.mmm][LEVEL][pid][cid]`, then `[0]` for WARN and ERROR, then a space;
/// the cid, if any.
fn srs_header(line: &str, pid: u32) -> Result<&str, String> {
    let bad = |why: &str| format!("{why}: {line:?}");
    let rest = line.strip_prefix('[').ok_or_else(|| bad("no ["))?;
    let (time, rest) = rest.split_once("][").ok_or_else(|| bad("no time"))?;
    let shape = time.len() == 23
        && time.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            19 => c == '.',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return Err(bad("time is not YYYY-MM-DD HH:MM:SS.mmm"));
    }
    let (level, rest) = rest.split_once("][").ok_or_else(|| bad("no level"))?;
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return Err(bad("not an SRS level"));
    }
    let rest = rest
        .strip_prefix(&format!("{pid}]["))
        .ok_or_else(|| bad("not the server's pid"))?;
    let (cid, rest) = rest.split_once(']').ok_or_else(|| bad("no cid"))?;
    let rest = match level {
        "WARN" | "ERROR" => rest.strip_prefix("[0]").ok_or_else(|| bad("no [errno]"))?,
        _ => rest,
    };
    if !rest.starts_with(' ') {
        return Err(bad("no space before the message"));
    }
    Ok(cid)
}

#[test]
fn log_file_has_srs_layout_with_a_cid_and_no_colour() {
    let (server, log) = Logged::with_log_file("trace");
    let publisher = Client::publish(server.port, "layout").expect("publish");
    let text = wait_file(&log, |t| t.contains("publish __defaultVhost__/live/layout"));
    drop(publisher);
    assert!(!text.contains('\x1b'), "colour codes in the file:\n{text}");
    for line in text.lines() {
        if let Err(e) = srs_header(line, server.pid()) {
            panic!("{e}\nin:\n{text}");
        }
    }
    let publish = text
        .lines()
        .find(|l| l.ends_with("publish __defaultVhost__/live/layout"))
        .expect("the publish line");
    let cid = srs_header(publish, server.pid()).expect("header");
    assert!(
        !cid.is_empty() && cid.bytes().all(|b| b.is_ascii_digit()),
        "{publish}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("][{cid}] accepted")) && l.contains("[INFO]")),
        "the accept line carries the same cid:\n{text}"
    );
}

#[test]
fn console_into_a_pipe_has_no_colour() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = "srs_log_tank console;\nsrs_log_level info;";
    let mut server = Logged::start(dir, global, Stdio::piped());
    let mut pipe = server.child.0.stderr.take().expect("stderr pipe");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            sink.lock()
                .expect("log buffer")
                .extend_from_slice(&buf[..n]);
        }
    });
    let publisher = Client::publish(server.port, "pipe").expect("publish");
    let mut text = String::new();
    let held = poll_until(WITHIN, || {
        text = String::from_utf8_lossy(&seen.lock().expect("log buffer")).into_owned();
        text.contains("publish __defaultVhost__/live/pipe")
    });
    assert!(held, "no publish line:\n{text}");
    drop(publisher);
    assert!(!text.contains('\x1b'), "colour codes in the pipe:\n{text}");
}

#[test]
fn sigusr1_after_a_rename_writes_a_new_file_at_the_configured_path() {
    let (server, log) = Logged::with_log_file("trace");
    wait_file(&log, |t| t.contains("serving RTMP"));
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotating the log");
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGUSR1).expect("SIGUSR1");
    wait_file(&log, |t| t.contains("reopened"));
    let publisher = Client::publish(server.port, "rotated").expect("publish");
    let fresh = wait_file(&log, |t| {
        t.contains("publish __defaultVhost__/live/rotated")
    });
    drop(publisher);
    let old = std::fs::read_to_string(&rotated).expect("the rotated log");
    assert!(old.contains("serving RTMP"), "{old}");
    assert!(
        !old.contains("/live/rotated"),
        "written after the reopen:\n{old}"
    );
    assert!(
        !fresh.contains("serving RTMP"),
        "the new file starts at the reopen:\n{fresh}"
    );
}
