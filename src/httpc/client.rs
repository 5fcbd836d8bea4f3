//! The async HTTP/1.1 client on the calling worker's own compio runtime: one request, one
//! answer, within a deadline that covers connecting, sending and the whole answer. Kept-alive
//! connections wait in a pool of this worker thread per `host:port` (a thread-local: compio
//! sockets belong to the thread whose runtime opened them), at most [`MAX_IDLE_PER_HOST`]
//! each. An idle connection the server has closed is dropped when taken; one that turns out
//! stale anyway (closed before a byte of the answer) costs one retry on a fresh connection.
//! Redirects are not followed: a 3xx is an answer like any other.
//!
//! It awaits sockets only; the bytes of the answer go to [`ResponseParser`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

use super::response::{Limits, Response, ResponseError, ResponseParser};
use super::url::Url;

/// Most idle connections kept per `host:port` on one worker.
pub const MAX_IDLE_PER_HOST: usize = 16;
/// Most `host:port` entries a worker's pool keeps; a further host's connections are closed
/// after use instead of pooled.
const MAX_HOSTS: usize = 64;
/// Bytes asked of one read of the answer.
const READ_SIZE: usize = 8 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpcError {
    /// Connecting, sending and the answer together took longer than this.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server could not be reached.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// What the connect said.
        source: io::Error,
    },
    /// Sending or reading failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection without answering.
    #[error("connection closed before an answer")]
    Closed,
    /// The answer is not a well-formed response within the limits.
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// A request method this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`, without a body.
    Get,
    /// `POST`, with a body.
    Post,
}

thread_local! {
    /// This worker's idle kept-alive connections, per `host:port`.
    static IDLE: RefCell<HashMap<String, Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

/// POSTs `body` as `application/json` to `url`; the answer, whatever its status.
pub async fn post_json(url: &Url, body: &[u8], timeout: Duration) -> Result<Response, HttpcError> {
    request(Method::Post, url, body, timeout, Limits::default()).await
}

/// GETs `url`; the answer, whatever its status.
pub async fn get(url: &Url, timeout: Duration) -> Result<Response, HttpcError> {
    request(Method::Get, url, &[], timeout, Limits::default()).await
}

/// Sends one request and reads its answer within `timeout` and `limits`.
pub async fn request(
    method: Method,
    url: &Url,
    body: &[u8],
    timeout: Duration,
    limits: Limits,
) -> Result<Response, HttpcError> {
    let head = encode(method, url, body);
    compio::time::timeout(timeout, exchange(url, head, limits))
        .await
        .map_err(|_| HttpcError::Timeout(timeout))?
}

/// The request's bytes, head and body in one buffer (one write).
fn encode(method: Method, url: &Url, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    let name = match method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    out.extend_from_slice(
        format!(
            "{name} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast/{}\r\nAccept: */*\r\n\
             Connection: keep-alive\r\n",
            url.target,
            url.authority(),
            env!("CARGO_PKG_VERSION"),
        )
        .as_bytes(),
    );
    if method == Method::Post {
        out.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The request on a pooled connection if one is alive (again on a fresh one when that one
/// proves stale), else on a fresh one.
async fn exchange(url: &Url, request: Bytes, limits: Limits) -> Result<Response, HttpcError> {
    let addr = url.authority();
    if let Some(stream) = take_idle(&addr) {
        match send(&stream, request.clone(), limits).await {
            Ok(r) => return Ok(finish(addr, stream, r)),
            Err(Failure::Stale(e)) => {
                tracing::debug!("httpc: kept-alive connection to {addr} was stale: {e}");
            }
            Err(Failure::Answer(e)) => return Err(e),
        }
    }
    let stream = TcpStream::connect(addr.as_str())
        .await
        .map_err(|source| HttpcError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    match send(&stream, request, limits).await {
        Ok(r) => Ok(finish(addr, stream, r)),
        Err(Failure::Stale(e) | Failure::Answer(e)) => Err(e),
    }
}

/// Pools `stream` when the answer lets it carry another request.
fn finish(addr: String, stream: TcpStream, r: Response) -> Response {
    if r.keep_alive {
        IDLE.with_borrow_mut(|idle| {
            if idle.len() >= MAX_HOSTS && !idle.contains_key(&addr) {
                return;
            }
            let list = idle.entry(addr).or_default();
            if list.len() < MAX_IDLE_PER_HOST {
                list.push(stream);
            }
        });
    }
    r
}

/// An idle connection to `addr` that the server has not closed.
fn take_idle(addr: &str) -> Option<TcpStream> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.get_mut(addr)?;
        while let Some(stream) = list.pop() {
            if still_open(&stream) {
                return Some(stream);
            }
        }
        None
    })
}

/// Whether an idle connection is still usable: nothing to read (the server neither closed
/// it nor sent what no request asked for). A peek that never waits.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
}

/// How one attempt failed.
enum Failure {
    /// Before a byte of the answer: on a kept-alive connection, worth one retry.
    Stale(HttpcError),
    /// The answer itself, or after part of it.
    Answer(HttpcError),
}

/// Writes the request and reads the answer on `stream`.
async fn send(stream: &TcpStream, request: Bytes, limits: Limits) -> Result<Response, Failure> {
    let mut stream_ref = stream;
    if let Err(e) = stream_ref.write_all(request).await.0 {
        return Err(Failure::Stale(e.into()));
    }
    let mut parser = ResponseParser::new(limits);
    let mut buf = Vec::with_capacity(READ_SIZE);
    loop {
        buf.clear();
        let BufResult(read, back) = (&*stream).read(buf).await;
        buf = back;
        let fail = |e: HttpcError, p: &ResponseParser| {
            if p.started() {
                Failure::Answer(e)
            } else {
                Failure::Stale(e)
            }
        };
        match read {
            Err(e) => return Err(fail(e.into(), &parser)),
            Ok(0) if !parser.started() => return Err(Failure::Stale(HttpcError::Closed)),
            Ok(0) => return parser.handle_eof().map_err(|e| Failure::Answer(e.into())),
            Ok(_) => {
                if let Some(r) = parser
                    .handle_input(&buf)
                    .map_err(|e| Failure::Answer(e.into()))?
                {
                    return Ok(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A server on a thread that answers each request on a connection with `answer(n)` (n
    /// counting requests across connections) and counts the connections it accepted. An
    /// `answer` of `None` closes the connection instead.
    fn server(
        answer: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> (Url, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        let url = Url::parse(&format!(
            "http://{}/hook?x=1",
            l.local_addr().expect("addr")
        ))
        .expect("url");
        let conns = Arc::new(AtomicUsize::new(0));
        let (c, answer) = (conns.clone(), Arc::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (answer, requests) = (answer.clone(), requests.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if got.len() < end + 4 + len {
                            continue;
                        }
                        got.drain(..end + 4 + len);
                        match answer(requests.fetch_add(1, Ordering::SeqCst)) {
                            Some(a) => {
                                if s.write_all(&a).is_err() {
                                    return;
                                }
                            }
                            None => return,
                        }
                    }
                });
            }
        });
        (url, conns)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(f)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0";

    #[test]
    fn keeps_the_connection_alive() {
        let (url, conns) = server(|_| Some(OK.to_vec()));
        block_on(async {
            for _ in 0..3 {
                let r = post_json(&url, b"{}", Duration::from_secs(5))
                    .await
                    .expect("answer");
                assert_eq!((r.status, &r.body[..]), (200, &b"0"[..]));
            }
            let r = get(&url, Duration::from_secs(5)).await.expect("answer");
            assert_eq!(r.status, 200);
        });
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_closed_idle_connection_is_replaced() {
        // The server closes after each answer without saying so.
        let (url, conns) = server(|n| (n % 2 == 0).then(|| OK.to_vec()));
        block_on(async {
            for _ in 0..2 {
                let r = post_json(&url, b"{}", Duration::from_secs(5))
                    .await
                    .expect("answer");
                assert_eq!(r.status, 200);
            }
        });
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn connection_close_is_not_pooled() {
        let (url, conns) = server(|_| {
            Some(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec())
        });
        block_on(async {
            for _ in 0..2 {
                let r = get(&url, Duration::from_secs(5)).await.expect("answer");
                assert_eq!((r.status, r.header("location")), (302, Some("/x")));
            }
        });
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn times_out_and_refuses() {
        let (url, _) = server(|_| {
            std::thread::sleep(Duration::from_millis(500));
            Some(OK.to_vec())
        });
        block_on(async {
            let r = post_json(&url, b"{}", Duration::from_millis(100)).await;
            assert!(matches!(r, Err(HttpcError::Timeout(_))), "{r:?}");
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("listen")
                .local_addr()
                .expect("addr")
                .port();
            let down = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
            let r = post_json(&down, b"{}", Duration::from_secs(5)).await;
            assert!(matches!(r, Err(HttpcError::Connect { .. })), "{r:?}");
        });
    }

    #[test]
    fn oversize_and_garbage_answers_fail() {
        let (url, _) = server(|n| {
            Some(if n == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n".to_vec()
            } else {
                b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()
            })
        });
        block_on(async {
            let r = post_json(&url, b"{}", Duration::from_secs(5)).await;
            assert!(matches!(
                r,
                Err(HttpcError::Response(ResponseError::BodyTooLarge(_)))
            ));
            let r = post_json(&url, b"{}", Duration::from_secs(5)).await;
            assert!(
                matches!(r, Err(HttpcError::Response(ResponseError::Head(_)))),
                "{r:?}"
            );
        });
    }

    #[test]
    fn encodes_the_request() {
        let url = Url::parse("http://h:81/a?b=1").expect("url");
        let r = encode(Method::Post, &url, b"{}");
        let text = std::str::from_utf8(&r).expect("ascii");
        assert!(
            text.starts_with("POST /a?b=1 HTTP/1.1\r\nHost: h:81\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"), "{text}");
        let r = encode(Method::Get, &url, b"");
        assert!(!std::str::from_utf8(&r)
            .expect("ascii")
            .contains("Content-Length"));
    }
}
