//! Getting video onto the screen without blocking the UI thread. Decoder and camera threads
//! convert frames to RGBA themselves and leave the newest one in a `VideoSlot` (latest frame
//! wins: a slow UI never makes video queue up), then ask egui for a repaint; the UI thread only
//! uploads what it finds into a texture. Nothing repaints while nothing arrives.

use std::sync::{Arc, Mutex};

use egui::{ColorImage, TextureHandle, TextureOptions};

use confab_devices::{CaptureError, VideoSource};
use confab_media::convert::{fit, i420_to_rgba, scale};
use confab_media::VideoFrame;
use confab_media::VideoOut;

/// The newest frame, waiting for the UI thread.
#[derive(Default)]
pub struct VideoSlot {
    frame: Mutex<Option<ColorImage>>,
    /// Size of the source video (before any downscaling for display).
    source_size: Mutex<Option<[usize; 2]>>,
    ctx: Mutex<Option<egui::Context>>,
}

impl VideoSlot {
    pub fn new(ctx: Option<egui::Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx: Mutex::new(ctx),
            ..Self::default()
        })
    }

    /// Converts and stores a frame (called on a media thread), then wakes the UI.
    pub fn put(&self, frame: &VideoFrame) {
        let mut rgba = Vec::new();
        i420_to_rgba(frame, &mut rgba);
        let image = ColorImage::from_rgba_unmultiplied(
            [frame.width as usize, frame.height as usize],
            &rgba,
        );
        *self.source_size.lock().unwrap_or_else(|p| p.into_inner()) =
            Some([frame.width as usize, frame.height as usize]);
        *self.frame.lock().unwrap_or_else(|p| p.into_inner()) = Some(image);
        if let Some(ctx) = self.ctx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            ctx.request_repaint();
        }
    }

    pub fn source_size(&self) -> Option<[usize; 2]> {
        *self.source_size.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the newest frame (if a new one came) into `texture`.
    pub fn upload(&self, ctx: &egui::Context, name: &str, texture: &mut Option<TextureHandle>) {
        let Some(image) = self.frame.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        match texture {
            Some(t) => t.set(image, TextureOptions::LINEAR),
            None => *texture = Some(ctx.load_texture(name, image, TextureOptions::LINEAR)),
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

/// Self view size: small, so that converting it costs little.
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
            let (w, h) = fit(frame.width, frame.height, SELF_VIEW_MAX.0, SELF_VIEW_MAX.1);
            self.slot.put(&scale(&frame, w, h));
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
            slot.frame.lock().unwrap().is_none(),
            "nothing is uploaded twice"
        );
    }

    #[test]
    fn video_keeps_its_aspect() {
        let area = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(1000.0, 1000.0));
        let r = fit_rect(area, [1280, 720]);
        assert_eq!((r.width(), r.height()), (1000.0, 562.5));
        assert_eq!(r.center(), area.center());
    }
}
