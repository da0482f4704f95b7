//! Send-side bandwidth estimation: Confab's estimator (GCC's delay and loss signals, partly from
//! rtc-interceptor, with a rate controller that recovers after a backoff) and `BweShared`, the
//! atomics through which the interceptor chain publishes the estimate and the pacer's state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    BandwidthEstimator, EstimatorStats, PacketReport, RateControlState, SlopeEstimator, Usage,
};

use crate::nack::ReceiveHorizon;

/// Where the estimate starts. 720p30 encodes at about 1.5-1.9 Mbit/s; starting there lets a call
/// send 720p30 from its first second. On a slower link the first overuse (a few hundred ms of
/// feedback) cuts the target to 0.85 x what actually arrives.
pub const INITIAL_BPS: f64 = 2_000_000.0;
/// Where the estimate starts on a path with this round trip: `INITIAL_BPS` up to ~100 ms, less
/// beyond. Until the first feedback comes back (a round trip plus the feedback interval) nothing is
/// known about the link, so the start is the rate that sends no more in that time than a 100 ms
/// path would (`response_scale`). Starting at 2 Mbit/s on a 350 ms 3G path sent ~1.6 Mbit/s into
/// 400 kbit/s for a second: the queue dropped three packets in four, the estimate crashed to its
/// floor and the picture took ~8 s to climb back to 270p30.
pub fn start_rate(rtt: Duration) -> f64 {
    (INITIAL_BPS * response_scale(Some(rtt))).clamp(MIN_BPS, INITIAL_BPS)
}

/// Floor: 180p15 video plus Opus still fits, and a lower target would only starve the call.
pub const MIN_BPS: f64 = 150_000.0;
/// Ceiling: about twice 720p30. Nothing checks whether the encoder fills the target, so without a
/// ceiling the target would climb far past anything the sender can use.
pub const MAX_BPS: f64 = 4_000_000.0;

/// Multiplier on the received rate when the delay signal says the queue is growing.
const DECREASE_FACTOR: f64 = 0.85;
/// Multiplicative growth per second while far from the last backoff's rate. rtc's `Gcc` uses 8 %/s,
/// which needs ~15 s to climb from 500 kbit/s to 1.5 Mbit/s; 15 %/s does it in ~8 s.
const INCREASE_PER_S: f64 = 1.15;
/// Additive growth per second while near the rate of the last backoff (probing a known ceiling).
const ADDITIVE_BPS_PER_S: f64 = 80_000.0;
/// Above the ceiling, the additive growth is this share of `ADDITIVE_BPS_PER_S`: 40 kbit/s a
/// second, about libwebrtc's near-capacity rate (a packet per response time: 37-46 kbit/s a second
/// at 0.4-1 Mbit/s and 80 ms RTT). It was a quarter while the delay signal caught an overshoot
/// only once the queue overflowed; at a quarter, a link that came back after a drop was climbed
/// so slowly that the call took 15-16 s to send 1.5 Mbit/s again on a busy machine.
const ABOVE_CEILING_SHARE: f64 = 0.5;
/// The additive rates above are for a path that shows an overshoot within this long (an RTT of
/// ~100 ms plus the detector's ~100 ms). On a longer path an overshoot runs on for longer before
/// the backoff, so the additive rates scale down by this over the path's response time (RTT +
/// `DETECTOR_RESPONSE`), as libwebrtc's near-capacity rate does (a packet per response time). At
/// 350 ms RTT (a 3G link) they were fixed, and the target climbed 25% past a 400 kbit/s link
/// every 2 s.
const RESPONSE_REFERENCE: Duration = Duration::from_millis(200);
const DETECTOR_RESPONSE: Duration = Duration::from_millis(100);
/// "Near the ceiling" means above this fraction of the received rate at the last backoff.
const NEAR_CEILING: f64 = 0.85;
/// The ceiling is forgotten once the path delivers this much more than it did at the backoff (the
/// link has grown) ...
const CEILING_EXCEEDED: f64 = 1.05;
/// ... or after this long without overuse (the link may have grown while we probed gently). Long
/// enough that a link at its ceiling is probed gently: 4 s made a sawtooth on a 1 Mbit/s link,
/// with a freeze at every overshoot (tests/e2e/adapt.rs).
const CEILING_MEMORY: Duration = Duration::from_secs(12);
/// An increase may not take the target above this multiple of the received rate (plus a packet
/// per 100 ms): a sender that does not fill its target learns nothing about the link above it.
const RECEIVED_HEADROOM: f64 = 1.5;
/// Changes are spaced by this much (decreases excepted), so each is observed before the next.
const CONTROL_INTERVAL: Duration = Duration::from_millis(200);

/// Loss below this lets the loss-based half climb.
const LOW_LOSS: f64 = 0.02;
/// Average loss above this makes the loss-based half fall. rtc's `LossController` also requires
/// the newest sample above it, so on a link losing 10 % at random (the very-bad profile) the target
/// only moves when two noisy numbers agree; here the average alone decides. 5 % (wifi) holds.
const HIGH_LOSS: f64 = 0.10;
/// Loss-based growth per step (every `CONTROL_INTERVAL`) while loss is low.
const LOSS_INCREASE_PER_STEP: f64 = 1.05;

/// The received rate is measured over this much of the receiver's arrival clock.
const RECEIVED_WINDOW: Duration = Duration::from_millis(500);
/// Arrivals kept for it at most (2000 packets in 500 ms is 48 Mbit/s of 1200-byte packets).
const RECEIVED_MAX_PACKETS: usize = 2048;

/// What the far end receives, from the arrival times it reports (its clock), in bits per second.
/// rtc's `RateCalculator` counts bytes by feedback arrival on our clock, so with feedback every
/// 100 ms its 500 ms window can hold six batches and read ~20 % high: a backoff to 0.85 x that
/// stays above the link and the queue never drains.
#[derive(Debug, Default)]
struct ReceivedRate {
    arrivals: VecDeque<(Duration, usize)>,
}

impl ReceivedRate {
    fn add(&mut self, arrival: Duration, size: usize) {
        // Feedback lists packets in send order; reordering on the path is rare and harmless here.
        self.arrivals.push_back((arrival, size));
        let newest = self
            .arrivals
            .back()
            .map_or(arrival, |(at, _)| *at)
            .max(arrival);
        while self.arrivals.len() > RECEIVED_MAX_PACKETS
            || self
                .arrivals
                .front()
                .is_some_and(|(at, _)| newest.saturating_sub(*at) > RECEIVED_WINDOW)
        {
            self.arrivals.pop_front();
        }
    }

    fn bps(&self) -> Option<f64> {
        let (first, _) = self.arrivals.front()?;
        let (last, _) = self.arrivals.back()?;
        let span = last.saturating_sub(*first);
        if span < Duration::from_millis(50) {
            return None;
        }
        // The first packet's bytes arrived before the span started.
        let bytes: usize = self.arrivals.iter().skip(1).map(|(_, size)| size).sum();
        Some(bytes as f64 * 8.0 / span.as_secs_f64())
    }
}

/// The filtered per-group delay change is multiplied by the number of groups seen, up to this
/// many, before it is compared with the overuse threshold (libwebrtc's `kMinNumDeltas`). rtc's
/// `Gcc` compares the raw per-group value with its 12.5 ms threshold, so with groups every 5-10 ms
/// a sender at twice the link rate (2.5-5 ms more per group) never reads as overusing: only
/// loss ever brought its target down.
const MAX_DELTAS: u32 = 60;

/// Where the overuse threshold starts, in ms (libwebrtc's and the GCC draft's value).
const THRESHOLD_INITIAL_MS: f64 = 12.5;
/// The threshold's range, in ms.
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
/// Gains (per ms) with which the threshold follows the trend: up slowly while the trend is outside
/// it, down fast while it is inside (libwebrtc's `k_up_` and `k_down_`). rtc's `OveruseDetector`
/// takes the GCC draft's down gain, 0.00018, 200 times slower: after the first second's overuse it
/// sat at 20-45 ms for the next 6-10 s, so an overshoot on a 1 Mbit/s link was seen only when the
/// bottleneck's queue was full and dropping (a 2-3 s freeze, tests/e2e/adapt.rs).
const THRESHOLD_UP_PER_MS: f64 = 0.0087;
const THRESHOLD_DOWN_PER_MS: f64 = 0.039;
/// A trend this far past the threshold is a spike (a sudden capacity drop), not where the threshold
/// belongs: it is not followed.
const THRESHOLD_MAX_ADAPT_MS: f64 = 15.0;
/// The trend must stay above the threshold this long, over at least two readings, still growing.
const OVERUSE_TIME: Duration = Duration::from_millis(10);

/// libwebrtc's `OveruseDetector`: the scaled delay trend against an adaptive threshold.
#[derive(Debug, Clone)]
struct OveruseDetector {
    threshold_ms: f64,
    last_update: Option<Instant>,
    /// When the trend went above the threshold, and readings above it since.
    over_since: Option<Instant>,
    over_count: u32,
    previous_trend_ms: f64,
    usage: Usage,
}

impl OveruseDetector {
    fn new() -> Self {
        Self {
            threshold_ms: THRESHOLD_INITIAL_MS,
            last_update: None,
            over_since: None,
            over_count: 0,
            previous_trend_ms: 0.0,
            usage: Usage::Normal,
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// Folds in one scaled trend reading taken at `at`.
    fn update(&mut self, at: Instant, trend_ms: f64) -> Usage {
        if trend_ms > self.threshold_ms {
            let since = *self.over_since.get_or_insert(at);
            self.over_count += 1;
            let long_enough = at.saturating_duration_since(since) >= OVERUSE_TIME;
            if long_enough && self.over_count > 1 && trend_ms >= self.previous_trend_ms {
                self.over_since = None;
                self.over_count = 0;
                self.usage = Usage::Over;
            }
        } else {
            self.over_since = None;
            self.over_count = 0;
            self.usage = if trend_ms < -self.threshold_ms {
                Usage::Under
            } else {
                Usage::Normal
            };
        }
        self.previous_trend_ms = trend_ms;
        self.adapt_threshold(at, trend_ms.abs());
        self.usage
    }

    fn adapt_threshold(&mut self, at: Instant, magnitude_ms: f64) {
        let elapsed_ms = self.last_update.map_or(0.0, |last| {
            at.saturating_duration_since(last).as_secs_f64() * 1000.0
        });
        self.last_update = Some(at);
        if magnitude_ms > self.threshold_ms + THRESHOLD_MAX_ADAPT_MS {
            return;
        }
        let gain = if magnitude_ms < self.threshold_ms {
            THRESHOLD_DOWN_PER_MS
        } else {
            THRESHOLD_UP_PER_MS
        };
        self.threshold_ms += gain * (magnitude_ms - self.threshold_ms) * elapsed_ms.min(100.0);
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
    }
}

/// A standing queue this deep (ms over the least one-way delay seen lately) that is still growing
/// is overuse, whatever the delay trend says. The trend's threshold follows a trend that rises
/// slowly, so a sender probing 20 kbit/s a second above a 1 Mbit/s link filled the link's 100 ms
/// queue without the trend ever crossing it, and only the overflow (a 2-3 s freeze) stopped it.
/// 50 ms is half of that small queue and more than a call should stand in anyway.
const QUEUE_DELAY_LIMIT_MS: f64 = 50.0;
/// The least one-way delay is taken over this much of the recent past.
const QUEUE_DELAY_BASELINE: Duration = Duration::from_secs(10);
/// Batches kept for the baseline (10 s of feedback every 50-100 ms, with room).
const QUEUE_DELAY_BATCHES: usize = 512;

/// How much longer than the least one-way delay of the last `QUEUE_DELAY_BASELINE` the packets of
/// a feedback batch took: the depth of the bottleneck's queue. The sender's and receiver's clocks
/// differ by an unknown constant, which the difference cancels. A batch's least delay is used, so
/// a late packet or two (jitter, a busy receiver) does not read as a queue.
#[derive(Debug, Default)]
struct QueueDelay {
    epoch: Option<Instant>,
    /// (departure of the batch's last packet, the batch's least one-way delay in ms).
    batches: VecDeque<(Instant, f64)>,
    last_ms: Option<f64>,
}

impl QueueDelay {
    /// The queue's depth in ms after `reports`, and whether it grew since the previous batch.
    fn update(&mut self, reports: &[PacketReport]) -> Option<(f64, bool)> {
        let arrived = reports
            .iter()
            .filter_map(|r| r.arrival.map(|arrival| (r.departure, arrival)));
        let mut newest = None;
        let mut least = f64::INFINITY;
        for (departure, arrival) in arrived {
            let epoch = *self.epoch.get_or_insert(departure);
            let sent_ms = departure.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
            least = least.min(arrival.as_secs_f64() * 1000.0 - sent_ms);
            newest = newest.max(Some(departure));
        }
        let newest = newest?;
        self.batches.push_back((newest, least));
        while self.batches.len() > QUEUE_DELAY_BATCHES
            || self
                .batches
                .front()
                .is_some_and(|(at, _)| newest.saturating_duration_since(*at) > QUEUE_DELAY_BASELINE)
        {
            self.batches.pop_front();
        }
        let base = self
            .batches
            .iter()
            .map(|(_, delay)| *delay)
            .fold(f64::INFINITY, f64::min);
        let depth = least - base;
        let grew = self.last_ms.is_some_and(|last| depth > last);
        self.last_ms = Some(depth);
        Some((depth, grew))
    }
}

/// How long feedback RTT samples count towards the published minimum.
const RTT_WINDOW: Duration = Duration::from_secs(2);
const RTT_SAMPLES_MAX: usize = 64;

/// Feedback RTT: feedback arrival minus the newest acknowledged packet's departure (both on our
/// clock). It includes the remote's wait before sending feedback, so the minimum over
/// `RTT_WINDOW` is what counts.
#[derive(Debug, Default)]
struct MinRtt {
    samples: VecDeque<(Instant, Duration)>,
}

impl MinRtt {
    /// Takes a sample from `reports` (if any packet in them arrived); returns the window's minimum.
    fn record(&mut self, now: Instant, reports: &[PacketReport]) -> Option<Duration> {
        if let Some(newest) = reports.iter().rev().find(|r| r.arrived) {
            self.samples
                .push_back((now, now.saturating_duration_since(newest.departure)));
        }
        while self.samples.len() > RTT_SAMPLES_MAX
            || self
                .samples
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RTT_WINDOW)
        {
            self.samples.pop_front();
        }
        self.min()
    }

    fn min(&self) -> Option<Duration> {
        self.samples.iter().map(|(_, rtt)| *rtt).min()
    }
}

/// What the congestion controller and the pacer publish, for the encode thread and the stats tick.
/// Written by the interceptor chain (inside webrtc's driver), read anywhere with `Relaxed` loads;
/// each value is independent, so a reader may see one field a tick newer than another.
#[derive(Debug, Default)]
pub struct BweShared {
    /// The estimate: what the whole send side (video, audio, headers, retransmissions) may use.
    pub target_bps: AtomicU64,
    /// The delay-based half of the estimate.
    pub delay_bps: AtomicU64,
    /// The loss-based half of the estimate.
    pub loss_bps: AtomicU64,
    /// Smoothed fraction of our packets the remote reported lost, in parts per million.
    pub loss_ppm: AtomicU32,
    /// Round trip implied by transport-wide feedback (min over 2 s), in µs; 0 until feedback.
    pub feedback_rtt_us: AtomicU64,
    /// Feedback batches the estimator has seen: 0 means the remote sends no TWCC feedback.
    pub feedback_batches: AtomicU64,
    /// A start rate for the estimator (bps; 0: none), taken once before its first feedback
    /// ([`BweShared::start_at`]).
    pub start_bps: AtomicU64,
    /// The rate the pacer releases video at (a multiple of the target).
    pub pacer_rate_bps: AtomicU64,
    /// How long the video queued in the pacer takes to leave at the pacing rate, in ms.
    pub pacer_queue_ms: AtomicU32,
    /// Video packets the pacer dropped because its queue was full (in time).
    pub pacer_dropped: AtomicU64,
    /// Video packets that went through the pacer's queue.
    pub pacer_paced: AtomicU64,
    /// Packets the pacer let through at once (audio, retransmissions), charged to its budget.
    pub pacer_urgent: AtomicU64,
    /// Packets the remote's feedback covered, and those it reported lost.
    pub packets_reported: AtomicU64,
    pub packets_lost: AtomicU64,
    /// Packets sent again because the remote asked (NACK).
    pub retransmissions: AtomicU64,
    /// Resends refused because they would have pushed video too far back (see the pacer).
    pub resends_refused: AtomicU64,
    /// Round trip of the selected ICE pair (µs, 0 until known), written from the stats tick.
    pub path_rtt_us: AtomicU64,
    /// Packets we asked the remote to send again (each request of each packet counts).
    pub nack_requests: AtomicU64,
    /// How far the video receiver got: NACK asks for nothing at or before it.
    pub receive_horizon: ReceiveHorizon,
    /// Lip sync: the send pipelines' capture clocks and the other side's sender reports.
    pub sync: super::sync::SyncShared,
    /// What the other side asked our video to stay within, in pixels a second (0: it asked for
    /// no limit; see `set_receiver_limit`): its `video_limit` message sets it, and the video
    /// sender's ladder follows it.
    pub receiver_max_pixel_rate: AtomicU64,
    /// What our decoder asks of the other side's video, in pixels a second (0: nothing): written
    /// by the decode thread (`thread_load::DecoderAsk`), sent on the data channel.
    pub decoder_asks_pixel_rate: AtomicU64,
}

/// Which half of the estimate limits the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Delay,
    Loss,
}

/// A copy of [`BweShared`] at one instant, in plain numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweSnapshot {
    pub target_bps: u64,
    pub delay_bps: u64,
    pub loss_bps: u64,
    pub loss_fraction: f64,
    /// `None` until feedback has arrived.
    pub feedback_rtt: Option<Duration>,
    pub feedback_batches: u64,
    pub pacer_rate_bps: u64,
    pub pacer_queue_ms: u32,
    pub pacer_dropped: u64,
    pub pacer_paced: u64,
    pub pacer_urgent: u64,
}

impl BweSnapshot {
    /// The half that sets the target (ties go to delay).
    pub fn limited_by(&self) -> Limit {
        if self.loss_bps < self.delay_bps {
            Limit::Loss
        } else {
            Limit::Delay
        }
    }
}

impl BweShared {
    /// The other side's `video_limit`: at most `max_pixel_rate` pixels a second, `None` for no
    /// limit. An ask for 0 is an ask for the least (the lowest rung), as the web page reads it,
    /// not for no limit; returns what is stored.
    pub fn set_receiver_limit(&self, max_pixel_rate: Option<u64>) -> u64 {
        let stored = max_pixel_rate.map_or(0, |max| max.max(1));
        self.receiver_max_pixel_rate.store(stored, Relaxed);
        stored
    }

    /// Has the estimate start at `bps` instead of `INITIAL_BPS`, when the path is known before any
    /// media is sent (at connect, from the ICE round trip): the encoder reads it at once, the
    /// estimator takes it on its next feedback or timeout, if it has had no feedback yet.
    pub fn start_at(&self, bps: f64) {
        let bps = bps.clamp(MIN_BPS, MAX_BPS) as u64;
        // In this order: an estimator publishing in between has taken the start already.
        self.start_bps.store(bps, Relaxed);
        self.target_bps.store(bps, Relaxed);
    }

    /// The round trip: the ICE pair's if measured, else the feedback's.
    pub fn rtt(&self) -> Option<Duration> {
        [
            self.path_rtt_us.load(Relaxed),
            self.feedback_rtt_us.load(Relaxed),
        ]
        .into_iter()
        .find(|&us| us > 0)
        .map(Duration::from_micros)
    }

    pub fn snapshot(&self) -> BweSnapshot {
        let rtt_us = self.feedback_rtt_us.load(Relaxed);
        BweSnapshot {
            target_bps: self.target_bps.load(Relaxed),
            delay_bps: self.delay_bps.load(Relaxed),
            loss_bps: self.loss_bps.load(Relaxed),
            loss_fraction: f64::from(self.loss_ppm.load(Relaxed)) / 1e6,
            feedback_rtt: (rtt_us > 0).then(|| Duration::from_micros(rtt_us)),
            feedback_batches: self.feedback_batches.load(Relaxed),
            pacer_rate_bps: self.pacer_rate_bps.load(Relaxed),
            pacer_queue_ms: self.pacer_queue_ms.load(Relaxed),
            pacer_dropped: self.pacer_dropped.load(Relaxed),
            pacer_paced: self.pacer_paced.load(Relaxed),
            pacer_urgent: self.pacer_urgent.load(Relaxed),
        }
    }
}

/// Bits per second as stored in the atomics (non-negative, whole).
fn bps(value: f64) -> u64 {
    // Saturating float-to-int cast: NaN becomes 0, negatives 0, huge values u64::MAX.
    value.max(0.0) as u64
}

/// The delay-based half's AIMD. Unlike rtc's `RateController`, the rate at the last backoff is
/// forgotten when the path delivers clearly more, or after a while without overuse, so a link that
/// recovers is climbed multiplicatively instead of at ~60 kbit/s for the rest of the call.
#[derive(Debug, Clone)]
struct DelayControl {
    state: RateControlState,
    target: f64,
    min: f64,
    max: f64,
    /// The received rate at the last backoff.
    ceiling: Option<f64>,
    last_change: Option<Instant>,
    last_overuse: Option<Instant>,
}

impl DelayControl {
    fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            state: RateControlState::default(),
            target: initial.clamp(min, max),
            min,
            max,
            ceiling: None,
            last_change: None,
            last_overuse: None,
        }
    }

    fn update(
        &mut self,
        now: Instant,
        usage: Usage,
        received: Option<f64>,
        rtt: Option<Duration>,
    ) -> f64 {
        self.state = self.state.next(usage);
        if usage == Usage::Over {
            self.last_overuse = Some(now);
        }
        if let Some(ceiling) = self.ceiling {
            let exceeded = received.is_some_and(|r| r > ceiling * CEILING_EXCEEDED);
            let stale = self
                .last_overuse
                .is_none_or(|at| now.saturating_duration_since(at) > CEILING_MEMORY);
            if exceeded || stale {
                self.ceiling = None;
            }
        }
        let too_soon = self
            .last_change
            .is_some_and(|last| now.saturating_duration_since(last) < CONTROL_INTERVAL);
        if too_soon && self.state != RateControlState::Decrease {
            return self.target;
        }
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Decrease => {
                // Back off from what the path delivers, not from what we aimed for.
                let Some(received) = received else {
                    return self.target;
                };
                self.target = (received * DECREASE_FACTOR).clamp(self.min, self.max);
                self.ceiling = Some(received);
                self.last_change = Some(now);
            }
            RateControlState::Increase => {
                let elapsed = self
                    .last_change
                    .map_or(CONTROL_INTERVAL, |last| now.saturating_duration_since(last))
                    .min(Duration::from_secs(1))
                    .as_secs_f64();
                let near_ceiling = self
                    .ceiling
                    .is_some_and(|ceiling| self.target > ceiling * NEAR_CEILING);
                // Above the rate the path delivered at the last backoff, probe at a quarter of the
                // additive rate: the delay signal then has time to see a queue build before the
                // bottleneck overflows (at the full rate a 1 Mbit/s link overflowed now and then
                // and video stalled for seconds).
                let above_ceiling = self.ceiling.is_some_and(|ceiling| self.target >= ceiling);
                let additive = ADDITIVE_BPS_PER_S * response_scale(rtt) * elapsed;
                let mut next = if above_ceiling {
                    self.target + additive * ABOVE_CEILING_SHARE
                } else if near_ceiling {
                    self.target + additive
                } else {
                    self.target * INCREASE_PER_S.powf(elapsed)
                };
                if let Some(received) = received {
                    let limit = received * RECEIVED_HEADROOM + 100_000.0;
                    next = next.min(limit.max(self.target));
                }
                self.target = next.clamp(self.min, self.max);
                self.last_change = Some(now);
            }
        }
        self.target
    }
}

/// How much of the additive rate a path with this RTT gets (1 up to ~100 ms; see
/// `RESPONSE_REFERENCE`).
fn response_scale(rtt: Option<Duration>) -> f64 {
    rtt.map_or(1.0, |rtt| {
        let response = (rtt + DETECTOR_RESPONSE).as_secs_f64();
        (RESPONSE_REFERENCE.as_secs_f64() / response).min(1.0)
    })
}

/// The loss-based half (draft-ietf-rmcat-gcc-02 §5.5), with the thresholds above.
#[derive(Debug, Clone)]
struct LossControl {
    target: f64,
    min: f64,
    max: f64,
    average: Option<f64>,
    last_change: Option<Instant>,
}

impl LossControl {
    fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            target: initial.clamp(min, max),
            min,
            max,
            average: None,
            last_change: None,
        }
    }

    fn update(&mut self, now: Instant, lost: usize, total: usize) -> f64 {
        if total == 0 {
            return self.target;
        }
        let sample = lost as f64 / total as f64;
        let average = self.average.map_or(sample, |a| 0.8 * a + 0.2 * sample);
        self.average = Some(average);
        if self
            .last_change
            .is_some_and(|last| now.saturating_duration_since(last) < CONTROL_INTERVAL)
        {
            return self.target;
        }
        if average.max(sample) < LOW_LOSS {
            self.target = (self.target * LOSS_INCREASE_PER_STEP).clamp(self.min, self.max);
            self.last_change = Some(now);
        } else if average > HIGH_LOSS {
            self.target = (self.target * (1.0 - 0.5 * average)).clamp(self.min, self.max);
            self.last_change = Some(now);
        }
        self.target
    }
}

/// Which sent packets the remote has reported, and whether they arrived. A packet the remote has
/// not received yet is reported missing in every feedback until it arrives or falls out of the
/// receiver's window, so counting "not arrived" per report counts one loss several times (a 5%
/// lossy link measured as 10-14%, and the loss half of the estimate fell to its floor). The
/// ledger counts each packet once, and takes a loss back when the packet turns up after all.
#[derive(Debug, Default)]
struct LossLedger {
    /// Report id -> arrived, for the most recent ids.
    seen: std::collections::BTreeMap<u64, bool>,
}

/// Report ids the ledger remembers (several seconds of packets at any rate we send).
const LEDGER_IDS: usize = 8192;

impl LossLedger {
    /// Packets newly reported in `reports`, and the change in those lost (negative when packets
    /// counted lost turned up after all).
    ///
    /// Only packets between two reported arrivals are judged: a packet nobody reported on (its
    /// feedback was lost, and the send history wrote it off) is not a loss on the media path (a
    /// lost feedback packet at 5% loss made whole 100 ms windows look lost).
    fn update(&mut self, reports: &[PacketReport]) -> (u64, i64) {
        let (mut new, mut lost) = (0u64, 0i64);
        let arrived = reports.iter().filter(|r| r.arrived).map(|r| r.id);
        let (Some(oldest), Some(newest)) = (arrived.clone().min(), arrived.max()) else {
            return (0, 0);
        };
        for r in reports.iter().filter(|r| (oldest..=newest).contains(&r.id)) {
            match self.seen.insert(r.id, r.arrived) {
                None => {
                    new += 1;
                    lost += i64::from(!r.arrived);
                }
                Some(false) if r.arrived => lost -= 1,
                Some(true) if !r.arrived => lost += 1,
                Some(_) => {}
            }
        }
        while self.seen.len() > LEDGER_IDS {
            self.seen.pop_first();
        }
        (new, lost)
    }
}

/// Confab's estimator: rtc-interceptor's delay filter (`SlopeEstimator`) judged by libwebrtc's
/// overuse detector ([`OveruseDetector`]) and a queue-depth guard ([`QueueDelay`]), and an
/// arrival-clock received rate, feeding [`DelayControl`]; combined with [`LossControl`] by `min`,
/// as `Gcc` does, with the fixes described at `MAX_DELTAS`, `THRESHOLD_DOWN_PER_MS`,
/// `QUEUE_DELAY_LIMIT_MS`, `ReceivedRate`, `HIGH_LOSS` and `DelayControl`. Time is a parameter
/// throughout.
pub struct Estimator {
    ledger: LossLedger,
    slope: SlopeEstimator,
    detector: OveruseDetector,
    queue: QueueDelay,
    rate: ReceivedRate,
    rtt: MinRtt,
    delay: DelayControl,
    loss: LossControl,
    /// Inter-group delay measurements so far, capped at `MAX_DELTAS`.
    deltas: u32,
    /// Whether any feedback has come (a start rate is taken only before).
    fed: bool,
    min: f64,
    max: f64,
    target: f64,
}

impl Estimator {
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        let initial = initial.clamp(min, max);
        Self {
            ledger: LossLedger::default(),
            slope: SlopeEstimator::new(),
            detector: OveruseDetector::new(),
            queue: QueueDelay::default(),
            rate: ReceivedRate::default(),
            rtt: MinRtt::default(),
            delay: DelayControl::new(initial, min, max),
            loss: LossControl::new(initial, min, max),
            deltas: 0,
            fed: false,
            min,
            max,
            target: initial,
        }
    }
}

/// An estimator that can be told where to start once the path is known (see `start_rate`).
pub trait StartAt {
    /// Starts the estimate at `bps`, unless feedback has already moved it.
    fn start_at(&mut self, bps: f64);
}

impl StartAt for Estimator {
    fn start_at(&mut self, bps: f64) {
        if self.fed {
            return;
        }
        let bps = bps.clamp(self.min, self.max);
        self.delay = DelayControl::new(bps, self.min, self.max);
        self.loss = LossControl::new(bps, self.min, self.max);
        self.target = bps;
    }
}

impl Default for Estimator {
    fn default() -> Self {
        Self::new(INITIAL_BPS, MIN_BPS, MAX_BPS)
    }
}

impl BandwidthEstimator for Estimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.fed = true;
        let mut usage = self.detector.usage();
        let mut trend_ms = None;
        for report in reports {
            if let (true, Some(arrival)) = (report.arrived, report.arrival) {
                self.rate.add(arrival, report.size);
            }
            if let Some(trend) = self.slope.accumulate(report) {
                self.deltas = (self.deltas + 1).min(MAX_DELTAS);
                let scaled_ms = trend.estimate_ms * f64::from(self.deltas);
                usage = self.detector.update(trend.at, scaled_ms);
                trend_ms = Some(scaled_ms);
            }
        }
        let queue = self.queue.update(reports);
        if queue.is_some_and(|(depth, grew)| grew && depth > QUEUE_DELAY_LIMIT_MS) {
            usage = Usage::Over;
        }
        let received = self.rate.bps();
        let rtt = self.rtt.record(now, reports);
        let delay = self.delay.update(now, usage, received, rtt);
        let (new, lost) = self.ledger.update(reports);
        let lost = usize::try_from(lost.max(0)).unwrap_or(0);
        let loss = self
            .loss
            .update(now, lost, usize::try_from(new).unwrap_or(usize::MAX));
        let target = delay.min(loss).clamp(self.min, self.max);
        // Packets no feedback covered (the feedback was lost, maybe on a congested way back):
        // nothing is known about them, so the target may fall but not rise. Climbing blind on a
        // 1 Mbit/s link overshot to 1.16 Mbit/s and stalled video for 3 s.
        let blind =
            reports.iter().any(|r| !r.arrived && r.arrival.is_none()) && new < reports.len() as u64;
        self.target = if blind {
            target.min(self.target)
        } else {
            target
        };
        tracing::trace!(
            ?usage,
            trend_ms,
            queue_ms = queue.map(|(depth, _)| depth),
            threshold_ms = self.detector.threshold_ms(),
            received_bps = received,
            ceiling_bps = self.delay.ceiling,
            delay_bps = delay,
            loss_bps = loss,
            new,
            lost,
            blind,
            target_bps = self.target,
            "estimate"
        );
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn stats(&self) -> EstimatorStats {
        let mut stats = EstimatorStats::default();
        stats.delay_based_bitrate = Some(self.delay.target);
        stats.loss_based_bitrate = Some(self.loss.target);
        stats.packet_loss = self.loss.average;
        stats
    }
}

/// Any estimator, publishing its state into [`BweShared`] after every change.
pub struct Published<E> {
    inner: E,
    out: Arc<BweShared>,
    rtt: MinRtt,
    ledger: LossLedger,
}

impl<E: BandwidthEstimator + StartAt> Published<E> {
    pub fn new(inner: E, out: Arc<BweShared>) -> Self {
        let published = Self {
            inner,
            out,
            rtt: MinRtt::default(),
            ledger: LossLedger::default(),
        };
        published.publish();
        published
    }

    fn publish(&self) {
        let stats = self.inner.stats();
        self.out
            .target_bps
            .store(bps(self.inner.target_bitrate()), Relaxed);
        if let Some(delay) = stats.delay_based_bitrate {
            self.out.delay_bps.store(bps(delay), Relaxed);
        }
        if let Some(loss) = stats.loss_based_bitrate {
            self.out.loss_bps.store(bps(loss), Relaxed);
        }
        if let Some(loss) = stats.packet_loss {
            self.out
                .loss_ppm
                .store((loss.clamp(0.0, 1.0) * 1e6) as u32, Relaxed);
        }
    }

    /// Takes a start rate set through [`BweShared::start_at`], once.
    fn take_start(&mut self) {
        let start = self.out.start_bps.swap(0, Relaxed);
        if start > 0 {
            self.inner.start_at(start as f64);
            tracing::debug!(start_bps = start, "estimate starts at the path's rate");
        }
    }

    /// Publishes the feedback RTT (the minimum over a window, see [`MinRtt`]).
    fn record_rtt(&mut self, now: Instant, reports: &[PacketReport]) {
        if let Some(min) = self.rtt.record(now, reports) {
            let us = u64::try_from(min.as_micros()).unwrap_or(u64::MAX).max(1);
            self.out.feedback_rtt_us.store(us, Relaxed);
        }
    }
}

impl<E: BandwidthEstimator + StartAt> BandwidthEstimator for Published<E> {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.take_start();
        let before = self.inner.target_bitrate();
        self.inner.on_reports(now, reports);
        let after = self.inner.target_bitrate();
        if (after - before).abs() > 0.1 * before {
            tracing::debug!(
                before_bps = before,
                after_bps = after,
                "bandwidth estimate moved"
            );
        }
        let (new, lost) = self.ledger.update(reports);
        self.out.packets_reported.fetch_add(new, Relaxed);
        if lost >= 0 {
            self.out
                .packets_lost
                .fetch_add(lost.unsigned_abs(), Relaxed);
        } else {
            self.out
                .packets_lost
                .fetch_sub(lost.unsigned_abs(), Relaxed);
        }
        if !reports.is_empty() {
            if self.out.feedback_batches.fetch_add(1, Relaxed) == 0 {
                tracing::debug!(target_bps = after, "first transport-wide feedback");
            }
            self.record_rtt(now, reports);
        }
        self.publish();
    }

    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.take_start();
        self.inner.handle_timeout(now);
        self.publish();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_reported_in_several_feedbacks_counts_once_and_a_late_arrival_takes_it_back() {
        let t0 = Instant::now();
        let report = |id: u64, arrived: bool| PacketReport {
            ssrc: 1,
            id,
            rtp_sequence_number: id as u16,
            is_twcc: true,
            twcc_sequence_number: id as u16,
            size: 1200,
            arrived,
            departure: t0,
            arrival: arrived.then(|| Duration::from_millis(id)),
            ecn: Ecn::default(),
        };
        let mut ledger = LossLedger::default();
        // 20 packets, number 5 missing; the next two feedbacks still name it missing.
        let first: Vec<_> = (0..20).map(|id| report(id, id != 5)).collect();
        assert_eq!(ledger.update(&first), (20, 1));
        let second: Vec<_> = (5..30).map(|id| report(id, id != 5)).collect();
        assert_eq!(ledger.update(&second), (10, 0), "5 is not lost again");
        // It turns up after all.
        assert_eq!(ledger.update(&[report(5, true)]), (0, -1));
        // Packets written off with nothing after them arrived (their feedback was lost) are not
        // judged; a later report that covers them is.
        let written_off: Vec<_> = (30..40).map(|id| report(id, false)).collect();
        assert_eq!(ledger.update(&written_off), (0, 0));
        let later: Vec<_> = (30..45).map(|id| report(id, id != 31)).collect();
        assert_eq!(ledger.update(&later), (15, 1));
        // Written-off packets older than a feedback's first arrival are not judged either.
        let mixed: Vec<_> = (45..60)
            .map(|id| report(id, id >= 50 && id != 55))
            .collect();
        assert_eq!(ledger.update(&mixed), (10, 1), "50..=59 judged, 55 lost");
    }
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    const PACKET_BYTES: usize = 1200;
    const TICK: Duration = Duration::from_millis(5);
    const FEEDBACK_EVERY: Duration = Duration::from_millis(100);
    const PROPAGATION: Duration = Duration::from_millis(40);

    /// A sender pacing at the estimate into a bottleneck (rate, FIFO with a time-bounded queue,
    /// optional loss), with transport-wide feedback every 100 ms. Time is simulated.
    struct Link {
        epoch: Instant,
        now: Duration,
        next_id: u64,
        /// When the bottleneck finishes the last accepted packet.
        busy_until: Duration,
        /// Bytes owed to the sender by the pacing rate.
        credit_bytes: f64,
        /// Sent, not yet reported, with when the receiver can report it (a lost packet once the
        /// next one arrives, about when it would have).
        in_flight: Vec<(Duration, PacketReport)>,
        last_feedback: Duration,
        max_queue: Duration,
        /// Whether packet `id` is lost on the path (besides queue overflow).
        lose: Box<dyn FnMut(u64) -> bool>,
        /// Packets dropped because the queue was full.
        overflowed: u64,
        /// One-way delay of the media path, and of the feedback's way back.
        forward: Duration,
        back: Duration,
    }

    impl Link {
        fn new() -> Self {
            Self {
                epoch: Instant::now(),
                now: Duration::ZERO,
                next_id: 0,
                busy_until: Duration::ZERO,
                credit_bytes: 0.0,
                in_flight: Vec::new(),
                last_feedback: Duration::ZERO,
                max_queue: Duration::from_millis(100),
                lose: Box::new(|_| false),
                overflowed: 0,
                forward: PROPAGATION,
                back: Duration::ZERO,
            }
        }

        /// Runs `duration` with the bottleneck at `capacity_bps`, returning the target over time.
        fn run<E: BandwidthEstimator>(
            &mut self,
            estimator: &mut E,
            capacity_bps: f64,
            duration: Duration,
        ) -> Vec<(Duration, f64)> {
            let end = self.now + duration;
            let mut trace = Vec::new();
            while self.now < end {
                self.now += TICK;
                self.credit_bytes += estimator.target_bitrate() * TICK.as_secs_f64() / 8.0;
                while self.credit_bytes >= PACKET_BYTES as f64 {
                    self.credit_bytes -= PACKET_BYTES as f64;
                    self.send(capacity_bps);
                }
                if self.now - self.last_feedback >= FEEDBACK_EVERY {
                    self.last_feedback = self.now;
                    let now = self.now;
                    let back = self.back;
                    let (ready, pending): (Vec<_>, Vec<_>) = self
                        .in_flight
                        .drain(..)
                        .partition(|(at, _)| *at + back <= now);
                    self.in_flight = pending;
                    let ready: Vec<PacketReport> = ready.into_iter().map(|(_, r)| r).collect();
                    estimator.on_reports(self.epoch + now, &ready);
                    trace.push((self.now, estimator.target_bitrate()));
                    if std::env::var_os("BWE_TRACE").is_some() {
                        let s = estimator.stats();
                        eprintln!(
                            "{:>6.1}s target {:>8.0} delay {:>8.0?} loss {:>8.0?} lossfrac {:.3?} queue {:?}",
                            now.as_secs_f64(),
                            estimator.target_bitrate(),
                            s.delay_based_bitrate,
                            s.loss_based_bitrate,
                            s.packet_loss,
                            self.busy_until.saturating_sub(now)
                        );
                    }
                }
            }
            trace
        }

        fn send(&mut self, capacity_bps: f64) {
            let id = self.next_id;
            self.next_id += 1;
            let queue = self.busy_until.saturating_sub(self.now);
            let overflow = queue > self.max_queue;
            self.overflowed += u64::from(overflow);
            let lost = overflow || (self.lose)(id);
            let arrival = if lost {
                None
            } else {
                let start = self.busy_until.max(self.now);
                self.busy_until =
                    start + Duration::from_secs_f64((PACKET_BYTES * 8) as f64 / capacity_bps);
                Some(self.busy_until + self.forward)
            };
            let report_at = arrival.unwrap_or(self.now + queue + self.forward);
            self.in_flight.push((
                report_at,
                PacketReport {
                    ssrc: 1,
                    id,
                    rtp_sequence_number: id as u16,
                    is_twcc: true,
                    twcc_sequence_number: id as u16,
                    size: PACKET_BYTES,
                    arrived: !lost,
                    departure: self.epoch + self.now,
                    arrival,
                    ecn: Ecn::default(),
                },
            ));
        }
    }

    /// Independent random loss with probability `p`, from a fixed seed (xorshift).
    fn random_loss(p: f64) -> Box<dyn FnMut(u64) -> bool> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        Box::new(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 <= p
        })
    }

    fn at(trace: &[(Duration, f64)], since: Duration) -> f64 {
        trace
            .iter()
            .find(|(t, _)| *t >= since)
            .map(|(_, bps)| *bps)
            .expect("the trace covers the instant")
    }

    #[test]
    fn an_ask_for_no_video_is_an_ask_for_the_least_not_for_no_limit() {
        let shared = BweShared::default();
        assert_eq!(shared.set_receiver_limit(Some(0)), 1);
        assert_eq!(shared.receiver_max_pixel_rate.load(Relaxed), 1);
        assert_eq!(shared.set_receiver_limit(Some(16_588_800)), 16_588_800);
        assert_eq!(shared.set_receiver_limit(None), 0);
        assert_eq!(shared.receiver_max_pixel_rate.load(Relaxed), 0);
    }

    #[test]
    fn steady_delay_lets_the_target_rise() {
        let mut estimator = Estimator::new(1_000_000.0, MIN_BPS, MAX_BPS);
        let trace = Link::new().run(&mut estimator, 20_000_000.0, Duration::from_secs(5));
        let end = trace.last().expect("feedback happened").1;
        assert!(end > 1_500_000.0, "target after 5 s on a fast link: {end}");
    }

    #[test]
    fn overuse_cuts_the_target_to_the_link_within_a_second() {
        let mut estimator = Estimator::default();
        let trace = Link::new().run(&mut estimator, 1_000_000.0, Duration::from_secs(3));
        let after_1s = at(&trace, Duration::from_secs(1));
        assert!(
            after_1s < 1_000_000.0,
            "target 1 s into a 1 Mbit/s link: {after_1s}"
        );
        let later = at(&trace, Duration::from_secs(3));
        assert!(
            later < 1_200_000.0,
            "target 3 s into a 1 Mbit/s link: {later}"
        );
    }

    /// The drop profile: 3 Mbit/s for 10 s, 500 kbit/s for 15 s, 3 Mbit/s again.
    #[test]
    fn after_a_drop_the_target_follows_down_and_comes_back_within_15_s() {
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        let before = link.run(&mut estimator, 3_000_000.0, Duration::from_secs(10));
        let during = link.run(&mut estimator, 500_000.0, Duration::from_secs(15));
        let after = link.run(&mut estimator, 3_000_000.0, Duration::from_secs(15));
        let level = before.last().expect("feedback").1;
        assert!(level > 2_000_000.0, "target on a 3 Mbit/s link: {level}");
        let drop_at = Duration::from_secs(10);
        let first_below = during
            .iter()
            .find(|(_, bps)| *bps < 500_000.0)
            .expect("the target goes under the new rate")
            .0;
        assert!(
            first_below - drop_at < Duration::from_secs(1),
            "{first_below:?}"
        );
        // AIMD saws around the link rate; on average it stays near it (the encoder aims below).
        let settled: Vec<f64> = during
            .iter()
            .filter(|(t, _)| *t >= drop_at + Duration::from_secs(2))
            .map(|(_, bps)| *bps)
            .collect();
        let mean = settled.iter().sum::<f64>() / settled.len() as f64;
        assert!(mean < 550_000.0, "mean target during the drop: {mean}");
        let up = after.last().expect("feedback").1;
        assert!(
            up > 1_500_000.0 && up > 0.7 * level,
            "target 15 s after recovery: {up} (before the drop: {level})"
        );
    }

    /// A deep buffer queues without losing: the delay half alone must bring the target down.
    #[test]
    fn a_link_at_its_capacity_is_probed_without_overflowing_its_queue() {
        // A home uplink: 1 Mbit/s behind a 100 ms queue (tests/e2e/adapt.rs's constrained link).
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        link.run(&mut estimator, 1_000_000.0, Duration::from_secs(5));
        let start = link.overflowed;
        let trace = link.run(&mut estimator, 1_000_000.0, Duration::from_secs(30));
        let overflowed = link.overflowed - start;
        let mean = trace.iter().map(|(_, bps)| bps).sum::<f64>() / trace.len() as f64;
        assert!(
            overflowed == 0,
            "{overflowed} packets overflowed the queue after the first 5 s"
        );
        assert!(mean > 800_000.0, "mean target {mean:.0} on a 1 Mbit/s link");
    }

    #[test]
    fn the_queue_depth_is_read_from_a_batch_s_least_delay() {
        let epoch = Instant::now();
        // Packets every 10 ms, 40 ms one way, the receiver's clock 5 s ahead of ours.
        let packet = |i: u64, queued_ms: u64| PacketReport {
            ssrc: 1,
            id: i,
            rtp_sequence_number: i as u16,
            is_twcc: true,
            twcc_sequence_number: i as u16,
            size: PACKET_BYTES,
            arrived: true,
            departure: epoch + Duration::from_millis(i * 10),
            arrival: Some(Duration::from_millis(5_000 + i * 10 + 40 + queued_ms)),
            ecn: Ecn::default(),
        };
        let mut queue = QueueDelay::default();
        let batch = |from: u64, queued: &dyn Fn(u64) -> u64| {
            (from..from + 10)
                .map(|i| packet(i, queued(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(queue.update(&batch(0, &|_| 0)), Some((0.0, false)));
        // One packet 80 ms late (a busy receiver) is not a queue.
        let (depth, _) = queue
            .update(&batch(10, &|i| if i == 15 { 80 } else { 0 }))
            .unwrap();
        assert!(depth.abs() < 1e-6, "{depth}");
        // A queue growing 6 ms a packet is, and it is growing.
        let (depth, grew) = queue.update(&batch(20, &|i| (i - 19) * 6)).unwrap();
        assert!((depth - 6.0).abs() < 1e-6 && grew, "{depth} {grew}");
        let (depth, grew) = queue.update(&batch(30, &|i| (i - 19) * 6)).unwrap();
        assert!((depth - 66.0).abs() < 1e-6 && grew, "{depth} {grew}");
        // Draining: still deep, no longer growing.
        let (depth, grew) = queue.update(&batch(40, &|_| 55)).unwrap();
        assert!((depth - 55.0).abs() < 1e-6 && !grew, "{depth} {grew}");
        assert_eq!(queue.update(&[]), None);
    }

    #[test]
    fn the_threshold_returns_to_sensitivity_within_a_second_of_a_spike() {
        let epoch = Instant::now();
        let mut detector = OveruseDetector::new();
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        // A second of queue building (the start of a call into a slow link), then a flat path.
        for (i, trend) in (0..30u32).map(|i| (u64::from(i), 20.0 + f64::from(i))) {
            detector.update(at(i * 33), trend);
        }
        assert_eq!(detector.usage(), Usage::Over);
        for i in 30..60 {
            detector.update(at(i * 33), 1.0);
        }
        assert_eq!(detector.usage(), Usage::Normal);
        assert!(
            detector.threshold_ms() < 8.0,
            "threshold {} ms a second after the spike",
            detector.threshold_ms()
        );
        // A mild overshoot (a 10 ms trend) is seen within a few readings.
        let over = (60..70).find(|&i| detector.update(at(i * 33), 10.0) == Usage::Over);
        assert!(over.is_some_and(|i| i < 64), "overuse at reading {over:?}");
        // One reading outside the threshold is noise.
        let mut fresh = OveruseDetector::new();
        fresh.update(at(0), 0.0);
        assert_eq!(fresh.update(at(33), 40.0), Usage::Normal);
    }

    #[test]
    fn a_growing_queue_without_loss_is_overuse() {
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        link.max_queue = Duration::from_secs(10);
        let trace = link.run(&mut estimator, 1_000_000.0, Duration::from_secs(2));
        let after_1s = at(&trace, Duration::from_secs(1));
        assert!(
            after_1s < 1_000_000.0,
            "target 1 s into a deep 1 Mbit/s link: {after_1s}"
        );
        let stats = estimator.stats();
        assert_eq!(stats.packet_loss, Some(0.0));
        assert!(stats.delay_based_bitrate < stats.loss_based_bitrate);
    }

    #[test]
    fn ten_percent_loss_makes_the_target_fall() {
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        link.lose = random_loss(0.10);
        let trace = link.run(&mut estimator, 20_000_000.0, Duration::from_secs(5));
        let end = trace.last().expect("feedback").1;
        assert!(
            end < INITIAL_BPS * 0.8,
            "target after 5 s of 10 % loss: {end}"
        );
        let stats = estimator.stats();
        assert!(stats.loss_based_bitrate < stats.delay_based_bitrate);
    }

    #[test]
    fn five_percent_loss_holds_the_target() {
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        link.lose = Box::new(|id| id % 20 == 19);
        let trace = link.run(&mut estimator, 20_000_000.0, Duration::from_secs(3));
        let end = trace.last().expect("feedback").1;
        assert!(end >= INITIAL_BPS, "target after 3 s of 5 % loss: {end}");
    }

    #[test]
    fn published_mirrors_the_estimator_into_the_shared_state() {
        let shared = Arc::new(BweShared::default());
        let mut estimator = Published::new(Estimator::default(), shared.clone());
        assert_eq!(shared.snapshot().target_bps, INITIAL_BPS as u64);
        assert_eq!(shared.snapshot().feedback_rtt, None);
        let mut link = Link::new();
        link.lose = Box::new(|id| id % 5 == 4);
        link.run(&mut estimator, 20_000_000.0, Duration::from_secs(2));
        let snap = shared.snapshot();
        assert_eq!(snap.target_bps, estimator.target_bitrate() as u64);
        assert!(snap.target_bps < INITIAL_BPS as u64);
        assert_eq!(snap.limited_by(), Limit::Loss);
        assert!((0.15..0.25).contains(&snap.loss_fraction), "{snap:?}");
        assert_eq!(snap.feedback_batches, 20);
        // 40 ms propagation plus up to one feedback interval of waiting.
        let rtt = snap.feedback_rtt.expect("feedback arrived");
        assert!(
            rtt >= PROPAGATION && rtt <= PROPAGATION + FEEDBACK_EVERY,
            "{rtt:?}"
        );
    }

    #[test]
    fn a_long_path_starts_lower() {
        assert_eq!(start_rate(Duration::from_millis(40)), INITIAL_BPS);
        assert_eq!(start_rate(Duration::from_millis(100)), INITIAL_BPS);
        let three_g = start_rate(Duration::from_millis(350));
        assert!((850_000.0..900_000.0).contains(&three_g), "{three_g}");
        assert_eq!(start_rate(Duration::from_secs(5)), MIN_BPS);
        // On a 3G link (400 kbit/s, 175 ms each way) the lower start overflows the bottleneck's
        // queue far less before the first feedback can say anything.
        let overflowed = |start: Option<f64>| {
            let mut estimator = Estimator::default();
            if let Some(bps) = start {
                estimator.start_at(bps);
            }
            let mut link = Link::new();
            link.forward = Duration::from_millis(175);
            link.back = Duration::from_millis(175);
            link.run(&mut estimator, 400_000.0, Duration::from_secs(2));
            link.overflowed
        };
        let (from_initial, from_start) = (overflowed(None), overflowed(Some(three_g)));
        assert!(
            from_start * 2 < from_initial,
            "packets the queue dropped: {from_start} starting at {three_g}, {from_initial} at 2 Mbit/s"
        );
    }

    #[test]
    fn a_start_rate_is_taken_once_and_only_before_feedback() {
        let shared = Arc::new(BweShared::default());
        let mut estimator = Published::new(Estimator::default(), shared.clone());
        shared.start_at(800_000.0);
        assert_eq!(
            shared.snapshot().target_bps,
            800_000,
            "the encoder sees it at once"
        );
        estimator.handle_timeout(Instant::now());
        assert_eq!(estimator.target_bitrate(), 800_000.0);
        assert_eq!(shared.start_bps.load(Relaxed), 0, "taken");
        // Once feedback has moved the estimate, a start rate changes nothing.
        let mut link = Link::new();
        link.run(&mut estimator, 20_000_000.0, Duration::from_secs(1));
        let fed = estimator.target_bitrate();
        assert!(fed > 800_000.0, "{fed}");
        shared.start_at(200_000.0);
        estimator.handle_timeout(Instant::now());
        assert_eq!(estimator.target_bitrate(), fed);
        assert_eq!(shared.snapshot().target_bps, fed as u64);
    }

    /// A 3G link: 400 kbit/s, 175 ms each way. An overshoot shows only ~0.5 s after it starts, so
    /// the target must climb past the link slowly (the additive rate scales with the response
    /// time).
    #[test]
    fn a_long_path_is_probed_gently() {
        let mut estimator = Estimator::default();
        let mut link = Link::new();
        link.forward = Duration::from_millis(175);
        link.back = Duration::from_millis(175);
        link.run(&mut estimator, 400_000.0, Duration::from_secs(10));
        let start = link.overflowed;
        let trace = link.run(&mut estimator, 400_000.0, Duration::from_secs(20));
        let peak = trace.iter().map(|&(_, bps)| bps).fold(0.0, f64::max);
        let mean = trace.iter().map(|(_, bps)| bps).sum::<f64>() / trace.len() as f64;
        // With the additive rates of a 100 ms path the target went 11% past the link every 2.2 s.
        assert!(
            peak < 428_000.0,
            "target up to {peak:.0} on a 400 kbit/s link"
        );
        assert!(
            mean > 360_000.0,
            "mean target {mean:.0} on a 400 kbit/s link"
        );
        assert_eq!(link.overflowed - start, 0, "packets overflowed the queue");
    }
}
