//! Who may publish, play and administer, end to end: a vhost's `security {}` rules by CIDR
//! for RTMP publish and play, HTTP-FLV play and WHIP/WHEP offers (the test's clients connect
//! from 127.0.0.1 and from 127.0.0.2, both loopback), and the API's Basic auth: 401 without
//! or with wrong credentials, the state-changing routes refused without, `/metrics` as
//! configured, bad headers answered without hurting the connection, and the start-up warning
//! for an API open to the network.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{curl, free_port, media_tags, require, ApiConn, Client, Server};

/// The second loopback address the tests connect from.
const OTHER: &str = "127.0.0.2";
/// `admin:s3cret`, as curl and browsers send it.
const GOOD: &str = "Authorization: Basic YWRtaW46czNjcmV0";
/// `admin:wrong`.
const WRONG: &str = "Authorization: Basic YWRtaW46d3Jvbmc=";
const AUTH: &str = "auth { enabled on; username admin; password s3cret; }";

fn local(ip: &str) -> IpAddr {
    ip.parse().expect("an address")
}

/// An SDP offer that sends (`publish`) or receives video.
fn offer(publish: bool) -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    let direction = if publish {
        Direction::SendOnly
    } else {
        Direction::RecvOnly
    };
    api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

/// POSTs an SDP offer to the WHIP or WHEP `path`, from `from` when given.
fn post_offer(server: &Server, path: &str, sdp: &str, from: Option<&str>) -> (u16, String) {
    let mut args = vec!["-X", "POST", "-H", "Content-Type: application/sdp"];
    if let Some(ip) = from {
        args.extend(["--interface", ip]);
    }
    args.extend(["--data-binary", sdp]);
    curl(&args, &server.api_url(path))
}

/// Asserts a `security` refusal: 403 with SRS's `code` in a JSON body.
fn assert_refused((status, body): (u16, String), code: u64) {
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["code"], code, "{body}");
}

#[test]
fn security_rules_by_address_for_every_way_in() {
    if !require("curl") {
        return;
    }
    // The deny rule wins over the allow rule that also names 127.0.0.1, as in SRS.
    let udp = free_port();
    let server = Server::start_api(
        1,
        "0.0.0.0",
        "",
        &format!("rtc_server {{ enabled on; listen 127.0.0.1:{udp}; candidate 127.0.0.1; }}"),
        "http_remux { enabled on; }\nrtc { enabled on; rtmp_to_rtc on; }\n\
         security { enabled on; allow publish 127.0.0.1; allow play 127.0.0.0/8; \
         deny play 127.0.0.1/32; }",
    );

    let refused = Client::publish_from(local(OTHER), server.port, "cam").err();
    assert_eq!(refused.as_deref(), Some("NetStream.Publish.BadName"));
    let mut publisher = Client::publish(server.port, "cam").expect("127.0.0.1 may publish");
    for tag in media_tags().iter().take(150) {
        publisher.send(tag, tag.timestamp).expect("sending media");
    }

    let refused = Client::play(server.port, "cam").err().unwrap_or_default();
    assert!(refused.contains("Refused"), "{refused}");
    let mut player = Client::play_from(local(OTHER), server.port, "cam").expect("127.0.0.2 plays");
    let media = player
        .media_for(Duration::from_secs(5), |m| m.len() >= 3)
        .expect("media for the allowed player");
    assert!(media.len() >= 3, "{} messages", media.len());

    assert_refused(curl(&[], &server.flv_url("cam")), 1053);
    // Allowed, the FLV stream flows until curl's own deadline ends it.
    let (status, _) = curl(&["--interface", OTHER, "-m", "1"], &server.flv_url("cam"));
    assert_eq!(status, 200);

    let whep = "/rtc/v1/whep/?app=live&stream=cam";
    assert_refused(post_offer(&server, whep, &offer(false), None), 1053);
    let whip = "/rtc/v1/whip/?app=live&stream=webcam";
    assert_refused(post_offer(&server, whip, &offer(true), Some(OTHER)), 1054);
    let (status, body) = post_offer(&server, whip, &offer(true), None);
    assert_eq!(status, 201, "{body}");

    // Each refusal is logged once, with the rule.
    let log = server.log();
    let denied_plays =
        log.matches("127.0.0.1: play denied by security rule `deny play 127.0.0.1/32`");
    assert_eq!(denied_plays.count(), 1, "{log}");
    assert_eq!(
        log.matches("127.0.0.2: publish not allowed").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("HTTP-FLV play").count(), 1, "{log}");
    assert_eq!(log.matches("WebRTC play").count(), 1, "{log}");
    assert_eq!(log.matches("WebRTC publish").count(), 1, "{log}");
    // An API on 0.0.0.0 without auth is worth a warning that says how to fix it.
    assert!(log.contains("without auth"), "{log}");
    assert!(
        log.contains("auth { enabled on; username NAME; password PASS; }"),
        "{log}"
    );
}

#[test]
fn api_auth_guards_the_api_and_metrics() {
    let server = Server::start_api(1, "0.0.0.0", AUTH, "", "");
    let mut api = ApiConn::connect(server.api_port);

    let (status, head, body) = api.request("GET", "/api/v1/versions", &[]);
    assert_eq!(status, 401);
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"ringcast\""),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(v["code"], 401);
    assert_eq!(api.request("GET", "/api/v1/versions", &[WRONG]).0, 401);
    assert_eq!(api.request("GET", "/api/v1/versions", &[GOOD]).0, 200);
    assert_eq!(api.request("GET", "/metrics", &[]).0, 401);
    assert_eq!(api.request("GET", "/metrics", &[GOOD]).0, 200);
    // Open, as in SRS: the CORS preflight, the root, and WebRTC signalling.
    assert_eq!(api.request("OPTIONS", "/api/v1/clients/1", &[]).0, 200);
    assert_eq!(api.request("GET", "/", &[]).0, 200);
    let (status, _, _) = api.request("DELETE", "/rtc/v1/whip/?session=00", &[]);
    assert_ne!(status, 401);

    // Kicking a client and taking a CPU profile: refused without credentials.
    let publisher = Client::publish(server.port, "cam").expect("publish");
    let (_, _, clients) = api.request("GET", "/api/v1/clients", &[GOOD]);
    let clients: serde_json::Value = serde_json::from_slice(&clients).expect("JSON");
    let id = clients["clients"][0]["id"]
        .as_str()
        .expect("a client id")
        .to_owned();
    let kick = format!("/api/v1/clients/{id}");
    assert_eq!(api.request("DELETE", &kick, &[]).0, 401);
    assert_eq!(api.request("DELETE", &kick, &[WRONG]).0, 401);
    assert_eq!(
        api.request("GET", "/api/v1/profile/cpu?seconds=1", &[]).0,
        401
    );
    assert_eq!(api.request("GET", "/api/v1/valgrind", &[]).0, 401);
    // With credentials the profile route answers for itself: a bad duration is its 400 (a
    // real profile would only add its seconds to the test).
    assert_eq!(
        api.request("GET", "/api/v1/profile/cpu?seconds=nope", &[GOOD])
            .0,
        400
    );
    assert_eq!(api.request("GET", "/api/v1/valgrind", &[GOOD]).0, 200);
    assert_eq!(api.request("DELETE", &kick, &[GOOD]).0, 200);
    assert!(
        server.wait_log("kicked by the HTTP API", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    drop(publisher);

    // Bad headers: 401 each, and the same connection serves the next request.
    let oversize = format!("Authorization: Basic {}", "QUFB".repeat(2048));
    for bad in [
        oversize.as_str(),
        "Authorization: Basic !!!not base64",
        "Authorization: Basic YWRtaW4=",
        "Authorization: Bearer YWRtaW46czNjcmV0",
        "Authorization: Basic",
        "Authorization: Basic //79",
    ] {
        assert_eq!(
            api.request("GET", "/api/v1/summaries", &[bad]).0,
            401,
            "{bad:.40}"
        );
    }
    assert_eq!(api.request("GET", "/api/v1/summaries", &[GOOD]).0, 200);
    assert_eq!(
        ApiConn::connect(server.api_port)
            .request("GET", "/api/v1/summaries", &[GOOD])
            .0,
        200
    );

    // Auth on: no warning for 0.0.0.0.
    assert!(!server.log().contains("without auth"), "{}", server.log());
}

#[test]
fn public_metrics_leaves_only_metrics_open() {
    let auth = AUTH.replace('}', "public_metrics on; }");
    let server = Server::start_api(1, "127.0.0.1", &auth, "", "");
    let mut api = ApiConn::connect(server.api_port);
    let (status, _, body) = api.request("GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("# TYPE"),
        "metrics text"
    );
    assert_eq!(api.request("GET", "/api/v1/summaries", &[]).0, 401);
    assert!(!server.log().contains("without auth"), "{}", server.log());
}

#[test]
fn no_exposure_warning_for_an_api_on_loopback() {
    let server = Server::start(1, "", "");
    assert!(server.wait_log("HTTP on 127.0.0.1", Duration::from_secs(5)));
    assert!(!server.log().contains("without auth"), "{}", server.log());
}
