//! The look of the window: one accent colour, roomy spacing and rounded controls in a light and
//! a dark style (egui follows the OS's choice), the Material Symbols icon font, and the few
//! widgets every view shares (primary button, round icon button, short notices).

use egui::{Color32, CornerRadius, Margin, Stroke, Theme, Vec2};

pub use egui_material_icons::MaterialIcon;

/// The icons the window draws. The app carries only these glyphs of the Material Symbols font
/// (`assets/icons/`, cut by `scripts/subset-icons.py` from the crate's 1.8 MB font): an icon used
/// here must be in [`icon::ALL`], and the font made again.
pub mod icon {
    pub use egui_material_icons::icons::{
        ICON_ATTACH_FILE, ICON_CALL_END, ICON_CHAT, ICON_CONTENT_PASTE, ICON_EXPAND_LESS,
        ICON_FULLSCREEN, ICON_FULLSCREEN_EXIT, ICON_MIC, ICON_MIC_OFF, ICON_PICTURE_IN_PICTURE,
        ICON_QUERY_STATS, ICON_SCREEN_SHARE, ICON_STOP_SCREEN_SHARE, ICON_VIDEOCAM,
        ICON_VIDEOCAM_OFF, ICON_VISIBILITY_OFF, ICON_VOLUME_UP, ICON_WARNING,
    };

    /// Every icon above: the glyphs the bundled font must hold (checked by a test; read by
    /// `scripts/subset-icons.py`).
    #[cfg(test)]
    pub const ALL: &[super::MaterialIcon] = &[
        ICON_ATTACH_FILE,
        ICON_CALL_END,
        ICON_CHAT,
        ICON_CONTENT_PASTE,
        ICON_EXPAND_LESS,
        ICON_FULLSCREEN,
        ICON_FULLSCREEN_EXIT,
        ICON_MIC,
        ICON_MIC_OFF,
        ICON_PICTURE_IN_PICTURE,
        ICON_QUERY_STATS,
        ICON_SCREEN_SHARE,
        ICON_STOP_SCREEN_SHARE,
        ICON_VIDEOCAM,
        ICON_VIDEOCAM_OFF,
        ICON_VISIBILITY_OFF,
        ICON_VOLUME_UP,
        ICON_WARNING,
    ];
}

/// Material Symbols (filled, Apache-2.0), only the glyphs of [`icon::ALL`].
const ICON_FONT: &[u8] = include_bytes!("../../../assets/icons/material-symbols-filled-subset.ttf");

/// The accent: primary actions, selection, focus.
pub const ACCENT: Color32 = Color32::from_rgb(37, 110, 235);
/// Hang up, errors.
pub const DANGER: Color32 = Color32::from_rgb(215, 55, 60);
/// Good connection, speaking.
pub const GOOD: Color32 = Color32::from_rgb(46, 170, 90);
/// Reconnecting, notices that need a look.
pub const WARN: Color32 = Color32::from_rgb(230, 150, 40);

/// Corner radius of buttons, fields and cards.
pub const ROUNDING: u8 = 8;

/// Installs the theme on `ctx` unless it has it already (cheap: call it every frame); `false`
/// when it was not there: fonts arrive with the next frame, so this one must not draw icons.
pub fn ensure_installed(ctx: &egui::Context) -> bool {
    let id = egui::Id::unique("confab-theme-installed");
    if ctx.data(|d| d.get_temp::<bool>(id).unwrap_or(false)) {
        return true;
    }
    install(ctx);
    ctx.request_repaint();
    false
}

/// Installs the icon font and both styles (light and dark) on `ctx`.
pub fn install(ctx: &egui::Context) {
    ctx.add_font(icon_font());
    ctx.data_mut(|d| d.insert_temp(egui::Id::unique("confab-theme-installed"), true));
    for theme in [Theme::Dark, Theme::Light] {
        ctx.style_mut_of(theme, |style| style_for(theme, style));
    }
}

/// The icon font, registered as egui_material_icons does with its own (so that its
/// `MaterialIcon`s find it): a fallback of the proportional family and a family of its own.
fn icon_font() -> egui::epaint::text::FontInsert {
    use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};
    use egui::{FontData, FontFamily};
    let mut data = FontData::from_static(ICON_FONT);
    data.tweak.y_offset_factor = 0.05;
    let family = egui_material_icons::FONT_FAMILY;
    FontInsert::new(
        family,
        data,
        vec![
            InsertFontFamily {
                family: FontFamily::Proportional,
                priority: FontPriority::Lowest,
            },
            InsertFontFamily {
                family: FontFamily::Name(family.into()),
                priority: FontPriority::Highest,
            },
        ],
    )
}

fn style_for(theme: Theme, style: &mut egui::Style) {
    use egui::{FontId, TextStyle};
    style
        .text_styles
        .insert(TextStyle::Heading, FontId::proportional(22.0));
    style
        .text_styles
        .insert(TextStyle::Body, FontId::proportional(14.0));
    style
        .text_styles
        .insert(TextStyle::Button, FontId::proportional(14.0));
    style
        .text_styles
        .insert(TextStyle::Small, FontId::proportional(11.5));
    let spacing = &mut style.spacing;
    spacing.item_spacing = Vec2::new(8.0, 8.0);
    spacing.button_padding = Vec2::new(12.0, 6.0);
    spacing.interact_size.y = 28.0;
    spacing.window_margin = Margin::same(14);
    spacing.menu_margin = Margin::same(8);
    let visuals = &mut style.visuals;
    let on_accent = Color32::WHITE;
    visuals.selection.bg_fill = ACCENT;
    visuals.selection.stroke = Stroke::new(1.0, on_accent);
    visuals.hyperlink_color = match theme {
        Theme::Dark => Color32::from_rgb(110, 160, 255),
        Theme::Light => ACCENT,
    };
    visuals.window_corner_radius = CornerRadius::same(12);
    visuals.menu_corner_radius = CornerRadius::same(ROUNDING);
    let widgets = &mut visuals.widgets;
    for w in [
        &mut widgets.noninteractive,
        &mut widgets.inactive,
        &mut widgets.hovered,
        &mut widgets.active,
        &mut widgets.open,
    ] {
        w.corner_radius = CornerRadius::same(ROUNDING);
    }
    widgets.hovered.bg_stroke = Stroke::new(1.0, ACCENT.gamma_multiply(0.8));
    widgets.active.bg_stroke = Stroke::new(1.5, ACCENT);
    visuals.text_edit_bg_color = Some(match theme {
        Theme::Dark => Color32::from_gray(22),
        Theme::Light => Color32::from_gray(250),
    });
}

/// The one main action of a screen: filled with the accent colour.
pub fn primary_button(text: &str) -> egui::Button<'_> {
    egui::Button::new(egui::RichText::new(text).strong().color(Color32::WHITE))
        .fill(ACCENT)
        .min_size(Vec2::new(120.0, 40.0))
        .corner_radius(CornerRadius::same(20))
}

/// A round icon button (the toolbar's and the preview's): `on` draws it highlighted, `fill`
/// gives it a colour of its own (red for hang up and for a muted microphone); `name` is what a
/// screen reader says, `tip` what the tooltip says (with the shortcut).
pub fn round_icon_button(
    ui: &mut egui::Ui,
    icon: MaterialIcon,
    name: &str,
    tip: &str,
    on: bool,
    fill: Option<Color32>,
) -> egui::Response {
    let size = 44.0;
    let text_colour = if fill.is_some() {
        Color32::WHITE
    } else {
        ui.visuals().text_color()
    };
    let mut button = egui::Button::new(icon.rich_text().size(22.0).color(text_colour))
        .min_size(Vec2::splat(size))
        .corner_radius(CornerRadius::same((size / 2.0) as u8))
        .selected(on);
    if let Some(fill) = fill {
        button = button.fill(fill);
    }
    ui.add(button).on_hover_text(tip).accessible_name(name)
}

/// A short human sentence for an error from a library or the system, and the raw text for the
/// tooltip. Known causes get their own sentence; anything else keeps its first clause.
pub fn humane_error(what: Problem, raw: &str) -> (String, String) {
    let lower = raw.to_lowercase();
    let missing = [
        "not available",
        "no such",
        "not found",
        "disconnected",
        "no device",
        "no camera",
        "no microphone",
    ]
    .iter()
    .any(|s| lower.contains(s));
    let denied = ["permission", "denied", "busy", "in use"]
        .iter()
        .any(|s| lower.contains(s));
    let short = match (what, missing, denied) {
        (Problem::Camera, true, _) => "No camera found. Is one connected?".to_owned(),
        (Problem::Camera, _, true) => "The camera is busy or not allowed.".to_owned(),
        (Problem::Camera, ..) => "The camera could not start.".to_owned(),
        (Problem::Mic, true, _) => "No microphone found. Is one connected?".to_owned(),
        (Problem::Mic, _, true) => "The microphone is busy or not allowed.".to_owned(),
        (Problem::Mic, ..) => "The microphone could not start.".to_owned(),
        (Problem::Other, ..) => first_clause(raw),
    };
    (short, raw.to_owned())
}

/// What a problem is about, for `humane_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Camera,
    Mic,
    Other,
}

/// The first clause of `raw` (before any `: ` detail), at most 80 characters.
fn first_clause(raw: &str) -> String {
    let clause = raw
        .split(['\n', ';'])
        .next()
        .unwrap_or(raw)
        .split(": ")
        .next()
        .unwrap_or(raw)
        .trim();
    let mut out: String = clause.chars().take(80).collect();
    if clause.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The icons that the bundled font cannot draw (no glyph, or an empty one).
    fn without_glyph(font: &[u8], icons: &[MaterialIcon]) -> Vec<String> {
        let face = ttf_parser::Face::parse(font, 0).expect("the icon font parses");
        icons
            .iter()
            .map(|icon| {
                icon.codepoint
                    .chars()
                    .next()
                    .expect("one code point per icon")
            })
            .filter(|&c| {
                face.glyph_index(c)
                    .and_then(|glyph| face.glyph_bounding_box(glyph))
                    .is_none()
            })
            .map(|c| format!("U+{:04X}", c as u32))
            .collect()
    }

    #[test]
    fn bundled_icon_font_has_every_icon() {
        assert_eq!(without_glyph(ICON_FONT, icon::ALL), Vec::<String>::new());
        // And the check can fail: an icon that was not cut into the font is reported.
        let not_bundled = egui_material_icons::icons::ICON_ROCKET_LAUNCH;
        assert_eq!(without_glyph(ICON_FONT, &[not_bundled]).len(), 1);
    }
}
