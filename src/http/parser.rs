//! HTTP/1.1 requests, sans-IO: bytes in, whole [`Request`]s out, with hard limits on the
//! request line, the header block and the body, so that no client can make a connection hold
//! more than [`Limits`] allows. Bodies are `Content-Length` only: chunked request bodies are
//! refused (no API client sends them), and a request's framing is checked before it is used.
//!
//! It owns no socket and reads no clock; the driver feeds it what it read and writes what the
//! router answers.
#![forbid(unsafe_code)]

/// Bounds on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line (method, target, version).
    pub request_line: usize,
    /// Largest header block, request line included.
    pub headers: usize,
    /// Most header fields.
    pub header_count: usize,
    /// Largest body.
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_line: 8 * 1024,
            headers: 32 * 1024,
            header_count: 100,
            // An SDP offer is a few KiB; a megabyte leaves room for anything the API takes.
            body: 1024 * 1024,
        }
    }
}

/// Why a request was refused; each maps to a status code the server answers with before it
/// closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request line is longer than [`Limits::request_line`].
    #[error("request line longer than {0} bytes")]
    UriTooLong(usize),
    /// The header block is larger than [`Limits::headers`] or has too many fields.
    #[error("request headers larger than {0} bytes or too many fields")]
    HeadersTooLarge(usize),
    /// The body is larger than [`Limits::body`].
    #[error("request body of {0} bytes is too large")]
    BodyTooLarge(u64),
    /// A transfer coding other than identity, or an HTTP version other than 1.0 and 1.1.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl HttpError {
    /// The status code that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::UriTooLong(_) => 414,
            Self::HeadersTooLarge(_) => 431,
            Self::BodyTooLarge(_) => 413,
            Self::NotImplemented(_) => 501,
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The path, percent-decoding left to the router.
    pub path: String,
    /// The query string without `?`, empty when there is none.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the answer: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        let has = |token: &str| {
            conn.as_deref()
                .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
        };
        if self.minor_version >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

/// Parses the requests of one connection. Call [`RequestParser::push`] with received bytes,
/// then [`RequestParser::next_request`] until it returns `Ok(None)`. After an error the
/// connection must be answered and closed: the parser's position in the stream is lost.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    buf: Vec<u8>,
}

impl RequestParser {
    /// A parser with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet consumed by a request.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete request; `Ok(None)` when more bytes are needed.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        // Tolerate the empty lines some clients send between requests (RFC 9112 2.2).
        let blank = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.buf.drain(..blank);
        let Some(head_len) = find(&self.buf, b"\r\n\r\n").map(|i| i + 4) else {
            let line_done = find(&self.buf, b"\r\n").is_some();
            if !line_done && self.buf.len() > self.limits.request_line {
                return Err(HttpError::UriTooLong(self.limits.request_line));
            }
            if self.buf.len() > self.limits.headers {
                return Err(HttpError::HeadersTooLarge(self.limits.headers));
            }
            return Ok(None);
        };
        if head_len > self.limits.headers {
            return Err(HttpError::HeadersTooLarge(self.limits.headers));
        }
        let head = std::str::from_utf8(&self.buf[..head_len - 4])
            .map_err(|_| HttpError::BadRequest("request head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        if line.len() > self.limits.request_line {
            return Err(HttpError::UriTooLong(self.limits.request_line));
        }
        let (method, target, minor_version) = request_line(line)?;
        let mut headers = Vec::new();
        for l in lines {
            if headers.len() == self.limits.header_count {
                return Err(HttpError::HeadersTooLarge(self.limits.headers));
            }
            headers.push(header_field(l)?);
        }
        let mut length: Option<u64> = None;
        for (name, value) in &headers {
            match name.as_str() {
                "content-length" => {
                    if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
                        return Err(HttpError::BadRequest("invalid Content-Length"));
                    }
                    let n: u64 = value
                        .parse()
                        .map_err(|_| HttpError::BadRequest("invalid Content-Length"))?;
                    // Two different lengths are how request smuggling starts.
                    if length.is_some_and(|l| l != n) {
                        return Err(HttpError::BadRequest("conflicting Content-Length"));
                    }
                    length = Some(n);
                }
                "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                    return Err(HttpError::NotImplemented("chunked request bodies"));
                }
                _ => {}
            }
        }
        let length = length.unwrap_or(0);
        if length > self.limits.body as u64 {
            return Err(HttpError::BodyTooLarge(length));
        }
        let length = length as usize;
        if self.buf.len() < head_len + length {
            return Ok(None);
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (target.to_owned(), String::new()),
        };
        let request = Request {
            method: method.to_owned(),
            path,
            query,
            minor_version,
            headers,
            body: self.buf[head_len..head_len + length].to_vec(),
        };
        self.buf.drain(..head_len + length);
        Ok(Some(request))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn request_line(line: &str) -> Result<(&str, &str, u8), HttpError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if !is_token(method) {
        return Err(HttpError::BadRequest("malformed method"));
    }
    // Origin form only: the API and the streams are addressed by path.
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::BadRequest("malformed request target"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Err(HttpError::NotImplemented("HTTP version")),
        _ => return Err(HttpError::BadRequest("malformed HTTP version")),
    };
    Ok((method, target, minor))
}

fn header_field(line: &str) -> Result<(String, String), HttpError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(HttpError::BadRequest("header field without ':'"))?;
    // Whitespace before the colon, and obsolete line folding, are refused (RFC 9112 5.1, 5.2).
    if !is_token(name) {
        return Err(HttpError::BadRequest("malformed header field name"));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest("control character in header value"));
    }
    Ok((name.to_ascii_lowercase(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(data: &[u8], piece: usize) -> Result<Vec<Request>, HttpError> {
        let mut p = RequestParser::new(Limits::default());
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            p.push(chunk);
            while let Some(r) = p.next_request()? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn pipelined_keep_alive_requests_in_any_pieces() {
        let data = b"GET /api/v1/streams?start=0&count=10 HTTP/1.1\r\nHost: a\r\n\r\n\
                     POST /rtc/v1/whip/?app=live HTTP/1.1\r\nContent-Length: 5\r\n\
                     Content-Type: application/sdp\r\n\r\nv=0\r\n\
                     GET /live/s.flv HTTP/1.0\r\n\r\n";
        for piece in [1, 2, 7, data.len()] {
            let reqs = parse_all(data, piece).expect("valid requests");
            assert_eq!(reqs.len(), 3);
            assert_eq!(reqs[0].path, "/api/v1/streams");
            assert_eq!(reqs[0].query, "start=0&count=10");
            assert!(reqs[0].keep_alive());
            assert_eq!(reqs[1].method, "POST");
            assert_eq!(reqs[1].body, b"v=0\r\n");
            assert_eq!(reqs[1].header("content-type"), Some("application/sdp"));
            assert_eq!(reqs[2].minor_version, 0);
            assert!(!reqs[2].keep_alive());
        }
    }

    #[test]
    fn connection_header_decides_keep_alive() {
        let r = parse_all(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 100).expect("ok");
        assert!(!r[0].keep_alive());
        let r = parse_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 100).expect("ok");
        assert!(r[0].keep_alive());
    }

    #[test]
    fn limits_give_the_right_status() {
        let mut p = RequestParser::new(Limits::default());
        p.push(b"GET /");
        p.push(&vec![b'a'; 9000]);
        assert_eq!(p.next_request().map_err(|e| e.status()), Err(414));

        let mut p = RequestParser::new(Limits::default());
        p.push(b"GET / HTTP/1.1\r\n");
        for _ in 0..1000 {
            p.push(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(p.next_request().map_err(|e| e.status()), Err(431));

        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let r = parse_all(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 4096);
        assert_eq!(r.map_err(|e| e.status()), Err(431));

        let r = parse_all(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 100);
        assert_eq!(r.map_err(|e| e.status()), Err(413));
    }

    #[test]
    fn malformed_requests_are_400_or_501() {
        for (bad, status) in [
            (&b"GARBAGE\r\n\r\n"[..], 400),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 501),
            (b"GET / FOO\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        ] {
            let r = parse_all(bad, 3);
            assert_eq!(
                r.map_err(|e| e.status()),
                Err(status),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_or_overrun() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let seed = b"GET /a?b HTTP/1.1\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
        for _ in 0..5000 {
            let mut data = seed.to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..data.len());
                match rng.gen_range(0..3) {
                    0 => data[i] = rng.gen(),
                    1 => data.insert(i, rng.gen()),
                    _ => {
                        data.remove(i);
                    }
                }
            }
            let mut p = RequestParser::new(Limits::default());
            for piece in data.chunks(rng.gen_range(1..16)) {
                p.push(piece);
                match p.next_request() {
                    Ok(Some(r)) => assert!(r.body.len() < data.len()),
                    Ok(None) => {}
                    Err(e) => {
                        assert!((400..=501).contains(&e.status()));
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn waits_for_the_whole_body() {
        let mut p = RequestParser::new(Limits::default());
        p.push(b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
        assert_eq!(p.next_request(), Ok(None));
        p.push(b"cd");
        let r = p.next_request().expect("ok").expect("complete");
        assert_eq!(r.body, b"abcd");
        assert_eq!(p.buffered(), 0);
    }
}
