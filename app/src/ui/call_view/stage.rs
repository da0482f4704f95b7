//! The middle of the call window: the other person large (aspect kept) or the state of the call,
//! yourself small in a corner, and recent warnings; with `CONFAB_UI_LAYOUT=FILE`, where the
//! remote video is drawn, for the screenshot test.

use egui::Color32;

use crate::ui::call::{CallState, CallUi};
use crate::ui::video::fit_rect;

/// With `CONFAB_UI_LAYOUT=FILE`: where the remote video was last reported.
#[derive(Debug, Default)]
pub struct LayoutReport {
    path: Option<std::path::PathBuf>,
    last: Option<String>,
}

impl LayoutReport {
    pub fn from_env() -> Self {
        Self {
            path: std::env::var_os("CONFAB_UI_LAYOUT").map(Into::into),
            last: None,
        }
    }

    /// Writes where the remote video is (physical pixels) whenever that changes.
    fn report(&mut self, ctx: &egui::Context, video: Option<(egui::Rect, [usize; 2])>) {
        let (Some(path), Some((r, size))) = (&self.path, video) else {
            return;
        };
        let ppp = ctx.pixels_per_point();
        let json = serde_json::json!({
            "remote_video": [r.left() * ppp, r.top() * ppp, r.width() * ppp, r.height() * ppp],
            "video_size": size,
        })
        .to_string();
        if self.last.as_deref() != Some(json.as_str()) {
            let _ = std::fs::write(path, &json);
            self.last = Some(json);
        }
    }
}

pub fn stage_ui(call: &mut CallUi, layout: &mut LayoutReport, ui: &mut egui::Ui) {
    let area = ui.max_rect();
    call.remote
        .upload(ui.ctx(), "remote", &mut call.remote_texture);
    call.local
        .upload(ui.ctx(), "local", &mut call.local_texture);
    let mut video_rect = None;
    match (&call.remote_texture, call.remote.source_size()) {
        (Some(texture), Some(size))
            if call.state == CallState::Connected || call.state == CallState::Reconnecting =>
        {
            let r = fit_rect(area, size);
            texture.paint(ui.painter(), r);
            video_rect = Some((r, size));
        }
        _ => {
            ui.painter().text(
                area.center(),
                egui::Align2::CENTER_CENTER,
                call.state.label(),
                egui::FontId::proportional(20.0),
                Color32::GRAY,
            );
        }
    }
    if let (Some(texture), Some(size)) = (&call.local_texture, call.local.source_size()) {
        if !call.camera_off {
            let w = (area.width() * 0.22).clamp(120.0, 320.0);
            let h = w * size[1] as f32 / size[0].max(1) as f32;
            let r = egui::Rect::from_min_size(
                area.right_bottom() - egui::vec2(w + 16.0, h + 16.0),
                egui::vec2(w, h),
            );
            ui.painter()
                .rect_filled(r.expand(2.0), 6.0, Color32::from_gray(60));
            texture.paint(ui.painter(), r);
        }
    }
    let mut y = area.top() + 12.0;
    for (_, warning) in &call.warnings {
        ui.painter().text(
            egui::pos2(area.left() + 12.0, y),
            egui::Align2::LEFT_TOP,
            warning,
            egui::FontId::proportional(14.0),
            Color32::from_rgb(240, 180, 80),
        );
        y += 20.0;
    }
    layout.report(ui.ctx(), video_rect);
}
