//! Calling the hooks of an event: the URLs of the client's vhost from the config in force at
//! the call (so a SIGHUP reload applies to the next client), one POST each in order, SRS's
//! verdict on each answer. An event that decides (connect, publish, play) awaits them on the
//! client's own task and stops at the first denial; a notice (close, unpublish, stop, dvr,
//! hls) runs on a task of its own and logs its failure, as SRS ignores it.

use std::sync::LazyLock;
use std::time::Duration;

use super::body::{self, Action, Details, Request, Server};
use super::verdict::{verdict, Deny};
use crate::httpc::{self, HttpcError, Limits, Method, ResponseError, Url, UrlError};
use crate::hub::StreamKey;
use crate::state::Shared;

/// How long one hook may take to answer (connect, send, the whole answer).
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long an `on_hls_notify` GET may take, SRS's `SRS_HLS_NOTIFY_TIMEOUT`.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// SRS's `service_id`: this process's, drawn once.
static SERVICE_ID: LazyLock<String> = LazyLock::new(|| format!("{:08x}", rand::random::<u32>()));
/// SRS's `cwd`: the working directory, read once, as SRS reads it at start (ringcast never
/// changes it).
static CWD: LazyLock<String> =
    LazyLock::new(|| std::env::current_dir().map_or(String::new(), |d| d.display().to_string()));

/// What this server adds to each body.
fn server(shared: &Shared) -> Server<'_> {
    Server {
        server_id: &shared.server_id,
        service_id: &SERVICE_ID,
        cwd: &CWD,
    }
}

/// Why an event's hooks did not allow it.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The configured URL is not one this client can call (`https://`).
    #[error("{action} hook {url}: {source}")]
    Url {
        /// The event.
        action: &'static str,
        /// The hook.
        url: String,
        /// What is wrong with it.
        source: UrlError,
    },
    /// The hook gave no usable answer: refused, timed out, malformed, too large.
    #[error("{action} hook {url} failed: {source}")]
    Failed {
        /// The event.
        action: &'static str,
        /// The hook.
        url: String,
        /// What happened.
        source: HttpcError,
    },
    /// The hook answered, and its answer denies.
    #[error("{action} hook {url} denied: {source}")]
    Denied {
        /// The event.
        action: &'static str,
        /// The hook.
        url: String,
        /// Its answer.
        source: Deny,
    },
}

impl HookError {
    /// What the client is told: the event and that a hook denied, not the hook's address.
    #[must_use]
    pub fn public(&self) -> String {
        let (Self::Url { action, .. } | Self::Failed { action, .. } | Self::Denied { action, .. }) =
            self;
        format!("denied by the {action} hook")
    }
}

/// The hooks of `action` for `req` and their body, or `None` when none is configured.
fn prepare(
    shared: &Shared,
    action: Action,
    req: &Request,
    details: &Details,
) -> Option<(Vec<String>, String)> {
    let config = shared.config();
    let vhost = config.vhost(&req.vhost);
    let urls = urls(&vhost.http_hooks, action)?;
    if urls.is_empty() {
        return None;
    }
    let req = Request {
        vhost: vhost.name.clone(),
        ..req.clone()
    };
    let key = StreamKey {
        vhost: req.vhost.clone(),
        app: req.app.clone(),
        stream: req.stream.clone(),
    };
    let stream_id = shared.hub.get(&key).map(|s| s.id());
    let body = body::body(action, server(shared), &req, stream_id, details);
    Some((urls.clone(), body))
}

/// The URLs of `action`, `None` when the vhost's hooks are off.
pub(super) fn urls(hooks: &crate::config::HttpHooks, action: Action) -> Option<&Vec<String>> {
    if !hooks.enabled {
        return None;
    }
    Some(match action {
        Action::Connect => &hooks.on_connect,
        Action::Close => &hooks.on_close,
        Action::Publish => &hooks.on_publish,
        Action::Unpublish => &hooks.on_unpublish,
        Action::Play => &hooks.on_play,
        Action::Stop => &hooks.on_stop,
        Action::Dvr => &hooks.on_dvr,
        Action::Hls => &hooks.on_hls,
        Action::HlsNotify => &hooks.on_hls_notify,
    })
}

/// Calls each hook of a deciding `action` in turn; `Ok` when every one allows (or none is
/// configured).
pub(super) async fn decide(
    shared: &Shared,
    action: Action,
    req: &Request,
) -> Result<(), HookError> {
    let Some((urls, body)) = prepare(shared, action, req, &Details::None) else {
        return Ok(());
    };
    for url in &urls {
        let answer = call(action, url, &body).await?;
        tracing::info!(
            cid = req.client_id,
            "http: {} ok, url={url}, request={body}, response={answer}",
            action.name()
        );
    }
    Ok(())
}

/// Calls each hook of a notice `action` on a task of its own; failures are logged.
pub(super) fn notify(shared: &Shared, action: Action, req: &Request, details: &Details) {
    let Some((urls, body)) = prepare(shared, action, req, details) else {
        return;
    };
    let cid = req.client_id;
    let task = async move {
        for url in &urls {
            match call(action, url, &body).await {
                Ok(_) => tracing::info!(cid, "http: {} ok, url={url}", action.name()),
                Err(e) => tracing::warn!(cid, "http: ignoring a failed hook: {e}, request={body}"),
            }
        }
    };
    // A connection dropped by a worker's shutdown may end off its runtime: the notice goes
    // with it.
    if compio::runtime::Runtime::try_with_current(|rt| rt.spawn(task).detach()).is_err() {
        tracing::debug!(cid, "http: {} not sent: no runtime", action.name());
    }
}

/// GETs each `on_hls_notify` URL of `req`'s vhost for the segment at `ts_url`, in order, on a
/// task of its own, reading `nb` bytes of each answer at most; failures are logged, as SRS
/// ignores them.
pub(super) fn notify_get(shared: &Shared, req: &Request, ts_url: &str, nb: usize) {
    let config = shared.config();
    let hooks = &config.vhost(&req.vhost).http_hooks;
    let Some(templates) = urls(hooks, Action::HlsNotify).filter(|u| !u.is_empty()) else {
        return;
    };
    let urls: Vec<String> = templates
        .iter()
        .map(|t| body::notify_url(t, server(shared), req, ts_url))
        .collect();
    let cid = req.client_id;
    let limits = Limits {
        body: nb,
        ..Limits::default()
    };
    let task = async move {
        for url in &urls {
            let parsed = match Url::parse(url) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(cid, "http: ignoring on_hls_notify {url}: {e}");
                    continue;
                }
            };
            match httpc::request(Method::Get, &parsed, &[], NOTIFY_TIMEOUT, limits).await {
                Ok(answer) => tracing::info!(
                    cid,
                    "http: on_hls_notify ok, url={url}, code={}, read={}B",
                    answer.status,
                    answer.body.len()
                ),
                // The answer goes on past what a notice reads: the CDN took it.
                Err(HttpcError::Response(ResponseError::BodyTooLarge(n))) => {
                    tracing::info!(cid, "http: on_hls_notify ok, url={url}, read={n}B");
                }
                Err(e) => tracing::warn!(cid, "http: ignoring a failed on_hls_notify {url}: {e}"),
            }
        }
    };
    if compio::runtime::Runtime::try_with_current(|rt| rt.spawn(task).detach()).is_err() {
        tracing::debug!(cid, "http: on_hls_notify not sent: no runtime");
    }
}

/// POSTs `body` to `url`: the answer's body (quoted) when it allows.
async fn call(action: Action, url: &str, body: &str) -> Result<String, HookError> {
    let name = action.name();
    let parsed = Url::parse(url).map_err(|source| HookError::Url {
        action: name,
        url: url.to_owned(),
        source,
    })?;
    let answer = httpc::post_json(&parsed, body.as_bytes(), TIMEOUT)
        .await
        .map_err(|source| HookError::Failed {
            action: name,
            url: url.to_owned(),
            source,
        })?;
    verdict(answer.status, &answer.body).map_err(|source| HookError::Denied {
        action: name,
        url: url.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}
