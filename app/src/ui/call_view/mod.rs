//! The call window, one file per region: the state of the call on top (`top_bar`), the other
//! person large and yourself small (`stage`), the toolbar with shortcuts at the bottom
//! (`toolbar`), chat and file transfers on the side (`chat`), the statistics overlay (`stats`)
//! and the menu of screens to share (`share`). Views read the call and return `UiCommand`s.
//! Shortcuts: letters for the toolbar, F11, Ctrl+W, and Space held to talk while muted.

mod chat;
mod share;
mod stage;
mod stats;
mod toolbar;
mod top_bar;

use egui::{Color32, Key};

use super::call::CallUi;
use super::command::UiCommand;
use super::devices::Choice;
use super::theme::DANGER as RED;
pub use stage::LayoutReport;
pub use toolbar::DeviceMenus;

/// What the call window shows this frame.
pub struct CallView<'a> {
    /// `None` while the call is on its way (devices opening, the hosted server starting).
    pub call: Option<&'a mut CallUi>,
    /// What the call is waiting for, while `call` is `None`.
    pub opening: &'a str,
    pub fullscreen: bool,
    pub share_menu: bool,
    /// What can be shared.
    pub screens: &'a [Choice],
    /// The device menus of the microphone and camera buttons.
    pub devices: DeviceMenus<'a>,
    pub layout: &'a mut LayoutReport,
}

/// Keyboard shortcuts (shown in the tooltips too).
fn shortcuts(ctx: &egui::Context, call: &CallUi, fullscreen: bool) -> Vec<UiCommand> {
    // Letters only act when no text field has the keyboard (chat input).
    let typing = ctx.egui_wants_keyboard_input();
    ctx.input_mut(|i| {
        let mut commands = Vec::new();
        let mut letter = |i: &mut egui::InputState, key, command| {
            if !typing && i.consume_key(egui::Modifiers::NONE, key) {
                commands.push(command);
            }
        };
        letter(i, Key::M, UiCommand::ToggleMic);
        letter(i, Key::V, UiCommand::ToggleCamera);
        letter(i, Key::S, toolbar::share_command(call));
        letter(i, Key::C, UiCommand::ToggleChat);
        letter(i, Key::F, UiCommand::PickFile);
        letter(i, Key::I, UiCommand::ToggleStats);
        if i.consume_key(egui::Modifiers::NONE, Key::F11)
            || (fullscreen && i.key_pressed(Key::Escape))
        {
            commands.push(UiCommand::ToggleFullscreen);
        }
        if i.consume_key(egui::Modifiers::COMMAND, Key::W) {
            commands.push(UiCommand::Hangup);
        }
        // Push-to-talk: hold Space while muted.
        let space = !typing && i.key_down(Key::Space);
        if space && call.mic_muted && !call.talking {
            commands.push(UiCommand::PushToTalk(true));
        } else if !space && call.talking {
            commands.push(UiCommand::PushToTalk(false));
        }
        commands
    })
}

/// The call window; returns what the person asked for.
pub fn call_ui(view: CallView<'_>, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let Some(call) = view.call else {
        return opening_ui(view.opening, ui);
    };
    let ctx = ui.ctx().clone();
    let mut commands = shortcuts(&ctx, call, view.fullscreen);
    settled(egui::Panel::top("call-top"), ui, |ui| {
        top_bar::top_bar_ui(call, ui)
    });
    settled(egui::Panel::bottom("call-toolbar"), ui, |ui| {
        commands.extend(toolbar::toolbar_ui(
            call,
            view.fullscreen,
            &view.devices,
            ui,
        ))
    });
    if call.show_chat {
        egui::Panel::right("call-chat")
            .default_size(300.0)
            .show(ui, |ui| commands.extend(chat::chat_ui(call, ui)));
    }
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE.fill(Color32::from_gray(12)))
        .show(ui, |ui| {
            commands.extend(stage::stage_ui(call, view.layout, ui))
        });
    if call.show_stats {
        commands.extend(stats::stats_ui(call, &ctx));
    }
    if view.share_menu {
        commands.extend(share::share_ui(view.screens, &ctx));
    }
    // Files dropped on the window are sent.
    ctx.input(|i| {
        commands.extend(
            i.raw
                .dropped_files
                .iter()
                .map(|f| UiCommand::SendFile(f.path().to_path_buf())),
        )
    });
    commands
}

/// Shows a top or bottom panel, and draws the frame again whenever the panel's height changed.
/// egui sizes a panel from what it held the frame before, so the first frame of the call placed
/// the toolbar 36 px too low (half off a 720 px window) and it jumped into place a frame later:
/// a flicker, and a click aimed at that first frame missed the button (the hosted-server UI test
/// lost its "Hang up" now and then on a busy machine).
fn settled<R>(
    panel: egui::Panel,
    ui: &mut egui::Ui,
    add_contents: impl FnOnce(&mut egui::Ui) -> R,
) -> R {
    let inner = panel.show(ui, add_contents);
    let key = inner.response.id.with("settled-height");
    let height = inner.response.rect.height();
    let before = ui.ctx().data_mut(|d| {
        let before = d.get_temp::<f32>(key);
        d.insert_temp(key, height);
        before
    });
    if before != Some(height) {
        ui.ctx().request_discard("a call panel's height changed");
    }
    inner.inner
}

/// While the call is on its way (a camera can take seconds to open): a spinner, and a way out.
fn opening_ui(waiting_for: &str, ui: &mut egui::Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    egui::CentralPanel::default().show(ui, |ui| {
        ui.centered_and_justified(|ui| {
            ui.vertical_centered(|ui| {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(waiting_for);
                });
                if ui.button("Cancel").clicked() {
                    commands.push(UiCommand::CancelStart);
                }
            });
        });
    });
    commands
}
