//! The top bar of the call window: the room, the state of the call, how long it has lasted, and
//! the security code to read to each other.

use std::time::Duration;

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
            let elapsed = at.elapsed();
            let secs = elapsed.as_secs();
            ui.label(format!("{:02}:{:02}", secs / 60, secs % 60));
            // The clock (and the statistics, sampled each second) move on when no video comes
            // to repaint the window (a call without cameras): draw again at its next second.
            ui.ctx()
                .request_repaint_after(Duration::from_secs(secs + 1).saturating_sub(elapsed));
        }
        if let Some(code) = &call.security_code {
            ui.separator();
            ui.label(RichText::new(format!("Security code {code}")).monospace()).on_hover_text(
                "Read this number to each other: if it matches, nobody (not even the server) sits in the middle of your call.",
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// How soon egui asks to draw again after a pass of the top bar.
    fn next_repaint(call: &CallUi) -> Duration {
        let ctx = egui::Context::default();
        let mut delay = Duration::ZERO;
        // egui draws its first frames of its own accord.
        for _ in 0..3 {
            let output = ctx.run_ui(egui::RawInput::default(), |ui| top_bar_ui(call, ui));
            delay = output.viewport_output[&egui::ViewportId::ROOT].repaint_delay;
        }
        delay
    }

    #[test]
    fn the_call_clock_ticks_without_video() {
        let mut call = CallUi::bare();
        assert_eq!(next_repaint(&call), Duration::MAX, "no clock, no repaint");
        call.state = CallState::Connected;
        call.connected_at = Some(Instant::now() - Duration::from_millis(1_250));
        let delay = next_repaint(&call);
        assert!(
            delay > Duration::from_millis(500) && delay <= Duration::from_millis(750),
            "drawn again when the clock reaches 00:02: in {delay:?}"
        );
    }
}
