//! A TCP connection as the RTMP drivers and the load clients use it: the socket and its read
//! buffer. Every read of theirs goes through [`Connection::read_some`], the one read loop
//! body; a connection's reader and writer tasks share it by reference (a player's reader
//! waits for the peer while its writer sends).
//!
//! It knows no protocol: what it reads goes to a session, what it writes comes from one.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Deref;
use std::time::{Duration, Instant};

use compio::buf::{BufResult, IoBuf};
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use compio::time::Elapsed;

/// A socket and the buffer its reads fill.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Empty while a read has it.
    buf: RefCell<Vec<u8>>,
    /// The most one read takes.
    size: Cell<usize>,
}

/// The bytes of one read, lent from the connection's buffer until dropped; empty when the
/// peer closed the connection.
#[derive(Debug)]
pub struct Input<'a> {
    conn: &'a Connection,
    buf: Vec<u8>,
}

impl Deref for Input<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Input<'_> {
    fn drop(&mut self) {
        *self.conn.buf.borrow_mut() = std::mem::take(&mut self.buf);
    }
}

impl Connection {
    /// `stream`, read `read_buffer` bytes at a time at most.
    pub fn new(stream: TcpStream, read_buffer: usize) -> Self {
        Self {
            stream,
            buf: RefCell::new(Vec::with_capacity(read_buffer)),
            size: Cell::new(read_buffer),
        }
    }

    /// Connects to `addr` within `timeout`, with Nagle's algorithm off: these connections
    /// carry media, whose writes must not wait for the peer's acknowledgements.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        read_buffer: usize,
    ) -> Result<io::Result<Self>, Elapsed> {
        let stream = match compio::time::timeout(timeout, TcpStream::connect(addr)).await? {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let _ = stream.set_nodelay(true);
        Ok(Ok(Self::new(stream, read_buffer)))
    }

    /// The socket, for writes that take it whole (a player's batch, the send ring's fd).
    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads `size` bytes at a time at most from now on. What a connection keeps for life
    /// differs by phase: a player's reads are tiny, a publisher's take whole chunks.
    pub fn set_read_buffer(&self, size: usize) {
        self.size.set(size);
        *self.buf.borrow_mut() = Vec::with_capacity(size);
    }

    /// Reads what the socket has, up to the buffer's size.
    pub async fn read_some(&self) -> io::Result<Input<'_>> {
        let mut buf = std::mem::take(&mut *self.buf.borrow_mut());
        if buf.capacity() == 0 {
            // A read that was cancelled (a timeout, a select) kept the buffer.
            buf.reserve_exact(self.size.get());
        }
        buf.clear();
        let BufResult(r, buf) = (&self.stream).read(buf).await;
        let input = Input { conn: self, buf };
        let n = r?;
        debug_assert_eq!(input.len(), n, "a read sets the buffer's length");
        Ok(input)
    }

    /// [`Connection::read_some`], unless `deadline` passes first. A read cut short may still
    /// have taken bytes from the socket (io_uring completes it into the buffer it was given),
    /// so the connection is no use after a timeout: close it.
    pub async fn read_some_by(&self, deadline: Instant) -> Result<io::Result<Input<'_>>, Elapsed> {
        compio::time::timeout_at(deadline, self.read_some()).await
    }

    /// Hands each read to `input` until the peer closes the connection (`Ok`) or a read or
    /// `input` fails: the reader of a connection whose replies another task writes.
    pub async fn read_each<E: From<io::Error>>(
        &self,
        mut input: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let bytes = self.read_some().await?;
            if bytes.is_empty() {
                return Ok(());
            }
            input(&bytes)?;
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> io::Result<()> {
        (&self.stream).write_all(buf).await.0
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A connection and the peer's end, a blocking std socket.
    async fn pair(read_buffer: usize) -> (Connection, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = l.local_addr().expect("addr").to_string();
        let conn = Connection::connect(&addr, Duration::from_secs(5), read_buffer)
            .await
            .expect("in time")
            .expect("connect");
        let (peer, _) = l.accept().expect("accept");
        (conn, peer)
    }

    #[test]
    fn reads_take_at_most_the_buffer_and_an_empty_one_is_the_close() {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let (conn, mut peer) = pair(4).await;
                peer.write_all(b"hello").expect("write");
                assert_eq!(&*conn.read_some().await.expect("read"), b"hell");
                assert_eq!(&*conn.read_some().await.expect("read"), b"o");

                conn.set_read_buffer(16);
                conn.write_all(b"ping".to_vec()).await.expect("write");
                // Read, so that the peer's close is a FIN and not a reset.
                let mut ping = [0; 4];
                peer.read_exact(&mut ping).expect("read");
                assert_eq!(&ping, b"ping");
                peer.write_all(b"world").expect("write");
                drop(peer);
                let mut rest = Vec::new();
                conn.read_each(|b| {
                    rest.extend_from_slice(b);
                    Ok::<_, io::Error>(())
                })
                .await
                .expect("read until the close");
                assert_eq!(rest, b"world");
            });
    }

    #[test]
    fn a_read_past_its_deadline_is_a_timeout() {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let (conn, _peer) = pair(4).await;
                let soon = Instant::now() + Duration::from_millis(10);
                assert!(conn.read_some_by(soon).await.is_err(), "nothing was sent");
            });
    }
}
