//! Shared helpers of the end-to-end tests: a ringcast server on a free loopback port with its
//! own config and log, external tools (ffmpeg, rtmpdump, nginx) that must exist when CI=true,
//! a small blocking RTMP client built on ringcast's own sans-IO client session, and the waits
//! the tests synchronize with: a condition polled until a deadline ([`wait_until`]), never a
//! fixed sleep, so a test goes on as soon as the server is there and says what it missed.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringcast::flv::{FlvReader, Tag};
use ringcast::rtmp::chunk::RawMessage;
use ringcast::rtmp::client::{ClientEvent, ClientSession};

pub mod browser;
pub mod hooks;

/// True when `tool` can run. Under CI a missing tool fails the test; elsewhere it skips.
pub fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    present_or_skip(found, tool, "run .ci/run to install it")
}

/// True when python3 can import `module`. Under CI a missing module fails the test; elsewhere
/// it skips.
pub fn require_python(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    present_or_skip(found, &format!("python3 module {module}"), "run .ci/run")
}

/// `found`, after failing the test under CI when it is false, or saying it skips elsewhere.
fn present_or_skip(found: bool, what: &str, fix: &str) -> bool {
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} is required by this test (CI=true): {fix}");
        }
        eprintln!("SKIPPED: {what} is not installed");
    }
    found
}

/// Checks what `ffmpeg -i URL -t 10 -f null -` printed: it succeeded, decoded H.264 and AAC
/// with no error, and at least `min_frames` video frames (10 s at 25 fps, less margin).
pub fn assert_ffmpeg_decoded(out: &std::process::Output, min_frames: u32) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg player failed:\n{stderr}");
    assert!(
        stderr.contains("Video: h264"),
        "no H.264 decoded:\n{stderr}"
    );
    assert!(stderr.contains("Audio: aac"), "no AAC decoded:\n{stderr}");
    for bad in ["error", "Error", "corrupt", "non-existing PPS"] {
        assert!(!stderr.contains(bad), "ffmpeg reported {bad:?}:\n{stderr}");
    }
    let frames = stderr
        .rsplit("frame=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        frames >= min_frames,
        "only {frames} frames decoded:\n{stderr}"
    );
}

/// The test media: 60 s of H.264 + AAC, 2 s GOP.
pub fn media() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media/source.flv");
    assert!(p.exists(), "{} is missing", p.display());
    p
}

/// The tags of the test media.
pub fn media_tags() -> Vec<Tag> {
    let data = std::fs::read(media()).expect("reading source.flv");
    let mut r = FlvReader::new();
    r.push(&data);
    let mut tags = Vec::new();
    while let Some(t) = r.next_tag().expect("source.flv parses") {
        tags.push(t);
    }
    tags
}

/// A port free on loopback for TCP and UDP, from below the kernel's ephemeral range: a port
/// that `bind(0)` hands out is itself ephemeral, and any test's outgoing connection may take
/// it as its source port between this check and the server's bind. Each test process walks
/// the band from its own start, so the binaries that run one after another do not retry the
/// same ports, and a port is handed out once per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const BAND: u32 = 12_000;
    if low < BAND + 1024 {
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding an ephemeral port")
            .port();
    }
    let start = std::process::id() * 7919 % BAND;
    for _ in 0..BAND {
        let port = (low - BAND + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % BAND) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {}..{low}", low - BAND)
}

/// A connection to `127.0.0.1:port` from the loopback address `local` (any of 127.0.0.0/8
/// on Linux), so that a test can be a client other than 127.0.0.1.
pub fn connect_from(local: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    Ok(socket.into())
}

/// Checks `reached` until it holds or `within` has passed; true when it held. Checks come
/// quickly at first (a millisecond apart), then every 50 ms, and once more at the deadline, so
/// a state reached just in time counts.
pub fn poll_until(within: Duration, reached: impl FnMut() -> bool) -> bool {
    poll_until_every(within, Duration::from_millis(50), reached)
}

/// As [`poll_until`], with checks at most `every` apart: for a check that costs the server
/// (a long log, a listing of thousands of clients) while it is under load.
pub fn poll_until_every(
    within: Duration,
    every: Duration,
    mut reached: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(1);
    loop {
        if reached() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(every);
    }
}

/// Waits until `reached` holds; fails the test, naming `what`, when it does not within
/// `within`.
pub fn wait_until(within: Duration, what: &str, reached: impl FnMut() -> bool) {
    assert!(
        poll_until(within, reached),
        "{what}: not reached within {within:?}"
    );
}

/// Waits until `port` accepts connections.
pub fn wait_port(port: u16, within: Duration) {
    wait_until(within, &format!("something listens on {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// True when the process `pid` has a handler for `signal` installed (Linux /proc's SigCgt).
pub fn catches_signal(pid: u32, signal: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let mask = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?.trim();
            u64::from_str_radix(mask, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// One keep-alive HTTP/1.1 connection to a server's API: every request on it is answered
/// on it, so the server counts this one connection however many requests it asks.
pub struct ApiConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ApiConn {
    /// Connects to the API on `port`.
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the API");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// GETs `path`: the status and the body.
    pub fn get_raw(&mut self, path: &str) -> (u16, Vec<u8>) {
        let (status, _, body) = self.request("GET", path, &[]);
        (status, body)
    }

    /// Sends `METHOD path` with `headers` (each `Name: value`): the status, the response's
    /// head and its body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
    ) -> (u16, String, Vec<u8>) {
        let mut extra = String::new();
        for h in headers {
            extra.push_str(h);
            extra.push_str("\r\n");
        }
        write!(
            self.stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
        )
        .expect("sending the request");
        let mut chunk = [0u8; 16 * 1024];
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk).expect("reading the answer");
            assert!(n > 0, "the API closed the connection on {method} {path}");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        while self.buf.len() < head_len + len {
            let n = self.stream.read(&mut chunk).expect("reading the body");
            assert!(
                n > 0,
                "the API closed the connection in the body of {method} {path}"
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_len..head_len + len].to_vec();
        self.buf.drain(..head_len + len);
        (status, head, body)
    }

    /// GETs `path` and asserts a 200 with JSON: the JSON.
    pub fn get(&mut self, path: &str) -> serde_json::Value {
        let (status, body) = self.get_raw(path);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }
}

/// The ports a [`Server`] listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// RTMP.
    pub rtmp: u16,
    /// The HTTP API.
    pub api: u16,
    /// HTTP-FLV.
    pub http: u16,
}

impl Ports {
    /// Three free ports.
    pub fn free() -> Self {
        Self {
            rtmp: free_port(),
            api: free_port(),
            http: free_port(),
        }
    }
}

/// A ringcast server run for one test.
pub struct Server {
    child: Child,
    /// Its RTMP port.
    pub port: u16,
    /// Its HTTP API port (`http_api`).
    pub api_port: u16,
    /// Its HTTP-FLV port (`http_server`).
    pub http_port: u16,
    /// Its HTTPS API port (`http_api { https {} }`), 0 unless started with
    /// [`Server::start_https`].
    pub https_api_port: u16,
    /// Its HTTPS HTTP-FLV port (`http_server { https {} }`), 0 likewise.
    pub https_port: u16,
    dir: tempfile::TempDir,
}

/// A test CA and a server certificate it signed for `127.0.0.1` and `localhost`, as PEM
/// files in a directory: what clients trust (`ca`) and what the server loads.
pub struct TestCerts {
    /// The CA's certificate, for `curl --cacert` and `ffmpeg -ca_file`.
    pub ca: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
}

/// Makes [`TestCerts`] in `dir` with rcgen.
pub fn test_certs(dir: &Path) -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringcast test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let params = CertificateParams::new(names).expect("server params");
    let key = KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .expect("server certificate");
    let certs = TestCerts {
        ca: dir.join("ca.crt"),
        key: dir.join("server.key"),
        cert: dir.join("server.crt"),
    };
    std::fs::write(&certs.ca, ca.pem()).expect("writing ca.crt");
    std::fs::write(&certs.key, key.serialize_pem()).expect("writing server.key");
    std::fs::write(&certs.cert, cert.pem()).expect("writing server.crt");
    certs
}

impl Server {
    /// Starts ringcast with `workers` workers, extra global directives, and the body of the
    /// default vhost; the HTTP API and HTTP-FLV listen on free ports of their own.
    pub fn start(workers: usize, global: &str, vhost: &str) -> Self {
        Self::start_with(workers, global, vhost, &[])
    }

    /// As [`Server::start`], with extra command-line arguments.
    pub fn start_with(workers: usize, global: &str, vhost: &str, args: &[&str]) -> Self {
        Self::start_at(Ports::free(), workers, global, vhost, args)
    }

    /// As [`Server::start_with`], its RTMP listener on `port`: a server whose config names
    /// its own port, or one that comes back where another died.
    pub fn start_on(port: u16, workers: usize, global: &str, vhost: &str, args: &[&str]) -> Self {
        let ports = Ports {
            rtmp: port,
            ..Ports::free()
        };
        Self::start_at(ports, workers, global, vhost, args)
    }

    /// As [`Server::start_with`], on `ports` chosen beforehand: servers whose configs name
    /// each other (an origin cluster's coworkers).
    pub fn start_at(
        ports: Ports,
        workers: usize,
        global: &str,
        vhost: &str,
        args: &[&str],
    ) -> Self {
        Self::launch(
            ports,
            workers,
            global,
            vhost,
            args,
            false,
            ("127.0.0.1", ""),
        )
    }

    /// As [`Server::start`], with HTTPS too: the API and HTTP-FLV each also on an HTTPS port
    /// of its own, with a certificate from [`test_certs`] (its CA at [`Server::ca`]).
    pub fn start_https(workers: usize, global: &str, vhost: &str) -> Self {
        Self::launch(
            Ports::free(),
            workers,
            global,
            vhost,
            &[],
            true,
            ("127.0.0.1", ""),
        )
    }

    /// The CA that signed an HTTPS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// As [`Server::start`], the HTTP API listening on `api_ip` with `api_extra` in its
    /// `http_api {}` block (such as `auth { ... }`).
    pub fn start_api(
        workers: usize,
        api_ip: &str,
        api_extra: &str,
        global: &str,
        vhost: &str,
    ) -> Self {
        let api = (api_ip, api_extra);
        Self::launch(Ports::free(), workers, global, vhost, &[], false, api)
    }

    fn launch(
        ports: Ports,
        workers: usize,
        global: &str,
        vhost: &str,
        args: &[&str],
        https: bool,
        (api_ip, api_extra): (&str, &str),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let Ports {
            rtmp: port,
            api: api_port,
            http: http_port,
        } = ports;
        let (mut https_api_port, mut https_port) = (0, 0);
        let (mut api_https, mut server_https) = (String::new(), String::new());
        if https {
            let certs = test_certs(dir.path());
            (https_api_port, https_port) = (free_port(), free_port());
            let block = |port: u16| {
                format!(
                    " https {{ enabled on; listen 127.0.0.1:{port}; key {}; cert {}; }}",
                    certs.key.display(),
                    certs.cert.display()
                )
            };
            (api_https, server_https) = (block(https_api_port), block(https_port));
        }
        let conf = dir.path().join("test.conf");
        std::fs::write(
            &conf,
            format!(
                "listen 127.0.0.1:{port};\nworkers {workers};\ndaemon off;\npid {pid};\n\
                 srs_log_tank console;\nsrs_log_level info;\n\
                 http_api {{ enabled on; listen {api_ip}:{api_port};{api_https} {api_extra} }}
                 http_server {{ enabled on; listen 127.0.0.1:{http_port};{server_https} }}
                 {global}
                 vhost __defaultVhost__ {{\n{vhost}\n}}\n",
                pid = dir.path().join("ringcast.pid").display(),
            ),
        )
        .expect("writing the config");
        let log = std::fs::File::create(dir.path().join("ringcast.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("-c")
            .arg(&conf)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting ringcast");
        let server = Self {
            child,
            port,
            api_port,
            http_port,
            https_api_port,
            https_port,
            dir,
        };
        wait_port(port, Duration::from_secs(10));
        wait_port(api_port, Duration::from_secs(10));
        if https {
            wait_port(https_api_port, Duration::from_secs(10));
            wait_port(https_port, Duration::from_secs(10));
        }
        server
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`.
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }

    /// `http://127.0.0.1:HTTP_PORT/live/NAME.flv`.
    pub fn flv_url(&self, stream: &str) -> String {
        format!("http://127.0.0.1:{}/live/{stream}.flv", self.http_port)
    }

    /// `http://127.0.0.1:API_PORT` followed by `path`.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ringcast.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; false when it does not within `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        poll_until(within, || self.log().contains(needle))
    }

    /// GETs `path` from the HTTP API on a connection of its own; asserts a 200 with JSON.
    pub fn api_json(&self, path: &str) -> serde_json::Value {
        ApiConn::connect(self.api_port).get(path)
    }

    /// The API's view of stream `name` (`/api/v1/streams`), if it lists it.
    pub fn stream(&self, name: &str) -> Option<serde_json::Value> {
        let all = self.api_json("/api/v1/streams?count=1000");
        all["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    }

    /// Waits until the API has taken in (counted as its `frames`) the first `frames` messages
    /// published to stream `name`: what was sent before is in the server's hub, cached and
    /// fanned out, when this returns.
    pub fn wait_frames_in(&self, name: &str, frames: usize, within: Duration) {
        let mut seen = None;
        let reached = poll_until(within, || {
            seen = self.stream(name).and_then(|s| s["frames"].as_u64());
            seen.is_some_and(|n| n >= frames as u64)
        });
        assert!(
            reached,
            "stream {name}: {seen:?} of {frames} frames taken in within {within:?}"
        );
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit; None if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        poll_until(within, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|s| s.is_none())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- ringcast log ----\n{}", self.log());
        }
    }
}

/// Runs ringcast on `conf` when it is expected to refuse to start: its exit status and what
/// it printed on stderr, or `None` when it still runs after `within` (it is killed then).
pub fn run_refused(conf: &Path, within: Duration) -> Option<(std::process::ExitStatus, String)> {
    let child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ringcast");
    let mut child = Reaper(child);
    let mut status = None;
    poll_until(within, || {
        status = child.0.try_wait().expect("waiting");
        status.is_some()
    });
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    Some((status?, stderr))
}

/// Kills a child process when dropped.
pub struct Reaper(pub Child);

/// The path of libnginx-mod-rtmp's module; `None` (the test skips) when it is not installed,
/// outside CI.
pub fn nginx_rtmp_module() -> Option<&'static str> {
    if !require("nginx") {
        return None;
    }
    let module = [
        "/usr/lib/nginx/modules/ngx_rtmp_module.so",
        "/usr/share/nginx/modules/ngx_rtmp_module.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    if module.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "libnginx-mod-rtmp is required (CI=true)"
        );
        eprintln!("SKIPPED: libnginx-mod-rtmp is not installed");
    }
    module
}

/// nginx-rtmp with `application live { live on; }` on 127.0.0.1:`port`, its prefix (config,
/// pid, logs) under `dir`; killed when dropped. `None` when it is not installed (see
/// [`nginx_rtmp_module`]).
pub fn nginx_rtmp(dir: &Path, port: u16) -> Option<Reaper> {
    let module = nginx_rtmp_module()?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
    std::fs::write(
        prefix.join("nginx.conf"),
        format!(
            "load_module {module};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
            p = prefix.display()
        ),
    )
    .expect("nginx.conf");
    let nginx = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    let nginx = Reaper(nginx);
    wait_port(port, Duration::from_secs(10));
    Some(nginx)
}

/// TCP connections established to local port `port` now (the accepted side, IPv4 and IPv6),
/// from /proc/net/tcp: how many clients a server that has no API of its own holds.
pub fn established_to(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    // local_address, rem_address, st: 01 is ESTABLISHED.
                    cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "01"
                })
                .count()
        })
        .sum()
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ffmpeg -i URL -t SECONDS -f null -`: plays `url` for `seconds` of stream, decoding it;
/// what it printed goes to [`assert_ffmpeg_decoded`].
pub fn ffmpeg_play(url: &str, seconds: u32) -> std::process::Output {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i", url, "-t"])
        .arg(seconds.to_string())
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg")
}

/// Plays `stream` of `server` in ffmpeg over RTMP and HTTP-FLV side by side for `seconds`,
/// and asserts that each decoded at least `min_frames` frames cleanly
/// ([`assert_ffmpeg_decoded`]).
pub fn assert_plays_over_rtmp_and_flv(
    server: &Server,
    stream: &str,
    seconds: u32,
    min_frames: u32,
) {
    let flv = server.flv_url(stream);
    let flv_player = std::thread::spawn(move || ffmpeg_play(&flv, seconds));
    assert_ffmpeg_decoded(&ffmpeg_play(&server.url(stream), seconds), min_frames);
    assert_ffmpeg_decoded(&flv_player.join().expect("the HTTP-FLV player"), min_frames);
}

/// Codec arguments for [`ffmpeg_publish_with`]: a realtime re-encode with a keyframe every
/// second (25 frames). The source's 2 s GOP would let LL-HLS parts of 200 ms start on a
/// keyframe only every tenth part, and `hls_fragment 1` segments be two seconds long.
pub const SHORT_GOP: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-g",
    "25",
    "-keyint_min",
    "25",
    "-sc_threshold",
    "0",
    "-c:a",
    "copy",
];

/// `ffmpeg -re -i source.flv -c copy -f flv URL`, looping the file.
pub fn ffmpeg_publish(url: &str) -> Reaper {
    ffmpeg_publish_with(&["-c", "copy"], url)
}

/// `ffmpeg -re -i source.flv CODEC_ARGS -f flv URL`, looping the file.
pub fn ffmpeg_publish_with(codec_args: &[&str], url: &str) -> Reaper {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(media())
        .args(codec_args)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ffmpeg");
    Reaper(child)
}

/// A blocking RTMP client on ringcast's sans-IO client session.
pub struct Client {
    stream: TcpStream,
    session: ClientSession,
    /// Events not yet taken.
    pub events: Vec<ClientEvent>,
}

impl Client {
    fn connect(local: IpAddr, port: u16, session: ClientSession) -> std::io::Result<Self> {
        let stream = connect_from(local, port)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            session,
            events: Vec::new(),
        })
    }

    /// Connects and publishes `live/NAME`; Err with the server's code when refused.
    pub fn publish(port: u16, name: &str) -> Result<Self, String> {
        Self::publish_from(Ipv4Addr::LOCALHOST.into(), port, name)
    }

    /// As [`Client::publish`], connecting from the loopback address `local`.
    pub fn publish_from(local: IpAddr, port: u16, name: &str) -> Result<Self, String> {
        let url = format!("rtmp://127.0.0.1:{port}/live");
        let mut c = Self::connect(
            local,
            port,
            ClientSession::publish(&url, name, 4096, &mut rand::thread_rng()),
        )
        .map_err(|e| e.to_string())?;
        c.until(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Publishing | ClientEvent::Refused(_))
        })?;
        match c.events.pop() {
            Some(ClientEvent::Publishing) => Ok(c),
            Some(ClientEvent::Refused(code)) => Err(code),
            other => Err(format!("{other:?}")),
        }
    }

    /// Connects and plays `live/NAME`.
    pub fn play(port: u16, name: &str) -> Result<Self, String> {
        Self::play_from(Ipv4Addr::LOCALHOST.into(), port, name)
    }

    /// As [`Client::play`], connecting from the loopback address `local`.
    pub fn play_from(local: IpAddr, port: u16, name: &str) -> Result<Self, String> {
        let url = format!("rtmp://127.0.0.1:{port}/live");
        let mut c = Self::connect(
            local,
            port,
            ClientSession::play(&url, name, &mut rand::thread_rng()),
        )
        .map_err(|e| e.to_string())?;
        c.until(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Playing | ClientEvent::Refused(_))
        })?;
        match c.events.last() {
            Some(ClientEvent::Playing) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while let Some(b) = self.session.poll_transmit() {
            self.stream.write_all(&b)?;
        }
        Ok(())
    }

    /// Reads until an event matches, or fails after `within`.
    pub fn until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.flush().map_err(|e| e.to_string())?;
            while let Some(e) = self.session.poll_event() {
                let hit = done(&e);
                self.events.push(e);
                if hit {
                    return Ok(());
                }
            }
            let left = within
                .checked_sub(start.elapsed())
                .ok_or_else(|| "timed out".to_owned())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self
                    .session
                    .handle_input(&buf[..n])
                    .map_err(|e| e.to_string())?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err("timed out".into())
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err("timed out".into())
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Media messages received within `within` (stops early when `enough` says so).
    pub fn media_for(
        &mut self,
        within: Duration,
        mut enough: impl FnMut(&[RawMessage]) -> bool,
    ) -> Result<Vec<RawMessage>, String> {
        let mut media = Vec::new();
        let r = self.until(within, |e| {
            if let ClientEvent::Media(m) = e {
                media.push(m.clone());
            }
            enough(&media)
        });
        self.events.retain(|e| !matches!(e, ClientEvent::Media(_)));
        match r {
            Ok(()) => Ok(media),
            Err(e) if e == "timed out" => Ok(media),
            Err(e) => Err(e),
        }
    }

    /// Sends one FLV tag as a media message.
    pub fn send(&mut self, tag: &Tag, timestamp: u32) -> std::io::Result<()> {
        self.session.send_media(tag.type_id, timestamp, &tag.data);
        self.flush()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(data)
    }
}

/// True when `m` is an H.264 keyframe (not a sequence header).
pub fn is_keyframe(m: &RawMessage) -> bool {
    m.type_id == 9 && m.payload.len() > 1 && m.payload[0] >> 4 == 1 && m.payload[1] == 1
}

/// True when `m` is the AVC sequence header.
pub fn is_video_sh(m: &RawMessage) -> bool {
    m.type_id == 9 && m.payload.len() > 1 && m.payload[1] == 0
}

impl Client {
    /// Like [`Client::play`], on a socket whose receive buffer is `rcvbuf` bytes, set before
    /// connect so that the TCP window stays small: once this player stops reading, the
    /// server's writes to it stall within a few kilobytes instead of megabytes.
    pub fn play_small_window(port: u16, name: &str, rcvbuf: usize) -> Result<Self, String> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        socket
            .set_recv_buffer_size(rcvbuf)
            .map_err(|e| e.to_string())?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        socket.connect(&addr.into()).map_err(|e| e.to_string())?;
        let url = format!("rtmp://127.0.0.1:{port}/live");
        let mut c = Self {
            stream: socket.into(),
            session: ClientSession::play(&url, name, &mut rand::thread_rng()),
            events: Vec::new(),
        };
        c.until(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Playing | ClientEvent::Refused(_))
        })?;
        match c.events.last() {
            Some(ClientEvent::Playing) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    }

    /// Aborts the connection with a reset, as a killed process or a dead network does.
    pub fn kill(self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }
}

/// Resident memory of process `pid`, in KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Publishes `tags` at their own pace (timestamps against the wall clock) from a thread,
/// until `stop` is set or the tags run out; returns the publisher when done.
pub fn publish_realtime(
    mut publisher: Client,
    tags: Vec<Tag>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Client> {
    std::thread::spawn(move || {
        let start = Instant::now();
        for t in &tags {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            // Pacing, not synchronization: a live encoder sends each frame at its time, and
            // the tests that use this measure what players get from a real-time stream.
            let due = Duration::from_millis(u64::from(t.timestamp));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            if publisher.send(t, t.timestamp).is_err() {
                break;
            }
        }
        publisher
    })
}

/// Payload bytes of `media`.
pub fn payload_bytes(media: &[RawMessage]) -> usize {
    media.iter().map(|m| m.payload.len()).sum()
}

/// Prints each sample as `name{k=v,...}` → value, each family's type as `type:NAME`, and the
/// label names of each sample as `labels:NAME` → `k1,k2,...`.
const PARSE_METRICS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
        out["labels:" + s.name] = ",".join(sorted(s.labels))
        for k, v in s.labels.items():
            out["label:" + s.name + ":" + k] = v
    out["type:" + family.name] = family.type
print(json.dumps(out))
"#;

/// The `SUMMARY` line of what ringcast-bench printed; panics with all of it, and `context`
/// (a server's log), when there is none.
pub fn bench_summary(out: &std::process::Output, context: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no SUMMARY: {stdout}\n{context}"))
}

/// The value of `name=` in a ringcast-bench SUMMARY line; panics when it has none.
pub fn summary_field(summary: &str, name: &str) -> f64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {summary}"))
}

/// The codec names `ffprobe -show_entries stream=codec_name` lists for `path` (a program's
/// streams too, for MPEG-TS); fails when ffprobe does.
pub fn probe_codecs(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `curl -s [args] URL`: the status and the body.
pub fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// `text` in Prometheus's text format, parsed by Prometheus's own Python parser
/// (prometheus_client), as JSON: each sample `name{k=v,...}` -> value, `type:FAMILY` -> its
/// type, `labels:NAME` -> its label names and `label:NAME:KEY` -> a label's value. Fails,
/// naming `what`, when the parser refuses the text.
pub fn parse_metrics(text: &str, what: &str) -> serde_json::Value {
    use std::process::Stdio;
    let mut child = Command::new("python3")
        .args(["-c", PARSE_METRICS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing metrics");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client refused {what}:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// ffprobe's format duration, seconds.
pub fn ffprobe_duration(file: &std::path::Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("running ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: no duration in {text:?}", file.display()))
}
