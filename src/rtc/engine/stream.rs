//! A WebRTC stream as the cores share it: its key, where its publisher lives, and how many
//! players each core has, so that the publisher's core feeds only the cores with players.
//! Its locks are taken on adoption, join and leave, never per packet or frame: the
//! publisher's core re-reads the counts only when [`RtcStream::version`] moves. A stream
//! outlives its publisher while it has players, and players may make one before any
//! publisher: the next WHIP publish of its key takes it over, and its players go on with (or
//! start on) the new publisher's media, as SRS's players do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::hub::StreamKey;

/// A WebRTC stream: one publisher, players on any core.
#[derive(Debug)]
pub struct RtcStream {
    id: u64,
    key: StreamKey,
    /// `(core, session)` of the publisher once a core adopted it.
    publisher: Mutex<Option<(usize, u64)>>,
    /// Players per core, indexed by core.
    players: Mutex<Vec<usize>>,
    /// Bumped whenever `players` changes, so the publisher's core re-reads it only then.
    version: AtomicU64,
    /// Whether a WHIP publisher holds the stream, from its offer to its end. Changed only
    /// under the hub's stream registry lock, so a stream left to its players is taken over by
    /// one next publisher, or dropped by its last player, never both.
    claimed: AtomicBool,
}

impl RtcStream {
    /// A stream `key` with id `id`, no publisher and no players.
    pub(super) fn new(id: u64, key: StreamKey) -> Self {
        Self {
            id,
            key,
            publisher: Mutex::new(None),
            players: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
        }
    }

    /// The stream's id, unique in this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream's key.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The version of the per-core player counts.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The cores with players, other than `except`.
    pub fn player_cores(&self, except: usize) -> Vec<usize> {
        let players = self.players.lock().expect("rtc stream lock poisoned");
        (0..players.len())
            .filter(|&c| c != except && players[c] > 0)
            .collect()
    }

    /// Players on all cores.
    pub fn player_count(&self) -> usize {
        self.players
            .lock()
            .expect("rtc stream lock poisoned")
            .iter()
            .sum()
    }

    pub(super) fn claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    pub(super) fn set_claimed(&self, claimed: bool) {
        self.claimed.store(claimed, Ordering::Release);
    }

    /// Counts a player joining (`+1`) or leaving (`-1`) on `core`.
    pub fn add_player(&self, core: usize, delta: isize) {
        let mut players = self.players.lock().expect("rtc stream lock poisoned");
        if players.len() <= core {
            players.resize(core + 1, 0);
        }
        players[core] = players[core].saturating_add_signed(delta);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The publisher's `(core, session)`, once adopted.
    pub fn publisher(&self) -> Option<(usize, u64)> {
        *self.publisher.lock().expect("rtc stream lock poisoned")
    }

    pub(crate) fn set_publisher(&self, at: Option<(usize, u64)>) {
        *self.publisher.lock().expect("rtc stream lock poisoned") = at;
    }
}
