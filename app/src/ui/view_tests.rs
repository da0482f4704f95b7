//! How the lobby and the call window look, at 1280x800 and 640x480: no text is clipped or
//! leaves the window (checked on the shapes egui paints), PNG snapshots of each state
//! (tests/snapshots), and the controls found by role and name and reached with Tab.

use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::epaint::Shape;
use egui::Role;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::{Harness, SnapshotResults};

use super::call::{CallState, CallUi, ChatLine};
use super::call_view::{self, CallView, DeviceMenus, LayoutReport};
use super::devices::DeviceLists;
use super::hooks::Hooks;
use super::settings::{ServerMode, Settings};
use super::ConfabApp;
use confab_devices::{CaptureError, VideoSource};
use confab_media::VideoFrame;

const SIZES: [(f32, f32); 2] = [(1280.0, 800.0), (640.0, 480.0)];

/// What the preview's camera says when there is none (nokhwa's message, as the lobby got it).
const NO_CAMERA: &str = "no camera found (is one connected, and may Confab use it?)";
/// What cpal says when the default microphone is missing.
const NO_MIC: &str = "microphone Default Audio Device: The requested audio device is not \
     available. It may have been disconnected.";

/// A still picture (a grey ramp with a light square), a frame every 50 ms.
struct StillCamera;

fn still_frame(width: u32, height: u32) -> VideoFrame {
    let (w, h) = (width as usize, height as usize);
    let mut data = vec![128u8; w * h * 3 / 2];
    for y in 0..h {
        for x in 0..w {
            let square = (w / 3..w * 2 / 3).contains(&x) && (h / 3..h * 2 / 3).contains(&y);
            data[y * w + x] = if square {
                220
            } else {
                (40 + x * 120 / w) as u8
            };
        }
    }
    VideoFrame {
        width,
        height,
        data,
        capture_ts_us: 0,
    }
}

impl VideoSource for StillCamera {
    fn name(&self) -> &str {
        "still"
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        std::thread::sleep(Duration::from_millis(50));
        Ok(still_frame(320, 180))
    }
}

/// Every piece of text egui paints lies inside its clip rectangle (so nothing is cut off) and
/// inside the window; returns what does not.
fn clipped_text(output: &egui::FullOutput, window: egui::Rect) -> Vec<String> {
    fn walk(shape: &Shape, clip: egui::Rect, window: egui::Rect, bad: &mut Vec<String>) {
        match shape {
            Shape::Vec(shapes) => {
                for s in shapes {
                    walk(s, clip, window, bad);
                }
            }
            Shape::Text(text) if !text.galley.text().trim().is_empty() => {
                let rect = text.galley.rect.translate(text.pos.to_vec2());
                // Half a point of rounding is not clipping.
                let inside = |outer: egui::Rect| outer.expand(0.5).contains_rect(rect);
                if !inside(clip) || !inside(window) {
                    bad.push(format!(
                        "{:?} at {rect:?}, clip {clip:?}",
                        text.galley.text()
                    ));
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    for clipped in &output.shapes {
        walk(&clipped.shape, clipped.clip_rect, window, &mut bad);
    }
    bad
}

fn assert_no_clipped_text<S>(harness: &Harness<'_, S>, what: &str) {
    let window = harness.ctx.content_rect();
    let bad = clipped_text(harness.output(), window);
    assert!(
        bad.is_empty(),
        "{what}: text cut off or outside the window:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_clipping_check_sees_text_that_spills() {
    // A label in a row that is too narrow for it spills out of its panel: the check must see it.
    let mut harness = Harness::builder()
        .with_size(egui::vec2(200.0, 100.0))
        .build_ui(|ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label("a label much too long for a window two hundred points wide");
                });
            });
        });
    harness.run_steps(2);
    let window = harness.ctx.content_rect();
    let bad = clipped_text(harness.output(), window);
    assert_eq!(bad.len(), 1, "{bad:?}");
    // Wrapped, it fits.
    let mut harness = Harness::builder()
        .with_size(egui::vec2(200.0, 200.0))
        .build_ui(|ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.label("a label much too long for a window two hundred points wide");
            });
        });
    harness.run_steps(2);
    assert_no_clipped_text(&harness, "wrapped label");
}

/// The lobby states the issue names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lobby {
    CameraOn,
    CameraOff,
    CameraMissing,
    MicError,
}

impl Lobby {
    fn name(self) -> &'static str {
        match self {
            Self::CameraOn => "camera-on",
            Self::CameraOff => "camera-off",
            Self::CameraMissing => "camera-missing",
            Self::MicError => "mic-error",
        }
    }
}

fn lobby_harness(state: Lobby, size: (f32, f32)) -> Harness<'static, ConfabApp> {
    lobby_harness_in(state, size, egui::Theme::Dark)
}

fn lobby_harness_in(
    state: Lobby,
    size: (f32, f32),
    theme: egui::Theme,
) -> Harness<'static, ConfabApp> {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        name: "Ada".into(),
        camera: "test".into(),
        mic: if state == Lobby::MicError {
            "default".into()
        } else {
            "none".into()
        },
        speaker: "null".into(),
        camera_on: state != Lobby::CameraOff,
        server_mode: ServerMode::Remote,
        server_url: "wss://confab.example.org:8443".into(),
        last_room: String::new(),
        ..Settings::default()
    };
    settings.save(Some(dir.path())).unwrap();
    let missing = state == Lobby::CameraMissing;
    let hooks = Hooks {
        open_camera: Arc::new(move |_spec, _w, _h, _fps| {
            if missing {
                Err(CaptureError::Unavailable(NO_CAMERA.into()))
            } else {
                Ok(Some(Box::new(StillCamera) as _))
            }
        }),
        open_mic: Arc::new(|_spec| Err(CaptureError::Unavailable(NO_MIC.into()))),
        ..Hooks::default()
    };
    let app = ConfabApp::with_hooks(egui::Context::default(), Some(dir.keep()), None, hooks);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(size.0, size.1))
        .with_theme(theme)
        .build_ui_state(
            |ui, app: &mut ConfabApp| {
                app.tick(ui.ctx());
                app.show(ui);
            },
            app,
        );
    let ctx = harness.ctx.clone();
    harness.state_mut().ctx = ctx;
    wait(&mut harness, "device lists", |h| {
        h.state().devices.lock().unwrap().loaded
    });
    let ready = |h: &mut Harness<'_, ConfabApp>| match state {
        Lobby::CameraOn => h.state().preview_texture.is_some(),
        Lobby::CameraOff => true,
        Lobby::CameraMissing => h
            .query_by_label("No camera found. Is one connected?")
            .is_some(),
        Lobby::MicError => {
            h.state().preview_texture.is_some()
                && h.query_by_label("No microphone found. Is one connected?")
                    .is_some()
        }
    };
    wait(&mut harness, state.name(), ready);
    harness.run_steps(2);
    harness
}

/// Steps the UI (in real time: devices open on their own threads) until `done` or 20 s.
fn wait<S>(
    harness: &mut Harness<'_, S>,
    what: &str,
    mut done: impl FnMut(&mut Harness<'_, S>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_lobby_fits_and_looks_right_at_both_sizes() {
    let mut snapshots = SnapshotResults::default();
    for state in [
        Lobby::CameraOn,
        Lobby::CameraOff,
        Lobby::CameraMissing,
        Lobby::MicError,
    ] {
        for size in SIZES {
            let what = format!("lobby-{}-{}x{}", state.name(), size.0, size.1);
            let mut harness = lobby_harness(state, size);
            assert_no_clipped_text(&harness, &what);
            // The raw library text is only in the tooltip, never on screen.
            assert!(harness
                .query_by_label_contains("It may have been disconnected")
                .is_none());
            assert!(harness
                .query_by_label_contains("may Confab use it")
                .is_none());
            harness.snapshot(&what);
            snapshots.extend_harness(&mut harness);
        }
    }
    snapshots.unwrap();
}

#[test]
fn the_light_theme_fits_too() {
    let mut harness = lobby_harness_in(Lobby::MicError, SIZES[1], egui::Theme::Light);
    assert_eq!(harness.ctx.theme(), egui::Theme::Light);
    assert_no_clipped_text(&harness, "light lobby");
    harness.snapshot("lobby-light-640x480");
}

#[test]
fn lobby_controls_are_named_and_reached_with_tab() {
    let mut harness = lobby_harness(Lobby::CameraOn, SIZES[0]);
    // By role and name, as a screen reader finds them.
    harness.get_by_role_and_label(Role::TextInput, "Your name");
    harness.get_by_role_and_label(Role::TextInput, "Room code or link");
    harness.get_by_role_and_label(Role::Button, "Paste");
    harness.get_by_role_and_label(Role::Button, "Join");
    harness.get_by_role_and_label(Role::Button, "New room");
    harness.get_by_role_and_label(Role::ComboBox, "Microphone");
    harness.get_by_role_and_label(Role::ComboBox, "Camera");
    harness.get_by_role_and_label(Role::ComboBox, "Speaker");
    // The camera toggle works from its name, and says what it will do next.
    harness
        .get_by_role_and_label(Role::Button, "Turn camera off")
        .click();
    harness.run_steps(3);
    assert!(!harness.state().settings.camera_on);
    harness.get_by_role_and_label(Role::Button, "Turn camera on");
    harness.get_by_label("Your camera is off");
    // Tab walks through the controls in reading order.
    let mut reached = Vec::new();
    for _ in 0..14 {
        harness.key_press(egui::Key::Tab);
        harness.run_steps(1);
        if let Some(node) = harness.query_by(|n| n.is_focused()) {
            reached.push(node.accesskit_node().label().unwrap_or_default());
        }
    }
    for name in [
        "Turn microphone off",
        "Turn camera on",
        "Microphone",
        "Camera",
        "Speaker",
        "Your name",
        "Room code or link",
        "Paste",
        "New room",
    ] {
        assert!(
            reached.iter().any(|r| r == name),
            "Tab never reaches {name:?}: {reached:?}"
        );
    }
    let at = |name: &str| reached.iter().position(|r| r == name).unwrap();
    assert!(at("Your name") < at("Room code or link"), "{reached:?}");
    assert!(at("Room code or link") < at("New room"), "{reached:?}");
}

/// The call window's state for the tests: a call with no session, and what the view needs.
struct CallScene {
    call: CallUi,
    layout: LayoutReport,
    lists: DeviceLists,
    commands: Vec<super::command::UiCommand>,
}

fn call_ui(ui: &mut egui::Ui, scene: &mut CallScene) {
    let view = CallView {
        call: Some(&mut scene.call),
        opening: "",
        fullscreen: false,
        share_menu: false,
        screens: &[],
        devices: DeviceMenus {
            lists: &scene.lists,
            mic: "default",
            camera: "test",
            speaker: "default",
        },
        layout: &mut scene.layout,
    };
    let commands = call_view::call_ui(view, ui);
    scene.commands.extend(commands);
}

/// The call states the issue names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Connected,
    Reconnecting,
    ChatOpen,
    StatsOpen,
}

fn call_harness(state: Call, size: (f32, f32)) -> Harness<'static, CallScene> {
    let mut call = CallUi::bare();
    call.peer_name = Some("Grace".into());
    call.security_code = Some("1234 5678 9012".into());
    call.state = if state == Call::Reconnecting {
        CallState::Reconnecting
    } else {
        CallState::Connected
    };
    call.remote.put(&still_frame(640, 360));
    call.local.put(&still_frame(320, 180));
    match state {
        Call::ChatOpen => {
            call.show_chat = true;
            call.chat.push(ChatLine {
                mine: false,
                text: "Hello! Can you see my screen? The slides are on the second monitor.".into(),
            });
            call.chat.push(ChatLine {
                mine: true,
                text: "Yes, all clear.".into(),
            });
        }
        Call::StatsOpen => call.show_stats = true,
        Call::Connected => call.unread = 2,
        Call::Reconnecting => {}
    }
    let lists = DeviceLists {
        cameras: vec![],
        mics: vec![],
        speakers: vec![],
        screens: vec![],
        loaded: true,
    };
    let scene = CallScene {
        call,
        layout: LayoutReport::default(),
        lists,
        commands: Vec::new(),
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(size.0, size.1))
        .with_context_setup(super::theme::install)
        .build_ui_state(call_ui, scene);
    harness.run_steps(4);
    harness
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::ChatOpen => "chat-open",
            Self::StatsOpen => "stats-open",
        }
    }
}

#[test]
fn the_call_window_fits_and_looks_right_at_both_sizes() {
    let mut snapshots = SnapshotResults::default();
    for state in [
        Call::Connected,
        Call::Reconnecting,
        Call::ChatOpen,
        Call::StatsOpen,
    ] {
        for size in SIZES {
            let what = format!("call-{}-{}x{}", state.name(), size.0, size.1);
            let mut harness = call_harness(state, size);
            assert_no_clipped_text(&harness, &what);
            match state {
                Call::Reconnecting => {
                    harness.get_by_label("Connection lost. Reconnecting…");
                }
                Call::ChatOpen => {
                    harness.get_by_label_contains("Can you see my screen?");
                }
                Call::StatsOpen => {
                    harness.get_by_label("Call statistics");
                }
                Call::Connected => {
                    harness.get_by_role_and_label(Role::Button, "Chat, 2 unread");
                }
            }
            harness.snapshot(&what);
            snapshots.extend_harness(&mut harness);
        }
    }
    snapshots.unwrap();
}

#[test]
fn the_statistics_say_when_this_computer_stalled() {
    let mut harness = call_harness(Call::StatsOpen, SIZES[0]);
    assert!(
        harness.query_by_label("This computer").is_none(),
        "no row before a stall"
    );
    {
        let stats = &harness.state_mut().call.stats;
        let mut c = stats.lock();
        c.stats.runtime.stalls = 2;
        c.stats.runtime.longest_stall_ms = 1_305.6;
    }
    harness.run_steps(2);
    harness.get_by_label("This computer");
    harness.get_by_label("stalled 2 times (longest 1.3 s)");
    assert_no_clipped_text(&harness, "stats with a stall");
}

#[test]
fn the_statistics_say_when_this_computer_holds_the_picture_down() {
    let mut harness = call_harness(Call::StatsOpen, SIZES[0]);
    harness.get_by_label("nothing");
    {
        let stats = &harness.state_mut().call.stats;
        let mut c = stats.lock();
        c.stats.video_send.quality_limitation = confab_engine::ladder::Limitation::Cpu;
    }
    harness.run_steps(2);
    harness.get_by_label("this computer's processor");
    assert_no_clipped_text(&harness, "stats limited by the processor");
    {
        let stats = &harness.state_mut().call.stats;
        let mut c = stats.lock();
        c.stats.video_send.quality_limitation = confab_engine::ladder::Limitation::Receiver;
    }
    harness.run_steps(2);
    harness.get_by_label("what the other side asked for");
    assert_no_clipped_text(&harness, "stats limited by the receiver");
}

#[test]
fn the_notices_that_this_computer_is_too_busy_fit_every_window() {
    for size in SIZES {
        let mut harness = call_harness(Call::Connected, size);
        let notices = [
            super::call::CPU_LIMITED,
            super::call::ASKING_LESS,
            super::call::DECODER_BEHIND,
        ];
        for notice in notices {
            harness
                .state_mut()
                .call
                .warnings
                .push_back((Instant::now(), notice.to_string()));
        }
        harness.run_steps(2);
        for notice in notices {
            harness.get_by_label(notice);
        }
        assert_no_clipped_text(&harness, &format!("the busy notices at {size:?}"));
    }
}

#[test]
fn a_settled_call_window_draws_each_frame_in_one_pass() {
    // The call panels are drawn again when their height changes (`call_view::settled`); once
    // the window has settled, no frame may pay for a second pass.
    for state in [
        Call::Connected,
        Call::Reconnecting,
        Call::ChatOpen,
        Call::StatsOpen,
    ] {
        let mut harness = call_harness(state, SIZES[0]);
        for _ in 0..3 {
            harness.step();
            let output = &harness.output().platform_output;
            assert_eq!(
                output.num_completed_passes,
                1,
                "{}: {:?}",
                state.name(),
                output.request_discard_reasons
            );
        }
    }
}

#[test]
fn call_controls_are_named_and_work_by_name() {
    let mut harness = call_harness(Call::Connected, SIZES[1]);
    for name in [
        "Mute",
        "Microphone and speaker",
        "Camera off",
        "Camera choice",
        "Share screen",
        "Chat, 2 unread",
        "Send file",
        "Stats",
        "Full screen",
        "Hang up",
    ] {
        harness.get_by_role_and_label(Role::Button, name);
    }
    harness.get_by_label("Connection good");
    use super::command::UiCommand;
    for (name, command) in [
        ("Mute", UiCommand::ToggleMic),
        ("Send file", UiCommand::PickFile),
        ("Stats", UiCommand::ToggleStats),
        ("Hang up", UiCommand::Hangup),
    ] {
        harness.state_mut().commands.clear();
        harness.get_by_role_and_label(Role::Button, name).click();
        harness.run_steps(1);
        assert_eq!(harness.state().commands, vec![command], "{name}");
    }
    // Every toolbar button is reached with Tab.
    let mut reached = Vec::new();
    for _ in 0..14 {
        harness.key_press(egui::Key::Tab);
        harness.run_steps(1);
        if let Some(node) = harness.query_by(|n| n.is_focused()) {
            reached.push(node.accesskit_node().label().unwrap_or_default());
        }
    }
    for name in ["Mute", "Camera off", "Share screen", "Send file", "Hang up"] {
        assert!(
            reached.iter().any(|r| r == name),
            "Tab never reaches {name:?}: {reached:?}"
        );
    }
}

#[test]
fn space_talks_while_muted() {
    let mut harness = call_harness(Call::Connected, SIZES[1]);
    harness.state_mut().call.mic_muted = true;
    harness.key_down(egui::Key::Space);
    harness.run_steps(1);
    assert!(
        harness
            .state()
            .commands
            .contains(&super::command::UiCommand::PushToTalk(true)),
        "{:?}",
        harness.state().commands
    );
    harness.state_mut().call.push_to_talk(true);
    assert!(harness.state().call.talking);
    harness.state_mut().commands.clear();
    harness.key_up(egui::Key::Space);
    harness.run_steps(1);
    assert_eq!(
        harness.state().commands,
        vec![super::command::UiCommand::PushToTalk(false)]
    );
    harness.state_mut().call.push_to_talk(false);
    assert!(!harness.state().call.talking);
    assert!(harness.state().call.mic_muted, "still muted after talking");
}

#[test]
fn choosing_a_device_in_the_call_menus_asks_for_it() {
    use super::command::UiCommand;
    use super::devices::Choice;
    let choice = |label: &str, spec: &str| Choice {
        label: label.into(),
        spec: spec.into(),
    };
    let mut harness = call_harness(Call::Connected, SIZES[0]);
    harness.state_mut().lists = DeviceLists {
        cameras: vec![choice("Test pattern", "test"), choice("USB camera", "usb")],
        mics: vec![
            choice("Default microphone", "default"),
            choice("Headset mic", "headset"),
        ],
        speakers: vec![
            choice("Default speaker", "default"),
            choice("Headphones", "phones"),
        ],
        screens: vec![],
        loaded: true,
    };
    harness.run_steps(2);
    for (menu, item, command) in [
        (
            "Camera choice",
            "USB camera",
            UiCommand::ChooseCamera("usb".into()),
        ),
        (
            "Microphone and speaker",
            "Headset mic",
            UiCommand::ChooseMic("headset".into()),
        ),
        (
            "Microphone and speaker",
            "Headphones",
            UiCommand::ChooseSpeaker("phones".into()),
        ),
    ] {
        harness.state_mut().commands.clear();
        harness.get_by_role_and_label(Role::Button, menu).click();
        harness.run_steps(2);
        harness.get_by_label(item).click();
        harness.run_steps(2);
        assert_eq!(harness.state().commands, vec![command], "{menu}: {item}");
        // Close the menu before the next one.
        harness.key_press(egui::Key::Escape);
        harness.run_steps(2);
    }
}
