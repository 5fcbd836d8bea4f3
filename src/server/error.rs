//! Why an RTMP connection ended early: one error for the control phase, the publisher's read
//! loop and the player's tasks, logged once where the connection ends; and the edge's
//! refusals ([`EdgeError`]), which end a connection too.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use super::origin_cluster::ClusterError;
use crate::access::security::Denied;
use crate::egress::BatchError;
use crate::hooks::HookError;
use crate::hub::PublishError;
use crate::rtmp::session::SessionError;
use crate::stats::clients::Kicked;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The peer said nothing for too long.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The peer closed the connection before publish or play.
    #[error("peer closed the connection while {0}")]
    Eof(&'static str),
    /// The stream is busy.
    #[error("publish refused: {0}")]
    PublishRefused(#[from] PublishError),
    /// A player's socket took no data for queue_length.
    #[error("player stopped reading for {0:?} (queue_length): cut")]
    Stalled(Duration),
    /// The vhost is disabled.
    #[error("vhost {0} is disabled")]
    VhostDisabled(String),
    /// The vhost's `security {}` rules refuse this address.
    #[error("{ip}: {why}")]
    Denied {
        /// The peer's address.
        ip: IpAddr,
        /// Which rule, or that none allowed it.
        why: Denied,
    },
    /// An edge refused the client or lost its origin.
    #[error("{0}")]
    Edge(#[from] EdgeError),
    /// The origin cluster found the stream nowhere, or found a loop.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The API asked to close the connection.
    #[error("kicked by the HTTP API")]
    Kicked,
    /// An HTTP hook did not allow the connect, publish or play.
    #[error("{0}")]
    Hook(#[from] HookError),
}

impl ConnError {
    /// What a refused client is told: the error, except a hook's address and answer.
    pub(super) fn description(&self) -> String {
        match self {
            Self::Hook(e) => e.public(),
            e => e.to_string(),
        }
    }
}

impl From<Kicked> for ConnError {
    fn from(_: Kicked) -> Self {
        Self::Kicked
    }
}

impl From<BatchError> for ConnError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Io(e) => Self::Io(e),
            BatchError::Stalled(d) => Self::Stalled(d),
        }
    }
}

/// Why an edge refused a client or an upstream ended; each names the stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    /// A connection of this process's own pulls asked it for a stream: its origin is itself.
    #[error("edge loop: this server is its own origin for {0}")]
    Loop(String),
    /// No origin took the publish: the last one tried and what it said.
    #[error("edge publish refused: {0}")]
    PublishRefused(String),
    /// The origin of a publish failed.
    #[error("edge publish lost its origin: {0}")]
    PublishLost(String),
}
