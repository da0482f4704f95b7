//! The desktop app (egui/eframe): a lobby (preview, device pickers, room code, server choice) and
//! the call window (remote video large, self view small, toolbar with shortcuts, chat, files,
//! statistics). Views return `UiCommand`s that `ConfabApp` carries out; the UI never blocks and
//! never owns the call: it sends `SessionCommand`s and drains what the session reported; media
//! threads hand it frames through `VideoSlot`s; slow work (devices, the hosted server) reports back.

mod app;
mod call;
mod call_view;
mod command;
mod devices;
mod gpu_video;
mod hooks;
mod hosted;
mod lobby;
mod paint_meter;
mod preview;
mod settings;
mod theme;
mod video;

#[cfg(test)]
// A test is its own entry point: it may wait on the runtime it drives.
#[allow(clippy::disallowed_methods)]
mod tests;
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod view_tests;

pub use app::ConfabApp;

use crate::call_config::CallConfig;
use crate::instance::Inbox;
use crate::link::JoinLink;

/// OpenGL (glow) on Linux, where it costs a fifth less than wgpu on software GL; wgpu elsewhere
/// (DirectX on Windows, Metal on macOS). `CONFAB_RENDERER=glow|wgpu` overrides.
fn renderer() -> eframe::Renderer {
    match std::env::var("CONFAB_RENDERER").as_deref() {
        Ok("glow") => eframe::Renderer::Glow,
        Ok("wgpu") => eframe::Renderer::Wgpu,
        _ if cfg!(target_os = "linux") => eframe::Renderer::Glow,
        _ => eframe::Renderer::Wgpu,
    }
}

/// Opens the app window (straight into `start`'s call or `link`'s room when there is one; later
/// links arrive through `inbox`); returns when it is closed.
pub fn run(
    start: Option<CallConfig>,
    link: Option<JoinLink>,
    inbox: Option<Inbox>,
) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Confab")
            .with_app_id("confab")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 420.0])
            .with_icon(app::icon()),
        renderer: renderer(),
        ..Default::default()
    };
    eframe::run_native(
        "Confab",
        options,
        Box::new(move |cc| {
            gpu_video::install(cc);
            let mut app = ConfabApp::new(cc.egui_ctx.clone(), None, start);
            if let Some(inbox) = &inbox {
                let ctx = cc.egui_ctx.clone();
                let _ = inbox.waker.set(Box::new(move || ctx.request_repaint()));
            }
            app.links = inbox;
            if let Some(link) = link {
                app.open_link(link);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
