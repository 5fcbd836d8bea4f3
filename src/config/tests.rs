//! Unit tests of the config as operators meet it: whole texts through [`Config::parse`] and
//! files through [`Config::load`], checked against the typed result, the rendered errors
//! and the warnings. They see only what `mod.rs` exports, as callers do.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn http_remux_mount() {
    let (config, warnings) = parse(
        "vhost a { http_remux { enabled on; mount [app]/[stream].flv; } }\n\
             vhost b { http_remux { enabled off; } }\nvhost c { http_remux { enabled on; } }",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.vhost("a").http_remux.as_deref(),
        Some("[app]/[stream].flv")
    );
    assert_eq!(config.vhost("b").http_remux, None);
    assert_eq!(
        config.vhost("c").http_remux.as_deref(),
        Some(DEFAULT_FLV_MOUNT)
    );
    let err = Config::parse(
        "vhost a {\n http_remux {\n enabled on;\n mount [app]/live.m3u8;\n }\n}",
        FILE,
    )
    .expect_err("not an FLV mount");
    assert_eq!(err.line(), Some(4));
    assert!(
        err.to_string().starts_with("conf/test.conf:4: mount:"),
        "{err}"
    );
}

/// SRS 6's `dvr {}`: its defaults, every directive read, `dvr_apply` as SRS filters.
#[test]
fn dvr_block() {
    let (config, warnings) = parse(
        "vhost a { dvr { enabled on; } }\n\
         vhost b { dvr { enabled on; dvr_apply live/one live/two; dvr_plan segment;\n\
         dvr_path /data/[vhost]/[app]/[stream]/[2006]/[01]/[02]/[15].[04].[05].[999].mp4;\n\
         dvr_duration 5; dvr_wait_keyframe off; time_jitter zero; dvr_unknown 1; } }\n\
         vhost c { dvr { enabled on; dvr_apply all; time_jitter off; } }",
    );
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:4: vhost.dvr.dvr_unknown: not supported by ringcast, ignored (reported once)"]
    );
    let a = &config.vhost("a").dvr;
    assert_eq!(
        *a,
        Dvr {
            enabled: true,
            ..Dvr::default()
        }
    );
    assert_eq!(a.path, DEFAULT_DVR_PATH);
    assert_eq!(
        (a.plan, a.duration, a.wait_keyframe, a.time_jitter),
        (
            DvrPlan::Session,
            Duration::from_secs(30),
            true,
            TimeJitter::Full
        )
    );
    assert!(a.applies_to("live", "anything"));
    let b = &config.vhost("b").dvr;
    assert_eq!(b.plan, DvrPlan::Segment);
    assert_eq!(b.duration, Duration::from_secs(5));
    assert!(!b.wait_keyframe);
    assert_eq!(b.time_jitter, TimeJitter::Zero);
    assert!(b.path.ends_with("[15].[04].[05].[999].mp4"));
    assert!(b.applies_to("live", "two") && !b.applies_to("live", "three"));
    assert!(!b.applies_to("other", "one"));
    let c = &config.vhost("c").dvr;
    assert_eq!((c.apply.as_ref(), c.time_jitter), (None, TimeJitter::Off));
    assert!(
        !config.vhost(DEFAULT_VHOST).dvr.applies_to("live", "s"),
        "off by default"
    );

    assert_err(
        "vhost a { dvr { dvr_plan append; } }",
        "conf/test.conf:1: dvr_plan: `append` is not `session` or `segment`",
    );
    assert_err(
        "vhost a { dvr { time_jitter fast; } }",
        "conf/test.conf:1: time_jitter: `fast` is not one of `full`, `zero`, `off`",
    );
    assert!(Config::parse("vhost a { dvr { dvr_duration 1.5; } }", FILE).is_err());
    assert!(Config::parse("vhost a { dvr on; }", FILE).is_err());
}

#[test]
fn http_remux_ts_and_audio_mounts_load_with_a_warning() {
    for ext in ["ts", "aac", "mp3"] {
        let text = format!(
            "vhost a {{\n http_remux {{\n enabled on;\n mount [vhost]/[app]/[stream].{ext};\n }}\n}}\n\
             vhost b {{ http_remux {{ enabled off; mount [app]/[stream].{ext}; }} }}"
        );
        let (config, warnings) = parse(&text);
        assert_eq!(
            config.vhost("a").http_remux,
            None,
            "{ext}: not served as FLV"
        );
        assert_eq!(config.vhost("b").http_remux, None);
        assert_eq!(
            messages(&warnings),
            [format!(
                "conf/test.conf:4: http_remux: mount [vhost]/[app]/[stream].{ext}: \
                 not served yet, only .flv mounts are"
            )],
            "a disabled mount is not worth a warning"
        );
    }
}

const FILE: &str = "conf/test.conf";

fn parse(text: &str) -> (Config, Vec<Warning>) {
    match Config::parse(text, FILE) {
        Ok(parsed) => parsed,
        Err(e) => panic!("config must parse, got: {e}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    Config::parse(text, FILE).expect_err("config must be rejected")
}

/// Asserts the rendered error, which is what operators actually see.
fn assert_err(text: &str, expected: &str) {
    assert_eq!(parse_err(text).to_string(), expected);
}

fn messages(warnings: &[Warning]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A modern (SRS 5/6) config in the shape of SRS's conf/full.conf,
/// exercising every supported directive next to many unsupported ones.
const SRS_FULL: &str = r#"
# all config for srs
listen              1935 127.0.0.1:19350;
pid                 ./objs/srs.pid;
chunk_size          60000;
ff_log_dir          ./objs;
ff_log_level        warning;
srs_log_tank        file;
srs_log_level       info;
srs_log_level_v2    info;
srs_log_file        ./objs/srs.log;
max_connections     1000;
daemon              on;
utc_time            off;
work_dir            ./;
asprocess           off;
empty_ip_ok         on;
grace_start_wait    2300;
grace_final_wait    3200;
force_grace_quit    off;
disable_daemon_for_docker on;
inotify_auto_reload off;
auto_reload_for_docker on;
query_latest_version off;
first_wait_for_qlv  30;
threads {
    interval        30;
}
circuit_breaker {
    enabled         on;
    high_threshold  90;
    high_pulse      2;
}
tencentcloud_cls {
    enabled on;
    label cn-beijing;
    tag cn-edge;
}
exporter {
    enabled off;
    listen 9972;
    label cn-beijing;
    tag cn-edge;
}
heartbeat {
    enabled         off;
    interval        9.3;
    url             http://127.0.0.1:8085/api/v1/servers;
    device_id       "my-srs-device";
    summaries       off;
    ports           off;
}
stats {
    enabled         on;
    network         0;
    disk            sda sdb xvda xvdb;
}
http_api {
    enabled         on;
    listen          1985;
    crossdomain     on;
    raw_api {
        enabled             off;
        allow_reload        off;
        allow_query         off;
        allow_update        off;
    }
    auth {
        enabled         on;
        username        admin;
        password        admin;
    }
    https {
        enabled on;
        listen 1990;
        key ./conf/server.key;
        cert ./conf/server.crt;
    }
}
http_server {
    enabled         on;
    listen          0.0.0.0:8080;
    dir             ./objs/nginx/html;
    crossdomain     on;
    https {
        enabled on;
        listen 8088;
        key ./conf/server.key;
        cert ./conf/server.crt;
    }
}
srt_server {
    enabled on;
    listen 10080;
    maxbw 1000000000;
    connect_timeout 4000;
    peerlatency 0;
    recvlatency 0;
    latency 0;
    tsbpdmode off;
    tlpktdrop off;
    sendbuf 2000000;
    recvbuf 2000000;
    passphrase xxxxxxxxxxxx;
    pbkeylen 16;
    default_app live;
    mix_correct on;
}
rtc_server {
    enabled on;
    listen 8000; # UDP port
    protocol udp;
    tcp {
        enabled off;
        listen 8000;
    }
    candidate *;
    use_auto_detect_network_ip on;
    ip_family ipv4;
    api_as_candidates on;
    resolve_api_domain on;
    keep_api_domain off;
    ecdsa on;
    encrypt on;
    reuseport 1;
    merge_nalus off;
    black_hole {
        enabled off;
        addr 127.0.0.1:10000;
    }
}
stream_caster {
    enabled         off;
    caster          mpegts_over_udp;
    output          rtmp://127.0.0.1/live/livestream;
    listen          8935;
}

vhost __defaultVhost__ {
    tcp_nodelay     on;
    min_latency     on;
    chunk_size      4096;
    play {
        gop_cache       off;
        queue_length    2.5;
        mw_latency      100;
        mw_msgs         8;
        time_jitter     full;
        atc             off;
        mix_correct     off;
        atc_auto        off;
        send_min_interval 10.0;
        reduce_sequence_header on;
    }
    publish {
        mr          off;
        mr_latency  350;
        firstpkt_timeout    20000;
        normal_timeout      7000;
        parse_sps   on;
        try_annexb_first on;
        kickoff_for_idle    0;
    }
    rtc {
        enabled     on;
        rtmp_to_rtc off;
        rtc_to_rtmp off;
        bframe      discard;
        nack        on;
        twcc        on;
    }
    http_remux {
        enabled     on;
        fast_cache  30;
        mount       [vhost]/[app]/[stream].flv;
        drop_if_not_match off;
        has_audio on;
        has_video on;
        guess_has_av on;
    }
    hls {
        enabled         on;
        hls_fragment    10;
        hls_td_ratio    1.5;
        hls_window      60;
        hls_path        ./objs/nginx/html;
        hls_m3u8_file   [app]/[stream].m3u8;
        hls_ts_file     [app]/[stream]-[seq].ts;
        hls_dispose     0;
    }
    dvr {
        enabled      off;
        dvr_apply       all;
        dvr_plan        session;
        dvr_path        ./objs/nginx/html/[app]/[stream].[timestamp].flv;
        dvr_duration    30;
        dvr_wait_keyframe       on;
        time_jitter             full;
    }
    http_hooks {
        enabled         on;
        on_connect      http://127.0.0.1:8085/api/v1/clients http://localhost:8085/api/v1/clients;
        on_publish      http://127.0.0.1:8085/api/v1/streams;
        on_play         http://127.0.0.1:8085/api/v1/sessions;
        on_hls          http://127.0.0.1:8085/api/v1/hls;
        on_hls_notify   http://127.0.0.1:8085/api/v1/hls/[server_id]/[app]/[stream]/[ts_url][param];
    }
    forward {
        enabled on;
        destination 127.0.0.1:19350 backup.example.com;
        backend http://127.0.0.1:8085/api/v1/forward;
    }
}

vhost same.edge.srs.com {
    cluster {
        mode            remote;
        origin          127.0.0.1:1935 localhost:1935;
        token_traverse  off;
    }
    hls {
        enabled off;
    }
}

vhost transcode.srs.com {
    enabled         off;
    gop_cache       off;
    queue_length    30;
    mw_latency      350;
    transcode {
        enabled     on;
        ffmpeg      ./objs/ffmpeg/bin/ffmpeg;
        engine example {
            enabled         on;
            iformat         flv;
            vfilter {
                i               ./doc/ffmpeg-logo.png;
                filter_complex  'overlay=10:10';
                vf              'drawtext=text=SRS:x=10:y=10:fontcolor=#cccccc;split [a][b]';
            }
            vcodec          libx264;
            vparams {
                t               100;
                coder           1;
            }
            acodec          libfdk_aac;
            aparams {
            }
            oformat         flv;
            output          rtmp://127.0.0.1:[port]/[app]?vhost=[vhost]/[stream]_[engine];
        }
    }
    ingest livestream {
        enabled      on;
        input {
            type    file;
            url     ./doc/source.200kbps.768x320.flv;
        }
        ffmpeg      ./objs/ffmpeg/bin/ffmpeg;
        engine {
            enabled          off;
            output          rtmp://127.0.0.1:[port]/live?vhost=[vhost]/livestream;
        }
    }
    security {
        enabled         on;
        deny            publish     all;
        allow           play        all;
    }
    refer {
        enabled         on;
        all           github.com github.io;
    }
    exec {
        enabled     on;
        publish     ./objs/ffmpeg/bin/ffmpeg -f flv -i [url] -c copy -y ./[stream].flv;
    }
}
"#;

#[test]
fn defaults_from_empty_config() {
    let (config, warnings) = parse("");
    assert_eq!(config, Config::default());
    assert!(warnings.is_empty());
    assert_eq!(config.listen, [addr("0.0.0.0:1935")]);
    assert_eq!(config.max_connections, 1000);
    assert!(!config.daemon);
    assert_eq!(config.pid, PathBuf::from("./objs/ringcast.pid"));
    assert_eq!(config.log_tank, LogTank::Console);
    assert_eq!(config.log_file, PathBuf::from("./objs/ringcast.log"));
    assert_eq!(config.log_level, LogLevel::Trace);
    assert_eq!(config.chunk_size, 60000);
    assert_eq!(config.workers, None);
    assert_eq!(
        (config.http_api.enabled, config.http_api.listen),
        (false, addr("0.0.0.0:1985"))
    );
    assert_eq!(
        (config.http_server.enabled, config.http_server.listen),
        (false, addr("0.0.0.0:8080"))
    );
    let vhost = config.vhost("anything");
    assert_eq!(*vhost, Vhost::with_defaults(DEFAULT_VHOST));
    assert!(vhost.enabled && vhost.gop_cache && !vhost.tcp_nodelay);
    assert_eq!(vhost.queue_length, Duration::from_secs(10));
    assert_eq!((vhost.chunk_size, vhost.mw_latency), (None, None));
    assert!(vhost.forward.is_empty());
}

#[test]
fn full_srs_config_loads_with_warnings_only() {
    let (config, warnings) = parse(SRS_FULL);
    assert_eq!(
        config.listen,
        [addr("0.0.0.0:1935"), addr("127.0.0.1:19350")]
    );
    assert_eq!(config.pid, PathBuf::from("./objs/srs.pid"));
    assert_eq!(config.log_tank, LogTank::File);
    // `srs_log_level_v2 info;` wins over `srs_log_level info;`: log4j's info is SRS's trace.
    assert_eq!(config.log_level, LogLevel::Trace);
    assert_eq!(config.log_file, PathBuf::from("./objs/srs.log"));
    assert!(config.daemon);
    assert_eq!(
        (config.http_api.enabled, config.http_api.listen),
        (true, addr("0.0.0.0:1985"))
    );
    assert_eq!(
        (config.http_server.enabled, config.http_server.listen),
        (true, addr("0.0.0.0:8080"))
    );
    let key = PathBuf::from("./conf/server.key");
    let cert = PathBuf::from("./conf/server.crt");
    assert_eq!(
        config.http_api.https,
        Https {
            enabled: true,
            listen: addr("0.0.0.0:1990"),
            key: key.clone(),
            cert: cert.clone(),
        }
    );
    assert_eq!(
        config.http_server.https,
        Https {
            enabled: true,
            listen: addr("0.0.0.0:8088"),
            key,
            cert,
        }
    );
    let names: Vec<_> = config.vhosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [DEFAULT_VHOST, "same.edge.srs.com", "transcode.srs.com"]
    );

    let default = config.vhost(DEFAULT_VHOST);
    assert!(default.tcp_nodelay && !default.gop_cache);
    assert_eq!(default.queue_length, Duration::from_millis(2500));
    assert_eq!(default.mw_latency, Some(100));
    assert_eq!(default.chunk_size, Some(4096));
    assert_eq!(
        default.forward,
        ["127.0.0.1:19350", "backup.example.com:1935"]
    );

    assert_eq!(
        config.exporter,
        Exporter {
            enabled: false,
            listen: addr("0.0.0.0:9972"),
            label: "cn-beijing".into(),
            tag: "cn-edge".into(),
        }
    );
    assert!(config.rtc_server.enabled);
    assert_eq!(config.rtc_server.listen, addr("0.0.0.0:8000"));
    assert_eq!(config.rtc_server.candidate, [RtcCandidate::Host]);
    assert_eq!(
        default.rtc,
        VhostRtc {
            enabled: true,
            rtmp_to_rtc: false,
            rtc_to_rtmp: false,
            nack: true
        }
    );

    assert_eq!(
        default.dvr,
        Dvr::default(),
        "full.conf's dvr block is SRS's defaults, off"
    );

    let transcode = config.vhost("transcode.srs.com");
    assert!(!transcode.enabled && !transcode.gop_cache);
    assert_eq!(transcode.queue_length, Duration::from_secs(30));
    assert_eq!(transcode.mw_latency, Some(350));

    // Every warning but the HLS hooks' (`full_srs_config_http_hooks`) is about an unsupported
    // directive, and each dotted path is reported once even though e.g. `vhost.hls` appears
    // twice.
    let unsupported: Vec<_> = warnings
        .iter()
        .filter(|w| !w.message.starts_with("http_hooks.on_hls"))
        .map(|w| {
            let (path, rest) = w.message.split_once(": ").unwrap();
            assert_eq!(
                rest, "not supported by ringcast, ignored (reported once)",
                "{w}"
            );
            path
        })
        .collect();
    let unique: HashSet<_> = unsupported.iter().collect();
    assert_eq!(unique.len(), unsupported.len(), "{unsupported:?}");
    for expected in [
        "ff_log_dir",
        "rtc_server.protocol",
        "rtc_server.tcp",
        "rtc_server.black_hole",
        "srt_server",
        "stats",
        "heartbeat",
        "http_api.crossdomain",
        "http_api.raw_api",
        "http_server.dir",
        "vhost.min_latency",
        "vhost.play.mw_msgs",
        "vhost.forward.backend",
        "vhost.transcode",
    ] {
        assert!(unsupported.contains(&expected), "no warning for {expected}");
    }
    assert!(!unsupported.contains(&"vhost.cluster"), "{unsupported:?}");
    assert_eq!(
        config.vhost("same.edge.srs.com").cluster.origin,
        ["127.0.0.1:1935", "localhost:1935"]
    );
    assert!(!unsupported.iter().any(|p| p.starts_with("vhost.dvr")));
    assert_eq!(
        config.rtc_server,
        RtcServer {
            enabled: true,
            candidate: vec![RtcCandidate::Host],
            ..RtcServer::default()
        }
    );
    let hls = &config.vhost(DEFAULT_VHOST).hls;
    assert!(hls.enabled);
    assert_eq!((hls.td_ratio, hls.dispose), (1.5, Duration::ZERO));
    assert!(!config.vhost("same.edge.srs.com").hls.enabled);
}

/// SRS 6's `hls {}`: its defaults, every implemented directive read, the unimplemented ones
/// and the later ones (LL-HLS, fMP4) warned, bad values refused.
#[test]
fn hls_block() {
    let (config, warnings) = parse("vhost v { hls { } }");
    assert!(warnings.is_empty());
    let d = &config.vhost("v").hls;
    assert_eq!(*d, VhostHls::default());
    assert!(!d.enabled && d.cleanup && d.wait_keyframe && d.audio && d.video);
    assert_eq!(
        (d.fragment, d.window),
        (Duration::from_secs(10), Duration::from_secs(60))
    );
    assert_eq!(
        (d.td_ratio, d.aof_ratio, d.dispose),
        (1.0, 2.1, Duration::from_secs(120))
    );
    assert_eq!(d.path, PathBuf::from("./objs/nginx/html"));
    assert_eq!(
        (d.m3u8_file.as_str(), d.ts_file.as_str()),
        ("[app]/[stream].m3u8", "[app]/[stream]-[seq].ts")
    );
    let (config, warnings) = parse(
        "vhost v { hls { enabled on; hls_fragment 2.5; hls_td_ratio 1.5; hls_aof_ratio 3; \
         hls_window 30; hls_path /srv/hls; hls_m3u8_file [vhost]/[app]/[stream].m3u8; \
         hls_ts_file [app]/[stream]-[timestamp]-[seq].ts; hls_entry_prefix http://cdn; \
         hls_dispose 0; hls_cleanup off; hls_wait_keyframe off; hls_acodec an; hls_vcodec vn; \
         hls_keys on; hls_ctx off; hls_ts_ctx on; hls_ll on; hls_ll_part 0.25; hls_fmp4 on; \
         hls_nb_notify 128; } }",
    );
    let h = &config.vhost("v").hls;
    assert!(h.enabled && !h.cleanup && !h.wait_keyframe && !h.audio && !h.video);
    assert_eq!(
        (h.fragment, h.window, h.dispose),
        (
            Duration::from_millis(2500),
            Duration::from_secs(30),
            Duration::ZERO
        )
    );
    assert_eq!((h.td_ratio, h.aof_ratio), (1.5, 3.0));
    assert_eq!(h.path, PathBuf::from("/srv/hls"));
    assert_eq!(h.m3u8_file, "[vhost]/[app]/[stream].m3u8");
    assert_eq!(h.ts_file, "[app]/[stream]-[timestamp]-[seq].ts");
    assert_eq!(h.entry_prefix, "http://cdn");
    assert!(h.ll && h.fmp4 && h.part == Duration::from_millis(250));
    assert_eq!((d.nb_notify, h.nb_notify), (64, 128));
    let m = messages(&warnings);
    assert_eq!(m.len(), 2, "{m:?}");
    for (i, what) in [
        "vhost.hls.hls_keys on: not supported by ringcast",
        "vhost.hls.hls_ts_ctx on: not supported by ringcast",
    ]
    .iter()
    .enumerate()
    {
        assert!(m[i].contains(what), "{m:?}");
    }
    for bad in [
        "hls_nb_notify 0;",
        "hls_fragment 0;",
        "hls_td_ratio 0.5;",
        "hls_aof_ratio nan;",
        "hls_window -1;",
        "hls_m3u8_file ../[stream].m3u8;",
        "hls_m3u8_file /abs/[stream].m3u8;",
        "hls_ts_file [app]/x.ts;",
        "hls_dispose 100000;",
        "hls_acodec opus;",
        "hls_vcodec vp8;",
        "enabled yes;",
    ] {
        parse_err(&format!("vhost v {{ hls {{ {bad} }} }}"));
    }
}

/// `https {}` in `http_api` and `http_server`: SRS's defaults (off, 1990 and 8088,
/// `./conf/server.key` and `.crt`), the API following the server's port when both share their
/// plain one, SRS's refusal of HTTPS without its HTTP, and SRS's variables.
#[test]
fn https_blocks() {
    let config = parse("").0;
    let (api, server) = (&config.http_api.https, &config.http_server.https);
    assert!(!api.enabled && !server.enabled);
    assert_eq!(
        (api.listen, server.listen),
        (addr("0.0.0.0:1990"), addr("0.0.0.0:8088"))
    );
    assert_eq!(api.key, PathBuf::from("./conf/server.key"));
    assert_eq!(server.cert, PathBuf::from("./conf/server.crt"));

    let (config, warnings) = parse(
        "http_api { enabled on; https { enabled on; listen 127.0.0.1:4443; key k.pem; \
         cert c.pem; ciphers x; } }",
    );
    let https = &config.http_api.https;
    assert!(https.enabled);
    assert_eq!(https.listen, addr("127.0.0.1:4443"));
    assert_eq!(
        (https.key.to_str(), https.cert.to_str()),
        (Some("k.pem"), Some("c.pem"))
    );
    assert_eq!(
        messages(&warnings),
        [format!(
            "{FILE}:1: http_api.https.ciphers: not supported by ringcast, ignored (reported once)"
        )]
    );

    let shared = "http_api { enabled on; listen 8080; } http_server { enabled on; listen 8080; \
                  https { enabled on; listen 9443; } }";
    assert_eq!(parse(shared).0.http_api.https.listen, addr("0.0.0.0:9443"));
    let own = "http_api { enabled on; listen 8080; https { listen 1991; } } \
               http_server { enabled on; listen 8080; }";
    assert_eq!(parse(own).0.http_api.https.listen, addr("0.0.0.0:1991"));

    assert_err(
        "http_server { enabled off;\n https { enabled on; } }",
        &format!(
            "{FILE}:2: enabled: `on` is not `off`: https needs its http_api or http_server \
             enabled, as in SRS"
        ),
    );
    assert_err(
        "http_api { enabled on; https { listen 0; } }",
        &format!("{FILE}:1: listen: 0 is out of range 1..=65535"),
    );

    let (config, _) = parse_env(
        "http_server { enabled on; }",
        &[
            ("SRS_HTTP_SERVER_HTTPS_ENABLED", "on"),
            ("SRS_HTTP_SERVER_HTTPS_LISTEN", "8443"),
            ("SRS_HTTP_SERVER_HTTPS_KEY", "/etc/k.pem"),
            ("SRS_HTTP_SERVER_HTTPS_CERT", "/etc/c.pem"),
        ],
    );
    let https = &config.http_server.https;
    assert!(https.enabled);
    assert_eq!(https.listen, addr("0.0.0.0:8443"));
    assert_eq!(https.key, PathBuf::from("/etc/k.pem"));
    assert_eq!(https.cert, PathBuf::from("/etc/c.pem"));
}

/// SRS 5's exporter block: SRS's defaults (off, 9972, no label or tag), every directive read,
/// an unknown one warned, a bad value an error.
#[test]
fn exporter_block() {
    assert_eq!(parse("").0.exporter, Exporter::default());
    assert_eq!(Exporter::default().listen, addr("0.0.0.0:9972"));
    let (config, warnings) = parse(
        "exporter { enabled on; listen 127.0.0.1:9100; label cn-beijing; tag cn-edge; x 1; }",
    );
    assert_eq!(
        config.exporter,
        Exporter {
            enabled: true,
            listen: addr("127.0.0.1:9100"),
            label: "cn-beijing".into(),
            tag: "cn-edge".into(),
        }
    );
    assert_eq!(messages(&warnings).len(), 1, "{:?}", messages(&warnings));
    assert!(messages(&warnings)[0].contains("exporter.x"));
    let (config, warnings) = parse("exporter { enabled on; }");
    assert!(warnings.is_empty(), "{:?}", messages(&warnings));
    assert!(config.exporter.enabled && config.exporter.label.is_empty());
    parse_err("exporter { enabled yes; }");
    parse_err("exporter { listen 0; }");
}

/// SRS's conf/console.conf, which still uses the SRS 2 name `http_stream`.
#[test]
fn srs_console_conf() {
    let text = "# no-daemon and write log to console config for srs.\n\
            listen              1935;\nmax_connections     1000;\ndaemon              off;\n\
            srs_log_tank        console;\nhttp_api {\n    enabled         on;\n    listen          1985;\n}\n\
            http_stream {\n    enabled         on;\n    listen          8080;\n}\n\
            vhost __defaultVhost__ {\n}\n";
    let (config, warnings) = parse(text);
    assert!(warnings.is_empty(), "{:?}", messages(&warnings));
    assert!(config.http_api.enabled && config.http_server.enabled);
    assert_eq!(config.vhosts.len(), 1);
}

/// Both historic shapes of SRS's conf/forward.master.conf.
#[test]
fn srs_forward_master_conf_both_forms() {
    let head = "listen              1935;\nmax_connections     1000;\n\
            pid                 ./objs/srs.master.pid;\nsrs_log_tank        file;\n\
            srs_log_file        ./objs/srs.master.log;\n";
    let one_line =
        format!("{head}vhost __defaultVhost__ {{\n    forward         127.0.0.1:19350;\n}}\n");
    let block = format!(
        "{head}vhost __defaultVhost__ {{\n    forward {{\n        enabled on;\n        \
             destination 127.0.0.1:19350;\n    }}\n}}\n"
    );
    for text in [one_line, block] {
        let (config, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{:?}", messages(&warnings));
        assert_eq!(config.vhost("x").forward, ["127.0.0.1:19350"]);
        assert_eq!(config.pid, PathBuf::from("./objs/srs.master.pid"));
        assert_eq!(config.log_tank, LogTank::File);
    }
}

/// SRS's conf/realtime.conf really has `tcp_nodelay on` without `;`.
#[test]
fn srs_realtime_conf_missing_semicolon_warns() {
    let text = "vhost __defaultVhost__ {\n    tcp_nodelay     on\n    min_latency     on;\n\
            play {\n gop_cache off; queue_length 10; mw_latency 100;\n }\n}\n";
    let (config, warnings) = parse(text);
    assert!(config.vhost(DEFAULT_VHOST).tcp_nodelay);
    assert_eq!(
            messages(&warnings),
            ["conf/test.conf:2: tcp_nodelay: ignoring extra arguments `min_latency on`; is a `;` missing?"]
        );
}

#[test]
fn forward_forms() {
    let (config, _) = parse(
            "vhost a { forward 10.0.0.1:19350 10.0.0.2; forward [::1]:1936 ::2 edge-1.example.com:80; }",
        );
    assert_eq!(
        config.vhost("a").forward,
        [
            "10.0.0.1:19350",
            "10.0.0.2:1935",
            "[::1]:1936",
            "[::2]:1935",
            "edge-1.example.com:80"
        ]
    );
    let (config, _) =
        parse("vhost a { forward { enabled on; destination h:1 h:2; destination h:3; } }");
    assert_eq!(config.vhost("a").forward, ["h:1", "h:2", "h:3"]);
    let (config, warnings) = parse("vhost a { forward { enabled off; destination h:1; } }");
    assert!(config.vhost("a").forward.is_empty() && warnings.is_empty());
    // SRS defaults the block form to off.
    let (config, warnings) = parse("vhost a {\n forward { destination h:1; } }");
    assert!(config.vhost("a").forward.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]
        .to_string()
        .starts_with("conf/test.conf:2: forward: block has"));
    // Values are checked even in a disabled block.
    assert_err(
        "vhost a {\n forward { enabled off; destination h:0; } }",
        "conf/test.conf:2: destination: 0 is out of range 1..=65535",
    );
}

#[test]
fn bad_forward_destinations() {
    for bad in [
        "h:",
        ":1935",
        "h:x",
        "h:1:2",
        "rtmp://h/live",
        "[::1",
        "[::1]x",
        "[h]:1",
        "a b:1x",
    ] {
        let text = format!("vhost a {{\n forward '{bad}'; }}");
        let e = parse_err(&text);
        assert!(
            matches!(&e, ConfigError::InvalidValue { line: 2, directive, value, .. }
                    if directive == "forward" && value == bad),
            "{bad}: {e}"
        );
    }
    assert_err(
        "vhost a { forward h:99999; }",
        "conf/test.conf:1: forward: 99999 is out of range 1..=65535",
    );
    assert_err(
        "vhost a {\n forward; }",
        "conf/test.conf:2: forward: missing value",
    );
}

#[test]
fn listen_forms() {
    let (config, _) = parse("listen 1935 127.0.0.1:1936 [::]:1937 [::1]:1938;");
    assert_eq!(
        config.listen,
        [
            addr("0.0.0.0:1935"),
            addr("127.0.0.1:1936"),
            addr("[::]:1937"),
            addr("[::1]:1938")
        ]
    );
    let (config, warnings) = parse("listen 1935 1935;");
    assert_eq!(config.listen, [addr("0.0.0.0:1935")]);
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:1: listen: 0.0.0.0:1935 is listed twice"]
    );
    let (config, _) = parse("http_api { enabled on; listen 127.0.0.1:1985; }");
    assert_eq!(config.http_api.listen, addr("127.0.0.1:1985"));
}

#[test]
fn bad_addresses() {
    assert_err(
            "listen 1935\n  localhost:1935;",
            "conf/test.conf:1: listen: `localhost:1935` is not a port or IP:PORT, e.g. 1935, 127.0.0.1:1935 or [::]:1935",
        );
    assert_err(
        "\nlisten 0;",
        "conf/test.conf:2: listen: 0 is out of range 1..=65535",
    );
    assert_err(
        "listen 65536;",
        "conf/test.conf:1: listen: 65536 is out of range 1..=65535",
    );
    assert_err(
        "listen 1.2.3.4:0;",
        "conf/test.conf:1: listen: 0 is out of range 1..=65535",
    );
    assert_err("listen;", "conf/test.conf:1: listen: missing value");
    assert_err(
            "http_server {\n enabled on;\n listen 80a;\n}",
            "conf/test.conf:3: listen: `80a` is not a port or IP:PORT, e.g. 1935, 127.0.0.1:1935 or [::]:1935",
        );
}

#[test]
fn bad_numbers() {
    // The exact shape the module promises operators.
    let text = format!("{}chunk_size 0;\n", "\n".repeat(11));
    assert_eq!(
        Config::parse(&text, "conf/x.conf").unwrap_err().to_string(),
        "conf/x.conf:12: chunk_size: 0 is out of range 128..=65536"
    );
    assert_err(
        "chunk_size 65537;",
        "conf/test.conf:1: chunk_size: 65537 is out of range 128..=65536",
    );
    assert_err(
        "chunk_size 4k;",
        "conf/test.conf:1: chunk_size: `4k` is not a whole number",
    );
    assert_err(
        "chunk_size -1;",
        "conf/test.conf:1: chunk_size: `-1` is not a whole number",
    );
    assert_err(
        "chunk_size +200;",
        "conf/test.conf:1: chunk_size: `+200` is not a whole number",
    );
    assert_err(
        "max_connections 99999999999999999999999;",
        "conf/test.conf:1: max_connections: 99999999999999999999999 is out of range 1..=1048576",
    );
    assert_err(
        "max_connections 0;",
        "conf/test.conf:1: max_connections: 0 is out of range 1..=1048576",
    );
    assert_err(
        "workers 0;",
        "conf/test.conf:1: workers: 0 is out of range 1..=1024",
    );
    assert_err(
        "workers 1025;",
        "conf/test.conf:1: workers: 1025 is out of range 1..=1024",
    );
    assert_err(
        "vhost v {\n chunk_size 64;\n}",
        "conf/test.conf:2: chunk_size: 64 is out of range 128..=65536",
    );
    assert_err(
        "vhost v { play {\n mw_latency 60001; } }",
        "conf/test.conf:2: mw_latency: 60001 is out of range 0..=60000",
    );
    let (config, _) = parse("workers 4; max_connections 1048576; chunk_size 128;");
    assert_eq!(
        (config.workers, config.max_connections, config.chunk_size),
        (Some(4), 1_048_576, 128)
    );
}

#[test]
fn queue_length_values() {
    let queue = |v: &str| {
        parse(&format!("vhost a {{ queue_length {v}; }}"))
            .0
            .vhost("a")
            .queue_length
    };
    assert_eq!(queue("10"), Duration::from_secs(10));
    assert_eq!(queue("0.5"), Duration::from_millis(500));
    assert_eq!(queue("3600"), Duration::from_secs(3600));
    for bad in [
        "0",
        "0.0",
        "3600.5",
        "-1",
        "inf",
        "nan",
        "1e3",
        ".",
        "1.2.3",
        "0.0000000000001",
        "ten",
    ] {
        let e = parse_err(&format!("vhost a {{\n queue_length {bad}; }}"));
        assert_eq!(
                e.to_string(),
                format!(
                    "conf/test.conf:2: queue_length: `{bad}` is not a number of seconds above 0 and at most 3600, e.g. 10 or 0.5"
                )
            );
    }
}

#[test]
fn bad_flags_and_keywords() {
    assert_err(
        "daemon yes;",
        "conf/test.conf:1: daemon: `yes` is not `on` or `off`",
    );
    assert_err(
        "vhost a {\n enabled ON;\n}",
        "conf/test.conf:2: enabled: `ON` is not `on` or `off`",
    );
    assert_err(
        "vhost a { play {\n\n gop_cache true; } }",
        "conf/test.conf:3: gop_cache: `true` is not `on` or `off`",
    );
    assert_err(
        "http_api {\n enabled 1; }",
        "conf/test.conf:2: enabled: `1` is not `on` or `off`",
    );
    assert_err(
        "vhost a { tcp_nodelay; }",
        "conf/test.conf:1: tcp_nodelay: missing value",
    );
    assert_err(
        "srs_log_tank syslog;",
        "conf/test.conf:1: srs_log_tank: `syslog` is not `console` or `file`",
    );
    assert_err(
            "srs_log_level debug;",
            "conf/test.conf:1: srs_log_level: `debug` is not one of `verbose`, `info`, `trace`, `warn`, `error`",
        );
    assert_err("pid '';", "conf/test.conf:1: pid: `` is not a file path");
    for (word, level) in [
        ("verbose", LogLevel::Verbose),
        ("info", LogLevel::Info),
        ("trace", LogLevel::Trace),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        assert_eq!(parse(&format!("srs_log_level {word};")).0.log_level, level);
    }
}

#[test]
fn block_shape_errors() {
    assert_err(
        "vhost a;",
        "conf/test.conf:1: vhost: expected a `{ ... }` block",
    );
    assert_err(
        "http_api on;",
        "conf/test.conf:1: http_api: expected a `{ ... }` block",
    );
    assert_err(
        "vhost a {\n play off;\n}",
        "conf/test.conf:2: play: expected a `{ ... }` block",
    );
    assert_err(
        "chunk_size 4096 {\n}",
        "conf/test.conf:1: chunk_size: takes values ending in `;`, not a block",
    );
    assert_err(
        "listen 1935 { }",
        "conf/test.conf:1: listen: takes values ending in `;`, not a block",
    );
    assert_err("vhost {\n}", "conf/test.conf:1: vhost: missing value");
    assert_err(
        "http_api {\n listen 1985 { }\n}",
        "conf/test.conf:2: listen: takes values ending in `;`, not a block",
    );
    assert_err(
        "vhost '' {\n}",
        "conf/test.conf:1: vhost: `` is not a vhost name",
    );
}

#[test]
fn syntax_errors_carry_file_and_line() {
    assert_err(
        "listen 1935;\nvhost a {\n  enabled on;\n",
        "conf/test.conf:2: block `vhost` opened here is never closed with `}`",
    );
    assert_err(
        "listen 1935;\n}\n",
        "conf/test.conf:2: unexpected `}`: no block is open",
    );
    assert_err(
        "listen 1935;\ndaemon off\n",
        "conf/test.conf:2: missing `;` after directive `daemon`",
    );
    assert_err(
        "listen 1935;;",
        "conf/test.conf:1: empty directive before `;`",
    );
    assert_err("a 'b;\n", "conf/test.conf:1: unterminated ' quote");
    let deep = "x {".repeat(MAX_DEPTH + 1);
    assert_eq!(parse_err(&deep).line(), Some(1));
}

#[test]
fn duplicate_vhosts_fail() {
    assert_err(
        "vhost a.com {\n}\nvhost b {}\nvhost A.COM {\n}",
        "conf/test.conf:4: vhost `A.COM` is already defined at line 1",
    );
    assert_err(
        "vhost __defaultVhost__ {}\nvhost __defaultVhost__ {}",
        "conf/test.conf:2: vhost `__defaultVhost__` is already defined at line 1",
    );
}

#[test]
fn rtc_blocks() {
    let (config, warnings) = parse(
        "rtc_server { enabled on; listen 9000; candidate 192.0.2.7; }\n\
             vhost __defaultVhost__ { rtc { enabled on; rtmp_to_rtc on; rtc_to_rtmp on; nack off; } }",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.rtc_server,
        RtcServer {
            enabled: true,
            listen: addr("0.0.0.0:9000"),
            candidate: vec![RtcCandidate::Ip("192.0.2.7".parse().unwrap())],
            sndbuf: None,
            rcvbuf: None,
        }
    );
    assert_eq!(
        config.vhost("x").rtc,
        VhostRtc {
            enabled: true,
            rtmp_to_rtc: true,
            rtc_to_rtmp: true,
            nack: false
        }
    );
    let (config, _) = parse("rtc_server { candidate $RINGCAST_TEST_SURELY_UNSET; }");
    assert_eq!(config.rtc_server.candidate, [RtcCandidate::Host]);
    assert_eq!(Config::default().vhost("x").rtc, VhostRtc::default());
    assert_err(
        "rtc_server { candidate localhost; }",
        "conf/test.conf:1: candidate: `localhost` is not an IP address, `*` or `$ENV_VAR`",
    );
    assert_err(
        "vhost v { rtc { nack yes; } }",
        "conf/test.conf:1: nack: `yes` is not `on` or `off`",
    );
    assert_err(
        "rtc_server { listen 70000; }",
        "conf/test.conf:1: listen: 70000 is out of range 1..=65535",
    );
}

#[test]
fn unknown_directive_warns_once() {
    let vhosts: String = (0..10)
        .map(|i| format!("vhost v{i} {{\n transcode {{ enabled on; }}\n}}\n"))
        .collect();
    let (config, warnings) = parse(&format!(
        "srt_server {{ enabled on; }}\nsrt_server {{ }}\n{vhosts}"
    ));
    assert_eq!(config.vhosts.len(), 11);
    assert_eq!(
        messages(&warnings),
        [
            "conf/test.conf:1: srt_server: not supported by ringcast, ignored (reported once)",
            "conf/test.conf:4: vhost.transcode: not supported by ringcast, ignored (reported once)",
        ]
    );
}

#[test]
fn repeated_directive_keeps_first_and_warns() {
    let (config, warnings) = parse(
        "chunk_size 4096;\nchunk_size 128;\nhttp_server { listen 81; }\nhttp_stream { listen 82; }",
    );
    assert_eq!(config.chunk_size, 4096);
    assert_eq!(config.http_server.listen, addr("0.0.0.0:81"));
    assert_eq!(
        messages(&warnings),
        [
            "conf/test.conf:2: chunk_size: repeated, first set at line 1, which is used",
            "conf/test.conf:4: http_stream: repeated, first set at line 3, which is used",
        ]
    );
}

#[test]
fn play_block_wins_over_legacy_vhost_level() {
    let (config, warnings) = parse(
            "vhost a {\n gop_cache on;\n queue_length 5;\n play {\n  gop_cache off;\n }\n mw_latency 7;\n}",
        );
    let vhost = config.vhost("a");
    assert!(!vhost.gop_cache);
    assert_eq!(vhost.queue_length, Duration::from_secs(5));
    assert_eq!(vhost.mw_latency, Some(7));
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:2: gop_cache: also set in `play {}` at line 5, which takes precedence"]
    );
}

#[test]
fn vhost_lookup() {
    let (mut config, _) = parse("vhost Live.Example.com { enabled off; chunk_size 4096; }");
    assert_eq!(config.vhosts.len(), 2);
    // Hostnames are case-insensitive; a disabled vhost still matches so
    // that its clients are refused rather than served by the default.
    let live = config.vhost("live.example.COM");
    assert_eq!(
        (live.name.as_str(), live.enabled),
        ("Live.Example.com", false)
    );
    assert_eq!(config.vhost("other").name, DEFAULT_VHOST);
    config.vhosts.clear();
    assert_eq!(config.vhost("other").name, DEFAULT_VHOST);
}

#[test]
fn process_tuning_directives() {
    let (config, warnings) =
        parse("cpu_affinity 1-3;\npriority -15;\nrlimit_nofile 100000;\nmax_connections 5000;");
    assert!(warnings.is_empty(), "{:?}", messages(&warnings));
    assert_eq!(config.cpu_affinity, [1, 2, 3]);
    assert_eq!(config.priority, Some(-15));
    assert_eq!(config.rlimit_nofile, Some(100_000));
    assert_eq!(config.nofile_wanted(), 100_000);
    assert_eq!(config.nofile_needed(), 6024);
    // Without rlimit_nofile: enough for max_connections and the server's own.
    let (config, _) = parse("max_connections 5000;");
    assert_eq!((config.rlimit_nofile, config.nofile_wanted()), (None, 6024));
    assert_eq!(Config::default().nofile_wanted(), 2024);
    assert!(Config::default().cpu_affinity.is_empty());
    assert_eq!(Config::default().priority, None);

    // Written order is the workers' order; several arguments and duplicates are fine.
    let cpus = |v: &str| parse(&format!("cpu_affinity {v};")).0.cpu_affinity;
    assert_eq!(cpus("3,1"), [3, 1]);
    assert_eq!(cpus("0,2-4 7"), [0, 2, 3, 4, 7]);
    assert_eq!(cpus("1-2,2-3 1"), [1, 2, 3]);
    assert_eq!(cpus("5-5"), [5]);
    assert_eq!(cpus("1023"), [1023]);
    for (value, priority) in [("19", 19), ("0", 0), ("-20", -20), ("-0", 0)] {
        assert_eq!(
            parse(&format!("priority {value};")).0.priority,
            Some(priority)
        );
    }
    assert_eq!(parse("rlimit_nofile 1;").0.rlimit_nofile, Some(1));
}

#[test]
fn bad_process_tuning_values() {
    for bad in ["1-", "-1", "a", "1..3", "3-1", "1,,2", ",", "1-2-3", "+1"] {
        assert_err(
            &format!("\ncpu_affinity '{bad}';"),
            &format!(
                "conf/test.conf:2: cpu_affinity: `{bad}` is not a CPU list, e.g. 1-3 or 0,2,4"
            ),
        );
    }
    assert_err(
        "cpu_affinity 1-1024;",
        "conf/test.conf:1: cpu_affinity: 1024 is out of range 0..=1023",
    );
    assert_err(
        "cpu_affinity 0 99999999999999999999;",
        "conf/test.conf:1: cpu_affinity: 99999999999999999999 is out of range 0..=1023",
    );
    assert_err(
        "cpu_affinity;",
        "conf/test.conf:1: cpu_affinity: missing value",
    );
    assert_err(
        "cpu_affinity 1 { }",
        "conf/test.conf:1: cpu_affinity: takes values ending in `;`, not a block",
    );
    for bad in [
        "-21",
        "20",
        "+5",
        "--1",
        "high",
        "-",
        "",
        "1.5",
        "99999999999999999999",
    ] {
        assert_err(
                &format!("priority '{bad}';"),
                &format!("conf/test.conf:1: priority: `{bad}` is not a whole number from -20 (highest priority) to 19 (lowest), e.g. -15"),
            );
    }
    assert_err(
        "rlimit_nofile 0;",
        "conf/test.conf:1: rlimit_nofile: 0 is out of range 1..=1073741824",
    );
    assert_err(
        "rlimit_nofile unlimited;",
        "conf/test.conf:1: rlimit_nofile: `unlimited` is not a whole number",
    );
}

#[test]
fn rtc_server_block() {
    let (config, warnings) = parse(
        "rtc_server {\n enabled on;\n listen 8001;\n candidate 192.168.1.10;\n \
             sndbuf 16M;\n rcvbuf 512k;\n protocol udp;\n}",
    );
    assert_eq!(
        config.rtc_server,
        RtcServer {
            enabled: true,
            listen: addr("0.0.0.0:8001"),
            candidate: vec![RtcCandidate::Ip("192.168.1.10".parse().unwrap())],
            sndbuf: Some(16 << 20),
            rcvbuf: Some(512 << 10),
        }
    );
    // What ringcast does not do yet is still warned about, once.
    assert_eq!(
            messages(&warnings),
            ["conf/test.conf:7: rtc_server.protocol: not supported by ringcast, ignored (reported once)"]
        );
    let rtc = |body: &str| parse(&format!("rtc_server {{ {body} }}")).0.rtc_server;
    assert_eq!(rtc(""), RtcServer::default());
    assert_eq!(
        RtcServer::default(),
        RtcServer {
            enabled: false,
            listen: addr("0.0.0.0:8000"),
            candidate: Vec::new(),
            sndbuf: None,
            rcvbuf: None
        }
    );
    let ip = |s: &str| RtcCandidate::Ip(s.parse().unwrap());
    assert_eq!(rtc("candidate ::1;").candidate, [ip("::1")]);
    assert_eq!(rtc("candidate *;").candidate, [RtcCandidate::Host]);
    assert_eq!(
        rtc("candidate 127.0.0.1 * 2001:db8::1 127.0.0.1;").candidate,
        [ip("127.0.0.1"), RtcCandidate::Host, ip("2001:db8::1")],
        "several, each once"
    );
    std::env::set_var("RINGCAST_TEST_CANDIDATES", "192.0.2.1, 192.0.2.2");
    assert_eq!(
        rtc("candidate $RINGCAST_TEST_CANDIDATES;").candidate,
        [ip("192.0.2.1"), ip("192.0.2.2")],
        "a variable may hold a list"
    );
    assert_eq!(rtc("sndbuf 4096;").sndbuf, Some(4096));
    assert_eq!(rtc("sndbuf 1G;").sndbuf, Some(1 << 30));
    assert_eq!(rtc("rcvbuf 8m;").rcvbuf, Some(8 << 20));
    assert_eq!(rtc("rcvbuf 5K;").rcvbuf, Some(5120));
}

#[test]
fn bad_rtc_server_values() {
    for (body, expected) in [
        ("enabled yes;", "enabled: `yes` is not `on` or `off`"),
        (
            "candidate example.com;",
            "candidate: `example.com` is not an IP address, `*` or `$ENV_VAR`",
        ),
        (
            "sndbuf 16MB;",
            "sndbuf: `16MB` is not a size in bytes, e.g. 16M, 512K or 8388608",
        ),
        (
            "sndbuf M;",
            "sndbuf: `M` is not a size in bytes, e.g. 16M, 512K or 8388608",
        ),
        (
            "rcvbuf -1;",
            "rcvbuf: `-1` is not a size in bytes, e.g. 16M, 512K or 8388608",
        ),
        ("rcvbuf 1K;", "rcvbuf: 1K is out of range 4096..=1073741824"),
        ("rcvbuf 2G;", "rcvbuf: 2G is out of range 4096..=1073741824"),
        (
            "rcvbuf 99999999999999999999G;",
            "rcvbuf: 99999999999999999999G is out of range 4096..=1073741824",
        ),
        (
            "rcvbuf 9999999999999G;",
            "rcvbuf: 9999999999999G is out of range 4096..=1073741824",
        ),
        ("rcvbuf;", "rcvbuf: missing value"),
    ] {
        assert_err(
            &format!("rtc_server {{\n {body}\n}}"),
            &format!("conf/test.conf:2: {expected}"),
        );
    }
    assert_err(
        "rtc_server on;",
        "conf/test.conf:1: rtc_server: expected a `{ ... }` block",
    );
    let (config, warnings) = parse("rtc_server {\n sndbuf 1M;\n sndbuf 2M;\n}");
    assert_eq!(config.rtc_server.sndbuf, Some(1 << 20));
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:3: sndbuf: repeated, first set at line 2, which is used"]
    );
}

#[test]
fn warning_display() {
    let w = Warning {
        file: "a.conf".into(),
        line: 3,
        message: "m".into(),
    };
    assert_eq!(w.to_string(), "a.conf:3: m");
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ringcast-config-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn load_reads_file_and_names_it() {
    let path = temp_file("ok.conf", b"listen 1936;\nfoo bar;\n");
    let (config, warnings) = Config::load(&path).unwrap();
    assert_eq!(config.listen, [addr("0.0.0.0:1936")]);
    assert_eq!(
        warnings[0].to_string(),
        format!(
            "{}:2: foo: not supported by ringcast, ignored (reported once)",
            path.display()
        )
    );

    let bad = temp_file("bad.conf", b"listen 1935;\n\nchunk_size 1;\n");
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: chunk_size: 1 is out of range 128..=65536",
            bad.display()
        )
    );

    let binary = temp_file("binary.conf", b"listen 1935;\n# \xff\xfe\n");
    let e = Config::load(&binary).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:2: not valid UTF-8", binary.display())
    );

    let missing = std::env::temp_dir().join("ringcast-config-does-not-exist.conf");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }) && e.line().is_none());
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read config: ", missing.display())));
    for p in [path, bad, binary] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn load_refuses_huge_files() {
    let limit = usize::try_from(MAX_FILE_BYTES).unwrap();
    let path = temp_file("huge.conf", &vec![b'#'; limit + 1]);
    let e = Config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e}");
    let _ = std::fs::remove_file(path);
}

/// Deterministic mutation fuzzing: whatever the bytes, parsing returns
/// `Ok` or `Err`, and every error names the file and a line in range.
#[test]
fn mutated_configs_never_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64: tiny, dependency-free and reproducible.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const SPICE: &[u8] = b"{};\"'#\n \t0123456789:.[]-onff\xff\x00";
    let base = SRS_FULL.as_bytes();
    let mut ok = 0;
    for _ in 0..1500 {
        let mut bytes = base.to_vec();
        for _ in 0..1 + next() % 8 {
            let at = (next() % (bytes.len() as u64 + 1)) as usize;
            let spice = SPICE[(next() % SPICE.len() as u64) as usize];
            match next() % 5 {
                0 if at < bytes.len() => bytes[at] = spice,
                1 => bytes.insert(at, spice),
                2 => {
                    let end = (at + (next() % 64) as usize).min(bytes.len());
                    bytes.drain(at..end);
                }
                3 => bytes.truncate(at),
                _ => bytes.insert(at, next() as u8),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines = text.lines().count().max(1) + 1;
        match Config::parse(&text, "fuzz.conf") {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().starts_with("fuzz.conf:"), "{e}");
                assert!(e.line().is_some_and(|l| (1..=lines).contains(&l)), "{e}");
            }
        }
    }
    // Mutations that land in comments or unsupported blocks still parse;
    // if none did, the test would only be exercising the tokenizer.
    assert!(ok > 0);
}

#[test]
fn hostile_inputs_fail_cleanly() {
    for text in [
        "}".repeat(10_000),
        "{".repeat(10_000),
        "a{".repeat(100_000),
        ";".repeat(1000),
        "\"".repeat(3),
        "vhost a { play { play { play { } } } }".to_owned(),
        "\u{0}\u{feff}listen\u{a0}1935;".to_owned(),
    ] {
        let _ = Config::parse(&text, "x");
    }
}

/// The environment `vars` as [`Config::parse_with`] takes it.
fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::new(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> (Config, Vec<Warning>) {
    match Config::parse_with(text, FILE, &env(vars)) {
        Ok(parsed) => parsed,
        Err(e) => panic!("config must parse, got: {e}"),
    }
}

#[test]
fn srs_variables_override_the_file() {
    let (config, warnings) = parse_env(
        "listen 1935;\ndaemon on;\nhttp_api { enabled off; listen 1985; }\n\
         vhost __defaultVhost__ { http_remux { enabled off; mount [app]/[stream].flv; } }",
        &[
            ("SRS_LISTEN", "127.0.0.1:19350 19351"),
            ("SRS_DAEMON", "off"),
            ("SRS_HTTP_API_ENABLED", "on"),
            ("SRS_HTTP_API_LISTEN", "127.0.0.1:1990"),
            ("SRS_VHOST_HTTP_REMUX_ENABLED", "on"),
            ("SRS_MAX_CONNECTIONS", "77"),
            ("PATH", "/usr/bin"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let listen: Vec<SocketAddr> = vec![
        "127.0.0.1:19350".parse().expect("addr"),
        "0.0.0.0:19351".parse().expect("addr"),
    ];
    assert_eq!(config.listen, listen);
    assert!(!config.daemon);
    assert_eq!(config.max_connections, 77);
    assert!(config.http_api.enabled);
    assert_eq!(
        config.http_api.listen,
        "127.0.0.1:1990".parse().expect("addr")
    );
    assert_eq!(
        config.vhost(DEFAULT_VHOST).http_remux.as_deref(),
        Some("[app]/[stream].flv"),
        "the file's mount stays, the variable only turns it on"
    );
}

#[test]
fn environment_alone_builds_a_whole_config() {
    let (config, warnings) = parse_env(
        "",
        &[
            ("SRS_LISTEN", "1936"),
            ("SRS_HTTP_SERVER_ENABLED", "on"),
            ("SRS_HTTP_SERVER_LISTEN", "8088"),
            ("SRS_VHOST_HTTP_REMUX_ENABLED", "on"),
            ("SRS_VHOST_PLAY_GOP_CACHE", "off"),
            ("SRS_VHOST_PLAY_QUEUE_LENGTH", "3"),
            ("SRS_VHOST_PLAY_MW_LATENCY", "0"),
            ("SRS_VHOST_TCP_NODELAY", "on"),
            ("SRS_RTC_SERVER_ENABLED", "on"),
            ("SRS_RTC_SERVER_LISTEN", "8001"),
            ("SRS_RTC_SERVER_CANDIDATE", "192.0.2.1"),
            ("SRS_VHOST_RTC_ENABLED", "on"),
            ("SRS_VHOST_RTC_RTMP_TO_RTC", "on"),
            ("SRS_VHOST_RTC_RTC_TO_RTMP", "on"),
            ("SRS_VHOST_RTC_NACK", "off"),
            ("SRS_WORKERS", "2"),
            ("SRS_CPU_AFFINITY", "0-1 3"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.listen, ["0.0.0.0:1936".parse().expect("addr")]);
    assert!(config.http_server.enabled);
    assert_eq!(config.http_server.listen.port(), 8088);
    assert_eq!(config.workers, Some(2));
    assert_eq!(config.cpu_affinity, [0, 1, 3]);
    assert!(config.rtc_server.enabled);
    assert_eq!(config.rtc_server.listen.port(), 8001);
    assert_eq!(
        config.rtc_server.candidate,
        [RtcCandidate::Ip("192.0.2.1".parse().expect("ip"))]
    );
    let vhost = config.vhost(DEFAULT_VHOST);
    assert_eq!(vhost.http_remux.as_deref(), Some(DEFAULT_FLV_MOUNT));
    assert!(!vhost.gop_cache);
    assert_eq!(vhost.queue_length, Duration::from_secs(3));
    assert_eq!(vhost.merged_write(), None);
    assert!(vhost.tcp_nodelay);
    assert_eq!(
        vhost.rtc,
        VhostRtc {
            enabled: true,
            rtmp_to_rtc: true,
            rtc_to_rtmp: true,
            nack: false
        }
    );
}

#[test]
fn ringcast_twin_wins_over_srs_and_the_loser_is_reported() {
    let (config, warnings) = parse_env(
        "listen 1935;",
        &[("SRS_LISTEN", "1936"), ("RINGCAST_LISTEN", "1937")],
    );
    assert_eq!(config.listen, ["0.0.0.0:1937".parse().expect("addr")]);
    assert_eq!(
        messages(&warnings),
        ["SRS_LISTEN: ignored, RINGCAST_LISTEN is set too and wins"]
    );
}

#[test]
fn log_variables_have_both_srs_names_the_longer_first() {
    let (config, warnings) = parse_env(
        "srs_log_tank console;",
        &[
            ("SRS_SRS_LOG_LEVEL", "warn"),
            ("SRS_LOG_LEVEL", "error"),
            ("SRS_LOG_TANK", "file"),
            ("SRS_LOG_FILE", "/var/log/srs.log"),
        ],
    );
    assert_eq!(config.log_level, LogLevel::Warn);
    assert_eq!(config.log_tank, LogTank::File);
    assert_eq!(config.log_file, PathBuf::from("/var/log/srs.log"));
    assert_eq!(
        messages(&warnings),
        ["SRS_LOG_LEVEL: ignored, SRS_SRS_LOG_LEVEL is set too and wins"]
    );
    let (config, _) = parse_env("", &[("SRS_LOG_LEVEL_V2", "debug")]);
    assert_eq!(
        config.log_level,
        LogLevel::Info,
        "log4j's debug is SRS's info"
    );
}

#[test]
fn srs_log_level_v2_wins_over_srs_log_level_as_in_srs() {
    let (config, warnings) = parse("srs_log_level error;\nsrs_log_level_v2 trace;");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.log_level, LogLevel::Verbose);
    assert_err(
        "srs_log_level_v2 verbose;",
        "conf/test.conf:1: srs_log_level_v2: `verbose` is not one of `trace`, `debug`, `info`, \
         `warn`, `error`",
    );
}

#[test]
fn vhost_variables_apply_to_every_vhost_and_replace_legacy_settings() {
    let (config, warnings) = parse_env(
        "vhost a { gop_cache on; play { gop_cache on; } chunk_size 8192; }\nvhost b { }",
        &[
            ("SRS_VHOST_PLAY_GOP_CACHE", "off"),
            ("SRS_VHOST_CHUNK_SIZE", "4096"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    for name in ["a", "b", DEFAULT_VHOST] {
        let vhost = config.vhost(name);
        assert_eq!(vhost.name, name);
        assert!(!vhost.gop_cache, "{name}");
        assert_eq!(vhost.chunk_size, Some(4096), "{name}");
    }
    assert_eq!(
        config.chunk_size, 4096,
        "SRS reads SRS_VHOST_CHUNK_SIZE for the global one too"
    );
}

#[test]
fn forward_variables_set_either_form() {
    let text = "vhost __defaultVhost__ {\n forward 10.0.0.1:19350;\n}";
    let (config, _) = parse_env(text, &[("SRS_VHOST_FORWARD_ENABLED", "off")]);
    assert!(config.vhost(DEFAULT_VHOST).forward.is_empty());
    let (config, _) = parse_env(text, &[("SRS_VHOST_FORWARD_DESTINATION", "h:1 h:2")]);
    assert_eq!(config.vhost(DEFAULT_VHOST).forward, ["h:1", "h:2"]);
}

#[test]
fn dvr_variables_as_srs_names_them() {
    let (config, warnings) = parse_env(
        "",
        &[
            ("SRS_VHOST_DVR_ENABLED", "on"),
            ("SRS_VHOST_DVR_DVR_PLAN", "segment"),
            ("SRS_VHOST_DVR_DVR_PATH", "/rec/[stream].mp4"),
            ("SRS_VHOST_DVR_DVR_DURATION", "10"),
            ("SRS_VHOST_DVR_DVR_WAIT_KEYFRAME", "off"),
            ("SRS_VHOST_DVR_TIME_JITTER", "zero"),
            ("SRS_VHOST_DVR_DVR_APPLY", "live/a live/b"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let dvr = &config.vhost(DEFAULT_VHOST).dvr;
    assert!(dvr.enabled && !dvr.wait_keyframe);
    assert_eq!(
        (dvr.plan, dvr.time_jitter),
        (DvrPlan::Segment, TimeJitter::Zero)
    );
    assert_eq!(
        (dvr.path.as_str(), dvr.duration),
        ("/rec/[stream].mp4", Duration::from_secs(10))
    );
    assert!(dvr.applies_to("live", "b") && !dvr.applies_to("live", "c"));
}

#[test]
fn http_server_variables_reach_srs_2_http_stream() {
    let (config, warnings) = parse_env(
        "http_stream { enabled on; listen 8081; }",
        &[("SRS_HTTP_SERVER_LISTEN", "8082")],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(config.http_server.enabled);
    assert_eq!(config.http_server.listen.port(), 8082);
}

#[test]
fn a_bad_variable_is_named_in_the_error() {
    let err = Config::parse_with("", FILE, &env(&[("SRS_HTTP_API_ENABLED", "yes")]))
        .expect_err("not on or off");
    assert_eq!(
        err.to_string(),
        "SRS_HTTP_API_ENABLED: enabled: `yes` is not `on` or `off`"
    );
    let err =
        Config::parse_with("", FILE, &env(&[("RINGCAST_LISTEN", "1935 0")])).expect_err("port 0");
    assert_eq!(
        err.to_string(),
        "RINGCAST_LISTEN: listen: 0 is out of range 1..=65535"
    );
}

#[test]
fn empty_unknown_and_process_variables() {
    let (config, warnings) = parse_env(
        "listen 1935;",
        &[
            ("SRS_LISTEN", ""),
            ("SRS_VHOST_HLS_ENABLED", "on"),
            ("SRS_ENV_ONLY", "on"),
            ("SRS_CONFIG_FILE", "conf/srs.conf"),
            ("RINGCAST_IO", "epoll"),
        ],
    );
    assert_eq!(
        config.listen,
        ["0.0.0.0:1935".parse().expect("addr")],
        "empty is unset"
    );
    assert_eq!(
        messages(&warnings),
        ["SRS_VHOST_HLS_ENABLED: not a directive ringcast supports, ignored"]
    );
    let vars = env(&[("SRS_ENV_ONLY", "1"), ("SRS_CONFIG_FILE", "a.conf")]);
    assert!(vars.env_only());
    assert_eq!(vars.config_file(), Some(PathBuf::from("a.conf")));
    let vars = env(&[
        ("SRS_CONFIG_FILE", "a.conf"),
        ("RINGCAST_CONFIG_FILE", "b.conf"),
    ]);
    assert_eq!(vars.config_file(), Some(PathBuf::from("b.conf")));
    assert!(!env(&[("SRS_ENV_ONLY", "")]).env_only());
}

#[test]
fn environment_only_load_has_no_file() {
    let (config, warnings) =
        Config::load_with(None, &env(&[("SRS_LISTEN", "1940")])).expect("environment alone");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.listen, ["0.0.0.0:1940".parse().expect("addr")]);
    assert_eq!(config.vhosts.len(), 1);
}

#[test]
fn include_splices_files_found_beside_the_including_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("parts")).expect("dir");
    std::fs::write(
        dir.path().join("parts/vhost.conf"),
        "vhost a {\n  include play.conf;\n}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("parts/play.conf"), "gop_cache off;\n").expect("write");
    std::fs::write(dir.path().join("parts/listen.conf"), "listen 1940;\n").expect("write");
    let main = dir.path().join("main.conf");
    std::fs::write(
        &main,
        "include parts/listen.conf parts/vhost.conf;\nvhost b { }\n",
    )
    .expect("write");
    let (config, warnings) = Config::load(&main).expect("includes resolve");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.listen, [addr("0.0.0.0:1940")]);
    assert!(!config.vhost("a").gop_cache);
    assert!(config.vhost("b").gop_cache);

    std::fs::write(dir.path().join("parts/play.conf"), "\n\ngop_cache maybe;\n").expect("write");
    let err = Config::load(&main).expect_err("bad value in an included file");
    let play = dir.path().join("parts/play.conf");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: gop_cache: `maybe` is not `on` or `off`",
            play.display()
        )
    );
}

#[test]
fn include_of_itself_or_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("loop.conf");
    std::fs::write(&main, "listen 1935;\ninclude loop.conf;\n").expect("write");
    let err = Config::load(&main).expect_err("a loop");
    assert!(
        matches!(
            err,
            ConfigError::IncludeTooDeep {
                line: 2,
                max: MAX_INCLUDE_DEPTH,
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(&main, "include nowhere.conf;\n").expect("write");
    let err = Config::load(&main).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: include: nowhere.conf is neither in the working directory nor beside this file",
            main.display()
        )
    );
}

#[test]
fn security_rules_from_srs_full_conf_and_their_errors() {
    use crate::access::security::{check, Action};
    let (config, _) = parse(SRS_FULL);
    let security = &config.vhost("transcode.srs.com").security;
    assert!(security.enabled);
    assert_eq!(security.rules.len(), 2);
    let ip = "10.1.1.1".parse().unwrap();
    assert!(check(security, Action::Publish, ip).is_err());
    assert_eq!(check(security, Action::Play, ip), Ok(()));
    assert!(!config.vhost(DEFAULT_VHOST).security.enabled);

    let (config, warnings) = parse(
        "vhost a { security { enabled on; allow publish 127.0.0.1; allow publish 10.0.0.0/8; \
         deny play ::1; allow play all 1; } }",
    );
    let texts: Vec<_> = config
        .vhost("a")
        .security
        .rules
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(texts, ["127.0.0.1", "10.0.0.0/8", "::1", "all"]);
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:1: allow: ignoring extra arguments `1`; is a `;` missing?"]
    );
    assert_err(
        "vhost a {\n security {\n enabled on;\n allow publish 10.0.0.0/33;\n }\n}",
        "conf/test.conf:4: allow: `10.0.0.0/33` is not `all`, an IP address or a CIDR block, \
         e.g. 10.0.0.0/8",
    );
    assert_err(
        "vhost a { security { deny watch all; } }",
        "conf/test.conf:1: deny: `watch` is not `publish` or `play`",
    );
    assert_err(
        "vhost a {\n security {\n deny play;\n }\n}",
        "conf/test.conf:3: deny: missing value",
    );
    assert_err(
        "vhost a { security { allow play all { } } }",
        "conf/test.conf:1: allow: takes values ending in `;`, not a block",
    );
    let (_, warnings) = parse("vhost a { security { enabled on; referer x; } }");
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:1: vhost.security.referer: not supported by ringcast, ignored (reported once)"]
    );
}

#[test]
fn full_srs_config_http_hooks() {
    let (config, warnings) = parse(SRS_FULL);
    let hooks = &config.vhost(DEFAULT_VHOST).http_hooks;
    assert!(hooks.enabled);
    assert_eq!(
        hooks.on_connect,
        [
            "http://127.0.0.1:8085/api/v1/clients",
            "http://localhost:8085/api/v1/clients"
        ]
    );
    assert_eq!(hooks.on_publish, ["http://127.0.0.1:8085/api/v1/streams"]);
    assert_eq!(hooks.on_play, ["http://127.0.0.1:8085/api/v1/sessions"]);
    assert!(hooks.on_close.is_empty() && hooks.on_stop.is_empty());
    assert_eq!(hooks.on_hls, ["http://127.0.0.1:8085/api/v1/hls"]);
    assert_eq!(
        hooks.on_hls_notify,
        ["http://127.0.0.1:8085/api/v1/hls/[server_id]/[app]/[stream]/[ts_url][param]"]
    );
    let hooks_warned: Vec<_> = messages(&warnings)
        .into_iter()
        .filter(|m| m.contains("http_hooks."))
        .collect();
    assert!(hooks_warned.is_empty(), "{hooks_warned:?}");
}

#[test]
fn cluster_edge_and_origin_blocks() {
    let (config, warnings) = parse(
        "vhost edge {\n cluster {\n mode remote;\n origin 10.0.0.1 origin-2.example.com:19350 [::1]:1936;\n \
         token_traverse on;\n debug_srs_upnode on;\n }\n}\n\
         vhost origin { cluster { mode local; origin_cluster on; coworkers 127.0.0.1:9091 api.example.com; } }",
    );
    let edge = &config.vhost("edge").cluster;
    assert!(edge.is_edge());
    assert_eq!(
        edge.origin,
        ["10.0.0.1:1935", "origin-2.example.com:19350", "[::1]:1936"]
    );
    assert!(edge.token_traverse && !edge.origin_cluster);
    let origin = &config.vhost("origin").cluster;
    assert_eq!(
        *origin,
        Cluster {
            mode: ClusterMode::Local,
            origin: Vec::new(),
            token_traverse: false,
            origin_cluster: true,
            coworkers: vec!["127.0.0.1:9091".to_owned(), "api.example.com:80".to_owned()],
        }
    );
    assert_eq!(
        config.vhost("x").cluster,
        Cluster::default(),
        "an origin by default"
    );
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:6: vhost.cluster.debug_srs_upnode: not supported by ringcast, ignored (reported once)"]
    );
}

/// SRS 1/2 wrote the edge settings in the vhost; SRS 3+ moves them into `cluster {}`.
#[test]
fn cluster_legacy_vhost_level_settings() {
    let (config, warnings) = parse(
        "vhost a { mode remote; origin 127.0.0.1:19350 127.0.0.1:19351; token_traverse on; }",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = &config.vhost("a").cluster;
    assert!(a.is_edge() && a.token_traverse);
    assert_eq!(a.origin, ["127.0.0.1:19350", "127.0.0.1:19351"]);
    let (config, warnings) = parse(
        "vhost a {\n origin 127.0.0.1:1;\n cluster {\n mode remote;\n origin 127.0.0.1:2;\n }\n}",
    );
    assert_eq!(config.vhost("a").cluster.origin, ["127.0.0.1:2"]);
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:2: origin: also set in `cluster {}` at line 5, which takes precedence"]
    );
}

#[test]
fn http_api_auth_block() {
    let (config, _) = parse(SRS_FULL);
    let auth = &config.api_auth;
    assert!(auth.enabled && !auth.public_metrics);
    let admin = "Basic YWRtaW46YWRtaW4="; // admin:admin
    assert_eq!(auth.credentials.verify(Some(admin)), Ok(()));

    let (config, warnings) = parse(
        "http_api { enabled on; listen 1985; auth { enabled on; username u; password p; \
         public_metrics on; realm x; } }",
    );
    assert!(config.api_auth.enabled && config.api_auth.public_metrics);
    assert!(config.api_auth.credentials.verify(Some(admin)).is_err());
    assert_eq!(config.http_api.listen, addr("0.0.0.0:1985"));
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:1: http_api.auth.realm: not supported by ringcast, ignored (reported once)"]
    );
    let (config, _) = parse("http_api { enabled on; auth { enabled off; } }");
    assert!(!config.api_auth.enabled);
    assert_err(
        "http_api {\n enabled on;\n auth {\n enabled on;\n username admin;\n }\n}",
        "conf/test.conf:3: http_api.auth.password (auth is enabled): missing value",
    );
    assert_err(
        "http_api { auth { enabled yes; } }",
        "conf/test.conf:1: enabled: `yes` is not `on` or `off`",
    );
    assert_err(
        "http_api { auth on; }",
        "conf/test.conf:1: auth: expected a `{ ... }` block",
    );
    // `auth` belongs to the API alone.
    let (_, warnings) = parse("http_server { enabled on; auth { enabled on; } }");
    assert_eq!(
        messages(&warnings),
        ["conf/test.conf:1: http_server.auth: not supported by ringcast, ignored (reported once)"]
    );
    let (config, _) = parse_env(
        "http_api { enabled on; }",
        &[
            ("SRS_HTTP_API_AUTH_ENABLED", "on"),
            ("SRS_HTTP_API_AUTH_USERNAME", "admin"),
            ("SRS_HTTP_API_AUTH_PASSWORD", "admin"),
        ],
    );
    assert!(config.api_auth.enabled);
    assert_eq!(config.api_auth.credentials.verify(Some(admin)), Ok(()));
}

#[test]
fn bad_cluster_settings() {
    assert_err(
        "vhost a {\n cluster {\n mode remote;\n }\n}",
        "conf/test.conf:3: vhost `a`: `mode remote;` needs `origin HOST[:PORT];`",
    );
    assert_err(
        "vhost a { cluster { mode edge; } }",
        "conf/test.conf:1: mode: `edge` is not `local` or `remote`",
    );
    assert_err(
        "vhost a { cluster { mode remote; origin; } }",
        "conf/test.conf:1: origin: missing value",
    );
    assert_err(
        "vhost a { cluster { mode remote; origin host:port; } }",
        "conf/test.conf:1: origin: `host:port` is not HOST[:PORT], e.g. 127.0.0.1:19350 or [::1]:1935",
    );
    assert_err(
        "vhost a { cluster { origin_cluster yes; } }",
        "conf/test.conf:1: origin_cluster: `yes` is not `on` or `off`",
    );
    assert_err(
        "vhost a { cluster; }",
        "conf/test.conf:1: cluster: expected a `{ ... }` block",
    );
    // An origin list without `mode remote;` is kept but unused, as in SRS.
    let (config, _) = parse("vhost a { cluster { origin 127.0.0.1; } }");
    assert!(!config.vhost("a").cluster.is_edge());
}

#[test]
fn http_hooks_block() {
    let (config, warnings) = parse(
        "vhost a { http_hooks { enabled on; on_connect http://h/c; on_close http://h/x; \
         on_publish http://h/p HTTP://h2:81/p?k=v; on_unpublish http://h/u; on_play http://h/pl; \
         on_stop http://h/s; } }\n\
         vhost b { http_hooks { on_publish http://h/p; } }",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = &config.vhost("a").http_hooks;
    assert_eq!(
        *a,
        HttpHooks {
            enabled: true,
            on_connect: vec!["http://h/c".into()],
            on_close: vec!["http://h/x".into()],
            on_publish: vec!["http://h/p".into(), "HTTP://h2:81/p?k=v".into()],
            on_unpublish: vec!["http://h/u".into()],
            on_play: vec!["http://h/pl".into()],
            on_stop: vec!["http://h/s".into()],
            on_dvr: vec![],
            on_hls: vec![],
            on_hls_notify: vec![],
        }
    );
    assert!(
        !config.vhost("b").http_hooks.enabled,
        "off unless enabled, as in SRS"
    );
    assert_eq!(config.vhost(DEFAULT_VHOST).http_hooks, HttpHooks::default());

    let (config, warnings) = parse(
        "vhost a {\n http_hooks {\n enabled on;\n on_play https://h/p;\n on_dvr http://h/d;\n \
         on_stop http://h/s;\n on_stop http://h/t;\n timeout 5;\n }\n}",
    );
    assert_eq!(
        messages(&warnings),
        [
            "conf/test.conf:4: http_hooks.on_play: https://h/p: https hooks are not supported \
             yet, so every call to it denies",
            "conf/test.conf:7: on_stop: repeated, first set at line 6, which is used",
            "conf/test.conf:8: vhost.http_hooks.timeout: not supported by ringcast, ignored \
             (reported once)",
        ]
    );
    let hooks = &config.vhost("a").http_hooks;
    assert_eq!(hooks.on_play, ["https://h/p"], "kept, so that it denies");
    assert_eq!(hooks.on_stop, ["http://h/s"]);
    assert_eq!(hooks.on_dvr, ["http://h/d"]);

    assert_err(
        "vhost a { http_hooks { on_publish rtmp://h/p; } }",
        "conf/test.conf:1: on_publish: `rtmp://h/p` is not an http:// URL",
    );
    let err = parse_err("vhost a { http_hooks; }");
    assert!(err.to_string().contains("http_hooks"), "{err}");
}

#[test]
fn http_hooks_from_the_environment() {
    let (config, warnings) = parse_env(
        "vhost __defaultVhost__ { http_hooks { on_play http://h/file; } }",
        &[
            ("SRS_VHOST_HTTP_HOOKS_ENABLED", "on"),
            ("SRS_VHOST_HTTP_HOOKS_ON_PUBLISH", "http://h/a http://h/b"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let hooks = &config.vhost(DEFAULT_VHOST).http_hooks;
    assert!(hooks.enabled);
    assert_eq!(hooks.on_publish, ["http://h/a", "http://h/b"]);
    assert_eq!(hooks.on_play, ["http://h/file"]);
}
