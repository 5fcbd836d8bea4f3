//! `/api/v1/valgrind?check=full|added|changed|new|quick`: SRS's incremental leak check.
//! SRS answers `{"code":0,"data":{"check":..,"help":..,"see":..,"call":..}}` and, when built
//! for valgrind, has memcheck run the check in the background. ringcast answers the same
//! fields and adds, inline, what it can tell without valgrind: live heap bytes and blocks
//! and their change since the previous check (the [`super::alloc`] counters), the live
//! sessions, sources, players and queued messages, and with jemalloc the allocation stacks
//! whose live bytes changed. Under valgrind it also makes the client request, on a thread of
//! its own so that the API does not wait for memcheck.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::alloc::{self, Live};
use super::valgrind::{self, LeakCheck};
use crate::state::Shared;

/// What the previous check saw.
struct Baseline {
    at: Instant,
    live: Option<Live>,
    #[cfg(feature = "jemalloc")]
    stacks: Option<super::heap::Stacks>,
}

static PREVIOUS: Mutex<Option<Baseline>> = Mutex::new(None);

/// Stacks listed at most, largest change first.
#[cfg(feature = "jemalloc")]
const MAX_STACKS: usize = 20;

/// The live objects of the server: what should return to zero when every client is gone
/// (but for the connection of the request that asks).
pub fn objects(shared: &Shared) -> Value {
    let sources = shared.hub.sources();
    let players: usize = sources
        .iter()
        .map(|s| s.stats.consumers.load(Ordering::Relaxed))
        .sum();
    let queued: usize = sources.iter().map(|s| s.queued_frames()).sum();
    json!({
        // Every open connection, the API request asking included.
        "connections": shared.stats.connections.load(Ordering::Relaxed),
        // Publishing and playing clients.
        "sessions": shared.clients.all().len(),
        "sources": sources.len(),
        "players": players,
        "queued_messages": queued,
    })
}

/// Runs one check and returns SRS's `data` object with ringcast's additions.
pub fn check(kind: LeakCheck, shared: &Arc<Shared>) -> Value {
    let on_valgrind = valgrind::running_on_valgrind();
    if on_valgrind {
        std::thread::Builder::new()
            .name("ringcast-vgleak".into())
            .spawn(move || valgrind::leak_check(kind))
            .map_err(|e| tracing::warn!("leak check thread: {e}"))
            .ok();
    }
    let mut previous = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
    let now = Baseline {
        at: Instant::now(),
        live: alloc::live(),
        #[cfg(feature = "jemalloc")]
        stacks: None,
    };
    let heap = match (now.live, previous.as_ref()) {
        (None, _) => json!({ "counted": false }),
        (Some(live), prev) => {
            let before = prev.and_then(|p| p.live);
            json!({
                "counted": true,
                "live_bytes": live.bytes,
                "live_blocks": live.blocks,
                "delta_bytes": before.map_or(0, |b| live.bytes - b.bytes),
                "delta_blocks": before.map_or(0, |b| live.blocks - b.blocks),
                "since_ms": prev.map_or(0, |p| now.at.duration_since(p.at).as_millis() as u64),
                "baseline": before.is_none(),
            })
        }
    };
    let mut data = json!({
        "check": kind.name(),
        "help": "?check=full|added|changed|new|quick",
        "see": "https://valgrind.org/docs/manual/mc-manual.html",
        "call": kind.call(),
        "valgrind": on_valgrind,
        "heap": heap,
        "objects": objects(shared),
    });
    #[cfg(feature = "jemalloc")]
    let now = with_stacks(kind, now, previous.as_ref(), &mut data);
    *previous = Some(now);
    if !on_valgrind && alloc::live().is_none() {
        data["note"] = "built without the alloc-count feature: no heap counts".into();
    }
    data
}

/// Adds the stacks whose live bytes changed since the previous check (`quick`: none;
/// `full`: the largest live stacks), activating jemalloc's sampling on the first check.
#[cfg(feature = "jemalloc")]
fn with_stacks(
    kind: LeakCheck,
    mut now: Baseline,
    previous: Option<&Baseline>,
    data: &mut Value,
) -> Baseline {
    use super::heap;
    if kind == LeakCheck::Quick {
        now.stacks = previous.and_then(|p| p.stacks.clone());
        return now;
    }
    let was_active = heap::active();
    let stacks = heap::activate().and_then(|()| heap::stacks());
    match stacks {
        Ok(stacks) => {
            let empty = heap::Stacks::new();
            let before = match (kind, previous.and_then(|p| p.stacks.as_ref())) {
                (LeakCheck::Full, _) | (_, None) => &empty,
                (_, Some(b)) => b,
            };
            let growth = heap::growth(before, &stacks, kind == LeakCheck::Changed, 0.0, MAX_STACKS);
            data["stacks"] = growth
                .into_iter()
                .map(|g| json!({ "bytes": g.bytes, "frames": g.frames }))
                .collect();
            if !was_active {
                data["stacks_note"] =
                    "heap sampling was off until now: the next check lists what grows".into();
            }
            now.stacks = Some(stacks);
        }
        Err(e) => data["stacks_error"] = e.to_string().into(),
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_srs_shape_with_counts_of_live_objects() {
        let shared = Shared::new(crate::config::Config::default());
        let first = check(LeakCheck::parse("added"), &shared);
        assert_eq!(first["check"], "added");
        assert_eq!(first["call"], "VALGRIND_DO_ADDED_LEAK_CHECK");
        assert_eq!(first["help"], "?check=full|added|changed|new|quick");
        assert_eq!(first["valgrind"], false);
        assert_eq!(
            first["objects"],
            json!({"connections": 0, "sessions": 0, "sources": 0, "players": 0, "queued_messages": 0})
        );
        // The test binary's allocator is not wrapped: no counts, and it says so.
        assert_eq!(first["heap"]["counted"], false);
        assert!(first["note"].is_string());
        let second = check(LeakCheck::parse("whatever"), &shared);
        assert_eq!(second["check"], "full");
    }
}
