//! RTMP, sans-IO: the handshake, the chunk stream, AMF0, and the server and client session
//! state machines. Everything here takes bytes in and gives events and bytes out; no socket,
//! no clock, no thread, so tests and fuzzers drive it directly.
//!
//! Map: [`handshake`] (simple and complex), [`chunk`] (reader, writer, shared encoders),
//! [`amf0`], [`session`] (the server side of a connection: publish and play), [`client`] (the
//! client side, for forwarding to another server). This module holds the message types and
//! the control and command messages both sessions build.
#![forbid(unsafe_code)]

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod session;

use bytes::{Bytes, BytesMut};

use crate::media;
use amf0::Amf0Value;
use chunk::{ChunkWriter, RawMessage};

/// Message type: Set Chunk Size.
pub const MSG_SET_CHUNK_SIZE: u8 = 1;
/// Message type: Abort Message.
pub const MSG_ABORT: u8 = 2;
/// Message type: Acknowledgement.
pub const MSG_ACK: u8 = 3;
/// Message type: User Control.
pub const MSG_USER_CONTROL: u8 = 4;
/// Message type: Window Acknowledgement Size.
pub const MSG_WINDOW_ACK_SIZE: u8 = 5;
/// Message type: Set Peer Bandwidth.
pub const MSG_SET_PEER_BANDWIDTH: u8 = 6;
/// Message type: AMF3 data.
pub const MSG_DATA_AMF3: u8 = 15;
/// Message type: AMF3 command.
pub const MSG_COMMAND_AMF3: u8 = 17;
/// Message type: AMF0 data.
pub const MSG_DATA_AMF0: u8 = 18;
/// Message type: AMF0 command.
pub const MSG_COMMAND_AMF0: u8 = 20;
/// Message type: aggregate (FLV tags in one message).
pub const MSG_AGGREGATE: u8 = 22;

/// User Control event: Stream Begin.
pub const UC_STREAM_BEGIN: u16 = 0;
/// User Control event: Stream EOF.
pub const UC_STREAM_EOF: u16 = 1;
/// User Control event: Set Buffer Length.
pub const UC_SET_BUFFER_LENGTH: u16 = 3;
/// User Control event: Ping Request.
pub const UC_PING_REQUEST: u16 = 6;
/// User Control event: Ping Response.
pub const UC_PING_RESPONSE: u16 = 7;

/// Chunk stream for protocol control messages (fixed by the spec).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for commands and onStatus. Media uses 5, 6 and 7 (see `media`), so the
/// session's writer and the shared fan-out bytes never interleave on one chunk stream.
pub const CSID_COMMAND: u32 = 3;

/// The message stream id the server gives every createStream.
pub const STREAM_ID: u32 = 1;

/// Appends a protocol control message (chunk stream 2, message stream 0).
pub(crate) fn write_control(w: &mut ChunkWriter, type_id: u8, body: &[u8], out: &mut BytesMut) {
    w.write(
        &RawMessage {
            csid: CSID_CONTROL,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: Bytes::copy_from_slice(body),
        },
        out,
    );
}

/// Appends a 4-byte-valued control message (chunk size, ack, window ack size).
pub(crate) fn write_control_u32(w: &mut ChunkWriter, type_id: u8, v: u32, out: &mut BytesMut) {
    write_control(w, type_id, &v.to_be_bytes(), out);
}

/// Appends a User Control event with a 4-byte value.
pub(crate) fn write_user_control(w: &mut ChunkWriter, event: u16, v: u32, out: &mut BytesMut) {
    let mut body = [0u8; 6];
    body[..2].copy_from_slice(&event.to_be_bytes());
    body[2..].copy_from_slice(&v.to_be_bytes());
    write_control(w, MSG_USER_CONTROL, &body, out);
}

/// Appends an AMF0 command or data message on the command chunk stream.
pub(crate) fn write_amf(
    w: &mut ChunkWriter,
    type_id: u8,
    stream_id: u32,
    values: &[Amf0Value],
    out: &mut BytesMut,
) {
    let mut body = BytesMut::new();
    amf0::encode_all(values, &mut body);
    w.write(
        &RawMessage {
            csid: CSID_COMMAND,
            timestamp: 0,
            type_id,
            stream_id,
            payload: body.freeze(),
        },
        out,
    );
}

/// An AMF0 object from key-value pairs.
pub(crate) fn object(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// An AMF0 string.
pub(crate) fn s(v: &str) -> Amf0Value {
    Amf0Value::String(v.to_owned())
}

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
