//! Statistics that the HTTP API and the periodic log read: the registry of clients
//! ([`clients`]), the 30-second rates ([`rates`]) and readings from /proc ([`system`]). Each
//! is a counter or a snapshot behind a short lock; nothing here runs per frame or blocks a
//! worker, and nothing here knows the drivers that feed it.

#![forbid(unsafe_code)]

pub mod clients;
pub mod rates;
pub mod system;
