//! A player's own vectored write, for RTMP and HTTP-FLV players alike: what a player writes
//! while it is out of its cohort (its start, a catch-up, its control replies), bounded by
//! queue_length, and counted where the API and the logs read it.
//!
//! It owns no socket and no session: the player's task hands it the socket for one write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use compio::buf::BufResult;
use compio::io::AsyncWriteExt;
use compio::net::TcpStream;

use crate::stats::clients::Client;

/// Frames one batch takes at most; each costs at most three iovecs in a player's own
/// vectored write, under IOV_MAX.
pub(crate) const MAX_BATCH: usize = 256;
/// iovecs a player keeps room for between writes.
const IOV_KEEP: usize = 16;

/// The server-wide counters that the writers add to (the state that holds them is above
/// egress, which does not see it).
pub(crate) trait Counters: std::fmt::Debug {
    /// Bytes sent to players.
    fn bytes_out(&self) -> &AtomicU64;
    /// Players cut because they stopped reading for queue_length.
    fn players_cut(&self) -> &AtomicU64;
}

/// Why a player's batch did not go out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The write took no data for queue_length.
    #[error("player stopped reading for {0:?} (queue_length): cut")]
    Stalled(Duration),
}

/// Writes a player's batch (RTMP or HTTP-FLV) in one vectored write, counts it, and hands
/// the vector back emptied. A write that cannot complete within `stall` (queue_length) means
/// the player stopped reading: it never comes back to `next_batch`, where a slow player skips
/// to a keyframe, so without this bound it would hold its slot and socket forever.
pub(crate) async fn write_batch(
    mut stream: &TcpStream,
    iov: Vec<Bytes>,
    counters: &dyn Counters,
    client: &Client,
    stall: Duration,
) -> Result<Vec<Bytes>, BatchError> {
    let len: usize = iov.iter().map(Bytes::len).sum();
    let Ok(BufResult(r, mut iov)) =
        compio::time::timeout(stall, stream.write_vectored_all(iov)).await
    else {
        counters.players_cut().fetch_add(1, Ordering::Relaxed);
        return Err(BatchError::Stalled(stall));
    };
    r?;
    iov.clear();
    // A GOP-cache burst needs hundreds of iovecs once; a live player needs a few per turn.
    // Keeping the burst's capacity would cost every player kilobytes for life.
    iov.shrink_to(IOV_KEEP);
    counters
        .bytes_out()
        .fetch_add(len as u64, Ordering::Relaxed);
    client.send_bytes.fetch_add(len as u64, Ordering::Relaxed);
    Ok(iov)
}
