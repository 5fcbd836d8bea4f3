//! The server handshake on arbitrary bytes, fed in two pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use ringcast::rtmp::handshake::ServerHandshake;

fuzz_target!(|data: &[u8]| {
    let mut hs = ServerHandshake::new(&mut StdRng::seed_from_u64(0));
    let (a, b) = data.split_at(data.len() / 2);
    let Ok(n) = hs.handle_input(a) else {
        return;
    };
    let _ = hs.poll_output();
    let mut rest = a[n..].to_vec();
    rest.extend_from_slice(b);
    let _ = hs.handle_input(&rest);
    let _ = hs.poll_output();
});
