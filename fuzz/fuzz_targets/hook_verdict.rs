//! SRS's verdict on a hook's answer, from arbitrary bytes: the first two are the status, the
//! rest the body. It must allow only what SRS allows (status 200 or 201), never panic, and
//! keep what a denial quotes (and so logs) short however large the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::hooks::verdict::verdict;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*status);
    match verdict(status, body) {
        Ok(()) => assert!(status == 200 || status == 201),
        Err(deny) => assert!(deny.to_string().len() < 1024),
    }
});
