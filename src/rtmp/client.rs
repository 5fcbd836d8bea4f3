//! The client side of an RTMP connection, sans-IO: handshake, connect, createStream, then
//! publish (for forwarding to another server) or play (for edge pulls, the load tool and
//! tests).
//!
//! Use as the server session: send what [`ClientSession::poll_transmit`] gives from the start
//! (C0+C1 is ready when the session is made), feed received bytes to
//! [`ClientSession::handle_input`], then drain [`ClientSession::poll_event`] and
//! [`ClientSession::poll_transmit`]; a publisher queues media with
//! [`ClientSession::send_media`] once [`ClientEvent::Publishing`] came. A server that sends
//! the client elsewhere (an RTMP 302) is reported as [`ClientEvent::Redirected`], for the
//! driver to follow or not. It must not touch
//! sockets, clocks or the hub, and has no timers: its randomness is the caller's rng, and
//! deadlines (connect, idle) are the driver's.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rand::RngCore;

use super::amf0::{self, Amf0Value};
use super::chunk::{self, ChunkReader, ChunkWriter, RawMessage};
use super::handshake::{ClientHandshake, HandshakeKind};
use super::message::*;
use super::session::SessionError;

/// Transaction ids of the commands the client sends.
const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;

/// What the server said.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// connect succeeded.
    Connected,
    /// NetStream.Publish.Start: media may be sent.
    Publishing,
    /// NetStream.Play.Start: media will arrive.
    Playing,
    /// A media message (audio, video or data) of the stream being played.
    Media(RawMessage),
    /// The server refused something (an `_error` or an onStatus of level error).
    Refused(String),
    /// The server sent the client elsewhere: SRS's RTMP 302, an error whose `ex` names the
    /// server to ask instead. The connection is done; the driver decides whether to follow.
    Redirected(Redirect),
}

/// Where a server sent a client (SRS's RTMP 302): an `onStatus` (SRS) or `_error` (FMS,
/// Wowza) of level error, code `NetConnection.Connect.Rejected`, whose `ex` carries `code`
/// 302, `redirect` (the new tcUrl) and, from SRS 3 on, `redirect2` (the whole URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The URL named: `ex.redirect2` when there is one, else `ex.redirect`, as SRS's edge
    /// takes it.
    pub url: String,
}

impl Redirect {
    /// The server the URL names, `host:port` (port 1935 when it names none), as a TCP
    /// connect takes it; `None` when the URL is no `rtmp://host[:port]/...`.
    pub fn server(&self) -> Option<String> {
        let scheme = self.url.get(..7)?;
        if !scheme.eq_ignore_ascii_case("rtmp://") {
            return None;
        }
        let authority = self.url[7..].split(['/', '?']).next().unwrap_or("");
        let sound = authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'@' && b != b'\\');
        if authority.is_empty() || !sound {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':')?),
                };
                (format!("[{host}]"), port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0)?,
            None => 1935,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        (!bare.is_empty() && !bare.contains(['[', ']'])).then(|| format!("{host}:{port}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Publish,
    Play,
}

/// One connection's RTMP state, client side.
#[derive(Debug)]
pub struct ClientSession {
    mode: Mode,
    tc_url: String,
    app: String,
    stream: String,
    out_chunk_size: u32,
    handshake: Option<ClientHandshake>,
    reader: ChunkReader,
    writer: ChunkWriter,
    input: BytesMut,
    out: BytesMut,
    events: VecDeque<ClientEvent>,
    stream_id: u32,
    received: u64,
    last_ack: u64,
    peer_window: u32,
}

impl ClientSession {
    /// A client that will publish `stream` to `tc_url` (`rtmp://host[:port]/app[?query]`).
    /// The handshake's random bytes come from `rng` (see [`ClientHandshake::new`]).
    pub fn publish(
        tc_url: &str,
        stream: &str,
        out_chunk_size: u32,
        rng: &mut impl RngCore,
    ) -> Self {
        Self::new(Mode::Publish, tc_url, stream, out_chunk_size, rng)
    }

    /// A client that will play `stream` from `tc_url`.
    pub fn play(tc_url: &str, stream: &str, rng: &mut impl RngCore) -> Self {
        Self::new(Mode::Play, tc_url, stream, chunk::DEFAULT_CHUNK_SIZE, rng)
    }

    fn new(
        mode: Mode,
        tc_url: &str,
        stream: &str,
        out_chunk_size: u32,
        rng: &mut impl RngCore,
    ) -> Self {
        let path = tc_url.split_once("://").map_or(tc_url, |(_, r)| r);
        let app = path.split_once('/').map_or("", |(_, app)| app);
        let mut handshake = ClientHandshake::new(HandshakeKind::Complex, rng);
        let mut out = BytesMut::new();
        if let Some(c0c1) = handshake.poll_output() {
            out.extend_from_slice(&c0c1);
        }
        Self {
            mode,
            tc_url: tc_url.to_owned(),
            app: app.to_owned(),
            stream: stream.to_owned(),
            out_chunk_size,
            handshake: Some(handshake),
            reader: ChunkReader::new(16 << 20),
            writer: ChunkWriter::new(),
            input: BytesMut::new(),
            out,
            events: VecDeque::new(),
            stream_id: 0,
            received: 0,
            last_ack: 0,
            peer_window: 0,
        }
    }

    /// Bytes to send to the server, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Feeds bytes received from the server.
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), SessionError> {
        if let Some(hs) = &mut self.handshake {
            let n = hs.handle_input(data)?;
            data = &data[n..];
            if let Some(c2) = hs.poll_output() {
                self.out.extend_from_slice(&c2);
            }
            if !hs.is_done() {
                return Ok(());
            }
            self.handshake = None;
            self.send_connect();
        }
        self.received += data.len() as u64;
        self.input.extend_from_slice(data);
        while let Some(msg) = self.reader.read_message(&mut self.input)? {
            self.handle_message(msg)?;
        }
        if self.peer_window > 0 && self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            write_control_u32(
                &mut self.writer,
                MSG_ACK,
                self.received as u32,
                &mut self.out,
            );
        }
        Ok(())
    }

    /// Queues one media message of the stream being published: an audio or video tag body,
    /// or an onMetaData data message (sent as `@setDataFrame onMetaData`, as encoders do).
    pub fn send_media(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) {
        let (csid, payload) = match type_id {
            MSG_DATA_AMF0 => {
                let mut p = BytesMut::with_capacity(payload.len() + 16);
                s("@setDataFrame").encode(&mut p);
                p.extend_from_slice(payload);
                (CSID_DATA, p.freeze())
            }
            MSG_AUDIO => (CSID_AUDIO, Bytes::copy_from_slice(payload)),
            _ => (CSID_VIDEO, Bytes::copy_from_slice(payload)),
        };
        self.writer.write(
            &RawMessage {
                csid,
                timestamp,
                type_id,
                stream_id: self.stream_id,
                payload,
            },
            &mut self.out,
        );
    }

    fn send_connect(&mut self) {
        write_control_u32(
            &mut self.writer,
            MSG_SET_CHUNK_SIZE,
            self.out_chunk_size,
            &mut self.out,
        );
        self.writer.set_chunk_size(self.out_chunk_size);
        let mut props = vec![
            ("app", s(&self.app)),
            ("type", s("nonprivate")),
            ("flashVer", s("FMLE/3.0 (compatible; ringcast)")),
            ("tcUrl", s(&self.tc_url)),
        ];
        if self.mode == Mode::Play {
            props.extend([
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", Amf0Value::Number(15.0)),
                ("audioCodecs", Amf0Value::Number(4071.0)),
                ("videoCodecs", Amf0Value::Number(252.0)),
                ("videoFunction", Amf0Value::Number(1.0)),
            ]);
        }
        self.command(
            0,
            &[s("connect"), Amf0Value::Number(TXN_CONNECT), object(&props)],
        );
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        write_amf(
            &mut self.writer,
            MSG_COMMAND_AMF0,
            stream_id,
            values,
            &mut self.out,
        );
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => {
                let size = u32_of(&msg)?;
                self.reader.set_chunk_size(size)?;
            }
            MSG_ABORT => self.reader.abort(u32_of(&msg)?),
            MSG_WINDOW_ACK_SIZE => self.peer_window = u32_of(&msg)?,
            MSG_USER_CONTROL => {
                let p = &msg.payload;
                if p.len() >= 6 && u16::from_be_bytes([p[0], p[1]]) == UC_PING_REQUEST {
                    let ts = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                    write_user_control(&mut self.writer, UC_PING_RESPONSE, ts, &mut self.out);
                }
            }
            MSG_COMMAND_AMF0 => self.handle_command(&msg.payload)?,
            MSG_COMMAND_AMF3 if !msg.payload.is_empty() => {
                self.handle_command(&msg.payload[1..])?
            }
            MSG_AUDIO | MSG_VIDEO if self.mode == Mode::Play => {
                self.events.push_back(ClientEvent::Media(msg));
            }
            MSG_DATA_AMF0 if self.mode == Mode::Play => {
                // |RtmpSampleAccess and onStatus(NetStream.Data.Start) are the play's
                // chatter, not the stream's data.
                let mut p: &[u8] = &msg.payload;
                let name = amf0::decode(&mut p).ok();
                if !matches!(
                    name.as_ref().and_then(|v| v.as_str()),
                    Some("|RtmpSampleAccess" | "onStatus")
                ) {
                    self.events.push_back(ClientEvent::Media(msg));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let values = amf0::decode_all(payload).map_err(|source| SessionError::Amf0 {
            what: "command",
            source,
        })?;
        let name = values.first().and_then(|v| v.as_str()).unwrap_or("");
        let txn = values.get(1).and_then(|v| v.as_f64()).unwrap_or(0.0);
        match name {
            "_result" if txn == TXN_CONNECT => {
                self.events.push_back(ClientEvent::Connected);
                if self.mode == Mode::Publish {
                    let stream = s(&self.stream);
                    self.command(
                        0,
                        &[
                            s("releaseStream"),
                            Amf0Value::Number(2.0),
                            Amf0Value::Null,
                            stream.clone(),
                        ],
                    );
                    self.command(
                        0,
                        &[
                            s("FCPublish"),
                            Amf0Value::Number(3.0),
                            Amf0Value::Null,
                            stream,
                        ],
                    );
                }
                self.command(
                    0,
                    &[
                        s("createStream"),
                        Amf0Value::Number(TXN_CREATE_STREAM),
                        Amf0Value::Null,
                    ],
                );
            }
            "_result" if txn == TXN_CREATE_STREAM => {
                let id = values.get(3).and_then(|v| v.as_f64()).unwrap_or(1.0);
                self.stream_id = id as u32;
                let stream = s(&self.stream);
                match self.mode {
                    Mode::Publish => self.command(
                        self.stream_id,
                        &[
                            s("publish"),
                            Amf0Value::Number(5.0),
                            Amf0Value::Null,
                            stream,
                            s("live"),
                        ],
                    ),
                    Mode::Play => {
                        self.command(
                            self.stream_id,
                            &[
                                s("play"),
                                Amf0Value::Number(5.0),
                                Amf0Value::Null,
                                stream,
                                Amf0Value::Number(-2000.0),
                            ],
                        );
                        let mut body = [0u8; 10];
                        body[..2].copy_from_slice(&UC_SET_BUFFER_LENGTH.to_be_bytes());
                        body[2..6].copy_from_slice(&self.stream_id.to_be_bytes());
                        body[6..].copy_from_slice(&3000u32.to_be_bytes());
                        write_control(&mut self.writer, MSG_USER_CONTROL, &body, &mut self.out);
                    }
                }
            }
            "_error" => {
                let info = values.get(3);
                let why = info
                    .and_then(|v| v.get("code"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("_error");
                let event = match info.and_then(redirect_of) {
                    Some(r) => ClientEvent::Redirected(r),
                    None => ClientEvent::Refused(why.to_owned()),
                };
                self.events.push_back(event);
            }
            "onStatus" => {
                let info = values.get(3);
                let code = info
                    .and_then(|v| v.get("code"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let level = info
                    .and_then(|v| v.get("level"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                if level == "error" {
                    let event = match info.and_then(redirect_of) {
                        Some(r) => ClientEvent::Redirected(r),
                        None => ClientEvent::Refused(code.to_owned()),
                    };
                    self.events.push_back(event);
                } else if code == "NetStream.Publish.Start" {
                    self.events.push_back(ClientEvent::Publishing);
                } else if code == "NetStream.Play.Start" {
                    self.events.push_back(ClientEvent::Playing);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The redirect an error's info object carries in its `ex`, if any. As SRS's edge, it takes
/// the URL whatever `ex.code` says (its servers send 302), but only a string.
fn redirect_of(info: &Amf0Value) -> Option<Redirect> {
    if info.get("level").and_then(|v| v.as_str()) != Some("error") {
        return None;
    }
    let ex = info.get("ex")?;
    let url = ex
        .get("redirect2")
        .and_then(|v| v.as_str())
        .or_else(|| ex.get("redirect").and_then(|v| v.as_str()))?;
    Some(Redirect {
        url: url.to_owned(),
    })
}

fn u32_of(msg: &RawMessage) -> Result<u32, SessionError> {
    let p = &msg.payload;
    if p.len() < 4 {
        return Err(SessionError::Control {
            type_id: msg.type_id,
            why: "shorter than 4 bytes",
        });
    }
    Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::rtmp::session::{Event, ServerSession, SessionConfig};

    fn seeded(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Runs bytes both ways until neither side has more to say.
    fn pump(server: &mut ServerSession, client: &mut ClientSession) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..64 {
            let mut moved = false;
            while let Some(b) = client.poll_transmit() {
                server.handle_input(&b).expect("server input");
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                match &e {
                    Event::Publish { .. } => server.accept_publish(),
                    Event::Play { .. } => server.accept_play(),
                    _ => {}
                }
                events.push(e);
                server
                    .handle_input(&[])
                    .expect("server input behind an answer");
            }
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b).expect("client input");
                moved = true;
            }
            if !moved {
                break;
            }
        }
        events
    }

    #[test]
    fn publish_with_our_client() {
        let mut server = ServerSession::new(SessionConfig::default(), &mut seeded(1));
        let url = "rtmp://127.0.0.1:1935/live?vhost=v1";
        let mut client = ClientSession::publish(url, "stream1", 4096, &mut seeded(2));
        let events = pump(&mut server, &mut client);
        assert!(matches!(
            events[0],
            Event::HandshakeDone(HandshakeKind::Complex)
        ));
        assert!(events.contains(&Event::Connect {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1:1935/live?vhost=v1".into(),
            vhost: "v1".into(),
        }));
        assert!(events.contains(&Event::Publish {
            stream: "stream1".into(),
            vhost: None
        }));
        assert_eq!(client.poll_event(), Some(ClientEvent::Connected));
        assert_eq!(client.poll_event(), Some(ClientEvent::Publishing));

        // Media and metadata arrive as events; the client's @setDataFrame is stripped.
        let mut meta = BytesMut::new();
        amf0::encode_all(
            &[
                s("onMetaData"),
                Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
            ],
            &mut meta,
        );
        client.send_media(MSG_DATA_AMF0, 0, &meta);
        client.send_media(MSG_VIDEO, 40, &[0x17, 0, 0, 0, 0, 1, 2, 3]);
        let events = pump(&mut server, &mut client);
        let Event::Media(m) = &events[0] else {
            panic!("{events:?}")
        };
        let values = amf0::decode_all(&m.payload).expect("metadata decodes");
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        assert!(matches!(&events[1], Event::Media(m) if m.timestamp == 40 && m.type_id == 9));
    }

    /// The query of the stream name reaches the server whole, as an edge's token does.
    #[test]
    fn the_stream_query_reaches_the_server() {
        let mut server = ServerSession::new(SessionConfig::default(), &mut seeded(1));
        let name = "stream1?token=t&vhost=v";
        let mut client = ClientSession::play("rtmp://h/live", name, &mut seeded(2));
        let events = pump(&mut server, &mut client);
        assert!(events.contains(&Event::Play {
            stream: "stream1".into(),
            vhost: Some("v".into()),
            duration: None,
        }));
        assert_eq!(server.stream_query(), "token=t&vhost=v");
    }

    /// ringcast's origin cluster redirects a player as SRS does (see
    /// `ServerSession::redirect`): the client reports where to, typed.
    #[test]
    fn an_rtmp_302_is_reported_with_its_url() {
        let mut server = ServerSession::new(SessionConfig::default(), &mut seeded(1));
        let mut client = ClientSession::play("rtmp://h/live", "s1", &mut seeded(2));
        pump(&mut server, &mut client);
        server.redirect("rtmp://b:1936/live", "rtmp://b:1936/live/s1?cluster_hops=1");
        while let Some(b) = server.poll_transmit() {
            client.handle_input(&b).expect("client input");
        }
        let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
        let redirect = Redirect {
            url: "rtmp://b:1936/live/s1?cluster_hops=1".into(),
        };
        assert_eq!(
            events.last(),
            Some(&ClientEvent::Redirected(redirect.clone()))
        );
        assert_eq!(redirect.server().as_deref(), Some("b:1936"));
    }

    /// FMS's and Wowza's way: `_error` to connect, with `ex.redirect` alone.
    #[test]
    fn an_error_with_a_redirect_is_a_redirect_and_without_one_a_refusal() {
        let answer = |ex: Option<Amf0Value>| {
            let mut client = ClientSession::play("rtmp://h/live", "s1", &mut seeded(2));
            let mut server = ServerSession::new(SessionConfig::default(), &mut seeded(1));
            while let Some(b) = client.poll_transmit() {
                server.handle_input(&b).expect("C0+C1");
            }
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b).expect("S0+S1+S2");
            }
            let mut info = vec![
                ("level", s("error")),
                ("code", s("NetConnection.Connect.Rejected")),
            ];
            info.extend(ex.map(|ex| ("ex", ex)));
            let mut out = BytesMut::new();
            let values = [
                s("_error"),
                Amf0Value::Number(1.0),
                Amf0Value::Null,
                object(&info),
            ];
            write_amf(
                &mut ChunkWriter::new(),
                MSG_COMMAND_AMF0,
                0,
                &values,
                &mut out,
            );
            client.handle_input(&out).expect("the answer");
            std::iter::from_fn(|| client.poll_event()).last()
        };
        let ex = object(&[
            ("code", Amf0Value::Number(302.0)),
            ("redirect", s("rtmp://[::1]/live")),
        ]);
        let Some(ClientEvent::Redirected(r)) = answer(Some(ex)) else {
            panic!("no redirect");
        };
        assert_eq!(r.server().as_deref(), Some("[::1]:1935"));
        let ex = object(&[("redirect", Amf0Value::Number(1.0))]);
        let refused = Some(ClientEvent::Refused(
            "NetConnection.Connect.Rejected".into(),
        ));
        assert_eq!(answer(Some(ex)), refused, "a redirect that is no string");
        assert_eq!(answer(None), refused);
    }

    #[test]
    fn a_redirect_names_a_server_or_none() {
        let server = |url: &str| Redirect { url: url.into() }.server();
        assert_eq!(
            server("rtmp://10.0.0.2:1935/live").as_deref(),
            Some("10.0.0.2:1935")
        );
        assert_eq!(server("RTMP://a.b/live/s?x=1").as_deref(), Some("a.b:1935"));
        assert_eq!(server("rtmp://a.b?x").as_deref(), Some("a.b:1935"));
        assert_eq!(
            server("rtmp://[::1]:19350/l").as_deref(),
            Some("[::1]:19350")
        );
        for bad in [
            "http://a/live",
            "rtmp://",
            "rtmp:///live",
            "rtmp://a:0/live",
            "rtmp://a:99999/live",
            "rtmp://a:x/live",
            "rtmp://u@a/live",
            "rtmp://a b/live",
            "rtmp://[::1/live",
            "rtmp://[]:1935/live",
            "rtmp://[::1]x/live",
            "rtmp://a:1:2/live",
            "rtmp:/",
            "",
            "rtmp://\u{e9}/live",
        ] {
            assert_eq!(server(bad), None, "{bad}");
        }
    }

    #[test]
    fn play_with_our_client() {
        let mut server = ServerSession::new(SessionConfig::default(), &mut seeded(1));
        let mut client = ClientSession::play("rtmp://h/live", "stream1", &mut seeded(2));
        let events = pump(&mut server, &mut client);
        assert!(events.contains(&Event::Play {
            stream: "stream1".into(),
            vhost: None,
            duration: None,
        }));
        assert_eq!(client.poll_event(), Some(ClientEvent::Connected));
        assert_eq!(client.poll_event(), Some(ClientEvent::Playing));
        assert_eq!(
            client.poll_event(),
            None,
            "|RtmpSampleAccess and Data.Start are not the stream's"
        );

        // Media as the fan-out writes it: the connection's chunk size, chunk streams 5 to 7.
        let mut w = ChunkWriter::new();
        w.set_chunk_size(server.out_chunk_size());
        let mut out = BytesMut::new();
        let video = RawMessage {
            csid: CSID_VIDEO,
            timestamp: 40,
            type_id: MSG_VIDEO,
            stream_id: STREAM_ID,
            payload: Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]),
        };
        w.write(&video, &mut out);
        client.handle_input(&out).expect("media");
        assert_eq!(client.poll_event(), Some(ClientEvent::Media(video)));
    }
}
