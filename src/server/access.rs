//! The `security {}` check of an RTMP publish or play: the vhost's rules
//! ([`crate::access::security`]) asked about the peer's address, the refusal as a
//! [`ConnError`] that the connection answers like a disabled vhost (an onStatus error, then a
//! close) and logs once where it ends. Forwards are outgoing connections and never pass here.

use std::net::SocketAddr;

use super::error::ConnError;
use crate::access::security::{self, Action};
use crate::state::Shared;

/// Whether `peer` may do `action` on `vhost`.
pub(super) fn check(
    shared: &Shared,
    vhost: &str,
    action: Action,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    let config = shared.config();
    security::check(&config.vhost(vhost).security, action, peer.ip())
        .map_err(|why| ConnError::Denied { ip: peer.ip(), why })
}
