//! The toolbar at the bottom of the call window: mute, camera, share, chat, file, statistics,
//! full screen and hang up, each with its keyboard shortcut in the tooltip.

use egui::{Color32, RichText};

use super::RED;
use crate::ui::call::CallUi;
use crate::ui::command::UiCommand;

/// Keyboard shortcuts, as the tooltips name them.
mod keys {
    pub const MUTE: &str = "M";
    pub const CAMERA: &str = "V";
    pub const SHARE: &str = "S";
    pub const CHAT: &str = "C";
    pub const FILE: &str = "F";
    pub const STATS: &str = "I";
    pub const FULLSCREEN: &str = "F11";
    pub const HANG_UP: &str = "Ctrl+W";
}

/// What "Share screen" means now: stop sharing, or choose what to share.
pub fn share_command(call: &CallUi) -> UiCommand {
    if call.sharing {
        UiCommand::StopSharing
    } else {
        UiCommand::ToggleShareMenu
    }
}

pub fn toolbar_ui(call: &CallUi, fullscreen: bool, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let mut button = |ui: &mut egui::Ui, on: bool, text: &str, tip: String, command| {
            let b = egui::Button::new(text)
                .selected(on)
                .min_size(egui::vec2(92.0, 30.0));
            if ui.add(b).on_hover_text(tip).clicked() {
                commands.push(command);
            }
        };
        button(
            ui,
            call.mic_muted,
            if call.mic_muted { "Unmute" } else { "Mute" },
            format!("Microphone on or off ({})", keys::MUTE),
            UiCommand::ToggleMic,
        );
        button(
            ui,
            call.camera_off,
            if call.camera_off {
                "Camera on"
            } else {
                "Camera off"
            },
            format!("Camera on or off ({})", keys::CAMERA),
            UiCommand::ToggleCamera,
        );
        button(
            ui,
            call.sharing,
            if call.sharing {
                "Stop sharing"
            } else {
                "Share screen"
            },
            format!("Share a screen or a window ({})", keys::SHARE),
            share_command(call),
        );
        let chat_label = if call.unread > 0 {
            format!("Chat ({})", call.unread)
        } else {
            "Chat".into()
        };
        button(
            ui,
            call.show_chat,
            &chat_label,
            format!("Messages and files ({})", keys::CHAT),
            UiCommand::ToggleChat,
        );
        button(
            ui,
            false,
            "Send file",
            format!("Send a file ({})", keys::FILE),
            UiCommand::PickFile,
        );
        button(
            ui,
            call.show_stats,
            "Stats",
            format!("Call statistics ({})", keys::STATS),
            UiCommand::ToggleStats,
        );
        button(
            ui,
            fullscreen,
            "Full screen",
            format!("Full screen ({}; Esc leaves)", keys::FULLSCREEN),
            UiCommand::ToggleFullscreen,
        );
        ui.add_space(12.0);
        if call.is_over() {
            if ui.button("Back to lobby").clicked() {
                commands.push(UiCommand::Hangup);
            }
        } else {
            let hang_up = egui::Button::new(RichText::new("Hang up").color(Color32::WHITE))
                .fill(RED)
                .min_size(egui::vec2(92.0, 30.0));
            if ui
                .add(hang_up)
                .on_hover_text(format!("Leave the call ({})", keys::HANG_UP))
                .clicked()
            {
                commands.push(UiCommand::Hangup);
            }
        }
    });
    ui.add_space(4.0);
    commands
}
