//! A hook server of the tests' own for SRS's HTTP hooks: a std listener, a thread per
//! connection, keep-alive, recording every body, its answer chosen by the hook's path.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// What the hook server saw.
#[derive(Default)]
pub struct Seen {
    /// `(path, body)` of each request, in arrival order.
    pub requests: Mutex<Vec<(String, Value)>>,
    /// Requests answered.
    pub answered: AtomicUsize,
}

/// A hook server on a free port. Paths: `/allow` answers `0`, `/code0` `{"code":0}`, `/deny`
/// `{"code":1}`, `/secret` allows only `param` `?secret=k`, `/slow` answers after 5 s,
/// `/delay500` after 500 ms, `/garbage`, `/big` (10 MB) and `/redirect` what they say;
/// `/file` allows, recording in the body (`test_file_bytes`) the size of the body's `file`
/// as the call arrived (0 if it was not there); `/notify/...` answers `fetched`.
pub struct HookServer {
    pub port: u16,
    pub seen: Arc<Seen>,
}

impl HookServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("hook listener");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Self { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The bodies of `action` received so far.
    pub fn bodies(&self, action: &str) -> Vec<Value> {
        self.seen
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, b)| b["action"] == action)
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn count(&self, action: &str) -> usize {
        self.bodies(action).len()
    }

    /// The paths of the requests so far that start with `prefix` (GETs have no body).
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.seen
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// Serves one connection's requests until it closes.
fn serve(mut conn: TcpStream, seen: &Seen) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while got.len() < end + 4 + len {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let mut body: Value =
            serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap_or(Value::Null);
        got.drain(..end + 4 + len);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        if path == "/file" {
            // What a hook that copies the file finds as the call arrives.
            let file = body["file"].as_str().unwrap_or("");
            let found = std::fs::metadata(file).map_or(0, |m| m.len());
            body["test_file_bytes"] = found.into();
        }
        seen.requests
            .lock()
            .expect("lock")
            .push((path.clone(), body.clone()));
        let answer = answer(&path, &body);
        seen.answered.fetch_add(1, Ordering::SeqCst);
        if conn.write_all(&answer).is_err() {
            return;
        }
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn answer(path: &str, body: &Value) -> Vec<u8> {
    match path {
        "/allow" | "/file" => ok("0"),
        p if p.starts_with("/notify/") => ok("fetched"),
        "/code0" => ok("{\"code\": 0, \"data\": null}"),
        "/deny" => ok("{\"code\": 1, \"msg\": \"no\"}"),
        "/secret" if body["param"] == "?secret=k" => ok("0"),
        "/secret" => ok("{\"code\": 403}"),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(5));
            ok("0")
        }
        "/delay500" => {
            std::thread::sleep(Duration::from_millis(500));
            ok("0")
        }
        "/garbage" => b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02\r\n\r\n".to_vec(),
        "/big" => {
            let mut a =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 10 << 20).into_bytes();
            a.extend(std::iter::repeat_n(b'0', 10 << 20));
            a
        }
        "/redirect" => {
            b"HTTP/1.1 302 Found\r\nLocation: /allow\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// `http_hooks { enabled on; ... }` with `directives`.
pub fn hooks(directives: &str) -> String {
    format!("http_hooks {{ enabled on; {directives} }}")
}

/// Asserts that end-of-session hook `end` names the client that `start` (its on_publish or
/// on_play) asked about, as SRS sends them: a hook server pairs them by these fields.
pub fn assert_same_client(start: &Value, end: &Value) {
    for field in [
        "client_id",
        "ip",
        "vhost",
        "app",
        "stream",
        "param",
        "tcUrl",
    ] {
        assert_eq!(start[field], end[field], "{field}: {start} {end}");
    }
}
