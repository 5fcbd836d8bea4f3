//! Control messages of received datagrams, sans-IO: the kernel's SO_RXQ_OVFL drop count, read
//! from the `msg_control` bytes a multishot recvmsg writes into its ring buffer (recvmmsg's
//! come parsed by nix). It reads bytes, never a socket.

#![forbid(unsafe_code)]

use std::mem::{offset_of, size_of};

/// Control data room for SO_RXQ_OVFL's one u32 (`CMSG_SPACE(4)` on 64-bit Linux).
pub const CONTROL_LEN: usize = 24;

/// The SO_RXQ_OVFL drop count in a datagram's control data, if the kernel put one there
/// (`control` is the `msg_control` bytes as recvmsg filled them).
pub fn rxq_ovfl(control: &[u8]) -> Option<u64> {
    const WORD: usize = size_of::<usize>();
    let header = size_of::<nix::libc::cmsghdr>().next_multiple_of(WORD);
    let field = |b: &[u8], at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut rest = control;
    let mut found = None;
    while rest.len() >= header {
        let len = usize::from_ne_bytes(rest[..WORD].try_into().ok()?);
        if len < header || len > rest.len() {
            break;
        }
        let level = field(rest, offset_of!(nix::libc::cmsghdr, cmsg_level))?;
        let kind = field(rest, offset_of!(nix::libc::cmsghdr, cmsg_type))?;
        if level == nix::libc::SOL_SOCKET && kind == nix::libc::SO_RXQ_OVFL {
            let n = rest.get(header..header + 4)?;
            found = Some(u64::from(u32::from_ne_bytes(n.try_into().ok()?)));
        }
        rest = rest.get(len.next_multiple_of(WORD)..).unwrap_or(&[]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rxq_ovfl_reads_the_drop_count_among_control_messages() {
        let word = std::mem::size_of::<usize>();
        let cmsg = |level: i32, kind: i32, data: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(16 + data.len()).to_ne_bytes());
            b.extend_from_slice(&level.to_ne_bytes());
            b.extend_from_slice(&kind.to_ne_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(word), 0);
            b
        };
        use nix::libc::{SOL_SOCKET, SO_RXQ_OVFL, SO_TIMESTAMP};
        let mut control = cmsg(SOL_SOCKET, SO_TIMESTAMP, &[0; 16]);
        control.extend(cmsg(SOL_SOCKET, SO_RXQ_OVFL, &7u32.to_ne_bytes()));
        assert_eq!(rxq_ovfl(&control), Some(7));
        assert_eq!(rxq_ovfl(&control[..16]), None, "cut before the count");
        assert_eq!(rxq_ovfl(&[]), None);
        let mut bogus = control.clone();
        bogus[..word].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(
            rxq_ovfl(&bogus),
            None,
            "a length shorter than a header stops the walk"
        );
        bogus[..word].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(
            rxq_ovfl(&bogus),
            None,
            "a length past the end stops the walk"
        );
    }
}
