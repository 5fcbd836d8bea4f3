//! A whole server session (handshake, chunks, control, commands) on arbitrary bytes after a
//! valid simple C0+C1+C2, accepting whatever publish or play it asks for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use ringcast::rtmp::session::{Event, ServerSession, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let mut s = ServerSession::new(SessionConfig::default(), &mut StdRng::seed_from_u64(0));
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[0u8; 1536 * 2]);
    if s.handle_input(&hello).is_err() {
        return;
    }
    for piece in data.chunks(997) {
        if s.handle_input(piece).is_err() {
            return;
        }
        while let Some(e) = s.poll_event() {
            match e {
                Event::Publish { .. } => s.accept_publish(),
                Event::Play { .. } => s.accept_play(),
                _ => {}
            }
        }
        while s.poll_transmit().is_some() {}
    }
});
