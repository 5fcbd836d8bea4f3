//! RTMP, sans-IO: the handshake, the chunk stream, AMF0, and the server and client session
//! state machines. Everything here takes bytes in and gives events and bytes out; no socket,
//! no clock, no thread and no randomness of its own (the handshake draws from the caller's
//! rng), so tests and fuzzers drive it directly and deterministically.
//!
//! Map: [`handshake`] (simple and complex), [`chunk`] (reader, writer, shared encoders),
//! [`amf0`], [`message`] (message types, chunk streams, and the control and command messages
//! both sessions build), [`session`] (the server side of a connection: publish and play),
//! [`client`] (the client side, for forwarding to another server and for pulls). This module
//! holds the stream-name query helpers both sessions use. It imports nothing from the rest of
//! the crate: media, the hub and the drivers build on it, never the other way.
#![forbid(unsafe_code)]

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod message;
pub mod session;

/// Splits `name?a=b&c=d` into the name and the query (without `?`).
pub fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((name, q)) => (name, q),
        None => (s, ""),
    }
}

/// The value of `key` in a query string such as `vhost=v&token=t`. SRS also accepts `...`
/// as a separator, as some encoders cannot put `?` in a stream name.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split(['&', '?'])
        .flat_map(|p| p.split("..."))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(split_query("live?vhost=a"), ("live", "vhost=a"));
        assert_eq!(split_query("live"), ("live", ""));
        assert_eq!(query_param("vhost=a&t=1", "vhost"), Some("a"));
        assert_eq!(query_param("t=1&vhost=b", "vhost"), Some("b"));
        assert_eq!(query_param("vhost...vhost=c", "vhost"), Some("c"));
        assert_eq!(query_param("t=1", "vhost"), None);
    }
}
