//! The audio jitter buffer: holds Opus packets by RTP timestamp and decides, once per frame of
//! playout (10 or 20 ms, whatever the sender packs), what to play: the packet that is due, a
//! recovery of it from the next packet's FEC, or concealment. Its target delay is the spread of
//! packet delays over the last two seconds (95th percentile minus the minimum) plus one frame, so
//! it grows at once when packets arrive unevenly and shrinks as soon as they stop doing so; when
//! more audio piles up than the target, frames are dropped to bring latency back down, as readily
//! as concealed frames are inserted to grow it (one in five at most). The backlog that queued
//! while the call was set up, delivered in a burst, is not network jitter: what arrives before
//! playout starts is not measured (playout starts once the first packet has waited 5 ms, with the
//! newest target's worth of what came), and what
//! arrives in the stream's first half second leaves the target once that is over. Lip sync
//! can ask for more delay on top (`set_extra_delay`), to wait for late video.
//!
//! Pure logic: time is a parameter.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::seq;
use confab_media::audio::BLOCK_SAMPLES;
use confab_media::SAMPLE_RATE_HZ;

/// Until the first packet says how long its frames are.
const DEFAULT_FRAME_TICKS: u64 = BLOCK_SAMPLES as u64;
/// Longer packets are taken for garbage (Opus packs at most 120 ms).
const MAX_FRAME_TICKS: u64 = SAMPLE_RATE_HZ as u64 * 120 / 1000;
const MAX_TARGET: Duration = Duration::from_millis(400);
/// A missing packet is waited for (rather than skipped) until it is this much later than the
/// sender's pace says, plus the jitter seen.
const LATE_ALLOWANCE: Duration = Duration::from_millis(5);
/// Packets held at most (8 s of 20 ms frames): a stuck playout cannot grow memory.
const MAX_HELD: usize = 400;
/// The delays the target follows: the last two seconds of arrivals.
const DELAY_WINDOW: Duration = Duration::from_secs(2);
/// The share of packets the target lets arrive in time.
const DELAY_PERCENTILE: f64 = 0.95;
/// Audio held above the target at every pop of this long a window is more than the network
/// needs: one frame of it is dropped. The window sees through the phase noise between arrivals
/// and playout, which an instantaneous level would take for excess.
const LEVEL_WINDOW: Duration = Duration::from_millis(500);
/// So much audio above the target (a burst after a stall) is trimmed at once, a frame per pop.
const BURST_MARGIN: Duration = Duration::from_millis(30);
/// The delays of the stream's first packets leave the target once it has run this long: the
/// setup backlog may still be arriving after playout started (the reader drains it a packet at a
/// time while the playout clock ticks), and would otherwise hold the delay up for the whole
/// `DELAY_WINDOW`.
const WARM_UP: Duration = Duration::from_millis(500);
/// Playout starts once the first packet has waited this long: a backlog that queued during the
/// call's setup comes in a burst, the reader handing it over a packet at a time, and starting
/// with its first packet would hold the rest as delay.
const SETTLE: Duration = Duration::from_millis(5);
/// Frames played between two of the windowed trims, as between two stretches.
const FRAMES_BETWEEN_TRIMS: u32 = 5;

/// What to play for the next frame.
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
    /// Frames dropped to bring the delay back to the target (more than half a frame above it).
    pub dropped_for_latency: u64,
    /// Concealed frames inserted to grow the delay to the target.
    pub stretched: u64,
    /// Packets discarded because more than `MAX_HELD` waited (playout had stalled).
    pub dropped_overflow: u64,
    pub jitter_ms: f64,
    pub target_ms: f64,
    /// Audio held ahead of playout now (from the next frame due to the end of the newest packet).
    pub buffered_ms: f64,
    /// The length of the frames the sender packs, in ms.
    pub frame_ms: f64,
}

pub struct AudioJitterBuffer {
    /// Timestamp -> (payload, arrival, samples it decodes to).
    held: BTreeMap<u64, (Bytes, Instant, u64)>,
    highest_ts: Option<u64>,
    /// Extended RTP timestamp due next; `None` until playout starts.
    next_ts: Option<u64>,
    /// (arrival, timestamp) of the previous packet, for the jitter estimate.
    last_arrival: Option<(Instant, u64)>,
    jitter_s: f64,
    /// (arrival, relative delay in s) of the packets of the last `DELAY_WINDOW`: arrival time
    /// minus media time, against an arbitrary origin (only differences matter).
    delays: VecDeque<(Instant, f64)>,
    origin: Option<(Instant, u64)>,
    /// When the stream's first packet came: its warm-up ends `WARM_UP` later.
    first_arrival: Option<Instant>,
    /// The delay spread the target covers (95th percentile minus minimum), in s.
    spread_s: f64,
    /// The length of the newest packet's frame, in RTP ticks.
    frame_ticks: u64,
    /// The length of what `pop` decided last, in ticks.
    popped_ticks: u64,
    /// Concealments in a row: the stream may have stopped (muted, gone).
    missing_run: u32,
    /// Frames played since the last inserted (stretching) frame.
    since_stretch: u32,
    /// Frames the last level window found held above the target, still to trim, and frames
    /// played since the last trim.
    trim_owed: u32,
    since_trim: u32,
    /// The lowest level (audio held, the due frame included) seen at a pop in the current
    /// `LEVEL_WINDOW`, and how much playout that window has covered so far.
    level_min: Duration,
    level_span: Duration,
    /// Added to the target (lip sync: video is later than audio).
    extra: Duration,
    /// The timestamp of the packet `pop` returned last, and how long it had waited here.
    played_ts: Option<u64>,
    played_wait: Duration,
    stats: AudioJitterStats,
    /// Whether a packet carries FEC for the frame before it (Opus LBRR): only then is a lost
    /// frame recovered rather than concealed, and counted so.
    has_fec: fn(&[u8]) -> bool,
    /// How many samples a packet decodes to (the Opus TOC); `None` for garbage.
    packet_samples: fn(&[u8]) -> Option<usize>,
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
            delays: VecDeque::new(),
            origin: None,
            first_arrival: None,
            spread_s: 0.0,
            frame_ticks: DEFAULT_FRAME_TICKS,
            popped_ticks: DEFAULT_FRAME_TICKS,
            missing_run: 0,
            since_stretch: 0,
            trim_owed: 0,
            since_trim: 0,
            level_min: Duration::MAX,
            level_span: Duration::ZERO,
            extra: Duration::ZERO,
            played_ts: None,
            played_wait: Duration::ZERO,
            stats: AudioJitterStats::default(),
            has_fec: confab_codecs::opus::has_fec,
            packet_samples: confab_codecs::opus::packet_samples,
        }
    }

    /// Decides recoverability with `has_fec` instead of Opus's LBRR flag, and frame lengths with
    /// `packet_samples` instead of the Opus TOC (tests use stand-in payloads).
    pub fn with_codec(
        mut self,
        has_fec: fn(&[u8]) -> bool,
        packet_samples: fn(&[u8]) -> Option<usize>,
    ) -> Self {
        self.has_fec = has_fec;
        self.packet_samples = packet_samples;
        self
    }

    pub fn stats(&self) -> AudioJitterStats {
        AudioJitterStats {
            jitter_ms: self.jitter_s * 1000.0,
            target_ms: self.target().as_secs_f64() * 1000.0,
            buffered_ms: self.buffered().as_secs_f64() * 1000.0,
            frame_ms: ticks(self.frame_ticks).as_secs_f64() * 1000.0,
            ..self.stats
        }
    }

    /// The samples of what `pop` decided last: the length to conceal or recover.
    pub fn frame_samples(&self) -> usize {
        self.popped_ticks as usize
    }

    /// The length of the frame the next `pop` will most likely decide (the newest packet's).
    pub fn next_frame_samples(&self) -> usize {
        self.frame_ticks as usize
    }

    /// The delay the buffer aims for: the delay spread of the last two seconds plus one frame,
    /// plus what lip sync asks for.
    pub fn target(&self) -> Duration {
        (ticks(self.frame_ticks) + Duration::from_secs_f64(self.spread_s)).min(MAX_TARGET)
            + self.extra
    }

    /// Holds `extra` more audio than the network needs (lip sync: the video is that much later).
    /// Growing stretches playout a frame at a time; shrinking trims it.
    pub fn set_extra_delay(&mut self, extra: Duration) {
        self.extra = extra;
    }

    /// The RTP timestamp of the packet `pop` returned last (lip sync asks when it was captured).
    pub fn played_timestamp(&self) -> Option<u32> {
        self.played_ts.map(|ts| ts as u32)
    }

    /// How long the packet `pop` returned last had waited in the buffer, from its arrival.
    pub fn played_wait(&self) -> Duration {
        self.played_wait
    }

    fn extend(&self, ts: u32) -> u64 {
        seq::extend(self.highest_ts, u64::from(ts), 32)
    }

    /// Records the packet's delay relative to the first one and recomputes the spread.
    fn measure_delay(&mut self, ts: u64, now: Instant) {
        let (t0, ts0) = *self.origin.get_or_insert((now, ts));
        let arrival = now.saturating_duration_since(t0).as_secs_f64()
            - t0.saturating_duration_since(now).as_secs_f64();
        let media = (ts as f64 - ts0 as f64) / f64::from(SAMPLE_RATE_HZ);
        self.delays.push_back((now, arrival - media));
        let first = self.first_arrival.unwrap_or(now);
        let warmed_up = now.saturating_duration_since(first) > WARM_UP;
        while self.delays.front().is_some_and(|&(at, _)| {
            now.saturating_duration_since(at) > DELAY_WINDOW
                || (warmed_up && at.saturating_duration_since(first) <= WARM_UP)
        }) {
            self.delays.pop_front();
        }
        let mut sorted: Vec<f64> = self.delays.iter().map(|&(_, d)| d).collect();
        sorted.sort_by(f64::total_cmp);
        let high = sorted[((sorted.len() - 1) as f64 * DELAY_PERCENTILE).round() as usize];
        self.spread_s = (high - sorted[0]).max(0.0);
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
        self.first_arrival.get_or_insert(now);
        // Before playout starts, what comes is the backlog of the call's setup (or of a pause),
        // delivered at once: its spread is the backlog's length, not the network's jitter.
        if self.next_ts.is_some() {
            self.measure_delay(ts, now);
        }
        let Some(samples) = (self.packet_samples)(&payload)
            .map(|n| n as u64)
            .filter(|&n| n <= MAX_FRAME_TICKS)
        else {
            // Not a packet the decoder could play; counted as lost when its turn comes.
            return;
        };
        if self.next_ts.is_some_and(|next| ts < next) {
            self.stats.late += 1;
            return;
        }
        if self.held.contains_key(&ts) {
            self.stats.duplicates += 1;
            return;
        }
        if self.highest_ts.is_none_or(|h| ts >= h) {
            self.frame_ticks = samples;
        }
        self.highest_ts = Some(self.highest_ts.map_or(ts, |h| h.max(ts)));
        self.held.insert(ts, (payload, now, samples));
        while self.held.len() > MAX_HELD {
            self.held.pop_first();
            self.stats.dropped_overflow += 1;
        }
    }

    /// Audio held ahead of playout.
    fn buffered(&self) -> Duration {
        self.next_ts
            .map_or(Duration::ZERO, |next| self.buffered_from(next))
    }

    /// Audio held from timestamp `ts` to the end of the newest packet.
    fn buffered_from(&self, ts: u64) -> Duration {
        let end = self.highest_ts.map(|high| {
            high + self
                .held
                .get(&high)
                .map_or(self.frame_ticks, |&(_, _, n)| n)
        });
        match end {
            Some(end) if end > ts => ticks(end - ts),
            _ => Duration::ZERO,
        }
    }

    /// Whether the packet at `ts` should have arrived by `now`, going by when the latest one
    /// came and the sender's pace, with an allowance for the jitter seen.
    fn overdue(&self, ts: u64, now: Instant) -> bool {
        let Some((arrival, last_ts)) = self.last_arrival else {
            return true;
        };
        let ahead = ts.saturating_sub(last_ts) as f64 / f64::from(SAMPLE_RATE_HZ);
        let allowance = LATE_ALLOWANCE.as_secs_f64() + self.jitter_s;
        now.saturating_duration_since(arrival).as_secs_f64() > ahead + allowance
    }

    /// What to play for the next frame (`frame_samples` says how long it is).
    pub fn pop(&mut self, now: Instant) -> Playout {
        self.popped_ticks = self.frame_ticks;
        let Some(next) = self.next_ts else {
            // Start once the target's worth of audio is here (with the newest of it: what
            // queued longer is dropped), or once the first packet has waited out the target;
            // not before the first packet has waited `SETTLE`, for the rest of a backlog.
            let Some((&first, &(_, arrival, _))) = self.held.first_key_value() else {
                return Playout::Silence;
            };
            let target = self.target();
            let waited = now.saturating_duration_since(arrival);
            if waited < SETTLE {
                return Playout::Silence;
            }
            if self.buffered_from(first) >= target {
                let start = self
                    .held
                    .keys()
                    .copied()
                    .rfind(|&ts| self.buffered_from(ts) >= target)
                    .unwrap_or(first);
                let stale = self.held.range(..start).count() as u64;
                self.stats.dropped_for_latency += stale;
                self.held.retain(|&ts, _| ts >= start);
                self.next_ts = Some(start);
            } else if waited >= target {
                self.next_ts = Some(first);
            } else {
                return Playout::Silence;
            }
            return self.pop(now);
        };
        let due_len = self.held.get(&next).map(|&(_, _, n)| n);
        // Too much piled up: skip frames to cut the delay, at once after a burst, else what a
        // whole window stayed above the target (by more than half a frame), a frame at a time.
        let level = self.buffered();
        let frame = ticks(self.frame_ticks);
        let target = self.target();
        self.level_min = self.level_min.min(level);
        self.level_span += frame;
        if self.level_span >= LEVEL_WINDOW {
            if self.level_min > target + frame / 2 {
                let excess = (self.level_min - target).as_secs_f64() / frame.as_secs_f64();
                self.trim_owed = excess.round() as u32;
            }
            self.level_min = Duration::MAX;
            self.level_span = Duration::ZERO;
        }
        if self.trim_owed > 0 && level <= target + frame / 2 {
            self.trim_owed = 0;
        }
        let trim = self.trim_owed > 0 && self.since_trim >= FRAMES_BETWEEN_TRIMS;
        if let Some(len) = due_len {
            if (level > target + BURST_MARGIN || trim) && self.held.contains_key(&(next + len)) {
                self.held.remove(&next);
                self.next_ts = Some(next + len);
                self.stats.dropped_for_latency += 1;
                if trim {
                    self.trim_owed -= 1;
                    self.since_trim = 0;
                }
                return self.pop(now);
            }
        }
        // Too little held for the jitter seen: play one concealed frame without advancing, which
        // adds a frame of delay (NetEq's "expand"), so packets that come late still come in time.
        // At most one in five frames, so that audio keeps moving while the delay grows.
        self.since_stretch = self.since_stretch.saturating_add(1);
        if self.since_stretch > 5
            && self.buffered() + ticks(self.frame_ticks) <= self.target()
            && due_len.is_some()
        {
            self.since_stretch = 0;
            self.stats.stretched += 1;
            return Playout::Conceal;
        }
        self.held.retain(|&ts, _| ts >= next);
        if let Some((payload, arrival, len)) = self.held.remove(&next) {
            self.played_ts = Some(next);
            self.played_wait = now.saturating_duration_since(arrival);
            self.next_ts = Some(next + len);
            self.popped_ticks = len;
            self.missing_run = 0;
            self.since_trim = self.since_trim.saturating_add(1);
            self.stats.played += 1;
            return Playout::Packet(payload);
        }
        // The due frame is missing: it is as long as the gap to the next packet, or the newest
        // frame's length.
        let len = self.held.keys().next().map_or(self.frame_ticks, |&later| {
            (later - next).min(self.frame_ticks)
        });
        self.popped_ticks = len;
        self.next_ts = Some(next + len);
        self.missing_run += 1;
        if self.held.is_empty() && self.missing_run > 10 {
            // The stream paused (muted, or gone): start over when it resumes, at the target delay.
            self.next_ts = None;
            return Playout::Silence;
        }
        if self.held.is_empty() && !self.overdue(next, now) {
            // Not due yet by the sender's clock, and nothing after it has come: playout runs
            // ahead of the sender (the device's clock is faster). Wait for it: conceal without
            // advancing, which adds a frame of delay, rather than skip it and stay on the edge.
            self.next_ts = Some(next);
            self.stats.stretched += 1;
            return Playout::Conceal;
        }
        if let Some((payload, _, _)) = self.held.get(&(next + len)) {
            if (self.has_fec)(payload) {
                self.stats.recovered += 1;
                return Playout::Recover(payload.clone());
            }
        }
        self.stats.concealed += 1;
        Playout::Conceal
    }
}

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / f64::from(SAMPLE_RATE_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_millis(20);

    /// A buffer for stand-in payloads of 20 ms frames: odd ones "carry FEC".
    fn jb20() -> AudioJitterBuffer {
        AudioJitterBuffer::new().with_codec(|p| p.last().is_some_and(|b| b % 2 == 1), |_| Some(960))
    }

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
        let mut jb = jb20();
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
        // The pop right after the first packet came waits (for the rest of a backlog); at the
        // next one a second packet is in, and playout starts with the newest frame: the first
        // is dropped rather than held as a frame of delay for the whole call.
        assert_eq!(
            out.iter().position(|p| matches!(p, Playout::Packet(_))),
            Some(1),
            "starts at the second pop"
        );
        assert_eq!(played[0], &Playout::Packet(payload(1)));
        assert_eq!(played.last(), Some(&&Playout::Packet(payload(99))));
        // Nothing else is lost or trimmed; the last pop (past the stream's end) waits for a
        // packet that never comes.
        let s = jb.stats();
        assert_eq!(s.dropped_for_latency, 1, "{s:?}");
        assert_eq!(played.len(), 99);
        assert_eq!(s.concealed, 0, "{s:?}");
        assert!(s.stretched <= 1, "{s:?}");
        assert!(s.target_ms < 25.0, "{s:?}");
    }

    #[test]
    fn loss_is_recovered_from_fec_or_concealed() {
        let lost = |n| n == 10 || n == 20 || n == 21 || n == 29;
        let (out, jb) = run(50, |_| Duration::ZERO, lost);
        let s = jb.stats();
        assert_eq!(s.played, 45, "50, 4 lost, the first dropped at the start");
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
        let mut jb = jb20();
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
        let mut fresh = jb20();
        fresh.push(0, payload(0), t0);
        assert_eq!(fresh.pop(t0 + SETTLE), Playout::Packet(payload(0)));
        for n in 1..3 {
            fresh.push(n * 960, payload(n), t0 + F);
        }
        assert_eq!(fresh.stats().buffered_ms, 40.0);
        assert_eq!(fresh.stats().dropped_overflow, 0);
    }

    #[test]
    fn playout_faster_than_the_sender_waits_instead_of_skipping() {
        // Packets every 20 ms; playout asks every 19.98 ms (a device 0.1% fast), 5 ms out of
        // phase: over 40 s it runs two frames ahead, and must wait for them, not skip them.
        let t0 = Instant::now();
        let mut jb = jb20();
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
        // Nothing is skipped: the buffer waits for the sender.
        assert_eq!(
            (s.late, s.concealed, s.dropped_for_latency),
            (0, 0, 0),
            "{s:?}"
        );
        assert!((1..=4).contains(&s.stretched), "{s:?}");
        let trimmed = played
            .iter()
            .zip(played.iter().skip(1))
            .filter(|(a, b)| {
                u32::from_be_bytes(a[..].try_into().unwrap()) + 1
                    != u32::from_be_bytes(b[..].try_into().unwrap())
            })
            .count();
        assert_eq!(trimmed, 0, "every packet in order");
    }

    #[test]
    fn a_backlog_is_trimmed_and_a_pause_restarts_cleanly() {
        let t0 = Instant::now();
        let mut jb = jb20();
        // 15 frames arrive at once after a stall, then the stream goes on at its pace for 3 s.
        for n in 0..15 {
            jb.push(n * 960, payload(n), t0);
        }
        let mut next = 15;
        for tick in 0..150 {
            let now = t0 + F * (tick + 2);
            while next < 165 && t0 + F * (next - 14) <= now {
                jb.push(next * 960, payload(next), t0 + F * (next - 14));
                next += 1;
            }
            jb.pop(now);
        }
        let s = jb.stats();
        // The burst counts as jitter for two seconds; once forgotten, the backlog is trimmed.
        assert!(s.dropped_for_latency >= 5, "{s:?}");
        assert!(s.buffered_ms <= s.target_ms + 20.0, "{s:?}");
        assert!(s.target_ms < 25.0, "{s:?}");
        // Then nothing for a long time: it goes back to silence instead of concealing forever.
        let later: Vec<Playout> = (0..30).map(|k| jb.pop(t0 + F * (160 + k))).collect();
        assert_eq!(later.last(), Some(&Playout::Silence));
        // Timestamps wrap at 2^32 without confusion.
        let mut wrap = jb20();
        wrap.push(u32::MAX - 959, payload(1), t0);
        assert_eq!(wrap.pop(t0 + SETTLE), Playout::Packet(payload(1)));
        wrap.push(0, payload(2), t0 + F);
        assert_eq!(wrap.pop(t0 + F + SETTLE), Playout::Packet(payload(2)));
    }

    #[test]
    fn the_backlog_that_queued_during_setup_is_not_taken_for_jitter() {
        // The first 10 packets (200 ms) queued before the receiver read any: they arrive together
        // with the 10th, then the stream runs on time.
        let (out, jb) = run(
            75,
            |n| if n < 9 { F * (9 - n) } else { Duration::ZERO },
            |_| false,
        );
        let s = jb.stats();
        // Playout started with the newest frame (the backlog and the next packet), and the
        // target stayed a frame.
        assert!(s.target_ms < 25.0, "{s:?}");
        assert_eq!(s.dropped_for_latency, 10, "{s:?}");
        assert!(s.buffered_ms <= s.target_ms + 20.0, "{s:?}");
        assert_eq!(s.concealed, 0, "{s:?}");
        assert!(out.iter().any(|p| matches!(p, Playout::Packet(_))));
    }

    #[test]
    fn a_backlog_that_arrives_after_playout_started_leaves_the_target_after_the_warm_up() {
        // Packet 0 comes alone and starts playout; 1-8 queued and arrive together with 9
        // (160 ms late at most), then the stream runs on time. One second in, the burst no longer
        // counts as jitter and the audio it piled up was trimmed.
        let (_, jb) = run(
            50,
            |n| {
                if (1..9).contains(&n) {
                    F * (9 - n)
                } else {
                    Duration::ZERO
                }
            },
            |_| false,
        );
        let s = jb.stats();
        assert!(s.target_ms < 25.0, "{s:?}");
        assert!(s.buffered_ms <= s.target_ms + 20.0, "{s:?}");
    }

    #[test]
    fn a_backlog_handed_over_just_after_its_first_packet_starts_playout_once() {
        // 10 ms frames. The first packet comes alone; the rest of the backlog (4 packets) 3 ms
        // later, as the reader hands it over; then the stream runs on time. Pops every 10 ms
        // from 1 ms after the first packet.
        let t0 = Instant::now();
        let f = Duration::from_millis(10);
        let mut jb = AudioJitterBuffer::new().with_codec(|_| false, |_| Some(480));
        jb.push(0, payload(0), t0);
        assert_eq!(
            jb.pop(t0 + Duration::from_millis(1)),
            Playout::Silence,
            "not yet"
        );
        for n in 1..5 {
            jb.push(n * 480, payload(n), t0 + Duration::from_millis(3));
        }
        for n in 5..50u32 {
            let at = t0 + f * (n - 4);
            jb.push(n * 480, payload(n), at);
            jb.pop(at + Duration::from_millis(1));
        }
        let s = jb.stats();
        // It started with the newest packet: the backlog was dropped, not measured as jitter.
        assert_eq!(s.dropped_for_latency, 5, "{s:?}");
        assert!(s.target_ms < 15.0, "{s:?}");
        assert!(s.buffered_ms <= s.target_ms, "{s:?}");
    }

    #[test]
    fn a_window_above_the_target_is_trimmed_a_frame_in_five() {
        // A clean stream of 10 ms frames. Lip sync asks for 30 ms more, then (at 1 s) for none:
        // 30 ms above the target is not a burst, so only the level windows see it. All of it
        // goes within about 0.7 s, a frame at a time and never two frames in a row.
        let t0 = Instant::now();
        let f = Duration::from_millis(10);
        let mut jb = AudioJitterBuffer::new().with_codec(|_| false, |_| Some(480));
        let mut played = Vec::new();
        jb.set_extra_delay(Duration::from_millis(30));
        for tick in 0..200u32 {
            jb.push(tick * 480, payload(tick), t0 + f * tick);
            if tick == 100 {
                assert!(jb.stats().buffered_ms >= 35.0, "it grew: {:?}", jb.stats());
                jb.set_extra_delay(Duration::ZERO);
            }
            if let Playout::Packet(p) = jb.pop(t0 + f * tick + Duration::from_millis(1)) {
                played.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            }
            if tick == 170 {
                let s = jb.stats();
                assert!(
                    s.buffered_ms <= s.target_ms + 5.0,
                    "trimmed by 0.7 s: {s:?}"
                );
            }
        }
        let s = jb.stats();
        assert_eq!(s.dropped_for_latency, 3, "{s:?}");
        let skips: Vec<usize> = (1..played.len())
            .filter(|&i| played[i] != played[i - 1] + 1)
            .collect();
        assert_eq!(skips.len(), 3, "{played:?}");
        assert!(
            skips.windows(2).all(|w| w[1] - w[0] >= 5),
            "trims spread out: {skips:?}"
        );
        assert!(
            skips.iter().all(|&i| played[i] == played[i - 1] + 2),
            "{played:?}"
        );
    }

    #[test]
    fn the_target_shrinks_once_the_jitter_stops() {
        // 4 s of every 4th packet 60 ms late, then 4 s of calm.
        let (_, jb) = run(
            400,
            |n| {
                if n < 200 && n % 4 == 0 {
                    Duration::from_millis(60)
                } else {
                    Duration::ZERO
                }
            },
            |_| false,
        );
        let s = jb.stats();
        assert!(
            s.target_ms < 25.0,
            "back to one frame after 2 s of calm: {s:?}"
        );
        assert!(s.stretched > 0, "it did grow: {s:?}");
    }

    #[test]
    fn lip_sync_extra_delay_grows_and_shrinks_the_buffer() {
        // A clean 20 ms stream; lip sync asks for 100 ms more from 2 s to 6 s, then nothing.
        let t0 = Instant::now();
        let mut jb = jb20();
        let mut buffered_at = Vec::new();
        let mut played = Vec::new();
        for n in 0..500u32 {
            jb.set_extra_delay(if (100..300).contains(&n) {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            });
            jb.push(n * 960, payload(n), t0 + F * n);
            if let Playout::Packet(p) = jb.pop(t0 + F * n + Duration::from_millis(1)) {
                played.push(u32::from_be_bytes(p[..].try_into().unwrap()));
                assert_eq!(jb.played_timestamp(), Some(played[played.len() - 1] * 960));
            }
            buffered_at.push(jb.stats().buffered_ms);
        }
        let s = jb.stats();
        assert!(buffered_at[99] <= 20.0, "{buffered_at:?}");
        assert!(
            buffered_at[299] >= 90.0,
            "grew by stretching: {buffered_at:?}"
        );
        assert!(
            buffered_at[499] <= 40.0,
            "shrank by trimming: {buffered_at:?}"
        );
        assert!(s.stretched >= 4 && s.dropped_for_latency >= 4, "{s:?}");
        assert_eq!(s.concealed, 0, "{s:?}");
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
    }

    #[test]
    fn ten_ms_frames_and_a_change_of_frame_length_play_through() {
        // 10 ms packets (480 ticks), then the sender switches to 20 ms.
        let t0 = Instant::now();
        let mut jb = AudioJitterBuffer::new()
            .with_codec(|_| false, |p| Some(if p[0] == 1 { 480 } else { 960 }));
        let mut sent = Vec::new();
        let (mut ts, mut at) = (0u32, Duration::ZERO);
        for n in 0..60u8 {
            let len = if n < 30 { 480 } else { 960 };
            sent.push((ts, at, Bytes::from(vec![if len == 480 { 1 } else { 2 }, n])));
            ts += len;
            at += Duration::from_micros(u64::from(len) * 1_000_000 / 48_000);
        }
        let mut played = Vec::new();
        let mut samples = 0;
        let mut now = Duration::from_millis(1);
        let mut i = 0;
        while played.last() != Some(&59) && now < at + Duration::from_millis(100) {
            while i < sent.len() && sent[i].1 <= now {
                jb.push(sent[i].0, sent[i].2.clone(), t0 + sent[i].1);
                i += 1;
            }
            let p = jb.pop(t0 + now);
            if let Playout::Packet(b) = &p {
                played.push(b[1]);
                samples += jb.frame_samples();
            }
            // The device asks for the next frame once this one has played.
            now += Duration::from_micros(jb.frame_samples() as u64 * 1_000_000 / 48_000);
        }
        // All but the first (dropped at the start: see the clean stream).
        assert_eq!(played, (1..60).collect::<Vec<u8>>(), "{:?}", jb.stats());
        assert_eq!(samples, 29 * 480 + 30 * 960);
        assert_eq!(jb.stats().frame_ms, 20.0);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn a_lost_ten_ms_frame_is_concealed_for_ten_ms() {
        let t0 = Instant::now();
        let f = Duration::from_millis(10);
        let mut jb = AudioJitterBuffer::new().with_codec(|_| false, |p| (p[0] != 0).then_some(480));
        let mut out = Vec::new();
        for n in 0..8u32 {
            // 2 is lost, 5 is garbage.
            match n {
                2 => {}
                5 => jb.push(n * 480, Bytes::from(vec![0]), t0 + f * n),
                _ => jb.push(n * 480, Bytes::from(vec![1, n as u8]), t0 + f * n),
            }
            let p = jb.pop(t0 + f * n + Duration::from_millis(1));
            out.push((p, jb.frame_samples()));
        }
        // Playout starts at the second pop with the newest packet (1; a frame is the target),
        // so when 2 does not come on time it is waited for a frame (concealed, not skipped),
        // then given up.
        assert_eq!(out[0].0, Playout::Silence, "{out:?}");
        assert_eq!(
            out[1].0,
            Playout::Packet(Bytes::from(vec![1, 1])),
            "{out:?}"
        );
        assert_eq!(out[2], (Playout::Conceal, 480), "2 is waited for: {out:?}");
        assert_eq!(jb.stats().stretched, 1, "{out:?}");
        assert_eq!(out[3], (Playout::Conceal, 480), "2 is lost: {out:?}");
        assert_eq!(
            out[4].0,
            Playout::Packet(Bytes::from(vec![1, 3])),
            "{out:?}"
        );
        assert_eq!(
            out[6],
            (Playout::Conceal, 480),
            "garbage is not played: {out:?}"
        );
        assert_eq!(
            out[7].0,
            Playout::Packet(Bytes::from(vec![1, 6])),
            "{out:?}"
        );
    }
}
