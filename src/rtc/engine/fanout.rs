//! Who on this core gets a stream's frames, and each frame cut into RTP payloads once for all
//! of them. Forwarding is at the frame level between cores and at the packet level to
//! players: a publisher's session depacketizes each frame once, the frame (its payload an
//! `Arc`) goes once to each other core with players, each core cuts it into payloads once
//! ([`StreamPacketizer`]), and every player's str0m session, in RTP mode, adds its header and
//! encryption. RTMP streams (`rtmp_to_rtc`) are converted here once per core, from the frames
//! the driver's consumer feeds in; which streams need a consumer is told through [`Watch`].
//!
//! It owns the grouping, not the sessions: it names the players and the engine writes to them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::MediaKind;

use super::hub::RtcHub;
use super::inbox::{Inbox, SharedFrame};
use super::stream::RtcStream;
use crate::hub::{StreamKey, StreamSettings};
use crate::media::{Frame, MediaKind as RtmpKind};
use crate::rtc::bridge::{AacToOpus, AvcToAnnexB};
use crate::rtc::packetize::{RtpFrame, StreamPacketizer};

/// A change in the RTMP streams this core's players watch, for the driver, which owns their
/// hub consumers and feeds their frames to [`super::Engine::handle_rtmp_frame`].
#[derive(Debug, Clone)]
pub enum Watch {
    /// A first player watches `key`: subscribe to it with `settings`.
    Start {
        /// The RTMP stream.
        key: StreamKey,
        /// Its settings, as the RTMP side makes them.
        settings: StreamSettings,
    },
    /// The last player of `key` left: drop its consumer.
    Stop {
        /// The RTMP stream.
        key: StreamKey,
    },
}

/// The local players of one WebRTC stream and the packetizer of its frames.
#[derive(Debug, Default)]
struct Group {
    players: Vec<u64>,
    packetizer: StreamPacketizer,
}

/// One RTMP stream played by WebRTC players of this core: one conversion and one packetizer,
/// whatever the number of players.
#[derive(Debug, Default)]
struct Bridge {
    video: AvcToAnnexB,
    audio: AacToOpus,
    packetizer: StreamPacketizer,
    players: Vec<u64>,
}

/// This core's players by what feeds them, and its publishers' other cores.
#[derive(Debug, Default)]
pub struct Fanout {
    /// Local players per WebRTC stream id.
    streams: HashMap<u64, Group>,
    /// Players per RTMP stream.
    bridges: HashMap<StreamKey, Bridge>,
    /// Per publisher session on this core: its stream's player-count version and the inboxes
    /// of the other cores with players, as of that version.
    remote: HashMap<u64, (u64, Vec<Arc<Inbox>>)>,
    watch: VecDeque<Watch>,
}

impl Fanout {
    /// Player `id` of WebRTC stream `stream` joins this core.
    pub fn join_stream(&mut self, stream: u64, id: u64) {
        self.streams.entry(stream).or_default().players.push(id);
    }

    /// Player `id` of WebRTC stream `stream` leaves.
    pub fn leave_stream(&mut self, stream: u64, id: u64) {
        if let Some(group) = self.streams.get_mut(&stream) {
            group.players.retain(|p| *p != id);
            if group.players.is_empty() {
                self.streams.remove(&stream);
            }
        }
    }

    /// Player `id` starts watching RTMP stream `key`; the first one makes a [`Watch::Start`].
    pub fn join_bridge(&mut self, key: &StreamKey, settings: &StreamSettings, id: u64) {
        let bridge = self.bridges.entry(key.clone()).or_insert_with(|| {
            self.watch.push_back(Watch::Start {
                key: key.clone(),
                settings: settings.clone(),
            });
            Bridge::default()
        });
        bridge.players.push(id);
    }

    /// Player `id` stops watching RTMP stream `key`; the last one makes a [`Watch::Stop`].
    pub fn leave_bridge(&mut self, key: &StreamKey, id: u64) {
        if let Some(b) = self.bridges.get_mut(key) {
            b.players.retain(|p| *p != id);
            if b.players.is_empty() {
                self.bridges.remove(key);
                self.watch.push_back(Watch::Stop { key: key.clone() });
            }
        }
    }

    /// The next change in the RTMP streams watched, oldest first.
    pub fn poll_watch(&mut self) -> Option<Watch> {
        self.watch.pop_front()
    }

    /// The inboxes of the other cores with players of `stream`, whose publisher is session
    /// `publisher` of core `core`; re-read from `hub` only when the player counts moved.
    pub fn remote_inboxes(
        &mut self,
        publisher: u64,
        stream: &RtcStream,
        core: usize,
        hub: &RtcHub,
    ) -> &[Arc<Inbox>] {
        let version = stream.version();
        let (seen, inboxes) = self
            .remote
            .entry(publisher)
            .or_insert_with(|| (u64::MAX, Vec::new()));
        if *seen != version {
            *seen = version;
            *inboxes = stream
                .player_cores(core)
                .into_iter()
                .filter_map(|c| hub.inbox(c))
                .collect();
        }
        inboxes
    }

    /// Publisher session `publisher` left this core.
    pub fn forget_publisher(&mut self, publisher: u64) {
        self.remote.remove(&publisher);
    }

    /// A WebRTC publisher's frame of `stream`, cut for this core's players of it, and who
    /// they are; `None` without players or for a codec players do not take.
    pub fn webrtc_frame(&mut self, stream: u64, frame: &SharedFrame) -> Option<(RtpFrame, &[u64])> {
        let group = self.streams.get_mut(&stream)?;
        let data = &frame.data;
        let spec = data.params.spec();
        let time = data.time.rebase(spec.clock_rate).numer() as u32;
        let wallclock = data.network_time;
        let params = Some(data.params);
        // A WebRTC publisher's player starts at once; the keyframe request sent when it
        // connected brings a picture.
        let rtp = match (frame.kind, spec.codec) {
            (MediaKind::Video, Codec::H264) => group
                .packetizer
                .h264(&data.data, time, wallclock, true, params),
            (MediaKind::Audio, Codec::Opus) => Some(StreamPacketizer::opus(
                data.data.clone(),
                time,
                wallclock,
                params,
            )),
            _ => None,
        }?;
        Some((
            RtpFrame {
                source: frame.publisher,
                ..rtp
            },
            &group.players,
        ))
    }

    /// An RTMP frame of `key`, converted and cut into `out` (none, one, or several frames for
    /// audio), and the players of `key`; `None` if no player watches it. `now` stamps the
    /// frames' wall-clock time.
    pub fn rtmp_frame(
        &mut self,
        key: &StreamKey,
        f: &Frame,
        now: Instant,
        out: &mut Vec<RtpFrame>,
    ) -> Option<&[u64]> {
        let bridge = self.bridges.get_mut(key)?;
        match f.kind {
            RtmpKind::Video => match bridge.video.push(&f.payload, f.timestamp) {
                Ok(Some(v)) => {
                    let time = v.pts_ms.wrapping_mul(90) as u32;
                    out.extend(bridge.packetizer.h264(&v.data, time, now, v.keyframe, None));
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("rtmp to rtc video: {e}"),
            },
            RtmpKind::Audio => match bridge.audio.push(&f.payload, f.timestamp) {
                Ok(units) => out.extend(
                    units
                        .into_iter()
                        .map(|a| StreamPacketizer::opus(a.data, a.rtp_time as u32, now, None)),
                ),
                Err(e) => tracing::debug!("rtmp to rtc audio: {e}"),
            },
            RtmpKind::Data => {}
        }
        Some(&bridge.players)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> StreamKey {
        StreamKey {
            vhost: "v".into(),
            app: "live".into(),
            stream: name.into(),
        }
    }

    fn settings() -> StreamSettings {
        StreamSettings {
            gop_cache: true,
            queue_length: std::time::Duration::from_secs(10),
            chunk_size: 60000,
            merge: None,
        }
    }

    #[test]
    fn the_first_and_last_watchers_of_an_rtmp_stream_start_and_stop_its_consumer() {
        let mut fanout = Fanout::default();
        let (a, b) = (key("a"), key("b"));
        fanout.join_bridge(&a, &settings(), 1);
        fanout.join_bridge(&a, &settings(), 2);
        fanout.join_bridge(&b, &settings(), 3);
        assert!(matches!(
            fanout.poll_watch(),
            Some(Watch::Start { key, settings }) if key == a && settings.chunk_size == 60000
        ));
        assert!(matches!(fanout.poll_watch(), Some(Watch::Start { key, .. }) if key == b));
        assert!(
            fanout.poll_watch().is_none(),
            "one consumer however many players"
        );
        fanout.leave_bridge(&a, 1);
        fanout.leave_bridge(&a, 9);
        assert!(fanout.poll_watch().is_none());
        fanout.leave_bridge(&a, 2);
        assert!(matches!(fanout.poll_watch(), Some(Watch::Stop { key }) if key == a));
        fanout.leave_bridge(&a, 2);
        assert!(fanout.poll_watch().is_none(), "stopped once");
    }

    #[test]
    fn publishers_reread_the_cores_with_players_only_when_they_move() {
        let hub = RtcHub::new();
        for core in 0..3 {
            hub.register_core(core);
        }
        let stream = hub.detached_stream(&key("s"));
        let mut fanout = Fanout::default();
        assert!(fanout.remote_inboxes(7, &stream, 0, &hub).is_empty());
        stream.add_player(0, 1);
        stream.add_player(2, 1);
        let inboxes = fanout.remote_inboxes(7, &stream, 0, &hub);
        assert_eq!(
            inboxes.len(),
            1,
            "the publisher's own core is served locally"
        );
        assert!(Arc::ptr_eq(&inboxes[0], &hub.inbox(2).unwrap()));
        stream.add_player(2, -1);
        assert!(fanout.remote_inboxes(7, &stream, 0, &hub).is_empty());
        fanout.forget_publisher(7);
        assert!(fanout.remote.is_empty());
    }
}
