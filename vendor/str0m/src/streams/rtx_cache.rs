use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::rtp_::{ExtensionValues, Frequency, MediaTime, Mid, Pt, Rid, RtpHeader, SeqNo, Ssrc};

use super::RtpPacket;
use super::rtx_cache_buf::EvictingBuffer;

/// ringcast: what the cache keeps of a sent packet. An `RtpPacket` is 408 bytes (its header's
/// extension values alone 192, its CSRC array 60), and a media server keeps a cache for every
/// player: 150 video packets were 61 KB of each WHEP player's heap. A packet whose header holds
/// no more than a plain packet's (no CSRCs, no padding, no header extension values but the
/// `mid` and `rid` every packet names until the peer acks them) is kept as the few fields a
/// resend needs, and made whole again when asked for. What the cache's entry already holds is
/// not kept twice: the sequence number is the entry's position, the send time the entry's time,
/// and the `mid`, `rid` and media clock (one stream's, the same on every packet that names
/// them) are kept once in the cache, each packet saying only whether it named the `mid` and
/// `rid`.
#[derive(Debug)]
enum Cached {
    Lean(Lean),
    Full(Box<RtpPacket>),
}

#[derive(Debug)]
struct Lean {
    /// The media time in the cache's [`Names::clock`].
    time: u64,
    payload: Arc<[u8]>,
    rtp_time: u32,
    ssrc: Ssrc,
    header_len: u16,
    pt: Pt,
    marker: bool,
    has_extension: bool,
    has_mid: bool,
    has_rid: bool,
}

/// The `mid`, `rid` and media clock of the stream whose packets a cache keeps.
#[derive(Debug, Default)]
struct Names {
    mid: Option<Mid>,
    rid: Option<Rid>,
    clock: Option<Frequency>,
}

impl Names {
    /// Whether `name` can be told by a flag: none, or the one remembered (the first one seen
    /// is remembered).
    fn learn<T: PartialEq + Copy>(kept: &mut Option<T>, name: Option<T>) -> bool {
        match (name, *kept) {
            (None, _) => true,
            (Some(n), None) => {
                *kept = Some(n);
                true
            }
            (Some(n), Some(k)) => n == k,
        }
    }
}

impl Cached {
    fn new(packet: RtpPacket, now: Instant, names: &mut Names) -> Self {
        let h = &packet.header;
        let plain_exts = ExtensionValues {
            mid: h.ext_vals.mid,
            rid: h.ext_vals.rid,
            ..Default::default()
        };
        let lean = h.version == 2
            && !h.has_padding
            && h.csrc_count == 0
            && h.csrc == [0; 15]
            && h.ext_vals == plain_exts
            && packet.vp8_patch.is_none()
            && packet.last_sender_info.is_none()
            && packet.nackable
            && packet.timestamp == now
            && u64::from(h.sequence_number) == *packet.seq_no & 0xffff
            && Names::learn(&mut names.mid, h.ext_vals.mid)
            && Names::learn(&mut names.rid, h.ext_vals.rid)
            && Names::learn(&mut names.clock, Some(packet.time.frequency()));
        match u16::try_from(h.header_len) {
            Ok(header_len) if lean => Cached::Lean(Lean {
                time: packet.time.numer(),
                rtp_time: h.timestamp,
                ssrc: h.ssrc,
                header_len,
                pt: h.payload_type,
                marker: h.marker,
                has_extension: h.has_extension,
                has_mid: h.ext_vals.mid.is_some(),
                has_rid: h.ext_vals.rid.is_some(),
                payload: packet.payload,
            }),
            _ => Cached::Full(Box::new(packet)),
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Cached::Lean(l) => &l.payload,
            Cached::Full(p) => &p.payload,
        }
    }

    /// The packet, whole: a lean one, sent at `timestamp` as `seq_no`, rebuilt in `scratch`.
    fn packet<'a>(
        &'a mut self,
        seq_no: u64,
        timestamp: Instant,
        names: &Names,
        scratch: &'a mut Option<Box<RtpPacket>>,
    ) -> &'a mut RtpPacket {
        let l = match self {
            Cached::Full(p) => return p,
            Cached::Lean(l) => l,
        };
        let whole = RtpPacket {
            seq_no: seq_no.into(),
            time: MediaTime::new(l.time, names.clock.expect("learnt before a lean entry")),
            header: RtpHeader {
                has_extension: l.has_extension,
                marker: l.marker,
                payload_type: l.pt,
                sequence_number: seq_no as u16,
                timestamp: l.rtp_time,
                ssrc: l.ssrc,
                ext_vals: ExtensionValues {
                    mid: names.mid.filter(|_| l.has_mid),
                    rid: names.rid.filter(|_| l.has_rid),
                    ..Default::default()
                },
                header_len: usize::from(l.header_len),
                ..Default::default()
            },
            payload: l.payload.clone(),
            vp8_patch: None,
            timestamp,
            last_sender_info: None,
            nackable: true,
        };
        match scratch {
            Some(packet) => {
                **packet = whole;
                packet
            }
            None => scratch.insert(Box::new(whole)),
        }
    }
}

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<Cached>,

    // Where a lean entry is made whole for the caller: made on the first
    // lookup, as a stream never asked to resend needs none (an `RtpPacket` is
    // 408 bytes, and a media server keeps a cache per player).
    scratch: Option<Box<RtpPacket>>,

    // The stream's `mid` and `rid`, for lean entries.
    names: Names,
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            scratch: None,
            names: Names::default(),
        }
    }

    pub fn cache_sent_packet(&mut self, packet: RtpPacket, now: Instant) {
        assert!(packet.nackable);
        let seq_no = packet.seq_no;
        self.packet_by_seq_no
            .push(*seq_no, now, Cached::new(packet, now, &mut self.names));
        self.remove_old_packets(now);
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    pub fn get_cached_packet_by_seq_no(&mut self, seq_no: SeqNo) -> Option<&mut RtpPacket> {
        let (timestamp, cached) = self.packet_by_seq_no.get_mut_with_time(*seq_no)?;
        Some(cached.packet(*seq_no, timestamp, &self.names, &mut self.scratch))
    }

    pub fn get_cached_packet_smaller_than(&mut self, max_size: usize) -> Option<&mut RtpPacket> {
        // The largest packet by 25-byte size class under the limit, the latest of its class.
        // Found by a scan, only when padding is due: an index of the latest packet of each
        // class (640 bytes in every cache, two caches a player) was written for every packet
        // sent, and most media servers never pad.
        let limit = max_size / RTX_CACHE_SIZE_QUANTIZER;
        let (_, seq_no) = self
            .packet_by_seq_no
            .iter()
            .map(|(seq_no, c)| (c.payload().len() / RTX_CACHE_SIZE_QUANTIZER, seq_no))
            .filter(|(class, _)| *class < limit)
            .max()?;

        self.get_cached_packet_by_seq_no(seq_no.into())
    }

    fn remove_old_packets(&mut self, now: Instant) {
        self.packet_by_seq_no.maybe_evict(now);
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        Some(self.packet_by_seq_no.last()?.payload())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
    }
}

#[cfg(test)]
mod test {
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;

    use super::*;

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader::default(),
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into())
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000)
        );
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(1.into()));
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(1000));
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into())
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000)
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(25)
        );
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(24));
        rtx_cache.cache_sent_packet(packet(now, 2, 20), after(now, 20));
        assert_eq!(
            Some(&mut packet(now, 2, 20)),
            rtx_cache.get_cached_packet_by_seq_no(2.into())
        );
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into())
        );
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(100.into()));
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(101.into()));
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(99.into()));

        assert_eq!(
            Some(&mut packet(now, 100, 1000)),
            rtx_cache.get_cached_packet_by_seq_no(100.into())
        );
        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into())
        );
    }

    // ringcast: a plain packet is kept lean and one with more in its header whole; both come
    // back as they went in.
    #[test]
    fn rtx_cache_lean_and_full_entries_come_back_whole() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
        let plain = || {
            let mut p = packet(now, 1, 10);
            p.header.marker = true;
            p.header.sequence_number = 1;
            p.header.ext_vals.mid = Some("1".into());
            p.time = MediaTime::from_90khz(123_456_789);
            p
        };
        // Another clock than the first lean packet's: kept whole, its clock with it.
        let other_clock = || {
            let mut p = packet(now, 4, 40);
            p.header.sequence_number = 4;
            p.time = MediaTime::from_millis(40);
            p
        };
        let other_mid = || {
            let mut p = packet(now, 3, 30);
            p.header.sequence_number = 3;
            p.header.ext_vals.mid = Some("2".into());
            p
        };
        let rich = || {
            let mut p = packet(now, 2, 20);
            p.header.csrc_count = 1;
            p.header.csrc[0] = 7;
            p.header.ext_vals.audio_level = Some(-30);
            p
        };
        rtx_cache.cache_sent_packet(plain(), after(now, 10));
        rtx_cache.cache_sent_packet(rich(), after(now, 20));
        rtx_cache.cache_sent_packet(other_mid(), after(now, 30));
        rtx_cache.cache_sent_packet(other_clock(), after(now, 40));
        assert!(matches!(
            rtx_cache.packet_by_seq_no.get(4),
            Some(Cached::Full(_))
        ));
        assert!(matches!(
            rtx_cache.packet_by_seq_no.get(3),
            Some(Cached::Full(_))
        ));
        assert!(matches!(
            rtx_cache.packet_by_seq_no.get(1),
            Some(Cached::Lean(_))
        ));
        assert!(matches!(
            rtx_cache.packet_by_seq_no.get(2),
            Some(Cached::Full(_))
        ));
        assert_eq!(
            Some(&plain()),
            rtx_cache.get_cached_packet_by_seq_no(1.into()).map(|p| &*p)
        );
        assert_eq!(
            Some(&rich()),
            rtx_cache.get_cached_packet_by_seq_no(2.into()).map(|p| &*p)
        );
        assert_eq!(
            Some(&other_mid()),
            rtx_cache.get_cached_packet_by_seq_no(3.into()).map(|p| &*p)
        );
        assert_eq!(
            Some(&other_clock()),
            rtx_cache.get_cached_packet_by_seq_no(4.into()).map(|p| &*p)
        );
        assert!(std::mem::size_of::<Cached>() <= 40);
        assert_eq!(std::mem::size_of::<RtpPacket>(), 408);
    }
}
