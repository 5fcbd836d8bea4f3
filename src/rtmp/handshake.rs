//! The RTMP handshake (C0 C1 C2 / S0 S1 S2), server and client side, in both the plain
//! form of the RTMP 1.0 spec ("simple") and the Flash Player 9 HMAC-SHA256 digest form
//! ("complex") that ffmpeg, librtmp/OBS and Flash send. This module owns the handshake bytes
//! only: it takes bytes in and hands bytes out. It must not touch sockets, clocks, threads or
//! an entropy source of its own (its random bytes come from the caller's rng, see
//! [`ServerHandshake::new`]), and it never consumes what follows C2/S2, because those bytes
//! already belong to the chunk stream.
//!
//! Complex layout, as implemented by ffmpeg (`rtmpproto.c`), SRS and nginx-rtmp: after the
//! 4-byte time and 4-byte version, a C1/S1 carries two 764-byte blocks, a key block and a
//! digest block, in either order. Schema 1 puts the digest block first and its 32-byte digest
//! sits at `sum(p[8..12]) % 728 + 12`; schema 0 puts the key block first and the digest sits
//! at `sum(p[772..776]) % 728 + 776`. The digest is HMAC-SHA256 over the packet minus those 32
//! bytes, keyed with the text part of the Flash Player key (C1) or Flash Media Server key
//! (S1). C2/S2 end with HMAC-SHA256(key = HMAC-SHA256(full key, peer's digest), data = first
//! 1504 bytes).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::Sha256;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// The only C0/S0 value accepted: plain RTMP. 6 and 8 are RTMPE, which we do not speak.
const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;
/// Where the version field ends and the key/digest blocks begin.
const HEADER_LEN: usize = 8;
/// Where the signature of a complex C2/S2 begins.
const RESPONSE_SIGNATURE_AT: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// nginx-rtmp's server version; any non-zero value tells ffmpeg to validate S1.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];
/// Client version 128.0.7.2. Only non-zero matters: that is what makes nginx-rtmp look for a
/// digest (ffmpeg itself sends 9.0.124.2, librtmp 10.0.45.2).
const CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];

/// The shared tail of both Adobe keys; checked against ffmpeg's `rtmp_player_key` and
/// `rtmp_server_key`.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
const FP_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const FMS_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
/// Signs C2 (keyed through S1's digest).
const FP_KEY: [u8; 62] = join_key(FP_KEY_TEXT, &KEY_TAIL);
/// Signs S2 (keyed through C1's digest).
const FMS_KEY: [u8; 68] = join_key(FMS_KEY_TEXT, &KEY_TAIL);

const fn join_key<const N: usize>(text: &[u8], tail: &[u8; 32]) -> [u8; N] {
    // A length mismatch fails const evaluation, i.e. the build.
    assert!(text.len() + tail.len() == N);
    let mut key = [0u8; N];
    let mut i = 0;
    while i < text.len() {
        key[i] = text[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        key[text.len() + j] = tail[j];
        j += 1;
    }
    key
}

type Packet = [u8; HANDSHAKE_SIZE];
type Digest = [u8; DIGEST_LEN];
type Seed = <StdRng as SeedableRng>::Seed;

/// A handshake's random bytes come from a generator seeded, once, from the caller's rng when
/// the handshake is made: the packets that need them come later, on input, and 32 bytes of
/// seed is all a handshake keeps until then (a server holds thousands).
fn draw_seed(rng: &mut impl RngCore) -> Seed {
    let mut seed = Seed::default();
    rng.fill_bytes(&mut seed);
    seed
}

/// Which handshake the two peers ended up doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// The RTMP 1.0 spec handshake: random C1/S1, each side echoes the other's packet.
    Simple,
    /// The Flash Player 9 handshake with HMAC-SHA256 digests in C1/S1 and signed C2/S2.
    Complex,
}

/// Why a handshake failed. Every error is fatal for the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// C0 or S0 was not 3: 6 and 8 are RTMPE, anything else is not RTMP at all.
    #[error("unsupported RTMP handshake version {0} (only 3, plain RTMP, is supported)")]
    UnsupportedVersion(u8),
    /// Input arrived after an earlier call had already failed.
    #[error("RTMP handshake already failed")]
    AlreadyFailed,
}

/// Where the 32-byte digest sits in a complex C1/S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Schema 0: key block first, digest block second.
    KeyFirst,
    /// Schema 1: digest block first. ffmpeg and librtmp use it for plain RTMP, so the server
    /// tries it first.
    DigestFirst,
}

impl Schema {
    fn digest_offset(self, packet: &Packet) -> usize {
        let offset_field = match self {
            Self::KeyFirst => 772,
            Self::DigestFirst => HEADER_LEN,
        };
        let sum: usize = packet[offset_field..offset_field + 4]
            .iter()
            .map(|&b| usize::from(b))
            .sum();
        // 728 = 764-byte block - 4-byte offset field - 32-byte digest, so the digest always
        // stays inside its block and inside the packet, whatever the peer sent.
        sum % 728 + offset_field + 4
    }
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Digest {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HMAC of the packet with the digest slot left out.
fn packet_mac(packet: &Packet, digest_at: usize, key: &[u8]) -> Hmac<Sha256> {
    let mut mac = new_mac(key);
    mac.update(&packet[..digest_at]);
    mac.update(&packet[digest_at + DIGEST_LEN..]);
    mac
}

fn digest_at(packet: &Packet, offset: usize) -> Digest {
    packet[offset..offset + DIGEST_LEN]
        .try_into()
        .expect("digest slot is DIGEST_LEN bytes")
}

/// Finds a valid digest in a C1/S1 under either schema; `None` means a simple handshake.
fn find_digest(packet: &Packet, key_text: &[u8]) -> Option<(Schema, Digest)> {
    [Schema::DigestFirst, Schema::KeyFirst]
        .into_iter()
        .find_map(|schema| {
            let offset = schema.digest_offset(packet);
            packet_mac(packet, offset, key_text)
                .verify_slice(&packet[offset..offset + DIGEST_LEN])
                .is_ok()
                .then(|| (schema, digest_at(packet, offset)))
        })
}

/// Time 0 (the field is a peer-relative epoch and this module owns no clock), `version`,
/// then random bytes.
fn random_packet(version: [u8; 4], rng: &mut StdRng) -> Box<Packet> {
    let mut packet = Box::new([0u8; HANDSHAKE_SIZE]);
    packet[4..HEADER_LEN].copy_from_slice(&version);
    rng.fill_bytes(&mut packet[HEADER_LEN..]);
    packet
}

/// A complex C1/S1: random packet with its digest written at `schema`'s offset.
fn signed_packet(
    version: [u8; 4],
    schema: Schema,
    key_text: &[u8],
    rng: &mut StdRng,
) -> (Box<Packet>, Digest) {
    let mut packet = random_packet(version, rng);
    let offset = schema.digest_offset(&packet);
    let digest: Digest = packet_mac(&packet, offset, key_text)
        .finalize()
        .into_bytes()
        .into();
    packet[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
    (packet, digest)
}

fn response_signature(packet: &Packet, full_key: &[u8], peer_digest: &Digest) -> Digest {
    let key = hmac_sha256(full_key, peer_digest);
    hmac_sha256(&key, &packet[..RESPONSE_SIGNATURE_AT])
}

/// A complex C2/S2: random bytes signed through the peer's C1/S1 digest.
fn response_packet(full_key: &[u8], peer_digest: &Digest, rng: &mut StdRng) -> Box<Packet> {
    let mut packet = Box::new([0u8; HANDSHAKE_SIZE]);
    rng.fill_bytes(&mut packet[..RESPONSE_SIGNATURE_AT]);
    let signature = response_signature(&packet, full_key, peer_digest);
    packet[RESPONSE_SIGNATURE_AT..].copy_from_slice(&signature);
    packet
}

/// Accumulates one 1536-byte packet from arbitrarily split input.
struct PacketBuf {
    /// Allocated on the first byte and freed by `reset`: a connection keeps its handshake
    /// state for life, and a server holds thousands of them.
    data: Vec<u8>,
}

impl PacketBuf {
    fn new() -> Self {
        Self { data: Vec::new() }
    }

    /// Takes what the packet still lacks from the front of `input`; true once complete.
    fn fill(&mut self, input: &mut &[u8]) -> bool {
        let wanted = HANDSHAKE_SIZE - self.data.len();
        let (head, tail) = input.split_at(wanted.min(input.len()));
        if self.data.capacity() == 0 {
            self.data.reserve_exact(HANDSHAKE_SIZE);
        }
        self.data.extend_from_slice(head);
        *input = tail;
        self.data.len() == HANDSHAKE_SIZE
    }

    /// The whole packet; only called once `fill` said it is complete.
    fn packet(&self) -> &Packet {
        self.data
            .as_slice()
            .try_into()
            .expect("a filled PacketBuf holds exactly HANDSHAKE_SIZE bytes")
    }

    fn reset(&mut self) {
        self.data = Vec::new();
    }
}

fn check_version(version: u8) -> Result<(), HandshakeError> {
    if version == RTMP_VERSION {
        Ok(())
    } else {
        Err(HandshakeError::UnsupportedVersion(version))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0,
    AwaitC1,
    AwaitC2 { remaining: usize },
    Done,
    Failed,
}

/// The server side: reads C0 C1, answers S0 S1 S2 in one piece, then reads C2.
pub struct ServerHandshake {
    state: ServerState,
    seed: Seed,
    c1: PacketBuf,
    kind: Option<HandshakeKind>,
    output: Option<Bytes>,
}

impl ServerHandshake {
    /// A server handshake waiting for C0. S1 and S2's random bytes derive from a seed drawn
    /// from `rng` now: a seeded rng gives the same S0 S1 S2 for the same C1.
    #[must_use]
    pub fn new(rng: &mut impl RngCore) -> Self {
        Self {
            state: ServerState::AwaitC0,
            seed: draw_seed(rng),
            c1: PacketBuf::new(),
            kind: None,
            output: None,
        }
    }

    /// Feeds bytes received from the client; returns how many of `input` were consumed.
    /// Bytes after C2 are NOT consumed (they are the first RTMP chunks; the caller keeps them).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::UnsupportedVersion`] for a C0 other than 3, after which every call
    /// returns [`HandshakeError::AlreadyFailed`].
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut rest = input;
        loop {
            match self.state {
                ServerState::AwaitC0 => {
                    let Some((&version, tail)) = rest.split_first() else {
                        break;
                    };
                    rest = tail;
                    if let Err(e) = check_version(version) {
                        self.state = ServerState::Failed;
                        return Err(e);
                    }
                    self.state = ServerState::AwaitC1;
                }
                ServerState::AwaitC1 => {
                    if !self.c1.fill(&mut rest) {
                        break;
                    }
                    self.answer_c1();
                    self.state = ServerState::AwaitC2 {
                        remaining: HANDSHAKE_SIZE,
                    };
                }
                ServerState::AwaitC2 { remaining } => {
                    // C2 is skipped unread, like SRS ("never verify c2, for ffmpeg will
                    // failed") and nginx-rtmp: nothing after the handshake relies on it.
                    let taken = remaining.min(rest.len());
                    rest = &rest[taken..];
                    if taken < remaining {
                        self.state = ServerState::AwaitC2 {
                            remaining: remaining - taken,
                        };
                        break;
                    }
                    self.state = ServerState::Done;
                }
                ServerState::Done => break,
                ServerState::Failed => return Err(HandshakeError::AlreadyFailed),
            }
        }
        Ok(input.len() - rest.len())
    }

    fn answer_c1(&mut self) {
        let c1 = self.c1.packet();
        let rng = &mut StdRng::from_seed(self.seed);
        let mut out = BytesMut::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        let kind = match find_digest(c1, FP_KEY_TEXT) {
            Some((schema, c1_digest)) => {
                // Answer in the client's schema, as SRS does; ffmpeg accepts either.
                let (s1, _) = signed_packet(SERVER_VERSION, schema, FMS_KEY_TEXT, rng);
                out.put_slice(&s1[..]);
                out.put_slice(&response_packet(&FMS_KEY, &c1_digest, rng)[..]);
                tracing::debug!(?schema, "RTMP complex handshake");
                HandshakeKind::Complex
            }
            None => {
                // A zero version in S1 tells ffmpeg not to look for a digest.
                out.put_slice(&random_packet([0; 4], rng)[..]);
                out.put_slice(c1);
                tracing::debug!("RTMP simple handshake");
                HandshakeKind::Simple
            }
        };
        self.kind = Some(kind);
        self.output = Some(out.freeze());
        self.c1.reset();
    }

    /// S0+S1+S2 (3073 bytes, one Bytes) once C0+C1 have been read; None otherwise / after taken.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.output.take()
    }

    /// True once C2 has been fully consumed.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// The kind of handshake, known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("state", &self.state)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0,
    AwaitS1,
    AwaitS2,
    Done,
    Failed,
}

/// The client side: sends C0 C1, reads S0 S1, sends C2, reads S2.
///
/// A complex client still completes against a server that answers simply (nginx-rtmp
/// may): C2 then echoes S1. S2 is checked but a mismatch is only logged, because the
/// session after the handshake is not authenticated by it and rejecting would only lose
/// interoperability.
pub struct ClientHandshake {
    state: ClientState,
    /// Where C1's random bytes came from and C2's come from.
    rng: StdRng,
    c1: Box<Packet>,
    /// Set for a complex C1; S1/S2 are only interpreted as complex when it is.
    c1_digest: Option<Digest>,
    server_signed: bool,
    packet: PacketBuf,
    output: BytesMut,
}

impl ClientHandshake {
    /// A client handshake whose C0+C1 is ready in [`poll_output`](Self::poll_output).
    /// `Complex` signs C1 with the Flash Player key under schema 1, as ffmpeg does. C1 and
    /// C2's random bytes derive from a seed drawn from `rng` now: a seeded rng gives the same
    /// C1, and the same C2 for the same S1.
    #[must_use]
    pub fn new(kind: HandshakeKind, rng: &mut impl RngCore) -> Self {
        let mut rng = StdRng::from_seed(draw_seed(rng));
        let (c1, c1_digest) = match kind {
            HandshakeKind::Simple => (random_packet([0; 4], &mut rng), None),
            HandshakeKind::Complex => {
                let (c1, digest) =
                    signed_packet(CLIENT_VERSION, Schema::DigestFirst, FP_KEY_TEXT, &mut rng);
                (c1, Some(digest))
            }
        };
        let mut output = BytesMut::with_capacity(1 + HANDSHAKE_SIZE);
        output.put_u8(RTMP_VERSION);
        output.put_slice(&c1[..]);
        Self {
            state: ClientState::AwaitS0,
            rng,
            c1,
            c1_digest,
            server_signed: false,
            packet: PacketBuf::new(),
            output,
        }
    }

    /// Feeds bytes received from the server (S0 S1 S2); returns how many of `input` were
    /// consumed. Bytes after S2 are not consumed: they are the server's first chunks.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::UnsupportedVersion`] for an S0 other than 3, after which every call
    /// returns [`HandshakeError::AlreadyFailed`].
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut rest = input;
        loop {
            match self.state {
                ClientState::AwaitS0 => {
                    let Some((&version, tail)) = rest.split_first() else {
                        break;
                    };
                    rest = tail;
                    if let Err(e) = check_version(version) {
                        self.state = ClientState::Failed;
                        return Err(e);
                    }
                    self.state = ClientState::AwaitS1;
                }
                ClientState::AwaitS1 => {
                    if !self.packet.fill(&mut rest) {
                        break;
                    }
                    self.answer_s1();
                    self.packet.reset();
                    self.state = ClientState::AwaitS2;
                }
                ClientState::AwaitS2 => {
                    if !self.packet.fill(&mut rest) {
                        break;
                    }
                    self.check_s2();
                    self.state = ClientState::Done;
                }
                ClientState::Done => break,
                ClientState::Failed => return Err(HandshakeError::AlreadyFailed),
            }
        }
        Ok(input.len() - rest.len())
    }

    fn answer_s1(&mut self) {
        let s1 = self.packet.packet();
        let s1_digest = self
            .c1_digest
            .and_then(|_| find_digest(s1, FMS_KEY_TEXT))
            .map(|(_, digest)| digest);
        self.server_signed = s1_digest.is_some();
        match s1_digest {
            Some(digest) => {
                let c2 = response_packet(&FP_KEY, &digest, &mut self.rng);
                self.output.put_slice(&c2[..]);
            }
            None => self.output.put_slice(s1),
        }
        tracing::debug!(server_signed = self.server_signed, "RTMP S1 read");
    }

    fn check_s2(&self) {
        let s2 = self.packet.packet();
        let signed = match self.c1_digest {
            Some(digest) if self.server_signed => {
                s2[RESPONSE_SIGNATURE_AT..] == response_signature(s2, &FMS_KEY, &digest)
            }
            _ => false,
        };
        // Time and version are skipped: ffmpeg's listen mode rewrites them in its echo.
        let echoed = s2[HEADER_LEN..] == self.c1[HEADER_LEN..];
        if !signed && !echoed {
            tracing::warn!("RTMP S2 neither signs nor echoes C1; continuing");
        }
    }

    /// First C0+C1, then (after S0+S1 have been read) C2; `None` when nothing is pending.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// True once S2 has been fully consumed; C2 is queued by then.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("state", &self.state)
            .field("complex", &self.c1_digest.is_some())
            .field("server_signed", &self.server_signed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// ffmpeg's `ff_rtmp_calc_digest_pos`, transcribed independently of the module.
    fn ffmpeg_digest_pos(buf: &[u8], off: usize, mod_val: usize, add_val: usize) -> usize {
        buf[off..off + 4]
            .iter()
            .map(|&b| usize::from(b))
            .sum::<usize>()
            % mod_val
            + add_val
    }

    /// ffmpeg's `ff_rtmp_calc_digest` (gap of 0 means "no gap").
    fn ffmpeg_calc_digest(src: &[u8], gap: usize, key: &[u8]) -> Digest {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        if gap == 0 {
            mac.update(src);
        } else {
            mac.update(&src[..gap]);
            mac.update(&src[gap + 32..]);
        }
        mac.finalize().into_bytes().into()
    }

    /// ffmpeg's `rtmp_validate_digest`: the digest position, or 0 when it does not match.
    fn ffmpeg_validate_digest(buf: &[u8], off: usize) -> usize {
        let pos = ffmpeg_digest_pos(buf, off, 728, off + 4);
        let digest = ffmpeg_calc_digest(buf, pos, &FMS_KEY[..36]);
        if buf[pos..pos + 32] == digest {
            pos
        } else {
            0
        }
    }

    /// Deterministic filler, like ffmpeg's LFG-seeded handshake bytes.
    fn filler(seed: u32, out: &mut [u8]) {
        let mut x = seed;
        for b in out {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
    }

    /// C0+C1 as ffmpeg's `rtmp_handshake` builds it for plain RTMP.
    fn ffmpeg_c0c1(seed: u32) -> (Vec<u8>, usize) {
        let mut tosend = vec![0u8; HANDSHAKE_SIZE + 1];
        tosend[0] = 3;
        tosend[5..9].copy_from_slice(&[9, 0, 124, 2]);
        filler(seed, &mut tosend[9..]);
        let c1 = &mut tosend[1..];
        let pos = ffmpeg_digest_pos(c1, 8, 728, 12);
        let digest = ffmpeg_calc_digest(c1, pos, &FP_KEY[..30]);
        c1[pos..pos + 32].copy_from_slice(&digest);
        (tosend, pos)
    }

    /// Feeds `data` in awkward pieces, stopping at the first piece not fully consumed;
    /// returns the total consumed.
    fn feed(mut handle: impl FnMut(&[u8]) -> usize, data: &[u8]) -> usize {
        const PIECES: [usize; 7] = [1, 7, 300, 2, 1535, 13, 4096];
        let mut offset = 0;
        for size in PIECES.iter().cycle() {
            if offset == data.len() {
                break;
            }
            let end = (offset + size).min(data.len());
            let taken = handle(&data[offset..end]);
            offset += taken;
            if offset < end {
                break;
            }
        }
        offset
    }

    /// Runs a full in-memory exchange, the client's rng seeded with `seed` and the server's
    /// with `seed + 1`; returns (server kind, S0S1S2, C0C1, C2).
    fn run_pair(kind: HandshakeKind, seed: u64) -> (HandshakeKind, Bytes, Bytes, Bytes) {
        let mut client = ClientHandshake::new(kind, &mut seeded(seed));
        let mut server = ServerHandshake::new(&mut seeded(seed + 1));

        let c0c1 = client.poll_output().expect("C0+C1 ready at start");
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        assert!(client.poll_output().is_none());
        assert_eq!(feed(|b| server.handle_input(b).unwrap(), &c0c1), c0c1.len());

        let s012 = server.poll_output().expect("S0+S1+S2 after C1");
        assert_eq!(s012.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert!(server.poll_output().is_none());
        assert!(!server.is_done());

        let mut from_server = s012.to_vec();
        from_server.extend_from_slice(b"\x02server chunks");
        assert_eq!(
            feed(|b| client.handle_input(b).unwrap(), &from_server),
            s012.len()
        );
        assert!(client.is_done());
        assert_eq!(client.handle_input(b"\x02").unwrap(), 0);

        let c2 = client.poll_output().expect("C2 after S1");
        assert_eq!(c2.len(), HANDSHAKE_SIZE);
        let mut from_client = c2.to_vec();
        from_client.extend_from_slice(b"\x03connect chunk");
        assert_eq!(
            feed(|b| server.handle_input(b).unwrap(), &from_client),
            c2.len()
        );
        assert!(server.is_done());
        assert_eq!(server.handle_input(b"\x03").unwrap(), 0);
        assert!(server.poll_output().is_none());

        (server.kind().expect("kind known"), s012, c0c1, c2)
    }

    #[test]
    fn keys_match_ffmpeg() {
        assert_eq!(&FP_KEY[..30], b"Genuine Adobe Flash Player 001");
        assert_eq!(&FMS_KEY[..36], b"Genuine Adobe Flash Media Server 001");
        assert_eq!(FP_KEY[30..], KEY_TAIL);
        assert_eq!(FMS_KEY[36..], KEY_TAIL);
        assert_eq!(KEY_TAIL[0], 0xf0);
        assert_eq!(KEY_TAIL[31], 0xae);
    }

    #[test]
    fn simple_pair() {
        let (kind, s012, c0c1, c2) = run_pair(HandshakeKind::Simple, 1);
        assert_eq!(kind, HandshakeKind::Simple);
        assert_eq!(s012[0], 3);
        assert_eq!(&s012[5..9], &[0; 4], "simple S1 has a zero version");
        assert_eq!(&s012[1 + HANDSHAKE_SIZE..], &c0c1[1..], "S2 echoes C1");
        assert_eq!(&c2[..], &s012[1..=HANDSHAKE_SIZE], "C2 echoes S1");
    }

    #[test]
    fn complex_pair() {
        let (kind, s012, c0c1, c2) = run_pair(HandshakeKind::Complex, 1);
        assert_eq!(kind, HandshakeKind::Complex);
        let c1 = &c0c1[1..];
        let s1 = &s012[1..=HANDSHAKE_SIZE];
        let s2 = &s012[1 + HANDSHAKE_SIZE..];
        assert_eq!(&c1[4..8], &CLIENT_VERSION);

        let c1_pos = ffmpeg_digest_pos(c1, 8, 728, 12);
        assert_eq!(
            ffmpeg_calc_digest(c1, c1_pos, &FP_KEY[..30]),
            c1[c1_pos..c1_pos + 32]
        );

        // The client answered the server's schema-1 S1 the way Flash signs C2.
        let s1_pos = ffmpeg_validate_digest(s1, 8);
        assert_ne!(s1_pos, 0);
        let key = ffmpeg_calc_digest(&s1[s1_pos..s1_pos + 32], 0, &FP_KEY);
        assert_eq!(ffmpeg_calc_digest(&c2[..1504], 0, &key), c2[1504..]);

        let key = ffmpeg_calc_digest(&c1[c1_pos..c1_pos + 32], 0, &FMS_KEY);
        assert_eq!(ffmpeg_calc_digest(&s2[..1504], 0, &key), s2[1504..]);
    }

    #[test]
    fn ffmpeg_c1_gets_a_response_ffmpeg_accepts() {
        for seed in [0xdead_c0de, 1, 2, 3] {
            let (c0c1, client_pos) = ffmpeg_c0c1(seed);
            let mut server = ServerHandshake::new(&mut seeded(1));
            assert_eq!(server.handle_input(&c0c1).unwrap(), c0c1.len());
            assert_eq!(server.kind(), Some(HandshakeKind::Complex));
            let serverdata = server.poll_output().unwrap();
            let (s0s1, clientdata) = serverdata.split_at(1 + HANDSHAKE_SIZE);

            // What ffmpeg's rtmp_handshake checks, step by step.
            assert_eq!(s0s1[0], 3);
            assert!(
                s0s1[5] >= 3,
                "ffmpeg only validates S1 when its version is >= 3"
            );
            let s1 = &s0s1[1..];
            let mut server_pos = ffmpeg_validate_digest(s1, 772);
            if server_pos == 0 {
                server_pos = ffmpeg_validate_digest(s1, 8);
            }
            assert_ne!(server_pos, 0, "Server response validating failed");
            let digest = ffmpeg_calc_digest(&c0c1[1 + client_pos..][..32], 0, &FMS_KEY);
            let signature = ffmpeg_calc_digest(&clientdata[..1504], 0, &digest);
            assert_eq!(signature, clientdata[1504..], "Signature mismatch");
        }
    }

    #[test]
    fn schema0_c1_is_complex_and_answered_in_schema0() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        filler(7, &mut c1[8..]);
        let pos = ffmpeg_digest_pos(&c1, 772, 728, 776);
        let digest = ffmpeg_calc_digest(&c1, pos, &FP_KEY[..30]);
        c1[pos..pos + 32].copy_from_slice(&digest);

        let mut server = ServerHandshake::new(&mut seeded(1));
        server.handle_input(&[3]).unwrap();
        server.handle_input(&c1).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Complex));
        let out = server.poll_output().unwrap();
        assert_ne!(ffmpeg_validate_digest(&out[1..=HANDSHAKE_SIZE], 772), 0);
    }

    #[test]
    fn undigested_c1_with_version_falls_back_to_simple() {
        let mut c0c1 = vec![3u8; 1 + HANDSHAKE_SIZE];
        c0c1[5..9].copy_from_slice(&[9, 0, 124, 2]);
        filler(9, &mut c0c1[9..]);
        let mut server = ServerHandshake::new(&mut seeded(1));
        server.handle_input(&c0c1).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(
            &server.poll_output().unwrap()[1 + HANDSHAKE_SIZE..],
            &c0c1[1..]
        );
    }

    #[test]
    fn complex_client_accepts_simple_server() {
        let mut client = ClientHandshake::new(HandshakeKind::Complex, &mut seeded(2));
        let c1 = client.poll_output().unwrap().slice(1..);
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        filler(11, &mut s1[8..]);
        let mut from_server = vec![3];
        from_server.extend_from_slice(&s1);
        from_server.extend_from_slice(&c1);
        assert_eq!(
            client.handle_input(&from_server).unwrap(),
            from_server.len()
        );
        assert!(client.is_done());
        assert_eq!(&client.poll_output().unwrap()[..], &s1[..], "C2 echoes S1");
    }

    #[test]
    fn garbage_c0_fails_fast() {
        for c0 in [6u8, 8, 0, b'G', 0xff] {
            let mut server = ServerHandshake::new(&mut seeded(1));
            let err = server.handle_input(&[c0, 0, 0]).unwrap_err();
            assert!(matches!(err, HandshakeError::UnsupportedVersion(v) if v == c0));
            assert!(matches!(
                server.handle_input(&[3]),
                Err(HandshakeError::AlreadyFailed)
            ));
            assert!(server.poll_output().is_none());
        }
        let mut client = ClientHandshake::new(HandshakeKind::Complex, &mut seeded(2));
        assert!(matches!(
            client.handle_input(b"HTTP/1.1 400"),
            Err(HandshakeError::UnsupportedVersion(b'H'))
        ));
        assert!(matches!(
            client.handle_input(&[3]),
            Err(HandshakeError::AlreadyFailed)
        ));
    }

    #[test]
    fn truncated_input_waits() {
        let (c0c1, _) = ffmpeg_c0c1(5);
        let mut server = ServerHandshake::new(&mut seeded(1));
        assert_eq!(server.handle_input(&[]).unwrap(), 0);
        assert_eq!(server.handle_input(&c0c1[..1000]).unwrap(), 1000);
        assert!(server.poll_output().is_none());
        assert_eq!(server.kind(), None);
        assert_eq!(
            server.handle_input(&c0c1[1000..]).unwrap(),
            c0c1.len() - 1000
        );
        assert!(server.poll_output().is_some());
        assert_eq!(server.handle_input(&[0; 1535]).unwrap(), 1535);
        assert!(!server.is_done());
        assert_eq!(server.handle_input(&[0; 2]).unwrap(), 1);
        assert!(server.is_done());

        let mut client = ClientHandshake::new(HandshakeKind::Simple, &mut seeded(2));
        client.poll_output().unwrap();
        assert_eq!(client.handle_input(&[3; 1 + HANDSHAKE_SIZE]).unwrap(), 1537);
        assert!(client.poll_output().is_some(), "C2 as soon as S1 is read");
        assert_eq!(client.handle_input(&[0; 100]).unwrap(), 100);
        assert!(!client.is_done());
    }

    #[test]
    fn the_callers_rng_decides_every_byte() {
        for kind in [HandshakeKind::Simple, HandshakeKind::Complex] {
            let a = run_pair(kind, 7);
            assert_eq!(a, run_pair(kind, 7), "{kind:?}: same seeds, same bytes");
            let b = run_pair(kind, 9);
            assert_eq!(a.0, b.0);
            assert_ne!(a.1, b.1, "{kind:?}: S0S1S2 follow the server's rng");
            assert_ne!(a.2, b.2, "{kind:?}: C0C1 follows the client's rng");
        }
        // A server's answer to one C1 is its rng's alone.
        let (c0c1, _) = ffmpeg_c0c1(3);
        let answer = |seed| {
            let mut server = ServerHandshake::new(&mut seeded(seed));
            server.handle_input(&c0c1).unwrap();
            server.poll_output().unwrap()
        };
        assert_eq!(answer(5), answer(5));
        assert_ne!(answer(5), answer(6));
    }
}
