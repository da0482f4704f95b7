//! The audio jitter buffer: holds Opus packets by RTP timestamp and decides, once per 20 ms of
//! playout, what to play: the packet that is due, a recovery of it from the next packet's FEC, or
//! concealment. Its target delay adapts: it follows the measured arrival jitter (RFC 3550's
//! estimator), so it stays short on a clean network and grows when packets arrive unevenly; when
//! more audio piles up than the target, a frame is dropped to bring latency back down.
//!
//! Pure logic: time is a parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use confab_media::audio::FRAME_SAMPLES;
use confab_media::SAMPLE_RATE_HZ;

const FRAME_TICKS: u64 = FRAME_SAMPLES as u64;
const MIN_TARGET: Duration = Duration::from_millis(20);
const MAX_TARGET: Duration = Duration::from_millis(400);
/// More audio than the target by this much is trimmed (one frame at a time). With the 20 ms
/// growth step it leaves a 10 ms dead band, so the delay does not oscillate.
const SHRINK_MARGIN: Duration = Duration::from_millis(30);
/// A missing packet is waited for (rather than skipped) until it is this much later than the
/// sender's pace says, plus the jitter seen.
const LATE_ALLOWANCE: Duration = Duration::from_millis(5);
/// Packets held at most (8 s): a stuck playout cannot grow memory.
const MAX_HELD: usize = 400;

/// What to play for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Not started yet (filling to the target delay), or the stream has not begun: play silence.
    Silence,
    /// Decode this packet.
    Packet(Bytes),
    /// The due packet is missing but the next one is here: decode its FEC data.
    Recover(Bytes),
    /// Nothing usable: let the decoder conceal.
    Conceal,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AudioJitterStats {
    pub packets: u64,
    pub late: u64,
    pub duplicates: u64,
    pub played: u64,
    pub recovered: u64,
    pub concealed: u64,
    /// Frames dropped to bring the delay back to the target (more than 30 ms above it).
    pub dropped_for_latency: u64,
    /// Concealed frames inserted to grow the delay to the target.
    pub stretched: u64,
    /// Packets discarded because more than `MAX_HELD` waited (playout had stalled).
    pub dropped_overflow: u64,
    pub jitter_ms: f64,
    pub target_ms: f64,
    /// Audio held ahead of playout now (from the next frame due to the end of the newest packet).
    pub buffered_ms: f64,
}

pub struct AudioJitterBuffer {
    held: BTreeMap<u64, (Bytes, Instant)>,
    highest_ts: Option<u64>,
    /// Extended RTP timestamp due next; `None` until playout starts.
    next_ts: Option<u64>,
    /// (arrival, timestamp) of the previous packet, for the jitter estimate.
    last_arrival: Option<(Instant, u64)>,
    jitter_s: f64,
    /// Concealments in a row: the stream may have stopped (muted, gone).
    missing_run: u32,
    /// Frames played since the last inserted (stretching) frame.
    since_stretch: u32,
    stats: AudioJitterStats,
    /// Whether a packet carries FEC for the frame before it (Opus LBRR): only then is a lost
    /// frame recovered rather than concealed, and counted so.
    has_fec: fn(&[u8]) -> bool,
}

impl Default for AudioJitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioJitterBuffer {
    pub fn new() -> Self {
        Self {
            held: BTreeMap::new(),
            highest_ts: None,
            next_ts: None,
            last_arrival: None,
            jitter_s: 0.0,
            missing_run: 0,
            since_stretch: 0,
            stats: AudioJitterStats::default(),
            has_fec: confab_codecs::opus::has_fec,
        }
    }

    /// Decides recoverability with `has_fec` instead of Opus's LBRR flag (tests use stand-in
    /// payloads).
    pub fn with_fec_check(mut self, has_fec: fn(&[u8]) -> bool) -> Self {
        self.has_fec = has_fec;
        self
    }

    pub fn stats(&self) -> AudioJitterStats {
        AudioJitterStats {
            jitter_ms: self.jitter_s * 1000.0,
            target_ms: self.target().as_secs_f64() * 1000.0,
            buffered_ms: self.buffered().as_secs_f64() * 1000.0,
            ..self.stats
        }
    }

    /// The delay the buffer aims for: room for three times the jitter, within 20..400 ms.
    pub fn target(&self) -> Duration {
        Duration::from_secs_f64(MIN_TARGET.as_secs_f64() + 3.0 * self.jitter_s).min(MAX_TARGET)
    }

    fn extend(&self, ts: u32) -> u64 {
        let Some(highest) = self.highest_ts else {
            return (1 << 33) + u64::from(ts);
        };
        let base = (highest & !0xFFFF_FFFF) | u64::from(ts);
        [base.wrapping_sub(1 << 32), base, base + (1 << 32)]
            .into_iter()
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(base)
    }

    pub fn push(&mut self, timestamp: u32, payload: Bytes, now: Instant) {
        self.stats.packets += 1;
        let ts = self.extend(timestamp);
        // Every arrival (late ones above all) tells how uneven the network is.
        if let Some((prev_arrival, prev_ts)) = self.last_arrival {
            // RFC 3550 A.8: D = (arrival difference) - (timestamp difference), J += (|D| - J) / 16.
            let arrival = now.duration_since(prev_arrival).as_secs_f64()
                - prev_arrival.duration_since(now).as_secs_f64();
            let media = (ts as f64 - prev_ts as f64) / f64::from(SAMPLE_RATE_HZ);
            let d = (arrival - media).abs();
            self.jitter_s += (d - self.jitter_s) / 16.0;
        }
        self.last_arrival = Some((now, ts));
        if self.next_ts.is_some_and(|next| ts < next) {
            self.stats.late += 1;
            return;
        }
        if self.held.contains_key(&ts) {
            self.stats.duplicates += 1;
            return;
        }
        self.highest_ts = Some(self.highest_ts.map_or(ts, |h| h.max(ts)));
        self.held.insert(ts, (payload, now));
        while self.held.len() > MAX_HELD {
            self.held.pop_first();
            self.stats.dropped_overflow += 1;
        }
    }

    /// Audio held ahead of playout.
    fn buffered(&self) -> Duration {
        match (self.next_ts, self.highest_ts) {
            (Some(next), Some(high)) if high + FRAME_TICKS > next => Duration::from_secs_f64(
                (high + FRAME_TICKS - next) as f64 / f64::from(SAMPLE_RATE_HZ),
            ),
            _ => Duration::ZERO,
        }
    }

    /// Whether the packet at `ts` should have arrived by `now`, going by when the latest one
    /// came and the sender's 20 ms pace, with an allowance for the jitter seen.
    fn overdue(&self, ts: u64, now: Instant) -> bool {
        let Some((arrival, last_ts)) = self.last_arrival else {
            return true;
        };
        let ahead = ts.saturating_sub(last_ts) as f64 / f64::from(SAMPLE_RATE_HZ);
        let allowance = LATE_ALLOWANCE.as_secs_f64() + self.jitter_s;
        now.saturating_duration_since(arrival).as_secs_f64() > ahead + allowance
    }

    /// What to play for the next 20 ms.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let Some(next) = self.next_ts else {
            // Start once the first packet has waited out the target delay.
            let Some((&first, &(_, arrival))) = self.held.first_key_value() else {
                return Playout::Silence;
            };
            if now.duration_since(arrival) < self.target() {
                return Playout::Silence;
            }
            self.next_ts = Some(first);
            return self.pop(now);
        };
        // Too much piled up (a burst after a stall): skip a frame to cut the delay.
        if self.buffered() > self.target() + SHRINK_MARGIN
            && self.held.contains_key(&(next + FRAME_TICKS))
        {
            self.held.remove(&next);
            self.next_ts = Some(next + FRAME_TICKS);
            self.stats.dropped_for_latency += 1;
            return self.pop(now);
        }
        // Too little held for the jitter seen: play one concealed frame without advancing, which
        // adds 20 ms of delay (NetEq's "expand"), so packets that come late still come in time.
        // At most one in five frames, so that audio keeps moving while the delay grows.
        self.since_stretch = self.since_stretch.saturating_add(1);
        if self.since_stretch > 5
            && self.buffered() + Duration::from_millis(20) <= self.target()
            && self.held.contains_key(&next)
        {
            self.since_stretch = 0;
            self.stats.stretched += 1;
            return Playout::Conceal;
        }
        self.held.retain(|&ts, _| ts >= next);
        self.next_ts = Some(next + FRAME_TICKS);
        if let Some((payload, _)) = self.held.remove(&next) {
            self.missing_run = 0;
            self.stats.played += 1;
            return Playout::Packet(payload);
        }
        self.missing_run += 1;
        if self.held.is_empty() && self.missing_run > 10 {
            // The stream paused (muted, or gone): start over when it resumes, at the target delay.
            self.next_ts = None;
            return Playout::Silence;
        }
        if self.held.is_empty() && !self.overdue(next, now) {
            // Not due yet by the sender's clock, and nothing after it has come: playout runs
            // ahead of the sender (the device's clock is faster). Wait for it: conceal without
            // advancing, which adds 20 ms of delay, rather than skip it and stay on the edge.
            self.next_ts = Some(next);
            self.stats.stretched += 1;
            return Playout::Conceal;
        }
        if let Some((payload, _)) = self.held.get(&(next + FRAME_TICKS)) {
            if (self.has_fec)(payload) {
                self.stats.recovered += 1;
                return Playout::Recover(payload.clone());
            }
        }
        self.stats.concealed += 1;
        Playout::Conceal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_millis(20);

    fn payload(n: u32) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    /// Runs a clean stream with arrivals offset by `jitter(n)` and returns what was played.
    fn run(
        frames: u32,
        jitter: impl Fn(u32) -> Duration,
        drop: impl Fn(u32) -> bool,
    ) -> (Vec<Playout>, AudioJitterBuffer) {
        let t0 = Instant::now();
        // Stand-in payloads: odd ones "carry FEC".
        let mut jb =
            AudioJitterBuffer::new().with_fec_check(|p| p.last().is_some_and(|b| b % 2 == 1));
        let mut arrivals: Vec<(Instant, u32)> = (0..frames)
            .filter(|&n| !drop(n))
            .map(|n| (t0 + F * n + jitter(n), n))
            .collect();
        arrivals.sort();
        let mut out = Vec::new();
        let mut i = 0;
        // Until the last frame is due.
        for tick in 0..=frames {
            let now = t0 + F * tick + Duration::from_millis(1);
            while i < arrivals.len() && arrivals[i].0 <= now {
                let n = arrivals[i].1;
                jb.push(1000 + n * 960, payload(n), arrivals[i].0);
                i += 1;
            }
            out.push(jb.pop(now));
        }
        (out, jb)
    }

    #[test]
    fn a_clean_stream_plays_everything_with_a_short_delay() {
        let (out, jb) = run(100, |_| Duration::ZERO, |_| false);
        let played: Vec<&Playout> = out
            .iter()
            .filter(|p| matches!(p, Playout::Packet(_)))
            .collect();
        assert_eq!(played.len(), 100);
        assert_eq!(
            out.iter().position(|p| matches!(p, Playout::Packet(_))),
            Some(1),
            "starts after ~20 ms"
        );
        assert_eq!(played[0], &Playout::Packet(payload(0)));
        assert_eq!(played[99], &Playout::Packet(payload(99)));
        assert!(jb.stats().target_ms < 25.0, "{:?}", jb.stats());
    }

    #[test]
    fn loss_is_recovered_from_fec_or_concealed() {
        let lost = |n| n == 10 || n == 20 || n == 21 || n == 29;
        let (out, jb) = run(50, |_| Duration::ZERO, lost);
        let s = jb.stats();
        assert_eq!(s.played, 46);
        assert_eq!(s.recovered, 1, "10 from 11's FEC");
        assert_eq!(
            s.concealed, 3,
            "20 has no next packet, 21's next (22) and 29's next (30) carry no FEC"
        );
        assert!(out.contains(&Playout::Recover(payload(11))));
        assert!(!out.contains(&Playout::Recover(payload(22))));
    }

    #[test]
    fn the_target_grows_under_jitter_and_late_packets_are_counted() {
        // Every 4th packet arrives 70 ms late.
        let (_, jb) = run(
            300,
            |n| {
                if n % 4 == 0 {
                    Duration::from_millis(70)
                } else {
                    Duration::ZERO
                }
            },
            |_| false,
        );
        let s = jb.stats();
        assert!(s.target_ms > 60.0, "target grew: {s:?}");
        assert!(s.played > 280, "{s:?}");
        // Same stream with no jitter stays at the minimum.
        let (_, calm) = run(300, |_| Duration::ZERO, |_| false);
        assert!(calm.stats().target_ms < 25.0);
    }

    #[test]
    fn overflowing_packets_are_counted_and_the_backlog_is_measured() {
        let t0 = Instant::now();
        let mut jb = AudioJitterBuffer::new();
        // Playout stalled: 410 packets wait, 10 more than it holds.
        for n in 0..410 {
            jb.push(n * 960, payload(n), t0);
        }
        assert_eq!(jb.stats().dropped_overflow, 10);
        assert_eq!(
            jb.stats().buffered_ms,
            0.0,
            "nothing is due before playout starts"
        );
        // Once playing, the backlog is the audio from the frame due next to the newest one's end.
        let mut fresh = AudioJitterBuffer::new();
        for n in 0..2 {
            fresh.push(n * 960, payload(n), t0);
        }
        assert_eq!(fresh.pop(t0 + F * 2), Playout::Packet(payload(0)));
        assert_eq!(fresh.stats().buffered_ms, 20.0);
        assert_eq!(fresh.stats().dropped_overflow, 0);
    }

    #[test]
    fn playout_faster_than_the_sender_waits_instead_of_skipping() {
        // Packets every 20 ms; playout asks every 19.98 ms (a device 0.1% fast), 5 ms out of
        // phase: over 40 s it runs two frames ahead, and must wait for them, not skip them.
        let t0 = Instant::now();
        let mut jb = AudioJitterBuffer::new();
        let (frames, mut pushed) = (2000u32, 0u32);
        let mut played = Vec::new();
        for tick in 0..frames {
            let now = t0 + Duration::from_millis(5) + F.mul_f64(0.999 * f64::from(tick));
            while pushed < frames && t0 + F * pushed <= now {
                jb.push(pushed * 960, payload(pushed), t0 + F * pushed);
                pushed += 1;
            }
            if let Playout::Packet(p) = jb.pop(now) {
                played.push(p);
            }
        }
        let s = jb.stats();
        assert_eq!(
            (s.late, s.concealed, s.dropped_for_latency),
            (0, 0, 0),
            "{s:?}"
        );
        assert!((1..=4).contains(&s.stretched), "{s:?}");
        let expected: Vec<Bytes> = (0..played.len() as u32).map(payload).collect();
        assert_eq!(played, expected, "every packet, in order");
    }

    #[test]
    fn a_backlog_is_trimmed_and_a_pause_restarts_cleanly() {
        let t0 = Instant::now();
        let mut jb = AudioJitterBuffer::new();
        // 15 frames arrive at once after a stall.
        for n in 0..15 {
            jb.push(n * 960, payload(n), t0);
        }
        let mut played = Vec::new();
        for tick in 0..15 {
            played.push(jb.pop(t0 + F * (tick + 2)));
        }
        assert!(jb.stats().dropped_for_latency >= 5, "{:?}", jb.stats());
        // Then nothing for a long time: it goes back to silence instead of concealing forever.
        let later: Vec<Playout> = (0..30).map(|k| jb.pop(t0 + F * (20 + k))).collect();
        assert_eq!(later.last(), Some(&Playout::Silence));
        // Timestamps wrap at 2^32 without confusion.
        let mut wrap = AudioJitterBuffer::new();
        wrap.push(u32::MAX - 959, payload(1), t0);
        wrap.push(0, payload(2), t0 + F);
        assert_eq!(wrap.pop(t0 + F * 2), Playout::Packet(payload(1)));
        assert_eq!(wrap.pop(t0 + F * 3), Playout::Packet(payload(2)));
    }
}
