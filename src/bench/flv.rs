//! HTTP-FLV load: a player task that GETs an FLV stream, counts bytes and reads the latency
//! stamps from its video tags, against any HTTP-FLV server (ringcast, SRS). The response
//! head and the chunked transfer coding are read by the sans-IO [`ResponseReader`], the tags
//! by [`FlvReader`]; the task only moves bytes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::rtmp::{connect, LoadError};
use super::{ClientState, LatencyProbe, Stats};
use crate::flv::FlvReader;
use crate::rtmp::message::MSG_VIDEO;

/// A response head larger than this is not an FLV server's.
const MAX_HEAD: usize = 16 * 1024;

/// Where an HTTP-FLV player connects.
#[derive(Debug, Clone)]
pub struct FlvTarget {
    /// `host:port`.
    pub addr: String,
    /// The Host header.
    pub host: String,
    /// The path and query.
    pub path: String,
}

/// Splits `http://host[:port]/path` into a target.
pub fn parse_http_url(url: &str) -> Option<FlvTarget> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/')?;
    if authority.is_empty() || path.is_empty() {
        return None;
    }
    let addr = super::socket_addr(authority, 80);
    Some(FlvTarget {
        addr,
        host: authority.to_owned(),
        path: format!("/{path}"),
    })
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not an HTTP response, or a broken chunked coding.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The server answered with another status than 200.
    #[error("HTTP status {0}")]
    Status(u16),
}

#[derive(Debug)]
enum Body {
    /// Until the server closes.
    Plain,
    /// Bytes left of a `Content-Length` body.
    Length(usize),
    /// Chunk size line being read.
    ChunkSize(Vec<u8>),
    /// Bytes left in the current chunk.
    ChunkData(usize),
    /// The CRLF after a chunk's data; bytes of it left.
    ChunkEnd(usize),
    /// The last chunk was read.
    Done,
}

/// Reads an HTTP response: the head, then the body bytes, de-chunked when chunked.
#[derive(Debug)]
pub struct ResponseReader {
    head: Option<Vec<u8>>,
    body: Body,
    /// The server keeps the connection open after this response.
    keep_alive: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self {
            head: Some(Vec::new()),
            body: Body::Plain,
            keep_alive: false,
        }
    }
}

impl ResponseReader {
    /// A reader waiting for the head.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the head was read and accepted.
    pub fn started(&self) -> bool {
        self.head.is_none()
    }

    /// True once the whole body was read (a `Content-Length` or chunked body; a body that
    /// lasts until the server closes never is).
    pub fn done(&self) -> bool {
        matches!(self.body, Body::Done)
    }

    /// True when the connection can carry the next request: HTTP/1.1 without
    /// `Connection: close`, and a body whose end is known.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Consumes received bytes, appending body bytes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ResponseError> {
        self.push_each(data, |b| out.extend_from_slice(b))
    }

    /// Consumes received bytes, handing each run of body bytes to `body` where it lies in
    /// `data`: a player that only counts or scans the body copies none of it. Only the head's
    /// own bytes are kept between pushes.
    pub fn push_each(
        &mut self,
        mut data: &[u8],
        mut body: impl FnMut(&[u8]),
    ) -> Result<(), ResponseError> {
        if let Some(head) = &mut self.head {
            let Some(at) = head_end(head, data) else {
                if head.len() + data.len() > MAX_HEAD {
                    return Err(ResponseError::Malformed("response head too large"));
                }
                head.extend_from_slice(data);
                return Ok(());
            };
            head.extend_from_slice(&data[..at]);
            data = &data[at..];
            let text = String::from_utf8_lossy(head).to_ascii_lowercase();
            let status = text
                .strip_prefix("http/1.")
                .and_then(|s| s.get(2..5))
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or(ResponseError::Malformed("bad status line"))?;
            if status != 200 {
                return Err(ResponseError::Status(status));
            }
            let chunked = text.lines().any(|l| {
                l.split_once(':')
                    .is_some_and(|(n, v)| n.trim() == "transfer-encoding" && v.contains("chunked"))
            });
            let header = |name: &str| {
                text.lines().skip(1).find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.trim() == name)
                        .map(|(_, v)| v.trim().to_owned())
                })
            };
            let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
            if chunked {
                self.body = Body::ChunkSize(Vec::new());
            } else if let Some(n) = length {
                self.body = if n == 0 { Body::Done } else { Body::Length(n) };
            }
            self.keep_alive = text.starts_with("http/1.1")
                && !matches!(self.body, Body::Plain)
                && header("connection").is_none_or(|v| !v.contains("close"));
            self.head = None;
        }
        while !data.is_empty() {
            match &mut self.body {
                Body::Plain => {
                    body(data);
                    return Ok(());
                }
                Body::Done => return Ok(()),
                Body::Length(left) => {
                    let n = (*left).min(data.len());
                    body(&data[..n]);
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        self.body = Body::Done;
                    }
                }
                Body::ChunkSize(line) => {
                    let nl = data.iter().position(|&b| b == b'\n');
                    let take = nl.map_or(data.len(), |i| i + 1);
                    line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if line.len() > 1024 {
                        return Err(ResponseError::Malformed("chunk size line too long"));
                    }
                    if nl.is_some() {
                        let text = String::from_utf8_lossy(line);
                        let hex = text.trim().split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16)
                            .map_err(|_| ResponseError::Malformed("bad chunk size"))?;
                        self.body = if size == 0 {
                            Body::Done
                        } else {
                            Body::ChunkData(size)
                        };
                    }
                }
                Body::ChunkData(left) => {
                    let n = (*left).min(data.len());
                    body(&data[..n]);
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        self.body = Body::ChunkEnd(2);
                    }
                }
                Body::ChunkEnd(left) => {
                    let n = (*left).min(data.len());
                    data = &data[n..];
                    *left -= n;
                    if *left == 0 {
                        self.body = Body::ChunkSize(Vec::new());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where in `data` the head that began with `head` ends (just past its blank line), looking
/// across the seam: the blank line's first bytes may have come in the pushes before.
fn head_end(head: &[u8], data: &[u8]) -> Option<usize> {
    const BLANK: &[u8] = b"\r\n\r\n";
    let kept = &head[head.len().saturating_sub(BLANK.len() - 1)..];
    let mut seam = kept.to_vec();
    seam.extend_from_slice(&data[..data.len().min(BLANK.len() - 1)]);
    if let Some(i) = seam.windows(BLANK.len()).position(|w| w == BLANK) {
        return Some(i + BLANK.len() - kept.len());
    }
    data.windows(BLANK.len())
        .position(|w| w == BLANK)
        .map(|i| i + BLANK.len())
}

/// Plays `target` until `stop`, recording bytes and latency as client `id`.
pub async fn play(id: usize, target: FlvTarget, stats: Arc<Stats>, stop: Instant) {
    super::until_stop(
        id,
        "flv player",
        &stats,
        stop,
        play_inner(id, &target, &stats),
    )
    .await;
}

async fn play_inner(id: usize, target: &FlvTarget, stats: &Stats) -> Result<(), LoadError> {
    let conn = connect(&target.addr, 64 * 1024).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-bench\r\nAccept: */*\r\n\r\n",
        target.path, target.host
    );
    conn.write_all(request.into_bytes()).await?;
    let mut response = ResponseReader::new();
    let mut flv = FlvReader::new();
    let mut body = Vec::with_capacity(64 * 1024);
    let mut probe = LatencyProbe::new();
    loop {
        let input = conn.read_some().await?;
        if input.is_empty() {
            return Err(LoadError::Closed);
        }
        stats.bytes[id].fetch_add(input.len() as u64, Ordering::Relaxed);
        body.clear();
        response
            .push(&input, &mut body)
            .map_err(|e| LoadError::Refused(e.to_string()))?;
        if !response.started() {
            continue;
        }
        stats.set_state(id, ClientState::Alive);
        flv.push(&body);
        while let Some(tag) = flv
            .next_tag()
            .map_err(|e| LoadError::Refused(e.to_string()))?
        {
            if tag.type_id != MSG_VIDEO {
                continue;
            }
            probe.video(&tag.data, stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_http_url("http://127.0.0.1:8080/live/s.flv?x=1").expect("url");
        assert_eq!(
            (t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "/live/s.flv?x=1")
        );
        assert_eq!(
            parse_http_url("http://h/live/s.flv").map(|t| t.addr),
            Some("h:80".into())
        );
        assert!(parse_http_url("rtmp://h/live/s").is_none());
        assert!(parse_http_url("http://h").is_none());
    }

    #[test]
    fn plain_and_chunked_bodies_in_any_pieces() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01body";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        4\r\nFLV\x01\r\n4;ext=1\r\nbody\r\n0\r\n\r\n";
        for data in [&plain[..], &chunked[..]] {
            for piece in [1, 3, data.len()] {
                let mut r = ResponseReader::new();
                let mut out = Vec::new();
                for c in data.chunks(piece) {
                    r.push(c, &mut out).expect("valid response");
                }
                assert!(r.started());
                assert_eq!(out, b"FLV\x01body");
            }
        }
    }

    #[test]
    fn a_head_split_anywhere_hands_out_the_body_in_place() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nTSbody";
        for cut in 0..=data.len() {
            let mut r = ResponseReader::new();
            let mut pieces = Vec::new();
            for part in [&data[..cut], &data[cut..]] {
                r.push_each(part, |b| pieces.push(b.to_vec()))
                    .expect("valid response");
            }
            assert!(r.done() && r.keep_alive(), "cut at {cut}");
            assert_eq!(pieces.concat(), b"TSbody", "cut at {cut}");
        }
    }

    #[test]
    fn bodies_with_a_length_end_and_say_whether_the_connection_stays() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        let mut r = ResponseReader::new();
        let mut out = Vec::new();
        r.push(&ok[..30], &mut out).expect("valid response");
        assert!(!r.done());
        r.push(&ok[30..], &mut out).expect("valid response");
        assert!(r.done() && r.keep_alive());
        assert_eq!(out, b"body");
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let mut r = ResponseReader::new();
        r.push(close, &mut out).expect("valid response");
        assert!(r.done() && !r.keep_alive());
        let mut r = ResponseReader::new();
        r.push(b"HTTP/1.1 200 OK\r\n\r\nflv", &mut out)
            .expect("valid response");
        assert!(!r.done() && !r.keep_alive());
    }

    #[test]
    fn errors() {
        let mut out = Vec::new();
        let mut r = ResponseReader::new();
        assert_eq!(
            r.push(b"HTTP/1.1 404 Not Found\r\n\r\n", &mut out),
            Err(ResponseError::Status(404))
        );
        let mut r = ResponseReader::new();
        assert!(r.push(b"SSH-2.0-OpenSSH\r\n\r\n", &mut out).is_err());
        let mut r = ResponseReader::new();
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(r.push(bad, &mut out).is_err());
    }
}
