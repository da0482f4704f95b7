//! Whether this computer keeps up with the video it sends and receives. A slow processor (or one
//! busy with other programs) cannot encode 720p30: frames then come out late and fewer, and the
//! encoder's thread takes the cores the audio and the window need. Like libwebrtc's overuse
//! detector ("CPU adaptation"), the sender measures how much of the wall clock its encode thread
//! spends on the frames (scaling and encoding), and steps the ladder down a rung when that stays
//! above 85%, and back up when the rung above would fit comfortably, waiting longer after each
//! step up that did not hold (`ThreadLoad`).
//!
//! A receiver measures its decode thread the same way. When it cannot keep up with what arrives,
//! it asks the sender for less (`DecoderAsk`: at most 0.6 of the pixels a second it gets now,
//! about a rung of the camera's ladder) over the data channel, and takes the ask back, a step at
//! a time, when the picture it asked away would fit again. The sender's ladder treats the ask as
//! a cap, like its own processor's. Pure logic with time as a parameter.

use std::time::{Duration, Instant};

/// The load is measured over windows this long.
pub const WINDOW: Duration = Duration::from_secs(2);
/// A window whose frames took this share of it is overuse (libwebrtc's 85%)...
pub const OVERUSE: f64 = 0.85;
/// ... and this many overused windows in a row step the picture down. A burst of other work on
/// the computer (an app starting) passes without a smaller picture.
pub const OVERUSE_WINDOWS: u32 = 2;
/// A step up is taken when the load, scaled by how much more work a frame of the rung above is,
/// stays below this (between libwebrtc's 42% low mark times a rung's 1.8-2.3x more pixels, and
/// the overuse mark, so that a step up is not undone by the next window)...
pub const UP_PREDICTED: f64 = 0.7;
/// ... for this long, at first.
pub const UP_AFTER: Duration = Duration::from_secs(10);
/// A step up followed by overuse within this long failed...
pub const FAILED_UP_WITHIN: Duration = Duration::from_secs(30);
/// ... and doubles the wait before the next one, up to this.
pub const MAX_UP_AFTER: Duration = Duration::from_secs(80);

/// A window that ended: its load, and what it asks of the ladder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The share of the window spent on frames (1.0: the thread did nothing else).
    pub load: f64,
    /// How long the window was.
    pub length: Duration,
    pub verdict: Option<Verdict>,
}

/// What the load asks of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A smaller picture: this one cannot be kept up with.
    Down,
    /// The rung above would fit now.
    Up,
}

#[derive(Debug)]
pub struct ThreadLoad {
    window_start: Option<Instant>,
    busy: Duration,
    /// When the last frame was done.
    last_frame: Option<Instant>,
    overused: u32,
    /// Since when every window was light enough for the rung above.
    light_since: Option<Instant>,
    up_after: Duration,
    last_up: Option<Instant>,
}

impl Default for ThreadLoad {
    fn default() -> Self {
        Self {
            window_start: None,
            busy: Duration::ZERO,
            last_frame: None,
            overused: 0,
            light_since: None,
            up_after: UP_AFTER,
            last_up: None,
        }
    }
}

impl ThreadLoad {
    /// Starts measuring afresh at `now`: a new rung's encoder and its first keyframe cost more
    /// than its frames will, and the old rung's windows say nothing of the new one.
    pub fn restart(&mut self, now: Instant) {
        self.window_start = Some(now);
        self.busy = Duration::ZERO;
        self.overused = 0;
        self.light_since = None;
    }

    /// Whether a frame that began at `began` comes after a whole window without frames.
    pub fn paused_before(&self, began: Instant) -> bool {
        self.last_frame
            .is_some_and(|last| began.saturating_duration_since(last) >= WINDOW)
    }

    /// A frame took `busy` of the thread, ending at `now`. `up_ratio`: how many times the work of
    /// a frame now a frame of the rung above would be (pixels a second), or `None` when the
    /// processor is not what holds the picture down. Returns the window this frame ended, if any.
    pub fn record(
        &mut self,
        busy: Duration,
        now: Instant,
        up_ratio: Option<f64>,
    ) -> Option<Window> {
        let began = now.checked_sub(busy).unwrap_or(now);
        if self.paused_before(began) {
            // No frame for a whole window (the camera off, nothing to send): that time says
            // nothing of what a frame costs.
            self.restart(began);
        }
        self.last_frame = Some(now);
        let start = *self.window_start.get_or_insert(began);
        self.busy += busy;
        let length = now.saturating_duration_since(start);
        if length < WINDOW {
            return None;
        }
        let load = self.busy.as_secs_f64() / length.as_secs_f64();
        let verdict = self.verdict(load, start, now, up_ratio);
        self.window_start = Some(now);
        self.busy = Duration::ZERO;
        Some(Window {
            load,
            length,
            verdict,
        })
    }

    fn verdict(
        &mut self,
        load: f64,
        start: Instant,
        now: Instant,
        up_ratio: Option<f64>,
    ) -> Option<Verdict> {
        if self
            .last_up
            .is_some_and(|at| now.saturating_duration_since(at) >= FAILED_UP_WITHIN)
        {
            // The step up held: the next one waits the usual time again.
            self.last_up = None;
            self.up_after = UP_AFTER;
        }
        if load >= OVERUSE {
            self.light_since = None;
            self.overused += 1;
            if self.overused < OVERUSE_WINDOWS {
                return None;
            }
            self.overused = 0;
            if self.last_up.take().is_some() {
                self.up_after = (self.up_after * 2).min(MAX_UP_AFTER);
            }
            return Some(Verdict::Down);
        }
        self.overused = 0;
        match up_ratio {
            Some(ratio) if load * ratio < UP_PREDICTED => {
                let since = *self.light_since.get_or_insert(start);
                if now.saturating_duration_since(since) >= self.up_after {
                    self.light_since = None;
                    self.last_up = Some(now);
                    return Some(Verdict::Up);
                }
            }
            _ => self.light_since = None,
        }
        None
    }
}

/// What a receiver asks for at most: this share of the pixels a second it gets (a camera rung is
/// 0.44-0.56 of the one above it, so one ask is about a rung).
pub const ASK_SHARE: f64 = 0.6;
/// Never less than this (320x180 at 20 fps, the camera's lowest rung): below it an ask changes
/// nothing but how many steps back up there are.
pub const MIN_ASK: u64 = 320 * 180 * 20;

/// One ask the receiver made, and what it was getting when it did.
#[derive(Debug, Clone, Copy)]
struct Ask {
    max_pixel_rate: u64,
    before: f64,
}

/// A receiver's side of the decoder's load: what to ask the sender for at most (pixels a
/// second), from how busy the decode thread is with the frames it gets.
#[derive(Debug, Default)]
pub struct DecoderAsk {
    load: ThreadLoad,
    /// Pixels decoded in the window so far, and a second in the last window.
    pixels: f64,
    last_rate: f64,
    /// The last frame's size: a smaller one (the sender took a rung lower) starts the measurement
    /// again.
    last_pixels: u64,
    /// The asks made, the latest on top; taking one back returns to the one below.
    asks: Vec<Ask>,
}

impl DecoderAsk {
    /// A frame of `pixels` took the decode thread `busy`, ending at `now`; `arrived`: the frames
    /// that came off the network since the last one (those the decoder dropped as it was behind
    /// too), so that the rate is what the sender sends. Returns the window it ended, if any: its
    /// load; `asked` says what to ask for now.
    pub fn frame(
        &mut self,
        pixels: u64,
        arrived: u32,
        busy: Duration,
        now: Instant,
    ) -> Option<Window> {
        let began = now.checked_sub(busy).unwrap_or(now);
        let paused = self.load.paused_before(began);
        let smaller = pixels < self.last_pixels;
        if self.last_pixels == 0 || smaller || paused {
            // The first frame, or a rung lower (what was asked for, perhaps): the larger
            // picture's windows overstate what the smaller one costs. A larger picture goes on
            // in the same window: what it adds only makes an overload show sooner (a browser
            // ramping up 180p, 270p, 360p, ... would otherwise never be measured for long enough),
            // and a prediction for the picture asked away is the same at any size (the load and
            // the ratio scale together). After a pause, as `ThreadLoad`.
            self.last_rate = 0.0;
            self.pixels = 0.0;
            self.load.restart(began);
        }
        self.last_pixels = pixels;
        self.pixels += pixels as f64 * f64::from(arrived);
        // How much more the picture asked away is than what arrives (by the last window).
        let up_ratio = self
            .asks
            .last()
            .filter(|_| self.last_rate > 0.0)
            .map(|ask| ask.before / self.last_rate);
        let window = self.load.record(busy, now, up_ratio)?;
        let rate = self.pixels / window.length.as_secs_f64().max(1e-3);
        self.pixels = 0.0;
        self.last_rate = rate;
        match window.verdict {
            Some(Verdict::Down) => self.down(rate),
            Some(Verdict::Up) => {
                self.asks.pop();
            }
            None => {}
        }
        Some(window)
    }

    fn down(&mut self, rate: f64) {
        if let Some(top) = self.asks.last() {
            if rate > 1.1 * top.max_pixel_rate as f64 {
                // The last ask is not honoured yet (or never will be): asking for less again
                // would only add a step back up.
                return;
            }
            if top.max_pixel_rate <= MIN_ASK {
                return;
            }
        }
        let max_pixel_rate = ((rate * ASK_SHARE) as u64).max(MIN_ASK);
        self.asks.push(Ask {
            max_pixel_rate,
            before: rate,
        });
    }

    /// What to ask for now: at most this many pixels a second, or `None` for all the sender has.
    pub fn asked(&self) -> Option<u64> {
        self.asks.last().map(|ask| ask.max_pixel_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames at `fps` from `from_s` to `to_s` seconds, each taking `busy_ms`; the verdicts with
    /// the second they came at.
    fn feed(
        load: &mut ThreadLoad,
        t0: Instant,
        (from_s, to_s): (f64, f64),
        fps: f64,
        busy_ms: f64,
        up_ratio: Option<f64>,
    ) -> Vec<(f64, Verdict)> {
        let mut verdicts = Vec::new();
        let mut t = from_s;
        while t < to_s {
            let now = t0 + Duration::from_secs_f64(t);
            let busy = Duration::from_secs_f64(busy_ms / 1000.0);
            if let Some(Window {
                verdict: Some(v), ..
            }) = load.record(busy, now, up_ratio)
            {
                verdicts.push((t, v));
            }
            t += 1.0 / fps;
        }
        verdicts
    }

    #[test]
    fn a_computer_that_keeps_up_is_left_alone() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        // 720p30 at 15 ms a frame: 45% busy, and nothing holds the picture down.
        assert_eq!(feed(&mut load, t0, (0.0, 60.0), 30.0, 15.0, None), []);
        let window = (0..100)
            .find_map(|i| {
                let now = t0 + Duration::from_millis(60_000 + i * 33);
                load.record(Duration::from_millis(15), now, None)
            })
            .expect("a window ends within 3.3 s");
        assert!((0.43..0.47).contains(&window.load), "{window:?}");
    }

    #[test]
    fn an_encoder_that_cannot_keep_up_steps_down_after_two_windows() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        // 40 ms a frame: the thread is never idle (a frame every 40 ms, not every 33).
        let verdicts = feed(&mut load, t0, (0.0, 10.0), 25.0, 40.0, None);
        let downs: Vec<f64> = verdicts.iter().map(|(t, _)| *t).collect();
        assert!(
            verdicts.iter().all(|(_, v)| *v == Verdict::Down),
            "{verdicts:?}"
        );
        assert!((3.9..4.2).contains(&downs[0]), "{downs:?}");
        // Still too slow: another step every two windows.
        assert!((7.9..8.2).contains(&downs[1]), "{downs:?}");
    }

    #[test]
    fn one_busy_window_is_not_enough() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        let mut verdicts = feed(&mut load, t0, (0.0, 2.05), 25.0, 40.0, None);
        verdicts.extend(feed(&mut load, t0, (2.05, 4.1), 30.0, 15.0, None));
        verdicts.extend(feed(&mut load, t0, (4.1, 6.15), 25.0, 40.0, None));
        assert_eq!(verdicts, []);
    }

    #[test]
    fn a_step_up_comes_when_the_rung_above_would_fit_and_waits_longer_after_one_that_failed() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        // At 540p, 10 ms a frame: 30% busy; 720p is 1.78 times the pixels: 53% predicted.
        let ups = feed(&mut load, t0, (0.0, 12.0), 30.0, 10.0, Some(1.78));
        assert_eq!(ups.len(), 1, "{ups:?}");
        assert_eq!(ups[0].1, Verdict::Up);
        assert!((9.9..10.2).contains(&ups[0].0), "after UP_AFTER: {ups:?}");
        // Right after the step up the bigger frames are too much: down again...
        load.restart(t0 + Duration::from_secs(12));
        let downs = feed(&mut load, t0, (12.0, 17.0), 25.0, 40.0, None);
        assert_eq!(
            downs.iter().map(|d| d.1).collect::<Vec<_>>(),
            [Verdict::Down]
        );
        // ... and the next step up waits twice as long.
        load.restart(t0 + Duration::from_secs(17));
        let ups = feed(&mut load, t0, (17.0, 60.0), 30.0, 10.0, Some(1.78));
        assert!(
            (36.9..37.3).contains(&ups[0].0),
            "after 2 x UP_AFTER: {ups:?}"
        );
    }

    #[test]
    fn a_pause_in_the_frames_is_not_taken_for_a_light_load() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        // At 540p, 20 ms a frame: 60% busy, 107% predicted at 720p: no step up...
        assert_eq!(feed(&mut load, t0, (0.0, 8.0), 30.0, 20.0, Some(1.78)), []);
        // ... and none after the camera was off for 30 s either: the pause is not a light load.
        assert_eq!(
            feed(&mut load, t0, (38.0, 60.0), 30.0, 20.0, Some(1.78)),
            []
        );
        // Nor is it taken for half a window of overuse: 40 ms frames need two whole windows.
        let downs = feed(&mut load, t0, (90.0, 100.0), 25.0, 40.0, None);
        assert!((93.9..94.2).contains(&downs[0].0), "{downs:?}");
    }

    #[test]
    fn no_step_up_when_the_rung_above_would_overload() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        // 540p at 20 ms a frame: 60% busy, 107% predicted at 720p.
        assert_eq!(feed(&mut load, t0, (0.0, 60.0), 30.0, 20.0, Some(1.78)), []);
    }

    #[test]
    fn a_step_up_that_held_resets_the_wait() {
        let (t0, mut load) = (Instant::now(), ThreadLoad::default());
        let first = feed(&mut load, t0, (0.0, 11.0), 30.0, 10.0, Some(1.78));
        assert_eq!(first.len(), 1);
        // The bigger rung holds for a minute (nothing above it to predict).
        load.restart(t0 + Duration::from_secs(11));
        assert_eq!(feed(&mut load, t0, (11.0, 71.0), 30.0, 18.0, None), []);
        // Overuse now is not the step's fault: down, and the next step up after UP_AFTER.
        let down = feed(&mut load, t0, (71.0, 76.0), 25.0, 40.0, None);
        assert_eq!(down.len(), 1);
        load.restart(t0 + Duration::from_secs(76));
        let up = feed(&mut load, t0, (76.0, 100.0), 30.0, 10.0, Some(1.78));
        assert!((85.9..86.2).contains(&up[0].0), "{up:?}");
    }
    /// Frames of `pixels` at `fps` from `from_s` to `to_s`, each taking `busy_ms`; what was
    /// asked for after each window that changed it, with the second.
    fn decode(
        ask: &mut DecoderAsk,
        t0: Instant,
        (from_s, to_s): (f64, f64),
        (pixels, fps): (u64, f64),
        busy_ms: f64,
    ) -> Vec<(f64, Option<u64>)> {
        let mut changes = Vec::new();
        let mut t = from_s;
        while t < to_s {
            let before = ask.asked();
            let now = t0 + Duration::from_secs_f64(t);
            ask.frame(pixels, 1, Duration::from_secs_f64(busy_ms / 1000.0), now);
            if ask.asked() != before {
                changes.push((t, ask.asked()));
            }
            t += 1.0 / fps;
        }
        changes
    }

    const P720: u64 = 1280 * 720;
    const P540: u64 = 960 * 540;
    const P360: u64 = 640 * 360;

    #[test]
    fn a_decoder_that_cannot_keep_up_asks_for_about_a_rung_less() {
        let (t0, mut ask) = (Instant::now(), DecoderAsk::default());
        // 720p30, 34 ms each to decode: never idle.
        let changes = decode(&mut ask, t0, (0.0, 12.0), (P720, 30.0), 34.0);
        assert_eq!(
            changes.len(),
            1,
            "asked once, as the sender did not change: {changes:?}"
        );
        let (at, asked) = changes[0];
        assert!((3.9..4.2).contains(&at), "after two windows: {changes:?}");
        let asked = asked.expect("an ask") as f64;
        let rate = (P720 * 30) as f64;
        assert!(
            (0.58 * rate..0.62 * rate).contains(&asked),
            "{asked} of {rate}"
        );
        // 540p30 fits under it (so the sender's 540p rung), 720p30 does not.
        assert!(((P540 * 30) as f64) < asked && asked < (P720 * 30) as f64);
    }

    #[test]
    fn a_decoder_still_behind_at_the_smaller_picture_asks_again_and_takes_the_asks_back_one_at_a_time(
    ) {
        let (t0, mut ask) = (Instant::now(), DecoderAsk::default());
        let first = decode(&mut ask, t0, (0.0, 4.5), (P720, 30.0), 34.0);
        assert_eq!(first.len(), 1);
        // The sender honoured it; still overloaded (34 ms at 540p30): another ask.
        let second = decode(&mut ask, t0, (4.5, 9.0), (P540, 30.0), 34.0);
        assert_eq!(second.len(), 1, "{second:?}");
        let asked = second[0].1.unwrap() as f64;
        assert!(((P360 * 30) as f64) < asked && asked < (P540 * 30) as f64);
        // At 360p30 it decodes in 5 ms (15%): 540p30 would be 34% of the thread, so the ask
        // goes back to the first one after the new size's first window and UP_AFTER ...
        let up = decode(&mut ask, t0, (9.0, 23.5), (P360, 30.0), 5.0);
        assert_eq!(up, [(up[0].0, first[0].1)], "{up:?}");
        assert!((20.9..21.2).contains(&up[0].0), "{up:?}");
        // ... and at 540p30 in 8 ms (24%, 43% predicted at 720p30), to none.
        let up = decode(&mut ask, t0, (23.5, 40.0), (P540, 30.0), 8.0);
        assert_eq!(up, [(up[0].0, None)], "{up:?}");
    }

    #[test]
    fn no_ask_while_the_decoder_keeps_up_and_none_below_the_lowest_rung() {
        let (t0, mut ask) = (Instant::now(), DecoderAsk::default());
        assert_eq!(decode(&mut ask, t0, (0.0, 30.0), (P720, 30.0), 20.0), []);
        // Even 180p20 overloads it: one ask, at the floor, and no lower.
        let changes = decode(&mut ask, t0, (30.0, 60.0), (320 * 180, 20.0), 60.0);
        assert_eq!(changes, [(changes[0].0, Some(MIN_ASK))]);
    }

    #[test]
    fn a_picture_that_keeps_growing_is_measured_all_along() {
        // A browser ramps up: 180p, 270p, then 360p and 540p two seconds apart, each a rung the
        // decoder keeps up with less (45 ms a frame at 540p30, 30 ms at 360p30).
        let (t0, mut ask) = (Instant::now(), DecoderAsk::default());
        assert_eq!(decode(&mut ask, t0, (0.0, 2.0), (320 * 180, 30.0), 8.0), []);
        assert_eq!(
            decode(&mut ask, t0, (2.0, 4.0), (480 * 270, 30.0), 17.0),
            []
        );
        let mut asks = decode(&mut ask, t0, (4.0, 6.0), (P360, 30.0), 30.0);
        asks.extend(decode(&mut ask, t0, (6.0, 10.0), (P540, 30.0), 45.0));
        assert!(!asks.is_empty(), "no ask");
        // Asked within two windows of the first overloaded one (not two windows after the
        // last change of size).
        assert!(asks[0].0 < 8.1, "{asks:?}");
    }
}
