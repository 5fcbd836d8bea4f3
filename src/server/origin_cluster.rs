//! An origin cluster's search for a stream it does not have (SRS's `cluster { mode local;
//! origin_cluster on; coworkers HOST:PORT ...; }`): every coworker is asked at once over
//! SRS's clusters API ([`crate::coworkers`], through [`crate::httpc`]), each within
//! [`QUERY_TIMEOUT`], and the first in config order that has the stream is where the player
//! goes; the RTMP and HTTP drivers send it there. A player that has followed
//! [`MAX_HOPS`] redirects already, or an answer that names the very server the player is on,
//! ends the search with an error for the player rather than another round: that is a loop.
//! When no coworker has the stream the player is refused, as SRS refuses it ("no origin").

use std::io;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::coworkers::{self, AnswerError, Asked, ClusterQuery, Listening, Origin, MAX_HOPS};
use crate::httpc::{self, HttpcError, Url, UrlError};
use crate::hub::StreamKey;
use crate::rtmp::session::{tc_url_host, ServerSession};
use crate::runtime::Connection;
use crate::state::Shared;

/// How long one coworker may take to answer: a player waits for the slowest of them.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a redirected RTMP player has to read the redirect and close, as SRS waits
/// (`SRS_RTMP_REDIRECT_TIMEOUT`) before it closes.
const REDIRECT_LINGER: Duration = Duration::from_secs(3);

/// What becomes of a player of a stream.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Served here as ever: the stream is here, or its vhost is no origin cluster's.
    Serve,
    /// Sent to where a coworker has it.
    Redirect {
        /// Where the stream is.
        origin: Origin,
        /// The coworker that said so.
        coworker: String,
    },
    /// Refused.
    Refuse(ClusterError),
}

/// Why an origin cluster refused a player.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// No coworker has the stream (or none could say).
    #[error("origin cluster: no coworker has {key} ({answers})")]
    NotFound {
        /// The stream.
        key: StreamKey,
        /// What each coworker answered.
        answers: String,
    },
    /// The player has been sent round the cluster too often.
    #[error("origin cluster: {key} not here after {hops} redirects (a loop between coworkers?)")]
    Loop {
        /// The stream.
        key: StreamKey,
        /// Redirects the player followed.
        hops: u32,
    },
}

/// Why one coworker gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("{0}")]
    Http(#[from] HttpcError),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("answer {0}")]
    Answer(#[from] AnswerError),
}

/// Decides for a player of `key` that `asked` for it; `is_self` tells whether an answer
/// names the server the player is on.
pub(crate) async fn lookup(
    shared: &Shared,
    key: &StreamKey,
    asked: &Asked<'_>,
    is_self: impl Fn(&Origin) -> bool,
) -> Lookup {
    let config = shared.config();
    let cluster = &config.vhost(&key.vhost).cluster;
    let here = shared.hub.get(key).is_some_and(|s| s.publisher().is_some());
    if !cluster.origin_cluster || cluster.is_edge() || here {
        return Lookup::Serve;
    }
    let hops = coworkers::hops(asked.query);
    if hops >= MAX_HOPS {
        return Lookup::Refuse(ClusterError::Loop {
            key: key.clone(),
            hops,
        });
    }
    let answers = join_all(cluster.coworkers.iter().map(|c| ask(c, key, asked.host))).await;
    let mut notes = Vec::new();
    for (coworker, answer) in cluster.coworkers.iter().zip(answers) {
        let note = match answer {
            Ok(Some(origin)) if !is_self(&origin) => {
                return Lookup::Redirect {
                    origin,
                    coworker: coworker.clone(),
                }
            }
            Ok(Some(_)) => "names this very server".to_owned(),
            Ok(None) => "not there".to_owned(),
            Err(e) => e.to_string(),
        };
        notes.push(format!("{coworker}: {note}"));
    }
    Lookup::Refuse(ClusterError::NotFound {
        key: key.clone(),
        answers: if notes.is_empty() {
            "no coworkers".to_owned()
        } else {
            notes.join("; ")
        },
    })
}

/// Asks `coworker` (`HOST:PORT` of its API) where `key` is, as SRS asks: a POST without a
/// body, an answer of status 200 or 201.
async fn ask(coworker: &str, key: &StreamKey, host: &str) -> Result<Option<Origin>, AskError> {
    let query = ClusterQuery {
        ip: host.to_owned(),
        vhost: key.vhost.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
        coworker: coworker.to_owned(),
    };
    let url = Url::parse(&format!("http://{coworker}{}", query.request_path()))?;
    let answer = httpc::post_json(&url, b"", QUERY_TIMEOUT).await?;
    if !matches!(answer.status, 200 | 201) {
        return Err(AskError::Status(answer.status));
    }
    Ok(coworkers::parse_answer(&answer.body)?)
}

/// What became of an RTMP player.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It is served here.
    Here,
    /// It was sent elsewhere; the connection is done.
    Redirected,
    /// It was refused, and told so.
    Refused(ClusterError),
}

/// Decides for an RTMP player of `key` on connection `id`, whose play is pending in
/// `session`; `(tc_url, app, stream)` is what it asked. A player sent elsewhere gets SRS's
/// way of it: play's start, then the RTMP 302 (see [`ServerSession::redirect`]), then a wait
/// of at most [`REDIRECT_LINGER`] for it to answer or close, so that the redirect is read
/// before the close. A refused one gets `NetStream.Play.StreamNotFound` with the reason.
pub(super) async fn rtmp_player(
    conn: &Connection,
    session: &mut ServerSession,
    shared: &Shared,
    key: &StreamKey,
    (tc_url, app, stream): (&str, &str, &str),
    id: u64,
) -> io::Result<Outcome> {
    let query = session.stream_query().to_owned();
    let asked = Asked {
        host: tc_url_host(tc_url),
        vhost: &key.vhost,
        query: &query,
    };
    let own = Listening::of(&shared.config()).rtmp.port();
    let outcome = match lookup(shared, key, &asked, |o| asked.is_here(&o.ip, o.port, own)).await {
        Lookup::Serve => return Ok(Outcome::Here),
        Lookup::Redirect { origin, coworker } => {
            let (tc_url, url) = coworkers::rtmp_redirect(&origin, app, stream, &asked);
            tracing::info!(cid = id, "redirect {key} to {url} (coworker {coworker})");
            session.accept_play();
            session.redirect(&tc_url, &url);
            Outcome::Redirected
        }
        Lookup::Refuse(e) => {
            session.reject_play(&e.to_string());
            Outcome::Refused(e)
        }
    };
    while let Some(b) = session.poll_transmit() {
        conn.write_all(b).await?;
    }
    if matches!(outcome, Outcome::Redirected) {
        // Anything the player says now (its answer, or the close) ends the wait.
        let _ = conn.read_some_by(Instant::now() + REDIRECT_LINGER).await;
    }
    Ok(outcome)
}
