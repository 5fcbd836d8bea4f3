//! A small HTTP/1.1 client for the server's own outgoing calls (SRS's HTTP hooks, queries to
//! other servers' APIs): [`post_json`], [`get`] and [`request`] on the calling worker's
//! compio runtime, with a deadline per call, kept-alive connections pooled per worker and
//! `host:port`, and no redirects followed. `http://` only.
//!
//! - [`response`]: the response parser, sans-IO (bytes in, one [`Response`] out, with
//!   limits); fuzzed.
//! - [`url`]: `http://` URLs.
//! - [`client`]: the driver: connect, send, read, pool.
//!
//! It knows no caller: what a body means and what an answer decides belong to them. It
//! imports nothing of the server above [`crate::runtime`].

#![forbid(unsafe_code)]

pub mod client;
pub mod response;
pub mod url;

pub use client::{get, post_json, request, HttpcError, Method};
pub use response::{Limits, Response, ResponseError, ResponseParser};
pub use url::{Url, UrlError};
