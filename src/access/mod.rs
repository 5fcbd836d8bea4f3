//! Who may publish, play and administer, as pure decisions: [`security`] holds a vhost's
//! `security {}` rules in their typed form and evaluates them as SRS does, [`basic`] parses an
//! HTTP `Authorization: Basic` header and checks it against the API's credentials in
//! constant time. Nothing here reads a socket, a clock or the configuration file: the config
//! builds the rules, the drivers (`server/`, `http/`) ask and act on the answer.

#![forbid(unsafe_code)]

pub mod basic;
pub mod security;
