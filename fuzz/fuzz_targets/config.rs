//! The config parser on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, "fuzz.conf");
    }
});
