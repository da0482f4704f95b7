//! The top bar of the call window: the room, the state of the call, how long it has lasted, and
//! the security code to read to each other.

use egui::{Color32, RichText};

use super::RED;
use crate::ui::call::{CallState, CallUi};

pub fn top_bar_ui(call: &CallUi, ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("Room {}", call.room)).strong());
        ui.separator();
        let state_colour = match call.state {
            CallState::Connected => Color32::from_rgb(80, 180, 100),
            CallState::Reconnecting | CallState::PeerLeft => Color32::from_rgb(230, 160, 60),
            CallState::Ended(Some(_)) => RED,
            _ => ui.visuals().text_color(),
        };
        let mut state = call.state.label();
        if let (CallState::Connected, Some(name)) = (&call.state, &call.peer_name) {
            state = format!("In a call with {name}");
        }
        ui.colored_label(state_colour, state);
        if let Some(at) = call.connected_at {
            let secs = at.elapsed().as_secs();
            ui.label(format!("{:02}:{:02}", secs / 60, secs % 60));
        }
        if let Some(code) = &call.security_code {
            ui.separator();
            ui.label(RichText::new(format!("Security code {code}")).monospace()).on_hover_text(
                "Read this number to each other: if it matches, nobody (not even the server) sits in the middle of your call.",
            );
        }
    });
}
