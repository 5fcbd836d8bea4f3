//! RTMP messages as both sessions and the fan-out name them: the message type ids, the User
//! Control events, the chunk streams each kind of message travels on, and the builders of
//! the control and command messages the server and client sessions send.
//!
//! Every RTMP number of the crate lives here, so the sessions, the shared media form and the
//! load tool agree on them. It must not know about frames,
//! players or sockets.

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value};
use super::chunk::{ChunkWriter, RawMessage};

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
/// Message type: audio (an FLV audio tag body; FLV's tag type 8 too).
pub const MSG_AUDIO: u8 = 8;
/// Message type: video (an FLV video tag body; FLV's tag type 9 too).
pub const MSG_VIDEO: u8 = 9;
/// Message type: AMF3 data.
pub const MSG_DATA_AMF3: u8 = 15;
/// Message type: AMF3 command.
pub const MSG_COMMAND_AMF3: u8 = 17;
/// Message type: AMF0 data (onMetaData; FLV's script tag type 18 too).
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
/// Chunk stream for commands and onStatus. Media uses [`CSID_DATA`], [`CSID_VIDEO`] and
/// [`CSID_AUDIO`], so a session's writer and the shared fan-out bytes never interleave on one
/// chunk stream.
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for data messages in the shared form (SRS's RTMP_CID_OverStream).
pub const CSID_DATA: u32 = 5;
/// Chunk stream for video in the shared form (SRS's RTMP_CID_Video).
pub const CSID_VIDEO: u32 = 6;
/// Chunk stream for audio in the shared form (SRS's RTMP_CID_Audio).
pub const CSID_AUDIO: u32 = 7;

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
