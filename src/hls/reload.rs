//! LL-HLS delivery directives, sans-IO: the `_HLS_msn` / `_HLS_part` query of a blocking
//! playlist reload ([`parse`]), the `_HLS_skip` of a delta update ([`wants_skip`]), and the
//! live [`Edge`] of a playlist (its newest segment and part, and the part its
//! `#EXT-X-PRELOAD-HINT` names) against which a request is ready ([`Edge::has`]) or asks too
//! far ahead ([`Edge::too_far`]), as RFC 8216bis section 6.2.5.2 says. It decides; holding
//! the request is the HTTP server's (`http/hls.rs`), on the store's notifications
//! (`state/hls.rs`).

/// The newest media a live playlist lists, for blocking reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    /// The newest finished segment's media sequence number.
    pub segment: Option<u64>,
    /// The newest part: its segment's number and its index in that segment.
    pub part: Option<(u64, u64)>,
    /// The part being written, which the playlist hints.
    pub hint: Option<Hint>,
    /// `#EXT-X-TARGETDURATION`, ms: a blocked request waits three of these at most.
    pub target_ms: u64,
}

/// The part an `#EXT-X-PRELOAD-HINT` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Its name in the store (the URL path without `/`).
    pub name: String,
    /// Its segment's number and index.
    pub at: (u64, u64),
}

/// A blocking reload: hold the playlist until it has segment `msn` (or part `part` of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`.
    pub part: Option<u64>,
}

/// Why a delivery directive is refused (400 Bad Request, as the spec asks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// A value that is not a decimal number.
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    /// The same directive twice.
    #[error("{0} given twice")]
    Repeated(&'static str),
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
}

/// Whether a playlist request asks for a delta update: `_HLS_skip=YES`, or `v2` (which also
/// skips date ranges; the playlists have none).
pub fn wants_skip(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair == "_HLS_skip=YES" || pair == "_HLS_skip=v2")
}

/// The longest value taken: `u64::MAX` has 20 digits.
const MAX_DIGITS: usize = 20;

/// Reads the blocking-reload directives of a playlist request's query; `None` when there
/// are none (a plain reload). Other parameters (a CDN's, `_HLS_skip`: [`wants_skip`]) are
/// ignored.
pub fn parse(query: &str) -> Result<Option<Reload>, ReloadError> {
    let (mut msn, mut part) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, slot) = match key {
            "_HLS_msn" => ("_HLS_msn", &mut msn),
            "_HLS_part" => ("_HLS_part", &mut part),
            _ => continue,
        };
        if slot.is_some() {
            return Err(ReloadError::Repeated(name));
        }
        let number = (!value.is_empty()
            && value.len() <= MAX_DIGITS
            && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or(ReloadError::NotANumber(name))?;
        *slot = Some(number);
    }
    match (msn, part) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ReloadError::PartWithoutMsn),
        (Some(msn), part) => Ok(Some(Reload { msn, part })),
    }
}

impl Edge {
    /// The newest media sequence number the playlist shows: its newest part's segment, its
    /// newest segment, or the one its hint opens.
    pub fn last_msn(&self) -> u64 {
        let part = self.part.map(|p| p.0);
        let hint = self.hint.as_ref().map(|h| h.at.0);
        self.segment.max(part).or(hint).unwrap_or(0)
    }

    /// True when the playlist satisfies `r`: it has segment `msn` or a later one, or, with a
    /// part, that part of it or any later part.
    pub fn has(&self, r: &Reload) -> bool {
        let segment_done = self.segment.is_some_and(|s| s >= r.msn);
        match r.part {
            None => segment_done,
            Some(part) => {
                // A finished segment later than msn holds later parts; the parts of msn
                // itself are known by index.
                self.segment.is_some_and(|s| s > r.msn)
                    || self.part.is_some_and(|p| p >= (r.msn, part))
            }
        }
    }

    /// True when `r` asks for a segment more than two past the newest, which the spec
    /// answers with 400 rather than a wait.
    pub fn too_far(&self, r: &Reload) -> bool {
        r.msn > self.last_msn().saturating_add(2)
    }

    /// True once the part at `at` exists or the playlist moved past it.
    pub fn reached(&self, at: (u64, u64)) -> bool {
        self.part.is_some_and(|p| p >= at) || self.segment.is_some_and(|s| s > at.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_bad_values_are_refused() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("x=1&y"), Ok(None));
        assert_eq!(
            parse("_HLS_msn=12&_HLS_part=3"),
            Ok(Some(Reload {
                msn: 12,
                part: Some(3)
            }))
        );
        assert_eq!(
            parse("_HLS_msn=7&_HLS_skip=YES"),
            Ok(Some(Reload { msn: 7, part: None }))
        );
        for (q, e) in [
            ("_HLS_part=1", ReloadError::PartWithoutMsn),
            ("_HLS_msn=-1", ReloadError::NotANumber("_HLS_msn")),
            ("_HLS_msn=", ReloadError::NotANumber("_HLS_msn")),
            ("_HLS_msn", ReloadError::NotANumber("_HLS_msn")),
            (
                "_HLS_msn=1&_HLS_part=x",
                ReloadError::NotANumber("_HLS_part"),
            ),
            ("_HLS_msn=+1", ReloadError::NotANumber("_HLS_msn")),
            (
                "_HLS_msn=99999999999999999999",
                ReloadError::NotANumber("_HLS_msn"),
            ),
            ("_HLS_msn=1&_HLS_msn=2", ReloadError::Repeated("_HLS_msn")),
        ] {
            assert_eq!(parse(q), Err(e), "{q}");
        }
    }

    #[test]
    fn a_delta_update_is_asked_for_with_yes_or_v2() {
        assert!(wants_skip("_HLS_msn=4&_HLS_skip=YES"));
        assert!(wants_skip("_HLS_skip=v2"));
        for no in [
            "",
            "_HLS_skip=NO",
            "_HLS_skip",
            "x_HLS_skip=YES",
            "_HLS_skip=yes",
        ] {
            assert!(!wants_skip(no), "{no}");
        }
    }

    #[test]
    fn a_request_is_ready_when_its_part_or_a_later_one_exists() {
        let edge = Edge {
            segment: Some(4),
            part: Some((5, 2)),
            hint: Some(Hint {
                name: "s-5.3.m4s".into(),
                at: (5, 3),
            }),
            target_ms: 1000,
        };
        let r = |msn, part| Reload { msn, part };
        assert!(edge.has(&r(4, None)) && !edge.has(&r(5, None)));
        assert!(edge.has(&r(5, Some(2))) && !edge.has(&r(5, Some(3))));
        assert!(edge.has(&r(4, Some(9))), "segment 5 holds later parts");
        assert!(!edge.has(&r(6, Some(0))));
        assert_eq!(edge.last_msn(), 5);
        assert!(!edge.too_far(&r(7, None)) && edge.too_far(&r(8, None)));
        assert!(edge.reached((5, 2)) && !edge.reached((5, 3)) && edge.reached((4, 7)));
        assert_eq!(Edge::default().last_msn(), 0);
    }
}
