//! Bytes that many connections send without a copy: a sealed memfd, written once, sent with
//! `sendfile(2)`. An HLS segment goes to every player of its stream; a `writev` of the shared
//! `Bytes` made the kernel copy the whole segment into each socket (23% of the server's CPU
//! at 5000 players in `_copy_from_iter`), where `sendfile` from a memfd hands the socket
//! references to the file's pages, as nginx does from the page cache.
//!
//! The seals make the file immutable, so a page a socket still references is never changed
//! under it; the file closes with its last [`SealedFile`] owner, and the kernel keeps the
//! pages that queued sends still reference until those are done. The same immutability makes
//! a read-only map of the file safe to hand out as `Bytes` ([`SealedFile::map`]), so what a
//! TLS connection encrypts comes from the same pages, and the bytes are not held twice.

use bytes::Bytes;
use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use compio::net::TcpStream;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::libc;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::socket::MsgFlags;

const NAME: &CStr = c"ringcast-sealed";

/// An immutable in-memory file of bytes.
#[derive(Debug)]
pub struct SealedFile {
    fd: OwnedFd,
    len: usize,
}

impl SealedFile {
    /// A sealed file holding `data`: one copy, once.
    pub fn new(data: &[u8]) -> io::Result<Self> {
        let fd = memfd_create(
            NAME,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(data)?;
        let fd = OwnedFd::from(file);
        let seals = SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SEAL;
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
        Ok(Self {
            fd,
            len: data.len(),
        })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's bytes, mapped read-only: the pages `sendfile` sends, not a copy. The map
    /// lives as long as the last `Bytes` of it, after the file is closed, and is read in only
    /// where a reader touches it (a plain connection's `sendfile` never does).
    pub fn map(&self) -> io::Result<Bytes> {
        if self.len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: `new` sealed the file against writes, shrinking and growing before any map
        // of it exists, and a seal cannot be removed: no one, in this process or another that
        // holds the fd, can change or truncate the mapped pages, so the `&[u8]` the map gives
        // stays valid and unchanged for the map's whole life.
        let map = unsafe { memmap2::Mmap::map(&self.fd)? };
        Ok(Bytes::from_owner(map))
    }

    /// Writes `head`, then the whole file, to `stream`, which must be non-blocking (see
    /// [`set_nonblocking`]): a `send` of the head with `MSG_MORE`, so that it leaves in the
    /// file's first packet, and `sendfile` until the file is sent, waiting for the socket to
    /// drain whenever its buffer is full.
    pub async fn send(&self, stream: &TcpStream, head: &[u8]) -> io::Result<()> {
        let sock = stream.as_fd();
        let mut head_sent = 0;
        let mut offset: i64 = 0;
        let mut ready = None;
        loop {
            let sent = if head_sent < head.len() {
                let flags = MsgFlags::from_bits_retain(libc::MSG_MORE)
                    | MsgFlags::MSG_DONTWAIT
                    | MsgFlags::MSG_NOSIGNAL;
                nix::sys::socket::send(sock.as_raw_fd(), &head[head_sent..], flags)
                    .map(|n| head_sent += n)
            } else if (offset as usize) < self.len {
                // A peer that has gone raises SIGPIPE here (sendfile takes no MSG_NOSIGNAL);
                // Rust's runtime ignores SIGPIPE, so it is the EPIPE below.
                let left = self.len - offset as usize;
                match nix::sys::sendfile::sendfile(sock, &self.fd, Some(&mut offset), left) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    r => r.map(drop),
                }
            } else {
                return Ok(());
            };
            match sent {
                Ok(()) | Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let ready = match &mut ready {
                        Some(r) => r,
                        None => ready.insert(stream.to_poll_fd()?),
                    };
                    ready.write_ready().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Makes `stream` non-blocking, for [`SealedFile::send`]. The epoll driver's sockets are
/// already; io_uring's socket requests arm a poll whatever the flag, so it changes nothing
/// for them.
pub fn set_nonblocking(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_nonblocking(true)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_sealed_file_cannot_change_and_goes_whole_after_its_head() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = SealedFile::new(&data).expect("memfd");
        assert_eq!(file.len(), data.len());
        let mut writer = std::fs::File::from(file.fd.try_clone().expect("dup"));
        assert!(writer.write_all(b"x").is_err(), "sealed against writes");

        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = l.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (mut peer, _) = l.accept().expect("accept");
            // Read slowly at first, so that the sender finds the socket full and waits.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("read");
            got
        });
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let stream = TcpStream::connect(addr).await.expect("connect");
                set_nonblocking(&stream).expect("non-blocking");
                file.send(&stream, b"HEAD\r\n\r\n").await.expect("send");
                file.send(&stream, b"").await.expect("send again");
            });
        let got = reader.join().expect("reader");
        assert_eq!(&got[..8], b"HEAD\r\n\r\n");
        assert_eq!(&got[8..8 + data.len()], &data[..]);
        assert_eq!(&got[8 + data.len()..], &data[..]);
    }

    #[test]
    fn a_map_holds_the_same_bytes_after_the_file_is_closed() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = SealedFile::new(&data).expect("memfd");
        let map = file.map().expect("map");
        drop(file);
        assert_eq!(&map[..], &data[..]);
        assert_eq!(&map.slice(4096..4100)[..], &data[4096..4100]);
        assert!(SealedFile::new(b"")
            .expect("memfd")
            .map()
            .expect("map")
            .is_empty());
    }
}
