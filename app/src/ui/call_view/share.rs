//! The menu of screens and windows to share.

use crate::ui::command::UiCommand;
use crate::ui::devices::Choice;

pub fn share_ui(screens: &[Choice], ctx: &egui::Context) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let mut open = true;
    egui::Window::new("Share")
        .open(&mut open)
        .collapsible(false)
        .show(ctx, |ui| {
            if screens.is_empty() {
                ui.label("No screen or window can be captured here.");
            }
            for choice in screens {
                if ui.button(&choice.label).clicked() {
                    commands.push(UiCommand::ShareScreen(choice.spec.clone()));
                }
            }
        });
    if !open {
        commands.push(UiCommand::CloseShareMenu);
    }
    commands
}
