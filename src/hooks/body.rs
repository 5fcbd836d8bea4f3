//! The JSON bodies SRS 6 POSTs to its HTTP hooks, field for field and in SRS's order
//! (`srs_app_http_hooks.cpp`), and the request fields they are made of: SRS's `param` (the
//! query of the stream URL) and `stream_url`. Pure: strings in, a string out.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::config::DEFAULT_VHOST;

/// An event a hook is called for, SRS's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An RTMP client connected; may deny.
    Connect,
    /// An RTMP connection ended; notice only.
    Close,
    /// A client asks to publish; may deny.
    Publish,
    /// A publish ended; notice only.
    Unpublish,
    /// A client asks to play; may deny.
    Play,
    /// A play ended; notice only.
    Stop,
    /// A DVR file was closed; notice only.
    Dvr,
    /// An HLS segment was written; notice only.
    Hls,
    /// An HLS segment was written: a GET, not a POST of a body (SRS's `on_hls_notify`).
    HlsNotify,
}

impl Action {
    /// SRS's name of the event, the body's `action` and the directive's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "on_connect",
            Self::Close => "on_close",
            Self::Publish => "on_publish",
            Self::Unpublish => "on_unpublish",
            Self::Play => "on_play",
            Self::Stop => "on_stop",
            Self::Dvr => "on_dvr",
            Self::Hls => "on_hls",
            Self::HlsNotify => "on_hls_notify",
        }
    }

    /// Whether the hooks' answer decides (connect, publish, play), rather than being a
    /// notice whose failure is only logged.
    #[must_use]
    pub fn decides(self) -> bool {
        matches!(self, Self::Connect | Self::Publish | Self::Play)
    }
}

/// Who asks, and for what: the fields of SRS's request that the hooks send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The connection's id, SRS's `client_id` (the id the HTTP API lists the client by).
    pub client_id: u64,
    /// The client's address.
    pub ip: String,
    /// The vhost, as the config names it.
    pub vhost: String,
    /// The application, e.g. `live`.
    pub app: String,
    /// The stream name without its query ("" at connect).
    pub stream: String,
    /// SRS's `param`: the query of the stream URL with its `?` (`?secret=...`), or "".
    pub param: String,
    /// The `tcUrl` (for HTTP-FLV and WebRTC, the URL the client asked for).
    pub tc_url: String,
    /// The `pageUrl` the client sent, or "".
    pub page_url: String,
}

/// What the server adds to each body.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    /// SRS's `server_id`.
    pub server_id: &'a str,
    /// SRS's `service_id`: this process's.
    pub service_id: &'a str,
    /// SRS's `cwd`, the server's working directory, which the file hooks send beside their
    /// relative paths.
    pub cwd: &'a str,
}

/// Byte counts of a connection that ended, for `on_close`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent to the client.
    pub sent: u64,
    /// Bytes received from it.
    pub received: u64,
}

/// An HLS segment written under `hls_path`, for `on_hls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HlsSegment {
    /// Its duration in milliseconds (the body has seconds, two decimals).
    pub duration_ms: u64,
    /// The segment's file: `hls_path`, then its name.
    pub file: String,
    /// Its URL path (without `/`), or its absolute URL under `hls_entry_prefix`.
    pub url: String,
    /// The playlist's file.
    pub m3u8: String,
    /// The playlist's URL path (without `/`).
    pub m3u8_url: String,
    /// Its media sequence number.
    pub seq_no: u64,
}

/// What an event tells beyond who asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Details {
    /// Nothing more.
    #[default]
    None,
    /// A connection's byte counts (`on_close`).
    Traffic(Traffic),
    /// A DVR file (`on_dvr`), as `dvr_path` named it (relative to the server's working
    /// directory unless absolute).
    Dvr(String),
    /// An HLS segment (`on_hls`).
    Hls(HlsSegment),
}

/// The body of `action` for `req`, as SRS writes it. `stream_id` is the stream's id when
/// the stream exists, as SRS adds it only then.
#[must_use]
pub fn body(
    action: Action,
    server: Server<'_>,
    req: &Request,
    stream_id: Option<u64>,
    details: &Details,
) -> String {
    let mut out = Json::default();
    out.str("server_id", server.server_id);
    out.str("service_id", server.service_id);
    out.str("action", action.name());
    out.str("client_id", &req.client_id.to_string());
    out.str("ip", &req.ip);
    out.str("vhost", &req.vhost);
    out.str("app", &req.app);
    match action {
        Action::Connect => {
            out.str("stream", &req.stream);
            out.str("param", &req.param);
            out.str("tcUrl", &req.tc_url);
            out.str("pageUrl", &req.page_url);
            return out.end();
        }
        Action::Close => {
            let traffic = match details {
                Details::Traffic(t) => *t,
                _ => Traffic::default(),
            };
            out.int("send_bytes", traffic.sent);
            out.int("recv_bytes", traffic.received);
            return out.end();
        }
        Action::Play => {
            out.str("stream", &req.stream);
            out.str("tcUrl", &req.tc_url);
            out.str("param", &req.param);
            out.str("pageUrl", &req.page_url);
        }
        Action::Publish
        | Action::Unpublish
        | Action::Stop
        | Action::Dvr
        | Action::Hls
        | Action::HlsNotify => {
            out.str("tcUrl", &req.tc_url);
            out.str("stream", &req.stream);
            out.str("param", &req.param);
            match details {
                Details::Dvr(file) => {
                    out.str("cwd", server.cwd);
                    out.str("file", file);
                }
                Details::Hls(s) => {
                    out.seconds("duration", s.duration_ms);
                    out.str("cwd", server.cwd);
                    out.str("file", &s.file);
                    out.str("url", &s.url);
                    out.str("m3u8", &s.m3u8);
                    out.str("m3u8_url", &s.m3u8_url);
                    out.int("seq_no", s.seq_no);
                }
                Details::None | Details::Traffic(_) => {}
            }
        }
    }
    out.str("stream_url", &stream_url(&req.vhost, &req.app, &req.stream));
    if let Some(id) = stream_id {
        out.str("stream_id", &id.to_string());
    }
    out.end()
}

/// The URL `on_hls_notify` GETs for the segment at `ts_url` (its playlist line): `template`
/// with SRS's variables filled in, or the segment's own URL when the line is one (under an
/// `hls_entry_prefix` of a CDN), as SRS does.
#[must_use]
pub fn notify_url(template: &str, server: Server<'_>, req: &Request, ts_url: &str) -> String {
    let template = if is_http_url(ts_url) {
        ts_url
    } else {
        template
    };
    template
        .replace("[server_id]", server.server_id)
        .replace("[service_id]", server.service_id)
        .replace("[app]", &req.app)
        .replace("[stream]", &req.stream)
        .replace("[ts_url]", ts_url)
        .replace("[param]", &req.param)
}

/// Whether `url` is an absolute `http://` or `https://` URL (SRS's `srs_string_is_http`): a
/// segment's playlist line under an `hls_entry_prefix` of a CDN.
#[must_use]
pub fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|p| {
        url.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    })
}

/// SRS's stream URL: `/app/stream` on the default vhost, `vhost/app/stream` elsewhere.
#[must_use]
pub fn stream_url(vhost: &str, app: &str, stream: &str) -> String {
    let vhost = if vhost == DEFAULT_VHOST { "" } else { vhost };
    format!("{vhost}/{app}/{stream}")
}

/// SRS's `param` from the stream name's query and the tcUrl (whose own query, e.g. `?vhost=`,
/// SRS moves behind the stream's), `?` included; "" when there is none, or when its only
/// parameter names the default vhost, which SRS clears.
#[must_use]
pub fn param(stream_query: &str, tc_url: &str) -> String {
    let tc_url = tc_url.replace("...vhost...", "?vhost=");
    let tc_query = tc_url.split_once('?').map_or("", |(_, q)| q);
    let query = match (stream_query.is_empty(), tc_query.is_empty()) {
        (true, true) => return String::new(),
        (false, true) => stream_query.to_owned(),
        (true, false) => tc_query.to_owned(),
        (false, false) => format!("{stream_query}?{tc_query}"),
    };
    let vhost = query.split(['&', '?']).find_map(|kv| {
        kv.strip_prefix("vhost=")
            .or_else(|| kv.strip_prefix("domain="))
    });
    if !query.contains('&') && vhost == Some(DEFAULT_VHOST) {
        return String::new();
    }
    format!("?{query}")
}

/// A JSON object written field by field, in the order given, compact as SRS writes it.
#[derive(Default)]
struct Json(String);

impl Json {
    fn key(&mut self, name: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        // Keys are this file's literals: plain ASCII.
        let _ = write!(self.0, "\"{name}\":");
    }

    fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        self.0.push_str(&serde_json::Value::from(value).to_string());
    }

    fn int(&mut self, name: &str, value: u64) {
        self.key(name);
        let _ = write!(self.0, "{value}");
    }

    /// Milliseconds as seconds with two decimals: SRS writes every JSON number with `%.2f`.
    fn seconds(&mut self, name: &str, ms: u64) {
        self.key(name);
        let _ = write!(self.0, "{:.2}", ms as f64 / 1000.0);
    }

    fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Server<'static> = Server {
        server_id: "vid-1",
        service_id: "svc",
        cwd: "/srv",
    };

    fn req() -> Request {
        Request {
            client_id: 107,
            ip: "127.0.0.1".into(),
            vhost: DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: "s".into(),
            param: "?secret=k".into(),
            tc_url: "rtmp://h/live".into(),
            page_url: "http://p/\"q\"".into(),
        }
    }

    fn keys(body: &str) -> Vec<String> {
        // serde_json keeps no order; the keys in the order written, by position.
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(body).expect("valid JSON");
        let mut keys: Vec<(usize, String)> = v
            .keys()
            .map(|k| (body.find(&format!("\"{k}\":")).expect("key"), k.clone()))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn bodies_follow_srs_field_for_field() {
        let r = req();
        let b = body(Action::Publish, SERVER, &r, Some(9), &Details::None);
        assert_eq!(
            b,
            "{\"server_id\":\"vid-1\",\"service_id\":\"svc\",\"action\":\"on_publish\",\
             \"client_id\":\"107\",\"ip\":\"127.0.0.1\",\"vhost\":\"__defaultVhost__\",\
             \"app\":\"live\",\"tcUrl\":\"rtmp://h/live\",\"stream\":\"s\",\
             \"param\":\"?secret=k\",\"stream_url\":\"/live/s\",\"stream_id\":\"9\"}"
        );
        let common = [
            "server_id",
            "service_id",
            "action",
            "client_id",
            "ip",
            "vhost",
            "app",
        ];
        let with = |rest: &[&str]| -> Vec<String> {
            common.iter().chain(rest).map(|s| s.to_string()).collect()
        };
        let b = body(Action::Connect, SERVER, &r, Some(9), &Details::None);
        assert_eq!(keys(&b), with(&["stream", "param", "tcUrl", "pageUrl"]));
        let b = body(Action::Play, SERVER, &r, None, &Details::None);
        assert_eq!(
            keys(&b),
            with(&["stream", "tcUrl", "param", "pageUrl", "stream_url"])
        );
        assert!(
            b.contains("\"pageUrl\":\"http://p/\\\"q\\\"\""),
            "escaped: {b}"
        );
        for a in [Action::Unpublish, Action::Stop] {
            let b = body(a, SERVER, &r, Some(1), &Details::None);
            assert_eq!(
                keys(&b),
                with(&["tcUrl", "stream", "param", "stream_url", "stream_id"])
            );
            assert!(b.contains(&format!("\"action\":\"{}\"", a.name())));
        }
        let b = body(
            Action::Close,
            SERVER,
            &r,
            None,
            &Details::Traffic(Traffic {
                sent: 5,
                received: 6,
            }),
        );
        assert_eq!(keys(&b), with(&["send_bytes", "recv_bytes"]));
        assert!(b.ends_with("\"send_bytes\":5,\"recv_bytes\":6}"), "{b}");
        let dvr = Details::Dvr("./objs/nginx/html/live/s.1.flv".into());
        let b = body(Action::Dvr, SERVER, &r, Some(9), &dvr);
        // The publisher's request, then the file's fields, then the stream's.
        let file = |fields: &[&str], stream_id: bool| {
            let stream = if stream_id {
                &["stream_url", "stream_id"][..]
            } else {
                &["stream_url"][..]
            };
            with(&[&["tcUrl", "stream", "param"][..], fields, stream].concat())
        };
        assert_eq!(keys(&b), file(&["cwd", "file"], true));
        let segment = Details::Hls(HlsSegment {
            duration_ms: 9_366,
            file: "./objs/nginx/html/live/s-3.ts".into(),
            url: "live/s-3.ts".into(),
            m3u8: "./objs/nginx/html/live/s.m3u8".into(),
            m3u8_url: "live/s.m3u8".into(),
            seq_no: 3,
        });
        let b = body(Action::Hls, SERVER, &r, None, &segment);
        let fields = [
            "duration", "cwd", "file", "url", "m3u8", "m3u8_url", "seq_no",
        ];
        assert_eq!(keys(&b), file(&fields, false));
        assert!(
            b.contains("\"duration\":9.37,\"cwd\":\"/srv\",") && b.contains("\"seq_no\":3,"),
            "{b}"
        );
    }

    #[test]
    fn notify_urls_as_srs_fills_them() {
        let r = req();
        let template = "http://cdn/p/[server_id]/[service_id]/[app]/[stream]/[ts_url][param]";
        assert_eq!(
            notify_url(template, SERVER, &r, "s-3.ts"),
            "http://cdn/p/vid-1/svc/live/s/s-3.ts?secret=k"
        );
        let own = "http://edge.cdn/live/s-3.ts";
        assert_eq!(notify_url(template, SERVER, &r, own), own);
    }

    #[test]
    fn stream_url_and_param_as_srs() {
        assert_eq!(stream_url(DEFAULT_VHOST, "live", "s"), "/live/s");
        assert_eq!(stream_url("v.com", "live", "s"), "v.com/live/s");
        assert_eq!(param("secret=k", "rtmp://h/live"), "?secret=k");
        assert_eq!(param("", "rtmp://h/live"), "");
        assert_eq!(param("", "rtmp://h/live?vhost=v.com"), "?vhost=v.com");
        assert_eq!(param("", "rtmp://h/live...vhost...v.com"), "?vhost=v.com");
        assert_eq!(param("a=1", "rtmp://h/live?b=2"), "?a=1?b=2");
        assert_eq!(param("vhost=__defaultVhost__", "rtmp://h/live"), "");
        assert_eq!(
            param("vhost=__defaultVhost__&secret=k", "rtmp://h/live"),
            "?vhost=__defaultVhost__&secret=k"
        );
    }
}
