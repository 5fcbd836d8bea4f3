//! WebRTC: WHIP/WHEP signalling, sessions on str0m (sans-IO) and batched UDP I/O. It owns the
//! RTC UDP sockets; the HTTP API ([`crate::http`], once it exists) hands it the signalling
//! requests under `/rtc/v1/` through [`handle_api`].

use std::sync::Arc;

use crate::profile::ApiReply;
use crate::server::Shared;

/// Serves the signalling paths under `/rtc/v1/` (WHIP, WHEP, SRS's JSON publish and play);
/// `None` for any other path. `query` is the raw query string without `?`; `body` the request
/// body (an SDP offer, or SRS's JSON).
pub async fn handle_api(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Arc<Shared>,
) -> Option<ApiReply> {
    let _ = (method, path, query, body, shared);
    None
}
