//! The side panel of the call window: chat messages, file transfers (accept, decline,
//! progress), and the message field.

use egui::{Color32, Key};

use super::RED;
use crate::ui::call::{CallUi, TransferState};
use crate::ui::command::UiCommand;

fn transfers_height(call: &CallUi) -> f32 {
    call.transfers.len() as f32 * 56.0
}

pub fn chat_ui(call: &mut CallUi, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.heading("Chat");
    let input_height = 64.0;
    egui::ScrollArea::vertical()
        .max_height(ui.available_height() - input_height - transfers_height(call))
        .stick_to_bottom(true)
        .show(ui, |ui| {
            for line in &call.chat {
                let (who, colour) = if line.mine {
                    ("You", Color32::from_rgb(120, 170, 240))
                } else {
                    (
                        call.peer_name.as_deref().unwrap_or("Them"),
                        Color32::from_rgb(120, 200, 140),
                    )
                };
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(colour, format!("{who}:"));
                    ui.label(&line.text);
                });
            }
        });
    for t in &call.transfers {
        ui.separator();
        let direction = if t.incoming { "Receiving" } else { "Sending" };
        ui.label(format!("{direction} {}", t.name));
        match &t.state {
            TransferState::Offered => {
                ui.horizontal(|ui| {
                    ui.label(format!("{:.1} MB", t.total as f64 / 1e6));
                    if ui.button("Accept").clicked() {
                        commands.push(UiCommand::AnswerOffer {
                            id: t.id,
                            accept: true,
                        });
                    }
                    if ui.button("Decline").clicked() {
                        commands.push(UiCommand::AnswerOffer {
                            id: t.id,
                            accept: false,
                        });
                    }
                });
            }
            TransferState::Moving => {
                let fraction = if t.total > 0 {
                    t.done as f32 / t.total as f32
                } else {
                    0.0
                };
                ui.add(egui::ProgressBar::new(fraction).show_percentage());
            }
            TransferState::Done => {
                ui.label(if t.incoming {
                    "Saved to your Downloads folder"
                } else {
                    "Delivered"
                });
            }
            TransferState::Failed(reason) => {
                ui.colored_label(RED, reason);
            }
        }
    }
    ui.separator();
    ui.horizontal(|ui| {
        let edit = ui.add(
            egui::TextEdit::singleline(&mut call.chat_input)
                .hint_text("Message")
                .desired_width(ui.available_width() - 60.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        if ui.button("Send").clicked() || enter {
            commands.push(UiCommand::SendChat);
            edit.request_focus();
        }
    });
    commands
}
