//! Light WHEP players' accounting, sans-IO: which datagrams are RTP (RFC 7983's first byte,
//! RFC 5761's RTP/RTCP split), what their clear SRTP header says, and RFC 3550's loss per
//! SSRC from the sequence numbers alone. SRTP encrypts only the payload, so a player can
//! count packets, payload bytes and loss without the keys: no decryption, no depacketizing,
//! a fraction of a full str0m player's CPU. Nothing here asks for a resend, so the loss it
//! finds is the raw loss on the wire, before any NACK repair.

/// Bytes SRTP appends to each packet: the tag of the AES-GCM profiles, which str0m prefers to
/// the HMAC-SHA1-80 one (whose tag is 10 bytes: a payload figure would then read 6 bytes short).
const SRTP_TAG: usize = 16;

/// The clear fields of one SRTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Synchronization source: one per track (and per retransmission stream).
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// The datagram less the RTP header (fixed part, CSRCs, extension block) and the SRTP
    /// tag: the encrypted payload, RTP padding included, since its length is encrypted too.
    pub payload: usize,
}

/// Whether `datagram` is RTP: RFC 7983 gives first bytes 128..=191 to RTP and RTCP (0..=3
/// STUN, 20..=63 DTLS), and RFC 5761 tells RTCP by its packet types 192..=223, which read as
/// payload types 64..=95 with the marker bit.
pub fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(64..=95).contains(&(second & 0x7f)),
        _ => false,
    }
}

/// The clear header of `datagram` if it is RTP ([`is_rtp`]) and as long as the header it
/// announces.
pub fn rtp_header(datagram: &[u8]) -> Option<RtpHeader> {
    if !is_rtp(datagram) {
        return None;
    }
    let first = datagram[0];
    let csrcs = usize::from(first & 0x0f) * 4;
    let mut header = 12 + csrcs;
    if first & 0x10 != 0 {
        let words = datagram.get(header + 2..header + 4)?;
        header += 4 + usize::from(u16::from_be_bytes([words[0], words[1]])) * 4;
    }
    if datagram.len() < header {
        return None;
    }
    Some(RtpHeader {
        ssrc: u32::from_be_bytes(datagram[8..12].try_into().ok()?),
        seq: u16::from_be_bytes([datagram[2], datagram[3]]),
        payload: datagram.len().saturating_sub(header + SRTP_TAG),
    })
}

/// One SSRC's sequence numbers, as RFC 3550's appendix A.3 counts them.
#[derive(Debug)]
struct Source {
    ssrc: u32,
    /// The first packet's sequence number: the extended numbers start at it.
    base: u64,
    /// The highest sequence number seen, extended past 16 bits by the wraps.
    max: u64,
    /// Packets received, duplicates and late ones included.
    received: u64,
}

impl Source {
    fn packet(&mut self, seq: u16) {
        // Half the sequence space ahead of the highest is newer (across a wrap, too); the
        // other half is a late or duplicate packet, which leaves the highest as it is.
        let ahead = seq.wrapping_sub(self.max as u16);
        if ahead != 0 && ahead < 0x8000 {
            self.max += u64::from(ahead);
        }
        self.received += 1;
    }

    /// Expected minus received: negative when duplicates outnumber the losses.
    fn lost(&self) -> i64 {
        (self.max - self.base + 1) as i64 - self.received as i64
    }
}

/// Packets and loss over all SSRCs of one player.
#[derive(Debug, Default)]
pub struct RtpCount {
    sources: Vec<Source>,
    /// What [`RtpCount::take`] has handed out: packets, and loss.
    taken: (u64, u64),
}

impl RtpCount {
    /// Counts one packet.
    pub fn packet(&mut self, ssrc: u32, seq: u16) {
        // A player has a handful of SSRCs (video, audio): a scan beats a map.
        match self.sources.iter_mut().find(|s| s.ssrc == ssrc) {
            Some(s) => s.packet(seq),
            None => self.sources.push(Source {
                ssrc,
                base: u64::from(seq),
                max: u64::from(seq),
                received: 1,
            }),
        }
    }

    /// Packets received, over all SSRCs.
    pub fn received(&self) -> u64 {
        self.sources.iter().map(|s| s.received).sum()
    }

    /// Packets lost (expected minus received, summed over SSRCs), or 0 when duplicates make
    /// that negative.
    pub fn lost(&self) -> u64 {
        self.sources.iter().map(Source::lost).sum::<i64>().max(0) as u64
    }

    /// Packets received and lost since the last call, to add to running totals. A late packet
    /// lowers the loss already handed out; the totals cannot go down, so it offsets later
    /// growth instead, and the loss handed out in all is the highest the loss ever was.
    pub fn take(&mut self) -> (u64, u64) {
        let (received, lost) = (self.received(), self.lost());
        let grown = (received - self.taken.0, lost.saturating_sub(self.taken.1));
        self.taken = (received, lost.max(self.taken.1));
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(seqs: &[u16]) -> RtpCount {
        let mut c = RtpCount::default();
        for &s in seqs {
            c.packet(7, s);
        }
        c
    }

    #[test]
    fn in_order_packets_lose_nothing() {
        let c = count(&[100, 101, 102, 103]);
        assert_eq!((c.received(), c.lost()), (4, 0));
    }

    #[test]
    fn a_gap_is_loss() {
        let c = count(&[10, 11, 15, 16]);
        assert_eq!((c.received(), c.lost()), (4, 3));
    }

    #[test]
    fn the_sequence_wraps() {
        let c = count(&[65534, 65535, 0, 1]);
        assert_eq!((c.received(), c.lost()), (4, 0));
        // A gap across the wrap: 65535 and 0 missing.
        let c = count(&[65533, 65534, 1, 2]);
        assert_eq!((c.received(), c.lost()), (4, 2));
        // Two whole cycles.
        let mut c = RtpCount::default();
        for i in 0..(2 * 65536 + 10u32) {
            c.packet(1, (i + 60000) as u16);
        }
        assert_eq!((c.received(), c.lost()), (2 * 65536 + 10, 0));
    }

    #[test]
    fn a_reordered_packet_is_not_lost() {
        let c = count(&[1, 3, 2, 4]);
        assert_eq!((c.received(), c.lost()), (4, 0));
        // Late across the wrap.
        let c = count(&[65534, 0, 65535, 1]);
        assert_eq!((c.received(), c.lost()), (4, 0));
    }

    #[test]
    fn duplicates_count_as_received() {
        // RFC 3550: a duplicate offsets a loss.
        let c = count(&[1, 2, 2, 4]);
        assert_eq!((c.received(), c.lost()), (4, 0));
        // And never makes the loss negative.
        let c = count(&[1, 2, 2, 3]);
        assert_eq!((c.received(), c.lost()), (4, 0));
    }

    #[test]
    fn sources_count_apart() {
        let mut c = RtpCount::default();
        for (ssrc, seq) in [(1, 100), (2, 5000), (1, 101), (2, 5003), (1, 103)] {
            c.packet(ssrc, seq);
        }
        assert_eq!((c.received(), c.lost()), (5, 3));
    }

    #[test]
    fn take_hands_out_growth() {
        let mut c = count(&[1, 2, 5]);
        assert_eq!(c.take(), (3, 2));
        assert_eq!(c.take(), (0, 0));
        // 3 arrives late: the loss falls to 1, and the totals keep the 2 handed out...
        c.packet(7, 3);
        assert_eq!(c.take(), (1, 0));
        // ...until the loss grows past them again.
        for s in [6, 9] {
            c.packet(7, s);
        }
        assert_eq!(c.lost(), 3);
        assert_eq!(c.take(), (2, 1));
    }

    fn rtp(first: u8, second: u8, extra: &[u8], payload: usize) -> Vec<u8> {
        let mut d = vec![
            first, second, 0x12, 0x34, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        d.extend_from_slice(extra);
        d.resize(d.len() + payload + SRTP_TAG, 0xaa);
        d
    }

    #[test]
    fn demultiplexes_and_reads_the_clear_header() {
        let h = rtp_header(&rtp(0x80, 96, &[], 1000)).expect("RTP");
        assert_eq!((h.ssrc, h.seq, h.payload), (0xdead_beef, 0x1234, 1000));
        // Marker bit set, payload type 111.
        assert!(rtp_header(&rtp(0x80, 0x80 | 111, &[], 10)).is_some());
        // RTCP: SR (200), RR (201), and the bounds of RFC 5761's range.
        for pt in [200, 201, 192, 223] {
            assert_eq!(rtp_header(&rtp(0x80, pt, &[], 10)), None, "{pt}");
        }
        assert!(rtp_header(&rtp(0x80, 191, &[], 10)).is_some());
        assert!(rtp_header(&rtp(0x80, 224, &[], 10)).is_some());
        // STUN (0..=3) and DTLS (20..=63), and a first byte past RTP's range.
        for first in [0x00, 0x01, 22, 63, 192] {
            assert_eq!(rtp_header(&rtp(first, 96, &[], 10)), None, "{first}");
        }
        assert!(!is_rtp(&[0x80]));
        // RTP, but shorter than its header.
        assert!(is_rtp(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0]));
        assert_eq!(rtp_header(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn the_header_has_csrcs_and_extensions() {
        // Two CSRCs, then a one-byte-header extension block of 2 words.
        let mut extra = vec![0; 8];
        extra.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        let h = rtp_header(&rtp(0x80 | 0x10 | 2, 96, &extra, 500)).expect("RTP");
        assert_eq!(h.payload, 500);
        // An extension longer than the datagram.
        let short = [0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 9];
        assert_eq!(rtp_header(&short), None);
        // A packet shorter than its tag counts no payload.
        let h = rtp_header(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9]).expect("RTP");
        assert_eq!(h.payload, 0);
    }
}
