//! Heap profiles, in the build with the `jemalloc` feature: jemalloc samples allocations
//! with their stacks (about one per 64 KiB allocated) once profiling is active. It is
//! compiled in and inactive (`malloc_conf` in `main.rs`: `prof:true,prof_active:false`);
//! `--profile=heap`, `GET /api/v1/profile/heap` or the first leak check activates it.
//!
//! Dumps are jemalloc's own heap files, turned into a pprof protobuf and a flamegraph of
//! live bytes by jemalloc_pprof; the leak check compares live bytes per stack between two
//! dumps.

use std::collections::HashMap;

use super::ProfileError;

/// Runs `f` on jemalloc's profiling control, locked for the duration.
fn with_ctl<T>(
    f: impl FnOnce(&mut jemalloc_pprof::JemallocProfCtl) -> Result<T, ProfileError>,
) -> Result<T, ProfileError> {
    let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
        ProfileError::Heap("jemalloc was started without prof:true (malloc_conf)".into())
    })?;
    // Held for one dump at most; the callers are the signal thread and API requests, none
    // of them inside a tokio runtime, where blocking_lock would panic.
    let mut ctl = ctl.blocking_lock();
    f(&mut ctl)
}

fn heap_err(e: impl std::fmt::Display) -> ProfileError {
    ProfileError::Heap(e.to_string())
}

/// Activates sampling (a no-op when active).
pub fn activate() -> Result<(), ProfileError> {
    with_ctl(|ctl| {
        if !ctl.activated() {
            ctl.activate().map_err(heap_err)?;
            tracing::info!("jemalloc heap profiling active");
        }
        Ok(())
    })
}

/// True once sampling is active.
pub fn active() -> bool {
    with_ctl(|ctl| Ok(ctl.activated())).unwrap_or(false)
}

/// The live heap as sampled so far: (flamegraph SVG, gzipped pprof protobuf).
pub fn dump() -> Result<(Vec<u8>, Vec<u8>), ProfileError> {
    with_ctl(|ctl| {
        if !ctl.activated() {
            return Err(ProfileError::Heap("heap profiling is not active".into()));
        }
        let svg = ctl.dump_flamegraph().map_err(heap_err)?;
        let pb_gz = ctl.dump_pprof().map_err(heap_err)?;
        Ok((svg, pb_gz))
    })
}

/// Estimated live bytes per allocation stack (return addresses, outermost first, as
/// jemalloc_pprof parses them).
pub type Stacks = HashMap<Vec<usize>, f64>;

/// Live bytes per stack now, from a fresh dump.
pub fn stacks() -> Result<Stacks, ProfileError> {
    let profile = with_ctl(|ctl| ctl.dump_profile().map_err(heap_err))?;
    let mut out = Stacks::new();
    for (stack, _) in profile.stacks {
        *out.entry(stack.addrs).or_default() += stack.weight;
    }
    Ok(out)
}

/// One stack whose live bytes changed between two dumps.
#[derive(Debug)]
pub struct Growth {
    /// Change of its estimated live bytes.
    pub bytes: i64,
    /// Its frames, innermost first, as function names (or addresses).
    pub frames: Vec<String>,
}

/// The stacks whose live bytes changed by more than `min_bytes` between `before` and
/// `after` (grew only, unless `shrunk_too`), largest change first, at most `limit`.
pub fn growth(
    before: &Stacks,
    after: &Stacks,
    shrunk_too: bool,
    min_bytes: f64,
    limit: usize,
) -> Vec<Growth> {
    let mut changed: Vec<(&Vec<usize>, f64)> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .chain(
            before
                .iter()
                .filter(|(k, _)| !after.contains_key(*k))
                .map(|(k, v)| (k, -v)),
        )
        .filter(|(_, d)| *d > min_bytes || (shrunk_too && *d < -min_bytes))
        .collect();
    changed.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    changed
        .into_iter()
        .filter_map(|(addrs, d)| {
            Some(Growth {
                bytes: d as i64,
                frames: symbolize(addrs)?,
            })
        })
        .take(limit)
        .collect()
}

/// Frames listed per stack, from the allocation outwards.
const MAX_FRAMES: usize = 16;

/// Names the frames of a stack, innermost first, skipping the allocator's own; `None` for
/// the symbolizer's own caches, which this very check fills (tens of MB on the first call)
/// and which are not the server's.
fn symbolize(addrs: &[usize]) -> Option<Vec<String>> {
    let mut frames = Vec::new();
    for &addr in addrs.iter().rev() {
        let mut names = Vec::new();
        // A return address points after the call: step back into it.
        let pc = addr.saturating_sub(1);
        backtrace::resolve(pc as *mut std::ffi::c_void, |sym| {
            names.push(
                sym.name()
                    .map_or_else(|| format!("{addr:#x}"), |n| format!("{n:#}")),
            );
        });
        if names.is_empty() {
            names.push(format!("{addr:#x}"));
        }
        frames.extend(names);
    }
    if frames.iter().any(|f| f.starts_with("backtrace::symbolize")) {
        return None;
    }
    // The allocation's own frames come first: jemalloc's sampler, the global allocator and
    // the standard library's growth paths. The stack's story starts after the last of them.
    let first_own = frames
        .iter()
        .take(32)
        .rposition(|f| is_allocator_frame(f))
        .map_or(0, |i| i + 1);
    Some(
        frames
            .into_iter()
            .skip(first_own)
            .take(MAX_FRAMES)
            .collect(),
    )
}

fn is_allocator_frame(name: &str) -> bool {
    const MARKERS: [&str; 12] = [
        "_rjem_",
        "je_",
        "prof_",
        "imalloc",
        "irallocx",
        "__rust_alloc",
        "__rust_realloc",
        "GlobalAlloc",
        "alloc::alloc::",
        "alloc::raw_vec",
        "profile::alloc",
        "tikv_jemallocator",
    ];
    MARKERS.iter().any(|m| name.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_lists_what_grew_largest_first() {
        let before: Stacks = [(vec![1], 100.0), (vec![2], 1000.0), (vec![3], 50.0)].into();
        let after: Stacks = [(vec![1], 5000.0), (vec![2], 1000.0), (vec![4], 900.0)].into();
        let g = growth(&before, &after, false, 0.0, 10);
        assert_eq!(
            g.iter().map(|g| g.bytes).collect::<Vec<_>>(),
            vec![4900, 900]
        );
        let both = growth(&before, &after, true, 0.0, 10);
        assert_eq!(both.len(), 3, "{both:?}");
    }
}
