//! What an HTTP handler answers and how it goes on the wire: [`ApiReply`], the status line
//! and headers (CORS included), SRS's JSON envelope, errors and the CORS preflight. Pure: no
//! socket, no routing.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::runtime::SealedFile;

/// An answer to a request, as the connection writes it.
#[derive(Debug)]
pub(crate) struct ApiReply {
    /// HTTP status code.
    pub(crate) status: u16,
    /// `Content-Type` of `body`.
    pub(crate) content_type: &'static str,
    /// Extra response headers, such as WHIP's `Location`.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The body, shared (an HLS segment's bytes go to every request as they are).
    pub(crate) body: Bytes,
    /// `body` in a sealed memfd (an HLS segment or part), which a plain connection sends with
    /// `sendfile` rather than copying the bytes into its socket.
    pub(crate) sealed: Option<Arc<SealedFile>>,
}

/// A JSON reply.
pub(crate) fn reply(status: u16, body: &Value) -> ApiReply {
    ApiReply {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string().into(),
        sealed: None,
    }
}

/// An error as JSON: `{"code": STATUS, "error": "..."}`.
pub(crate) fn error(status: u16, message: &str) -> ApiReply {
    reply(status, &json!({"code": status, "error": message}))
}

/// The answer to a CORS preflight: browsers ask before they POST SDP or DELETE a client.
pub(crate) fn preflight() -> ApiReply {
    ApiReply {
        status: 200,
        content_type: "text/plain",
        headers: vec![
            (
                "Access-Control-Allow-Methods",
                "GET, POST, HEAD, PUT, DELETE, OPTIONS".into(),
            ),
            (
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization, Origin, X-Requested-With, Accept".into(),
            ),
            ("Access-Control-Expose-Headers", "Location, Server".into()),
            ("Access-Control-Max-Age", "86400".into()),
        ],
        body: Bytes::new(),
        sealed: None,
    }
}

/// The status line and headers of a response, CORS included: one allocation, as every
/// segment a player fetches has one.
pub(crate) fn head(
    status: u16,
    content_type: &str,
    length: Option<usize>,
    keep_alive: bool,
    extra: &[(&'static str, String)],
) -> String {
    use std::fmt::Write as _;
    let mut h = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nServer: ringcast/{}\r\nContent-Type: {content_type}\r\n\
         Access-Control-Allow-Origin: *\r\nConnection: {}\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION"),
        if keep_alive { "keep-alive" } else { "close" },
    );
    if let Some(len) = length {
        let _ = write!(h, "Content-Length: {len}\r\n");
    }
    for (name, value) in extra {
        h.push_str(name);
        h.push_str(": ");
        // Header values come from our own modules; a stray line break must still not split
        // the response.
        h.extend(value.chars().filter(|c| !c.is_control()));
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        508 => "Loop Detected",
        _ => "Unknown",
    }
}

/// SRS's envelope for errors and simple answers: `{"code": N, "server": ..., ...}`.
pub(crate) fn envelope(server_id: &str, code: i64) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("code".into(), json!(code));
    m.insert("server".into(), json!(server_id));
    m.insert("service".into(), json!(server_id));
    m.insert("pid".into(), json!(std::process::id().to_string()));
    m
}
