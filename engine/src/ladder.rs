//! What the video sender sends at a given bitrate: a ladder of resolutions and frame rates (the
//! rungs), chosen from the congestion controller's target with hysteresis so the picture does not
//! flip back and forth. A camera gives up resolution before frame rate down to 360p, then frame
//! rate; a shared screen keeps its sharpness and gives up frame rate first. Pure logic with time as
//! a parameter; `FrameGate` thins a source down to the rung's frame rate.

use std::time::{Duration, Instant};

/// One step of the ladder: the largest picture sent and its frame rate, and the least bitrate
/// that step needs to look right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// The longer side is scaled to fit `width` x `height` (the source's aspect is kept).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Below this the next rung down looks better.
    pub min_bps: u32,
}

impl Rung {
    const fn new(width: u32, height: u32, fps: u32, min_bps: u32) -> Self {
        Self {
            width,
            height,
            fps,
            min_bps,
        }
    }
}

/// A camera: 720p30 down to 180p20, keeping the frame rate high as long as it can (a call at 15
/// fps and below looks like a slide show; the low rungs give up pixels first). The thresholds follow what libwebrtc's
/// quality scaler and Chromium settle on (on a 1 Mbit/s link Chromium sends 960x540 at 650-780
/// kbit/s).
pub const CAMERA: [Rung; 5] = [
    Rung::new(1280, 720, 30, 1_000_000),
    Rung::new(960, 540, 30, 550_000),
    Rung::new(640, 360, 30, 220_000),
    Rung::new(480, 270, 30, 130_000),
    Rung::new(320, 180, 20, 0),
];

/// A shared screen: text stays sharp; frame rate goes first.
pub const SCREEN: [Rung; 4] = [
    Rung::new(1920, 1080, 10, 600_000),
    Rung::new(1920, 1080, 5, 300_000),
    Rung::new(1920, 1080, 2, 150_000),
    Rung::new(960, 540, 2, 0),
];

/// How long the target must stay below the current rung before stepping down (unless it is far
/// below), and above the next rung (with headroom) before stepping up.
const DOWN_AFTER: Duration = Duration::from_millis(1000);
const UP_AFTER: Duration = Duration::from_secs(3);
/// A step up undone within this long failed: the link could not carry the rung (on a slow link
/// the new rung's keyframe and bitrate are what tip it over)...
const FAILED_UP_WITHIN: Duration = Duration::from_secs(10);
/// ... and each failure doubles the wait before the next try at that rung, up to this. Without it
/// a target swinging around a rung's threshold (congestion control's sawtooth on a 400 kbit/s
/// link) stepped up and down every few seconds, a keyframe and a freeze each time.
const MAX_UP_AFTER: Duration = Duration::from_secs(24);
/// When a cap (this computer's processor, or what the receiver asked for) lifts, the ladder goes
/// back to the rung the link carried before the cap took it down, in one step and after this
/// long, instead of a rung each `UP_AFTER`: the link was not what held the picture down. (A
/// window restored after it was minimized would otherwise show a small picture for 12 s.) A
/// rung that fails there waits as any failed step up does (`up_after`).
const LIFT_AFTER: Duration = Duration::from_secs(1);
/// A lift undone by a cap within this long (a receiver that asks again at once) doubles the wait
/// before the next lift to that rung, as a failed step up does: a peer that takes its ask back
/// and asks again, over and over, gets a keyframe pair at most every `MAX_UP_AFTER`, not every
/// second. Longer than a person's glance at a window they minimize again, shorter than a call.
const LIFT_HELD: Duration = Duration::from_secs(3);
/// Far below the rung: step down at once.
const FAR_BELOW: f64 = 0.6;
/// Stepping up needs this much more than the next rung's minimum, so a target hovering at a
/// threshold does not oscillate.
const UP_HEADROOM: f64 = 1.25;

/// Why the sender is not sending what was asked for (as `qualityLimitationReason` in WebRTC stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limitation {
    #[default]
    None,
    Bandwidth,
    Cpu,
    /// The other side's processor: its decoder asked for less (W3C's "other").
    Receiver,
}

#[derive(Debug)]
pub struct Ladder {
    rungs: Vec<Rung>,
    current: usize,
    /// When the target first went below the current rung (stepping down) or above the next one
    /// (stepping up), if it still is.
    below_since: Option<Instant>,
    above_since: Option<Instant>,
    /// How long the target must stay above each rung's threshold before stepping up to it.
    up_after: Vec<Duration>,
    /// The rung last stepped up to, and when, until it has held `FAILED_UP_WITHIN`.
    last_up: Option<(usize, Instant)>,
    /// The largest rung this computer keeps up with (`thread_load`): 0 while it keeps up with all.
    cpu_cap: usize,
    /// The largest rung the receiver's decoder keeps up with (what it asked for, see
    /// `thread_load::DecoderAsk`): 0 while it asks for nothing.
    receiver_cap: usize,
    /// The rung the link carried when a cap first took the ladder below it, until the ladder is
    /// back there or the link itself takes it lower.
    before_cap: Option<usize>,
    /// The rung the last lift went back to, and when.
    last_lift: Option<(usize, Instant)>,
    /// Which cap took it there (the processor's, named first, or the receiver's): still the
    /// reason for a lower rung while the ladder waits to go back after the cap lifts.
    capped_by: Limitation,
    /// The source's size, which decides the size each rung is sent at.
    source: (u32, u32),
}

impl Ladder {
    /// A ladder for `rungs` capped at what the source delivers (`source` size, `max_fps`): rungs
    /// larger than the source are left out (sending a 360p camera as "720p" gains nothing).
    pub fn new(rungs: &[Rung], source: (u32, u32), max_fps: u32) -> Self {
        let (sw, sh) = (source.0.max(source.1), source.0.min(source.1));
        let mut usable: Vec<Rung> = rungs
            .iter()
            .map(|r| {
                // The rung's longer side against the source's longer side; a rung cut down to a
                // smaller source needs proportionally fewer bits.
                let (width, height) = (r.width.min(sw), r.height.min(sh));
                let pixels = f64::from(width) * f64::from(height);
                let nominal = f64::from(r.width) * f64::from(r.height);
                Rung {
                    width,
                    height,
                    fps: r.fps.min(max_fps.max(1)),
                    min_bps: (f64::from(r.min_bps) * pixels / nominal) as u32,
                }
            })
            .collect();
        // Rungs the source makes identical collapse into one, which needs what the lowest of them
        // needs (a 360p camera at 400 kbit/s is the 360p rung, not a starved "720p").
        usable.dedup_by(|b, a| {
            let same = a.width == b.width && a.height == b.height && a.fps == b.fps;
            if same {
                a.min_bps = b.min_bps;
            }
            same
        });
        if usable.is_empty() {
            usable.push(Rung::new(sw, sh, max_fps.max(1), 0));
        }
        Self {
            up_after: vec![UP_AFTER; usable.len()],
            rungs: usable,
            current: 0,
            below_since: None,
            above_since: None,
            last_up: None,
            cpu_cap: 0,
            receiver_cap: 0,
            before_cap: None,
            last_lift: None,
            capped_by: Limitation::None,
            source,
        }
    }

    pub fn current(&self) -> Rung {
        self.rungs[self.current]
    }

    /// Why a lower rung than the top is in use: the processor when it is at the processor's cap
    /// (as libwebrtc, which names the processor first when both hold the picture down), else the
    /// bitrate.
    pub fn limitation(&self) -> Limitation {
        if self.current == 0 {
            Limitation::None
        } else if self.current == self.cpu_cap {
            Limitation::Cpu
        } else if self.current == self.receiver_cap {
            Limitation::Receiver
        } else if self.before_cap.is_some_and(|before| before < self.current) {
            // A cap lifted; the ladder goes back within `LIFT_AFTER`.
            self.capped_by
        } else {
            Limitation::Bandwidth
        }
    }

    /// The largest rung allowed: what both this computer and the receiver keep up with.
    fn cap(&self) -> usize {
        self.cpu_cap.max(self.receiver_cap)
    }

    /// The receiver asks for at most `max_pixel_rate` pixels a second (`None`: all there is): the
    /// largest rung whose picture (at the source's aspect) and frame rate fit, the lowest if none.
    /// The next `update` moves there at once, if that is lower; it climbs back only as far.
    pub fn set_receiver_limit(&mut self, max_pixel_rate: Option<u64>) {
        self.receiver_cap = max_pixel_rate.map_or(0, |max| {
            (0..self.rungs.len())
                .find(|&i| self.pixel_rate(self.rungs[i]) <= max)
                .unwrap_or(self.rungs.len() - 1)
        });
    }

    /// The pixels a second `rung` sends, at the source's aspect.
    fn pixel_rate(&self, rung: Rung) -> u64 {
        let (w, h) = send_size(self.source.0, self.source.1, rung);
        u64::from(w) * u64::from(h) * u64::from(rung.fps)
    }

    /// The current rung's pixels a second over the top rung's (1 at the top).
    pub fn pixel_share(&self) -> f64 {
        self.pixel_rate(self.current()) as f64 / self.pixel_rate(self.rungs[0]).max(1) as f64
    }

    /// The processor did not keep up with the current rung: the next `update` goes a rung lower,
    /// and no higher than that until `cpu_up`. False at the bottom.
    pub fn cpu_down(&mut self) -> bool {
        if self.current + 1 >= self.rungs.len() {
            return false;
        }
        self.cpu_cap = self.current + 1;
        true
    }

    /// The processor would keep up with the rung above its cap.
    pub fn cpu_up(&mut self) {
        self.cpu_cap = self.cpu_cap.saturating_sub(1);
    }

    /// How many times the work of a frame now a frame of the rung above the processor's cap
    /// is (pixels a second); `None` when the processor holds nothing down.
    pub fn cpu_up_ratio(&self) -> Option<f64> {
        let above = self.rungs[self.cpu_cap.checked_sub(1)?];
        let work = |r: Rung| f64::from(r.width) * f64::from(r.height) * f64::from(r.fps.max(1));
        Some(work(above) / work(self.current()))
    }

    /// Feeds the bitrate available for video now; returns the new rung when it changes.
    /// `keyframe_due`: the next frame is a keyframe anyway (a receiver asked for one). A step
    /// down that is waiting is taken at once then: a new rung costs a keyframe, and this one is
    /// paid for already (otherwise the keyframe at the old size is followed by another at the new).
    pub fn update(&mut self, video_bps: u32, now: Instant, keyframe_due: bool) -> Option<Rung> {
        if self.current < self.cap() {
            // Down for a processor (ours or the receiver's), at once. Not a failed step up for
            // the bitrate's sake.
            self.before_cap.get_or_insert(self.current);
            if let Some((lifted, at)) = self.last_lift.take() {
                if now.saturating_duration_since(at) < LIFT_HELD {
                    self.up_after[lifted] = (self.up_after[lifted] * 2).min(MAX_UP_AFTER);
                }
            }
            self.current = self.cap();
            self.capped_by = if self.current == self.cpu_cap {
                Limitation::Cpu
            } else {
                Limitation::Receiver
            };
            self.below_since = None;
            self.above_since = None;
            self.last_up = None;
            return Some(self.current());
        }
        let rung = self.current();
        let bps = f64::from(video_bps);
        if let Some((index, at)) = self.last_up {
            if now.saturating_duration_since(at) >= FAILED_UP_WITHIN {
                // The step held: the next try at this rung, after a later step down, is a new one.
                self.up_after[index] = UP_AFTER;
                self.last_up = None;
            }
        }
        if self.current + 1 < self.rungs.len() && bps < f64::from(rung.min_bps) {
            self.above_since = None;
            let since = *self.below_since.get_or_insert(now);
            if bps < FAR_BELOW * f64::from(rung.min_bps)
                || now - since >= DOWN_AFTER
                || keyframe_due
            {
                // Far below: go straight to the rung that fits.
                let fits = (self.current..self.rungs.len())
                    .find(|&i| bps >= f64::from(self.rungs[i].min_bps))
                    .unwrap_or(self.rungs.len() - 1);
                // The link holds the picture down now; a cap that lifts gives back only this. (A
                // lift that led here failed as a step up, which `step_to` counts.)
                self.before_cap = None;
                self.last_lift = None;
                return self.step_to(fits.max(self.current + 1), now);
            }
            return None;
        }
        self.below_since = None;
        if let Some(target) = self.lifted_to(bps) {
            // A rung that failed after an earlier lift waits its longer time.
            let wait = if self.up_after[target] > UP_AFTER {
                self.up_after[target]
            } else {
                LIFT_AFTER
            };
            let since = *self.above_since.get_or_insert(now);
            if now - since >= wait {
                self.last_lift = Some((target, now));
                return self.step_to(target, now);
            }
            return None;
        }
        if self.current > self.cap() {
            let up = self.rungs[self.current - 1];
            if bps >= UP_HEADROOM * f64::from(up.min_bps) {
                let since = *self.above_since.get_or_insert(now);
                if now - since >= self.up_after[self.current - 1] {
                    return self.step_to(self.current - 1, now);
                }
                return None;
            }
        }
        self.above_since = None;
        None
    }

    /// A cap lifted above the current rung: the rung to go back to, the one the link carried
    /// before the cap (or the new cap, if lower), as far as the bitrate still carries it with
    /// headroom. `None` when no cap lifted; when the bitrate has no room above, the link is
    /// what holds the picture down now, and the rung before the cap is forgotten.
    fn lifted_to(&mut self, bps: f64) -> Option<usize> {
        let before = self.before_cap?;
        if before >= self.current {
            self.before_cap = None;
            return None;
        }
        let highest = before.max(self.cap());
        let fits = (highest..self.current)
            .find(|&i| bps >= UP_HEADROOM * f64::from(self.rungs[i].min_bps));
        if fits.is_none() && self.current > self.cap() {
            self.before_cap = None;
        }
        fits
    }

    fn step_to(&mut self, index: usize, now: Instant) -> Option<Rung> {
        let index = index.min(self.rungs.len() - 1);
        self.below_since = None;
        self.above_since = None;
        if index == self.current {
            return None;
        }
        if index < self.current {
            self.last_up = Some((index, now));
        } else if let Some((up, _)) = self.last_up.take() {
            // Down again before the step up held (`update` forgets steps that held).
            self.up_after[up] = (self.up_after[up] * 2).min(MAX_UP_AFTER);
        }
        self.current = index;
        Some(self.current())
    }
}

/// The size a `source_w` x `source_h` picture is sent at on `rung`: scaled down (never up) to fit,
/// aspect kept, even sides.
pub fn send_size(source_w: u32, source_h: u32, rung: Rung) -> (u32, u32) {
    let (max_w, max_h) = if source_w >= source_h {
        (rung.width, rung.height)
    } else {
        (rung.height, rung.width)
    };
    if source_w <= max_w && source_h <= max_h {
        return (source_w & !1, source_h & !1);
    }
    let scale =
        (f64::from(max_w) / f64::from(source_w)).min(f64::from(max_h) / f64::from(source_h));
    let even = |v: f64| ((v.round() as u32) & !1).max(16);
    (
        even(f64::from(source_w) * scale),
        even(f64::from(source_h) * scale),
    )
}

/// Thins frames to a frame rate by their capture times: a frame passes when at least one interval
/// (less a little slack for capture jitter) went by since the last one that passed.
#[derive(Debug, Default)]
pub struct FrameGate {
    last_us: Option<u64>,
}

impl FrameGate {
    pub fn admit(&mut self, capture_ts_us: u64, fps: u32) -> bool {
        let interval_us = 1_000_000 / u64::from(fps.max(1));
        let slack_us = interval_us / 5;
        match self.last_us {
            Some(last) if capture_ts_us.saturating_sub(last) + slack_us < interval_us => false,
            _ => {
                self.last_us = Some(capture_ts_us);
                true
            }
        }
    }
}

/// Keyframes cost several times a normal frame: answer requests at most once per `min_gap`. A
/// request that comes during the hold-off is dropped, as libwebrtc's sender does: it was most
/// likely sent before the keyframe just made could reach the receiver, and a receiver that still
/// needs one asks again (ours every 250 ms, Chromium's every 200 ms). Serving it later instead
/// queued keyframe after keyframe into a link that had just shrunk.
#[derive(Debug)]
pub struct KeyframeLimiter {
    min_gap: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl KeyframeLimiter {
    pub fn new(min_gap: Duration) -> Self {
        Self {
            min_gap,
            last: None,
            pending: false,
        }
    }

    /// A receiver asked for a keyframe.
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Whether `take` at `now` would make a keyframe (it changes nothing).
    pub fn due(&self, now: Instant) -> bool {
        self.pending && self.last.is_none_or(|t| now - t >= self.min_gap)
    }

    /// Whether the frame about to be encoded at `now` should be a keyframe.
    /// A request inside the hold-off is dropped here.
    pub fn take(&mut self, now: Instant) -> bool {
        let due = self.due(now);
        self.pending = false;
        if due {
            self.last = Some(now);
        }
        due
    }

    /// The encoder produced a keyframe on its own (a new encoder, a new resolution): it counts.
    pub fn sent(&mut self, now: Instant) {
        self.last = Some(now);
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Feeds `bps` every 100 ms from `from` to `to` ms; returns the rungs stepped to, with times.
    fn feed(
        ladder: &mut Ladder,
        t0: Instant,
        from: u64,
        to: u64,
        bps: u32,
    ) -> Vec<(u64, (u32, u32, u32))> {
        (from..to)
            .step_by(100)
            .filter_map(|t| {
                ladder
                    .update(bps, ms(t0, t), false)
                    .map(|r| (t, (r.width, r.height, r.fps)))
            })
            .collect()
    }

    #[test]
    fn a_good_link_keeps_the_top_rung() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        assert!(feed(&mut ladder, t0, 0, 10_000, 1_800_000).is_empty());
        assert_eq!(ladder.current(), CAMERA[0]);
        assert_eq!(ladder.limitation(), Limitation::None);
    }

    #[test]
    fn the_processor_caps_the_ladder_below_what_the_link_allows() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        assert_eq!(ladder.cpu_up_ratio(), None);
        assert!(ladder.cpu_down());
        // Down at the next frame, plenty of bitrate or not, and kept there.
        let steps = feed(&mut ladder, t0, 0, 20_000, 5_000_000);
        assert_eq!(steps, vec![(0, (960, 540, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Cpu);
        // 720p is 1.78 times 540p's pixels a second.
        let ratio = ladder.cpu_up_ratio().unwrap();
        assert!((ratio - 1280.0 * 720.0 / (960.0 * 540.0)).abs() < 1e-9);
        // The link can still take it lower than the processor's cap: then it is the link's.
        let steps = feed(&mut ladder, t0, 20_000, 20_200, 150_000);
        assert_eq!(steps, vec![(20_000, (480, 270, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Bandwidth);
        // With the bitrate back the ladder climbs to the cap, not past it.
        let steps = feed(&mut ladder, t0, 20_200, 40_000, 5_000_000);
        assert_eq!(steps.last().map(|s| s.1), Some((960, 540, 30)), "{steps:?}");
        assert_eq!(ladder.limitation(), Limitation::Cpu);
        // Once the processor allows it, the bitrate's usual wait, then up.
        ladder.cpu_up();
        let steps = feed(&mut ladder, t0, 40_000, 50_000, 5_000_000);
        assert_eq!(steps, vec![(43_000, (1280, 720, 30))]);
        assert_eq!(ladder.limitation(), Limitation::None);
    }

    #[test]
    fn a_receiver_that_asks_for_less_caps_the_ladder_at_the_rung_that_fits() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        // 0.6 of 720p30: 540p30 fits.
        ladder.set_receiver_limit(Some(1280 * 720 * 30 * 6 / 10));
        let steps = feed(&mut ladder, t0, 0, 10_000, 5_000_000);
        assert_eq!(steps, vec![(0, (960, 540, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Receiver);
        // Both processors: ours names itself first, and the lower cap holds.
        assert!(ladder.cpu_down());
        let steps = feed(&mut ladder, t0, 10_000, 10_100, 5_000_000);
        assert_eq!(steps, vec![(10_000, (640, 360, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Cpu);
        ladder.cpu_up();
        // Back to 540p, the receiver's cap, a second later (the link was never in the way).
        let steps = feed(&mut ladder, t0, 10_100, 20_000, 5_000_000);
        assert_eq!(steps, vec![(11_100, (960, 540, 30))]);
        // Both hold it at 540p now; once ours would take 720p, only the receiver does.
        assert_eq!(ladder.limitation(), Limitation::Cpu);
        ladder.cpu_up();
        assert!(feed(&mut ladder, t0, 19_900, 20_000, 5_000_000).is_empty());
        assert_eq!(ladder.limitation(), Limitation::Receiver);
        // Less than the lowest rung asks for the lowest; the ask taken back, the top again.
        ladder.set_receiver_limit(Some(1000));
        let steps = feed(&mut ladder, t0, 20_000, 20_100, 5_000_000);
        assert_eq!(steps, vec![(20_000, (320, 180, 20))]);
        assert_eq!(ladder.limitation(), Limitation::Receiver);
        ladder.set_receiver_limit(None);
        let steps = feed(&mut ladder, t0, 20_100, 40_000, 5_000_000);
        assert_eq!(
            steps.last().map(|s| s.1),
            Some((1280, 720, 30)),
            "{steps:?}"
        );
        assert_eq!(ladder.limitation(), Limitation::None);
    }

    #[test]
    fn a_receiver_that_flips_its_ask_gets_the_least_and_no_keyframe_storm() {
        // A hostile peer asks for the least and for everything in turn, every 100 ms, for a
        // minute: the first ask is a step down at once; a step back up needs a second without an
        // ask, so the picture stays at the bottom: one change (one keyframe), not one for each
        // ask.
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        let mut changes = Vec::new();
        for i in 0..600u64 {
            ladder.set_receiver_limit((i % 2 == 0).then_some(1));
            changes.extend(ladder.update(5_000_000, ms(t0, i * 100), false));
        }
        assert_eq!(changes, [CAMERA[CAMERA.len() - 1]]);
        // Once it stops (its last ask, at 59.9 s, took the limit back), back to the top, where the
        // link had it, a second later.
        ladder.set_receiver_limit(None);
        let steps = feed(&mut ladder, t0, 60_000, 80_000, 5_000_000);
        assert_eq!(steps, vec![(60_900, (1280, 720, 30))]);
        assert_eq!(ladder.current(), CAMERA[0]);
    }

    #[test]
    fn a_receivers_ask_counts_the_pictures_sent_at_the_sources_aspect() {
        // A 4:3 camera's "720p" is 960x720: 0.6 of its pixels a second fits 720x540.
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (960, 720), 30);
        ladder.set_receiver_limit(Some(960 * 720 * 30 * 6 / 10));
        let steps = feed(&mut ladder, t0, 0, 1_000, 5_000_000);
        assert_eq!(steps, vec![(0, (960, 540, 30))]);
        assert_eq!(send_size(960, 720, ladder.current()), (720, 540));
    }

    #[test]
    fn a_lifted_cap_gives_back_what_the_link_carried_in_one_step() {
        // A receiver that asks for the least (a minimized window) and then for everything: the
        // top again a second later, not a rung each 3 s.
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        ladder.set_receiver_limit(Some(1));
        assert_eq!(
            feed(&mut ladder, t0, 0, 10_000, 5_000_000),
            vec![(0, (320, 180, 20))]
        );
        ladder.set_receiver_limit(None);
        // Until it goes back, the picture is still down for the receiver, not the link.
        assert_eq!(ladder.update(5_000_000, ms(t0, 10_000), false), None);
        assert_eq!(ladder.limitation(), Limitation::Receiver);
        let steps = feed(&mut ladder, t0, 10_100, 30_000, 5_000_000);
        assert_eq!(steps, vec![(11_000, (1280, 720, 30))]);
        assert_eq!(ladder.limitation(), Limitation::None);

        // Only as far as the link carried it: 540p on an 800 kbit/s target, which has no room
        // for 720p.
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        assert_eq!(
            feed(&mut ladder, t0, 0, 2_000, 800_000),
            vec![(1_000, (960, 540, 30))]
        );
        ladder.set_receiver_limit(Some(1));
        feed(&mut ladder, t0, 2_000, 5_000, 800_000);
        ladder.set_receiver_limit(None);
        let steps = feed(&mut ladder, t0, 5_000, 30_000, 800_000);
        assert_eq!(steps, vec![(6_000, (960, 540, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Bandwidth);

        // The link shrank while the cap held: the lift goes as far as the target carries now.
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        ladder.set_receiver_limit(Some(1));
        feed(&mut ladder, t0, 0, 1_000, 5_000_000);
        ladder.set_receiver_limit(None);
        let steps = feed(&mut ladder, t0, 1_000, 10_000, 400_000);
        assert_eq!(steps, vec![(2_000, (640, 360, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Bandwidth);

        // And no further than the bottom, if that is all the link carries: then it is the link
        // that holds the picture down.
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        ladder.set_receiver_limit(Some(1));
        feed(&mut ladder, t0, 0, 1_000, 5_000_000);
        ladder.set_receiver_limit(None);
        assert!(feed(&mut ladder, t0, 1_000, 5_000, 150_000).is_empty());
        assert_eq!(ladder.limitation(), Limitation::Bandwidth);
    }

    #[test]
    fn a_receiver_that_asks_again_right_after_each_lift_gets_no_keyframe_storm() {
        // A hostile peer takes its ask back for 1.1 s and asks again for 0.1 s, for a minute:
        // the first lift goes back to the top; being undone at once, the next lift to the top
        // waits 6 s, which this peer never leaves: three changes, not one a second.
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        let mut changes = Vec::new();
        for i in 0..600u64 {
            ladder.set_receiver_limit((i % 12 == 0).then_some(1));
            changes.extend(ladder.update(5_000_000, ms(t0, i * 100), false));
        }
        let bottom = CAMERA[CAMERA.len() - 1];
        assert_eq!(changes, [bottom, CAMERA[0], bottom]);
        // A person who minimizes the window again only after a few seconds gets the picture
        // back a second after each restore.
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        let mut t = 0;
        for _ in 0..5 {
            ladder.set_receiver_limit(Some(1));
            assert_eq!(
                feed(&mut ladder, t0, t, t + 5_000, 5_000_000),
                [(t, (320, 180, 20))]
            );
            ladder.set_receiver_limit(None);
            let back = feed(&mut ladder, t0, t + 5_000, t + 10_000, 5_000_000);
            assert_eq!(back, [(t + 6_000, (1280, 720, 30))]);
            t += 10_000;
        }
    }

    #[test]
    fn a_lift_to_a_rung_that_fails_waits_longer_next_time() {
        // Back to 720p after a lift, and the link cannot carry it there (the target falls within
        // 10 s): 720p's next try waits 6 s, as after a failed step up of the link's own.
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        ladder.set_receiver_limit(Some(1));
        feed(&mut ladder, t0, 0, 1_000, 5_000_000);
        ladder.set_receiver_limit(None);
        assert_eq!(
            feed(&mut ladder, t0, 1_000, 3_000, 5_000_000),
            vec![(2_000, (1280, 720, 30))]
        );
        assert_eq!(
            feed(&mut ladder, t0, 3_000, 3_200, 580_000),
            vec![(3_000, (960, 540, 30))]
        );
        // Another ask and its lift: back to 540p, where the link had it, a second later; then
        // 720p only after its doubled wait.
        ladder.set_receiver_limit(Some(1));
        feed(&mut ladder, t0, 3_200, 4_000, 5_000_000);
        ladder.set_receiver_limit(None);
        let steps = feed(&mut ladder, t0, 4_000, 30_000, 5_000_000);
        assert_eq!(
            steps,
            vec![(5_000, (960, 540, 30)), (11_100, (1280, 720, 30))]
        );
    }

    #[test]
    fn the_processor_cannot_take_the_ladder_below_its_bottom() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        let mut rungs = Vec::new();
        while ladder.cpu_down() {
            rungs.extend(feed(&mut ladder, t0, 0, 100, 5_000_000));
        }
        assert_eq!(rungs.len(), CAMERA.len() - 1);
        assert_eq!(ladder.current(), CAMERA[CAMERA.len() - 1]);
        assert_eq!(ladder.limitation(), Limitation::Cpu);
    }

    #[test]
    fn steps_down_after_a_second_below_and_at_once_when_far_below() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        // 800 kbit/s: below 720p's 1 Mbit/s but not far below: 540p after a second.
        let steps = feed(&mut ladder, t0, 0, 3000, 800_000);
        assert_eq!(steps, vec![(1000, (960, 540, 30))]);
        assert_eq!(ladder.limitation(), Limitation::Bandwidth);
        // A collapse to 100 kbit/s: straight to the bottom, no waiting.
        let steps = feed(&mut ladder, t0, 3000, 3200, 100_000);
        assert_eq!(steps, vec![(3000, (320, 180, 20))]);
    }

    #[test]
    fn a_step_down_waiting_is_taken_with_a_keyframe_that_is_due() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        // Below 720p's minimum, not far below: the step waits...
        assert_eq!(ladder.update(800_000, ms(t0, 0), false), None);
        // ...until a keyframe is due anyway.
        assert_eq!(
            ladder.update(800_000, ms(t0, 100), true).map(|r| r.height),
            Some(540)
        );
        // A keyframe due with the target above the rung changes nothing (nor steps up early).
        assert_eq!(ladder.update(5_000_000, ms(t0, 200), true), None);
        assert_eq!(ladder.update(800_000, ms(t0, 300), true), None);
    }

    #[test]
    fn steps_up_only_after_seconds_with_headroom_and_does_not_oscillate() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        feed(&mut ladder, t0, 0, 200, 200_000);
        assert_eq!(ladder.current().height, 270);
        // Hovering just above 360p30's minimum (220 kbit/s) is not enough to go up (headroom 25%).
        assert!(feed(&mut ladder, t0, 200, 10_000, 260_000).is_empty());
        // A target that alternates around a threshold never moves the ladder.
        let mut t = 10_000;
        for i in 0..100 {
            let bps = if i % 2 == 0 { 290_000 } else { 240_000 };
            assert_eq!(ladder.update(bps, ms(t0, t), false), None);
            t += 500;
        }
        // Plenty of bitrate for 3 s: one step at a time, 3 s apart.
        let steps = feed(&mut ladder, t0, 60_000, 75_000, 2_000_000);
        assert_eq!(
            steps,
            vec![
                (63_000, (640, 360, 30)),
                (66_100, (960, 540, 30)),
                (69_200, (1280, 720, 30))
            ]
        );
    }

    #[test]
    fn a_rung_the_link_cannot_carry_is_retried_ever_more_slowly() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (1280, 720), 30);
        feed(&mut ladder, t0, 0, 200, 200_000);
        assert_eq!(ladder.current().height, 270);
        // A link that carries 270p30 with room for 360p30 by the target (300 kbit/s), until 360p
        // is tried: a second later the target falls to 150 kbit/s, and the ladder steps back down.
        let mut changed_at = 200;
        let mut ups = Vec::new();
        let mut t = 200;
        while t < 120_000 {
            let tried = ladder.current().height == 360 && t - changed_at >= 1000;
            let bps = if tried { 150_000 } else { 300_000 };
            if let Some(rung) = ladder.update(bps, ms(t0, t), false) {
                changed_at = t;
                if rung.height == 360 {
                    ups.push(t);
                }
            }
            t += 100;
        }
        // Tries 3, 6, 12, then 24 s after each step down (every 5 s without the backoff).
        let waits: Vec<u64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(ups.len(), 6, "steps up at {ups:?}");
        assert!(
            waits.windows(2).all(|w| w[1] >= w[0]),
            "waits between tries {waits:?}"
        );
        assert!(waits.last().is_some_and(|&w| w >= 24_000), "{waits:?}");
        // A try that holds (10 s) resets the wait: after the next dip, 3 s again.
        let up = (t..t + 30_000)
            .step_by(100)
            .find(|&at| ladder.update(300_000, ms(t0, at), false).is_some())
            .expect("tried again");
        assert!(feed(&mut ladder, t0, up + 100, up + 12_000, 300_000).is_empty());
        let down = feed(&mut ladder, t0, up + 12_000, up + 14_000, 150_000);
        assert_eq!(down, vec![(up + 13_000, (480, 270, 30))]);
        let again = feed(&mut ladder, t0, up + 14_000, up + 20_000, 300_000);
        assert_eq!(again, vec![(up + 17_000, (640, 360, 30))]);
    }

    #[test]
    fn the_ladder_never_exceeds_the_source() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&CAMERA, (640, 360), 30);
        assert_eq!(ladder.current(), Rung::new(640, 360, 30, 220_000));
        assert!(
            feed(&mut ladder, t0, 0, 5000, 480_000).is_empty(),
            "a 360p source keeps 30 fps at its default bitrate"
        );
        let steps = feed(&mut ladder, t0, 5000, 7000, 180_000);
        assert_eq!(
            steps,
            vec![(6000, (480, 270, 30))],
            "the next distinct rung down"
        );
        // A 15 fps source: no 30 fps rung.
        let ladder = Ladder::new(&CAMERA, (1280, 720), 15);
        assert_eq!(ladder.current().fps, 15);
        // A small source needs few bits: 320x180 keeps 30 fps at its default 150 kbit/s.
        let mut ladder = Ladder::new(&CAMERA, (320, 180), 30);
        assert!(feed(&mut ladder, t0, 0, 5000, 150_000).is_empty());
        assert_eq!(ladder.current().fps, 30);
    }

    #[test]
    fn a_shared_screen_gives_up_frame_rate_first() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(&SCREEN, (1920, 1080), 10);
        let steps = feed(&mut ladder, t0, 0, 5000, 200_000);
        assert_eq!(steps[0].1, (1920, 1080, 2), "sharpness kept");
    }

    #[test]
    fn send_sizes_keep_the_aspect_and_never_upscale() {
        let r = CAMERA[1];
        assert_eq!(send_size(1280, 720, r), (960, 540));
        assert_eq!(send_size(640, 480, r), (640, 480));
        assert_eq!(send_size(1920, 1080, CAMERA[4]), (320, 180));
        assert_eq!(send_size(720, 1280, r), (540, 960), "portrait");
        assert_eq!(send_size(1281, 721, CAMERA[0]), (1278, 720));
    }

    #[test]
    fn the_gate_passes_the_rung_rate() {
        let mut gate = FrameGate::default();
        // 30 fps in, 15 fps out: every other frame.
        let passed = (0..60u64).filter(|i| gate.admit(i * 33_333, 15)).count();
        assert_eq!(passed, 30);
        // Jittery capture at 30 fps through a 30 fps gate: nothing lost.
        let mut gate = FrameGate::default();
        let passed = (0..60u64)
            .filter(|i| gate.admit(i * 33_333 + if i % 2 == 0 { 3_000 } else { 0 }, 30))
            .count();
        assert_eq!(passed, 60);
    }

    #[test]
    fn keyframes_are_rate_limited_and_requests_in_the_hold_off_dropped() {
        let t0 = Instant::now();
        let mut k = KeyframeLimiter::new(Duration::from_millis(500));
        assert!(!k.take(t0), "nobody asked");
        k.request();
        assert!(k.take(ms(t0, 0)));
        // A storm of requests during the hold-off: none is served, then or later.
        for t in (10..500).step_by(10) {
            k.request();
            assert!(!k.take(ms(t0, t)), "at {t} ms");
        }
        assert!(!k.take(ms(t0, 500)), "a request from the hold-off was kept");
        // The receiver asks again after it: served at once.
        k.request();
        assert!(k.due(ms(t0, 600)));
        assert!(k.take(ms(t0, 600)));
        assert!(!k.due(ms(t0, 600)));
        assert!(!k.take(ms(t0, 610)));
        // A keyframe the encoder made on its own (a new rung) starts a hold-off too.
        k.sent(ms(t0, 2000));
        k.request();
        assert!(!k.due(ms(t0, 2100)));
        assert!(!k.take(ms(t0, 2100)));
        assert!(!k.take(ms(t0, 2500)));
        k.request();
        assert!(k.take(ms(t0, 2500)));
    }
}
