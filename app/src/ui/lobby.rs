//! The lobby: a large live preview with the microphone and camera toggles and the mic level on
//! it, the device menus under it; your name, the room code or link (with paste) and one primary
//! action (Join, or New room); the server and network choices folded into "Advanced".

use confab_protocol::RoomCode;
use egui::{Align, Color32, Layout, RichText, Vec2};

use super::command::UiCommand;
use super::devices::{Choice, DeviceLists};
use super::hosted::HostStatus;
use super::preview::Preview;
use super::settings::{ServerMode, Settings};
use super::theme::{self, icon, MaterialIcon, Problem};
use super::video::fit_rect;
use crate::link::{looks_like_link, JoinLink};

/// What a browser can do with the hosted server's link, said plainly.
const LAN_BROWSER_NOTE: &str = "A browser on your network can open the link, but it first warns \
     that the certificate is self-signed (it was made by this computer): they must choose to \
     go on. After that the browser can send and receive camera, microphone and chat. Another \
     Confab needs no warning: the copied address carries the certificate's fingerprint.";

/// Below this width the preview and the form stack instead of standing side by side.
const TWO_COLUMNS_MIN_WIDTH: f32 = 560.0;

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

/// A device menu: an icon, then the choices (their labels elided to the width left).
fn picker(
    ui: &mut egui::Ui,
    glyph: MaterialIcon,
    name: &str,
    choices: &[Choice],
    value: &mut String,
) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        ui.label(glyph.rich_text().size(18.0)).on_hover_text(name);
        let width = (ui.available_width() - ui.spacing().icon_width - 8.0).max(60.0);
        let combo = egui::ComboBox::from_id_salt(name)
            .selected_text(DeviceLists::label(choices, value).to_owned())
            .width(width)
            .truncate()
            .show_ui(ui, |ui| {
                for choice in choices {
                    changed |= ui
                        .selectable_value(value, choice.spec.clone(), &choice.label)
                        .changed();
                }
            });
        let _ = combo.response.on_hover_text(name).accessible_name(name);
    });
    changed
}

/// The microphone level as five bars in a dark pill at `at` (its left-centre).
fn level_bars(ui: &egui::Ui, at: egui::Pos2, dbfs: f32) {
    // -60 dBFS .. 0 dBFS mapped onto the bars.
    let fraction = if dbfs.is_finite() {
        ((dbfs + 60.0) / 60.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pill = egui::Rect::from_min_size(at - Vec2::new(0.0, 14.0), Vec2::new(58.0, 28.0));
    let painter = ui.painter();
    painter.rect_filled(pill, 14.0, Color32::from_black_alpha(150));
    for i in 0..5 {
        let lit = fraction * 5.0 > i as f32 + 0.3;
        let h = 6.0 + 3.0 * i as f32;
        let x = pill.left() + 12.0 + i as f32 * 8.0;
        let bar =
            egui::Rect::from_center_size(egui::pos2(x + 2.0, pill.center().y), Vec2::new(4.0, h));
        let colour = if lit {
            theme::GOOD
        } else {
            Color32::from_white_alpha(60)
        };
        painter.rect_filled(bar, 2.0, colour);
    }
}

/// The lobby; returns what the person asked for.
pub fn lobby_ui(mut view: LobbyView<'_>, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let frame =
        egui::Frame::central_panel(ui.style()).inner_margin(egui::Margin::symmetric(24, 16));
    egui::CentralPanel::default().frame(frame).show(ui, |ui| {
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.heading(RichText::new("Confab").strong());
                ui.label(
                    RichText::new("Video calls straight from one computer to another.").weak(),
                );
                ui.add_space(8.0);
                let width = ui.available_width();
                if width >= TWO_COLUMNS_MIN_WIDTH {
                    let gap = 24.0;
                    let preview_w = ((width - gap) * 0.58).min(720.0);
                    let form_w = (width - gap - preview_w).min(400.0);
                    ui.horizontal_top(|ui| {
                        column(ui, preview_w, |ui| preview_ui(&mut view, &mut commands, ui));
                        ui.add_space(gap);
                        column(ui, form_w, |ui| join_ui(&mut view, &mut commands, ui));
                    });
                } else {
                    preview_ui(&mut view, &mut commands, ui);
                    ui.add_space(12.0);
                    join_ui(&mut view, &mut commands, ui);
                }
            });
    });
    commands
}

/// A top-down column exactly `width` wide.
fn column(ui: &mut egui::Ui, width: f32, content: impl FnOnce(&mut egui::Ui)) {
    ui.allocate_ui_with_layout(Vec2::new(width, 0.0), Layout::top_down(Align::Min), |ui| {
        ui.set_width(width);
        content(ui);
    });
}

/// What the preview box says when it has no picture, and the details for the tooltip.
fn preview_message(view: &LobbyView<'_>, preview: Option<&Preview>) -> (String, Option<String>) {
    if !view.settings.camera_on {
        return ("Your camera is off".into(), None);
    }
    if view.settings.camera == "none" {
        return ("No camera chosen".into(), None);
    }
    let error = preview.and_then(|p| {
        p.camera_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    });
    match error {
        Some(raw) => {
            let (short, details) = theme::humane_error(Problem::Camera, &raw);
            (short, Some(details))
        }
        None => ("Starting camera…".into(), None),
    }
}

fn preview_ui(view: &mut LobbyView<'_>, commands: &mut Vec<UiCommand>, ui: &mut egui::Ui) {
    let width = ui.available_width();
    let size = Vec2::new(width, width * 9.0 / 16.0);
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    ui.painter().rect_filled(rect, 12.0, Color32::from_gray(14));
    let preview = view.preview;
    let mut showing = false;
    if let Some(preview) = preview.filter(|_| view.settings.camera_on) {
        preview
            .camera
            .upload(ui.ctx(), "preview", view.preview_texture);
        if let (Some(texture), Some(source)) =
            (&*view.preview_texture, preview.camera.source_size())
        {
            texture.paint(ui.painter(), fit_rect(rect, source));
            showing = true;
        }
    }
    let controls_h = 64.0;
    if !showing {
        let (message, details) = preview_message(view, preview);
        // The message stays inside the box above the toggles: wrapped, and clipped to it.
        let inner = egui::Rect::from_min_max(
            rect.min + Vec2::splat(16.0),
            egui::pos2(rect.right() - 16.0, rect.bottom() - controls_h),
        );
        ui.scope_builder(
            egui::UiBuilder::new()
                .max_rect(inner)
                .layout(Layout::centered_and_justified(egui::Direction::TopDown)),
            |ui| {
                ui.set_clip_rect(inner.intersect(ui.clip_rect()));
                ui.vertical_centered(|ui| {
                    let space = (inner.height() - 64.0).max(0.0) / 2.0;
                    ui.add_space(space);
                    ui.label(
                        icon::ICON_VIDEOCAM_OFF
                            .rich_text()
                            .size(28.0)
                            .color(Color32::GRAY),
                    );
                    let label = ui.add(
                        egui::Label::new(RichText::new(message).color(Color32::from_gray(200)))
                            .wrap(),
                    );
                    if let Some(details) = details {
                        label.on_hover_text(details);
                    }
                });
            },
        );
    }
    // The toggles and the mic level sit on the bottom edge of the picture.
    let bar = egui::Rect::from_min_max(
        egui::pos2(rect.left(), rect.bottom() - controls_h),
        rect.max,
    );
    if let Some(preview) = preview.filter(|_| view.settings.mic_on && view.settings.mic != "none") {
        level_bars(
            ui,
            egui::pos2(bar.left() + 12.0, bar.center().y),
            preview.level_dbfs(),
        );
    }
    ui.scope_builder(
        egui::UiBuilder::new()
            .max_rect(bar)
            .layout(Layout::left_to_right(Align::Center)),
        |ui| {
            let buttons_w = 44.0 * 2.0 + ui.spacing().item_spacing.x;
            ui.add_space(((bar.width() - buttons_w) / 2.0).max(0.0));
            let mic_on = view.settings.mic_on;
            let (glyph, name, fill) = if mic_on {
                (icon::ICON_MIC, "Turn microphone off", None)
            } else {
                (
                    icon::ICON_MIC_OFF,
                    "Turn microphone on",
                    Some(theme::DANGER),
                )
            };
            if theme::round_icon_button(ui, glyph, name, name, false, fill).clicked() {
                commands.push(UiCommand::ToggleLobbyMic);
            }
            let camera_on = view.settings.camera_on;
            let (glyph, name, fill) = if camera_on {
                (icon::ICON_VIDEOCAM, "Turn camera off", None)
            } else {
                (
                    icon::ICON_VIDEOCAM_OFF,
                    "Turn camera on",
                    Some(theme::DANGER),
                )
            };
            if theme::round_icon_button(ui, glyph, name, name, false, fill).clicked() {
                commands.push(UiCommand::ToggleLobbyCamera);
            }
        },
    );
    ui.add_space(4.0);
    if let Some(raw) = preview.and_then(|p| {
        p.mic_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }) {
        let (short, details) = theme::humane_error(Problem::Mic, &raw);
        notice_ui(ui, theme::WARN, &short, Some(&details));
    }
    let lists = view.devices;
    if !lists.loaded {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Looking for cameras and microphones…");
        });
    }
    let mut devices_changed = false;
    devices_changed |= picker(
        ui,
        icon::ICON_MIC,
        "Microphone",
        &lists.mics,
        &mut view.settings.mic,
    );
    devices_changed |= picker(
        ui,
        icon::ICON_VIDEOCAM,
        "Camera",
        &lists.cameras,
        &mut view.settings.camera,
    );
    picker(
        ui,
        icon::ICON_VOLUME_UP,
        "Speaker",
        &lists.speakers,
        &mut view.settings.speaker,
    );
    if devices_changed {
        commands.push(UiCommand::DevicesChanged);
    }
}

/// A coloured line with an icon: a short sentence, the details on hover.
pub fn notice_ui(ui: &mut egui::Ui, colour: Color32, text: &str, details: Option<&str>) {
    egui::Frame::new()
        .fill(colour.gamma_multiply(0.15))
        .corner_radius(theme::ROUNDING)
        .inner_margin(egui::Margin::symmetric(10, 6))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_top(|ui| {
                ui.label(icon::ICON_WARNING.rich_text().color(colour));
                let label = ui.add(egui::Label::new(RichText::new(text).color(colour)).wrap());
                if let Some(details) = details.filter(|d| *d != text) {
                    label.on_hover_text(details);
                }
            });
        });
}

/// What the room field asks for: a room, a link, or (empty) a new room.
fn room_command(input: &str) -> UiCommand {
    let input = input.trim();
    if looks_like_link(input) {
        return match JoinLink::parse(input) {
            Ok(link) => UiCommand::OpenLink(link),
            Err(e) => UiCommand::ShowError(e.to_string()),
        };
    }
    // A web link to a room (https://host/join/CODE): its code.
    let code = input.rsplit_once("/join/").map_or(input, |(_, code)| {
        code.split(['?', '#', '/']).next().unwrap_or(code)
    });
    match RoomCode::parse(code) {
        Ok(room) => UiCommand::StartCall(Some(room)),
        Err(e) => UiCommand::ShowError(e.to_string()),
    }
}

fn join_ui(view: &mut LobbyView<'_>, commands: &mut Vec<UiCommand>, ui: &mut egui::Ui) {
    let field_w = ui.available_width();
    let name_label = ui.label("Your name");
    ui.add(
        egui::TextEdit::singleline(&mut view.settings.name)
            .hint_text("How others see you")
            .desired_width(field_w),
    )
    .labelled_by(name_label.id);
    ui.add_space(4.0);
    let room_label = ui.label("Room code or link");
    let mut enter = false;
    ui.horizontal(|ui| {
        let paste_w = 36.0;
        let field = ui
            .add(
                egui::TextEdit::singleline(view.room_input)
                    .hint_text("kfq-wmzt-pxd")
                    .desired_width(ui.available_width() - paste_w - ui.spacing().item_spacing.x),
            )
            .labelled_by(room_label.id);
        enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let paste = ui
            .add(
                egui::Button::new(icon::ICON_CONTENT_PASTE.rich_text().size(18.0))
                    .min_size(Vec2::splat(paste_w - 8.0)),
            )
            .on_hover_text("Paste a room code or link")
            .accessible_name("Paste");
        if paste.clicked() {
            // The paste goes to the focused field.
            field.request_focus();
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::RequestPaste);
        }
    });
    ui.add_space(8.0);
    let typed = !view.room_input.trim().is_empty();
    let fresh = view
        .new_room
        .filter(|room| view.room_input.trim() == room.as_str());
    // One highlighted action at a time: Start a room just made, Join a typed one, or make one.
    ui.horizontal_wrapped(|ui| {
        let button = |text, primary: bool| {
            if primary {
                theme::primary_button(text)
            } else {
                egui::Button::new(text).min_size(Vec2::new(96.0, 40.0))
            }
        };
        if let Some(room) = fresh {
            let start = ui
                .add(button("Start", true))
                .on_hover_text("Enter the new room and wait for the others");
            if start.clicked() || enter {
                commands.push(UiCommand::StartCall(Some(room.clone())));
            }
        } else {
            let join = ui
                .add_enabled(typed, button("Join", typed))
                .on_hover_text("Join the room (Enter)");
            if join.clicked() || (enter && typed) {
                commands.push(room_command(view.room_input));
            }
        }
        if ui
            .add(button("New room", !typed))
            .on_hover_text("Make a new room and share its code")
            .clicked()
        {
            commands.push(UiCommand::NewRoom);
        }
    });
    if let Some(room) = fresh {
        new_room_ui(view, room, ui);
    }
    if let Some(error) = view.error {
        ui.add_space(4.0);
        let (short, details) = theme::humane_error(Problem::Other, error);
        notice_ui(ui, theme::DANGER, &short, Some(&details));
    }
    host_status_ui(view, ui);
    ui.add_space(8.0);
    egui::CollapsingHeader::new("Advanced")
        .default_open(false)
        .show(ui, |ui| advanced_ui(view, commands, ui));
}

/// The code of a room just made, to copy as a code or a link.
fn new_room_ui(view: &LobbyView<'_>, room: &RoomCode, ui: &mut egui::Ui) {
    egui::Frame::group(ui.style())
        .corner_radius(theme::ROUNDING)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new("Share this room").small().weak());
            ui.label(RichText::new(room.to_string()).monospace().size(20.0));
            ui.horizontal_wrapped(|ui| {
                if ui.button("Copy code").clicked() {
                    ui.ctx().copy_text(room.to_string());
                }
                let link = share_link(view, room);
                if ui.button("Copy link").on_hover_text(&link).clicked() {
                    ui.ctx().copy_text(link);
                }
            });
        });
}

/// The web address of `room` on the server in use.
fn share_link(view: &LobbyView<'_>, room: &RoomCode) -> String {
    match (&view.settings.server_mode, view.host) {
        (ServerMode::Host, HostStatus::Running { lan_http, .. }) => format!("{lan_http}{room}"),
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
    }
}

/// The hosted server's state, when this computer hosts.
fn host_status_ui(view: &LobbyView<'_>, ui: &mut egui::Ui) {
    if view.settings.server_mode != ServerMode::Host {
        return;
    }
    match view.host {
        HostStatus::Running { lan_url, .. } => {
            ui.label(RichText::new("Others on your network use:").small());
            ui.horizontal(|ui| {
                let shown = lan_url.split('#').next().unwrap_or(lan_url);
                let copy_w = 56.0;
                ui.add_sized(
                    Vec2::new(ui.available_width() - copy_w, 20.0),
                    egui::Label::new(RichText::new(shown).monospace().small()).truncate(),
                )
                .on_hover_text(lan_url);
                if ui
                    .small_button("Copy")
                    .on_hover_text("The address with this server's certificate fingerprint, so their Confab checks it is really yours")
                    .clicked()
                {
                    ui.ctx().copy_text(lan_url.clone());
                }
            });
        }
        HostStatus::Starting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Starting the local server…");
            });
        }
        HostStatus::Failed(e) => {
            notice_ui(
                ui,
                theme::DANGER,
                "The local server could not start.",
                Some(e),
            );
        }
        HostStatus::Off => {}
    }
}

/// Where the server is, sound processing, and STUN/TURN.
fn advanced_ui(view: &mut LobbyView<'_>, commands: &mut Vec<UiCommand>, ui: &mut egui::Ui) {
    let width = ui.available_width();
    ui.label(RichText::new("Server").strong());
    let before = view.settings.server_mode;
    ui.radio_value(
        &mut view.settings.server_mode,
        ServerMode::Host,
        "Host on this computer",
    );
    if view.settings.server_mode == ServerMode::Host {
        let note = match view.host {
            HostStatus::Running { .. } => LAN_BROWSER_NOTE,
            _ => "The server starts when you make or start a room; nothing listens before.",
        };
        ui.add(egui::Label::new(RichText::new(note).small().weak()).wrap());
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
                .desired_width(width),
        )
        .accessible_name("Server address");
    }
    if before != view.settings.server_mode {
        commands.push(UiCommand::ServerModeChanged);
    }
    ui.add_space(6.0);
    ui.label(RichText::new("Sound").strong());
    ui.checkbox(&mut view.settings.echo_cancellation, "Echo cancellation");
    ui.checkbox(&mut view.settings.noise_suppression, "Noise suppression");
    ui.add_space(6.0);
    ui.label(RichText::new("Network (STUN / TURN)").strong());
    let stun = ui.label("STUN servers, one per line");
    ui.add(
        egui::TextEdit::multiline(&mut view.settings.stun)
            .hint_text("stun:stun.example.org:3478")
            .desired_rows(2)
            .desired_width(width),
    )
    .labelled_by(stun.id);
    let turn = ui.label("TURN server");
    ui.add(
        egui::TextEdit::singleline(&mut view.settings.turn)
            .hint_text("turn:turn.example.org:3478?transport=udp")
            .desired_width(width),
    )
    .labelled_by(turn.id);
    ui.horizontal(|ui| {
        let half = (ui.available_width() - ui.spacing().item_spacing.x) / 2.0;
        ui.add(
            egui::TextEdit::singleline(&mut view.settings.turn_user)
                .hint_text("user")
                .desired_width(half),
        )
        .accessible_name("TURN user");
        ui.add(
            egui::TextEdit::singleline(&mut view.settings.turn_pass)
                .hint_text("password")
                .password(true)
                .desired_width(half),
        )
        .accessible_name("TURN password");
    });
    ui.checkbox(
        &mut view.settings.relay_only,
        "Only connect through the TURN relay",
    );
}
