//! Getting video onto the screen without blocking the UI thread. Decoder and camera threads
//! leave the newest I420 frame in a `VideoSlot` (latest frame wins, its buffer reused: a slow UI
//! never makes video queue up), then ask egui for a repaint. The UI thread draws it with a shader
//! that converts the planes on the GPU (`gpu_video`), or converts it to RGBA itself where no
//! renderer callback is possible. Nothing repaints while nothing arrives, a frame is drawn once,
//! and the self view waits for the other person's next frame rather than drawing one of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use egui::{ColorImage, TextureHandle, TextureOptions};

use super::gpu_video::{self, VideoPath};
use confab_devices::{CaptureError, VideoSource};
use confab_media::convert::{fit, i420_to_rgba, scale_to};
use confab_media::VideoFrame;
use confab_media::VideoOut;

/// The newest frame, waiting for the UI thread.
#[derive(Default)]
pub struct VideoSlot {
    latest: Mutex<Latest>,
    ctx: Mutex<Option<egui::Context>>,
    /// How long a new frame may wait for the window to be drawn (zero: at once).
    wait: Duration,
    /// Not shown (the self view hidden): frames are let go without a copy or a repaint.
    hidden: AtomicBool,
}

/// How long the self view's frame may wait to be drawn: about a frame of the other person's
/// video, whose own repaint then shows both. Without it, the self view's 15 frames a second,
/// out of step with the remote 30, made up to 45 repaints a second.
pub const SELF_VIEW_WAIT: Duration = Duration::from_millis(34);

/// Asks `ctx` to draw a new video frame within `wait`, once. egui's `request_repaint` draws
/// twice, so that layouts which depend on the frame before settle: for a video frame of the
/// size the layout already has, the second frame would be a whole repaint for nothing (two a
/// video frame, 60 a second at 30 fps). A new size changes the layout and gets both.
fn wake(ctx: &egui::Context, resized: bool, wait: Duration) {
    if resized {
        ctx.request_repaint();
    } else {
        // Any delay above zero asks for a single frame (egui's `request_repaint_after`).
        ctx.request_repaint_after(wait.max(Duration::from_nanos(1)));
    }
}

#[derive(Default)]
struct Latest {
    /// The newest frame; its buffer is overwritten by the next one.
    frame: Option<VideoFrame>,
    /// Not yet uploaded.
    fresh: bool,
    /// Frames put, and frames uploaded (the others were overwritten before the window was
    /// drawn).
    counts: FrameCounts,
}

/// How many of a slot's frames reached the screen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    pub put: u64,
    pub shown: u64,
}

impl VideoSlot {
    pub fn new(ctx: Option<egui::Context>) -> Arc<Self> {
        Self::waiting(ctx, Duration::ZERO)
    }

    /// A slot whose new frames may wait up to `wait` to be drawn (the self view: see
    /// `SELF_VIEW_WAIT`).
    pub fn waiting(ctx: Option<egui::Context>, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            ctx: Mutex::new(ctx),
            wait,
            ..Self::default()
        })
    }

    /// Hides or shows what the slot holds: while hidden, frames put are let go.
    pub fn set_hidden(&self, hidden: bool) {
        self.hidden.store(hidden, Ordering::Relaxed);
    }

    /// Copies a frame into the slot (called on a media thread), then wakes the UI.
    pub fn put(&self, frame: &VideoFrame) {
        self.store((frame.width, frame.height), |slot| match slot {
            Some(kept) => {
                kept.width = frame.width;
                kept.height = frame.height;
                kept.capture_ts_us = frame.capture_ts_us;
                kept.data.clear();
                kept.data.extend_from_slice(&frame.data);
            }
            None => *slot = Some(frame.clone()),
        });
    }

    /// Like `put`, downscaled to fit within `max` (aspect kept) into the slot's buffer: a
    /// thumbnail without a frame allocated per frame.
    pub fn put_scaled(&self, frame: &VideoFrame, max: (u32, u32)) {
        let (w, h) = fit(frame.width, frame.height, max.0, max.1);
        self.store((w, h), |slot| {
            let kept = slot.get_or_insert_with(|| VideoFrame::black(w, h, frame.capture_ts_us));
            scale_to(frame, w, h, kept);
        });
    }

    /// Lets `write` fill the slot with a frame of `size` (unless the slot is hidden), then wakes
    /// the UI.
    fn store(&self, size: (u32, u32), write: impl FnOnce(&mut Option<VideoFrame>)) {
        if self.hidden.load(Ordering::Relaxed) {
            return;
        }
        let resized = {
            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let resized = latest
                .frame
                .as_ref()
                .is_none_or(|kept| (kept.width, kept.height) != size);
            write(&mut latest.frame);
            latest.fresh = true;
            latest.counts.put += 1;
            resized
        };
        if let Some(ctx) = self.ctx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            wake(ctx, resized, self.wait);
        }
    }

    /// Size of the newest frame.
    pub fn source_size(&self) -> Option<[usize; 2]> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .frame
            .as_ref()
            .map(|f| [f.width as usize, f.height as usize])
    }

    /// Runs `f` on the newest frame (if there is one) with whether it is new since the last
    /// call, and marks it uploaded. The frame stays locked meanwhile: `f` only copies it.
    pub(super) fn with_frame(&self, f: impl FnOnce(&VideoFrame, bool)) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = std::mem::take(&mut latest.fresh);
        latest.counts.shown += u64::from(fresh);
        if let Some(frame) = &latest.frame {
            f(frame, fresh);
        }
    }

    /// Frames put so far, and how many of them were drawn.
    pub fn counts(&self) -> FrameCounts {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).counts
    }

    /// Gets the newest frame ready to draw into `texture`: on the GPU path the renderer uploads
    /// its planes while drawing; on the CPU path it is converted to RGBA here, if it is new.
    pub fn upload(
        self: &Arc<Self>,
        ctx: &egui::Context,
        name: &str,
        texture: &mut Option<VideoTexture>,
    ) {
        match gpu_video::path(ctx) {
            VideoPath::Cpu => self.with_frame(|frame, fresh| {
                let cpu = match texture {
                    Some(VideoTexture::Cpu(t)) if !fresh => return,
                    Some(VideoTexture::Cpu(t)) => Some(t),
                    _ => None,
                };
                let mut rgba = Vec::new();
                i420_to_rgba(frame, &mut rgba);
                let image = ColorImage::from_rgba_unmultiplied(
                    [frame.width as usize, frame.height as usize],
                    &rgba,
                );
                match cpu {
                    Some(t) => t.set(image, TextureOptions::LINEAR),
                    None => {
                        *texture = Some(VideoTexture::Cpu(ctx.load_texture(
                            name,
                            image,
                            TextureOptions::LINEAR,
                        )));
                    }
                }
            }),
            path => {
                if self.source_size().is_some() {
                    *texture = Some(VideoTexture::Gpu(path, self.clone()));
                }
            }
        }
    }
}

/// What the UI keeps for a video it shows: an RGBA texture (CPU path), or the slot whose planes
/// the renderer uploads and converts while drawing (GPU path).
pub enum VideoTexture {
    Cpu(TextureHandle),
    Gpu(VideoPath, Arc<VideoSlot>),
}

impl VideoTexture {
    /// Draws the video stretched over `rect`.
    pub fn paint(&self, painter: &egui::Painter, rect: egui::Rect) {
        match self {
            Self::Cpu(texture) => {
                let full_uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                painter.image(texture.id(), rect, full_uv, egui::Color32::WHITE);
            }
            Self::Gpu(path, slot) => {
                if let Some(callback) = gpu_video::paint_callback(path, slot, rect) {
                    painter.add(callback);
                }
            }
        }
    }

    /// Size in pixels of what was last uploaded (CPU path) or is waiting to be (GPU path).
    #[cfg(test)]
    pub fn size(&self) -> [usize; 2] {
        match self {
            Self::Cpu(texture) => texture.size(),
            Self::Gpu(_, slot) => slot.source_size().unwrap_or_default(),
        }
    }
}

impl VideoOut for VideoSlot {
    fn frame(&self, frame: &VideoFrame) {
        self.put(frame);
    }
}

/// A video source that also shows what it sends, small, in a slot (the self view).
pub struct SelfView {
    inner: Box<dyn VideoSource>,
    slot: Arc<VideoSlot>,
    count: u64,
}

impl SelfView {
    pub fn new(inner: Box<dyn VideoSource>, slot: Arc<VideoSlot>) -> Self {
        Self {
            inner,
            slot,
            count: 0,
        }
    }
}

/// Self view size: small, so that scaling and uploading it costs little.
const SELF_VIEW_MAX: (u32, u32) = (320, 180);

impl VideoSource for SelfView {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        let frame = self.inner.next_frame()?;
        self.count += 1;
        // Every other frame is plenty for a thumbnail.
        if self.count % 2 == 1 {
            self.slot.put_scaled(&frame, SELF_VIEW_MAX);
        }
        Ok(frame)
    }
}

/// The largest rectangle of `aspect` (w/h) centred in `area`.
pub fn fit_rect(area: egui::Rect, size: [usize; 2]) -> egui::Rect {
    let aspect = size[0] as f32 / size[1].max(1) as f32;
    let mut w = area.width();
    let mut h = w / aspect;
    if h > area.height() {
        h = area.height();
        w = h * aspect;
    }
    egui::Rect::from_center_size(area.center(), egui::vec2(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::pattern;

    #[test]
    fn latest_frame_wins_and_is_taken_once() {
        let slot = VideoSlot::new(None);
        let ctx = egui::Context::default();
        slot.put(&pattern::render(1, 64, 36, 0));
        slot.put(&pattern::render(2, 128, 72, 0));
        let mut texture = None;
        slot.upload(&ctx, "t", &mut texture);
        assert_eq!(
            texture.as_ref().unwrap().size(),
            [128, 72],
            "the newer frame"
        );
        assert_eq!(slot.source_size(), Some([128, 72]));
        assert!(
            !slot.latest.lock().unwrap().fresh,
            "nothing is uploaded twice"
        );
        slot.upload(&ctx, "t", &mut texture);
        assert_eq!(
            slot.counts(),
            FrameCounts { put: 2, shown: 1 },
            "the first frame was overwritten before it was drawn"
        );
    }

    #[test]
    fn frames_are_copied_into_one_buffer() {
        let slot = VideoSlot::new(None);
        let kept = |slot: &VideoSlot| {
            let latest = slot.latest.lock().unwrap();
            let frame = latest.frame.as_ref().unwrap();
            (frame.data.as_ptr() as usize, frame.clone())
        };
        slot.put_scaled(&pattern::render(1, 1280, 720, 0), (320, 180));
        let (buffer, _) = kept(&slot);
        let second = pattern::render(2, 1280, 720, 7);
        slot.put_scaled(&second, (320, 180));
        let (again, frame) = kept(&slot);
        assert_eq!(
            again, buffer,
            "the thumbnail is scaled into the same buffer"
        );
        assert_eq!(frame, confab_media::convert::scale(&second, 320, 180));
        let third = pattern::render(3, 320, 180, 9);
        slot.put(&third);
        let (again, frame) = kept(&slot);
        assert_eq!(again, buffer, "a frame of the same size is copied into it");
        assert_eq!(frame, third);
    }

    /// Runs a pass of `ctx`; whether egui asks for the next frame at once (as it does for the
    /// second of the two frames `request_repaint` makes).
    fn pass_wants_another(ctx: &egui::Context) -> bool {
        let output = ctx.run_ui(egui::RawInput::default(), |_| {});
        output.viewport_output[&egui::ViewportId::ROOT].repaint_delay == Duration::ZERO
    }

    /// A context that records the delays of the repaints asked of the window, settled (egui
    /// draws its first frames of its own accord).
    fn window() -> (egui::Context, Arc<Mutex<Vec<Duration>>>) {
        let ctx = egui::Context::default();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        ctx.set_request_repaint_callback(move |info| log.lock().unwrap().push(info.delay));
        for _ in 0..3 {
            let _ = pass_wants_another(&ctx);
        }
        assert!(!pass_wants_another(&ctx), "settled");
        asked.lock().unwrap().clear();
        (ctx, asked)
    }

    #[test]
    fn a_video_frame_is_drawn_once_and_a_new_size_twice() {
        let (ctx, asked) = window();
        let slot = VideoSlot::new(Some(ctx.clone()));
        slot.put(&pattern::render(1, 64, 36, 0));
        assert_eq!(asked.lock().unwrap().as_slice(), [Duration::ZERO]);
        assert!(
            pass_wants_another(&ctx),
            "the first frame changes the layout: a second frame lets it settle"
        );
        assert!(!pass_wants_another(&ctx));
        asked.lock().unwrap().clear();
        for n in 2..5 {
            slot.put(&pattern::render(n, 64, 36, 0));
            let delays = std::mem::take(&mut *asked.lock().unwrap());
            assert!(
                delays.len() == 1 && delays[0] <= Duration::from_millis(1),
                "drawn at once: {delays:?}"
            );
            assert!(
                !pass_wants_another(&ctx),
                "a frame of the same size is drawn once, not twice"
            );
        }
        slot.put(&pattern::render(5, 128, 72, 0));
        assert!(pass_wants_another(&ctx), "a new size settles again");
    }

    #[test]
    fn the_self_view_waits_for_the_next_frame_of_the_other_persons_video() {
        let (ctx, asked) = window();
        let remote = VideoSlot::new(Some(ctx.clone()));
        let local = VideoSlot::waiting(Some(ctx.clone()), SELF_VIEW_WAIT);
        let camera = pattern::render(1, 1280, 720, 0);
        local.put_scaled(&camera, SELF_VIEW_MAX);
        remote.put(&pattern::render(1, 64, 36, 0));
        while pass_wants_another(&ctx) {}
        asked.lock().unwrap().clear();
        local.put_scaled(&camera, SELF_VIEW_MAX);
        assert_eq!(
            std::mem::take(&mut *asked.lock().unwrap()),
            [SELF_VIEW_WAIT],
            "the window may wait a remote frame's time"
        );
        remote.put(&pattern::render(2, 64, 36, 0));
        let delays = std::mem::take(&mut *asked.lock().unwrap());
        assert!(
            delays.len() == 1 && delays[0] <= Duration::from_millis(1),
            "the remote frame brings the repaint forward: {delays:?}"
        );
        assert!(!pass_wants_another(&ctx));
        let mut texture = None;
        local.upload(&ctx, "local", &mut texture);
        assert!(
            local.latest.lock().unwrap().frame.is_some() && texture.is_some(),
            "that repaint shows the self view's frame too"
        );
    }

    #[test]
    fn a_hidden_self_view_neither_scales_nor_repaints() {
        let (ctx, asked) = window();
        let local = VideoSlot::waiting(Some(ctx.clone()), SELF_VIEW_WAIT);
        let camera = pattern::render(1, 1280, 720, 0);
        local.set_hidden(true);
        local.put_scaled(&camera, SELF_VIEW_MAX);
        assert!(asked.lock().unwrap().is_empty(), "no repaint");
        assert_eq!(local.counts(), FrameCounts::default(), "nothing kept");
        local.set_hidden(false);
        local.put_scaled(&camera, SELF_VIEW_MAX);
        assert_eq!(local.source_size(), Some([320, 180]), "shown again");
        assert_eq!(asked.lock().unwrap().len(), 1);
    }

    #[test]
    fn video_keeps_its_aspect() {
        let area = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(1000.0, 1000.0));
        let r = fit_rect(area, [1280, 720]);
        assert_eq!((r.width(), r.height()), (1000.0, 562.5));
        assert_eq!(r.center(), area.center());
    }
}
