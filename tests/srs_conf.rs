//! SRS's own example configs (`../shared/srs-conf/`: the files of SRS 6.0's `trunk/conf`)
//! all load with `ringcast -t`, each at most with warnings for what ringcast does not do. They
//! are checked the way SRS runs them, from the folder that holds `conf/`, so that
//! `include ./conf/include.vhost.conf;` resolves as it does for SRS.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/srs-conf");
    assert!(
        dir.is_dir(),
        "{} is missing: the SRS config corpus must sit beside the checkout",
        dir.display()
    );
    dir
}

/// `ringcast -t -c conf/NAME` run from `root`, where `conf` is the corpus.
fn check(root: &Path, name: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["-t", "-c"])
        .arg(Path::new("conf").join(name))
        .current_dir(root)
        .env_clear()
        .output()
        .expect("running ringcast -t")
}

#[test]
fn every_srs_example_config_loads() {
    let corpus = corpus();
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&corpus, root.path().join("conf")).expect("conf link");
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .expect("reading the corpus")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 99,
        "only {} configs in {}",
        names.len(),
        corpus.display()
    );
    let failed: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let out = check(root.path(), name);
            (!out.status.success())
                .then(|| format!("{name}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} fail:\n{}",
        failed.len(),
        names.len(),
        failed.join("\n")
    );
}

#[test]
fn srs_include_example_pulls_in_its_vhost() {
    // SRS's include.conf with its included file copied and given one unknown directive: the
    // included file is read, and its warnings point into it.
    let root = tempfile::tempdir().expect("temp dir");
    let conf = root.path().join("conf");
    std::fs::create_dir(&conf).expect("conf dir");
    std::fs::copy(corpus().join("include.conf"), conf.join("include.conf")).expect("copy");
    let vhost = std::fs::read_to_string(corpus().join("include.vhost.conf")).expect("read");
    std::fs::write(
        conf.join("include.vhost.conf"),
        format!("{vhost}\nunknown_marker on;\n"),
    )
    .expect("write");
    let out = check(root.path(), "include.conf");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("conf/include.vhost.conf:")
            && stderr.contains("unknown_marker: not supported"),
        "the included file is read, and its warnings point into it:\n{stderr}"
    );
    assert!(!stderr.contains("include: not supported"), "{stderr}");
    // Its `hls {}` block is read, not warned about.
    assert!(!stderr.contains("vhost.hls"), "{stderr}");
}

#[test]
fn srs_hls_examples_load_with_hls_read() {
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus(), root.path().join("conf")).expect("conf link");
    for name in [
        "hls.conf",
        "hls.realtime.conf",
        "http.hls.conf",
        "hls.origin.conf",
    ] {
        let out = check(root.path(), name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(!stderr.contains("vhost.hls:"), "{name}: {stderr}");
    }
}

#[test]
fn http_ts_and_audio_mounts_warn_that_they_are_not_served() {
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus(), root.path().join("conf")).expect("conf link");
    for name in [
        "http.ts.live.conf",
        "http.aac.live.conf",
        "http.mp3.live.conf",
    ] {
        let out = check(root.path(), name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("not served yet"), "{name}: {stderr}");
    }
}

#[test]
fn srs_edge_and_origin_cluster_examples_load_their_cluster_block() {
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus(), root.path().join("conf")).expect("conf link");
    for name in [
        "edge.conf",
        "edge2.conf",
        "edge.token.traverse.conf",
        "http.flv.live.edge1.conf",
        "origin.cluster.edge.conf",
        "origin.cluster.serverA.conf",
        "origin.cluster.serverB.conf",
        "origin.cluster.serverC.conf",
        "compatible.conf",
    ] {
        let out = check(root.path(), name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        for path in ["vhost.cluster", "vhost.mode", "vhost.origin"] {
            assert!(
                !stderr.contains(&format!("{path}: not supported")),
                "{name}: {stderr}"
            );
        }
    }
    // SRS's vhost transform, which ringcast does not do, is named rather than dropped.
    let out = check(root.path(), "transform.edge.conf");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("vhost.cluster.vhost: not supported"),
        "{stderr}"
    );
}

#[test]
fn hooks_examples_load_and_warn_only_for_what_is_not_called() {
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus(), root.path().join("conf")).expect("conf link");
    let stderr = |name| {
        let out = check(root.path(), name);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{name}: {text}");
        text
    };
    let plain = stderr("http.hooks.callback.conf");
    assert!(
        !plain.contains("http_hooks"),
        "every hook is called:\n{plain}"
    );
    let tls = stderr("https.hooks.callback.conf");
    assert_eq!(
        tls.matches("https hooks are not supported yet, so every call to it denies")
            .count(),
        4,
        "{tls}"
    );
    let full = stderr("full.conf");
    for hook in ["on_dvr", "on_hls", "on_hls_notify"] {
        assert!(
            !full.contains(&format!("http_hooks.{hook}:")),
            "{hook} is called:\n{full}"
        );
    }
}

#[test]
fn srs_dvr_examples_load_without_a_dvr_warning() {
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus(), root.path().join("conf")).expect("conf link");
    for name in [
        "dvr.session.conf",
        "dvr.segment.conf",
        "dvr.path.conf",
        "dvr.mp4.conf",
    ] {
        let out = check(root.path(), name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(!stderr.contains("dvr"), "{name}: {stderr}");
    }
}
