//! The middle of the call window: the other person large (aspect kept) or the state of the call,
//! yourself small in a corner (drag it to another corner, or hide it), a banner while the
//! connection is being restored, and notices as toasts that fade; with `CONFAB_UI_LAYOUT=FILE`,
//! where the remote video is drawn, for the screenshot test.

use std::time::{Duration, Instant};

use egui::{Color32, RichText, Vec2};

use crate::ui::call::{CallState, CallUi};
use crate::ui::command::UiCommand;
use crate::ui::theme::{self, icon};
use crate::ui::video::fit_rect;

/// How long a notice stays (`CallUi::poll` drops it then), and how long it takes to fade out.
const TOAST_LIFE: Duration = Duration::from_secs(8);
const TOAST_FADE: Duration = Duration::from_millis(1500);

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

/// How opaque a notice `age` old is: whole, then fading out over its last moments.
pub fn toast_alpha(age: Duration) -> f32 {
    let left = TOAST_LIFE.saturating_sub(age);
    (left.as_secs_f32() / TOAST_FADE.as_secs_f32()).clamp(0.0, 1.0)
}

pub fn stage_ui(call: &mut CallUi, layout: &mut LayoutReport, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
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
            if call.remote_speaking {
                speaking_outline(ui, r, 0.0);
            }
            video_rect = Some((r, size));
        }
        _ => state_ui(call, area, ui),
    }
    if call.state == CallState::Reconnecting {
        banner_ui(area, ui);
    }
    self_view_ui(call, area, &mut commands, ui);
    toasts_ui(call, area, ui);
    layout.report(ui.ctx(), video_rect);
    commands
}

/// The state of the call in the middle, while there is no picture: wrapped to the stage
/// (painted, not a widget: the top bar names the state for screen readers already).
fn state_ui(call: &CallUi, area: egui::Rect, ui: &mut egui::Ui) {
    let galley = ui.painter().layout(
        call.state.label(),
        egui::FontId::proportional(20.0),
        Color32::from_gray(170),
        (area.width() - 48.0).max(40.0),
    );
    let at = area.center() - galley.rect.size() / 2.0;
    ui.painter().galley(at, galley, Color32::from_gray(170));
}

/// A banner across the top of the stage while the connection is being restored.
fn banner_ui(area: egui::Rect, ui: &mut egui::Ui) {
    let rect = egui::Rect::from_min_size(
        area.min + Vec2::new(12.0, 12.0),
        Vec2::new(area.width() - 24.0, 40.0),
    );
    ui.painter().rect_filled(rect, theme::ROUNDING, theme::WARN);
    ui.scope_builder(
        egui::UiBuilder::new()
            .max_rect(rect.shrink2(Vec2::new(12.0, 4.0)))
            .layout(egui::Layout::left_to_right(egui::Align::Center)),
        |ui| {
            ui.set_clip_rect(rect.intersect(ui.clip_rect()));
            ui.add(egui::Spinner::new().color(Color32::BLACK));
            ui.add(
                egui::Label::new(
                    RichText::new("Connection lost. Reconnecting…")
                        .color(Color32::BLACK)
                        .strong(),
                )
                .truncate(),
            );
        },
    );
}

/// The speaking indicator: a green outline around the picture of whoever is speaking.
fn speaking_outline(ui: &egui::Ui, rect: egui::Rect, rounding: f32) {
    ui.painter().rect_stroke(
        rect,
        rounding,
        egui::Stroke::new(3.0, theme::GOOD),
        egui::StrokeKind::Outside,
    );
}

/// Where your own picture goes in `area` for `corner`, `size` big.
fn corner_rect(area: egui::Rect, corner: u8, size: Vec2) -> egui::Rect {
    let margin = 16.0;
    let x = if corner.is_multiple_of(2) {
        area.left() + margin
    } else {
        area.right() - margin - size.x
    };
    let y = if corner < 2 {
        area.top() + margin + 52.0
    } else {
        area.bottom() - margin - size.y
    };
    egui::Rect::from_min_size(egui::pos2(x, y), size)
}

/// Yourself, small: drag to move it to another corner; a button hides it, a chip brings it back.
fn self_view_ui(
    call: &mut CallUi,
    area: egui::Rect,
    commands: &mut Vec<UiCommand>,
    ui: &mut egui::Ui,
) {
    if call.camera_off {
        return;
    }
    let Some(size) = call.local.source_size() else {
        return;
    };
    let w = (area.width() * 0.22).clamp(120.0, 320.0);
    let h = w * size[1] as f32 / size[0].max(1) as f32;
    let place = call.self_view;
    if place.hidden {
        let chip = corner_rect(area, place.corner, Vec2::new(150.0, 32.0));
        let show = ui.put(
            chip,
            egui::Button::new((icon::ICON_PICTURE_IN_PICTURE, "Show yourself")),
        );
        if show.clicked() {
            commands.push(UiCommand::ToggleSelfView);
        }
        return;
    }
    let r = corner_rect(area, place.corner, Vec2::new(w, h));
    let id = egui::Id::unique("self-view");
    let response = ui
        .interact(r, id, egui::Sense::click_and_drag())
        .on_hover_text("Drag to another corner");
    // While dragged it follows the pointer; let go, it goes to the nearest corner.
    let offset = if response.dragged() {
        ui.ctx().input(|i| {
            i.pointer
                .press_origin()
                .zip(i.pointer.interact_pos())
                .map_or(Vec2::ZERO, |(from, to)| to - from)
        })
    } else {
        Vec2::ZERO
    };
    let drawn = r.translate(offset);
    if response.drag_stopped() {
        if let Some(pos) = ui.ctx().pointer_interact_pos() {
            let right = pos.x > area.center().x;
            let bottom = pos.y > area.center().y;
            call.self_view.corner = u8::from(right) + 2 * u8::from(bottom);
        }
    }
    if let Some(texture) = &call.local_texture {
        ui.painter()
            .rect_filled(drawn.expand(2.0), 8.0, Color32::from_gray(60));
        texture.paint(ui.painter(), drawn);
    }
    if call.talking || call.self_speaking {
        speaking_outline(ui, drawn.expand(2.0), 8.0);
    }
    let hide =
        egui::Rect::from_min_size(drawn.right_top() + Vec2::new(-34.0, 4.0), Vec2::splat(30.0));
    if response.hovered() || ui.rect_contains_pointer(hide) {
        let b = ui
            .put(
                hide,
                egui::Button::new(icon::ICON_VISIBILITY_OFF.rich_text().size(16.0)),
            )
            .on_hover_text("Hide yourself")
            .accessible_name("Hide yourself");
        if b.clicked() {
            commands.push(UiCommand::ToggleSelfView);
        }
    }
}

/// Recent notices, newest at the bottom, above the toolbar; each fades before it goes.
fn toasts_ui(call: &CallUi, area: egui::Rect, ui: &mut egui::Ui) {
    if call.warnings.is_empty() {
        return;
    }
    let now = Instant::now();
    let width = (area.width() - 48.0).min(460.0);
    let mut fading = false;
    egui::Area::new(egui::Id::unique("toasts"))
        .order(egui::Order::Foreground)
        .interactable(false)
        .anchor(
            egui::Align2::CENTER_BOTTOM,
            Vec2::new(
                0.0,
                -(ui.ctx().content_rect().bottom() - area.bottom()) - 16.0,
            ),
        )
        .show(ui.ctx(), |ui| {
            ui.set_max_width(width);
            for (at, text) in &call.warnings {
                let alpha = toast_alpha(now.duration_since(*at));
                fading |= alpha < 1.0;
                ui.set_opacity(alpha);
                egui::Frame::new()
                    .fill(Color32::from_gray(40))
                    .corner_radius(theme::ROUNDING)
                    .inner_margin(egui::Margin::symmetric(12, 8))
                    .show(ui, |ui| {
                        ui.set_max_width(width - 24.0);
                        ui.horizontal_top(|ui| {
                            ui.label(icon::ICON_WARNING.rich_text().color(theme::WARN));
                            ui.add(
                                egui::Label::new(
                                    RichText::new(text).color(Color32::from_gray(235)),
                                )
                                .wrap(),
                            );
                        });
                    });
            }
        });
    if fading {
        ui.ctx().request_repaint_after(Duration::from_millis(50));
    } else {
        ui.ctx().request_repaint_after(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toasts_stay_whole_then_fade_out() {
        assert_eq!(toast_alpha(Duration::ZERO), 1.0);
        assert_eq!(toast_alpha(Duration::from_secs(6)), 1.0);
        let fading = toast_alpha(Duration::from_millis(7250));
        assert!(fading > 0.0 && fading < 1.0, "{fading}");
        assert_eq!(toast_alpha(TOAST_LIFE), 0.0);
    }

    #[test]
    fn the_self_view_keeps_to_its_corner() {
        let area = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), Vec2::new(800.0, 600.0));
        let size = Vec2::new(160.0, 90.0);
        for corner in 0..4 {
            let r = corner_rect(area, corner, size);
            assert!(area.contains_rect(r), "{corner}: {r:?}");
            assert_eq!(r.center().x > area.center().x, corner % 2 == 1, "{corner}");
            assert_eq!(r.center().y > area.center().y, corner >= 2, "{corner}");
        }
    }
}
