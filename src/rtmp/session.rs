//! The server side of one RTMP connection, sans-IO: handshake, chunk stream, protocol
//! control, and the NetConnection/NetStream commands of publishers and players.
//!
//! Use: feed received bytes to [`ServerSession::handle_input`], then drain
//! [`ServerSession::poll_event`] and [`ServerSession::poll_transmit`]. A `Publish` or `Play`
//! event waits for the driver's answer ([`ServerSession::accept_publish`],
//! [`ServerSession::reject_publish`], [`ServerSession::accept_play`],
//! [`ServerSession::reject_play`]): the session reads nothing behind it until then, and after
//! an accept, `handle_input(&[])` reads what had arrived behind it, in the new state. Media to players does
//! not pass through here: the fan-out writes shared bytes on chunk streams 5 to 7, which this
//! session never uses. It must not touch sockets, clocks or the hub.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use rand::RngCore;

use super::amf0::{self, Amf0Error, Amf0Value};
use super::chunk::{ChunkError, ChunkReader, ChunkWriter, RawMessage};
use super::handshake::{HandshakeError, HandshakeKind, ServerHandshake};
use super::message::*;
use super::{query_param, split_query};

/// Session parameters.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Chunk size announced to the peer and used for everything sent to it.
    pub out_chunk_size: u32,
    /// Largest message accepted from the peer.
    pub max_message_len: u32,
    /// Window Acknowledgement Size announced to the peer.
    pub window_ack_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            out_chunk_size: 60000,
            max_message_len: 8 << 20,
            window_ack_size: 2_500_000,
        }
    }
}

/// Why a session failed; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The handshake was malformed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream was malformed.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A command or data message did not decode as AMF0.
    #[error("AMF0 in {what}: {source}")]
    Amf0 {
        /// Which message.
        what: &'static str,
        /// The decoding error.
        source: Amf0Error,
    },
    /// A protocol control message was malformed.
    #[error("bad control message type {type_id}: {why}")]
    Control {
        /// Its message type.
        type_id: u8,
        /// What was wrong.
        why: &'static str,
    },
    /// A command came in the wrong state or without its required fields.
    #[error("bad {command}: {why}")]
    Command {
        /// The command name.
        command: String,
        /// What was wrong.
        why: &'static str,
    },
}

/// What the peer asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed.
    HandshakeDone(HandshakeKind),
    /// NetConnection.connect, already answered with success.
    Connect {
        /// The application, without query.
        app: String,
        /// tcUrl as sent (may be empty: some clients omit it).
        tc_url: String,
        /// The vhost from `?vhost=` in app or tcUrl, else tcUrl's host.
        vhost: String,
    },
    /// NetStream.publish: answer with accept_publish or reject_publish.
    Publish {
        /// Stream name, without query.
        stream: String,
        /// `?vhost=` on the stream name, overriding the connection's.
        vhost: Option<String>,
    },
    /// NetStream.play: answer with accept_play or reject_play.
    Play {
        /// Stream name, without query.
        stream: String,
        /// `?vhost=` on the stream name, overriding the connection's.
        vhost: Option<String>,
        /// play's `len` argument when positive: stop after this many milliseconds of stream
        /// time (rtmpdump's `-B`/`--stop` sends it; SRS honours it).
        duration: Option<u32>,
    },
    /// An audio, video or onMetaData message from the publisher (data messages arrive as
    /// plain `onMetaData`, without `@setDataFrame`).
    Media(RawMessage),
    /// The publisher ended its publish (FCUnpublish, closeStream or deleteStream).
    Unpublish,
    /// The player ended its play (closeStream or deleteStream).
    StopPlay,
    /// The player paused (true) or resumed (false).
    Pause(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    /// Waiting for connect.
    Connecting,
    Connected,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

/// One connection's RTMP state, server side.
#[derive(Debug)]
pub struct ServerSession {
    cfg: SessionConfig,
    state: State,
    handshake: ServerHandshake,
    reader: ChunkReader,
    writer: ChunkWriter,
    input: BytesMut,
    out: BytesMut,
    events: VecDeque<Event>,
    vhost: String,
    app: String,
    /// connect's `pageUrl`, for SRS's hooks.
    page_url: String,
    /// The query of publish's or play's stream name, without `?`, for SRS's hooks.
    stream_query: String,
    received: u64,
    last_ack: u64,
    peer_window: u32,
    pending_txn: f64,
}

/// Capacity an idle buffer of a session may keep.
const IDLE_BUFFER_KEEP: usize = 1024;

/// Frees an emptied buffer's grown capacity. The handshake and connect grow a session's
/// buffers to kilobytes once; a player keeps its session for life, and a server holds
/// thousands of players, so that capacity goes back to the allocator.
fn release_if_large(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > IDLE_BUFFER_KEEP {
        *buf = BytesMut::new();
    }
}

impl ServerSession {
    /// A session waiting for C0+C1; the handshake's random bytes come from `rng` (see
    /// [`ServerHandshake::new`]).
    pub fn new(cfg: SessionConfig, rng: &mut impl RngCore) -> Self {
        Self {
            reader: ChunkReader::new(cfg.max_message_len),
            cfg,
            state: State::Handshake,
            handshake: ServerHandshake::new(rng),
            writer: ChunkWriter::new(),
            input: BytesMut::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            vhost: String::new(),
            app: String::new(),
            page_url: String::new(),
            stream_query: String::new(),
            received: 0,
            last_ack: 0,
            peer_window: 0,
            pending_txn: 0.0,
        }
    }

    /// The application of connect, once connected.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// connect's `pageUrl` ("" when the client sent none).
    pub fn page_url(&self) -> &str {
        &self.page_url
    }

    /// The query of the last publish's or play's stream name, without `?`: SRS's hook
    /// `param` (`secret=...` of `livestream?secret=...`).
    pub fn stream_query(&self) -> &str {
        &self.stream_query
    }

    /// The chunk size of everything this server sends.
    pub fn out_chunk_size(&self) -> u32 {
        self.cfg.out_chunk_size
    }

    /// True once a publish was accepted.
    pub fn is_publishing(&self) -> bool {
        self.state == State::Publishing
    }

    /// Bytes to send to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        let b = self.out.split().freeze();
        release_if_large(&mut self.out);
        Some(b)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        let mut data = data;
        if self.state == State::Handshake {
            let n = self.handshake.handle_input(data)?;
            data = &data[n..];
            if let Some(s0s1s2) = self.handshake.poll_output() {
                self.out.extend_from_slice(&s0s1s2);
            }
            if !self.handshake.is_done() {
                return Ok(());
            }
            let kind = self.handshake.kind().unwrap_or(HandshakeKind::Simple);
            self.events.push_back(Event::HandshakeDone(kind));
            self.state = State::Connecting;
        }
        self.received += data.len() as u64;
        self.input.extend_from_slice(data);
        // What follows a publish or play (metadata, media, a pause), often in the same read,
        // belongs to the state the driver's answer makes: it waits here, unread, until then.
        while !self.awaits_answer() {
            let Some(msg) = self.reader.read_message(&mut self.input)? else {
                break;
            };
            self.handle_message(msg)?;
        }
        if self.input.is_empty() {
            release_if_large(&mut self.input);
        }
        if self.peer_window > 0 && self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            // The sequence number wraps at 2^32 by the spec.
            write_control_u32(
                &mut self.writer,
                MSG_ACK,
                self.received as u32,
                &mut self.out,
            );
        }
        Ok(())
    }

    fn awaits_answer(&self) -> bool {
        matches!(self.state, State::PublishPending | State::PlayPending)
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => {
                let size = control_u32(&msg)?;
                self.reader.set_chunk_size(size)?;
            }
            MSG_ABORT => {
                let csid = control_u32(&msg)?;
                self.reader.abort(csid);
            }
            MSG_ACK | MSG_SET_PEER_BANDWIDTH => {}
            MSG_WINDOW_ACK_SIZE => self.peer_window = control_u32(&msg)?,
            MSG_USER_CONTROL => self.handle_user_control(&msg)?,
            MSG_COMMAND_AMF0 => self.handle_command(&msg.payload)?,
            // An AMF3 command is AMF0 behind a format byte.
            MSG_COMMAND_AMF3 if !msg.payload.is_empty() => {
                self.handle_command(&msg.payload[1..])?
            }
            MSG_DATA_AMF0 => self.handle_data(msg)?,
            MSG_DATA_AMF3 if !msg.payload.is_empty() => {
                let mut msg = msg;
                msg.payload.advance(1);
                self.handle_data(msg)?
            }
            MSG_AUDIO | MSG_VIDEO if self.state == State::Publishing => {
                self.events.push_back(Event::Media(msg));
            }
            MSG_AGGREGATE if self.state == State::Publishing => self.handle_aggregate(&msg),
            other => tracing::trace!(type_id = other, "ignored message"),
        }
        Ok(())
    }

    fn handle_user_control(&mut self, msg: &RawMessage) -> Result<(), SessionError> {
        let p = &msg.payload;
        if p.len() < 2 {
            return Err(SessionError::Control {
                type_id: MSG_USER_CONTROL,
                why: "shorter than its event type",
            });
        }
        let event = u16::from_be_bytes([p[0], p[1]]);
        if event == UC_PING_REQUEST && p.len() >= 6 {
            let ts = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            write_user_control(&mut self.writer, UC_PING_RESPONSE, ts, &mut self.out);
        }
        Ok(())
    }

    fn handle_data(&mut self, mut msg: RawMessage) -> Result<(), SessionError> {
        if self.state != State::Publishing {
            return Ok(());
        }
        let mut rest: &[u8] = &msg.payload;
        let name = amf0::decode(&mut rest).map_err(|source| SessionError::Amf0 {
            what: "data message",
            source,
        })?;
        let skip = match name.as_str() {
            // `@setDataFrame onMetaData {..}`: players get `onMetaData {..}`.
            Some("@setDataFrame") => msg.payload.len() - rest.len(),
            Some("onMetaData") => 0,
            _ => return Ok(()),
        };
        msg.payload.advance(skip);
        msg.type_id = MSG_DATA_AMF0;
        self.events.push_back(Event::Media(msg));
        Ok(())
    }

    /// Splits an aggregate message (FLV tags back to back) into its messages, timestamps
    /// rebased on the aggregate's own.
    fn handle_aggregate(&mut self, msg: &RawMessage) {
        let mut p = msg.payload.clone();
        let mut first_ts = None;
        while p.len() >= 11 {
            let type_id = p[0];
            let size = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
            let ts = u32::from_be_bytes([p[7], p[4], p[5], p[6]]);
            if p.len() < 11 + size + 4 {
                tracing::trace!("truncated aggregate message");
                return;
            }
            let base = *first_ts.get_or_insert(ts);
            let payload = p.slice(11..11 + size);
            p.advance(11 + size + 4);
            if matches!(type_id, MSG_AUDIO | MSG_VIDEO | MSG_DATA_AMF0) {
                self.events.push_back(Event::Media(RawMessage {
                    csid: msg.csid,
                    timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
                    type_id,
                    stream_id: msg.stream_id,
                    payload,
                }));
            }
        }
    }

    fn handle_command(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let values = amf0::decode_all(payload).map_err(|source| SessionError::Amf0 {
            what: "command",
            source,
        })?;
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Amf0Value::String(s)) => s,
            _ => {
                return Err(SessionError::Command {
                    command: "?".into(),
                    why: "no command name",
                })
            }
        };
        let txn = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let args: Vec<Amf0Value> = it.collect();
        tracing::debug!(command = %name, txn, "command");
        let bad = |why| SessionError::Command {
            command: name.clone(),
            why,
        };
        match name.as_str() {
            "connect" => {
                if self.state != State::Connecting {
                    return Err(bad("connect twice"));
                }
                let obj = args.first().ok_or_else(|| bad("no command object"))?;
                let app = obj.get("app").and_then(|v| v.as_str()).unwrap_or("");
                let tc_url = obj.get("tcUrl").and_then(|v| v.as_str()).unwrap_or("");
                let encoding = obj
                    .get("objectEncoding")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0);
                let (app_name, app_query) = split_query(app);
                let (url, url_query) = split_query(tc_url);
                let vhost = query_param(app_query, "vhost")
                    .or_else(|| query_param(url_query, "vhost"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| tc_url_host(url).to_owned());
                self.app = app_name.trim_end_matches('/').to_owned();
                obj.get("pageUrl")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .clone_into(&mut self.page_url);
                self.vhost = vhost.clone();
                self.state = State::Connected;
                self.answer_connect(txn, encoding);
                self.events.push_back(Event::Connect {
                    app: self.app.clone(),
                    tc_url: tc_url.to_owned(),
                    vhost,
                });
            }
            "createStream" => {
                self.require_connected(&name)?;
                self.result(
                    txn,
                    &[Amf0Value::Null, Amf0Value::Number(f64::from(STREAM_ID))],
                );
            }
            "releaseStream" | "FCPublish" | "getStreamLength" => {
                self.require_connected(&name)?;
                self.result(txn, &[Amf0Value::Null, Amf0Value::Undefined]);
            }
            "publish" => {
                if self.state != State::Connected {
                    return Err(bad("not connected or already publishing or playing"));
                }
                let raw = args.get(1).and_then(|v| v.as_str()).unwrap_or("");
                let (stream, query) = split_query(raw);
                if stream.is_empty() {
                    return Err(bad("no stream name"));
                }
                self.pending_txn = txn;
                self.state = State::PublishPending;
                query.clone_into(&mut self.stream_query);
                self.events.push_back(Event::Publish {
                    stream: stream.to_owned(),
                    vhost: query_param(query, "vhost").map(str::to_owned),
                });
            }
            "play" => {
                if self.state != State::Connected {
                    return Err(bad("not connected or already publishing or playing"));
                }
                let raw = args.get(1).and_then(|v| v.as_str()).unwrap_or("");
                let (stream, query) = split_query(raw);
                if stream.is_empty() {
                    return Err(bad("no stream name"));
                }
                self.pending_txn = txn;
                self.state = State::PlayPending;
                query.clone_into(&mut self.stream_query);
                let duration = args
                    .get(3)
                    .and_then(|v| v.as_f64())
                    .filter(|d| *d > 0.0 && *d < f64::from(u32::MAX))
                    .map(|d| d as u32);
                self.events.push_back(Event::Play {
                    stream: stream.to_owned(),
                    vhost: query_param(query, "vhost").map(str::to_owned),
                    duration,
                });
            }
            "FCUnpublish" | "closeStream" | "deleteStream" => match self.state {
                State::Publishing | State::PublishPending => {
                    if name == "FCUnpublish" {
                        self.result(txn, &[Amf0Value::Null, Amf0Value::Undefined]);
                    }
                    self.state = State::Connected;
                    self.events.push_back(Event::Unpublish);
                }
                State::Playing | State::PlayPending => {
                    self.state = State::Connected;
                    self.events.push_back(Event::StopPlay);
                }
                _ => {}
            },
            "pause" => {
                let paused = args.get(1).and_then(|v| v.as_bool()).unwrap_or(false);
                if self.state == State::Playing {
                    self.events.push_back(Event::Pause(paused));
                }
            }
            _ => tracing::debug!(command = %name, "ignored command"),
        }
        Ok(())
    }

    fn require_connected(&self, command: &str) -> Result<(), SessionError> {
        if matches!(self.state, State::Handshake | State::Connecting) {
            return Err(SessionError::Command {
                command: command.to_owned(),
                why: "before connect",
            });
        }
        Ok(())
    }

    fn answer_connect(&mut self, txn: f64, encoding: f64) {
        let w = &mut self.writer;
        let out = &mut self.out;
        write_control_u32(w, MSG_WINDOW_ACK_SIZE, self.cfg.window_ack_size, out);
        let mut bw = [0u8; 5];
        bw[..4].copy_from_slice(&self.cfg.window_ack_size.to_be_bytes());
        bw[4] = 2; // dynamic
        write_control(w, MSG_SET_PEER_BANDWIDTH, &bw, out);
        write_control_u32(w, MSG_SET_CHUNK_SIZE, self.cfg.out_chunk_size, out);
        w.set_chunk_size(self.cfg.out_chunk_size);
        let props = object(&[
            ("fmsVer", s("FMS/3,5,3,888")),
            ("capabilities", Amf0Value::Number(127.0)),
            ("mode", Amf0Value::Number(1.0)),
        ]);
        let info = object(&[
            ("level", s("status")),
            ("code", s("NetConnection.Connect.Success")),
            ("description", s("Connection succeeded")),
            ("objectEncoding", Amf0Value::Number(encoding)),
            (
                "data",
                Amf0Value::EcmaArray(vec![
                    ("srs_server".into(), s("ringcast")),
                    ("srs_version".into(), s(env!("CARGO_PKG_VERSION"))),
                ]),
            ),
        ]);
        write_amf(
            w,
            MSG_COMMAND_AMF0,
            0,
            &[s("_result"), Amf0Value::Number(txn), props, info],
            out,
        );
        write_amf(
            w,
            MSG_COMMAND_AMF0,
            0,
            &[s("onBWDone"), Amf0Value::Number(0.0), Amf0Value::Null],
            out,
        );
    }

    fn result(&mut self, txn: f64, rest: &[Amf0Value]) {
        let mut values = vec![s("_result"), Amf0Value::Number(txn)];
        values.extend_from_slice(rest);
        write_amf(
            &mut self.writer,
            MSG_COMMAND_AMF0,
            0,
            &values,
            &mut self.out,
        );
    }

    fn on_status(&mut self, level: &str, code: &str, description: &str) {
        let info = object(&[
            ("level", s(level)),
            ("code", s(code)),
            ("description", s(description)),
            ("clientid", s("ringcast")),
        ]);
        write_amf(
            &mut self.writer,
            MSG_COMMAND_AMF0,
            STREAM_ID,
            &[s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info],
            &mut self.out,
        );
    }

    /// Accepts a pending publish; then `handle_input(&[])` reads what came behind it.
    pub fn accept_publish(&mut self) {
        if self.state != State::PublishPending {
            return;
        }
        self.state = State::Publishing;
        write_user_control(&mut self.writer, UC_STREAM_BEGIN, STREAM_ID, &mut self.out);
        // FMLE-style encoders wait for onFCPublish before publish's onStatus.
        let info = object(&[
            ("code", s("NetStream.Publish.Start")),
            ("description", s("Started publishing stream.")),
        ]);
        write_amf(
            &mut self.writer,
            MSG_COMMAND_AMF0,
            STREAM_ID,
            &[
                s("onFCPublish"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                info,
            ],
            &mut self.out,
        );
        self.on_status(
            "status",
            "NetStream.Publish.Start",
            "Started publishing stream.",
        );
    }

    /// Refuses a pending publish with `NetStream.Publish.BadName`; the driver closes the
    /// connection after sending what [`ServerSession::poll_transmit`] gives.
    pub fn reject_publish(&mut self, description: &str) {
        self.state = State::Connected;
        self.on_status("error", "NetStream.Publish.BadName", description);
    }

    /// Accepts a pending play; then `handle_input(&[])` reads what came behind it. Media
    /// follows on chunk streams 5 to 7, message stream 1.
    pub fn accept_play(&mut self) {
        if self.state != State::PlayPending {
            return;
        }
        self.state = State::Playing;
        write_user_control(&mut self.writer, UC_STREAM_BEGIN, STREAM_ID, &mut self.out);
        self.on_status(
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting stream.",
        );
        self.on_status("status", "NetStream.Play.Start", "Started playing stream.");
        write_amf(
            &mut self.writer,
            MSG_DATA_AMF0,
            STREAM_ID,
            &[
                s("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
            &mut self.out,
        );
        let info = object(&[("code", s("NetStream.Data.Start"))]);
        write_amf(
            &mut self.writer,
            MSG_DATA_AMF0,
            STREAM_ID,
            &[s("onStatus"), info],
            &mut self.out,
        );
    }

    /// The `NetStream.Play.Stop` status that ends a play whose duration is reached, as a
    /// self-contained message (a type-0 header) for the player's writer to send last.
    pub fn play_stop_message(&self) -> Bytes {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(self.cfg.out_chunk_size);
        let info = object(&[
            ("level", s("status")),
            ("code", s("NetStream.Play.Stop")),
            ("description", s("Stopped playing stream.")),
        ]);
        let mut out = BytesMut::new();
        write_amf(
            &mut w,
            MSG_COMMAND_AMF0,
            STREAM_ID,
            &[s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info],
            &mut out,
        );
        out.freeze()
    }

    /// Refuses a pending play with `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, description: &str) {
        self.state = State::Connected;
        self.on_status("error", "NetStream.Play.StreamNotFound", description);
    }

    /// SRS's RTMP 302: sends the player elsewhere with an error-level onStatus
    /// `NetConnection.Connect.Rejected` whose `ex` has `code` 302, `redirect` (the new tcUrl)
    /// and `redirect2` (the whole URL), on message stream 0 as SRS sends it. The driver then
    /// gives the player a moment to read it and closes.
    pub fn redirect(&mut self, tc_url: &str, url: &str) {
        self.state = State::Connected;
        let ex = object(&[
            ("code", Amf0Value::Number(302.0)),
            ("redirect", s(tc_url)),
            ("redirect2", s(url)),
        ]);
        let info = object(&[
            ("level", s("error")),
            ("code", s("NetConnection.Connect.Rejected")),
            ("description", s("RTMP 302 Redirect")),
            ("ex", ex),
        ]);
        write_amf(
            &mut self.writer,
            MSG_COMMAND_AMF0,
            0,
            &[s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info],
            &mut self.out,
        );
    }

    /// The vhost named by the connection (`?vhost=` or tcUrl's host).
    pub fn vhost(&self) -> &str {
        &self.vhost
    }
}

fn control_u32(msg: &RawMessage) -> Result<u32, SessionError> {
    let p = &msg.payload;
    if p.len() < 4 {
        return Err(SessionError::Control {
            type_id: msg.type_id,
            why: "shorter than 4 bytes",
        });
    }
    Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

/// The host of `rtmp://host:port/app`, or "" when it has none.
pub fn tc_url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn new_session() -> ServerSession {
        ServerSession::new(SessionConfig::default(), &mut StdRng::seed_from_u64(1))
    }

    /// A server session past a simple handshake (C0, then C1 and C2 of zeros), with its
    /// events and S0 S1 S2 drained.
    fn handshaken() -> ServerSession {
        let mut server = new_session();
        let mut hello = vec![3u8];
        hello.extend_from_slice(&[0u8; 1536 * 2]);
        server.handle_input(&hello).expect("handshake");
        assert!(server.poll_transmit().is_some(), "S0S1S2");
        assert!(matches!(server.poll_event(), Some(Event::HandshakeDone(_))));
        server
    }

    /// What a client writes, chunked, for one push into the server.
    #[derive(Default)]
    struct Peer {
        w: ChunkWriter,
        out: BytesMut,
    }

    impl Peer {
        fn command(&mut self, stream_id: u32, values: &[Amf0Value]) -> &mut Self {
            write_amf(
                &mut self.w,
                MSG_COMMAND_AMF0,
                stream_id,
                values,
                &mut self.out,
            );
            self
        }

        fn message(&mut self, csid: u32, type_id: u8, timestamp: u32, payload: &[u8]) -> &mut Self {
            let msg = RawMessage {
                csid,
                timestamp,
                type_id,
                stream_id: STREAM_ID,
                payload: Bytes::copy_from_slice(payload),
            };
            self.w.write(&msg, &mut self.out);
            self
        }

        /// Everything written since the last push, in one piece.
        fn push(&mut self, server: &mut ServerSession) {
            server
                .handle_input(&self.out.split())
                .expect("server input");
        }
    }

    fn events(server: &mut ServerSession) -> Vec<Event> {
        std::iter::from_fn(|| server.poll_event()).collect()
    }

    /// A connected session with a stream created, as every publisher and player starts.
    fn connected(peer: &mut Peer) -> ServerSession {
        let mut server = handshaken();
        let app = object(&[("app", s("live")), ("tcUrl", s("rtmp://h/live"))]);
        peer.command(0, &[s("connect"), Amf0Value::Number(1.0), app])
            .command(
                0,
                &[s("createStream"), Amf0Value::Number(4.0), Amf0Value::Null],
            )
            .push(&mut server);
        assert!(matches!(&events(&mut server)[..], [Event::Connect { .. }]));
        while server.poll_transmit().is_some() {}
        server
    }

    const KEYFRAME: &[u8] = &[0x17, 1, 0, 0, 0, 0, 0, 0, 4, 0x65, 1, 2, 3];

    /// `publish`, `@setDataFrame` and a keyframe in one read (ffmpeg and OBS write them
    /// back to back): nothing behind the publish is lost while the driver decides.
    #[test]
    fn what_follows_publish_in_one_read_is_kept_for_the_answer() {
        let mut peer = Peer::default();
        let mut server = connected(&mut peer);
        let mut meta = BytesMut::new();
        amf0::encode_all(
            &[
                s("@setDataFrame"),
                s("onMetaData"),
                Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
            ],
            &mut meta,
        );
        let publish = [
            s("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            s("s1"),
            s("live"),
        ];
        peer.command(STREAM_ID, &publish)
            .message(CSID_DATA, MSG_DATA_AMF0, 0, &meta)
            .message(CSID_VIDEO, MSG_VIDEO, 0, KEYFRAME)
            .push(&mut server);
        let mut got = events(&mut server);
        assert_eq!(
            got,
            [Event::Publish {
                stream: "s1".into(),
                vhost: None
            }],
            "the publish waits for its answer alone"
        );
        server.accept_publish();
        server
            .handle_input(&[])
            .expect("what came behind the publish");
        got.extend(events(&mut server));
        assert_eq!(got.len(), 3, "{got:?}");
        let Event::Media(m) = &got[1] else {
            panic!("{got:?}")
        };
        let values = amf0::decode_all(&m.payload).expect("metadata decodes");
        assert_eq!(
            (m.type_id, values[0].as_str()),
            (MSG_DATA_AMF0, Some("onMetaData"))
        );
        assert!(
            matches!(&got[2], Event::Media(m) if m.type_id == MSG_VIDEO && &m.payload[..] == KEYFRAME),
            "{got:?}"
        );
    }

    #[test]
    fn what_follows_a_refused_publish_is_not_media() {
        let mut peer = Peer::default();
        let mut server = connected(&mut peer);
        let publish = [
            s("publish"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            s("s1"),
        ];
        peer.command(STREAM_ID, &publish)
            .message(CSID_VIDEO, MSG_VIDEO, 0, KEYFRAME)
            .push(&mut server);
        assert!(matches!(&events(&mut server)[..], [Event::Publish { .. }]));
        server.reject_publish("busy");
        server.handle_input(&[]).expect("input after a refusal");
        assert_eq!(events(&mut server), []);
        assert!(!server.is_publishing());
    }

    /// A player sent elsewhere: SRS's RTMP 302 on message stream 0, built from the query its
    /// play carried.
    #[test]
    fn a_redirect_is_srs_s_rejected_connect_with_the_new_urls() {
        let mut peer = Peer::default();
        let mut server = handshaken();
        let app = object(&[("app", s("live")), ("tcUrl", s("rtmp://h/live"))]);
        let play = [
            s("play"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            s("s1?token=t&cluster_hops=1"),
        ];
        peer.command(0, &[s("connect"), Amf0Value::Number(1.0), app])
            .command(STREAM_ID, &play)
            .push(&mut server);
        assert!(matches!(
            &events(&mut server)[..],
            [Event::Connect { .. }, Event::Play { .. }]
        ));
        assert_eq!(server.stream_query(), "token=t&cluster_hops=1");
        server.redirect("rtmp://b:1935/live", "rtmp://b:1935/live/s1?cluster_hops=2");
        let mut out = BytesMut::new();
        while let Some(b) = server.poll_transmit() {
            out.extend_from_slice(&b);
        }
        let mut reader = ChunkReader::new(1 << 20);
        let mut last = None;
        while let Some(m) = reader.read_message(&mut out).expect("chunk stream") {
            if m.type_id == MSG_SET_CHUNK_SIZE {
                reader
                    .set_chunk_size(control_u32(&m).expect("size"))
                    .expect("chunk size");
            }
            last = Some(m);
        }
        let msg = last.expect("the redirect, last");
        assert_eq!((msg.type_id, msg.stream_id), (MSG_COMMAND_AMF0, 0));
        let values = amf0::decode_all(&msg.payload).expect("AMF0");
        assert_eq!(values[0].as_str(), Some("onStatus"));
        let info = &values[3];
        assert_eq!(
            info.get("code").and_then(Amf0Value::as_str),
            Some("NetConnection.Connect.Rejected")
        );
        let ex = info.get("ex").expect("ex");
        assert_eq!(ex.get("code").and_then(Amf0Value::as_f64), Some(302.0));
        assert_eq!(
            ex.get("redirect").and_then(Amf0Value::as_str),
            Some("rtmp://b:1935/live")
        );
        assert_eq!(
            ex.get("redirect2").and_then(Amf0Value::as_str),
            Some("rtmp://b:1935/live/s1?cluster_hops=2")
        );
    }

    /// `play` and the commands a player sends behind it in the same read.
    #[test]
    fn what_follows_play_in_one_read_is_kept_for_the_answer() {
        let mut peer = Peer::default();
        let mut server = connected(&mut peer);
        let mut buffer_length = [0u8; 10];
        buffer_length[..2].copy_from_slice(&UC_SET_BUFFER_LENGTH.to_be_bytes());
        buffer_length[2..6].copy_from_slice(&STREAM_ID.to_be_bytes());
        buffer_length[6..].copy_from_slice(&3000u32.to_be_bytes());
        let play = [s("play"), Amf0Value::Number(5.0), Amf0Value::Null, s("s1")];
        let pause = [
            s("pause"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Boolean(true),
        ];
        peer.command(STREAM_ID, &play)
            .message(CSID_CONTROL, MSG_USER_CONTROL, 0, &buffer_length)
            .command(STREAM_ID, &pause)
            .push(&mut server);
        assert!(matches!(&events(&mut server)[..], [Event::Play { .. }]));
        server.accept_play();
        server.handle_input(&[]).expect("what came behind the play");
        assert_eq!(events(&mut server), [Event::Pause(true)]);
    }

    /// What SRS's hooks need beyond the events: connect's pageUrl, the stream's query.
    #[test]
    fn page_url_and_stream_query_are_kept() {
        let mut peer = Peer::default();
        let mut server = handshaken();
        let app = object(&[
            ("app", s("live")),
            ("tcUrl", s("rtmp://h/live")),
            ("pageUrl", s("http://site/page")),
        ]);
        peer.command(0, &[s("connect"), Amf0Value::Number(1.0), app])
            .push(&mut server);
        assert_eq!(server.page_url(), "http://site/page");
        let play = [
            s("play"),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            s("s1?secret=k&vhost=v"),
        ];
        peer.command(STREAM_ID, &play).push(&mut server);
        assert!(
            matches!(&events(&mut server)[..], [Event::Connect { .. }, Event::Play { stream, .. }] if stream == "s1")
        );
        assert_eq!(server.stream_query(), "secret=k&vhost=v");
    }

    #[test]
    fn garbage_and_limits_fail_cleanly() {
        let mut s = new_session();
        assert!(s.handle_input(&[0x47; 1537]).is_err());

        // Connect before handshake is done just waits.
        let mut s = new_session();
        assert!(s.handle_input(&[3]).is_ok());
    }

    #[test]
    fn commands_before_connect_are_refused() {
        let mut server = handshaken();
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        write_amf(
            &mut w,
            MSG_COMMAND_AMF0,
            0,
            &[
                s("publish"),
                Amf0Value::Number(5.0),
                Amf0Value::Null,
                s("x"),
            ],
            &mut out,
        );
        let err = server.handle_input(&out);
        assert!(
            matches!(err, Err(SessionError::Command { ref command, .. }) if command == "publish"),
            "{err:?}"
        );
    }

    #[test]
    fn tc_url_hosts() {
        assert_eq!(tc_url_host("rtmp://a.b:1935/live"), "a.b");
        assert_eq!(tc_url_host("rtmp://a.b/live"), "a.b");
        assert_eq!(tc_url_host("rtmp://[::1]:1935/live"), "::1");
        assert_eq!(tc_url_host(""), "");
    }
}
