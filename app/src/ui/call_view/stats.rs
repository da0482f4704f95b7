//! The statistics overlay of the call window: what is sent and received, the path, losses, and
//! plots of the last minute.

use egui_plot::{Legend, Line, Plot};

use confab_engine::stats::{Limitation, RuntimeStats};

use crate::ui::call::{CallUi, StatsSample};
use crate::ui::command::UiCommand;

pub fn stats_ui(call: &CallUi, ctx: &egui::Context) -> Vec<UiCommand> {
    let s = call.stats.snapshot();
    let mut open = true;
    egui::Window::new("Call statistics")
        .open(&mut open)
        .default_width(420.0)
        .show(ctx, |ui| {
            egui::Grid::new("stats-grid")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    let row = |ui: &mut egui::Ui, k: &str, v: String| {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    };
                    row(
                        ui,
                        "Receiving",
                        format!(
                            "{}x{} at {:.0} fps, {:.0} kbps",
                            s.video_recv.width,
                            s.video_recv.height,
                            call.history.back().map_or(0.0, |h| h.fps),
                            s.video_recv.bitrate_kbps
                        ),
                    );
                    row(
                        ui,
                        "Sending",
                        format!(
                            "{}x{} up to {} fps, {:.0} of {:.0} kbps",
                            s.video_send.width,
                            s.video_send.height,
                            s.video_send.max_fps,
                            s.video_send.bitrate_kbps,
                            s.video_send.target_kbps
                        ),
                    );
                    row(
                        ui,
                        "Quality limited by",
                        match s.video_send.quality_limitation {
                            Limitation::None => "nothing".into(),
                            Limitation::Bandwidth => "the network's bandwidth".into(),
                            Limitation::Cpu => "this computer's processor".into(),
                            Limitation::Receiver => "what the other side asked for".into(),
                        },
                    );
                    row(
                        ui,
                        "Round trip",
                        s.ice.rtt_ms.map_or("–".into(), |r| format!("{r:.1} ms")),
                    );
                    let lost = s.video_recv.frames_dropped;
                    row(
                        ui,
                        "Video frames lost",
                        format!("{lost} ({} freezes)", s.video_recv.freezes),
                    );
                    row(
                        ui,
                        "Audio concealed",
                        format!("{:.1} %", s.audio_recv.concealed_ratio * 100.0),
                    );
                    row(
                        ui,
                        "Path",
                        match (&s.ice.local_candidate_type, &s.ice.remote_candidate_type) {
                            (Some(l), Some(r)) => format!(
                                "{l} to {r}{}",
                                if l == "relay" || r == "relay" {
                                    " (through TURN)"
                                } else {
                                    " (direct)"
                                }
                            ),
                            _ => "–".into(),
                        },
                    );
                    // Only once it happened: a frozen call then says it was this computer, not
                    // the network (`engine/src/watchdog.rs`).
                    if s.runtime.stalls > 0 {
                        row(ui, "This computer", stalled(&s.runtime));
                    }
                });
            let series = |f: fn(&StatsSample) -> f64| -> Vec<[f64; 2]> {
                call.history.iter().map(|h| [h.t, f(h)]).collect()
            };
            ui.label("Bitrate (kbps), last minute");
            Plot::new("bitrate")
                .height(110.0)
                .legend(Legend::default())
                .allow_scroll(false)
                .allow_drag(false)
                .show(ui, |plot| {
                    plot.line(Line::new("sending", series(|h| h.send_kbps)));
                    plot.line(Line::new("target", series(|h| h.target_kbps)));
                    plot.line(Line::new("receiving", series(|h| h.recv_kbps)));
                });
            ui.label("Frame rate and round trip");
            Plot::new("fps-rtt")
                .height(110.0)
                .legend(Legend::default())
                .allow_scroll(false)
                .allow_drag(false)
                .show(ui, |plot| {
                    plot.line(Line::new("fps", series(|h| h.fps)));
                    plot.line(Line::new("RTT ms", series(|h| h.rtt_ms)));
                });
        });
    if open {
        Vec::new()
    } else {
        vec![UiCommand::CloseStats]
    }
}

/// "stalled 2 times (longest 1.3 s)".
fn stalled(runtime: &RuntimeStats) -> String {
    format!(
        "stalled {} {} (longest {:.1} s)",
        runtime.stalls,
        if runtime.stalls == 1 { "time" } else { "times" },
        runtime.longest_stall_ms / 1e3
    )
}
