//! Built-in performance tooling: CPU profiles (pprof), heap profiles (jemalloc feature), the
//! incremental leak check and the process statistics that SRS's API reports. It owns no
//! socket: the HTTP API ([`crate::http`], once it exists) hands it the requests under its
//! paths through [`handle_api`] and writes back what it returns.

use std::sync::Arc;

use crate::server::Shared;

/// An answer to an API request, as the HTTP layer writes it. Shared by every module that
/// serves API paths (profiling here, WebRTC signalling in [`crate::rtc`]).
#[derive(Debug)]
pub struct ApiReply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// Extra response headers, such as WHIP's `Location`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Serves the API paths this module owns (`/api/v1/profile/*`, `/api/v1/valgrind`,
/// `/api/v1/meminfos`, `/api/v1/rusages`, `/api/v1/self_proc_stats`,
/// `/api/v1/system_proc_stats`); `None` for any other path. `query` is the raw query string
/// without `?`. Async because a CPU profile of N seconds waits N seconds.
pub async fn handle_api(
    method: &str,
    path: &str,
    query: &str,
    shared: &Arc<Shared>,
) -> Option<ApiReply> {
    let _ = (method, path, query, shared);
    None
}
