//! The chunk reader on arbitrary bytes: the first byte picks the chunk size it starts with
//! (0: the default 128, else N * 64); Set Chunk Size messages in the input are applied as the
//! session would.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::chunk::ChunkReader;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut reader = ChunkReader::new(1 << 20);
    if first != 0 {
        let _ = reader.set_chunk_size(u32::from(first) * 64);
    }
    // Fed in two pieces, so partial chunks are exercised too.
    let (a, b) = rest.split_at(rest.len() / 2);
    let mut buf = BytesMut::new();
    for piece in [a, b] {
        buf.extend_from_slice(piece);
        loop {
            match reader.read_message(&mut buf) {
                Ok(Some(msg)) => {
                    if msg.type_id == 1 && msg.payload.len() >= 4 {
                        let p = &msg.payload;
                        if reader
                            .set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
