//! How often the window is drawn, and how much of the other person's video reaches the screen:
//! each repaint costs the UI thread and the renderer, so the video slots ask for as few as show
//! something new (`video::wake`). Logged at debug level, target `confab::paint`, every
//! `PaintMeter::EVERY` (the window benchmark reads it); at trace level with what asked for the
//! repaints (egui's file:line of each request).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::video::{FrameCounts, VideoSlot};

/// One period's rates, a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaintReport {
    /// Frames the window drew (the passes of one frame count once).
    pub frames: f64,
    /// The other person's video frames that came, and those of them drawn (the rest were
    /// overwritten by a newer one before the window was drawn).
    pub video_received: f64,
    pub video_shown: f64,
}

pub struct PaintMeter {
    /// egui's frame number, the remote video's counts and when they were read, at the start of
    /// this period.
    start: Option<(u64, FrameCounts, Instant)>,
    /// What asked for the frames of this period (file:line), when tracing `confab::paint`.
    causes: BTreeMap<String, u32>,
}

impl PaintMeter {
    const EVERY: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self {
            start: None,
            causes: BTreeMap::new(),
        }
    }

    /// Called at each pass, with the call's remote video if there is a call; logs and returns
    /// the period's rates when one has ended.
    pub fn pass(
        &mut self,
        ctx: &egui::Context,
        remote: Option<&VideoSlot>,
        now: Instant,
    ) -> Option<PaintReport> {
        let frame_nr = ctx.cumulative_frame_nr();
        if tracing::enabled!(target: "confab::paint", tracing::Level::TRACE) {
            for cause in ctx.repaint_causes() {
                *self.causes.entry(cause.to_string()).or_default() += 1;
            }
        }
        // The slot's counts are read only when a period starts or ends: not a lock a pass.
        let video = || remote.map(VideoSlot::counts).unwrap_or_default();
        let Some((first, first_video, since)) = self.start else {
            self.start = Some((frame_nr, video(), now));
            return None;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < Self::EVERY {
            return None;
        }
        let video = video();
        // A new call's slot counts from zero again: that period reads zero video.
        let per_s = |n: u64, m: u64| n.saturating_sub(m) as f64 / elapsed.as_secs_f64();
        let report = PaintReport {
            frames: per_s(frame_nr, first),
            video_received: per_s(video.put, first_video.put),
            video_shown: per_s(video.shown, first_video.shown),
        };
        tracing::debug!(
            target: "confab::paint",
            frames_per_s = %format!("{:.1}", report.frames),
            video_received_per_s = %format!("{:.1}", report.video_received),
            video_shown_per_s = %format!("{:.1}", report.video_shown),
            "window drawn"
        );
        tracing::trace!(target: "confab::paint", causes = ?self.causes, "asked for by");
        self.causes.clear();
        self.start = Some((frame_nr, video, now));
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::pattern;

    #[test]
    fn reports_frames_drawn_and_video_shown_a_second() {
        let ctx = egui::Context::default();
        let slot = VideoSlot::new(None);
        let mut meter = PaintMeter::new();
        let t0 = Instant::now();
        assert_eq!(meter.pass(&ctx, Some(&slot), t0), None);
        // 10 s: 300 frames come, 250 passes draw, and 50 of the frames are overwritten unseen.
        for n in 0..300u32 {
            slot.put(&pattern::render(n, 16, 16, 0));
            if n % 6 != 5 {
                let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
                let mut texture = None;
                slot.upload(&ctx, "t", &mut texture);
            }
        }
        assert_eq!(
            meter.pass(&ctx, Some(&slot), t0 + Duration::from_secs(4)),
            None,
            "a period is five seconds"
        );
        assert_eq!(
            meter.pass(&ctx, Some(&slot), t0 + Duration::from_secs(10)),
            Some(PaintReport {
                frames: 25.0,
                video_received: 30.0,
                video_shown: 25.0,
            })
        );
        let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
        assert_eq!(
            meter.pass(&ctx, None, t0 + Duration::from_secs(15)),
            Some(PaintReport {
                frames: 0.2,
                video_received: 0.0,
                video_shown: 0.0,
            }),
            "the next period counts from the last report; no call, no video"
        );
    }
}
