//! `ConfabApp`: owns the settings, the async runtime, the hosted signaling server, the lobby
//! preview and the current call, and switches between the lobby and the call view.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use confab_protocol::RoomCode;
use confab_signaling::{RunningServer, Server, ServerConfig};

use super::call::CallUi;
use super::devices::DeviceLists;
use super::preview::Preview;
use super::settings::{ServerMode, Settings};
use super::video::{SelfView, VideoSlot};
use confab_codecs::apm::ApmSettings;
use confab_codecs::h264::{default_bitrate_bps, EncoderSettings};
use confab_devices::{AudioSink, VideoSpec};
use confab_engine::peer::NetworkSettings;
use confab_engine::session::{MediaIo, SessionConfig};

/// A call to start as soon as the window opens (`confab join ROOM` without `--headless`).
#[derive(Debug, Clone)]
pub struct StartCall {
    pub room: Option<RoomCode>,
    pub server: Option<String>,
    pub camera: Option<String>,
    pub mic: Option<String>,
    pub speaker: Option<String>,
    pub name: Option<String>,
}

/// The signaling server the app runs for its user.
pub struct Hosted {
    pub server: RunningServer,
    /// What others on the network type (`ws://192.168.1.5:8443`).
    pub lan_url: String,
    /// Link for a browser (`http://192.168.1.5:8443/join/`).
    pub lan_http: String,
}

/// Devices being opened for a call (on a thread, since a camera can take seconds).
pub struct Starting {
    pub rx: std::sync::mpsc::Receiver<(MediaIo, Vec<String>)>,
    pub config: SessionConfig,
    pub remote: Arc<VideoSlot>,
    pub local: Arc<VideoSlot>,
}

pub struct ConfabApp {
    pub settings: Settings,
    config_dir: Option<PathBuf>,
    pub runtime: tokio::runtime::Runtime,
    pub devices: Arc<Mutex<DeviceLists>>,
    pub hosted: Option<Hosted>,
    pub host_error: Option<String>,
    pub room_input: String,
    pub new_room: Option<RoomCode>,
    pub error: Option<String>,
    pub preview: Option<Preview>,
    pub preview_texture: Option<egui::TextureHandle>,
    pub starting: Option<Starting>,
    pub call: Option<CallUi>,
    pub file_pick: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
    pub share_menu: bool,
    pub fullscreen: bool,
    pub layout_report: Option<PathBuf>,
    pub last_layout: Option<String>,
    pub ctx: egui::Context,
}

/// The window icon (also used by the installers, from assets/).
pub fn icon() -> egui::IconData {
    let png = include_bytes!("../../../assets/confab.png");
    eframe::icon_data::from_png_bytes(png).unwrap_or_default()
}

impl ConfabApp {
    /// `config_dir`: where settings live (the OS config folder when `None`).
    pub fn new(ctx: egui::Context, config_dir: Option<PathBuf>, start: Option<StartCall>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("confab-net")
            .enable_all()
            .build()
            .expect("invariant: a tokio runtime can start (only fails without threads)");
        let mut settings = Settings::load(config_dir.as_deref());
        let devices = DeviceLists::gather_in_background(ctx.clone());
        let mut app = Self {
            room_input: settings.last_room.clone(),
            settings: settings.clone(),
            config_dir,
            runtime,
            devices,
            hosted: None,
            host_error: None,
            new_room: None,
            error: None,
            preview: None,
            preview_texture: None,
            starting: None,
            call: None,
            file_pick: None,
            share_menu: false,
            fullscreen: false,
            layout_report: std::env::var_os("CONFAB_UI_LAYOUT").map(PathBuf::from),
            last_layout: None,
            ctx,
        };
        if let Some(start) = start {
            if let Some(server) = start.server {
                settings.server_mode = ServerMode::Remote;
                settings.server_url = server;
            }
            for (value, field) in [
                (start.camera, &mut settings.camera),
                (start.mic, &mut settings.mic),
                (start.speaker, &mut settings.speaker),
                (start.name, &mut settings.name),
            ] {
                if let Some(v) = value {
                    *field = v;
                }
            }
            app.settings = settings;
            app.ensure_hosted();
            app.start_call(start.room);
        } else {
            app.ensure_hosted();
            app.restart_preview();
        }
        app
    }

    pub fn save_settings(&self) {
        if let Err(err) = self.settings.save(self.config_dir.as_deref()) {
            tracing::warn!(%err, "cannot save settings");
        }
    }

    /// Runs the in-app signaling server when the settings ask for it.
    pub fn ensure_hosted(&mut self) {
        if self.settings.server_mode != ServerMode::Host || self.hosted.is_some() {
            return;
        }
        let port = self.settings.host_port;
        let started = self.runtime.block_on(async {
            match Server::start(ServerConfig::new(([0, 0, 0, 0], port).into())).await {
                Ok(s) => Ok(s),
                // The port is taken (another Confab?): any free one will do.
                Err(_) => Server::start(ServerConfig::new(([0, 0, 0, 0], 0).into())).await,
            }
        });
        match started {
            Ok(server) => {
                let port = server.local_addr().port();
                let ip = local_ip_address::local_ip()
                    .map_or_else(|_| "127.0.0.1".to_owned(), |ip| ip.to_string());
                self.hosted = Some(Hosted {
                    server,
                    lan_url: format!("ws://{ip}:{port}"),
                    lan_http: format!("http://{ip}:{port}/join/"),
                });
                self.host_error = None;
            }
            Err(err) => self.host_error = Some(err.to_string()),
        }
    }

    pub fn restart_preview(&mut self) {
        self.preview = None;
        self.preview_texture = None;
        self.preview = Some(Preview::start(
            &self.ctx,
            &self.settings.camera,
            &self.settings.mic,
        ));
    }

    fn server_url(&self) -> Result<String, String> {
        match self.settings.server_mode {
            ServerMode::Host => self
                .hosted
                .as_ref()
                .map(|h| h.server.ws_url())
                .ok_or_else(|| {
                    self.host_error
                        .clone()
                        .unwrap_or_else(|| "the local server is not running".into())
                }),
            ServerMode::Remote if self.settings.server_url.trim().is_empty() => {
                Err("enter a server address (wss://...) or choose “Host on this computer”".into())
            }
            ServerMode::Remote => Ok(self.settings.server_url.trim().to_owned()),
        }
    }

    /// Joins `room` (a new room when `None`): opens the devices on a thread, then starts the call.
    pub fn start_call(&mut self, room: Option<RoomCode>) {
        let server_url = match self.server_url() {
            Ok(url) => url,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.error = None;
        if let Some(room) = &room {
            self.settings.last_room = room.to_string();
        }
        self.save_settings();
        // The preview holds the devices: release them first.
        self.preview = None;
        self.preview_texture = None;
        let s = self.settings.clone();
        let (width, height, fps) = (1280, 720, 30);
        let config = SessionConfig {
            server_url,
            room,
            name: if s.name.trim().is_empty() {
                "Guest".into()
            } else {
                s.name.trim().to_owned()
            },
            extra_ice_servers: s.ice_servers(),
            relay_only: s.relay_only,
            bind: NetworkSettings::default_bind(),
            video: EncoderSettings {
                bitrate_bps: default_bitrate_bps(width, height, fps),
                max_fps: fps as f32,
                screen: false,
            },
            audio_bitrate_bps: 32_000,
            apm: ApmSettings {
                echo_cancellation: s.echo_cancellation,
                noise_suppression: s.noise_suppression,
                gain_control: true,
                high_pass_filter: true,
            },
            receive_dir: if s.download_dir.trim().is_empty() {
                crate::join::default_receive_dir()
            } else {
                PathBuf::from(s.download_dir.trim())
            },
            auto_accept_files: false,
            eager_offer: false,
        };
        let remote = VideoSlot::new(Some(self.ctx.clone()));
        let local = VideoSlot::new(Some(self.ctx.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (ctx, local_slot, remote_slot) = (self.ctx.clone(), local.clone(), remote.clone());
        let spawned = std::thread::Builder::new()
            .name("open-devices".into())
            .spawn(move || {
                let mut problems = Vec::new();
                let camera = match confab_devices::open_camera(
                    &VideoSpec::parse(&s.camera),
                    width,
                    height,
                    fps,
                ) {
                    Ok(c) => c.map(|c| {
                        Box::new(SelfView::new(c, local_slot))
                            as Box<dyn confab_devices::VideoSource>
                    }),
                    Err(e) => {
                        problems.push(format!("{e}; the call goes on without video"));
                        None
                    }
                };
                let mic = confab_devices::open_mic(&VideoSpec::parse(&s.mic)).unwrap_or_else(|e| {
                    problems.push(format!("{e}; the call goes on without your microphone"));
                    None
                });
                let speaker: Box<dyn AudioSink> = confab_devices::open_speaker(&s.speaker)
                    .unwrap_or_else(|e| {
                        problems.push(format!("{e}; you will not hear the other person"));
                        Box::new(confab_devices::wav::NullSink)
                    });
                let io = MediaIo {
                    camera,
                    mic,
                    speaker: Some(speaker),
                    screen: None,
                    video_out: remote_slot,
                };
                let _ = tx.send((io, problems));
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.error = Some(format!("cannot open devices: {e}"));
            return;
        }
        self.starting = Some(Starting {
            rx,
            config,
            remote,
            local,
        });
    }

    /// Leaves the call view for the lobby.
    pub fn back_to_lobby(&mut self) {
        self.call = None;
        self.starting = None;
        if self.fullscreen {
            self.fullscreen = false;
            self.ctx
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(false));
        }
        self.restart_preview();
    }

    fn poll(&mut self) {
        if let Some(starting) = &self.starting {
            if let Ok((io, problems)) = starting.rx.try_recv() {
                let starting = self.starting.take().expect("invariant: checked above");
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
                self.call = Some(call);
            }
        }
        if let Some(call) = &mut self.call {
            call.poll();
            // A call that failed before it began goes back to the lobby with the reason.
            if let super::call::CallState::Ended(Some(reason)) = &call.state {
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

    /// The whole window; used by eframe and by the UI tests.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll();
        if self.call.is_some() || self.starting.is_some() {
            super::call_view::call_ui(self, ui);
        } else {
            super::lobby::lobby_ui(self, ui);
        }
    }
}

impl eframe::App for ConfabApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_settings();
        if let Some(call) = &mut self.call {
            call.hang_up();
        }
    }
}
