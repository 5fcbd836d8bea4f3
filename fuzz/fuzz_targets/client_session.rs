//! ringcast's RTMP client session (the edge's pull, the forward, the load tool) on bytes from
//! a server nobody here controls. The first byte picks the case: bit 0 clear, the bytes come
//! after a valid handshake (the S0+S1+S2 of ringcast's own server session); set, they are the
//! server's whole answer, handshake included. Bit 1 picks play (clear) or publish (set); a
//! publisher sends media once the server lets it. A redirect's URL goes through
//! `Redirect::server`, which an edge follows, and whatever it names must be a `host:port`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use ringcast::rtmp::client::{ClientEvent, ClientSession};
use ringcast::rtmp::session::{ServerSession, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let url = "rtmp://127.0.0.1:1935/live?vhost=v";
    let rng = &mut StdRng::seed_from_u64(1);
    let mut client = if mode & 2 == 0 {
        ClientSession::play(url, "s?token=t", rng)
    } else {
        ClientSession::publish(url, "s", 4096, rng)
    };
    if mode & 1 == 0 {
        let mut server =
            ServerSession::new(SessionConfig::default(), &mut StdRng::seed_from_u64(2));
        while let Some(b) = client.poll_transmit() {
            server
                .handle_input(&b)
                .expect("the client's C0+C1 is valid");
        }
        while let Some(b) = server.poll_transmit() {
            client
                .handle_input(&b)
                .expect("the server's S0+S1+S2 is valid");
        }
    }
    for piece in data.chunks(997) {
        if client.handle_input(piece).is_err() {
            return;
        }
        while let Some(e) = client.poll_event() {
            match e {
                ClientEvent::Publishing => {
                    client.send_media(9, 40, &[0x17, 1, 0, 0, 0, 1, 2, 3]);
                    client.send_media(18, 0, &[2, 0, 10]);
                }
                ClientEvent::Redirected(to) => {
                    if let Some(server) = to.server() {
                        let (host, port) = server.rsplit_once(':').expect("host:port");
                        assert!(!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
                    }
                }
                _ => {}
            }
        }
        while client.poll_transmit().is_some() {}
    }
});
