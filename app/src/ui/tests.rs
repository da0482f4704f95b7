//! UI tests with egui_kittest: the real app, a real signaling server and a real peer session on
//! loopback (test pattern and test signal as devices), driven by clicks and key presses the way a
//! person would; PNG snapshots of the screens whose content is deterministic (tests/snapshots).

use std::time::{Duration, Instant};

use confab_signaling::{Server, ServerConfig};
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;

use super::settings::{ServerMode, Settings};
use super::ConfabApp;
use confab_codecs::apm::ApmSettings;
use confab_codecs::h264::EncoderSettings;
use confab_devices::test_sources::{TestPattern, TestSignal};
use confab_devices::wav::NullSink;
use confab_engine::peer::NetworkSettings;
use confab_engine::session::{MediaIo, Session, SessionConfig};
use confab_media::VideoFrame;
use confab_media::VideoOut;

struct Discard;
impl VideoOut for Discard {
    fn frame(&self, _frame: &VideoFrame) {}
}

/// The other person: a headless session with the test pattern.
fn peer(server_url: &str, room: &str, started: Instant) -> Session {
    let config = SessionConfig {
        server_url: server_url.to_owned(),
        room: Some(room.parse().unwrap()),
        name: "Peer".into(),
        extra_ice_servers: Vec::new(),
        relay_only: false,
        bind: NetworkSettings::default_bind(),
        video: EncoderSettings {
            bitrate_bps: 400_000,
            max_fps: 15.0,
            screen: false,
        },
        audio_bitrate_bps: 32_000,
        apm: ApmSettings {
            echo_cancellation: false,
            noise_suppression: false,
            gain_control: false,
            high_pass_filter: false,
        },
        receive_dir: std::env::temp_dir(),
        auto_accept_files: true,
        eager_offer: false,
    };
    let io = MediaIo {
        camera: Some(Box::new(TestPattern::new(320, 180, 15))),
        mic: Some(Box::new(TestSignal::new())),
        speaker: Some(Box::new(NullSink)),
        screen: None,
        video_out: std::sync::Arc::new(Discard),
    };
    Session::start(config, io, started)
}

/// Steps the UI (in real time: the network runs on its own) until `done` or 20 s.
fn run_until(
    harness: &mut Harness<'_, ConfabApp>,
    what: &str,
    mut done: impl FnMut(&mut Harness<'_, ConfabApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn settings_for(dir: &std::path::Path, server_url: &str, camera: &str, mic: &str) {
    let settings = Settings {
        name: "Ada".into(),
        camera: camera.into(),
        mic: mic.into(),
        speaker: "null".into(),
        server_mode: ServerMode::Remote,
        server_url: server_url.into(),
        ..Settings::default()
    };
    settings.save(Some(dir)).unwrap();
}

#[test]
fn lobby_join_call_chat_toggles_hang_up() {
    let net = tokio::runtime::Runtime::new().unwrap();
    let server = net
        .block_on(Server::start(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )))
        .unwrap();
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    // A fixed address for the snapshots; the real one (a free port) is set before joining.
    settings_for(dir.path(), "wss://confab.example.org:8443", "none", "none");

    let app = ConfabApp::new(egui::Context::default(), Some(dir.path().to_owned()), None);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .build_ui_state(|ui, app: &mut ConfabApp| app.show(ui), app);
    let ctx = harness.ctx.clone();
    harness.state_mut().ctx = ctx;
    run_until(&mut harness, "device lists", |h| {
        h.state().devices.lock().unwrap().loaded
    });
    harness.run_steps(3);
    harness.get_by_label("Room code or link");
    harness.snapshot("lobby");

    // A bad code is refused with a reason, and nothing starts.
    harness.state_mut().room_input = "not a code".into();
    harness.get_by_label("Join").click();
    harness.run_steps(2);
    harness.get_by_label_contains("a room code is 10 letters");
    harness.snapshot("lobby-bad-code");

    // Test devices for the call; join a room nobody is in yet.
    harness.state_mut().settings.server_url = url.clone();
    harness.state_mut().settings.download_dir = dir.path().join("downloads").display().to_string();
    harness.state_mut().settings.camera = "test".into();
    harness.state_mut().settings.mic = "test".into();
    let room = "kfq-wmzt-pxd";
    harness.state_mut().room_input = room.into();
    harness.get_by_label("Join").click();
    run_until(&mut harness, "waiting", |h| {
        h.query_by_label("Waiting for the other person…").is_some()
    });

    let peer = net.block_on(async { peer(&url, room, Instant::now()) });
    run_until(&mut harness, "connected", |h| {
        h.query_by_label("In a call with Peer").is_some()
    });
    run_until(&mut harness, "remote video", |h| {
        h.state()
            .call
            .as_ref()
            .is_some_and(|c| c.remote_texture.is_some())
    });
    let code = harness
        .state()
        .call
        .as_ref()
        .unwrap()
        .security_code
        .clone()
        .expect("a security code");
    harness.get_by_label_contains(&format!("Security code {code}"));
    assert_eq!(
        peer.stats.snapshot().security_code,
        Some(code),
        "both sides show the same code"
    );

    // Toggles, by button and by shortcut.
    harness.get_by_label("Mute").click();
    harness.run_steps(2);
    assert!(harness.state().call.as_ref().unwrap().mic_muted);
    harness.get_by_label("Unmute");
    harness.key_press(egui::Key::V);
    harness.run_steps(2);
    assert!(harness.state().call.as_ref().unwrap().camera_off);
    harness.get_by_label("Camera on");
    harness.key_press(egui::Key::I);
    harness.run_steps(2);
    harness.get_by_label("Call statistics");

    // Chat: open the panel, type, send; the peer gets it.
    harness.get_by_label("Chat").click();
    harness.run_steps(2);
    harness.state_mut().call.as_mut().unwrap().chat_input = "hello from the window".into();
    harness.get_by_label("Send").click();
    harness.run_steps(2);
    run_until(&mut harness, "chat delivered", |_| {
        peer.stats.snapshot().chat.received == vec!["hello from the window".to_owned()]
    });

    // A file from the peer: offered, accepted with a click, saved, progress shown as done.
    let outbox = tempfile::tempdir().unwrap();
    let file = outbox.path().join("confab-ui-test-report.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    peer.commands
        .try_send(confab_engine::session::SessionCommand::SendFile {
            id: 1,
            path: file.clone(),
        })
        .unwrap();
    run_until(&mut harness, "the offer", |h| {
        h.query_by_label("Accept").is_some()
    });
    harness.get_by_label_contains("Receiving confab-ui-test-report.bin");
    harness.get_by_label("Accept").click();
    run_until(&mut harness, "the file saved", |h| {
        h.query_by_label("Saved to your Downloads folder").is_some()
    });
    let saved = std::fs::read(
        dir.path()
            .join("downloads")
            .join("confab-ui-test-report.bin"),
    )
    .unwrap();
    assert_eq!(saved, vec![7u8; 300_000]);

    // Hang up: back in the lobby, and the peer sees us leave.
    harness.get_by_label("Hang up").click();
    run_until(&mut harness, "lobby", |h| {
        h.query_by_label("Room code or link").is_some()
    });
    let ended =
        net.block_on(async { tokio::time::timeout(Duration::from_secs(10), peer.task).await });
    assert!(
        matches!(ended, Ok(Ok(Ok(confab_engine::session::Ended::PeerLeft)))),
        "{ended:?}"
    );
    drop(harness);
    net.block_on(server.shutdown()).unwrap();
}

#[test]
fn a_room_nobody_can_reach_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    settings_for(
        dir.path(),
        &format!("ws://127.0.0.1:{port}"),
        "none",
        "none",
    );
    let app = ConfabApp::new(egui::Context::default(), Some(dir.path().to_owned()), None);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .build_ui_state(|ui, app: &mut ConfabApp| app.show(ui), app);
    let ctx = harness.ctx.clone();
    harness.state_mut().ctx = ctx;
    harness.state_mut().room_input = "kfq-wmzt-pxd".into();
    harness.get_by_label("Join").click();
    run_until(&mut harness, "the error in the lobby", |h| {
        h.query_by_label_contains("cannot reach the signaling server")
            .is_some()
    });
    harness.get_by_label("Room code or link");
}
