//! The NACK requester: asks the sender again for missing video packets, paced by the round trip.
//! A gap is asked for as soon as it is seen (after a few ms for reordering), asked again only once
//! a resend could have arrived (one round trip plus 10 ms), at most `MAX_REQUESTS` times (each
//! repeat twice, 10 ms apart), and never for packets of frames the video receiver has already
//! given up on (`ReceiveHorizon`).
//! It replaces rtc-interceptor's generator, which asks on a fixed timer whatever the round trip.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::TransportContext;

use super::bwe::BweShared;
use super::seq;

/// How often the requester looks at its gaps.
pub const TICK: Duration = Duration::from_millis(5);
/// A gap this young may be reordering, not loss.
const REORDER_WAIT: Duration = Duration::from_millis(5);
/// Until a round trip is measured.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// What a resend may take beyond the round trip before it is asked for again.
const RESEND_MARGIN: Duration = Duration::from_millis(10);
/// A repeated request goes out twice, this far apart. A packet asked for again is one whose
/// request or resend was lost (one loss in ten at 5% loss, since the request crosses the lossy
/// link too); if the repeat fails as well, the packet comes a third round trip later, after the
/// frame's playout time (a freeze). With the repeat sent twice (and so resent twice: the sender
/// answers every request), that takes four losses instead of two, for about one packet more per
/// ten losses.
const ECHO_AFTER: Duration = Duration::from_millis(10);
/// How many times one packet is asked for: a resend that is itself lost gets one more chance.
pub const MAX_REQUESTS: u8 = 3;
/// Older gaps are forgotten: the frame they belong to is long gone.
const MAX_AGE: Duration = Duration::from_secs(1);
/// A jump this large is a new stream or a long outage: a keyframe is cheaper than the resends.
const MAX_GAP: u64 = 500;

/// The video receiver's progress, for the requester: the last sequence number it released or
/// gave up on, per SSRC. Packets at or before it are no longer worth a request.
#[derive(Debug, Default)]
pub struct ReceiveHorizon {
    /// bit 63: set; bits 16..48: SSRC; bits 0..16: sequence number.
    packed: AtomicU64,
}

impl ReceiveHorizon {
    pub fn set(&self, ssrc: u32, seq: u16) {
        let packed = (1 << 63) | (u64::from(ssrc) << 16) | u64::from(seq);
        self.packed.store(packed, Relaxed);
    }

    pub fn get(&self) -> Option<(u32, u16)> {
        let packed = self.packed.load(Relaxed);
        (packed >> 63 == 1).then_some(((packed >> 16) as u32, packed as u16))
    }

    /// Whether `seq` of `ssrc` is at or before the horizon.
    fn passed(&self, ssrc: u32, seq: u16) -> bool {
        match self.get() {
            Some((s, horizon)) if s == ssrc => (horizon.wrapping_sub(seq) as i16) >= 0,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    seen: Instant,
    asked: Option<Instant>,
    requests: u8,
    /// When a repeated request is sent once more (`ECHO_AFTER`).
    echo: Option<Instant>,
}

#[derive(Debug, Default)]
struct Stream {
    /// Highest extended sequence number received.
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
}

impl Stream {
    fn extend(&self, seq: u16) -> u64 {
        seq::extend(self.highest, u64::from(seq), 16)
    }

    fn received(&mut self, seq: u16, now: Instant) {
        let ext = self.extend(seq);
        match self.highest {
            None => self.highest = Some(ext),
            Some(highest) if ext > highest => {
                if ext - highest > MAX_GAP {
                    self.missing.clear();
                } else {
                    for gap in highest + 1..ext {
                        self.missing.insert(
                            gap,
                            Missing {
                                seen: now,
                                asked: None,
                                requests: 0,
                                echo: None,
                            },
                        );
                    }
                }
                self.highest = Some(ext);
            }
            Some(_) => {
                self.missing.remove(&ext);
            }
        }
    }

    /// The sequence numbers to ask for now; forgets what is no longer worth asking for.
    fn due(
        &mut self,
        ssrc: u32,
        now: Instant,
        resend_after: Duration,
        horizon: &ReceiveHorizon,
    ) -> Vec<u16> {
        self.missing.retain(|&ext, m| {
            (m.requests < MAX_REQUESTS || m.echo.is_some())
                && now.duration_since(m.seen) < MAX_AGE
                && !horizon.passed(ssrc, ext as u16)
        });
        let mut due = Vec::new();
        for (&ext, m) in &mut self.missing {
            if m.echo.is_some_and(|at| now >= at) {
                m.echo = None;
                due.push(ext as u16);
                continue;
            }
            let ready = m.requests < MAX_REQUESTS
                && match m.asked {
                    None => now.duration_since(m.seen) >= REORDER_WAIT,
                    Some(asked) => now.duration_since(asked) >= resend_after,
                };
            if ready {
                m.asked = Some(now);
                m.requests += 1;
                if m.requests > 1 {
                    m.echo = Some(now + ECHO_AFTER);
                }
                due.push(ext as u16);
            }
        }
        due
    }
}

/// How long a request waits before it is repeated: a resend needs a round trip to come back,
/// plus `RESEND_MARGIN` for the sender's pacer and the ticks on both sides (libwebrtc waits one
/// round trip). Until 2026-12-02 it waited a quarter more: on an 80 ms round trip at 5% loss a
/// packet whose request or resend was lost twice then came 3.5 round trips after its gap showed,
/// after the receiver had given up on it (a keyframe and a freeze each time).
pub fn resend_interval(rtt: Duration) -> Duration {
    (rtt + RESEND_MARGIN).max(Duration::from_millis(20))
}

/// The interceptor (at `Slot::NackGenerator`).
pub struct NackRequester {
    shared: Arc<BweShared>,
    sender_ssrc: u32,
    streams: HashMap<u32, Stream>,
    next_tick: Option<Instant>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl NackRequester {
    /// `shared`: where the round trip and the receiver's horizon are read, and the requests counted.
    pub fn new(shared: Arc<BweShared>) -> Self {
        Self {
            shared,
            sender_ssrc: rand::random(),
            streams: HashMap::new(),
            next_tick: None,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn request(&mut self, now: Instant) {
        let resend_after = resend_interval(self.shared.rtt().unwrap_or(DEFAULT_RTT));
        let horizon = &self.shared.receive_horizon;
        for (&ssrc, stream) in &mut self.streams {
            let due = stream.due(ssrc, now, resend_after, horizon);
            if due.is_empty() {
                continue;
            }
            self.shared
                .nack_requests
                .fetch_add(due.len() as u64, Relaxed);
            let nack = TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: ssrc,
                nacks: nack_pairs_from_sequence_numbers(&due),
            };
            self.write.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack)])),
            });
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackRequester {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                stream.received(packet.header.sequence_number, msg.now);
                if !stream.missing.is_empty() && self.next_tick.is_none() {
                    self.next_tick = Some(msg.now + REORDER_WAIT);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if self.next_tick.is_some_and(|t| now >= t) {
            self.request(now);
            let waiting = self.streams.values().any(|s| !s.missing.is_empty());
            self.next_tick = waiting.then_some(now + TICK);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.next_tick
    }
}

impl Interceptor for NackRequester {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack {
            self.streams.insert(info.ssrc, Stream::default());
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::RTCPFeedback;
    use rtc::rtp::Packet as RtpPacket;

    const SSRC: u32 = 7;

    fn requester(rtt_ms: u64) -> (NackRequester, Arc<BweShared>) {
        let shared = Arc::new(BweShared::default());
        shared.path_rtt_us.store(rtt_ms * 1000, Relaxed);
        let mut r = NackRequester::new(shared.clone());
        r.bind_remote_stream(&StreamInfo {
            ssrc: SSRC,
            rtcp_feedback: vec![RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        });
        (r, shared)
    }

    fn rtp(seq: u16, now: Instant) -> TaggedPacket {
        let mut packet = RtpPacket::default();
        packet.header.ssrc = SSRC;
        packet.header.sequence_number = seq;
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        }
    }

    /// Feeds `seqs` at `now`, then runs the timer until `until` in `TICK` steps; returns every
    /// sequence number asked for, in order.
    fn run(r: &mut NackRequester, seqs: &[u16], now: Instant, until: Instant) -> Vec<u16> {
        for &seq in seqs {
            r.handle_read(rtp(seq, now)).expect("infallible");
            while r.poll_read().is_some() {}
        }
        let mut asked = Vec::new();
        let mut t = now;
        while t <= until {
            r.handle_timeout(t).expect("infallible");
            while let Some(out) = r.poll_write() {
                let Packet::Rtcp(packets) = out.message.packet else {
                    panic!("only NACKs are written")
                };
                for p in packets {
                    let nack = p
                        .as_any()
                        .downcast_ref::<TransportLayerNack>()
                        .expect("a NACK");
                    asked.extend(nack.nacks.iter().flat_map(|pair| pair.packet_list()));
                }
            }
            t += TICK;
        }
        asked
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_gap_is_asked_for_at_once_and_again_only_after_a_round_trip() {
        let (mut r, _) = requester(80);
        let t0 = Instant::now();
        // 3 and 4 are missing.
        let first = run(&mut r, &[1, 2, 5], t0, t0 + ms(20));
        assert_eq!(
            first,
            vec![3, 4],
            "asked for within the reorder wait and a tick"
        );
        // Nothing more until a resend could have come back (asked at 5 ms; 80 ms RTT + 10).
        let quiet = run(&mut r, &[], t0 + ms(25), t0 + ms(90));
        assert!(
            quiet.is_empty(),
            "asked again before a round trip: {quiet:?}"
        );
        let again = run(&mut r, &[], t0 + ms(95), t0 + ms(120));
        assert_eq!(again, vec![3, 4, 3, 4], "the repeat, sent twice");
    }

    #[test]
    fn what_arrives_is_not_asked_for_again() {
        let (mut r, shared) = requester(40);
        let t0 = Instant::now();
        assert_eq!(run(&mut r, &[10, 13], t0, t0 + ms(10)), vec![11, 12]);
        // 11 comes back as a resend; only 12 is asked for again.
        let again = run(&mut r, &[11], t0 + ms(20), t0 + ms(80));
        assert_eq!(again, vec![12, 12], "the repeat, sent twice");
        assert_eq!(shared.nack_requests.load(Relaxed), 4);
    }

    #[test]
    fn requests_stop_after_the_cap() {
        let (mut r, _) = requester(20);
        let t0 = Instant::now();
        let asked = run(&mut r, &[1, 3], t0, t0 + ms(900));
        // The first request once, each repeat twice.
        assert_eq!(asked, vec![2; 1 + 2 * (MAX_REQUESTS as usize - 1)]);
    }

    #[test]
    fn a_repeated_request_is_sent_twice_and_not_after_the_packet_came() {
        let (mut r, shared) = requester(80);
        let t0 = Instant::now();
        assert_eq!(run(&mut r, &[1, 3], t0, t0 + ms(90)), vec![2]);
        // Asked again 90 ms after the first request (at 5 ms), and once more 10 ms later.
        assert_eq!(run(&mut r, &[], t0 + ms(95), t0 + ms(95)), vec![2]);
        assert!(run(&mut r, &[], t0 + ms(100), t0 + ms(100)).is_empty());
        assert_eq!(run(&mut r, &[], t0 + ms(105), t0 + ms(120)), vec![2]);
        assert_eq!(shared.nack_requests.load(Relaxed), 3);
        // A repeat is not echoed once the packet has come.
        let (mut r, _) = requester(80);
        assert_eq!(run(&mut r, &[1, 3], t0, t0 + ms(90)), vec![2]);
        assert_eq!(run(&mut r, &[], t0 + ms(95), t0 + ms(95)), vec![2]);
        assert!(run(&mut r, &[2], t0 + ms(100), t0 + ms(400)).is_empty());
    }

    #[test]
    fn a_frame_the_receiver_gave_up_on_is_not_asked_for() {
        let (mut r, shared) = requester(100);
        let t0 = Instant::now();
        assert_eq!(
            run(&mut r, &[100, 102, 105], t0, t0 + ms(10)),
            vec![101, 103, 104]
        );
        // The receiver gave up through 103: only 104 is still worth a resend.
        shared.receive_horizon.set(SSRC, 103);
        let again = run(&mut r, &[], t0 + ms(130), t0 + ms(200));
        assert_eq!(again, vec![104, 104]);
        // Another stream's horizon says nothing about this one.
        shared.receive_horizon.set(SSRC + 1, 200);
        let third = run(&mut r, &[], t0 + ms(260), t0 + ms(300));
        assert_eq!(third, vec![104, 104]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (mut r, shared) = requester(50);
        let t0 = Instant::now();
        assert_eq!(run(&mut r, &[65534, 1], t0, t0 + ms(10)), vec![65535, 0]);
        shared.receive_horizon.set(SSRC, 65535);
        assert_eq!(run(&mut r, &[], t0 + ms(80), t0 + ms(100)), vec![0, 0]);
    }

    #[test]
    fn a_huge_jump_asks_for_nothing_and_unknown_streams_are_ignored() {
        let (mut r, _) = requester(50);
        let t0 = Instant::now();
        assert!(run(&mut r, &[1, 5000], t0, t0 + ms(50)).is_empty());
        let mut other = rtp(9, t0);
        if let Packet::Rtp(p) = &mut other.message.packet {
            p.header.ssrc = 99;
        }
        r.handle_read(other).expect("infallible");
        assert!(r.poll_read().is_some(), "packets pass through");
        assert!(run(&mut r, &[], t0, t0 + ms(50)).is_empty());
    }
}
