//! SRS's origin cluster on arbitrary bytes: a coworker's answer to a clusters query (what a
//! server anywhere in the cluster may send back), and the same bytes as the query string of
//! one (what anyone may send our API). Whatever parses must build a redirect (RTMP's,
//! HTTP-FLV's, and WHEP's to the origin's API, whose address is the answer's or its `ip`) and
//! an answer, and our own answer must parse back to the same origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::coworkers::{
    answer, api_of, api_redirect, hops, http_redirect, parse_answer, rtmp_redirect, Asked,
    ClusterQuery, Listening, Origin,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let query = ClusterQuery::parse(&text);
    let asked = Asked {
        host: &query.ip,
        vhost: &query.vhost,
        query: &text,
    };
    let _ = hops(&text);
    if let Ok(Some(origin)) = parse_answer(data) {
        let _ = rtmp_redirect(&origin, &query.app, &query.stream, &asked);
        let _ = http_redirect(&origin, 8080, "/live/s.flv", &asked);
        let _ = api_redirect(&origin, 1985, "/rtc/v1/whep/", &asked);
        let (host, port) = api_of(&origin, 1985);
        assert!(port != 0 && !host.contains(['[', ']']) || host == origin.ip);
        let _ = answer(&query, Some(&origin));
    }
    let listening = Listening {
        rtmp: "0.0.0.0:1935".parse().expect("literal address"),
        api: "0.0.0.0:1985".parse().expect("literal address"),
        http: None,
    };
    let here = Origin::here(&listening, &query.vhost, &query, &query.coworker);
    let body = answer(&query, Some(&here));
    assert_eq!(parse_answer(body.as_bytes()), Ok(Some(here)));
});
