//! The access parsers on arbitrary text: an `Authorization` header must parse or be refused
//! (and a long one refused as too long), a check against credentials must answer, and a
//! `security` rule's words must parse or be refused; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::access::basic::{parse, AuthError, Credentials, MAX_HEADER};
use ringcast::access::security::Rule;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(Some(&text)) {
        Ok(sent) => assert!(sent.user.len() + sent.password.len() < text.len()),
        Err(AuthError::TooLong(n)) => assert!(n > MAX_HEADER),
        Err(_) => {}
    }
    let creds = Credentials::new("admin", "s3cret");
    let _ = creds.verify(Some(&text));
    let (action, address) = text.split_once(' ').unwrap_or((&text, ""));
    let _ = Rule::parse(data.first().is_some_and(|b| b & 1 == 1), action, address);
});
