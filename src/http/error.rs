//! Why an HTTP connection ended early: one error for the request loop and the HTTP-FLV player
//! that may take its connection over, logged once where the connection ends.

use std::io;

use super::parser::HttpError;
use crate::egress::BatchError;
use crate::hooks::HookError;
use crate::stats::clients::Kicked;

/// Why an HTTP connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpConnError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The request was refused (and answered).
    #[error("{0}")]
    Request(#[from] HttpError),
    /// TLS failed: a handshake refused, a record that does not decrypt.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The peer was silent too long.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The API kicked the client.
    #[error("kicked by the HTTP API")]
    Kicked,
    /// An HTTP-FLV player's socket took no data for queue_length.
    #[error("player stopped reading for {0:?} (queue_length): cut")]
    Stalled(std::time::Duration),
    /// An HTTP hook did not allow the play (answered 403).
    #[error("{0}")]
    Hook(#[from] HookError),
}

impl From<BatchError> for HttpConnError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Io(e) => Self::Io(e),
            BatchError::Stalled(d) => Self::Stalled(d),
        }
    }
}

impl From<Kicked> for HttpConnError {
    fn from(_: Kicked) -> Self {
        Self::Kicked
    }
}
