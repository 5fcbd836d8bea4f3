//! `ringcast -e`: the configuration from environment variables alone, as SRS's Docker and
//! Kubernetes deployments give it (`SRS_LISTEN`, `SRS_HTTP_API_ENABLED`, ...), with no config
//! file anywhere.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_port, Client, Reaper};

/// `GET path` on `port`, the whole response as text.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn environment_alone_brings_up_rtmp_and_the_http_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, api_port) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.arg("-e")
        .env_clear()
        .env("SRS_LISTEN", format!("127.0.0.1:{port}"))
        .env("SRS_HTTP_API_ENABLED", "on")
        .env("SRS_HTTP_API_LISTEN", format!("127.0.0.1:{api_port}"))
        .env("SRS_PID", dir.path().join("ringcast.pid"))
        .env("RINGCAST_WORKERS", "1")
        // No file at all: a -c default would not be read even if one were here.
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // test.sh picks the I/O driver for the whole suite.
    if let Ok(io) = std::env::var("RINGCAST_IO") {
        cmd.env("RINGCAST_IO", io);
    }
    let server = Reaper(cmd.spawn().expect("starting ringcast"));
    wait_port(port, Duration::from_secs(10));
    wait_port(api_port, Duration::from_secs(10));
    let response = get(api_port, "/api/v1/versions");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"code\":0"), "{response}");
    let publisher = Client::publish(port, "env").expect("publishing over RTMP");
    drop(publisher);
    let pid = std::fs::read_to_string(dir.path().join("ringcast.pid")).expect("SRS_PID's file");
    assert_eq!(pid.trim(), server.0.id().to_string());
}

#[test]
fn check_mode_reads_the_environment_and_names_a_bad_variable() {
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        cmd.args(["-e", "-t"]).env_clear();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("running ringcast -e -t")
    };
    let ok = run(&[
        ("SRS_LISTEN", "1935"),
        ("SRS_VHOST_HTTP_REMUX_ENABLED", "on"),
    ]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("configuration from the environment"),
        "{ok:?}"
    );
    let bad = run(&[("SRS_HTTP_API_ENABLED", "yes")]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("SRS_HTTP_API_ENABLED: enabled: `yes` is not `on` or `off`"),
        "{bad:?}"
    );
}
