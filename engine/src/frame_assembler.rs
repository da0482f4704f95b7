//! The video jitter buffer: puts RTP packets back in order, assembles each frame once all its
//! packets are there, and releases frames in decode order as soon as they are complete (no fixed
//! playout delay: video latency is what a call feels; on a lossy link `video_delay` holds decoded
//! frames a round trip, and says when from the waits marked here). A gap waits for a NACK
//! retransmission up to `max_wait`; after that the missing frames are given up, and since the
//! frames after them reference what was lost, nothing but a keyframe is released until one
//! arrives (and one is requested). A complete keyframe behind a gap ends the wait at once: the
//! frames before it are of no use once it is decoded (the sender starts a new rung, or answers a
//! request, with one).
//!
//! Pure logic: time is a parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::depacketize::{begins_with_sps, carries_keyframe, depacketize, AccessUnit};
use super::nack::{resend_interval, MAX_REQUESTS};
use super::seq;

/// Packets held before the buffer gives up on a gap regardless of time (about 1.5 s of 720p).
const MAX_HELD: usize = 1500;
/// The longest a gap waits for a resend: three rounds at 470 ms RTT. A shorter cap gave up on
/// every gap just before its resend came on a 500 ms RTT link (very-bad), so each loss became
/// a keyframe request and a freeze.
const MAX_WAIT: Duration = Duration::from_millis(1500);
/// Keyframe requests are repeated at most this often while waiting for one ...
const KEYFRAME_RETRY: Duration = Duration::from_millis(250);
/// ... and not before an answer could have come: a round trip plus this for the sender to encode
/// the keyframe and pace out its first packets. At 500 ms RTT (very-bad) a request repeated every
/// 250 ms went out twice more before the keyframe could arrive, and the sender (which answers at
/// most every 300 ms) made a second keyframe for the link to carry.
const KEYFRAME_ANSWER: Duration = Duration::from_millis(100);

/// The fields of an RTP packet the assembler needs.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

#[derive(Debug)]
struct Held {
    timestamp: u32,
    marker: bool,
    payload: Bytes,
    arrival: Instant,
}

/// A complete frame, ready to decode.
#[derive(Debug, Clone)]
pub struct AssembledFrame {
    pub rtp_timestamp: u32,
    pub au: AccessUnit,
    /// When its first packet arrived: release minus this is the time spent assembling.
    pub first_arrival: Instant,
    /// Released after the buffer waited on a gap (a retransmission, or reordering): how long
    /// that wait had lasted. Every frame released in the burst that ends the wait carries it
    /// (the frames behind the gap waited too); frames that never waited carry `None`.
    pub gap_wait: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum Event {
    Frame(AssembledFrame),
    /// Ask the sender for a keyframe (send a PLI).
    KeyframeNeeded,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    pub packets: u64,
    pub duplicates: u64,
    /// Arrived after the buffer had moved past them.
    pub late: u64,
    /// Arrived after a packet with a higher sequence number.
    pub reordered: u64,
    pub frames: u64,
    /// Given up (missing packets), malformed, or undecodable while waiting for a keyframe.
    pub frames_dropped: u64,
    pub keyframe_requests: u64,
    /// Packets without payload (padding), skipped.
    pub padding: u64,
}

enum Head {
    Empty,
    Incomplete,
    /// A packet with no payload (bandwidth-probing padding, which browsers send): it only uses
    /// up a sequence number.
    Padding(u64),
    /// The frame occupies extended sequence numbers start..=end.
    Ready(u64, u64),
}

pub struct FrameAssembler {
    held: BTreeMap<u64, Held>,
    highest: Option<u64>,
    /// Last extended sequence number released or given up.
    played: Option<u64>,
    stall_since: Option<Instant>,
    max_wait: Duration,
    need_keyframe: bool,
    /// The decoder asked for a keyframe (it could not decode, or fell behind): ask even though
    /// nothing was dropped here.
    keyframe_forced: bool,
    last_keyframe_request: Option<Instant>,
    /// The keyframe on its way while one is needed: its RTP timestamp and when its last packet
    /// came. No new request goes out while it is still arriving: on a slow link a keyframe takes
    /// longer than `keyframe_retry` to come in, and asking again only queues another behind it.
    keyframe_arriving: Option<(u32, Instant)>,
    /// How long a keyframe request waits before it is repeated (`KEYFRAME_RETRY` at least).
    keyframe_retry: Duration,
    first_packet_at: Option<Instant>,
    /// Held packets that may begin a keyframe (they begin an IDR or parameter-set NAL unit).
    keyframe_starts: BTreeSet<u64>,
    stats: AssemblerStats,
}

impl Default for FrameAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAssembler {
    pub fn new() -> Self {
        Self {
            held: BTreeMap::new(),
            highest: None,
            played: None,
            stall_since: None,
            max_wait: Duration::from_millis(100),
            // Decoding can only start at a keyframe.
            need_keyframe: true,
            keyframe_forced: false,
            last_keyframe_request: None,
            keyframe_arriving: None,
            keyframe_retry: KEYFRAME_RETRY,
            first_packet_at: None,
            keyframe_starts: BTreeSet::new(),
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// How long a gap waits for a retransmission: every NACK round (nack.rs asks at once, then
    /// again each `resend_interval`, `MAX_REQUESTS` times) plus a margin for the sender's queue.
    /// The last round counts: on a lossy link a request or its resend is lost twice in a row
    /// about once per hundred losses (5% loss, both ways), and giving up costs a keyframe.
    pub fn set_rtt(&mut self, rtt: Duration) {
        let rounds = resend_interval(rtt) * u32::from(MAX_REQUESTS - 1) + rtt;
        self.max_wait =
            (rounds + Duration::from_millis(60)).clamp(Duration::from_millis(60), MAX_WAIT);
        self.keyframe_retry = (rtt + KEYFRAME_ANSWER).max(KEYFRAME_RETRY);
    }

    /// The last sequence number released or given up: nothing at or before it is worth a NACK.
    pub fn played_seq(&self) -> Option<u16> {
        self.played.map(|p| p as u16)
    }

    #[cfg(test)]
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    fn extend(&self, seq: u16) -> u64 {
        seq::extend(self.highest, u64::from(seq), 16)
    }

    /// Takes one packet; returns what became ready.
    pub fn push(&mut self, packet: RtpIn, now: Instant) -> Vec<Event> {
        self.stats.packets += 1;
        self.first_packet_at.get_or_insert(now);
        let ext = self.extend(packet.seq);
        if self.played.is_some_and(|p| ext <= p) {
            self.stats.late += 1;
            return self.poll(now);
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return self.poll(now);
        }
        if self.highest.is_some_and(|h| ext < h) {
            self.stats.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        if self.need_keyframe && carries_keyframe(&packet.payload) {
            if self
                .keyframe_arriving
                .is_none_or(|(ts, _)| ts != packet.timestamp)
            {
                tracing::debug!(timestamp = packet.timestamp, "a keyframe is arriving");
            }
            self.keyframe_arriving = Some((packet.timestamp, now));
        }
        if carries_keyframe(&packet.payload) && begins_nal_unit(&packet.payload) {
            self.keyframe_starts.insert(ext);
        }
        self.held.insert(
            ext,
            Held {
                timestamp: packet.timestamp,
                marker: packet.marker,
                payload: packet.payload,
                arrival: now,
            },
        );
        self.poll(now)
    }

    /// Releases what is ready and gives up on gaps that waited too long. Call it every few ms.
    /// The decoder needs a keyframe: frames until the next one are held back, and `poll` asks for
    /// it, at most once per `keyframe_retry` however often this is called.
    pub fn request_keyframe(&mut self) {
        self.need_keyframe = true;
        self.keyframe_forced = true;
    }

    pub fn poll(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        // How long the head had stalled on a gap, for every frame the filled gap lets out now.
        let mut gap_wait = None;
        loop {
            match self.head() {
                Head::Empty => {
                    self.stall_since = None;
                    break;
                }
                Head::Ready(start, end) => {
                    if let Some(stalled) = self.stall_since.take() {
                        if self.played.is_some() {
                            gap_wait = Some(now.duration_since(stalled));
                        }
                    }
                    self.release(start, end, gap_wait, &mut events);
                }
                Head::Padding(seq) => {
                    self.held.remove(&seq);
                    self.played = Some(seq);
                    self.stats.padding += 1;
                }
                Head::Incomplete => {
                    let gap_seen = self.gap_seen_at();
                    if self.played.is_some() && gap_seen.is_none() && self.held.len() <= MAX_HELD {
                        // Nothing is missing yet: the frame's last packets are still on their
                        // way (a keyframe on a slow link takes longer than `max_wait` to come).
                        self.stall_since = None;
                        break;
                    }
                    if let Some(start) = self.complete_keyframe_behind_gap() {
                        self.skip_to(start);
                        continue;
                    }
                    let stalled = *self.stall_since.get_or_insert(now);
                    // A gap with packets behind it has been known since the first of them came:
                    // a frame that reaches the head behind a gap just given up does not wait a
                    // whole new `max_wait` (waits in series held frames for seconds at 10% loss).
                    let since = gap_seen.map_or(stalled, |seen| seen.min(stalled));
                    if now.duration_since(since) >= self.max_wait || self.held.len() > MAX_HELD {
                        self.give_up();
                        self.stall_since = None;
                    } else {
                        break;
                    }
                }
            }
        }
        // Keyframe starts already played or given up are of no more use.
        while self
            .keyframe_starts
            .first()
            .is_some_and(|&start| self.played.is_some_and(|played| start <= played))
        {
            self.keyframe_starts.pop_first();
        }
        // At the start the first frame is normally a keyframe on its way: ask only once something
        // was dropped, or when none has come within the wait.
        let waited = self
            .first_packet_at
            .is_some_and(|t| now.duration_since(t) >= self.max_wait);
        let arriving = self
            .keyframe_arriving
            .is_some_and(|(_, last)| now.duration_since(last) < self.keyframe_retry);
        if self.need_keyframe
            && !arriving
            && (self.stats.frames_dropped > 0 || waited || self.keyframe_forced)
            && self
                .last_keyframe_request
                .is_none_or(|t| now.duration_since(t) >= self.keyframe_retry)
        {
            self.last_keyframe_request = Some(now);
            self.keyframe_forced = false;
            self.stats.keyframe_requests += 1;
            events.push(Event::KeyframeNeeded);
        }
        events
    }

    /// When the first gap after what was played became known: the arrival of the first packet
    /// held beyond it. `None` before the first frame, or when nothing beyond the gap has come.
    fn gap_seen_at(&self) -> Option<Instant> {
        let mut seq = self.played? + 1;
        while self.held.contains_key(&seq) {
            seq += 1;
        }
        self.held.range(seq..).next().map(|(_, p)| p.arrival)
    }

    fn head(&self) -> Head {
        let Some((&first, _)) = self.held.first_key_value() else {
            return Head::Empty;
        };
        let start = self.played.map_or(first, |p| p + 1);
        let Some(head) = self.held.get(&start) else {
            return Head::Incomplete;
        };
        if head.payload.is_empty() {
            return Head::Padding(start);
        }
        // Before the first frame we do not know where the stream starts: the lowest packet held
        // must at least begin a NAL unit (earlier packets may still be on their way).
        if self.played.is_none() && !begins_nal_unit(&head.payload) {
            return Head::Incomplete;
        }
        match self.frame_end(start) {
            Some(end) => Head::Ready(start, end),
            None => Head::Incomplete,
        }
    }

    /// The last packet of the frame beginning at held packet `start`, if all of it is here.
    fn frame_end(&self, start: u64) -> Option<u64> {
        let timestamp = self.held.get(&start)?.timestamp;
        let mut seq = start;
        loop {
            if self.held[&seq].marker {
                return Some(seq);
            }
            match self.held.get(&(seq + 1)) {
                None => return None,
                // A new timestamp without a marker before it: the frame ended anyway.
                Some(next) if next.timestamp != timestamp => return Some(seq),
                Some(_) => seq += 1,
            }
        }
    }

    /// The first keyframe held complete beyond the head, if any: where it begins.
    fn complete_keyframe_behind_gap(&self) -> Option<u64> {
        let floor = self.played.map_or(0, |p| p + 1);
        self.keyframe_starts.range(floor..).copied().find(|&start| {
            // The head's own frame is `head`'s to judge.
            let Some(first) = self.held.get(&start).filter(|_| start > floor) else {
                return false;
            };
            // It must begin the access unit: right after a frame's end, or with the parameter
            // sets (a keyframe whose first packet was lost would decode without them).
            let after_a_frame = self
                .held
                .get(&(start - 1))
                .is_some_and(|before| before.marker || before.timestamp != first.timestamp);
            if !after_a_frame && !begins_with_sps(&first.payload) {
                return false;
            }
            let Some(end) = self.frame_end(start) else {
                return false;
            };
            let payloads = (start..=end).filter_map(|seq| self.held.get(&seq));
            depacketize(payloads.map(|p| p.payload.as_ref())).is_ok_and(|au| au.keyframe)
        })
    }

    /// Drops everything before `start` (a complete keyframe) and moves the head there.
    fn skip_to(&mut self, start: u64) {
        let kept = self.held.split_off(&start);
        let dropped: BTreeSet<u32> = self.held.values().map(|p| p.timestamp).collect();
        self.held = kept;
        self.played = start.checked_sub(1);
        self.stall_since = None;
        self.stats.frames_dropped += dropped.len() as u64;
        tracing::debug!(
            frames = dropped.len(),
            "a complete keyframe behind a gap: skipped to it"
        );
    }

    fn release(
        &mut self,
        start: u64,
        end: u64,
        gap_wait: Option<Duration>,
        events: &mut Vec<Event>,
    ) {
        let packets: Vec<Held> = (start..=end).filter_map(|s| self.held.remove(&s)).collect();
        self.played = Some(end);
        let first_arrival = packets
            .iter()
            .map(|p| p.arrival)
            .min()
            .expect("invariant: a ready frame has packets");
        let rtp_timestamp = packets[0].timestamp;
        match depacketize(packets.iter().map(|p| p.payload.as_ref())) {
            Ok(au) if au.keyframe || !self.need_keyframe => {
                if self.need_keyframe {
                    tracing::debug!(timestamp = rtp_timestamp, "keyframe complete");
                }
                self.need_keyframe = false;
                self.keyframe_arriving = None;
                self.stats.frames += 1;
                events.push(Event::Frame(AssembledFrame {
                    rtp_timestamp,
                    au,
                    first_arrival,
                    gap_wait,
                }));
            }
            Ok(_) => self.stats.frames_dropped += 1,
            Err(err) => {
                tracing::debug!(%err, "dropping a malformed frame");
                self.stats.frames_dropped += 1;
                self.need_keyframe = true;
            }
        }
    }

    /// Skips the gap at the head: drops everything up to the next packet that cleanly starts a
    /// frame (its predecessor is held and ends a frame), or everything if there is none.
    fn give_up(&mut self) {
        let clean_start = self
            .held
            .iter()
            .zip(self.held.iter().skip(1))
            .find(|((&a, pa), (&b, pb))| b == a + 1 && (pa.marker || pa.timestamp != pb.timestamp))
            .map(|(_, (&b, _))| b);
        let cut = clean_start.unwrap_or(u64::MAX);
        let dropped: BTreeSet<u32> = self.held.range(..cut).map(|(_, p)| p.timestamp).collect();
        self.held.retain(|&seq, _| seq >= cut);
        // The keyframe on its way was incomplete: ask for another at once.
        let keyframe_lost = self
            .keyframe_arriving
            .is_some_and(|(ts, _)| dropped.contains(&ts));
        if keyframe_lost {
            self.keyframe_arriving = None;
        }
        self.played = Some(match clean_start {
            Some(start) => start - 1,
            None => self.highest.unwrap_or(0),
        });
        self.stats.frames_dropped += dropped.len().max(1) as u64;
        tracing::debug!(frames = dropped.len(), keyframe_lost, "gave up on a gap");
        self.need_keyframe = true;
    }
}

/// Whether an H.264 RTP payload starts a NAL unit (single NAL, STAP-A, or the first FU-A).
fn begins_nal_unit(payload: &[u8]) -> bool {
    match payload.first().map(|h| h & 0x1F) {
        Some(1..=24) => true,
        Some(28) => payload.get(1).is_some_and(|fu| fu & 0x80 != 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets of a frame: `n` packets, IDR when `key`.
    fn frame(first_seq: u16, ts: u32, n: usize, key: bool) -> Vec<RtpIn> {
        let nal_type = if key { 5 } else { 1 };
        if n == 1 {
            return vec![RtpIn {
                seq: first_seq,
                timestamp: ts,
                marker: true,
                payload: Bytes::from(vec![0x60 | nal_type, ts as u8]),
            }];
        }
        (0..n)
            .map(|i| {
                let mut fu = nal_type;
                if i == 0 {
                    fu |= 0x80;
                }
                if i == n - 1 {
                    fu |= 0x40;
                }
                RtpIn {
                    seq: first_seq.wrapping_add(i as u16),
                    timestamp: ts,
                    marker: i == n - 1,
                    payload: Bytes::from(vec![0x7C, fu, i as u8]),
                }
            })
            .collect()
    }

    fn frames(events: &[Event]) -> Vec<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(f) => Some(f.rtp_timestamp),
                Event::KeyframeNeeded => None,
            })
            .collect()
    }

    fn keyframe_requests(events: &[Event]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::KeyframeNeeded))
            .count()
    }

    #[test]
    fn in_order_frames_come_out_at_once() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let mut out = Vec::new();
        out.extend(a.push(frame(10, 0, 1, true).remove(0), t0));
        for p in frame(11, 3000, 3, false) {
            out.extend(a.push(p, t0));
        }
        assert_eq!(frames(&out), vec![0, 3000]);
        assert_eq!(keyframe_requests(&out), 0);
        let Event::Frame(f) = &out[1] else { panic!() };
        assert_eq!(f.au.annexb, vec![0, 0, 0, 1, 0x61, 0, 1, 2]);
    }

    #[test]
    fn reordered_packets_wait_for_each_other() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let mut key = frame(100, 0, 3, true);
        key.swap(0, 2);
        let mut out = Vec::new();
        for p in key {
            out.extend(a.push(p, t0));
        }
        assert_eq!(frames(&out), vec![0]);
        assert_eq!(a.stats().reordered, 2);
    }

    #[test]
    fn a_retransmission_within_the_wait_fills_the_gap() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        a.push(frame(1, 0, 1, true).remove(0), t0);
        let mut second = frame(2, 3000, 3, false);
        let lost = second.remove(1);
        for p in second {
            assert!(frames(&a.push(p, t0)).is_empty());
        }
        assert!(frames(&a.push(frame(5, 6000, 1, false).remove(0), t0)).is_empty());
        assert!(frames(&a.poll(t0 + Duration::from_millis(50))).is_empty());
        let out = a.push(lost, t0 + Duration::from_millis(60));
        assert_eq!(frames(&out), vec![3000, 6000]);
        assert_eq!(a.stats().frames_dropped, 0);
    }

    /// The `gap_wait` of each frame in `events`.
    fn gap_waits(events: &[Event]) -> Vec<Option<Duration>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(f) => Some(f.gap_wait),
                Event::KeyframeNeeded => None,
            })
            .collect()
    }

    #[test]
    fn frames_released_after_a_gap_say_how_long_it_held_them() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = FrameAssembler::new();
        assert_eq!(
            gap_waits(&a.push(frame(1, 0, 1, true).remove(0), t0)),
            [None]
        );
        // The second frame's middle packet is lost; the third frame comes in whole behind it.
        let mut second = frame(2, 3000, 3, false);
        let lost = second.remove(1);
        for p in second {
            a.push(p, t0 + ms(2));
        }
        a.push(frame(5, 6000, 1, false).remove(0), t0 + ms(33));
        a.poll(t0 + ms(50));
        // The resend comes 80 ms after the gap showed: both frames waited on it.
        let out = a.push(lost, t0 + ms(82));
        assert_eq!(frames(&out), [3000, 6000]);
        assert_eq!(gap_waits(&out), [Some(ms(80)), Some(ms(80))]);
        // The next frame waited for nothing.
        assert_eq!(
            gap_waits(&a.push(frame(6, 9000, 1, false).remove(0), t0 + ms(100))),
            [None]
        );
        // A frame whose last packet is still on its way is not a gap: no wait is recorded.
        let mut fourth = frame(7, 12000, 2, false);
        let last = fourth.pop().unwrap();
        a.push(fourth.remove(0), t0 + ms(133));
        a.poll(t0 + ms(140));
        assert_eq!(gap_waits(&a.push(last, t0 + ms(145))), [None]);
    }

    /// An assembler at 300 ms RTT that has played a keyframe (sequence number 1) at the instant
    /// it returns.
    fn after_a_keyframe() -> (FrameAssembler, Instant) {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        a.set_rtt(Duration::from_millis(300));
        assert_eq!(frames(&a.push(frame(1, 0, 1, true).remove(0), t0)), [0]);
        (a, t0)
    }

    #[test]
    fn a_complete_keyframe_behind_a_gap_ends_the_wait() {
        let ms = Duration::from_millis;
        let (mut a, t0) = after_a_keyframe();
        // The second frame loses a packet; the third comes whole behind it (and needs the second).
        let mut second = frame(2, 3000, 3, false);
        let lost = second.remove(1);
        let mut out = Vec::new();
        for p in second.into_iter().chain(frame(5, 6000, 2, false)) {
            out.extend(a.push(p, t0 + ms(2)));
        }
        // A keyframe (a new rung, say) starts right after the third frame's end.
        let mut key = frame(7, 9000, 3, true);
        let last = key.pop().unwrap();
        for p in key {
            out.extend(a.push(p, t0 + ms(40)));
        }
        assert!(frames(&out).is_empty(), "incomplete: still waiting");
        // Complete: it goes out at once, with nothing before it, long before the wait is over.
        let out = a.push(last, t0 + ms(45));
        assert_eq!(frames(&out), vec![9000]);
        assert_eq!(keyframe_requests(&out), 0);
        assert_eq!(a.stats().frames_dropped, 2);
        assert!(a.max_wait() > ms(500));
        // The resend that comes after is too late to matter.
        assert!(frames(&a.push(lost, t0 + ms(300))).is_empty());
        assert_eq!(a.stats().late, 1);
        assert!(a.keyframe_starts.is_empty(), "played starts are forgotten");
    }

    #[test]
    fn a_keyframe_that_may_have_lost_its_first_packet_is_not_jumped_to() {
        let ms = Duration::from_millis;
        let (mut a, t0) = after_a_keyframe();
        // Packet 4 is lost: the end of frame 2, or the first packet of the keyframe at 5..7 (its
        // parameter sets, say). Nothing tells which, so the gap waits for its resend.
        let mut second = frame(2, 3000, 3, false);
        second.pop();
        let mut out = Vec::new();
        for p in second.into_iter().chain(frame(5, 6000, 3, true)) {
            out.extend(a.push(p, t0 + ms(2)));
        }
        out.extend(a.poll(t0 + ms(100)));
        assert!(frames(&out).is_empty());
        // A keyframe that begins with its parameter sets is whole whatever came before it.
        let sps = RtpIn {
            seq: 8,
            timestamp: 9000,
            marker: false,
            payload: Bytes::from_static(&[0x67, 0x42]),
        };
        let idr = RtpIn {
            seq: 9,
            timestamp: 9000,
            marker: true,
            payload: Bytes::from_static(&[0x65, 0x88]),
        };
        out.extend(a.push(sps, t0 + ms(110)));
        out.extend(a.push(idr, t0 + ms(110)));
        assert_eq!(frames(&out), vec![9000]);
    }

    #[test]
    fn loss_gives_up_after_the_wait_then_waits_for_a_keyframe() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        a.set_rtt(Duration::from_millis(4)); // max_wait 104 ms
        assert_eq!(a.max_wait(), Duration::from_millis(104));
        a.push(frame(1, 0, 1, true).remove(0), t0);
        let mut second = frame(2, 3000, 3, false);
        second.remove(1);
        for p in second {
            a.push(p, t0);
        }
        a.push(frame(5, 6000, 2, false).remove(0), t0);
        a.push(frame(5, 6000, 2, false).remove(1), t0);
        let out = a.poll(t0 + Duration::from_millis(103));
        assert!(out.is_empty());
        let out = a.poll(t0 + Duration::from_millis(104));
        assert!(
            frames(&out).is_empty(),
            "the P frame after the loss cannot be decoded"
        );
        assert_eq!(keyframe_requests(&out), 1);
        assert_eq!(a.stats().frames_dropped, 2);
        // Requests repeat while no keyframe comes, but not more often than KEYFRAME_RETRY.
        assert_eq!(
            keyframe_requests(&a.poll(t0 + Duration::from_millis(134))),
            0
        );
        assert_eq!(
            keyframe_requests(&a.poll(t0 + Duration::from_millis(364))),
            1
        );
        // The lost packet arrives far too late: counted, ignored.
        a.push(
            frame(3, 3000, 1, false).remove(0),
            t0 + Duration::from_millis(374),
        );
        assert_eq!(a.stats().late, 1);
        let out = a.push(
            frame(7, 9000, 1, true).remove(0),
            t0 + Duration::from_millis(384),
        );
        assert_eq!(frames(&out), vec![9000]);
        assert_eq!(keyframe_requests(&out), 0);
    }

    #[test]
    fn gaps_in_a_row_are_given_up_together_not_one_wait_after_another() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        // max_wait 104 ms.
        a.set_rtt(Duration::from_millis(4));
        // A keyframe, two P frames each missing a packet, then a P frame: all in at t0.
        let mut packets = frame(1, 0, 1, true);
        let mut b = frame(2, 3000, 3, false);
        b.remove(1);
        let mut c = frame(5, 6000, 3, false);
        c.remove(1);
        packets.extend(b);
        packets.extend(c);
        packets.extend(frame(8, 9000, 2, false));
        for p in packets {
            a.push(p, t0);
        }
        assert!(frames(&a.poll(t0 + Duration::from_millis(103))).is_empty());
        assert_eq!(a.stats().frames_dropped, 0);
        // Both gaps have waited since t0: both are given up now (and the P frame after them,
        // which needs them), not the second 104 ms later.
        let out = a.poll(t0 + Duration::from_millis(104));
        assert!(frames(&out).is_empty());
        assert_eq!(keyframe_requests(&out), 1);
        assert_eq!(a.stats().frames_dropped, 3);
        a.set_rtt(Duration::from_millis(500));
        assert_eq!(
            a.max_wait(),
            MAX_WAIT,
            "three resend rounds (1580 ms), capped"
        );
        a.set_rtt(Duration::from_millis(80));
        assert_eq!(
            a.max_wait(),
            Duration::from_millis(320),
            "80 ms, twice 90 ms, and the margin"
        );
    }

    #[test]
    fn a_frame_still_arriving_is_not_given_up() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        a.set_rtt(Duration::from_millis(4)); // max_wait 104 ms
        a.push(frame(1, 0, 1, true).remove(0), t0);
        // A keyframe paced out over 800 ms on a slow link, nothing lost.
        let mut out = Vec::new();
        for (i, p) in frame(2, 3000, 9, true).into_iter().enumerate() {
            let at = t0 + Duration::from_millis(100 * i as u64);
            out.extend(a.poll(at));
            out.extend(a.push(p, at));
        }
        assert_eq!(frames(&out), vec![3000]);
        assert_eq!(keyframe_requests(&out), 0);
        assert_eq!(a.stats().frames_dropped, 0);
    }

    #[test]
    fn no_new_request_while_a_keyframe_is_arriving() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = FrameAssembler::new();
        a.set_rtt(Duration::from_millis(4)); // max_wait 104 ms
        a.push(frame(1, 0, 1, true).remove(0), t0);
        // A P frame loses a packet: given up, a keyframe asked for.
        let mut lost = frame(2, 3000, 3, false);
        lost.remove(1);
        lost.extend(frame(5, 6000, 1, false));
        for p in lost {
            a.push(p, t0);
        }
        assert_eq!(keyframe_requests(&a.poll(ms(104))), 1);
        // The keyframe comes slowly: a packet every 100 ms, ten in all, the sixth lost.
        let key = frame(6, 9000, 10, true);
        let mut requests = 0;
        for (i, p) in key.iter().take(5).enumerate() {
            requests += keyframe_requests(&a.push(p.clone(), ms(300 + 100 * i as u64)));
            requests += keyframe_requests(&a.poll(ms(350 + 100 * i as u64)));
        }
        assert_eq!(requests, 0, "asked again while the keyframe was arriving");
        // The rest comes together behind the lost packet: its gap waits for a resend...
        for p in key.iter().skip(6) {
            requests += keyframe_requests(&a.push(p.clone(), ms(900)));
        }
        requests += keyframe_requests(&a.poll(ms(1003)));
        assert_eq!(requests, 0);
        // ...then the keyframe is given up, and asked for again at once.
        let out = a.poll(ms(1004));
        assert!(frames(&out).is_empty());
        assert_eq!(
            keyframe_requests(&out),
            1,
            "the broken keyframe is asked for again"
        );
        // A keyframe that stops arriving half way is asked for again after KEYFRAME_RETRY.
        let mut b = FrameAssembler::new();
        b.push(frame(1, 0, 1, true).remove(0), t0);
        b.request_keyframe();
        assert_eq!(keyframe_requests(&b.poll(t0)), 1);
        b.push(frame(2, 3000, 4, true).remove(0), ms(10));
        assert_eq!(keyframe_requests(&b.poll(ms(259))), 0);
        assert_eq!(keyframe_requests(&b.poll(ms(260))), 1);
    }

    #[test]
    fn starts_only_at_a_keyframe() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let out = a.push(frame(50, 0, 1, false).remove(0), t0);
        assert!(frames(&out).is_empty());
        assert_eq!(keyframe_requests(&out), 1);
        assert_eq!(
            frames(&a.push(frame(51, 3000, 1, true).remove(0), t0)),
            vec![3000]
        );
    }

    #[test]
    fn decoder_keyframe_requests_are_rate_limited() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let requests = |events: Vec<Event>| {
            events
                .iter()
                .filter(|e| matches!(e, Event::KeyframeNeeded))
                .count()
        };
        // The decoder complains every 10 ms for a second: one request per KEYFRAME_RETRY.
        let mut sent = 0;
        for ms in (0..1000).step_by(10) {
            a.request_keyframe();
            sent += requests(a.poll(t0 + Duration::from_millis(ms)));
        }
        let most = 1000 / KEYFRAME_RETRY.as_millis() as usize + 1;
        assert!((1..=most).contains(&sent), "{sent} requests in 1 s");
        assert_eq!(a.stats().keyframe_requests, sent as u64);
    }

    #[test]
    fn keyframe_requests_are_not_repeated_before_an_answer_could_come() {
        let t0 = Instant::now();
        let ms = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = FrameAssembler::new();
        a.set_rtt(Duration::from_millis(500));
        a.push(frame(1, 0, 1, true).remove(0), t0);
        let mut sent_at = Vec::new();
        for at in (0..2000).step_by(10) {
            a.request_keyframe();
            if keyframe_requests(&a.poll(ms(at))) > 0 {
                sent_at.push(at);
            }
        }
        // Every round trip plus `KEYFRAME_ANSWER`, not every `KEYFRAME_RETRY`.
        assert_eq!(sent_at, vec![0, 600, 1200, 1800]);
        // A keyframe still arriving a round trip after its last packet (its resend may come) is
        // not asked for again.
        let mut b = FrameAssembler::new();
        b.set_rtt(Duration::from_millis(500));
        b.push(frame(1, 0, 1, true).remove(0), t0);
        b.request_keyframe();
        assert_eq!(keyframe_requests(&b.poll(t0)), 1);
        b.push(frame(2, 3000, 4, true).remove(0), ms(700));
        b.request_keyframe();
        assert_eq!(keyframe_requests(&b.poll(ms(1299))), 0);
        assert_eq!(keyframe_requests(&b.poll(ms(1300))), 1);
    }

    #[test]
    fn duplicates_wraparound_and_garbage() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let mut out = Vec::new();
        for p in frame(65534, 0, 4, true) {
            out.extend(a.push(p.clone(), t0));
            out.extend(a.push(p, t0));
        }
        assert_eq!(frames(&out), vec![0], "a frame across the 16-bit wrap");
        assert_eq!(
            a.stats().duplicates,
            3,
            "the last duplicate arrives after release: late"
        );
        assert_eq!(a.stats().late, 1);
        // A malformed frame (FU-A without start) is dropped and a keyframe requested.
        let bad = RtpIn {
            seq: 2,
            timestamp: 3000,
            marker: true,
            payload: Bytes::from_static(&[0x7C, 0x41, 9]),
        };
        let out = a.push(bad, t0);
        assert!(frames(&out).is_empty());
        assert_eq!(keyframe_requests(&out), 1);
    }

    #[test]
    fn padding_packets_are_skipped_not_mistaken_for_frames() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        let pad = |seq: u16, ts: u32| RtpIn {
            seq,
            timestamp: ts,
            marker: false,
            payload: Bytes::new(),
        };
        let mut out = Vec::new();
        // Padding before the first frame, between frames, and after the last.
        out.extend(a.push(pad(9, 0), t0));
        out.extend(a.push(frame(10, 0, 2, true).remove(0), t0));
        out.extend(a.push(frame(10, 0, 2, true).remove(1), t0));
        out.extend(a.push(pad(12, 0), t0));
        out.extend(a.push(pad(13, 0), t0));
        out.extend(a.push(frame(14, 3000, 1, false).remove(0), t0));
        out.extend(a.push(pad(15, 3000), t0));
        assert_eq!(frames(&out), vec![0, 3000]);
        assert_eq!(keyframe_requests(&out), 0);
        assert_eq!(a.stats().frames_dropped, 0);
        assert_eq!(a.stats().padding, 4);
    }

    #[test]
    fn a_flood_of_unfinished_frames_is_bounded() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new();
        a.push(frame(0, 0, 1, true).remove(0), t0);
        // Packet 1 never arrives; thousands of later packets pile up behind it.
        for i in 0..3000u16 {
            a.push(
                frame(2 + i, 3000 + u32::from(i) * 3000, 1, false).remove(0),
                t0,
            );
        }
        assert!(a.held.len() <= MAX_HELD);
    }
}
