//! End-to-end: SRS 5's Prometheus exporter (`exporter { enabled on; listen ...; }`). Its
//! listener's `/metrics` and the API's, scraped while ffmpeg publishes and curl plays, parsed
//! with Python's prometheus_client: every metric SRS's exporter writes is there with SRS's
//! labels and types, and srs_streams, srs_clients, srs_clients_total and
//! srs_clients_errs_total follow what clients do (a player that leaves is no error, a kicked
//! one is).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// GETs `url`, asserts a 200 and parses the body with prometheus_client.
fn scrape(url: &str) -> (Value, String) {
    let (status, text) = curl(&[], url);
    assert_eq!(status, 200, "GET {url}: {text}");
    (parse_metrics(&text, url), text)
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// Scrapes `url` until `ready` holds for the parsed metrics, for at most 15 s.
fn scrape_until(url: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    // Each scrape runs Python's parser: checks at most 100 ms apart.
    let (mut v, mut text) = (Value::Null, String::new());
    let held = poll_until_every(Duration::from_secs(15), Duration::from_millis(100), || {
        (v, text) = scrape(url);
        ready(&v)
    });
    assert!(held, "{what} never held:\n{text}");
    v
}

/// SRS's exporter metrics, each with its type as prometheus_client names the family (it drops
/// a counter's `_total`) and its label names.
const SRS_METRICS: &[(&str, &str, &str, &str)] = &[
    (
        "srs_node_uname_info",
        "srs_node_uname_info",
        "gauge",
        "machine,nodename,release,sysname,version",
    ),
    (
        "srs_build_info",
        "srs_build_info",
        "gauge",
        "build_date,code,label,major,pid,server,service,tag,version",
    ),
    ("srs_cpu_percent", "srs_cpu_percent", "gauge", ""),
    ("srs_memory", "srs_memory", "gauge", ""),
    ("srs_send_bytes_total", "srs_send_bytes", "counter", ""),
    (
        "srs_receive_bytes_total",
        "srs_receive_bytes",
        "counter",
        "",
    ),
    ("srs_streams", "srs_streams", "gauge", ""),
    ("srs_clients", "srs_clients", "gauge", ""),
    ("srs_clients_total", "srs_clients", "counter", ""),
    ("srs_clients_errs_total", "srs_clients_errs", "counter", ""),
];

/// Every SRS metric, with SRS's labels and types.
fn assert_srs_metrics(v: &Value, server: &Server) {
    for (sample, family, kind, labels) in SRS_METRICS {
        assert_eq!(v[format!("labels:{sample}")], *labels, "{sample}: {v}");
        // srs_clients (gauge) and srs_clients_total (counter) are one family name to the
        // parser; the later one, the counter, is what it keeps.
        if *sample != "srs_clients" {
            assert_eq!(v[format!("type:{family}")], *kind, "{sample}: {v}");
        }
    }
    let label = |k: &str| v[format!("label:srs_build_info:{k}")].clone();
    assert_eq!(label("label"), "cn-beijing");
    assert_eq!(label("tag"), "cn-edge");
    assert_eq!(label("pid"), server.pid().to_string());
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("server"), label("service"));
    assert_eq!(v["label:srs_node_uname_info:sysname"], "Linux");
    assert!(num(v, "srs_memory") > 0.0, "{v}");
}

/// The API's id of the one client of `kind` (`flv-play`, `fmle-publish`, ...).
fn client_id(server: &Server, kind: &str) -> String {
    let (status, body) = curl(&[], &server.api_url("/api/v1/clients"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no {kind} client: {v}"))
        .to_owned()
}

fn kick(server: &Server, kind: &str) {
    let id = client_id(server, kind);
    let (status, body) = curl(
        &["-X", "DELETE"],
        &server.api_url(&format!("/api/v1/clients/{id}")),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn srs_exporter_metrics_parse_and_follow_the_clients() {
    if !require("ffmpeg")
        || !require("curl")
        || !require("python3")
        || !require_python("prometheus_client")
    {
        return;
    }
    let exporter_port = free_port();
    let server = Server::start(
        2,
        &format!(
            "exporter {{ enabled on; listen 127.0.0.1:{exporter_port}; \
             label cn-beijing; tag cn-edge; }}"
        ),
        "http_remux { enabled on; }",
    );
    wait_port(exporter_port, Duration::from_secs(10));
    let exporter = format!("http://127.0.0.1:{exporter_port}/metrics");

    let (idle, text) = scrape(&exporter);
    assert_srs_metrics(&idle, &server);
    assert!(
        !text.contains("ringcast_"),
        "the exporter serves SRS's alone:\n{text}"
    );
    for count in ["srs_streams", "srs_clients", "srs_clients_total"] {
        assert_eq!(num(&idle, count), 0.0, "{count}: {text}");
    }
    let (status, _) = curl(
        &[],
        &format!("http://127.0.0.1:{exporter_port}/api/v1/versions"),
    );
    assert_eq!(status, 404, "the exporter's listener serves /metrics only");

    let _publisher = ffmpeg_publish(&server.url("livestream"));
    assert!(server.wait_log(
        "publish __defaultVhost__/live/livestream",
        Duration::from_secs(10)
    ));
    let _player = Reaper(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null"])
            .arg(server.flv_url("livestream"))
            .spawn()
            .expect("curl"),
    );
    let busy = scrape_until(&exporter, "a stream, a publisher and a player", |v| {
        num(v, "srs_streams") == 1.0
            && num(v, "srs_clients") == 2.0
            && num(v, "srs_send_bytes_total") > 0.0
    });
    assert_srs_metrics(&busy, &server);
    assert_eq!(num(&busy, "srs_clients_total"), 2.0);
    assert!(num(&busy, "srs_receive_bytes_total") > 0.0);
    assert_eq!(num(&busy, "srs_clients_errs_total"), 0.0);

    // The API's /metrics: ringcast's own beside SRS's, one text the parser takes.
    let (api, _) = scrape(&server.api_url("/metrics"));
    assert_srs_metrics(&api, &server);
    assert_eq!(num(&api, "ringcast_streams"), 1.0);
    assert_eq!(num(&api, "srs_streams"), 1.0);

    // A player that plays and leaves is a client, not an error.
    let rtmp = Client::play(server.port, "livestream").expect("rtmp play");
    scrape_until(&exporter, "the RTMP player counted", |v| {
        num(v, "srs_clients_total") == 3.0
    });
    drop(rtmp);
    scrape_until(&exporter, "the RTMP player gone", |v| {
        num(v, "srs_clients") == 2.0
    });

    // Kicked clients ended in error: an HTTP-FLV player, then the RTMP publisher.
    kick(&server, "flv-play");
    scrape_until(&exporter, "the kicked player counted as an error", |v| {
        num(v, "srs_clients_errs_total") == 1.0 && num(v, "srs_clients") == 1.0
    });
    kick(&server, "fmle-publish");
    let end = scrape_until(&exporter, "the kicked publisher counted as an error", |v| {
        num(v, "srs_clients_errs_total") == 2.0 && num(v, "srs_clients") == 0.0
    });
    assert_eq!(num(&end, "srs_clients_total"), 3.0);
}
