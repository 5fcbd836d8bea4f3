//! HTTPS's stream: a thin adapter that runs rustls's sans-IO [`ServerConnection`] over a
//! compio socket, so that the request loop and the HTTP-FLV player run unchanged on either a
//! plain socket or TLS ([`Stream`]). rustls does the protocol (handshake, records, alerts);
//! this file only moves bytes between it and the socket, and owns the handshake deadline.
//!
//! The adapter takes `&self` for both directions, so that a player's drain and its writer
//! share it as they share a plain socket: each call holds the connection's state only between
//! awaits, never across one. It knows no HTTP: it moves bytes, and counts a TLS player's as
//! [`crate::egress`] counts a plain one's.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use rustls::server::{ServerConfig, ServerConnection};

use super::error::HttpConnError;
use crate::egress::{BatchError, Counters};
use crate::stats::clients::Client;

/// How long a client may take over its TLS handshake, from the accept to the end, so that
/// one that stalls part-way cannot hold a connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Ciphertext a player's out buffer keeps between writes; a GOP-cache burst grows it once.
const OUT_KEEP: usize = 16 * 1024;
/// Bytes each handshake read takes at most: a ClientHello is a few hundred.
const HANDSHAKE_BUFFER: usize = 4096;
/// Frames' buffers a player's batch vector keeps room for between writes.
const IOV_KEEP: usize = 16;

/// What an HTTP connection reads from and writes to: the socket itself, or TLS over it.
pub(super) enum Stream<'a> {
    /// Plain HTTP: what is read and written is the socket's.
    Plain(&'a TcpStream),
    /// HTTPS.
    Tls(&'a TlsStream<'a>),
}

impl Stream<'_> {
    /// Reads what the peer sent (decrypted) into `buf`'s spare room; `0` means it closed.
    pub(super) async fn read(&self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        match self {
            Self::Plain(s) => {
                let mut s = *s;
                s.read(buf).await
            }
            Self::Tls(t) => t.read(buf).await,
        }
    }

    /// Writes all of `data`.
    pub(super) async fn write_all(&self, data: Bytes) -> io::Result<()> {
        match self {
            Self::Plain(s) => {
                let mut s = *s;
                s.write_all(data).await.0
            }
            Self::Tls(t) => t.write(&[data]).await.map(drop),
        }
    }

    /// Writes all of `iov`, in order: one vectored write on a plain socket, one run of
    /// records on TLS.
    pub(super) async fn write_all_vectored(&self, iov: Vec<Bytes>) -> io::Result<()> {
        match self {
            Self::Plain(s) => {
                let mut s = *s;
                s.write_vectored_all(iov).await.0
            }
            Self::Tls(t) => t.write(&iov).await.map(drop),
        }
    }
}

/// A TLS server connection over a socket.
pub(super) struct TlsStream<'a> {
    tcp: &'a TcpStream,
    tls: RefCell<ServerConnection>,
    /// Ciphertext on its way out, kept between writes.
    out: RefCell<Vec<u8>>,
}

impl<'a> TlsStream<'a> {
    /// Runs the server side of the handshake on `tcp` until it completes, fails (the alert is
    /// sent), or passes [`HANDSHAKE_TIMEOUT`].
    pub(super) async fn accept(
        tcp: &'a TcpStream,
        config: Arc<ServerConfig>,
    ) -> Result<Self, HttpConnError> {
        let mut tls = ServerConnection::new(config)?;
        // Plaintext is encrypted as it is written and flushed by the same call: a player's
        // batch is bounded by the hub's, not by rustls's 64 KiB default.
        tls.set_buffer_limit(None);
        let stream = Self {
            tcp,
            tls: RefCell::new(tls),
            out: RefCell::new(Vec::new()),
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut buf = Vec::with_capacity(HANDSHAKE_BUFFER);
        while stream.tls.borrow().is_handshaking() {
            let flushed = compio::time::timeout_at(deadline, stream.flush());
            flushed.await.map_err(|_| timed_out())??;
            buf.clear();
            let mut s = tcp;
            let read = compio::time::timeout_at(deadline, s.read(buf));
            let BufResult(r, b) = read.await.map_err(|_| timed_out())?;
            buf = b;
            if r? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            if let Err(e) = stream.take_in(&buf) {
                // The alert that says why, best effort: the peer may be gone.
                let _ = compio::time::timeout_at(deadline, stream.flush()).await;
                return Err(e);
            }
        }
        // The last flight, and TLS 1.3's session tickets.
        compio::time::timeout_at(deadline, stream.flush())
            .await
            .map_err(|_| timed_out())??;
        Ok(stream)
    }

    /// Hands `cipher` to rustls and has it processed.
    fn take_in(&self, mut cipher: &[u8]) -> Result<(), HttpConnError> {
        let mut tls = self.tls.borrow_mut();
        while !cipher.is_empty() {
            if tls.read_tls(&mut cipher)? == 0 {
                return Err(io::Error::from(io::ErrorKind::InvalidData).into());
            }
            tls.process_new_packets()?;
        }
        Ok(())
    }

    /// Reads decrypted bytes into `buf` (cleared first, as a socket read fills its spare
    /// room); `0` when the peer closed, with or without close_notify.
    async fn read(&self, mut buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        loop {
            buf.clear();
            buf.resize(buf.capacity().max(1), 0);
            let plain = self.tls.borrow_mut().reader().read(&mut buf);
            match plain {
                Ok(n) => {
                    buf.truncate(n);
                    return BufResult(Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    buf.clear();
                    return BufResult(Err(e), buf);
                }
            }
            buf.clear();
            let mut s = self.tcp;
            let BufResult(r, b) = s.read(buf).await;
            buf = b;
            match r {
                Ok(0) => return BufResult(Ok(0), buf),
                Ok(_) => {}
                Err(e) => return BufResult(Err(e), buf),
            }
            if let Err(e) = self.take_in(&buf) {
                buf.clear();
                return BufResult(Err(io::Error::new(io::ErrorKind::InvalidData, e)), buf);
            }
        }
    }

    /// Encrypts `data` as one run of records and writes it; returns the bytes that went out
    /// on the socket.
    pub(super) async fn write(&self, data: &[Bytes]) -> io::Result<usize> {
        {
            let mut tls = self.tls.borrow_mut();
            let mut slices: Vec<IoSlice<'_>> = data.iter().map(|b| IoSlice::new(b)).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = tls.writer().write_vectored(rest)?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        self.flush().await
    }

    /// Writes what rustls has to send (records, alerts, handshake flights).
    async fn flush(&self) -> io::Result<usize> {
        let out = {
            let mut tls = self.tls.borrow_mut();
            let mut out = self.out.take();
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
            out
        };
        let len = out.len();
        if len == 0 {
            self.out.replace(out);
            return Ok(0);
        }
        let mut s = self.tcp;
        let BufResult(r, mut out) = s.write_all(out).await;
        out.clear();
        out.shrink_to(OUT_KEEP);
        self.out.replace(out);
        r.map(|()| len)
    }

    /// An HTTP-FLV player's batch: encrypted and written as [`crate::egress::write_batch`]
    /// writes a plain one, bounded by `stall` (queue_length) and counted the same way, in
    /// bytes on the wire.
    pub(super) async fn write_batch(
        &self,
        mut iov: Vec<Bytes>,
        counters: &dyn Counters,
        client: &Client,
        stall: Duration,
    ) -> Result<Vec<Bytes>, BatchError> {
        let Ok(written) = compio::time::timeout(stall, self.write(&iov)).await else {
            counters.players_cut().fetch_add(1, Ordering::Relaxed);
            return Err(BatchError::Stalled(stall));
        };
        let len = written? as u64;
        iov.clear();
        // As a plain player's: a GOP-cache burst's capacity is not kept for life.
        iov.shrink_to(IOV_KEEP);
        counters.bytes_out().fetch_add(len, Ordering::Relaxed);
        client.send_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(iov)
    }
}

fn timed_out() -> HttpConnError {
    HttpConnError::Timeout("in the TLS handshake")
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpStream as StdStream};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    use super::*;

    /// A server config for 127.0.0.1 and a client config that trusts it.
    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let der = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], der)
            .expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A blocking TLS client on its own thread: sends `ask`, reads until the server closes,
    /// and returns what it read.
    fn client(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        ask: Vec<u8>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let conn = ClientConnection::new(config, name).expect("client");
            let mut tls = StreamOwned::new(conn, StdStream::connect(addr).expect("connect"));
            tls.write_all(&ask).expect("ask");
            let mut got = Vec::new();
            // The server closes without close_notify: the end reads as an unexpected EOF.
            let _ = tls.read_to_end(&mut got);
            got
        })
    }

    /// A loopback socket accepted from the peer that `connect` starts toward its address.
    async fn accepted<T>(
        connect: impl FnOnce(SocketAddr) -> std::thread::JoinHandle<T>,
    ) -> (TcpStream, std::thread::JoinHandle<T>) {
        let listener = compio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let peer = connect(listener.local_addr().expect("addr"));
        let (tcp, _) = listener.accept().await.expect("accept");
        (tcp, peer)
    }

    #[test]
    fn a_pair_talks_through_small_reads_and_large_writes() {
        let (server, client_config) = configs();
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let ask = b"GET / HTTP/1.1\r\n\r\n".repeat(100);
                let sent = ask.clone();
                let (tcp, peer) = accepted(|addr| client(addr, client_config, sent)).await;
                let tls = TlsStream::accept(&tcp, server).await.expect("handshake");
                let stream = Stream::Tls(&tls);
                // Reads as small as a player's drain still get every byte, in order.
                let mut got = Vec::new();
                let mut buf = Vec::with_capacity(7);
                while got.len() < ask.len() {
                    let BufResult(n, b) = stream.read(buf).await;
                    let n = n.expect("read");
                    assert!(n > 0 && n <= 7, "{n}");
                    got.extend_from_slice(&b[..n]);
                    buf = b;
                }
                assert_eq!(got, ask);
                // One write of many buffers, past rustls's 64 KiB default and a record's 16.
                let parts: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 3000])).collect();
                let sent = tls.write(&parts).await.expect("write");
                assert!(sent > 64 * 3000, "{sent} bytes on the wire");
                drop(tls);
                drop(tcp);
                let back = peer.join().expect("client");
                assert_eq!(back, parts.concat());
            });
    }

    #[test]
    fn a_client_that_is_not_tls_fails_the_handshake() {
        let (server, _) = configs();
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let (tcp, peer) = accepted(|addr| {
                    std::thread::spawn(move || {
                        let mut s = StdStream::connect(addr).expect("connect");
                        s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
                        let mut alert = Vec::new();
                        let _ = s.read_to_end(&mut alert);
                        alert
                    })
                })
                .await;
                let e = TlsStream::accept(&tcp, server)
                    .await
                    .err()
                    .expect("refused");
                assert!(matches!(e, HttpConnError::Tls(_)), "{e}");
                drop(tcp);
                // The alert that says why: a TLS record of type 21.
                assert_eq!(peer.join().expect("peer").first(), Some(&21));
            });
    }
}
