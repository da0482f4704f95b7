//! The call window: the other person large (aspect kept), yourself small in a corner, the state
//! of the call and its security code on top, a toolbar with shortcuts at the bottom, chat and
//! file transfers on the side, and a statistics overlay with plots of the last minute.

use egui::{Color32, Key, RichText};
use egui_plot::{Legend, Line, Plot};

use super::app::ConfabApp;
use super::call::{CallState, CallUi, TransferState};
use super::video::fit_rect;
use confab_engine::session::SessionCommand;

const RED: Color32 = Color32::from_rgb(200, 60, 50);

/// Keyboard shortcuts, shown in the tooltips too.
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

/// What a shortcut or a button asked for this frame.
#[derive(Default)]
struct Actions {
    mute: bool,
    camera: bool,
    share: bool,
    chat: bool,
    file: bool,
    stats: bool,
    fullscreen: bool,
    hang_up: bool,
}

fn shortcuts(ctx: &egui::Context) -> Actions {
    // Letters only act when no text field has the keyboard (chat input).
    let typing = ctx.egui_wants_keyboard_input();
    ctx.input_mut(|i| {
        let letter =
            |i: &mut egui::InputState, key| !typing && i.consume_key(egui::Modifiers::NONE, key);
        Actions {
            mute: letter(i, Key::M),
            camera: letter(i, Key::V),
            share: letter(i, Key::S),
            chat: letter(i, Key::C),
            file: letter(i, Key::F),
            stats: letter(i, Key::I),
            fullscreen: i.consume_key(egui::Modifiers::NONE, Key::F11),
            hang_up: i.consume_key(egui::Modifiers::COMMAND, Key::W),
        }
    })
}

pub fn call_ui(app: &mut ConfabApp, ui: &mut egui::Ui) {
    let ctx = ui.ctx().clone();
    let mut actions = shortcuts(&ctx);
    if app.fullscreen && ctx.input(|i| i.key_pressed(Key::Escape)) {
        actions.fullscreen = true;
    }

    let Some(call) = app.call.as_mut() else {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.centered_and_justified(|ui| {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Opening camera and microphone…");
                });
            });
        });
        return;
    };

    egui::Panel::top("call-top").show(ui, |ui| {
        ui.horizontal(|ui| {
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
    });

    egui::Panel::bottom("call-toolbar").show(ui, |ui| {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let button = |ui: &mut egui::Ui, on: bool, text: &str, tip: String| -> bool {
                let b = egui::Button::new(text)
                    .selected(on)
                    .min_size(egui::vec2(92.0, 30.0));
                ui.add(b).on_hover_text(tip).clicked()
            };
            actions.mute |= button(
                ui,
                call.mic_muted,
                if call.mic_muted { "Unmute" } else { "Mute" },
                format!("Microphone on or off ({})", keys::MUTE),
            );
            actions.camera |= button(
                ui,
                call.camera_off,
                if call.camera_off {
                    "Camera on"
                } else {
                    "Camera off"
                },
                format!("Camera on or off ({})", keys::CAMERA),
            );
            actions.share |= button(
                ui,
                call.sharing,
                if call.sharing {
                    "Stop sharing"
                } else {
                    "Share screen"
                },
                format!("Share a screen or a window ({})", keys::SHARE),
            );
            let chat_label = if call.unread > 0 {
                format!("Chat ({})", call.unread)
            } else {
                "Chat".into()
            };
            actions.chat |= button(
                ui,
                call.show_chat,
                &chat_label,
                format!("Messages and files ({})", keys::CHAT),
            );
            actions.file |= button(
                ui,
                false,
                "Send file",
                format!("Send a file ({})", keys::FILE),
            );
            actions.stats |= button(
                ui,
                call.show_stats,
                "Stats",
                format!("Call statistics ({})", keys::STATS),
            );
            actions.fullscreen |= button(
                ui,
                app.fullscreen,
                "Full screen",
                format!("Full screen ({}; Esc leaves)", keys::FULLSCREEN),
            );
            ui.add_space(12.0);
            if call.is_over() {
                if ui.button("Back to lobby").clicked() {
                    actions.hang_up = true;
                }
            } else {
                let hang_up = egui::Button::new(RichText::new("Hang up").color(Color32::WHITE))
                    .fill(RED)
                    .min_size(egui::vec2(92.0, 30.0));
                actions.hang_up |= ui
                    .add(hang_up)
                    .on_hover_text(format!("Leave the call ({})", keys::HANG_UP))
                    .clicked();
            }
        });
        ui.add_space(4.0);
    });

    if call.show_chat {
        egui::Panel::right("call-chat")
            .default_size(300.0)
            .show(ui, |ui| chat_ui(call, ui));
    }

    egui::CentralPanel::default()
        .frame(egui::Frame::NONE.fill(Color32::from_gray(12)))
        .show(ui, |ui| {
            let area = ui.max_rect();
            call.remote
                .upload(ui.ctx(), "remote", &mut call.remote_texture);
            call.local
                .upload(ui.ctx(), "local", &mut call.local_texture);
            let full_uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
            let mut video_rect = None;
            match (&call.remote_texture, call.remote.source_size()) {
                (Some(texture), Some(size))
                    if call.state == CallState::Connected
                        || call.state == CallState::Reconnecting =>
                {
                    let r = fit_rect(area, size);
                    ui.painter().image(texture.id(), r, full_uv, Color32::WHITE);
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
                    ui.painter().image(texture.id(), r, full_uv, Color32::WHITE);
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
            report_layout(
                &mut app.last_layout,
                app.layout_report.as_deref(),
                ui.ctx(),
                video_rect,
            );
        });

    if call.show_stats {
        stats_window(call, &ctx);
    }
    if app.share_menu {
        let screens = app
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .screens
            .clone();
        let mut open = true;
        egui::Window::new("Share")
            .open(&mut open)
            .collapsible(false)
            .show(&ctx, |ui| {
                if screens.is_empty() {
                    ui.label("No screen or window can be captured here.");
                }
                for choice in &screens {
                    if ui.button(&choice.label).clicked() {
                        call.share_screen(choice.spec.clone(), &ctx);
                        app.share_menu = false;
                    }
                }
            });
        app.share_menu &= open;
    }

    // Act on this frame's buttons and shortcuts.
    if actions.mute {
        call.toggle_mute();
    }
    if actions.camera {
        call.toggle_camera();
    }
    if actions.share {
        if call.sharing {
            call.command(SessionCommand::ShareScreen(None));
        } else {
            app.share_menu = !app.share_menu;
        }
    }
    if actions.chat {
        call.show_chat = !call.show_chat;
        call.unread = 0;
    }
    if actions.stats {
        call.show_stats = !call.show_stats;
    }
    if actions.file && app.file_pick.is_none() {
        // The native dialog blocks: it runs on its own thread, the answer comes back by channel.
        let (tx, rx) = std::sync::mpsc::channel();
        let repaint = ctx.clone();
        if std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let _ = tx.send(rfd::FileDialog::new().set_title("Send a file").pick_file());
                repaint.request_repaint();
            })
            .is_ok()
        {
            app.file_pick = Some(rx);
        }
    }
    if actions.fullscreen {
        app.fullscreen = !app.fullscreen;
        ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(app.fullscreen));
    }
    // Files dropped on the window are sent.
    let dropped: Vec<std::path::PathBuf> = ctx.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect()
    });
    for path in dropped {
        call.send_file(path);
    }
    if actions.hang_up {
        if call.is_over() {
            app.back_to_lobby();
        } else {
            call.hang_up();
            app.back_to_lobby();
        }
    }
}

fn chat_ui(call: &mut CallUi, ui: &mut egui::Ui) {
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
    let mut answers = Vec::new();
    for t in &call.transfers {
        ui.separator();
        let direction = if t.incoming { "Receiving" } else { "Sending" };
        ui.label(format!("{direction} {}", t.name));
        match &t.state {
            TransferState::Offered => {
                ui.horizontal(|ui| {
                    ui.label(format!("{:.1} MB", t.total as f64 / 1e6));
                    if ui.button("Accept").clicked() {
                        answers.push((t.id, true));
                    }
                    if ui.button("Decline").clicked() {
                        answers.push((t.id, false));
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
    for (id, accept) in answers {
        call.answer_offer(id, accept);
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
            call.send_chat();
            edit.request_focus();
        }
    });
}

fn transfers_height(call: &CallUi) -> f32 {
    call.transfers.len() as f32 * 56.0
}

fn stats_window(call: &mut CallUi, ctx: &egui::Context) {
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
                            "{}x{}, {:.0} kbps",
                            s.video_send.width, s.video_send.height, s.video_send.bitrate_kbps
                        ),
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
                });
            let series = |f: fn(&super::call::StatsSample) -> f64| -> Vec<[f64; 2]> {
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
    call.show_stats &= open;
}

/// With `CONFAB_UI_LAYOUT=FILE`, writes where the remote video is (physical pixels) whenever
/// that changes: the screenshot test finds the picture there.
fn report_layout(
    last: &mut Option<String>,
    path: Option<&std::path::Path>,
    ctx: &egui::Context,
    video: Option<(egui::Rect, [usize; 2])>,
) {
    let (Some(path), Some((r, size))) = (path, video) else {
        return;
    };
    let ppp = ctx.pixels_per_point();
    let json = serde_json::json!({
        "remote_video": [r.left() * ppp, r.top() * ppp, r.width() * ppp, r.height() * ppp],
        "video_size": size,
    })
    .to_string();
    if last.as_deref() != Some(json.as_str()) {
        let _ = std::fs::write(path, &json);
        *last = Some(json);
    }
}
