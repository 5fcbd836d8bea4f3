//! HTTP/1.1 responses, sans-IO: the bytes a server sent in, one whole [`Response`] out. The
//! head goes through `httparse`; the body is framed by `Transfer-Encoding: chunked`, else
//! `Content-Length`, else the server's close, and every part has a hard limit
//! ([`Limits`]) so that no server can make the client hold more than that. Interim `1xx`
//! answers are skipped. It owns no socket and reads no clock.
#![forbid(unsafe_code)]

/// Bounds on one response.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head (status line and header fields).
    pub head: usize,
    /// Most header fields.
    pub header_count: usize,
    /// Largest body, decoded.
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head: 16 * 1024,
            header_count: 64,
            body: 64 * 1024,
        }
    }
}

/// Longest chunk-size line (with its extensions) or trailer line.
const MAX_LINE: usize = 1024;
/// Largest trailer section of a chunked body.
const MAX_TRAILERS: usize = 8 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The status line or a header field is malformed.
    #[error("malformed response head: {0}")]
    Head(String),
    /// The head is larger than [`Limits::head`] or has more than [`Limits::header_count`]
    /// fields.
    #[error("response head larger than {0} bytes or with too many fields")]
    HeadTooLarge(usize),
    /// `Content-Length` or the chunked framing is malformed or contradictory.
    #[error("bad response framing: {0}")]
    Framing(&'static str),
    /// The body is larger than [`Limits::body`].
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The server closed the connection before the response was complete.
    #[error("connection closed after {0} bytes of an incomplete response")]
    Truncated(usize),
}

/// One response, its body decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// The header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, without its transfer coding.
    pub body: Vec<u8>,
    /// Whether the connection may carry another request: HTTP/1.1 without
    /// `Connection: close` (or 1.0 with `keep-alive`), a body not delimited by the close, and
    /// nothing sent behind the response.
    pub keep_alive: bool,
}

impl Response {
    /// The first header field named `name` (ignoring ASCII case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Waiting for the head.
    Head,
    /// This many body bytes are still to come.
    Length(usize),
    /// A chunk-size line is next.
    ChunkSize,
    /// This many bytes of the current chunk are still to come.
    ChunkData(usize),
    /// The CRLF after a chunk's data is next.
    ChunkEnd,
    /// Trailer lines until an empty one.
    Trailers,
    /// Everything until the server closes.
    UntilClose,
    /// The response is complete.
    Done,
}

/// Reads one response from the bytes fed to it: [`ResponseParser::handle_input`] with each
/// read until it answers a response, or [`ResponseParser::handle_eof`] when the server
/// closed the connection first.
#[derive(Debug)]
pub struct ResponseParser {
    limits: Limits,
    state: Body,
    /// Bytes fed but not consumed yet: an incomplete head or line. Body bytes move to the
    /// response as they arrive, so this never holds more than a head or a line.
    pending: Vec<u8>,
    /// Bytes fed in all, for the truncation error.
    seen: usize,
    trailer_bytes: usize,
    response: Option<Response>,
}

impl ResponseParser {
    /// A parser for one response within `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Body::Head,
            pending: Vec::new(),
            seen: 0,
            trailer_bytes: 0,
            response: None,
        }
    }

    /// Whether any byte has arrived: a kept-alive connection that the server closed before
    /// answering a single byte was stale, and the request may be sent again.
    #[must_use]
    pub fn started(&self) -> bool {
        self.seen > 0
    }

    /// Feeds what the server sent; the response once it is complete. Bytes behind a complete
    /// response are not an HTTP/1.1 client's to read (nothing was pipelined): they clear
    /// [`Response::keep_alive`].
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Option<Response>, ResponseError> {
        self.seen = self.seen.saturating_add(data.len());
        if self.state == Body::Done {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut at = 0;
        while self.state != Body::Done {
            match self.step(&buf[at..])? {
                Some(used) => at += used,
                None => break,
            }
        }
        if self.state != Body::Done {
            buf.drain(..at);
            self.pending = buf;
            return Ok(None);
        }
        let mut r = self
            .response
            .take()
            .expect("a done parser holds its response");
        if at < buf.len() {
            r.keep_alive = false;
        }
        Ok(Some(r))
    }

    /// The server closed the connection: the response, when its body runs to the close.
    pub fn handle_eof(&mut self) -> Result<Response, ResponseError> {
        match self.state {
            Body::UntilClose => {
                self.state = Body::Done;
                let mut r = self
                    .response
                    .take()
                    .expect("a body's parser holds its response");
                r.keep_alive = false;
                Ok(r)
            }
            _ => Err(ResponseError::Truncated(self.seen)),
        }
    }

    /// Consumes what it can of `input` in the current state: how many bytes, or `None` when
    /// it needs more than `input` holds to move on.
    fn step(&mut self, input: &[u8]) -> Result<Option<usize>, ResponseError> {
        match self.state {
            Body::Head => self.head(input),
            Body::Length(left) | Body::ChunkData(left) => {
                if input.is_empty() {
                    return Ok(None);
                }
                let n = left.min(input.len());
                self.body_mut().extend_from_slice(&input[..n]);
                self.state = match (self.state, left == n) {
                    (Body::Length(_), true) => Body::Done,
                    (Body::Length(_), false) => Body::Length(left - n),
                    (_, true) => Body::ChunkEnd,
                    (_, false) => Body::ChunkData(left - n),
                };
                Ok(Some(n))
            }
            Body::ChunkSize => {
                let Some((line, used)) = line(input)? else {
                    return Ok(None);
                };
                let size = chunk_size(line)?;
                if size == 0 {
                    self.state = Body::Trailers;
                } else {
                    if size > self.limits.body - self.body_mut().len() {
                        return Err(ResponseError::BodyTooLarge(self.limits.body));
                    }
                    self.state = Body::ChunkData(size);
                }
                Ok(Some(used))
            }
            Body::ChunkEnd => {
                let Some((line, used)) = line(input)? else {
                    return Ok(None);
                };
                if !line.is_empty() {
                    return Err(ResponseError::Framing("chunk data longer than its size"));
                }
                self.state = Body::ChunkSize;
                Ok(Some(used))
            }
            Body::Trailers => {
                let Some((line, used)) = line(input)? else {
                    return Ok(None);
                };
                self.trailer_bytes += used;
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(ResponseError::Framing("trailers too large"));
                }
                if line.is_empty() {
                    self.state = Body::Done;
                }
                Ok(Some(used))
            }
            Body::UntilClose => {
                if input.is_empty() {
                    return Ok(None);
                }
                if input.len() > self.limits.body - self.body_mut().len() {
                    return Err(ResponseError::BodyTooLarge(self.limits.body));
                }
                self.body_mut().extend_from_slice(input);
                Ok(Some(input.len()))
            }
            Body::Done => Ok(None),
        }
    }

    fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self
            .response
            .as_mut()
            .expect("a body's parser holds its response")
            .body
    }

    /// Parses the head once `input` holds all of it: its length.
    fn head(&mut self, input: &[u8]) -> Result<Option<usize>, ResponseError> {
        if input.is_empty() {
            return Ok(None);
        }
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.header_count];
        let mut parsed = httparse::Response::new(&mut fields);
        let used = match parsed.parse(input) {
            Ok(httparse::Status::Complete(n)) if n <= self.limits.head => n,
            Ok(httparse::Status::Partial) if input.len() <= self.limits.head => return Ok(None),
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return Err(ResponseError::HeadTooLarge(self.limits.head))
            }
            Err(e) => return Err(ResponseError::Head(e.to_string())),
        };
        let status = parsed.code.expect("a complete head has a status");
        let version = parsed.version.expect("a complete head has a version");
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(ResponseError::Head("unexpected protocol switch".to_owned()));
            }
            // An interim answer: the real one follows.
            return Ok(Some(used));
        }
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).trim().to_owned(),
                )
            })
            .collect();
        let framing = framing(status, &headers, self.limits.body)?;
        self.response = Some(Response {
            status,
            reason: parsed.reason.unwrap_or("").to_owned(),
            keep_alive: keep_alive(version, &headers) && framing != Body::UntilClose,
            headers,
            body: Vec::new(),
        });
        self.state = framing;
        Ok(Some(used))
    }
}

/// One CRLF-terminated line at the start of `input`, without its CRLF, and the bytes it
/// took; `None` when it is not complete yet.
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, ResponseError> {
    let Some(lf) = input.iter().take(MAX_LINE + 2).position(|&b| b == b'\n') else {
        if input.len() > MAX_LINE + 1 {
            return Err(ResponseError::Framing("chunk or trailer line too long"));
        }
        return Ok(None);
    };
    match input[..lf].strip_suffix(b"\r") {
        Some(line) => Ok(Some((line, lf + 1))),
        None => Err(ResponseError::Framing("line not ended by CRLF")),
    }
}

/// How the body of a response with `status` and `headers` is delimited.
fn framing(status: u16, headers: &[(String, String)], limit: usize) -> Result<Body, ResponseError> {
    if status == 204 || status == 304 {
        return Ok(Body::Done);
    }
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let codings: Vec<&str> = named("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        if !last.eq_ignore_ascii_case("chunked") {
            // RFC 9112 6.3: a response whose last coding is not chunked runs to the close.
            return Ok(Body::UntilClose);
        }
        return Ok(Body::ChunkSize);
    }
    let mut length: Option<u64> = None;
    for v in named("content-length") {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ResponseError::Framing("Content-Length is not a number"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| ResponseError::Framing("Content-Length out of range"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::Framing("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n > limit as u64 => Err(ResponseError::BodyTooLarge(limit)),
        Some(0) => Ok(Body::Done),
        Some(n) => Ok(Body::Length(
            usize::try_from(n).expect("under the body limit"),
        )),
        None => Ok(Body::UntilClose),
    }
}

/// Whether the head lets the connection carry another request.
fn keep_alive(version: u8, headers: &[(String, String)]) -> bool {
    let mut tokens = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim);
    if version >= 1 {
        !tokens.any(|t| t.eq_ignore_ascii_case("close"))
    } else {
        tokens.any(|t| t.eq_ignore_ascii_case("keep-alive"))
    }
}

/// The size of a chunk-size line (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<usize, ResponseError> {
    let bad = ResponseError::Framing("bad chunk size");
    let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let hex = std::str::from_utf8(hex).map_err(|_| bad.clone())?.trim();
    if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad);
    }
    usize::from_str_radix(hex, 16).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
        ResponseParser::new(Limits::default()).handle_input(bytes)
    }

    /// Feeds `bytes` one at a time, as the slowest server would send them.
    fn parse_bytewise(bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
        let mut p = ResponseParser::new(Limits::default());
        for b in bytes {
            if let Some(r) = p.handle_input(std::slice::from_ref(b))? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nServer: x\r\n\r\n0";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            let r = r.expect("parses").expect("complete");
            assert_eq!(
                (r.status, r.reason.as_str(), &r.body[..], r.keep_alive),
                (200, "OK", &b"0"[..], true)
            );
            assert_eq!(r.header("server"), Some("x"));
        }
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4;ext=1\r\n{\"co\r\n7\r\nde\": 0}\r\n0\r\nX-Trailer: y\r\n\r\n";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            let r = r.expect("parses").expect("complete");
            assert_eq!(&r.body[..], b"{\"code\": 0}");
            assert!(r.keep_alive);
        }
    }

    #[test]
    fn body_until_close() {
        let mut p = ResponseParser::new(Limits::default());
        assert_eq!(p.handle_input(b"HTTP/1.1 200 OK\r\n\r\nabc"), Ok(None));
        assert_eq!(p.handle_input(b"def"), Ok(None));
        let r = p.handle_eof().expect("complete at the close");
        assert_eq!((&r.body[..], r.keep_alive), (&b"abcdef"[..], false));
    }

    #[test]
    fn connection_close_and_http10() {
        let r = parse_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.expect("ok").expect("complete").keep_alive);
        let r = parse_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.expect("ok").expect("complete").keep_alive);
        let r =
            parse_all(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(r.expect("ok").expect("complete").keep_alive);
    }

    #[test]
    fn interim_answers_are_skipped() {
        let raw =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            let r = r.expect("parses").expect("complete");
            assert_eq!((r.status, &r.body[..]), (201, &b"ok"[..]));
        }
    }

    #[test]
    fn no_body_statuses() {
        let r = parse_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!((r.status, r.body.len(), r.keep_alive), (204, 0, true));
    }

    #[test]
    fn bytes_behind_the_response_end_keep_alive() {
        let r = parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0junk");
        assert!(!r.expect("ok").expect("complete").keep_alive);
    }

    #[test]
    fn limits() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n";
        assert_eq!(parse_all(big), Err(ResponseError::BodyTooLarge(64 * 1024)));
        let mut p = ResponseParser::new(Limits::default());
        p.handle_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("head");
        let chunk = format!("{:x}\r\n", 40 * 1024);
        p.handle_input(chunk.as_bytes()).expect("first chunk fits");
        p.handle_input(&vec![b'a'; 40 * 1024]).expect("data");
        assert_eq!(
            p.handle_input(format!("\r\n{chunk}").as_bytes()),
            Err(ResponseError::BodyTooLarge(64 * 1024))
        );
        let mut p = ResponseParser::new(Limits::default());
        p.handle_input(b"HTTP/1.1 200 OK\r\n\r\n").expect("head");
        assert_eq!(
            p.handle_input(&vec![b'a'; 65 * 1024]),
            Err(ResponseError::BodyTooLarge(64 * 1024))
        );
        let mut p = ResponseParser::new(Limits::default());
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        head.extend(std::iter::repeat_n(b"X-A: b\r\n".as_slice(), 3000).flatten());
        assert_eq!(
            p.handle_input(&head),
            Err(ResponseError::HeadTooLarge(16 * 1024))
        );
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            parse_all(b"garbage\r\n\r\n"),
            Err(ResponseError::Head(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"),
            Err(ResponseError::Framing(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(ResponseError::Framing(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ResponseError::Framing(_))
        ));
        assert!(matches!(
            parse_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n"),
            Err(ResponseError::Framing(_))
        ));
        let mut p = ResponseParser::new(Limits::default());
        assert_eq!(
            p.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Ok(None)
        );
        assert!(matches!(p.handle_eof(), Err(ResponseError::Truncated(_))));
    }
}
