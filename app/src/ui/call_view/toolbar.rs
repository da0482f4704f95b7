//! The toolbar at the bottom of the call window: connection-quality bars on the left, then
//! round icon buttons (microphone and camera with their device menus, share, chat with an
//! unread badge, file, statistics, full screen) and hang up; each named for screen readers and
//! with its keyboard shortcut in the tooltip.

use egui::{Color32, Vec2};

use crate::ui::call::{CallState, CallUi};
use crate::ui::command::UiCommand;
use crate::ui::devices::{Choice, DeviceLists};
use crate::ui::theme::{self, icon};

/// Keyboard shortcuts, as the tooltips name them.
pub mod keys {
    pub const MUTE: &str = "M";
    pub const CAMERA: &str = "V";
    pub const SHARE: &str = "S";
    pub const CHAT: &str = "C";
    pub const FILE: &str = "F";
    pub const STATS: &str = "I";
    pub const FULLSCREEN: &str = "F11";
    pub const HANG_UP: &str = "Ctrl+W";
    pub const PUSH_TO_TALK: &str = "Space";
}

/// What the device menus offer and which devices the call uses.
pub struct DeviceMenus<'a> {
    pub lists: &'a DeviceLists,
    pub mic: &'a str,
    pub camera: &'a str,
    pub speaker: &'a str,
}

/// What "Share screen" means now: stop sharing, or choose what to share.
pub fn share_command(call: &CallUi) -> UiCommand {
    if call.sharing {
        UiCommand::StopSharing
    } else {
        UiCommand::ToggleShareMenu
    }
}

/// How good the connection is, 0 (bad) to 3 (good): the worst of round trip, loss and (while
/// video comes in) the received bitrate.
pub fn quality_bars(rtt_ms: Option<f64>, loss_fraction: f64, recv_kbps: Option<f64>) -> u8 {
    let rtt = match rtt_ms {
        None => 3,
        Some(r) if r < 150.0 => 3,
        Some(r) if r < 300.0 => 2,
        Some(r) if r < 600.0 => 1,
        Some(_) => 0,
    };
    let loss = match loss_fraction * 100.0 {
        l if l < 2.0 => 3,
        l if l < 5.0 => 2,
        l if l < 12.0 => 1,
        _ => 0,
    };
    let rate = match recv_kbps {
        None => 3,
        Some(k) if k >= 250.0 => 3,
        Some(k) if k >= 100.0 => 2,
        Some(k) if k >= 30.0 => 1,
        Some(_) => 0,
    };
    rtt.min(loss).min(rate)
}

/// The quality bars, with the numbers on hover.
fn quality_ui(call: &CallUi, ui: &mut egui::Ui) {
    let link = call.link;
    let connected = matches!(call.state, CallState::Connected);
    let bars = if connected {
        quality_bars(link.rtt_ms, link.loss_fraction, link.recv_kbps)
    } else {
        0
    };
    let (word, colour) = match (connected, bars) {
        (false, _) => ("not connected", Color32::GRAY),
        (true, 3) => ("good", theme::GOOD),
        (true, 2) => ("fair", theme::WARN),
        (true, _) => ("poor", theme::DANGER),
    };
    let (rect, response) = ui.allocate_exact_size(Vec2::new(28.0, 44.0), egui::Sense::hover());
    for i in 0..3u8 {
        let h = 8.0 + 6.0 * f32::from(i);
        let x = rect.left() + 4.0 + f32::from(i) * 7.0;
        let bar = egui::Rect::from_min_max(
            egui::pos2(x, rect.center().y + 10.0 - h),
            egui::pos2(x + 5.0, rect.center().y + 10.0),
        );
        let fill = if i < bars {
            colour
        } else {
            ui.visuals().widgets.inactive.bg_fill
        };
        ui.painter().rect_filled(bar, 1.5, fill);
    }
    let details = format!(
        "Connection {word}\nRound trip: {}\nLoss: {:.1} %\nReceiving: {:.0} kbit/s",
        link.rtt_ms.map_or("–".into(), |r| format!("{r:.0} ms")),
        link.loss_fraction * 100.0,
        link.recv_kbps.unwrap_or(0.0)
    );
    response.on_hover_text(details).widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Label, true, format!("Connection {word}"))
    });
}

/// One part of a device menu: its title, the choices, the one in use, and the command a
/// choice makes.
type MenuSection<'a> = (&'a str, &'a [Choice], &'a str, fn(String) -> UiCommand);

/// A small round caret beside a button that opens a device menu.
fn device_menu(
    ui: &mut egui::Ui,
    name: &str,
    sections: &[MenuSection<'_>],
    commands: &mut Vec<UiCommand>,
) {
    let caret = egui::Button::new(icon::ICON_EXPAND_LESS.rich_text().size(16.0))
        .min_size(Vec2::new(22.0, 44.0))
        .frame(false);
    let response = ui.add(caret).on_hover_text(name).accessible_name(name);
    egui::Popup::menu(&response).show(|ui| {
        ui.set_max_width(320.0);
        for (title, choices, current, command) in sections {
            ui.label(egui::RichText::new(*title).small().weak());
            for choice in choices.iter() {
                let chosen = choice.spec == *current;
                let item = egui::Button::selectable(chosen, &choice.label).truncate();
                if ui.add(item).clicked() && !chosen {
                    commands.push(command(choice.spec.clone()));
                }
            }
            ui.separator();
        }
        ui.label(
            egui::RichText::new("A new choice is used at once, and in later calls.")
                .small()
                .weak(),
        );
    });
}

pub fn toolbar_ui(
    call: &CallUi,
    fullscreen: bool,
    devices: &DeviceMenus<'_>,
    ui: &mut egui::Ui,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let spacing = ui.spacing().item_spacing.x;
    // Eight round buttons, two carets and hang up, centred; the quality bars on the left.
    let buttons_w = 9.0 * 44.0 + 2.0 * 22.0 + 11.0 * spacing + 12.0;
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        quality_ui(call, ui);
        let left = (ui.available_width() - buttons_w) / 2.0 - 28.0 - spacing;
        ui.add_space(left.max(0.0));
        let mut button = |ui: &mut egui::Ui,
                          glyph: theme::MaterialIcon,
                          name: &str,
                          tip: String,
                          on: bool,
                          fill: Option<Color32>,
                          command: UiCommand| {
            if theme::round_icon_button(ui, glyph, name, &tip, on, fill).clicked() {
                commands.push(command);
            }
        };
        let (glyph, name, tip, fill) = if call.mic_muted {
            (
                icon::ICON_MIC_OFF,
                "Unmute",
                format!(
                    "Unmute ({}; or hold {} to talk)",
                    keys::MUTE,
                    keys::PUSH_TO_TALK
                ),
                Some(theme::DANGER),
            )
        } else {
            (
                icon::ICON_MIC,
                "Mute",
                format!("Mute ({})", keys::MUTE),
                None,
            )
        };
        button(ui, glyph, name, tip, false, fill, UiCommand::ToggleMic);
        let mut menu_commands = Vec::new();
        device_menu(
            ui,
            "Microphone and speaker",
            &[
                (
                    "Microphone",
                    &devices.lists.mics,
                    devices.mic,
                    UiCommand::ChooseMic,
                ),
                (
                    "Speaker",
                    &devices.lists.speakers,
                    devices.speaker,
                    UiCommand::ChooseSpeaker,
                ),
            ],
            &mut menu_commands,
        );
        let (glyph, name, fill) = if call.camera_off {
            (icon::ICON_VIDEOCAM_OFF, "Camera on", Some(theme::DANGER))
        } else {
            (icon::ICON_VIDEOCAM, "Camera off", None)
        };
        let tip = format!("{name} ({})", keys::CAMERA);
        button(ui, glyph, name, tip, false, fill, UiCommand::ToggleCamera);
        device_menu(
            ui,
            "Camera choice",
            &[(
                "Camera",
                &devices.lists.cameras,
                devices.camera,
                UiCommand::ChooseCamera,
            )],
            &mut menu_commands,
        );
        let (glyph, name) = if call.sharing {
            (icon::ICON_STOP_SCREEN_SHARE, "Stop sharing")
        } else {
            (icon::ICON_SCREEN_SHARE, "Share screen")
        };
        let tip = format!("{name}: a screen or a window ({})", keys::SHARE);
        button(
            ui,
            glyph,
            name,
            tip,
            call.sharing,
            None,
            share_command(call),
        );
        let chat_name = if call.unread > 0 {
            format!("Chat, {} unread", call.unread)
        } else {
            "Chat".to_owned()
        };
        let before = ui.cursor().min;
        button(
            ui,
            icon::ICON_CHAT,
            &chat_name,
            format!("Messages and files ({})", keys::CHAT),
            call.show_chat,
            None,
            UiCommand::ToggleChat,
        );
        if call.unread > 0 {
            badge(ui, before + Vec2::new(34.0, 0.0), call.unread);
        }
        button(
            ui,
            icon::ICON_ATTACH_FILE,
            "Send file",
            format!("Send a file ({})", keys::FILE),
            false,
            None,
            UiCommand::PickFile,
        );
        button(
            ui,
            icon::ICON_QUERY_STATS,
            "Stats",
            format!("Call statistics ({})", keys::STATS),
            call.show_stats,
            None,
            UiCommand::ToggleStats,
        );
        let (glyph, name) = if fullscreen {
            (icon::ICON_FULLSCREEN_EXIT, "Leave full screen")
        } else {
            (icon::ICON_FULLSCREEN, "Full screen")
        };
        let tip = format!("{name} ({}; Esc leaves)", keys::FULLSCREEN);
        button(
            ui,
            glyph,
            name,
            tip,
            fullscreen,
            None,
            UiCommand::ToggleFullscreen,
        );
        ui.add_space(12.0);
        if call.is_over() {
            if ui
                .add(egui::Button::new("Back to lobby").min_size(Vec2::new(0.0, 44.0)))
                .clicked()
            {
                commands.push(UiCommand::Hangup);
            }
        } else {
            let tip = format!("Leave the call ({})", keys::HANG_UP);
            button(
                ui,
                icon::ICON_CALL_END,
                "Hang up",
                tip,
                false,
                Some(theme::DANGER),
                UiCommand::Hangup,
            );
        }
        commands.extend(menu_commands);
    });
    ui.add_space(6.0);
    commands
}

/// The unread count in a red dot on the top right of the chat button.
fn badge(ui: &egui::Ui, at: egui::Pos2, unread: usize) {
    let text = if unread > 9 {
        "9+".to_owned()
    } else {
        unread.to_string()
    };
    let centre = at + Vec2::new(0.0, 8.0);
    ui.painter().circle_filled(centre, 9.0, theme::DANGER);
    ui.painter().text(
        centre,
        egui::Align2::CENTER_CENTER,
        text,
        egui::FontId::proportional(11.0),
        Color32::WHITE,
    );
}

#[cfg(test)]
mod tests {
    use super::quality_bars;

    #[test]
    fn quality_is_the_worst_of_rtt_loss_and_bitrate() {
        let cases = [
            ((Some(40.0), 0.0, Some(900.0)), 3),
            ((None, 0.0, None), 3),
            ((Some(200.0), 0.0, Some(900.0)), 2),
            ((Some(40.0), 0.03, Some(900.0)), 2),
            ((Some(40.0), 0.0, Some(60.0)), 1),
            ((Some(700.0), 0.0, Some(900.0)), 0),
            ((Some(40.0), 0.2, Some(900.0)), 0),
            ((Some(250.0), 0.08, Some(150.0)), 1),
        ];
        for ((rtt, loss, kbps), bars) in cases {
            assert_eq!(
                quality_bars(rtt, loss, kbps),
                bars,
                "{rtt:?} {loss} {kbps:?}"
            );
        }
    }
}
