//! The RTC I/O layer: each worker binds its own UDP socket on the rtc port in a SO_REUSEPORT
//! group, so the kernel keeps a peer's packets on one core, and drives that core's
//! [`Engine`](super::engine::Engine). One loop turn hands the datagrams received since the
//! last turn to the engine (at most [`driver::MAX_BATCHES`] × [`BATCH`], so a flood cannot
//! starve the inbox and timers), drains the inbox, feeds it the frames of the RTMP streams
//! its players watch, runs the timers, and sends the datagrams the turn produces with as few
//! sendmmsg calls as fit ([`BATCH`] messages per call, a run of datagrams to one peer as one
//! UDP GSO message), a batch whenever [`FLUSH_AT`](super::engine::FLUSH_AT) are waiting and
//! the rest at the end of the turn (the engine's flush). Every datagram arrives with the
//! address of this host it was sent to (IP_PKTINFO), and every reply leaves from the address
//! its peer sent to, which on a wildcard socket the kernel would not otherwise choose.
//!
//! Receiving differs by driver. On io_uring one multishot recvmsg stays armed on the socket
//! and the kernel fills buffers of the runtime's provided buffer ring ([`BUFFER_POOL`]): a
//! turn takes the completions already reaped, with no system call of its own. On the epoll
//! fallback the socket is nonblocking, the loop waits for readiness and takes datagrams with
//! recvmmsg. Sends are sendmmsg on both: io_uring has no batched send of many messages, and
//! one sendmmsg of 64 GSO messages costs one system call for hundreds of datagrams, where
//! SQEs would cost one kernel operation each.
//!
//! Drop counters: receive drops come from the kernel's SO_RXQ_OVFL count carried with the
//! datagrams, send drops from failed or short sends.
//!
//! Map: [`socket`] (bind, candidates, recvmmsg, sendmmsg), [`cmsg`] (received control data:
//! drops and destinations, sans-IO), [`gso`] (runs and calls, sans-IO), [`driver`] (the two
//! loops). nix and compio wrap the system calls (the pktinfo structures included), so this
//! layer, the only one of rtc that touches sockets, needs no `unsafe` either.

pub mod cmsg;
pub mod driver;
pub mod gso;
pub mod socket;

pub use driver::run;
pub use socket::{bind, candidate_ips, BATCH, BUFFER_POOL};
