//! Video playout delay on a lossy link. Video is shown as soon as it is decoded while nothing is
//! lost. Once frames keep waiting for retransmissions, a frame recovered by one NACK round trip
//! would freeze the picture for that round trip, and one whose resend was lost too for two (past
//! the 183 ms a freeze takes at 30 fps, on an 80 ms round trip). So, as libwebrtc's jitter
//! estimator does, once `NACK_LIMIT` gaps have held frames, the round trip is added to the
//! playout delay until none has for `NACK_TIMEOUT`: every frame is shown at its on-time delay
//! plus the round trip, and a frame one resend late comes in time. Lip sync then makes audio wait
//! as long (it follows whichever stream is later). Delays are read on the frames' RTP clock (90
//! kHz, the capture clock at any sender) against ours, from the first frame: only their
//! differences count, so no sender report is needed, and the delay is there from the call's first
//! second (the first report comes a second or more in).
//!
//! Pure logic: the times are parameters.

use std::collections::VecDeque;
use std::time::Duration;

use super::seq;
use super::sync::VIDEO_CLOCK_HZ;

/// Gaps that must have held frames before the round trip is added (libwebrtc's `kNackLimit`).
const NACK_LIMIT: u32 = 3;
/// With no gap for this long, the round trip is taken out again (libwebrtc's
/// `kNackCountTimeout`).
const NACK_TIMEOUT: Duration = Duration::from_secs(60);
/// A shorter wait is reordering, not a resend.
const MIN_GAP_WAIT: Duration = Duration::from_millis(10);
/// The most added for resends: beyond it (a queue-filled link's round trip) a freeze costs less
/// than the latency.
const MAX_EXTRA: Duration = Duration::from_millis(150);
/// The round trip assumed until one is measured.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// The on-time delay is the median over this window.
const WINDOW_US: u64 = 2_000_000;
/// A frame this far from the on-time delay is a new clock (a new stream, a sender restarted):
/// the delays are measured afresh.
const CLOCK_JUMP_MS: f64 = 1000.0;

#[derive(Debug, Default)]
pub struct VideoDelay {
    /// The RTP clock against ours: the first frame's extended timestamp and when it was decoded
    /// (µs); and the highest extended timestamp since.
    clock: Option<(u64, u64)>,
    highest_ts: Option<u64>,
    /// Recent frames that did not wait on a gap: (decoded at, delay in ms from the first frame's),
    /// and their median as of the last frame.
    on_time: VecDeque<(u64, f64)>,
    median_ms: Option<f64>,
    /// Gaps that held frames (up to `NACK_LIMIT`), and when the last one ended.
    gaps: u32,
    last_gap_us: u64,
    /// Whether the previous frame waited on a gap: a gap holds a burst of frames, counted once.
    in_gap: bool,
    /// Kept for the median, so that a frame allocates nothing.
    scratch: Vec<f64>,
}

impl VideoDelay {
    /// A frame with RTP timestamp `rtp_timestamp` was decoded at `now_us` (ours); `gap_wait` is
    /// how long a gap held it (`AssembledFrame::gap_wait`) and `rtt` the path's round trip.
    /// Returns how long to hold it before it is shown.
    pub fn frame(
        &mut self,
        rtp_timestamp: u32,
        now_us: u64,
        gap_wait: Option<Duration>,
        rtt: Option<Duration>,
    ) -> Duration {
        let mut delay_ms = self.delay_ms(rtp_timestamp, now_us);
        if self
            .median_ms
            .is_some_and(|median| (delay_ms - median).abs() > CLOCK_JUMP_MS)
        {
            self.clock = None;
            self.highest_ts = None;
            self.on_time.clear();
            delay_ms = self.delay_ms(rtp_timestamp, now_us);
        }
        let waited = gap_wait.is_some_and(|w| w >= MIN_GAP_WAIT);
        if waited {
            if !self.in_gap {
                self.gaps = (self.gaps + 1).min(NACK_LIMIT);
            }
            self.last_gap_us = now_us;
        } else {
            self.on_time.push_back((now_us, delay_ms));
        }
        self.in_gap = waited;
        while self
            .on_time
            .front()
            .is_some_and(|&(at, _)| now_us.saturating_sub(at) > WINDOW_US)
        {
            self.on_time.pop_front();
        }
        if now_us.saturating_sub(self.last_gap_us) > NACK_TIMEOUT.as_micros() as u64 {
            self.gaps = 0;
        }
        self.median_ms = self.median();
        self.target_ms(rtt).map_or(Duration::ZERO, |target| {
            Duration::from_secs_f64((target - delay_ms).max(0.0) / 1000.0)
        })
    }

    /// What is added for resends now (zero until `NACK_LIMIT` gaps).
    pub fn extra(&self, rtt: Option<Duration>) -> Duration {
        if self.gaps < NACK_LIMIT {
            return Duration::ZERO;
        }
        rtt.unwrap_or(DEFAULT_RTT).min(MAX_EXTRA)
    }

    /// How much later than the first frame this one was decoded, against their RTP timestamps
    /// (ms; negative when it came sooner).
    fn delay_ms(&mut self, rtp_timestamp: u32, now_us: u64) -> f64 {
        let ts = seq::extend(self.highest_ts, u64::from(rtp_timestamp), 32);
        self.highest_ts = Some(self.highest_ts.map_or(ts, |h| h.max(ts)));
        let (ts0, at0) = *self.clock.get_or_insert((ts, now_us));
        let captured_ms = (ts as f64 - ts0 as f64) * 1000.0 / f64::from(VIDEO_CLOCK_HZ);
        (now_us as f64 - at0 as f64) / 1000.0 - captured_ms
    }

    /// The median delay of the on-time frames (ms).
    fn median(&mut self) -> Option<f64> {
        self.scratch.clear();
        self.scratch.extend(self.on_time.iter().map(|&(_, ms)| ms));
        if self.scratch.is_empty() {
            return None;
        }
        let middle = self.scratch.len() / 2;
        let (_, median, _) = self.scratch.select_nth_unstable_by(middle, f64::total_cmp);
        Some(*median)
    }

    /// The delay every frame is given (ms, on `delay_ms`'s scale), when resends are waited for.
    fn target_ms(&self, rtt: Option<Duration>) -> Option<f64> {
        let extra = self.extra(rtt);
        if extra.is_zero() {
            return None;
        }
        Some(self.median_ms? + extra.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 33_333;
    const T0: u64 = 1_767_225_600_000_000;
    const RTT: Option<Duration> = Some(Duration::from_millis(80));

    /// RTP timestamp of frame 0: the clock wraps 400 frames in.
    const TS0: u32 = u32::MAX - 400 * 3000 + 1;

    /// Frame `n` captured on the 30 fps clock (3000 ticks a frame), decoded `delay_ms` later;
    /// returns the hold in ms.
    fn frame(d: &mut VideoDelay, n: u64, delay_ms: f64, gap_wait_ms: Option<u64>) -> f64 {
        let capture = T0 + n * FRAME_US;
        let now = capture + (delay_ms * 1000.0) as u64;
        let ts = TS0.wrapping_add((n * 3000) as u32);
        d.frame(ts, now, gap_wait_ms.map(Duration::from_millis), RTT)
            .as_secs_f64()
            * 1000.0
    }

    /// Three losses, 30 on-time frames (45 ms) before each; a loss holds its frame and the ones
    /// behind it, decoded `burst` ms late. Returns the next frame's number.
    fn three_resends(d: &mut VideoDelay, burst: &[f64]) -> u64 {
        let mut n = 0;
        for _ in 0..3 {
            for _ in 0..30 {
                frame(d, n, 45.0, None);
                n += 1;
            }
            for &late in burst {
                frame(d, n, late, Some(85));
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_clean_link_shows_every_frame_at_once() {
        let mut d = VideoDelay::default();
        for n in 0..300 {
            let delay = 40.0 + (n % 7) as f64;
            assert_eq!(frame(&mut d, n, delay, None), 0.0, "frame {n}");
        }
        assert_eq!(d.extra(RTT), Duration::ZERO);
    }

    #[test]
    fn reordering_and_a_couple_of_resends_add_nothing() {
        let mut d = VideoDelay::default();
        for n in 0..300 {
            // A 5 ms reordering wait every 10 frames, and two real resends.
            let gap = match n {
                100 | 200 => Some(80),
                n if n % 10 == 0 => Some(5),
                _ => None,
            };
            let delay = if gap == Some(80) { 125.0 } else { 45.0 };
            assert_eq!(frame(&mut d, n, delay, gap), 0.0, "frame {n}");
        }
    }

    #[test]
    fn after_three_resends_frames_are_shown_a_round_trip_late_and_a_resent_one_in_time() {
        let mut d = VideoDelay::default();
        // Each loss holds its frame and the two behind it.
        let n = three_resends(&mut d, &[130.0, 100.0, 70.0]);
        assert_eq!(d.extra(RTT), Duration::from_millis(80));
        // An on-time frame now waits the round trip: shown at 45 + 80 ms.
        let hold = frame(&mut d, n, 45.0, None);
        assert!((hold - 80.0).abs() < 0.1, "held {hold} ms");
        // A frame recovered by one resend (a round trip and a bit late) is shown at once, on
        // time; its neighbours too.
        assert_eq!(frame(&mut d, n + 1, 130.0, Some(85)), 0.0);
        let hold = frame(&mut d, n + 2, 100.0, Some(85));
        assert!((hold - 25.0).abs() < 0.1, "held {hold} ms");
        // Frames after the burst are back on the 125 ms schedule: the picture moves evenly.
        let hold = frame(&mut d, n + 3, 46.0, None);
        assert!((hold - 79.0).abs() < 0.1, "held {hold} ms");
    }

    #[test]
    fn the_round_trip_is_capped_and_taken_out_after_a_minute_without_resends() {
        let mut d = VideoDelay::default();
        for n in 0..90 {
            let gap = (n % 30 == 29).then_some(400);
            frame(&mut d, n, 45.0, gap);
        }
        let queued = Some(Duration::from_millis(900));
        assert_eq!(d.extra(queued), MAX_EXTRA);
        assert_eq!(d.extra(None), DEFAULT_RTT);
        // 61 s of clean frames.
        for n in 90..90 + 61 * 30 {
            frame(&mut d, n, 45.0, None);
        }
        assert_eq!(d.extra(RTT), Duration::ZERO);
        assert_eq!(frame(&mut d, 2000, 45.0, None), 0.0);
    }

    #[test]
    fn a_new_clock_is_measured_afresh() {
        let mut d = VideoDelay::default();
        let n = three_resends(&mut d, &[130.0]);
        assert_eq!(d.extra(RTT), Duration::from_millis(80));
        // The sender restarts its clock (its timestamps start again, 3 s back): frames are held
        // a round trip, as before, not 3 s less or more.
        let now = T0 + n * FRAME_US + 45_000;
        for (i, ts) in [7u32, 3007, 6007].into_iter().enumerate() {
            let hold = d.frame(TS0.wrapping_add(ts), now + i as u64 * 33_333, None, RTT);
            assert!(
                (hold.as_secs_f64() * 1000.0 - 80.0).abs() < 0.1,
                "frame {i} of the new clock held {hold:?}"
            );
        }
    }
}
