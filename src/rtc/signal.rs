//! Signalling requests, sans-IO: which WHIP, WHEP or SRS JSON request an HTTP request is, with
//! its stream and SDP offer, and why one is refused (with the HTTP status and SRS code that
//! says so). It creates no session, [`super::api`] does that with what this returns, and
//! writes no reply: the HTTP layer does.

#![forbid(unsafe_code)]

/// What a session does with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends media in (WHIP, SRS's `/rtc/v1/publish/`).
    Publish,
    /// Receives the stream's media (WHEP, SRS's `/rtc/v1/play/`).
    Play,
}

/// The request's wire form, which decides the reply's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// WHIP/WHEP: the SDP is the body; 201 with `Location`.
    Whip,
    /// SRS's JSON: `{"sdp", "streamurl"}` in, `{"code", "sdp", "sessionid"}` out.
    Json,
}

/// A parsed signalling request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An SDP offer to publish or play a stream.
    Offer {
        /// Publish or play.
        role: Role,
        /// WHIP/WHEP or SRS JSON.
        style: Style,
        /// The vhost named by the request, if any.
        vhost: Option<String>,
        /// Application, such as `live`.
        app: String,
        /// Stream name.
        stream: String,
        /// The SDP offer's text.
        sdp: String,
    },
    /// `DELETE` of a WHIP/WHEP resource: ends that session.
    Delete {
        /// The session id from the `Location`.
        session: String,
    },
    /// `GET /rtc/v1/stats/`: the RTC counters.
    Stats,
    /// `POST /rtc/v1/nack/?drop=N` (SRS's loss simulation): drop one in N datagrams sent to
    /// players, `0` to stop.
    SimulateLoss {
        /// One in this many datagrams is dropped; 0 turns the simulation off.
        drop_every: u64,
    },
}

/// Why a signalling request is refused; each knows its HTTP status and SRS code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The method is not served on this path.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// No such session or stream.
    #[error("{0}")]
    NotFound(String),
    /// WebRTC is turned off for this server or vhost.
    #[error("{0}")]
    Forbidden(String),
    /// The server cannot take more sessions now.
    #[error("{0}")]
    Unavailable(String),
}

impl SignalError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Unavailable(_) => 503,
        }
    }

    /// The `code` of SRS's JSON error reply: the HTTP status, as SRS's RTC API answers.
    pub fn code(&self) -> u16 {
        self.status()
    }
}

/// Largest SDP offer accepted; browsers send a few KiB.
pub const MAX_SDP: usize = 64 * 1024;

/// Parses a request under `/rtc/v1/`; `Ok(None)` for paths this module does not serve.
pub fn parse(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Option<Request>, SignalError> {
    let Some(rest) = path.strip_prefix("/rtc/v1/") else {
        return Ok(None);
    };
    let params = query_pairs(query);
    match (method, rest.trim_end_matches('/')) {
        ("GET", "stats") => return Ok(Some(Request::Stats)),
        ("POST", "nack") => {
            let drop_every = params
                .iter()
                .find(|(k, _)| k == "drop")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| SignalError::BadRequest("nack needs ?drop=N".into()))?;
            return Ok(Some(Request::SimulateLoss { drop_every }));
        }
        (other, "stats" | "nack") => return Err(SignalError::MethodNotAllowed(other.to_owned())),
        _ => {}
    }
    let (role, style) = match rest.trim_end_matches('/') {
        "whip" => (Role::Publish, Style::Whip),
        "whep" => (Role::Play, Style::Whip),
        "publish" => (Role::Publish, Style::Json),
        "play" => (Role::Play, Style::Json),
        _ => return Ok(None),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match (method, style) {
        ("DELETE", Style::Whip) => {
            let session = param("session")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SignalError::BadRequest("DELETE needs ?session=ID".into()))?;
            Ok(Some(Request::Delete { session }))
        }
        ("POST", _) => {
            if body.len() > MAX_SDP {
                return Err(SignalError::BadRequest(format!(
                    "body over {MAX_SDP} bytes"
                )));
            }
            let text = std::str::from_utf8(body)
                .map_err(|_| SignalError::BadRequest("body is not UTF-8".into()))?;
            let (vhost, app, stream, sdp) = match style {
                Style::Whip => {
                    let app = param("app").unwrap_or_else(|| "live".to_owned());
                    let stream = param("stream").unwrap_or_default();
                    (param("vhost"), app, stream, text.to_owned())
                }
                Style::Json => json_offer(text)?,
            };
            if stream.is_empty() || app.is_empty() {
                return Err(SignalError::BadRequest("no app or stream named".into()));
            }
            if !sdp.trim_start().starts_with("v=0") {
                return Err(SignalError::BadRequest("body is not an SDP offer".into()));
            }
            Ok(Some(Request::Offer {
                role,
                style,
                vhost,
                app,
                stream,
                sdp,
            }))
        }
        (other, _) => Err(SignalError::MethodNotAllowed(other.to_owned())),
    }
}

/// SRS's `{"sdp": "...", "streamurl": "webrtc://host/app/stream?vhost=v"}`.
fn json_offer(text: &str) -> Result<(Option<String>, String, String, String), SignalError> {
    #[derive(serde::Deserialize)]
    struct Body {
        sdp: String,
        streamurl: String,
    }
    let body: Body = serde_json::from_str(text)
        .map_err(|e| SignalError::BadRequest(format!("bad JSON body: {e}")))?;
    let rest = body
        .streamurl
        .strip_prefix("webrtc://")
        .ok_or_else(|| SignalError::BadRequest("streamurl must start with webrtc://".into()))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (_host, path) = rest
        .split_once('/')
        .ok_or_else(|| SignalError::BadRequest("streamurl has no path".into()))?;
    let (app, stream) = path
        .rsplit_once('/')
        .ok_or_else(|| SignalError::BadRequest("streamurl needs /app/stream".into()))?;
    let vhost = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "vhost")
        .map(|(_, v)| v);
    Ok((vhost, app.to_owned(), stream.to_owned(), body.sdp))
}

/// `a=1&b=x%20y` as pairs, percent-decoded; malformed escapes are kept as they are.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reply style a path implies, for errors found before parsing succeeds.
pub fn style_of(path: &str) -> Style {
    if path.starts_with("/rtc/v1/publish") || path.starts_with("/rtc/v1/play") {
        Style::Json
    } else {
        Style::Whip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";

    #[test]
    fn whip_and_whep() {
        let r = parse(
            "POST",
            "/rtc/v1/whip/",
            "app=live&stream=a%20b",
            SDP.as_bytes(),
        );
        assert_eq!(
            r,
            Ok(Some(Request::Offer {
                role: Role::Publish,
                style: Style::Whip,
                vhost: None,
                app: "live".into(),
                stream: "a b".into(),
                sdp: SDP.into(),
            }))
        );
        let r = parse("POST", "/rtc/v1/whep", "stream=x&vhost=v", SDP.as_bytes()).unwrap();
        assert!(matches!(
            r,
            Some(Request::Offer { role: Role::Play, vhost: Some(ref v), ref app, .. })
                if v == "v" && app == "live"
        ));
        assert_eq!(
            parse("DELETE", "/rtc/v1/whep/", "app=live&session=abc", b""),
            Ok(Some(Request::Delete {
                session: "abc".into()
            }))
        );
        assert_eq!(parse("GET", "/rtc/v1/nope/", "", b""), Ok(None));
        assert_eq!(
            parse("GET", "/rtc/v1/stats/", "", b""),
            Ok(Some(Request::Stats))
        );
        assert_eq!(
            parse("POST", "/rtc/v1/nack/", "drop=20", b""),
            Ok(Some(Request::SimulateLoss { drop_every: 20 }))
        );
        assert!(parse("POST", "/rtc/v1/nack/", "drop=x", b"").is_err());
        assert!(parse("DELETE", "/rtc/v1/stats", "", b"").is_err());
        assert_eq!(parse("GET", "/api/v1/versions", "", b""), Ok(None));
    }

    #[test]
    fn srs_json() {
        let body = serde_json::json!({"sdp": SDP, "streamurl": "webrtc://h:1985/live/cam?vhost=v1", "api": "x"});
        let r = parse("POST", "/rtc/v1/play/", "", body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r,
            Some(Request::Offer {
                role: Role::Play,
                style: Style::Json,
                vhost: Some("v1".into()),
                app: "live".into(),
                stream: "cam".into(),
                sdp: SDP.into(),
            })
        );
        assert_eq!(style_of("/rtc/v1/play/"), Style::Json);
        assert_eq!(style_of("/rtc/v1/whep/"), Style::Whip);
    }

    #[test]
    fn bad_requests_are_4xx() {
        let status = |m: &str, p: &str, q: &str, b: &[u8]| parse(m, p, q, b).unwrap_err().status();
        assert_eq!(status("POST", "/rtc/v1/whip/", "stream=a", b"not sdp"), 400);
        assert_eq!(
            status("POST", "/rtc/v1/whip/", "app=live", SDP.as_bytes()),
            400
        );
        assert_eq!(
            status("POST", "/rtc/v1/whip/", "stream=a", &[0xff, 0xfe]),
            400
        );
        assert_eq!(
            status(
                "POST",
                "/rtc/v1/whip/",
                "stream=a",
                &vec![b'v'; MAX_SDP + 1]
            ),
            400
        );
        assert_eq!(status("PUT", "/rtc/v1/whip/", "stream=a", b""), 405);
        assert_eq!(status("DELETE", "/rtc/v1/whip/", "", b""), 400);
        assert_eq!(status("DELETE", "/rtc/v1/play/", "session=a", b""), 405);
        for body in [
            "{",
            "{}",
            r#"{"sdp":"v=0","streamurl":"rtmp://h/live/a"}"#,
            r#"{"sdp":"v=0","streamurl":"webrtc://h"}"#,
            r#"{"sdp":"v=0","streamurl":"webrtc://h/a"}"#,
            r#"{"sdp":"x","streamurl":"webrtc://h/live/a"}"#,
        ] {
            assert_eq!(
                status("POST", "/rtc/v1/publish/", "", body.as_bytes()),
                400,
                "{body}"
            );
        }
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
