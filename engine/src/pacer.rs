//! The app's pacer (at `Slot::Pacer`): video leaves at a multiple of the congestion controller's
//! target, audio, RTCP and retransmissions never wait behind it, and the video queue is bounded in
//! time (what exceeds it is dropped and counted). A keyframe takes the place of the video queued
//! before it on its stream (nothing decodes from those packets once it is in), and resends of
//! what it replaced are refused. Its state is published in [`BweShared`].

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use crate::bwe::BweShared;
use crate::depacketize::begins_with_sps;

/// Video is paced at this multiple of the target: an IDR or an encoder overshoot drains in a
/// fraction of a second instead of queueing, while a burst still leaves spread out (libwebrtc
/// paces at 2.5x, pion at 1.5x).
pub const PACING_FACTOR: f64 = 2.0;
/// The video queue holds at most this long at the pacing rate; beyond it new video is dropped.
/// Longer would be latency the receiver's jitter buffer has to absorb.
pub const MAX_QUEUE: Duration = Duration::from_millis(300);
/// Resends are refused while the budget owes more than this long at the pacing rate.
const MAX_RESEND_DEBT: Duration = Duration::from_millis(100);
/// The budget accumulates at most this long at the pacing rate (a burst leaves no faster).
const BURST: Duration = Duration::from_millis(10);
/// ... and at least one full packet.
const MIN_BURST_BITS: f64 = 1500.0 * 8.0;

/// Keyframes remembered: more than are ever queued at once (the encoder skips frames while the
/// pacer is behind, so a keyframe rarely has another queued before it).
const KEYFRAMES_KEPT: usize = 4;

/// A token bucket in bits that may go into debt: a packet leaves when the budget is not negative,
/// and pays for itself after. Packets sent at once (audio) pay too, so video yields to them.
#[derive(Debug)]
struct Budget {
    rate_bps: f64,
    bits: f64,
    last: Option<Instant>,
}

impl Budget {
    fn new(rate_bps: f64) -> Self {
        let mut budget = Self {
            rate_bps: 0.0,
            bits: 0.0,
            last: None,
        };
        budget.set_rate(rate_bps);
        budget.bits = budget.burst();
        budget
    }

    fn burst(&self) -> f64 {
        (self.rate_bps * BURST.as_secs_f64()).max(MIN_BURST_BITS)
    }

    fn set_rate(&mut self, rate_bps: f64) {
        self.rate_bps = if rate_bps.is_finite() {
            rate_bps.max(1.0)
        } else {
            1.0
        };
        self.bits = self.bits.min(self.burst());
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.bits = (self.bits + elapsed * self.rate_bps).min(self.burst());
        }
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
    }

    /// Whether a packet may leave now. The tolerance absorbs float rounding, so a timer set by
    /// `ready_at` always finds the budget ready.
    fn ready(&self) -> bool {
        self.bits > -1e-3
    }

    /// When the budget is next out of debt, if it is in debt: at least a nanosecond after the last
    /// refill, rounded up, so a timer never fires without progress.
    fn ready_at(&self) -> Option<Instant> {
        let last = self.last?;
        (!self.ready()).then(|| {
            let nanos = (-self.bits / self.rate_bps * 1e9).ceil().max(1.0);
            last + Duration::from_nanos(nanos as u64)
        })
    }
}

fn bits_of(packet: &TaggedPacket) -> f64 {
    match &packet.message.packet {
        Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
        _ => 0.0,
    }
}

pub struct AppPacer {
    budget: Budget,
    target_bps: f64,
    audio: HashSet<u32>,
    /// Leaves at the next `poll_write`: RTCP, audio, retransmissions.
    urgent: VecDeque<TaggedPacket>,
    /// Video waiting for budget, with its size in bits.
    video: VecDeque<(TaggedPacket, f64)>,
    queued_bits: f64,
    /// Video released by the budget, waiting for `poll_write`.
    released: VecDeque<TaggedPacket>,
    /// The latest keyframes (SSRC, RTP timestamp), newest last: their packets are neither
    /// replaced by a later keyframe nor cut by the time bound.
    keyframes: VecDeque<(u32, u32)>,
    /// The packets the last keyframe replaced (SSRC, sequence number, RTP timestamp: a sequence
    /// number alone comes round again): not worth a resend.
    replaced: HashSet<(u32, u16, u32)>,
    read: VecDeque<TaggedPacket>,
    shared: Arc<BweShared>,
}

impl AppPacer {
    /// A pacer following a target that starts at `target_bps` (the estimator's initial rate).
    pub fn new(target_bps: f64, shared: Arc<BweShared>) -> Self {
        let pacer = Self {
            budget: Budget::new(target_bps * PACING_FACTOR),
            target_bps,
            audio: HashSet::new(),
            urgent: VecDeque::new(),
            video: VecDeque::new(),
            queued_bits: 0.0,
            released: VecDeque::new(),
            keyframes: VecDeque::new(),
            replaced: HashSet::new(),
            read: VecDeque::new(),
            shared,
        };
        pacer.publish();
        pacer
    }

    /// The target the pacer follows (it releases video at `PACING_FACTOR` times this).
    pub fn target_bps(&self) -> f64 {
        self.target_bps
    }

    fn set_target(&mut self, target_bps: f64) {
        self.target_bps = target_bps;
        self.budget.set_rate(target_bps * PACING_FACTOR);
        self.publish();
    }

    fn queue_time(&self) -> Duration {
        Duration::from_secs_f64(self.queued_bits / self.budget.rate_bps)
    }

    fn publish(&self) {
        let queue_ms = u32::try_from(self.queue_time().as_millis()).unwrap_or(u32::MAX);
        self.shared.pacer_queue_ms.store(queue_ms, Relaxed);
        self.shared
            .pacer_rate_bps
            .store(self.budget.rate_bps as u64, Relaxed);
    }

    /// Releases queued video while the budget allows, stamped with the release instant (the
    /// congestion controller wire-ward records it as the departure).
    fn release(&mut self, now: Instant) {
        self.budget.refill(now);
        while self.budget.ready() {
            let Some((mut packet, bits)) = self.video.pop_front() else {
                break;
            };
            self.budget.bits -= bits;
            self.queued_bits = (self.queued_bits - bits).max(0.0);
            packet.now = now;
            self.released.push_back(packet);
            self.shared.pacer_paced.fetch_add(1, Relaxed);
        }
        if self.video.is_empty() {
            self.queued_bits = 0.0;
        }
        self.publish();
    }

    /// A keyframe starting at RTP timestamp `timestamp` is about to queue on stream `ssrc`: the
    /// stream's video queued before it (other keyframes excepted) is dropped.
    fn replace_queued(&mut self, ssrc: u32, timestamp: u32) {
        let keyframes = &self.keyframes;
        let (stale, kept): (VecDeque<_>, VecDeque<_>) =
            self.video
                .drain(..)
                .partition(|(packet, _)| match &packet.message.packet {
                    Packet::Rtp(rtp) => {
                        rtp.header.ssrc == ssrc
                            && !keyframes.contains(&(ssrc, rtp.header.timestamp))
                    }
                    _ => false,
                });
        self.video = kept;
        if !stale.is_empty() {
            tracing::debug!(
                ssrc,
                packets = stale.len(),
                "a keyframe replaced the queued video"
            );
            self.replaced.clear();
        }
        for (packet, bits) in stale {
            if let Packet::Rtp(rtp) = &packet.message.packet {
                self.replaced
                    .insert((ssrc, rtp.header.sequence_number, rtp.header.timestamp));
            }
            self.queued_bits = (self.queued_bits - bits).max(0.0);
            self.shared.pacer_dropped.fetch_add(1, Relaxed);
        }
        if self.keyframes.len() == KEYFRAMES_KEPT {
            self.keyframes.pop_front();
        }
        self.keyframes.push_back((ssrc, timestamp));
        self.publish();
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for AppPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        // The congestion controller (wire-ward) attaches a new target to the feedback that
        // produced it, on its way to the application.
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.set_target(*bits_per_second);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let ssrc = match &msg.message.packet {
            Packet::Rtp(rtp) => rtp.header.ssrc,
            _ => {
                // RTCP (and anything else) is control traffic: never paced.
                self.urgent.push_back(msg);
                return Ok(());
            }
        };
        let bits = bits_of(&msg);
        let now = msg.now;
        let retransmission = msg.message.has(&Attribute::Retransmission);
        if retransmission {
            let replaced = match &msg.message.packet {
                Packet::Rtp(rtp) => self.replaced.contains(&(
                    ssrc,
                    rtp.header.sequence_number,
                    rtp.header.timestamp,
                )),
                _ => false,
            };
            if replaced {
                self.shared.resends_refused.fetch_add(1, Relaxed);
                return Ok(());
            }
            // Resends borrow from video's budget, but only so far: after a burst loss (an IDR
            // into a slow link) unlimited resends kept a 400 kbit/s link full for seconds and
            // video starved behind them.
            self.budget.refill(now);
            if self.budget.bits < -self.budget.rate_bps * MAX_RESEND_DEBT.as_secs_f64() {
                self.shared.resends_refused.fetch_add(1, Relaxed);
                return Ok(());
            }
            self.shared.retransmissions.fetch_add(1, Relaxed);
        }
        if self.audio.contains(&ssrc) || retransmission {
            // Sent at once, but paid for, so queued video makes room.
            self.budget.refill(now);
            self.budget.bits -= bits;
            self.shared.pacer_urgent.fetch_add(1, Relaxed);
            self.urgent.push_back(msg);
            return Ok(());
        }
        if let Packet::Rtp(rtp) = &msg.message.packet {
            if begins_with_sps(&rtp.payload) {
                self.replace_queued(ssrc, rtp.header.timestamp);
            }
        }
        let bound_bits = self.budget.rate_bps * MAX_QUEUE.as_secs_f64();
        // A keyframe cut short is worth nothing and costs another: its packets are not bounded.
        let keyframe = match &msg.message.packet {
            Packet::Rtp(rtp) => self.keyframes.contains(&(ssrc, rtp.header.timestamp)),
            _ => false,
        };
        if !keyframe && !self.video.is_empty() && self.queued_bits + bits > bound_bits {
            self.shared.pacer_dropped.fetch_add(1, Relaxed);
            tracing::trace!(ssrc, "pacer queue full: video packet dropped");
            return Ok(());
        }
        self.queued_bits += bits;
        self.video.push_back((msg, bits));
        self.release(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.urgent
            .pop_front()
            .or_else(|| self.released.pop_front())
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if !self.video.is_empty() {
            self.release(now);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        if self.video.is_empty() {
            None
        } else {
            self.budget.ready_at()
        }
    }
}

impl Interceptor for AppPacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("audio/") {
            self.audio.insert(info.ssrc);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::{TransportContext, TransportMessage};

    const VIDEO: u32 = 1;
    const AUDIO: u32 = 2;
    /// 1188 bytes of payload + 12 of header: 1200 bytes, 9600 bits.
    const PAYLOAD: usize = 1188;

    fn rtp(ssrc: u32, seq: u16, now: Instant) -> TaggedPacket {
        let mut packet = rtc::rtp::packet::Packet::default();
        packet.header.version = 2;
        packet.header.ssrc = ssrc;
        packet.header.sequence_number = seq;
        packet.payload = vec![0u8; PAYLOAD].into();
        TransportMessage {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        }
    }

    fn pacer(target_bps: f64) -> (AppPacer, Arc<BweShared>) {
        let shared = Arc::new(BweShared::default());
        let mut pacer = AppPacer::new(target_bps, shared.clone());
        pacer.bind_local_stream(&StreamInfo {
            ssrc: AUDIO,
            mime_type: "audio/opus".to_owned(),
            ..Default::default()
        });
        pacer.bind_local_stream(&StreamInfo {
            ssrc: VIDEO,
            mime_type: "video/H264".to_owned(),
            ..Default::default()
        });
        (pacer, shared)
    }

    /// Drives the pacer's timer until `until`, returning (release instant, ssrc) of what left.
    fn drain(pacer: &mut AppPacer, until: Instant) -> Vec<(Instant, u32)> {
        let mut out = Vec::new();
        loop {
            while let Some(packet) = pacer.poll_write() {
                let Packet::Rtp(rtp) = &packet.message.packet else {
                    panic!("only RTP in these tests")
                };
                out.push((packet.now, rtp.header.ssrc));
            }
            match pacer.poll_timeout() {
                Some(at) if at <= until => pacer.handle_timeout(at).expect("infallible"),
                _ => return out,
            }
        }
    }

    fn feedback_with_target(bps: f64, now: Instant) -> TaggedPacket {
        TransportMessage {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(Vec::new())).with(
                Attribute::TargetBitrateChanged {
                    bits_per_second: bps,
                },
            ),
        }
    }

    #[test]
    fn an_idr_leaves_at_the_paced_rate() {
        // 500 kbit/s target: paced at 1 Mbit/s, so 30 packets of 9600 bits take ~290 ms.
        let (mut pacer, shared) = pacer(500_000.0);
        let start = Instant::now();
        for seq in 0..30 {
            pacer
                .handle_write(rtp(VIDEO, seq, start))
                .expect("infallible");
        }
        assert!(shared.pacer_queue_ms.load(Relaxed) > 250);
        let out = drain(&mut pacer, start + Duration::from_secs(2));
        assert_eq!(out.len(), 30);
        assert_eq!(shared.pacer_dropped.load(Relaxed), 0);
        let last = out.last().expect("released").0 - start;
        let expected = 30.0 * 9600.0 / 1_000_000.0;
        assert!(
            (last.as_secs_f64() - expected).abs() < 0.03,
            "last packet left after {last:?}, expected ~{expected} s"
        );
        // Evenly: no 100 ms window carries more than 100 ms at the pacing rate plus a burst.
        for (at, _) in &out {
            let window = out
                .iter()
                .filter(|(t, _)| *t >= *at && *t < *at + Duration::from_millis(100))
                .count();
            assert!(window <= 12, "{window} packets in 100 ms");
        }
        assert_eq!(shared.pacer_queue_ms.load(Relaxed), 0);
        assert_eq!(shared.pacer_paced.load(Relaxed), 30);
    }

    #[test]
    fn audio_behind_a_queued_idr_leaves_at_once() {
        let (mut pacer, shared) = pacer(500_000.0);
        let start = Instant::now();
        for seq in 0..50 {
            pacer
                .handle_write(rtp(VIDEO, seq, start))
                .expect("infallible");
        }
        let before = drain(&mut pacer, start);
        let audio_at = start + Duration::from_millis(5);
        pacer
            .handle_write(rtp(AUDIO, 0, audio_at))
            .expect("infallible");
        let packet = pacer.poll_write().expect("audio leaves at once");
        let Packet::Rtp(sent) = &packet.message.packet else {
            panic!("RTP expected")
        };
        assert_eq!(sent.header.ssrc, AUDIO);
        assert_eq!(packet.now, audio_at);
        assert!(
            before.len() < 5,
            "the IDR is still queued: {}",
            before.len()
        );
        assert_eq!(shared.pacer_urgent.load(Relaxed), 1);
        // A retransmission of video does not wait either.
        let mut rtx = rtp(VIDEO, 7, start + Duration::from_millis(6));
        rtx.message.add(Attribute::Retransmission);
        pacer.handle_write(rtx).expect("infallible");
        assert!(pacer.poll_write().is_some());
        assert_eq!(shared.pacer_urgent.load(Relaxed), 2);
    }

    #[test]
    fn resends_after_a_burst_loss_are_capped_not_sent_all_at_once() {
        // Paced at 600 kbit/s: 100 ms of debt is 60 kbit, about 6 packets of 9600 bits.
        let (mut pacer, shared) = pacer(300_000.0);
        let start = Instant::now();
        for seq in 0..200 {
            let mut rtx = rtp(VIDEO, seq, start);
            rtx.message.add(Attribute::Retransmission);
            pacer.handle_write(rtx).expect("infallible");
        }
        let sent = drain(&mut pacer, start).len() as u64;
        let refused = shared.resends_refused.load(Relaxed);
        assert_eq!(sent + refused, 200);
        assert_eq!(shared.retransmissions.load(Relaxed), sent);
        assert!((5..=9).contains(&sent), "{sent} resends went out at once");
        // Once the debt is paid, resends go again.
        let mut rtx = rtp(VIDEO, 500, start + Duration::from_millis(200));
        rtx.message.add(Attribute::Retransmission);
        pacer.handle_write(rtx).expect("infallible");
        assert!(pacer.poll_write().is_some());
    }

    #[test]
    fn the_time_bound_drops_what_exceeds_it_and_counts_it() {
        // Paced at 1 Mbit/s, 300 ms hold 31 packets of 9600 bits.
        let (mut pacer, shared) = pacer(500_000.0);
        let start = Instant::now();
        for seq in 0..100 {
            pacer
                .handle_write(rtp(VIDEO, seq, start))
                .expect("infallible");
        }
        let dropped = shared.pacer_dropped.load(Relaxed);
        let out = drain(&mut pacer, start + Duration::from_secs(2));
        assert_eq!(out.len() as u64 + dropped, 100);
        assert!((60..=72).contains(&dropped), "dropped {dropped}");
        assert!(shared.pacer_queue_ms.load(Relaxed) == 0);
    }

    /// Packets of a frame at `timestamp`: `n` from `first_seq`, a keyframe (parameter sets first)
    /// when `key`.
    fn frame(first_seq: u16, timestamp: u32, n: u16, key: bool, now: Instant) -> Vec<TaggedPacket> {
        (0..n)
            .map(|i| {
                let mut packet = rtp(VIDEO, first_seq + i, now);
                if let Packet::Rtp(rtp) = &mut packet.message.packet {
                    rtp.header.timestamp = timestamp;
                    if key && i == 0 {
                        // A STAP-A whose first unit is an SPS.
                        let mut payload = vec![0u8; PAYLOAD];
                        payload[..4].copy_from_slice(&[0x78, 0x00, 0x04, 0x67]);
                        rtp.payload = payload.into();
                    }
                }
                packet
            })
            .collect()
    }

    /// Runs the pacer until `until`: the sequence numbers that left, in order.
    fn sent_seqs(pacer: &mut AppPacer, until: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        loop {
            while let Some(packet) = pacer.poll_write() {
                if let Packet::Rtp(rtp) = &packet.message.packet {
                    out.push(rtp.header.sequence_number);
                }
            }
            match pacer.poll_timeout() {
                Some(at) if at <= until => pacer.handle_timeout(at).expect("infallible"),
                _ => return out,
            }
        }
    }

    #[test]
    fn a_keyframe_replaces_the_video_queued_before_it() {
        // Paced at 1 Mbit/s: a backlog of 20 packets (~190 ms) of two P frames.
        let (mut pacer, shared) = pacer(500_000.0);
        let start = Instant::now();
        let backlog = frame(0, 3000, 10, false, start)
            .into_iter()
            .chain(frame(10, 6000, 10, false, start));
        for packet in backlog {
            pacer.handle_write(packet).expect("infallible");
        }
        let first_out = sent_seqs(&mut pacer, start);
        // A keyframe comes (a new rung): what was queued before it goes, and it leaves next.
        for packet in frame(20, 9000, 12, true, start) {
            pacer.handle_write(packet).expect("infallible");
        }
        // Another keyframe right behind it does not replace the first one.
        for packet in frame(32, 12_000, 3, true, start) {
            pacer.handle_write(packet).expect("infallible");
        }
        let rest = sent_seqs(&mut pacer, start + Duration::from_secs(2));
        assert!(first_out.len() < 3, "{first_out:?}");
        assert_eq!(rest, (20..35).collect::<Vec<u16>>());
        let replaced = 20 - first_out.len() as u64;
        assert_eq!(shared.pacer_dropped.load(Relaxed), replaced);
        // What the keyframe replaced is not worth a resend; what went out still is.
        let resend = |seq: u16, timestamp: u32| {
            let later = start + Duration::from_secs(2);
            let mut rtx = frame(seq, timestamp, 1, false, later).remove(0);
            rtx.message.add(Attribute::Retransmission);
            rtx
        };
        pacer.handle_write(resend(15, 6000)).expect("infallible");
        assert!(pacer.poll_write().is_none());
        assert_eq!(shared.resends_refused.load(Relaxed), 1);
        pacer
            .handle_write(resend(first_out[0], 3000))
            .expect("infallible");
        assert!(pacer.poll_write().is_some());
        // The same sequence number come round again (65536 packets later) is another packet.
        pacer.handle_write(resend(15, 99_000)).expect("infallible");
        assert!(pacer.poll_write().is_some());
    }

    #[test]
    fn a_keyframe_larger_than_the_time_bound_is_not_cut() {
        // Paced at 300 kbit/s: 300 ms hold ~9 packets; the keyframe has 40 (1.3 s).
        let (mut pacer, shared) = pacer(150_000.0);
        let start = Instant::now();
        for packet in frame(0, 3000, 40, true, start) {
            pacer.handle_write(packet).expect("infallible");
        }
        assert_eq!(shared.pacer_dropped.load(Relaxed), 0);
        // A P frame behind it still meets the bound.
        for packet in frame(40, 6000, 2, false, start) {
            pacer.handle_write(packet).expect("infallible");
        }
        assert_eq!(shared.pacer_dropped.load(Relaxed), 2);
        let out = sent_seqs(&mut pacer, start + Duration::from_secs(3));
        assert_eq!(out, (0..40).collect::<Vec<u16>>());
    }

    #[test]
    fn the_rate_follows_target_bitrate_changed() {
        let (mut pacer, shared) = pacer(500_000.0);
        let start = Instant::now();
        pacer
            .handle_read(feedback_with_target(2_000_000.0, start))
            .expect("infallible");
        assert!(
            pacer.poll_read().is_some(),
            "the feedback continues to the application"
        );
        assert_eq!(pacer.target_bps(), 2_000_000.0);
        assert_eq!(shared.pacer_rate_bps.load(Relaxed), 4_000_000);
        for seq in 0..50 {
            pacer
                .handle_write(rtp(VIDEO, seq, start))
                .expect("infallible");
        }
        let out = drain(&mut pacer, start + Duration::from_secs(2));
        let last = out.last().expect("released").0 - start;
        // 480 000 bits at 4 Mbit/s: 120 ms (at 500 kbit/s it would be 480 ms).
        assert!(
            (last.as_secs_f64() - 0.12).abs() < 0.02,
            "last packet after {last:?}"
        );
    }
}
