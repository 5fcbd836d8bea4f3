//! UDP GSO planning, sans-IO: a turn's datagrams grouped into runs on one path (one
//! destination, from one source address) that the kernel can split (one message, one segment
//! size), and runs grouped into sendmmsg calls that share one segment size. It only decides;
//! [`super::socket::Sender`] makes the calls, and splits them where the source changes.

#![forbid(unsafe_code)]

/// Most datagrams the kernel splits one UDP GSO message into (`UDP_MAX_SEGMENTS` is 64 on
/// older kernels).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes in one UDP GSO message (an IP packet's limit, less headers).
pub const MAX_GSO_BYTES: usize = 65_000;

/// One message of a send batch: datagrams `start..end` of the turn, all on one path;
/// with more than one, every datagram but the last is `segment` bytes and the last no more,
/// so the kernel can split the message (UDP GSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First datagram.
    pub start: usize,
    /// One past the last datagram.
    pub end: usize,
    /// Size of each datagram but the last.
    pub segment: usize,
}

impl Run {
    /// Datagrams in the run.
    pub fn datagrams(&self) -> usize {
        self.end - self.start
    }
}

/// Splits a turn's datagrams, `(path, length)` in order, into GSO runs; `path` is what one
/// message must share: the destination and the source address it is sent from.
pub fn gso_runs<P: PartialEq>(datagrams: &[(P, usize)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, (path, len)) in datagrams.iter().enumerate() {
        let len = *len;
        if let Some(run) = runs.last_mut() {
            let n = run.datagrams();
            let last_len = datagrams[run.end - 1].1;
            let joins = datagrams[run.start].0 == *path
                // Every datagram before this one must be a full segment...
                && last_len == run.segment
                // ...and this one no longer than a segment.
                && len <= run.segment
                && n < MAX_GSO_SEGMENTS
                && (n + 1) * run.segment <= MAX_GSO_BYTES;
            if joins {
                run.end = i + 1;
                continue;
            }
        }
        runs.push(Run {
            start: i,
            end: i + 1,
            segment: len,
        });
    }
    runs
}

/// Datagrams `range` of `datagrams`, each a message of its own (no GSO).
pub fn single_runs<P>(datagrams: &[(P, usize)], range: std::ops::Range<usize>) -> Vec<Run> {
    range
        .map(|i| Run {
            start: i,
            end: i + 1,
            segment: datagrams[i].1,
        })
        .collect()
}

/// How many of `runs` (at most `max`) one sendmmsg call takes from the front, and the segment
/// size the call sets, if any: one UDP_SEGMENT applies to a whole call, so its runs of several
/// datagrams share one segment size and its single datagrams are no longer than it. Takes at
/// least one run when there is one.
pub fn plan_call(runs: &[Run], max: usize) -> (usize, Option<usize>) {
    let mut segment: Option<usize> = None;
    let mut longest_single = 0;
    let mut taken = 0;
    for r in runs.iter().take(max) {
        let fits = if r.datagrams() > 1 {
            match segment {
                None => longest_single <= r.segment,
                Some(s) => s == r.segment,
            }
        } else {
            segment.is_none_or(|s| r.segment <= s)
        };
        if !fits {
            break;
        }
        if r.datagrams() > 1 {
            segment = Some(r.segment);
        } else {
            longest_single = longest_single.max(r.segment);
        }
        taken += 1;
    }
    (taken, segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, SocketAddr};

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn runs_group_full_segments_to_one_peer() {
        let d = [
            (a(1), 1200),
            (a(1), 1200),
            (a(1), 700),
            (a(1), 1200),
            (a(2), 1200),
            (a(2), 1200),
            (a(2), 90),
            (a(1), 100),
        ];
        let runs = gso_runs(&d);
        let spans: Vec<(usize, usize, usize)> =
            runs.iter().map(|r| (r.start, r.end, r.segment)).collect();
        assert_eq!(
            spans,
            [(0, 3, 1200), (3, 4, 1200), (4, 7, 1200), (7, 8, 100)],
            "a short datagram ends its run; a peer change starts one"
        );
        let growing = [(a(1), 100), (a(1), 1200)];
        assert_eq!(
            gso_runs(&growing).len(),
            2,
            "a longer datagram cannot follow"
        );
        let many = vec![(a(1), 1000); 100];
        let runs = gso_runs(&many);
        assert!(runs
            .iter()
            .all(|r| r.datagrams() * 1000 <= MAX_GSO_BYTES && r.datagrams() <= 64));
        assert_eq!(runs.iter().map(Run::datagrams).sum::<usize>(), 100);
        assert!(gso_runs::<SocketAddr>(&[]).is_empty());
        let from = |ip: &str| ip.parse::<IpAddr>().unwrap();
        let paths = [
            ((a(1), from("192.0.2.10")), 1200),
            ((a(1), from("192.0.2.10")), 1200),
            ((a(1), from("127.0.0.1")), 1200),
        ];
        assert_eq!(
            gso_runs(&paths).len(),
            2,
            "one message is sent from one source address"
        );
    }

    #[test]
    fn a_call_shares_one_segment_size() {
        let run = |start, end, segment| Run {
            start,
            end,
            segment,
        };
        // Singles no longer than the segment ride with the runs; a second size ends the call.
        let runs = [
            run(0, 1, 300),
            run(1, 4, 1200),
            run(4, 5, 1200),
            run(5, 7, 1200),
            run(7, 9, 1000),
        ];
        assert_eq!(plan_call(&runs, 64), (4, Some(1200)));
        assert_eq!(plan_call(&runs[4..], 64), (1, Some(1000)));
        // A single longer than the segment cannot follow it, nor a run precede it.
        assert_eq!(
            plan_call(&[run(0, 2, 500), run(2, 3, 600)], 64),
            (1, Some(500))
        );
        assert_eq!(plan_call(&[run(0, 1, 600), run(1, 3, 500)], 64), (1, None));
        let singles = single_runs(&[(a(1), 10), (a(1), 20), (a(1), 30)], 0..3);
        assert_eq!(plan_call(&singles, 2), (2, None), "at most max per call");
        assert_eq!(plan_call(&[], 64), (0, None));
    }
}
