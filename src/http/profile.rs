//! The HTTP API's routes for the built-in performance tools: `/api/v1/profile/cpu` and
//! `/heap` (flamegraph or pprof file), SRS's `/api/v1/valgrind` leak check and the process
//! statistics (`meminfos`, `rusages`, `self_proc_stats`, `system_proc_stats`). It parses the
//! query and shapes the answer; the work is [`crate::profile`]'s.

use std::sync::Arc;

use serde_json::Value;

use super::reply::{envelope, error, reply, ApiReply};
use crate::profile::{self, query_param, ProfileError};
use crate::state::Shared;

/// SRS's success shape: `{"code":0,"server":..,"service":..,"pid":"..","data":{..}}`.
fn ok(shared: &Shared, data: Value) -> ApiReply {
    let mut m = envelope(&shared.server_id, 0);
    m.insert("data".into(), data);
    reply(200, &Value::Object(m))
}

fn file(content_type: &'static str, name: &str, body: Vec<u8>) -> ApiReply {
    ApiReply {
        status: 200,
        content_type,
        headers: vec![(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        )],
        body: body.into(),
        sealed: None,
    }
}

/// Serves the API paths this module owns (`/api/v1/profile/*`, `/api/v1/valgrind`,
/// `/api/v1/meminfos`, `/api/v1/rusages`, `/api/v1/self_proc_stats`,
/// `/api/v1/system_proc_stats`); `None` for any other path. `query` is the raw query string
/// without `?`. Async because a CPU profile of N seconds waits N seconds.
pub(super) async fn handle_api(
    method: &str,
    path: &str,
    query: &str,
    shared: &Arc<Shared>,
) -> Option<ApiReply> {
    let path = path.trim_end_matches('/');
    let known = matches!(
        path,
        "/api/v1/profile/cpu"
            | "/api/v1/profile/heap"
            | "/api/v1/valgrind"
            | "/api/v1/meminfos"
            | "/api/v1/rusages"
            | "/api/v1/self_proc_stats"
            | "/api/v1/system_proc_stats"
    );
    if !known {
        return None;
    }
    if method != "GET" {
        return Some(error(405, "only GET is allowed here"));
    }
    Some(match path {
        "/api/v1/profile/cpu" => cpu_profile(query).await,
        "/api/v1/profile/heap" => heap_profile(query),
        "/api/v1/valgrind" => ok(
            shared,
            profile::leak::check(
                profile::valgrind::LeakCheck::parse(query_param(query, "check").unwrap_or("")),
                shared,
            ),
        ),
        "/api/v1/meminfos" => ok(shared, profile::procfs::meminfos()),
        "/api/v1/rusages" => ok(shared, profile::procfs::rusages()),
        "/api/v1/self_proc_stats" => ok(shared, profile::procfs::self_proc_stats()),
        _ => ok(shared, profile::procfs::system_proc_stats()),
    })
}

#[derive(Clone, Copy)]
enum Format {
    Svg,
    Pb,
}

fn format(query: &str) -> Result<Format, ApiReply> {
    match query_param(query, "format") {
        None | Some("svg") => Ok(Format::Svg),
        Some("pb") | Some("pprof") => Ok(Format::Pb),
        Some(other) => Err(error(
            400,
            &format!("format={other}: use format=svg or format=pb"),
        )),
    }
}

fn profile_reply(kind: &str, format: Format, svg: Vec<u8>, pb_gz: Vec<u8>) -> ApiReply {
    let stem = format!(
        "{kind}-{}",
        profile::timestamp(std::time::SystemTime::now())
    );
    match format {
        Format::Svg => file("image/svg+xml", &format!("{stem}.svg"), svg),
        Format::Pb => file("application/octet-stream", &format!("{stem}.pb.gz"), pb_gz),
    }
}

async fn cpu_profile(query: &str) -> ApiReply {
    let format = match format(query) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let seconds = match query_param(query, "seconds").map(str::parse::<u64>) {
        None => 10,
        Some(Ok(s)) if (1..=profile::cpu::MAX_SECONDS).contains(&s) => s,
        Some(_) => {
            return error(
                400,
                &format!("seconds must be 1..={}", profile::cpu::MAX_SECONDS),
            )
        }
    };
    let hz = match query_param(query, "hz").map(str::parse::<i32>) {
        None => profile::cpu::DEFAULT_HZ,
        Some(Ok(hz)) if (1..=1000).contains(&hz) => hz,
        Some(_) => return error(400, "hz must be 1..=1000"),
    };
    match profile::cpu::profile_for(seconds, hz).await {
        Ok(p) => profile_reply("cpu", format, p.svg, p.pb_gz),
        Err(e @ ProfileError::Busy(_)) => error(409, &e.to_string()),
        Err(e) => error(500, &e.to_string()),
    }
}

fn heap_profile(query: &str) -> ApiReply {
    let format = match format(query) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    #[cfg(feature = "jemalloc")]
    let dumped = profile::heap::activate().and_then(|()| profile::heap::dump());
    #[cfg(not(feature = "jemalloc"))]
    let dumped = profile::dump_heap();
    match dumped {
        Ok((svg, pb)) => profile_reply("heap", format, svg, pb),
        Err(e) if cfg!(feature = "jemalloc") => error(500, &e.to_string()),
        Err(e) => error(501, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn run<F: std::future::Future>(f: F) -> F::Output {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(f)
    }

    fn shared() -> Arc<Shared> {
        Shared::new(crate::config::Config::default())
    }

    fn body(r: &ApiReply) -> Value {
        serde_json::from_slice(&r.body).expect("JSON body")
    }

    #[test]
    fn other_paths_are_not_ours_and_only_get_is_served() {
        let s = shared();
        run(async {
            assert!(handle_api("GET", "/api/v1/streams", "", &s).await.is_none());
            let r = handle_api("POST", "/api/v1/rusages", "", &s)
                .await
                .expect("ours");
            assert_eq!(r.status, 405);
            for path in [
                "/api/v1/meminfos",
                "/api/v1/rusages",
                "/api/v1/self_proc_stats",
                "/api/v1/system_proc_stats/",
            ] {
                let r = handle_api("GET", path, "", &s).await.expect("ours");
                assert_eq!(r.status, 200, "{path}");
                let v = body(&r);
                assert_eq!(v["code"], 0, "{path}");
                assert_eq!(v["data"]["ok"], true, "{path}: {v}");
            }
        });
    }

    #[test]
    fn bad_profile_requests_get_a_400_and_heap_without_jemalloc_a_501() {
        let s = shared();
        run(async {
            for q in [
                "seconds=0",
                "seconds=abc",
                "seconds=100000",
                "format=png",
                "hz=0",
            ] {
                let r = handle_api("GET", "/api/v1/profile/cpu", q, &s)
                    .await
                    .expect("ours");
                assert_eq!(r.status, 400, "{q}");
                assert!(body(&r)["error"].is_string());
            }
            let r = handle_api("GET", "/api/v1/profile/heap", "", &s)
                .await
                .expect("ours");
            if cfg!(feature = "jemalloc") {
                // The test binary's allocator is not jemalloc with prof:true.
                assert_ne!(r.status, 200);
            } else {
                assert_eq!(r.status, 501);
            }
        });
    }

    #[test]
    fn a_cpu_profile_on_demand_and_a_409_for_a_second_one() {
        let _serial = crate::profile::CPU_SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = shared();
        run(async {
            let first = handle_api("GET", "/api/v1/profile/cpu", "seconds=1&format=pb", &s);
            let second = async {
                // Asked once the first one runs, and not before.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while !crate::profile::cpu::running() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the first never started"
                    );
                    compio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                let r = handle_api("GET", "/api/v1/profile/cpu", "seconds=1", &s)
                    .await
                    .expect("ours");
                // Burn some CPU while the first samples.
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed().as_millis() < 300 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                r
            };
            let (first, second) = futures_util::future::join(first, second).await;
            assert_eq!(second.status, 409);
            assert!(body(&second)["error"]
                .as_str()
                .is_some_and(|e| e.contains("already running")));
            let first = first.expect("ours");
            assert_eq!(first.status, 200);
            let raw = crate::profile::gunzip(&first.body).expect("gzipped");
            use pprof::protos::Message;
            pprof::protos::Profile::decode(raw.as_slice()).expect("a pprof Profile");
            // The first is done: the next one may run, and an idle one still draws.
            let svg = handle_api("GET", "/api/v1/profile/cpu", "seconds=1&format=svg", &s)
                .await
                .expect("ours");
            assert_eq!(svg.status, 200);
            assert_eq!(svg.content_type, "image/svg+xml");
            assert!(String::from_utf8_lossy(&svg.body).contains("<svg"));
        });
    }
}
