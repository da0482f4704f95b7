//! The lobby: camera preview and microphone level, name, room code (join one, or make a new one
//! and share its code or link), device pickers, and where the signaling server is.

use confab_protocol::RoomCode;
use egui::{Color32, RichText};

use super::command::UiCommand;
use super::devices::{Choice, DeviceLists};
use super::hosted::HostStatus;
use super::preview::Preview;
use super::settings::{ServerMode, Settings};
use super::video::fit_rect;

/// What a browser can do with the hosted server's link, said plainly.
const LAN_BROWSER_NOTE: &str = "A browser on your network can open the link, but it first warns \
     that the certificate is self-signed (it was made by this computer): they must choose to \
     go on. After that the browser can send and receive camera, microphone and chat. Another \
     Confab needs no warning: the copied address carries the certificate's fingerprint.";

/// What the lobby shows; the text fields and choices edit the settings in place.
pub struct LobbyView<'a> {
    pub settings: &'a mut Settings,
    pub room_input: &'a mut String,
    /// A room just made, to share before joining it.
    pub new_room: Option<&'a RoomCode>,
    pub error: Option<&'a str>,
    pub preview: Option<&'a Preview>,
    pub preview_texture: &'a mut Option<super::video::VideoTexture>,
    pub devices: &'a DeviceLists,
    pub host: &'a HostStatus,
}

fn picker(ui: &mut egui::Ui, label: &str, choices: &[Choice], value: &mut String) -> bool {
    let mut changed = false;
    egui::ComboBox::from_label(label)
        .selected_text(DeviceLists::label(choices, value).to_owned())
        .width(260.0)
        .show_ui(ui, |ui| {
            for choice in choices {
                changed |= ui
                    .selectable_value(value, choice.spec.clone(), &choice.label)
                    .changed();
            }
        });
    changed
}

fn level_meter(ui: &mut egui::Ui, dbfs: f32) {
    // -60 dBFS .. 0 dBFS mapped to the bar.
    let fraction = if dbfs.is_finite() {
        ((dbfs + 60.0) / 60.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let colour = if fraction > 0.9 {
        Color32::from_rgb(220, 80, 60)
    } else {
        Color32::from_rgb(70, 170, 90)
    };
    ui.add(
        egui::ProgressBar::new(fraction)
            .desired_width(320.0)
            .fill(colour)
            .text("Microphone level"),
    );
}

/// The lobby; returns what the person asked for.
pub fn lobby_ui(mut view: LobbyView<'_>, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    egui::CentralPanel::default().show(ui, |ui| {
        ui.heading("Confab");
        ui.label("Video calls straight from one computer to another.");
        ui.add_space(12.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| preview_ui(&mut view, &mut commands, ui));
            ui.add_space(24.0);
            ui.vertical(|ui| join_ui(&mut view, &mut commands, ui));
        });
    });
    commands
}

fn preview_ui(view: &mut LobbyView<'_>, commands: &mut Vec<UiCommand>, ui: &mut egui::Ui) {
    let size = egui::vec2(360.0, 202.5);
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    ui.painter().rect_filled(rect, 8.0, Color32::from_gray(24));
    if let Some(preview) = view.preview {
        preview
            .camera
            .upload(ui.ctx(), "preview", view.preview_texture);
        if let (Some(texture), Some(source)) =
            (&*view.preview_texture, preview.camera.source_size())
        {
            let r = fit_rect(rect, source);
            texture.paint(ui.painter(), r);
        } else {
            let message = preview
                .camera_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| {
                    if view.settings.camera == "none" {
                        "Camera off".into()
                    } else {
                        "Starting camera…".into()
                    }
                });
            ui.painter().text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                message,
                egui::FontId::proportional(14.0),
                Color32::GRAY,
            );
        }
        ui.add_space(6.0);
        if view.settings.mic == "none" {
            ui.label("Microphone off");
        } else {
            level_meter(ui, preview.level_dbfs());
        }
        if let Some(e) = preview
            .mic_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            ui.colored_label(Color32::from_rgb(220, 120, 60), e);
        }
    }
    ui.add_space(10.0);
    let lists = view.devices;
    if !lists.loaded {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Looking for cameras and microphones…");
        });
    }
    let mut devices_changed = false;
    devices_changed |= picker(ui, "Camera", &lists.cameras, &mut view.settings.camera);
    devices_changed |= picker(ui, "Microphone", &lists.mics, &mut view.settings.mic);
    picker(ui, "Speaker", &lists.speakers, &mut view.settings.speaker);
    ui.checkbox(&mut view.settings.echo_cancellation, "Echo cancellation");
    ui.checkbox(&mut view.settings.noise_suppression, "Noise suppression");
    if devices_changed {
        commands.push(UiCommand::DevicesChanged);
    }
}

fn join_ui(view: &mut LobbyView<'_>, commands: &mut Vec<UiCommand>, ui: &mut egui::Ui) {
    ui.label("Your name");
    ui.add(
        egui::TextEdit::singleline(&mut view.settings.name)
            .hint_text("How others see you")
            .desired_width(320.0),
    );
    ui.add_space(10.0);
    ui.label("Room code or link");
    let field = ui.add(
        egui::TextEdit::singleline(view.room_input)
            .hint_text("kfq-wmzt-pxd")
            .desired_width(320.0),
    );
    let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    ui.horizontal(|ui| {
        let join = ui
            .add_enabled(
                !view.room_input.trim().is_empty(),
                egui::Button::new("Join"),
            )
            .on_hover_text("Join the room (Enter)");
        if join.clicked() || enter {
            commands.push(match RoomCode::parse(view.room_input) {
                Ok(room) => UiCommand::StartCall(Some(room)),
                Err(e) => UiCommand::ShowError(e.to_string()),
            });
        }
        if ui
            .button("New room")
            .on_hover_text("Make a new room and share its code")
            .clicked()
        {
            commands.push(UiCommand::NewRoom);
        }
    });
    if let Some(room) = view.new_room {
        ui.add_space(6.0);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.label(RichText::new(room.to_string()).monospace().size(22.0));
            ui.horizontal(|ui| {
                if ui.button("Copy code").clicked() {
                    ui.ctx().copy_text(room.to_string());
                }
                let link = match (&view.settings.server_mode, view.host) {
                    (ServerMode::Host, HostStatus::Running { lan_http, .. }) => {
                        format!("{lan_http}{room}")
                    }
                    _ => {
                        let base = view
                            .settings
                            .server_url
                            .trim()
                            // A pinned address (`#sha256=...`): the browser cannot use the pin.
                            .split('#')
                            .next()
                            .unwrap_or_default()
                            .trim_end_matches("/ws")
                            .trim_end_matches('/');
                        format!(
                            "{}/join/{room}",
                            base.replacen("wss://", "https://", 1)
                                .replacen("ws://", "http://", 1)
                        )
                    }
                };
                if ui.button("Copy link").on_hover_text(&link).clicked() {
                    ui.ctx().copy_text(link);
                }
                if ui
                    .button("Start")
                    .on_hover_text("Enter the new room and wait for the others")
                    .clicked()
                {
                    commands.push(UiCommand::StartCall(Some(room.clone())));
                }
            });
        });
    }
    if let Some(error) = view.error {
        ui.add_space(6.0);
        ui.colored_label(Color32::from_rgb(230, 90, 70), error);
    }
    ui.add_space(16.0);
    ui.separator();
    ui.label(RichText::new("Server").strong());
    let before = view.settings.server_mode;
    ui.radio_value(
        &mut view.settings.server_mode,
        ServerMode::Host,
        "Host on this computer",
    );
    if view.settings.server_mode == ServerMode::Host {
        match view.host {
            HostStatus::Running { lan_url, .. } => {
                ui.horizontal(|ui| {
                    ui.label("Others on your network use:");
                    let shown = lan_url.split('#').next().unwrap_or(lan_url);
                    ui.label(RichText::new(shown).monospace())
                        .on_hover_text(lan_url);
                    if ui
                        .small_button("Copy")
                        .on_hover_text("The address with this server's certificate fingerprint, so their Confab checks it is really yours")
                        .clicked()
                    {
                        ui.ctx().copy_text(lan_url.clone());
                    }
                });
                ui.label(RichText::new(LAN_BROWSER_NOTE).small().weak());
            }
            HostStatus::Starting => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Starting the local server…");
                });
            }
            HostStatus::Failed(e) => {
                ui.colored_label(
                    Color32::from_rgb(230, 90, 70),
                    format!("The local server could not start: {e}"),
                );
            }
            HostStatus::Off => {
                ui.label(
                    RichText::new(
                        "The server starts when you make or start a room; nothing listens before.",
                    )
                    .small()
                    .weak(),
                );
            }
        }
    }
    ui.radio_value(
        &mut view.settings.server_mode,
        ServerMode::Remote,
        "Use a server",
    );
    if view.settings.server_mode == ServerMode::Remote {
        ui.add(
            egui::TextEdit::singleline(&mut view.settings.server_url)
                .hint_text("wss://confab.example.org:8443")
                .desired_width(320.0),
        );
    }
    if before != view.settings.server_mode {
        commands.push(UiCommand::ServerModeChanged);
    }
    egui::CollapsingHeader::new("Network (STUN / TURN)").show(ui, |ui| {
        ui.label("STUN servers, one per line");
        ui.add(
            egui::TextEdit::multiline(&mut view.settings.stun)
                .hint_text("stun:stun.example.org:3478")
                .desired_rows(2)
                .desired_width(320.0),
        );
        ui.label("TURN server");
        ui.add(
            egui::TextEdit::singleline(&mut view.settings.turn)
                .hint_text("turn:turn.example.org:3478?transport=udp")
                .desired_width(320.0),
        );
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut view.settings.turn_user)
                    .hint_text("user")
                    .desired_width(150.0),
            );
            ui.add(
                egui::TextEdit::singleline(&mut view.settings.turn_pass)
                    .hint_text("password")
                    .password(true)
                    .desired_width(150.0),
            );
        });
        ui.checkbox(
            &mut view.settings.relay_only,
            "Only connect through the TURN relay",
        );
    });
}
