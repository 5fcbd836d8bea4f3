//! SRS's origin cluster, sans-IO: the `/api/v1/clusters` question an origin asks its
//! coworkers, the answer it gives them (built and parsed in SRS 6's JSON shapes, so SRS
//! origins and edges can ask a ringcast origin and be asked by one), and the RTMP, HTTP and
//! API (WHEP) addresses a player is redirected to, with the hop count that bounds a redirect
//! loop.
//!
//! It reads no socket, no clock and no hub, and of the config only the listeners: the API and the players' drivers pass
//! in what this server has and where it listens, and do the asking.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, DEFAULT_VHOST};

/// The path of SRS's clusters API.
pub const API_PATH: &str = "/api/v1/clusters";
/// The query parameter that counts the redirects a player has followed in a cluster. SRS
/// has none (its coworkers answer only for streams they have, and a stale answer can send a
/// player round for ever); ringcast adds it to the URL it redirects to, and SRS ignores it.
pub const HOPS_PARAM: &str = "cluster_hops";
/// RTMP's port, where a config listens on nothing (SRS's `SRS_CONSTS_RTMP_DEFAULT_PORT`).
const RTMP_PORT: u16 = 1935;
/// Redirects a player may follow: past this a server that lacks the stream refuses it
/// rather than sending it on (two covers a stream that moved while the player was on its
/// way).
pub const MAX_HOPS: u32 = 2;

/// What a clusters query asks: SRS's `?vhost=&ip=&app=&stream=&coworker=`. The fields are
/// declared in the order SRS echoes them in its answer's `query`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterQuery {
    /// The host the player asked the asking origin for (SRS's `req->host`).
    pub ip: String,
    /// The stream's vhost.
    pub vhost: String,
    /// The application.
    pub app: String,
    /// The stream name, without query.
    pub stream: String,
    /// The coworker as the asker has it configured (`HOST:PORT`): the address by which the
    /// asker reaches the answering server, so the answer's `ip` is one it can reach.
    #[serde(skip)]
    pub coworker: String,
}

impl ClusterQuery {
    /// Parses a query string (percent-decoded; unknown keys are ignored, the first of a
    /// repeated key wins).
    pub fn parse(query: &str) -> Self {
        let mut q = Self::default();
        let mut seen = [false; 5];
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let (i, slot) = match &*k {
                "ip" => (0, &mut q.ip),
                "vhost" => (1, &mut q.vhost),
                "app" => (2, &mut q.app),
                "stream" => (3, &mut q.stream),
                "coworker" => (4, &mut q.coworker),
                _ => continue,
            };
            if !seen[i] {
                seen[i] = true;
                *slot = v.into_owned();
            }
        }
        q
    }

    /// The path and query to ask a coworker with, in SRS's order.
    pub fn request_path(&self) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("vhost", &self.vhost)
            .append_pair("ip", &self.ip)
            .append_pair("app", &self.app)
            .append_pair("stream", &self.stream)
            .append_pair("coworker", &self.coworker)
            .finish();
        format!("{API_PATH}?{query}")
    }
}

/// Where a stream is published: SRS's `data.origin`. The fields are declared in SRS's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The host players are sent to.
    pub ip: String,
    /// Its RTMP port.
    pub port: u16,
    /// The stream's vhost.
    #[serde(default)]
    pub vhost: String,
    /// Its HTTP API, `HOST:PORT`.
    #[serde(default)]
    pub api: String,
    /// The APIs the answer came through, SRS's loop marker (SRS fills in its own only).
    #[serde(default)]
    pub routers: Vec<String>,
    /// Its HTTP-FLV port: ringcast's addition, which SRS's parser ignores; an HTTP player is
    /// redirected to the asking server's own HTTP port when a coworker does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
}

/// Where this server listens, for its answers.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// The first RTMP listener (SRS answers with its first `listen`).
    pub rtmp: SocketAddr,
    /// The HTTP API's listener.
    pub api: SocketAddr,
    /// The HTTP-FLV listener, when HTTP-FLV is served.
    pub http: Option<SocketAddr>,
}

impl Listening {
    /// Where `config` listens: its first `listen`, its `http_api` and its `http_server`.
    pub fn of(config: &Config) -> Self {
        let rtmp = config
            .listen
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], RTMP_PORT)));
        Self {
            rtmp,
            api: config.http_api.listen,
            http: config
                .http_server
                .enabled
                .then_some(config.http_server.listen),
        }
    }
}

impl Origin {
    /// This server's answer for its own stream of `vhost`, asked by `query`; `host` is the
    /// host the question came to (its `Host` header), used when neither the listener nor the
    /// query names a reachable address.
    pub fn here(listening: &Listening, vhost: &str, query: &ClusterQuery, host: &str) -> Self {
        // A wildcard or loopback listener is no address for another machine: as SRS does, use
        // the address the asker reached us by (SRS issue 1501: behind NAT or in Docker, that
        // is the exposed one). SRS checks loopback only; a wildcard is no better.
        let ip = if reachable(listening.rtmp.ip()) {
            listening.rtmp.ip().to_string()
        } else {
            [host_of(&query.coworker), host_of(host)]
                .into_iter()
                .find(|h| !h.is_empty())
                .map_or_else(|| listening.rtmp.ip().to_string(), str::to_owned)
        };
        let api = if reachable(listening.api.ip()) {
            listening.api.to_string()
        } else {
            join_host_port(&ip, listening.api.port())
        };
        Self {
            port: listening.rtmp.port(),
            vhost: vhost.to_owned(),
            routers: vec![api.clone()],
            api,
            http_port: listening.http.map(|a| a.port()),
            ip,
        }
    }
}

fn reachable(ip: IpAddr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified()
}

/// The host of `HOST[:PORT]` or `[V6][:PORT]`; a bare IPv6 address is all host.
fn host_of(hostport: &str) -> &str {
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => hostport,
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The body SRS answers a clusters query with: `origin` is this server's stream, or null
/// when it does not have it (SRS's "not found", still code 0 and HTTP 200).
pub fn answer(query: &ClusterQuery, origin: Option<&Origin>) -> String {
    #[derive(Serialize)]
    struct Answer<'a> {
        code: i64,
        data: Data<'a>,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        query: &'a ClusterQuery,
        origin: Option<&'a Origin>,
    }
    let body = Answer {
        code: 0,
        data: Data { query, origin },
    };
    serde_json::to_string(&body).expect("strings and numbers always serialize")
}

/// Why a coworker's answer is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not SRS's `{"code": N, "data": {...}}`.
    #[error("not SRS's answer: {0}")]
    Shape(&'static str),
    /// `code` is not 0.
    #[error("error code {0}")]
    Code(i64),
    /// `data.origin` lacks a string `ip` or an integer `port` of 0 to 65535.
    #[error("bad origin: {0}")]
    Origin(String),
}

/// Reads a coworker's answer: `Ok(Some)` where the stream is, `Ok(None)` when the coworker
/// does not have it (SRS's null origin, or an origin without host or port, which SRS skips).
pub fn parse_answer(body: &[u8]) -> Result<Option<Origin>, AnswerError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let obj = v.as_object().ok_or(AnswerError::Shape("not an object"))?;
    match obj.get("code").map(Value::as_i64) {
        Some(Some(0)) => {}
        Some(Some(code)) => return Err(AnswerError::Code(code)),
        _ => return Err(AnswerError::Shape("no integer code")),
    }
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .ok_or(AnswerError::Shape("no data object"))?;
    let origin = match data.get("origin") {
        None | Some(Value::Null) => return Ok(None),
        Some(o) => Origin::deserialize(o).map_err(|e| AnswerError::Origin(e.to_string()))?,
    };
    Ok(Some(origin).filter(|o| !o.ip.is_empty() && o.port != 0))
}

/// Redirects the player has followed, from `cluster_hops` in its query (SRS's `...` separator
/// included, as the RTMP side reads queries).
pub fn hops(query: &str) -> u32 {
    query
        .split(['&', '?'])
        .flat_map(|p| p.split("..."))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == HOPS_PARAM)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// What a player asked for, to build the URL it is redirected to.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The host it asked (the tcUrl's or the `Host` header's).
    pub host: &'a str,
    /// The stream's vhost: named on the URL when the query names none, as SRS names it, so
    /// that it survives the move to a bare address (the default vhost is named by the host
    /// the player asked, when that is a name).
    pub vhost: &'a str,
    /// Its query as sent (a token, `vhost=`...), passed on as SRS passes it.
    pub query: &'a str,
}

impl Asked<'_> {
    /// The query for the next server: the player's own, the vhost named when it was not,
    /// and the hop count one more than this one's.
    fn next_query(&self) -> String {
        let mut parts: Vec<String> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != HOPS_PARAM)
            .map(str::to_owned)
            .collect();
        if !self.query.contains("vhost=") {
            let host = host_of(self.host);
            let guess = if self.vhost != DEFAULT_VHOST {
                self.vhost
            } else if host.parse::<IpAddr>().is_err() {
                host
            } else {
                ""
            };
            if !guess.is_empty() {
                parts.push(format!("vhost={guess}"));
            }
        }
        parts.push(format!("{HOPS_PARAM}={}", hops(self.query) + 1));
        parts.join("&")
    }

    /// True when `ip:port` is where the player already is.
    pub fn is_here(&self, ip: &str, port: u16, own_port: u16) -> bool {
        port == own_port && host_of(self.host).eq_ignore_ascii_case(ip)
    }
}

/// SRS's RTMP URL for a redirect, `rtmp://IP:PORT/APP/STREAM?QUERY`, and its tcUrl (the URL
/// without the stream), which SRS sends as `ex.redirect` beside the URL as `ex.redirect2`.
pub fn rtmp_redirect(
    origin: &Origin,
    app: &str,
    stream: &str,
    asked: &Asked<'_>,
) -> (String, String) {
    let tc_url = format!("rtmp://{}/{app}", join_host_port(&origin.ip, origin.port));
    let url = format!("{tc_url}/{stream}?{}", asked.next_query());
    (tc_url, url)
}

/// The `Location` of an HTTP redirect to `origin` for `path` (the request's path), on the
/// origin's HTTP port or else `own_http_port`.
pub fn http_redirect(origin: &Origin, own_http_port: u16, path: &str, asked: &Asked<'_>) -> String {
    let port = origin.http_port.unwrap_or(own_http_port);
    format!(
        "http://{}{path}?{}",
        join_host_port(&origin.ip, port),
        asked.next_query()
    )
}

/// The HTTP API of `origin`, where its WebRTC signalling is served, as `(host, port)`: its
/// `api` (`HOST:PORT`, or `[V6]:PORT`), else its `ip` on `own_api_port` when the answer
/// names none or one without a port.
pub fn api_of(origin: &Origin, own_api_port: u16) -> (&str, u16) {
    let named = origin.api.rsplit_once(':').and_then(|(host, port)| {
        let port = port.parse().ok().filter(|&p| p != 0)?;
        // An IPv6 host is bracketed; a bare one's last colon is no port separator.
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host,
        };
        (!host.is_empty() && !host.contains(['[', ']'])).then_some((host, port))
    });
    named.unwrap_or((origin.ip.as_str(), own_api_port))
}

/// The `Location` of a redirect of a WHEP offer to `origin` for `path` (the request's path):
/// on the origin's HTTP API, which serves signalling (see [`api_of`]), with the player's
/// query and one more hop.
pub fn api_redirect(origin: &Origin, own_api_port: u16, path: &str, asked: &Asked<'_>) -> String {
    let (host, port) = api_of(origin, own_api_port);
    format!(
        "http://{}{path}?{}",
        join_host_port(host, port),
        asked.next_query()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(rtmp: &str) -> Listening {
        Listening {
            rtmp: rtmp.parse().unwrap(),
            api: "0.0.0.0:1985".parse().unwrap(),
            http: Some("0.0.0.0:8080".parse().unwrap()),
        }
    }

    fn query(coworker: &str) -> ClusterQuery {
        ClusterQuery::parse(&format!(
            "vhost=__defaultVhost__&ip=10.0.0.9&app=live&stream=livestream&coworker={coworker}"
        ))
    }

    #[test]
    fn a_query_parses_and_goes_back_out_in_srs_order() {
        let q =
            ClusterQuery::parse("stream=a%20b&app=live&vhost=v&ip=h&coworker=c:1985&x=1&app=no");
        assert_eq!(
            q,
            ClusterQuery {
                ip: "h".into(),
                vhost: "v".into(),
                app: "live".into(),
                stream: "a b".into(),
                coworker: "c:1985".into(),
            }
        );
        assert_eq!(
            q.request_path(),
            "/api/v1/clusters?vhost=v&ip=h&app=live&stream=a+b&coworker=c%3A1985"
        );
        assert_eq!(
            ClusterQuery::parse(&q.request_path()[API_PATH.len() + 1..]),
            q
        );
    }

    #[test]
    fn the_answer_is_srs_s_json_with_the_address_the_asker_used() {
        let q = query("192.168.1.5:1985");
        let here = Origin::here(&listening("0.0.0.0:1935"), "__defaultVhost__", &q, "x:1985");
        assert_eq!(
            answer(&q, Some(&here)),
            r#"{"code":0,"data":{"query":{"ip":"10.0.0.9","vhost":"__defaultVhost__","app":"live","stream":"livestream"},"origin":{"ip":"192.168.1.5","port":1935,"vhost":"__defaultVhost__","api":"192.168.1.5:1985","routers":["192.168.1.5:1985"],"http_port":8080}}}"#
        );
        assert_eq!(
            answer(&q, None),
            r#"{"code":0,"data":{"query":{"ip":"10.0.0.9","vhost":"__defaultVhost__","app":"live","stream":"livestream"},"origin":null}}"#
        );
    }

    #[test]
    fn the_answer_s_ip_is_the_listener_then_the_coworker_then_the_host_header() {
        let ip = |rtmp: &str, coworker: &str, host: &str| {
            Origin::here(&listening(rtmp), "v", &query(coworker), host).ip
        };
        assert_eq!(ip("10.1.1.1:1935", "192.168.1.5:1985", "h"), "10.1.1.1");
        assert_eq!(ip("127.0.0.1:1935", "192.168.1.5:1985", "h"), "192.168.1.5");
        assert_eq!(ip("0.0.0.0:1935", "[fd00::1]:1985", "h"), "fd00::1");
        assert_eq!(ip("0.0.0.0:1935", "", "api.example:1985"), "api.example");
        assert_eq!(ip("0.0.0.0:1935", "", ""), "0.0.0.0");
        let v6 = Origin::here(&listening("[::]:1935"), "v", &query("[fd00::1]:1985"), "");
        assert_eq!(v6.api, "[fd00::1]:1985");
    }

    #[test]
    fn answers_parse_srs_s_and_ours_and_refuse_the_rest() {
        let srs = br#"{"code":0,"data":{"query":{"ip":"a","vhost":"v","app":"live","stream":"s"},
            "origin":{"ip":"10.0.0.2","port":19350,"vhost":"v","api":"10.0.0.2:9090","routers":["10.0.0.2:9090"]}}}"#;
        let o = parse_answer(srs).unwrap().unwrap();
        assert_eq!(
            (o.ip.as_str(), o.port, o.http_port),
            ("10.0.0.2", 19350, None)
        );
        let q = query("c:1");
        let ours = Origin::here(&listening("10.0.0.3:1935"), "v", &q, "");
        assert_eq!(
            parse_answer(answer(&q, Some(&ours)).as_bytes()),
            Ok(Some(ours))
        );
        assert_eq!(parse_answer(answer(&q, None).as_bytes()), Ok(None));
        assert_eq!(
            parse_answer(br#"{"code":0,"data":{"origin":{"ip":"","port":1935}}}"#),
            Ok(None)
        );
        assert_eq!(parse_answer(br#"{"code":0,"data":{}}"#), Ok(None));
        assert_eq!(
            parse_answer(br#"{"code":2048,"data":{}}"#),
            Err(AnswerError::Code(2048))
        );
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"data":{}}"#,
            br#"{"code":0}"#,
            br#"{"code":0,"data":{"origin":{"ip":"a","port":"1935"}}}"#,
            br#"{"code":0,"data":{"origin":{"ip":"a","port":70000}}}"#,
            br#"{"code":0,"data":{"origin":{"port":1935}}}"#,
            br#"{"code":0,"data":{"origin":7}}"#,
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn redirects_carry_the_player_s_query_the_vhost_and_one_more_hop() {
        let origin = Origin {
            ip: "10.0.0.2".into(),
            port: 19350,
            http_port: Some(8081),
            ..Origin::default()
        };
        let asked = Asked {
            host: "edge.example",
            vhost: "__defaultVhost__",
            query: "token=t&cluster_hops=1",
        };
        assert_eq!(
            rtmp_redirect(&origin, "live", "s", &asked),
            (
                "rtmp://10.0.0.2:19350/live".to_owned(),
                "rtmp://10.0.0.2:19350/live/s?token=t&vhost=edge.example&cluster_hops=2".to_owned()
            )
        );
        let plain = Asked {
            host: "127.0.0.1:8080",
            vhost: "__defaultVhost__",
            query: "",
        };
        assert_eq!(
            http_redirect(&origin, 8080, "/live/s.flv", &plain),
            "http://10.0.0.2:8081/live/s.flv?cluster_hops=1"
        );
        let srs = Origin {
            http_port: None,
            ..origin.clone()
        };
        assert_eq!(
            http_redirect(&srs, 8080, "/live/s.flv", &plain),
            "http://10.0.0.2:8080/live/s.flv?cluster_hops=1"
        );
        let named = Asked {
            host: "10.0.0.1",
            vhost: "v",
            query: "vhost=v",
        };
        assert_eq!(
            rtmp_redirect(&origin, "live", "s", &named).1,
            "rtmp://10.0.0.2:19350/live/s?vhost=v&cluster_hops=1"
        );
        let unnamed = Asked { query: "", ..named };
        assert_eq!(
            rtmp_redirect(&origin, "live", "s", &unnamed).1,
            "rtmp://10.0.0.2:19350/live/s?vhost=v&cluster_hops=1"
        );
        let whep = Asked {
            host: "127.0.0.1:1985",
            vhost: "__defaultVhost__",
            query: "app=live&stream=s",
        };
        let at_api = Origin {
            api: "10.0.0.2:1986".into(),
            ..origin.clone()
        };
        assert_eq!(
            api_redirect(&at_api, 1985, "/rtc/v1/whep/", &whep),
            "http://10.0.0.2:1986/rtc/v1/whep/?app=live&stream=s&cluster_hops=1"
        );
        let v6 = Origin {
            api: "[fd00::2]:1986".into(),
            ..origin.clone()
        };
        assert_eq!(api_of(&v6, 1985), ("fd00::2", 1986));
        for bad in [
            "",
            "10.0.0.3",
            "10.0.0.3:0",
            ":1986",
            "[fd00::2",
            "fd00::2",
            "10.0.0.3:x",
        ] {
            let o = Origin {
                api: bad.into(),
                ..origin.clone()
            };
            assert_eq!(api_of(&o, 1985), ("10.0.0.2", 1985), "api {bad:?}");
        }
        assert!(plain.is_here("127.0.0.1", 8080, 8080));
        assert!(!plain.is_here("127.0.0.1", 8081, 8080));
    }

    #[test]
    fn hops_count_from_the_query() {
        assert_eq!(hops(""), 0);
        assert_eq!(hops("token=1&cluster_hops=2"), 2);
        assert_eq!(hops("cluster_hops=x"), 0);
        assert_eq!(hops("vhost=v...cluster_hops=1"), 1);
    }
}
