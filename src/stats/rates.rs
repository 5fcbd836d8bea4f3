//! Bitrates and CPU use over the last 30 seconds, as SRS's API reports them (`recv_30s`,
//! `send_30s`, `cpu_percent`): a sampler thread records the counters once a second, and
//! readers compare the newest sample with the oldest kept. Nothing here runs per frame.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::clients::ClientRegistry;
use super::system;
use crate::hub::{Hub, StreamKey};

/// The window the rates cover.
pub const WINDOW: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    recv: u64,
    send: u64,
    /// Per stream id: bytes received from its publisher, bytes sent to its players.
    streams: HashMap<u64, (u64, u64)>,
    process_ticks: Option<u64>,
    system_ticks: Option<(u64, u64)>,
}

/// Recent samples.
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

/// Receive and send rates, kbit/s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kbps {
    /// Received.
    pub recv: u64,
    /// Sent.
    pub send: u64,
}

fn kbps(bytes: u64, secs: f64) -> u64 {
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 * 8.0 / 1000.0 / secs).round() as u64
    }
}

impl Rates {
    /// Records the counters now: the server's bytes received and sent so far, and each
    /// stream's from the hub and its players; call about once a second.
    pub fn sample(&self, clients: &ClientRegistry, hub: &Hub, recv: u64, send: u64) {
        let mut sent: HashMap<StreamKey, u64> = HashMap::new();
        for c in clients.all() {
            if !c.kind.is_publish() {
                *sent.entry(c.key.clone()).or_default() += c.send_bytes.load(Ordering::Relaxed);
            }
        }
        let streams = hub
            .sources()
            .iter()
            .map(|s| {
                let recv = s.stats.bytes_in.load(Ordering::Relaxed);
                (s.id(), (recv, sent.get(s.key()).copied().unwrap_or(0)))
            })
            .collect();
        let sample = Sample {
            at: Instant::now(),
            recv,
            send,
            streams,
            process_ticks: system::process_ticks(),
            system_ticks: system::system_ticks(),
        };
        let mut samples = self.samples.lock().expect("rates lock poisoned");
        samples.push_back(sample);
        while samples
            .front()
            .is_some_and(|s| s.at.elapsed() > WINDOW + Duration::from_millis(500))
        {
            samples.pop_front();
        }
    }

    fn span<T>(&self, f: impl FnOnce(&Sample, &Sample, f64) -> T) -> Option<T> {
        let samples = self.samples.lock().expect("rates lock poisoned");
        let (first, last) = (samples.front()?, samples.back()?);
        let secs = (last.at - first.at).as_secs_f64();
        (secs > 0.0).then(|| f(first, last, secs))
    }

    /// The whole server's rates.
    pub fn server(&self) -> Kbps {
        self.span(|a, b, secs| Kbps {
            recv: kbps(b.recv.saturating_sub(a.recv), secs),
            send: kbps(b.send.saturating_sub(a.send), secs),
        })
        .unwrap_or_default()
    }

    /// One stream's rates, since the oldest sample that knew it.
    pub fn stream(&self, id: u64) -> Kbps {
        let samples = self.samples.lock().expect("rates lock poisoned");
        let Some((last, &(r1, s1))) = samples.back().and_then(|b| Some((b, b.streams.get(&id)?)))
        else {
            return Kbps::default();
        };
        let Some((first, &(r0, s0))) = samples.iter().find_map(|a| Some((a, a.streams.get(&id)?)))
        else {
            return Kbps::default();
        };
        let secs = (last.at - first.at).as_secs_f64();
        Kbps {
            recv: kbps(r1.saturating_sub(r0), secs),
            send: kbps(s1.saturating_sub(s0), secs),
        }
    }

    /// CPU use of the process (100 = one core) and of the machine (100 = all cores), percent.
    pub fn cpu_percent(&self) -> (f64, f64) {
        self.span(|a, b, secs| {
            let process = match (a.process_ticks, b.process_ticks) {
                (Some(t0), Some(t1)) => {
                    t1.saturating_sub(t0) as f64 / system::TICKS_PER_SEC / secs * 100.0
                }
                _ => 0.0,
            };
            let machine = match (a.system_ticks, b.system_ticks) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                    b1.saturating_sub(b0) as f64 / (t1 - t0) as f64 * 100.0
                }
                _ => 0.0,
            };
            (process, machine)
        })
        .unwrap_or((0.0, 0.0))
    }
}
