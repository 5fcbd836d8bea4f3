//! Real browsers in end-to-end tests: Debian's Chromium, headless, on a page this test
//! serves from a little HTTP server of its own, which also records what the page reports
//! (`GET /report?key=value&...`), so no browser automation protocol is needed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{poll_until, Reaper};

/// What the pages reported, oldest first, per `role`.
pub type Reports = Arc<Mutex<HashMap<String, Vec<HashMap<String, String>>>>>;

/// Serves what `page` answers for a path (its content type and body; 404 for `None`) and
/// records `/report?...` in `reports`. Returns the port.
pub fn page_server(
    page: impl Fn(&str) -> Option<(&'static str, Vec<u8>)> + Send + 'static,
    reports: Reports,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the page server");
    let port = listener.local_addr().expect("page server address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Skip the headers; the pages send no bodies.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let (status, kind, body) = if path == "/report" {
                let kv: HashMap<String, String> = query
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_owned(), decode(v)))
                    .collect();
                let role = kv.get("role").cloned().unwrap_or_default();
                reports
                    .lock()
                    .expect("reports lock")
                    .entry(role)
                    .or_default()
                    .push(kv);
                ("200 OK", "text/plain", Vec::new())
            } else {
                match page(path) {
                    Some((kind, body)) => ("200 OK", kind, body),
                    None => ("404 Not Found", "text/plain", Vec::new()),
                }
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    port
}

/// A query string value, percent- and plus-decoded.
pub fn decode(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(x) = u8::from_str_radix(hex, 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headless Chromium on `url` with a fake camera and microphone and a fresh profile.
pub fn chromium(url: &str, profile: &std::path::Path) -> Reaper {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
            // A headless page is not "visible": keep its timers and media running.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--remote-debugging-port=0",
            // An HTTPS case's certificate is the test's own.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    Reaper(child)
}

/// `role`'s latest report that has `key`.
pub fn last(reports: &Reports, role: &str, key: &str) -> Option<HashMap<String, String>> {
    let r = reports.lock().expect("reports lock");
    r.get(role)
        .and_then(|v| v.iter().rev().find(|kv| kv.contains_key(key)).cloned())
}

/// The first `error` any page reported.
pub fn error(reports: &Reports) -> Option<String> {
    let r = reports.lock().expect("reports lock");
    r.values().flatten().find_map(|kv| kv.get("error").cloned())
}

/// A report's number at `key`, 0 when missing.
pub fn number(kv: &HashMap<String, String>, key: &str) -> f64 {
    kv.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Waits until `done` holds for `role`'s latest report that has `key`; panics with
/// `context()` (the server's log) if a page reports an error or time runs out.
pub fn wait_for(
    reports: &Reports,
    context: &dyn Fn() -> String,
    (role, key): (&str, &str),
    within: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let mut reached = None;
    let progressed = poll_until(within, || {
        if let Some(e) = error(reports) {
            panic!("a page failed: {e}\n{}", context());
        }
        reached = last(reports, role, key).filter(|kv| done(kv));
        reached.is_some()
    });
    assert!(
        progressed,
        "{role}: no progress, last report {:?}\nreports: {:?}\n{}",
        last(reports, role, key),
        reports
            .lock()
            .expect("reports lock")
            .get(role)
            .map(|v| v.len()),
        context()
    );
    reached.expect("the report that was waited for")
}
