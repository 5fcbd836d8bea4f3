//! The little of STUN the server reads itself: the USERNAME of a binding request, which names
//! the pending session a datagram from an unknown address belongs to. str0m checks the
//! message's integrity afterwards; this only routes. Sans-IO and allocation-free.

#![forbid(unsafe_code)]

/// STUN's magic cookie (RFC 5389), at bytes 4..8 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Message type of a binding request.
const BINDING_REQUEST: u16 = 0x0001;
/// Attribute type of USERNAME.
const USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// Whether `datagram` looks like a STUN message (RFC 7983's demultiplexing: first byte 0..=3,
/// and the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] < 4 && datagram[4..8] == MAGIC_COOKIE
}

/// The server's ufrag from a binding request's `USERNAME` (`SERVER_UFRAG:CLIENT_UFRAG`), or
/// `None` for anything else, including truncated or malformed messages.
pub fn binding_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) || u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(HEADER_LEN..HEADER_LEN.checked_add(body_len)?)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (server, _client) = username.split_once(':')?;
            return (!server.is_empty()).then_some(server);
        }
        // Attributes are padded to four bytes.
        let padded = (4 + len + 3) & !3;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn finds_the_server_ufrag() {
        let m = binding(&[(0x0024, &[0, 0, 0, 1]), (USERNAME, b"srv1:cli")]);
        assert!(is_stun(&m));
        assert_eq!(binding_ufrag(&m), Some("srv1"));
        let odd = binding(&[(0x8029, &[1, 2, 3]), (USERNAME, b"abc:x")]);
        assert_eq!(binding_ufrag(&odd), Some("abc"));
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(binding_ufrag(&binding(&[])), None);
        assert_eq!(binding_ufrag(&binding(&[(USERNAME, b"nocolon")])), None);
        assert_eq!(binding_ufrag(&binding(&[(USERNAME, b":cli")])), None);
        assert_eq!(
            binding_ufrag(&binding(&[(USERNAME, &[0xff, b':', 1])])),
            None
        );
        let mut response = binding(&[(USERNAME, b"a:b")]);
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(binding_ufrag(&response), None);
        assert!(!is_stun(&[0x80; 40]), "RTP is not STUN");
        assert!(!is_stun(&[22; 40]), "DTLS is not STUN");
    }

    #[test]
    fn truncated_and_random_input_never_panics() {
        let m = binding(&[(USERNAME, b"server:client")]);
        for cut in 0..m.len() {
            let _ = binding_ufrag(&m[..cut]);
        }
        let mut lying = m.clone();
        lying[2] = 0xff;
        assert_eq!(binding_ufrag(&lying), None);
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut d = m.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (seed >> 8) as usize % d.len();
                d[i] = (seed >> 24) as u8;
            }
            let _ = binding_ufrag(&d);
        }
    }
}
