//! `ConfabApp`: owns the settings, the async runtime, the hosted signaling server, the lobby
//! preview and the current call; shows the lobby or the call view, and is the one place that
//! carries out the `UiCommand`s they return. Nothing here waits: slow work reports back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab_protocol::RoomCode;

use super::call::{CallState, CallUi, DeviceKind, OpenForSwitch};
use super::call_view::{self, CallView, LayoutReport};
use super::command::UiCommand;
use super::devices::DeviceLists;
use super::hooks::Hooks;
use super::hosted::HostState;
use super::lobby::{self, LobbyView};
use super::paint_meter::PaintMeter;
use super::preview::{CallEnded, DevicesInUse, Preview};
use super::settings::{ServerMode, Settings};
use super::theme::{humane_error, Problem};
use super::video::{SelfView, VideoSlot, SELF_VIEW_WAIT};
use crate::call_config::{CallConfig, VideoChoice};
use crate::instance::Inbox;
use crate::link::JoinLink;
use confab_devices::{AudioSink, VideoSpec};
use confab_engine::session::{MediaIo, SessionCommand, SessionConfig};

/// Devices being opened for a call (on a thread, since a camera can take seconds).
pub struct Starting {
    pub rx: std::sync::mpsc::Receiver<(MediaIo, Vec<String>)>,
    /// The call as asked for, and as the engine will place it.
    pub call: CallConfig,
    pub config: SessionConfig,
    pub remote: Arc<VideoSlot>,
    pub local: Arc<VideoSlot>,
}

pub struct ConfabApp {
    pub settings: Settings,
    config_dir: Option<PathBuf>,
    pub runtime: tokio::runtime::Runtime,
    hooks: Hooks,
    pub devices: Arc<Mutex<DeviceLists>>,
    pub host: HostState,
    pub room_input: String,
    pub new_room: Option<RoomCode>,
    pub error: Option<String>,
    pub preview: Option<Preview>,
    pub preview_texture: Option<super::video::VideoTexture>,
    /// The lobby preview was stopped because the window is hidden; it starts again when the
    /// window shows.
    preview_paused: bool,
    /// A call asked for while the hosted server starts: it starts when the server is up.
    pub waiting_for_server: Option<CallConfig>,
    pub starting: Option<Starting>,
    pub call: Option<CallUi>,
    pub file_pick: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
    pub share_menu: bool,
    pub fullscreen: bool,
    layout: LayoutReport,
    pub ctx: egui::Context,
    /// Links handed over by later launches (`confab confab://join/...`).
    pub links: Option<Inbox>,
    /// A link that came during a call: joined once the person agrees to leave the call.
    pub pending_link: Option<JoinLink>,
    /// Calls hung up whose sessions may still be ending: whoever opens the devices next (the
    /// next call, the lobby preview) waits for them to let go of the devices and their seat.
    ending_calls: DevicesInUse,
    /// The same calls' ends, waited for (briefly) before the app exits.
    calls_to_end: Vec<CallEnded>,
    /// The lobby's toggles for the call being started from it: (muted, camera off).
    lobby_toggles: Option<(bool, bool)>,
    /// The video the current call sends (a camera chosen during it opens at this size).
    call_video: VideoChoice,
    paints: PaintMeter,
}

/// The window icon (also used by the installers, from assets/).
pub fn icon() -> egui::IconData {
    let png = include_bytes!("../../../assets/confab.png");
    eframe::icon_data::from_png_bytes(png).unwrap_or_default()
}

impl ConfabApp {
    /// `config_dir`: where settings live (the OS config folder when `None`); `start`: a call to
    /// start at once (`confab join ROOM` without `--headless`).
    pub fn new(ctx: egui::Context, config_dir: Option<PathBuf>, start: Option<CallConfig>) -> Self {
        Self::with_hooks(ctx, config_dir, start, Hooks::default())
    }

    /// Like `new`, opening cameras and starting the hosted server through `hooks`.
    pub fn with_hooks(
        ctx: egui::Context,
        config_dir: Option<PathBuf>,
        start: Option<CallConfig>,
        hooks: Hooks,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("confab-net")
            .enable_all()
            .build()
            .expect("invariant: a tokio runtime can start (only fails without threads)");
        super::theme::install(&ctx);
        let settings = Settings::load(config_dir.as_deref());
        let devices = DeviceLists::gather_in_background(ctx.clone());
        let mut app = Self {
            room_input: settings.last_room.clone(),
            settings,
            config_dir,
            runtime,
            hooks,
            devices,
            host: HostState::Off,
            new_room: None,
            error: None,
            preview: None,
            preview_paused: false,
            preview_texture: None,
            waiting_for_server: None,
            starting: None,
            call: None,
            file_pick: None,
            share_menu: false,
            fullscreen: false,
            layout: LayoutReport::from_env(),
            ctx,
            links: None,
            pending_link: None,
            ending_calls: DevicesInUse::default(),
            calls_to_end: Vec::new(),
            lobby_toggles: None,
            paints: PaintMeter::new(),
            call_video: VideoChoice::default(),
        };
        match start {
            Some(config) => {
                let config = app.adopt(config);
                app.start_call(config);
            }
            // Nothing listens until the person hosts a call (`ensure_hosted`).
            None => app.restart_preview(),
        }
        app
    }

    /// Makes a call from the command line the lobby's choice too (so the lobby shows it after
    /// the call), and fills what the command line left open from the settings.
    fn adopt(&mut self, mut config: CallConfig) -> CallConfig {
        if let Some(server) = &config.server_url {
            self.settings.server_mode = ServerMode::Remote;
            self.settings.server_url = server.clone();
        }
        self.settings.camera = config.camera.clone();
        self.settings.mic = config.mic.clone();
        self.settings.speaker = config.speaker.clone();
        match &config.name {
            Some(name) => self.settings.name = name.clone(),
            None => config.name = Some(self.settings.display_name()),
        }
        if config.receive_dir.is_none() {
            config.receive_dir = self.settings.receive_dir();
        }
        config
    }

    pub fn save_settings(&self) {
        if let Err(err) = self.settings.save(self.config_dir.as_deref()) {
            tracing::warn!(%err, "cannot save settings");
        }
    }

    /// Starts the in-app signaling server when the person hosts a call (makes or starts a room
    /// with "Host on this computer"), never before: on the runtime, and the window shows
    /// "starting" until it reports back.
    pub fn ensure_hosted(&mut self) {
        if self.settings.server_mode != ServerMode::Host || self.host.is_wanted_already() {
            return;
        }
        self.host = HostState::start(
            self.runtime.handle(),
            &self.hooks.start_server,
            self.settings.host_port,
            self.config_dir.clone(),
            self.ctx.clone(),
        );
    }

    /// Starts the lobby preview; its threads first wait for the previous preview, and any call
    /// that is ending, to let go of the devices.
    pub fn restart_preview(&mut self) {
        let previous = self.devices_in_use();
        let off = "none".to_owned();
        let camera = if self.settings.camera_on {
            &self.settings.camera
        } else {
            &off
        };
        let mic = if self.settings.mic_on {
            &self.settings.mic
        } else {
            &off
        };
        self.preview = Some(Preview::start(
            &self.ctx,
            camera,
            mic,
            &self.hooks.open_camera,
            &self.hooks.open_mic,
            previous,
        ));
    }

    fn server_url(&self, config: &CallConfig) -> Result<String, String> {
        match config.server_url.as_deref().map(str::trim) {
            None => self.host.ws_url(),
            Some("") => {
                Err("enter a server address (wss://...) or choose “Host on this computer”".into())
            }
            Some(url) => Ok(url.to_owned()),
        }
    }

    /// Starts `config`'s call: opens the devices on a thread (after the preview lets go of
    /// them), then starts the session (see `poll`).
    pub fn start_call(&mut self, config: CallConfig) {
        if config.server_url.is_none() {
            self.ensure_hosted();
        }
        if config.server_url.is_none() && matches!(self.host, HostState::Starting(_)) {
            self.error = None;
            self.waiting_for_server = Some(config);
            return;
        }
        let server_url = match self.server_url(&config) {
            Ok(url) => url,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.error = None;
        if let Some(room) = &config.room {
            self.settings.last_room = room.to_string();
        }
        self.save_settings();
        // The preview, or a call that is ending, holds the devices: the device thread waits for
        // them to let go.
        let previous = self.devices_in_use();
        let remote = VideoSlot::new(Some(self.ctx.clone()));
        let local = VideoSlot::waiting(Some(self.ctx.clone()), SELF_VIEW_WAIT);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (ctx, local_slot, remote_slot) = (self.ctx.clone(), local.clone(), remote.clone());
        let open_camera = self.hooks.open_camera.clone();
        let open_mic = self.hooks.open_mic.clone();
        let open_speaker = self.hooks.open_speaker.clone();
        let session = config.session_config(server_url);
        let call = config.clone();
        let spawned = std::thread::Builder::new()
            .name("open-devices".into())
            .spawn(move || {
                previous.wait();
                let mut problems = Vec::new();
                let video = config.video;
                let camera = match open_camera(
                    &VideoSpec::parse(&config.camera),
                    video.size.width,
                    video.size.height,
                    video.fps,
                ) {
                    Ok(c) => c.map(|c| {
                        Box::new(SelfView::new(c, local_slot))
                            as Box<dyn confab_devices::VideoSource>
                    }),
                    Err(e) => {
                        tracing::warn!(%e, "cannot open the camera");
                        let (short, _) = humane_error(Problem::Camera, &e.to_string());
                        problems.push(format!("{short} The call goes on without video."));
                        None
                    }
                };
                let mic = open_mic(&VideoSpec::parse(&config.mic)).unwrap_or_else(|e| {
                    tracing::warn!(%e, "cannot open the microphone");
                    let (short, _) = humane_error(Problem::Mic, &e.to_string());
                    problems.push(format!("{short} The call goes on without it."));
                    None
                });
                let speaker: Box<dyn AudioSink> =
                    open_speaker(&config.speaker).unwrap_or_else(|e| {
                        problems.push(format!("{e}; you will not hear the other person"));
                        Box::new(confab_devices::wav::NullSink)
                    });
                let screen = config.screen.as_deref().and_then(|spec| {
                    confab_devices::open_screen(spec, confab_devices::screen::DEFAULT_FPS)
                        .map_err(|e| problems.push(format!("cannot share the screen: {e}")))
                        .ok()
                });
                let io = MediaIo {
                    camera,
                    mic,
                    speaker: Some(speaker),
                    screen,
                    video_out: remote_slot,
                };
                // Nobody listens when the start was cancelled: the devices close here.
                let _ = tx.send((io, problems));
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.error = Some(format!("cannot open devices: {e}"));
            return;
        }
        self.starting = Some(Starting {
            rx,
            call,
            config: session,
            remote,
            local,
        });
    }

    /// A `confab://` link: its room now or, during a call, once the person agrees to leave it.
    pub fn open_link(&mut self, link: JoinLink) {
        let busy = self.call.as_ref().is_some_and(|c| !c.is_over())
            || self.starting.is_some()
            || self.waiting_for_server.is_some();
        self.ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        if busy {
            self.pending_link = Some(link);
        } else {
            self.join_link(link);
        }
    }

    fn join_link(&mut self, link: JoinLink) {
        self.pending_link = None;
        self.retire_call();
        let mut config = self.settings.call_config(Some(link.room.clone()));
        if link.server.is_some() {
            config.server_url = link.server;
        }
        let config = self.adopt(config);
        self.room_input = link.room.to_string();
        self.ensure_hosted();
        self.start_call(config);
    }

    /// Asks whether to leave the call for the link's room.
    fn pending_link_ui(&mut self, ui: &mut egui::Ui) {
        let Some(link) = &self.pending_link else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("pending-link")).show(ui.ctx(), |ui| {
            ui.label(format!(
                "Leave this call and join room {}?",
                link.room.as_str()
            ));
            ui.horizontal(|ui| {
                if ui.button("Join").clicked() {
                    answer = Some(true);
                }
                if ui.button("Stay").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => {
                let link = self.pending_link.take().expect("invariant: checked above");
                if let Some(call) = &mut self.call {
                    call.hang_up();
                }
                self.starting = None;
                self.waiting_for_server = None;
                self.join_link(link);
            }
            Some(false) => self.pending_link = None,
            None => {}
        }
    }

    /// Takes the call away, hanging it up if it is still on; whoever opens the devices next
    /// waits for it to end.
    fn retire_call(&mut self) {
        if let Some(call) = self.call.take() {
            let (ending, ended) = call.end(self.runtime.handle(), CALL_END_WAIT);
            self.ending_calls = std::mem::take(&mut self.ending_calls).and(ending);
            self.calls_to_end.retain(|ended| !ended.is_set());
            self.calls_to_end.extend(ended);
        }
    }

    /// What the next one to open the devices waits for: the preview (stopped here) and the
    /// calls that are ending.
    fn devices_in_use(&mut self) -> DevicesInUse {
        self.preview_texture = None;
        let preview = self.preview.take().map(Preview::stop).unwrap_or_default();
        preview.and(std::mem::take(&mut self.ending_calls))
    }

    /// Leaves the call view for the lobby.
    pub fn back_to_lobby(&mut self) {
        self.retire_call();
        self.starting = None;
        self.waiting_for_server = None;
        self.lobby_toggles = None;
        self.share_menu = false;
        if self.fullscreen {
            self.fullscreen = false;
            self.ctx
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(false));
        }
        self.restart_preview();
    }

    /// Carries out what a view asked for.
    pub fn apply(&mut self, command: UiCommand) {
        match command {
            UiCommand::StartCall(room) => {
                let config = self.settings.call_config(room);
                self.lobby_toggles = Some((!self.settings.mic_on, !self.settings.camera_on));
                self.start_call(config);
            }
            UiCommand::OpenLink(link) => self.open_link(link),
            UiCommand::ToggleLobbyMic => {
                self.settings.mic_on = !self.settings.mic_on;
                self.save_settings();
                self.restart_preview();
            }
            UiCommand::ToggleLobbyCamera => {
                self.settings.camera_on = !self.settings.camera_on;
                self.save_settings();
                self.restart_preview();
            }
            UiCommand::CancelStart => self.back_to_lobby(),
            UiCommand::NewRoom => {
                self.ensure_hosted();
                let room = RoomCode::generate();
                self.room_input = room.to_string();
                self.new_room = Some(room);
            }
            UiCommand::ShowError(e) => self.error = Some(e),
            UiCommand::DevicesChanged => {
                self.save_settings();
                self.restart_preview();
            }
            UiCommand::ServerModeChanged => {
                self.save_settings();
            }
            UiCommand::ChooseMic(spec) => self.choose_device(DeviceKind::Mic, spec),
            UiCommand::ChooseCamera(spec) => self.choose_device(DeviceKind::Camera, spec),
            UiCommand::ChooseSpeaker(spec) => self.choose_device(DeviceKind::Speaker, spec),
            UiCommand::ToggleShareMenu => self.share_menu = !self.share_menu,
            UiCommand::CloseShareMenu => self.share_menu = false,
            UiCommand::ToggleFullscreen => {
                self.fullscreen = !self.fullscreen;
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::Fullscreen(self.fullscreen));
            }
            UiCommand::PickFile => self.pick_file(),
            UiCommand::Hangup => {
                if let Some(call) = &mut self.call {
                    if !call.is_over() {
                        call.hang_up();
                    }
                }
                self.back_to_lobby();
            }
            command => self.apply_to_call(command),
        }
    }

    /// A device chosen during a call: opened off the UI thread and switched to, without a gap
    /// longer than the opening; saved as the next call's choice once it is in use. One that
    /// cannot be opened leaves the old one in use and says why. Without a call, only saved.
    fn choose_device(&mut self, kind: DeviceKind, spec: String) {
        let Some(call) = self.call.as_mut().filter(|c| !c.is_over()) else {
            self.save_device(kind, spec);
            return;
        };
        let what = spec.clone();
        let open: OpenForSwitch = match kind {
            DeviceKind::Camera => {
                let (open_camera, local) = (self.hooks.open_camera.clone(), call.local.clone());
                let video = self.call_video;
                Box::new(move || {
                    let (w, h) = (video.size.width, video.size.height);
                    match open_camera(&VideoSpec::parse(&what), w, h, video.fps) {
                        Ok(Some(camera)) => Ok(SessionCommand::SwitchCamera(Box::new(
                            SelfView::new(camera, local),
                        ))),
                        Ok(None) => Err(switch_problem(Problem::Camera, "no camera chosen")),
                        Err(e) => Err(switch_problem(Problem::Camera, &e.to_string())),
                    }
                })
            }
            DeviceKind::Mic => {
                let open_mic = self.hooks.open_mic.clone();
                Box::new(move || match open_mic(&VideoSpec::parse(&what)) {
                    Ok(Some(mic)) => Ok(SessionCommand::SwitchMic(mic)),
                    Ok(None) => Err(switch_problem(Problem::Mic, "no microphone chosen")),
                    Err(e) => Err(switch_problem(Problem::Mic, &e.to_string())),
                })
            }
            DeviceKind::Speaker => {
                let open_speaker = self.hooks.open_speaker.clone();
                Box::new(move || {
                    open_speaker(&what)
                        .map(SessionCommand::SwitchSpeaker)
                        .map_err(|e| {
                            tracing::warn!(%e, "cannot open the speaker");
                            "The speaker could not start. Still using the one before.".to_owned()
                        })
                })
            }
        };
        call.switch_device(kind, spec, open);
    }

    /// Makes `spec` the device the next call uses.
    fn save_device(&mut self, kind: DeviceKind, spec: String) {
        let field = match kind {
            DeviceKind::Mic => &mut self.settings.mic,
            DeviceKind::Camera => &mut self.settings.camera,
            DeviceKind::Speaker => &mut self.settings.speaker,
        };
        *field = spec;
        self.save_settings();
    }

    /// Commands for the call in progress (none when there is no call any more).
    fn apply_to_call(&mut self, command: UiCommand) {
        let Some(call) = &mut self.call else {
            return;
        };
        match command {
            UiCommand::ToggleMic => call.toggle_mute(),
            UiCommand::PushToTalk(on) => call.push_to_talk(on),
            UiCommand::ToggleSelfView => {
                call.self_view.hidden = !call.self_view.hidden;
                call.local.set_hidden(call.self_view.hidden);
            }
            UiCommand::ToggleCamera => call.toggle_camera(),
            UiCommand::ShareScreen(spec) => {
                self.share_menu = false;
                call.share_screen(spec, &self.ctx);
            }
            UiCommand::StopSharing => call.command(SessionCommand::ShareScreen(None)),
            UiCommand::ToggleChat => {
                call.show_chat = !call.show_chat;
                call.unread = 0;
            }
            UiCommand::ToggleStats => call.show_stats = !call.show_stats,
            UiCommand::CloseStats => call.show_stats = false,
            UiCommand::SendChat => call.send_chat(),
            UiCommand::SendFile(path) => call.send_file(path),
            UiCommand::AnswerOffer { id, accept } => call.answer_offer(id, accept),
            other => tracing::debug!(?other, "not a call command"),
        }
    }

    /// The native file dialog blocks: it runs on its own thread, the answer comes back by channel.
    fn pick_file(&mut self) {
        if self.file_pick.is_some() || self.call.is_none() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let repaint = self.ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let _ = tx.send(rfd::FileDialog::new().set_title("Send a file").pick_file());
                repaint.request_repaint();
            });
        match spawned {
            Ok(_) => self.file_pick = Some(rx),
            Err(err) => tracing::warn!(%err, "cannot open the file dialog"),
        }
    }

    fn poll(&mut self) {
        let handed: Vec<JoinLink> = self
            .links
            .as_ref()
            .map(|inbox| inbox.links.try_iter().collect())
            .unwrap_or_default();
        for link in handed {
            self.open_link(link);
        }
        self.host.poll();
        if !matches!(self.host, HostState::Starting(_)) {
            if let Some(config) = self.waiting_for_server.take() {
                self.start_call(config);
            }
        }
        if let Some(starting) = &self.starting {
            if let Ok((io, problems)) = starting.rx.try_recv() {
                let starting = self.starting.take().expect("invariant: checked above");
                let asked = &starting.call;
                tracing::info!(
                    camera = %asked.camera,
                    mic = %asked.mic,
                    speaker = %asked.speaker,
                    screen = ?asked.screen,
                    "devices open; starting the call"
                );
                self.call_video = starting.call.video;
                let mut call = CallUi::start(
                    self.runtime.handle(),
                    &self.ctx,
                    starting.config,
                    io,
                    starting.remote,
                    starting.local,
                );
                for p in problems {
                    call.warnings.push_back((Instant::now(), p));
                }
                if let Some((muted, camera_off)) = self.lobby_toggles.take() {
                    if muted {
                        call.toggle_mute();
                    }
                    if camera_off {
                        call.toggle_camera();
                    }
                }
                self.call = Some(call);
            }
        }
        // Devices switched to during the call are the next call's choice too.
        let switched = match &mut self.call {
            Some(call) => {
                call.poll();
                std::mem::take(&mut call.switched)
            }
            None => Vec::new(),
        };
        for (kind, spec) in switched {
            self.save_device(kind, spec);
        }
        if let Some(call) = &mut self.call {
            let notices = std::mem::take(&mut call.desktop_notices);
            let in_front = self.ctx.input(|i| i.viewport().focused.unwrap_or(true));
            if !in_front {
                for notice in notices {
                    notify_desktop(notice);
                }
            }
            // A call that failed before it began goes back to the lobby with the reason.
            if let CallState::Ended(Some(reason)) = &call.state {
                if call.connected_at.is_none() {
                    self.error = Some(reason.clone());
                    self.back_to_lobby();
                }
            }
        }
        if let Some(rx) = &self.file_pick {
            if let Ok(picked) = rx.try_recv() {
                self.file_pick = None;
                if let (Some(path), Some(call)) = (picked, self.call.as_mut()) {
                    call.send_file(path);
                }
            }
        }
    }

    /// What runs whether the window is drawn or not (eframe draws nothing while it is minimized
    /// or covered, and then calls only this): the call's events are taken (a chat's desktop
    /// notice, a file's progress; the session waits once `EVENT_QUEUE` of them are queued), and
    /// the other side is asked for the least video while none of it is shown.
    pub fn tick(&mut self, ctx: &egui::Context) {
        self.poll();
        let shown = ctx.input(|i| i.viewport().visible()).unwrap_or(true);
        if let Some(call) = &mut self.call {
            call.set_video_shown(shown);
        }
        self.pause_preview_while_hidden(shown);
    }

    /// Nobody sees the lobby's preview while the window is hidden: the camera (and its light)
    /// and the microphone are let go until the window shows again.
    fn pause_preview_while_hidden(&mut self, shown: bool) {
        let in_lobby =
            self.call.is_none() && self.starting.is_none() && self.waiting_for_server.is_none();
        if !in_lobby {
            self.preview_paused = false;
        } else if !shown && self.preview.is_some() {
            tracing::info!(
                "the window is hidden: the preview lets go of the camera and microphone"
            );
            // The next to open the devices (the preview again, or a call) waits for them.
            self.ending_calls = self.devices_in_use();
            self.preview_paused = true;
        } else if shown && self.preview_paused {
            self.preview_paused = false;
            if self.preview.is_none() {
                self.restart_preview();
            }
        }
    }

    /// The whole window; used by eframe and by the UI tests (after `tick`, as eframe does).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        if !super::theme::ensure_installed(ui.ctx()) {
            return;
        }
        let remote = self.call.as_ref().map(|call| &*call.remote);
        let _ = self.paints.pass(ui.ctx(), remote, Instant::now());
        let in_call =
            self.call.is_some() || self.starting.is_some() || self.waiting_for_server.is_some();
        let commands = if in_call {
            let lists = self
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let screens = &lists.screens;
            let view = CallView {
                call: self.call.as_mut(),
                opening: if self.waiting_for_server.is_some() {
                    "Starting the local server…"
                } else {
                    "Opening camera and microphone…"
                },
                fullscreen: self.fullscreen,
                share_menu: self.share_menu,
                screens,
                devices: call_view::DeviceMenus {
                    lists: &lists,
                    mic: &self.settings.mic,
                    camera: &self.settings.camera,
                    speaker: &self.settings.speaker,
                },
                layout: &mut self.layout,
            };
            call_view::call_ui(view, ui)
        } else {
            let devices = self
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let host = self.host.status();
            let view = LobbyView {
                settings: &mut self.settings,
                room_input: &mut self.room_input,
                new_room: self.new_room.as_ref(),
                error: self.error.as_deref(),
                preview: self.preview.as_ref(),
                preview_texture: &mut self.preview_texture,
                devices: &devices,
                host: &host,
            };
            lobby::lobby_ui(view, ui)
        };
        for command in commands {
            self.apply(command);
        }
        self.pending_link_ui(ui);
    }
}

/// A short sentence for a device that could not be opened for a switch (the raw error goes to
/// the log).
fn switch_problem(what: Problem, raw: &str) -> String {
    tracing::warn!(error = raw, "cannot open the device");
    let (short, _) = humane_error(what, raw);
    format!("{short} Still using the one before.")
}

/// Shows `text` as a desktop notification, on its own thread (it talks to the desktop's
/// notification service, which may be slow or missing: then only a log line).
fn notify_desktop(text: String) {
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let shown = notify_rust::Notification::new()
                .summary("Confab")
                .body(&text)
                .appname("Confab")
                .show();
            if let Err(err) = shown {
                tracing::debug!(%err, "no desktop notification");
            }
        });
    if let Err(err) = spawned {
        tracing::debug!(%err, "cannot start the notification thread");
    }
}

/// How long closing the window during a call, or the next call or preview after one, waits for
/// the call to end (the session's teardown and its goodbye to the signaling server, up to 1 s of
/// it).
const CALL_END_WAIT: Duration = Duration::from_secs(3);

impl eframe::App for ConfabApp {
    /// Before every `ui`, and alone while the window is hidden.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.tick(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_settings();
        // The call on now, and any hung up just before (the window closed right after "Hang
        // up"), end before the app goes: its runtime, dropped with it, would cancel them in the
        // middle of their teardown, and the other person would see us "away", our seat kept.
        // The window is closing: there is nothing left to draw while we wait.
        self.retire_call();
        let deadline = Instant::now() + CALL_END_WAIT;
        for ended in &self.calls_to_end {
            ended.wait_until(deadline);
        }
    }
}
