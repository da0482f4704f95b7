//! UI tests with egui_kittest: the real app, a real signaling server and a real peer session on
//! loopback (test pattern and test signal as devices), driven by clicks and key presses the way a
//! person would; PNG snapshots of the screens whose content is deterministic (tests/snapshots).

use std::time::{Duration, Instant};

use confab_signaling::{Server, ServerConfig};
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;

use super::call::MUTED_NOTICE;
use super::command::UiCommand;
use super::hooks::Hooks;
use super::hosted::HostState;
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
    let io = MediaIo {
        camera: Some(Box::new(TestPattern::new(320, 180, 15))),
        mic: Some(Box::new(TestSignal::new())),
        speaker: Some(Box::new(NullSink)),
        screen: None,
        video_out: std::sync::Arc::new(Discard),
    };
    peer_with(server_url, room, started, io)
}

/// The other person, with `io` as its devices.
fn peer_with(server_url: &str, room: &str, started: Instant, io: MediaIo) -> Session {
    let config = SessionConfig {
        server_url: server_url.to_owned(),
        server_trust: Default::default(),
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
        max_file_bytes: confab_engine::data_link::DEFAULT_MAX_FILE_BYTES,
        eager_offer: false,
        test: Default::default(),
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
        // What the window shows, to tell a lost click from a slow answer.
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}; the window: {:#?}",
            harness.root()
        );
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

/// A signaling server on a free loopback port, and the runtime it runs on (keep both).
fn local_server() -> (tokio::runtime::Runtime, confab_signaling::RunningServer) {
    let net = tokio::runtime::Runtime::new().unwrap();
    let server = net
        .block_on(Server::start(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )))
        .unwrap();
    (net, server)
}

/// Joins a room nobody is in yet from the lobby, then lets a headless peer (returned) join it,
/// until the window says the call is on.
fn join_and_meet(
    harness: &mut Harness<'_, ConfabApp>,
    net: &tokio::runtime::Runtime,
    url: &str,
) -> Session {
    join_and_meet_with(harness, net, url, |url, room| {
        peer(url, room, Instant::now())
    })
}

/// Like `join_and_meet`, with the peer `start` makes (from the server's address and the room).
fn join_and_meet_with(
    harness: &mut Harness<'_, ConfabApp>,
    net: &tokio::runtime::Runtime,
    url: &str,
    start: impl FnOnce(&str, &str) -> Session,
) -> Session {
    let room = "kfq-wmzt-pxd";
    harness.state_mut().room_input = room.into();
    harness.get_by_label("Join").click();
    run_until(harness, "waiting", |h| {
        h.query_by_label("Waiting for the other person…").is_some()
    });
    let peer = net.block_on(async { start(url, room) });
    run_until(harness, "connected", |h| {
        h.query_by_label("In a call with Peer").is_some()
    });
    peer
}

#[test]
fn lobby_join_call_chat_toggles_hang_up() {
    let (net, server) = local_server();
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    // A fixed address for the snapshots; the real one (a free port) is set before joining.
    settings_for(dir.path(), "wss://confab.example.org:8443", "none", "none");

    let app = ConfabApp::new(egui::Context::default(), Some(dir.path().to_owned()), None);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .build_ui_state(run_app, app);
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
    let peer = join_and_meet(&mut harness, &net, &url);
    run_until(&mut harness, "remote video", |h| {
        h.state()
            .call
            .as_ref()
            .is_some_and(|c| c.remote_texture.is_some())
    });
    // The code follows the data channel's commit-reveal, which may finish after the first frame.
    run_until(&mut harness, "security code", |h| {
        h.state()
            .call
            .as_ref()
            .is_some_and(|c| c.security_code.is_some())
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

    // The self view hidden: its frames are let go until "Show yourself".
    let taken = |h: &Harness<'_, ConfabApp>| h.state().call.as_ref().unwrap().local.counts().put;
    run_until(&mut harness, "the self view", |h| taken(h) > 0);
    harness.state_mut().apply(UiCommand::ToggleSelfView);
    harness.run_steps(2);
    let hidden_at = taken(&harness);
    std::thread::sleep(Duration::from_millis(300));
    harness.run_steps(2);
    assert_eq!(
        taken(&harness),
        hidden_at,
        "a hidden self view takes no frames"
    );
    harness.get_by_label_contains("Show yourself").click();
    run_until(&mut harness, "the self view again", |h| {
        taken(h) > hidden_at
    });

    // Toggles, by button and by shortcut.
    harness.get_by_label("Mute").click();
    harness.run_steps(2);
    assert!(harness.state().call.as_ref().unwrap().mic_muted);
    harness.get_by_label("Unmute");
    // The test signal goes on into the muted microphone: the window says so, once.
    let notices = |h: &Harness<'_, ConfabApp>| {
        let call = h.state().call.as_ref().unwrap();
        let muted = call.stats.snapshot().audio_send.muted_level_dbfs;
        let shown = call.warnings.iter().filter(|(_, w)| w == MUTED_NOTICE);
        (shown.count(), muted)
    };
    run_until(&mut harness, "the notice that we are muted", |h| {
        notices(h).0 > 0
    });
    harness.run_steps(2);
    harness.get_by_label_contains("You are muted");
    harness.run_steps(30);
    assert_eq!(notices(&harness).0, 1, "{:?}", notices(&harness));
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

/// The network runtime and server, the settings folder, the app and the peer, of a call.
type InACall = (
    tokio::runtime::Runtime,
    confab_signaling::RunningServer,
    tempfile::TempDir,
    Harness<'static, ConfabApp>,
    Session,
);

/// The app (no camera, no microphone) in a call with a peer session on a local server.
fn in_a_call() -> InACall {
    in_a_call_with("none", Hooks::default())
}

/// The app, with `camera` opened through `hooks`, in a call with a peer session on a local
/// server.
fn in_a_call_with(camera: &str, hooks: Hooks) -> InACall {
    let (net, server) = local_server();
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    settings_for(dir.path(), &url, camera, "none");
    let app = ConfabApp::with_hooks(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        None,
        hooks,
    );
    let mut harness = harness_for(app);
    let peer = join_and_meet(&mut harness, &net, &url);
    (net, server, dir, harness, peer)
}

#[test]
fn closing_the_window_during_a_call_leaves_the_room() {
    let (net, server, _dir, mut harness, peer) = in_a_call();
    assert_eq!(server.hub().counts(), (1, 2));

    // The window closes: eframe calls `on_exit`, then the app (and its runtime) is dropped.
    eframe::App::on_exit(harness.state_mut(), None);
    drop(harness);
    assert_we_left(&net, server, peer);
}

/// The window closes right after "Hang up": the call hung up is still ending when the app (and
/// its runtime) goes, and must say goodbye all the same.
#[test]
fn closing_the_window_right_after_hanging_up_leaves_the_room() {
    let (net, server, _dir, mut harness, peer) = in_a_call();
    harness.get_by_label("Hang up").click();
    harness.step();
    assert!(harness.state().call.is_none(), "hung up, back in the lobby");
    eframe::App::on_exit(harness.state_mut(), None);
    drop(harness);
    assert_we_left(&net, server, peer);
}

/// Minimized, the window draws nothing, and eframe runs only the app's logic (`tick`): the
/// call's events are still taken, and the other side is asked for the least video (180p20)
/// until the window shows again, when the picture comes back about a second later.
#[test]
fn a_minimized_window_asks_for_the_least_video_and_still_takes_the_calls_events() {
    let (net, server) = local_server();
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    settings_for(dir.path(), &url, "none", "none");
    let app = ConfabApp::new(egui::Context::default(), Some(dir.path().to_owned()), None);
    let mut harness = harness_for(app);
    let peer = join_and_meet_with(&mut harness, &net, &url, |url, room| {
        let io = MediaIo {
            camera: Some(Box::new(TestPattern::new(640, 360, 15))),
            mic: None,
            speaker: Some(Box::new(NullSink)),
            screen: None,
            video_out: std::sync::Arc::new(Discard),
        };
        peer_with(url, room, Instant::now(), io)
    });
    let sent = |peer: &Session| {
        let s = peer.stats.snapshot();
        (s.video_send.height, s.video_send.receiver_max_pixel_rate)
    };
    run_until(&mut harness, "360p from the peer", |_| {
        sent(&peer) == (360, 0)
    });

    // Minimized: frames of logic alone, as eframe runs them while nothing is drawn.
    peer.commands
        .try_send(confab_engine::session::SessionCommand::Chat(
            "still there?".into(),
        ))
        .unwrap();
    let chat_taken = |app: &ConfabApp| {
        app.call
            .as_ref()
            .is_some_and(|c| c.chat.iter().any(|l| l.text == "still there?"))
    };
    run_minimized_until(
        &mut harness,
        |app| {
            format!(
                "the peer to send the least and the chat to be taken; the peer sends {:?} \
                 (height, asked pixels a second); chat taken: {}",
                sent(&peer),
                chat_taken(app)
            )
        },
        |app| sent(&peer) == (180, confab_engine::thread_load::MIN_ASK) && chat_taken(app),
    );
    let not_shown = |h: &Harness<'_, ConfabApp>| {
        let call = h.state().call.as_ref().expect("in the call");
        call.stats.snapshot().video_recv.not_shown
    };
    assert!(not_shown(&harness));

    // Shown again: the ask is taken back at once, and the peer goes back to 360p in one step
    // (not through 270p, a rung each 3 s, as a link that had been too slow).
    let mut heights = Vec::new();
    run_until(&mut harness, "360p again", |_| {
        let (height, asked) = sent(&peer);
        if heights.last() != Some(&height) {
            heights.push(height);
        }
        (height, asked) == (360, 0)
    });
    assert_eq!(
        heights,
        [180, 360],
        "heights sent after the window showed again"
    );
    assert!(!not_shown(&harness));
    drop(harness);
    drop(peer);
    net.block_on(server.shutdown()).unwrap();
}

/// The peer hears at once that we left (a seat kept for a resume would be "away" for 30 s),
/// ends its call too, and the room is empty; then the server stops.
fn assert_we_left(
    net: &tokio::runtime::Runtime,
    server: confab_signaling::RunningServer,
    peer: Session,
) {
    let ended =
        net.block_on(async { tokio::time::timeout(Duration::from_secs(2), peer.task).await });
    assert!(
        matches!(ended, Ok(Ok(Ok(confab_engine::session::Ended::PeerLeft)))),
        "{ended:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while server.hub().counts() != (0, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.hub().counts(), (0, 0), "rooms and people left");
    net.block_on(server.shutdown()).unwrap();
}

/// A camera open in one place at a time, as a real one is (V4L2 refuses a second stream):
/// opening it while it is open fails and is counted.
#[derive(Clone, Default)]
struct OneCamera {
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

struct HeldCamera {
    pattern: TestPattern,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl confab_media::VideoSource for HeldCamera {
    fn name(&self) -> &str {
        "the one camera"
    }
    fn next_frame(&mut self) -> Result<VideoFrame, confab_media::CaptureError> {
        confab_media::VideoSource::next_frame(&mut self.pattern)
    }
}

impl Drop for HeldCamera {
    fn drop(&mut self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl OneCamera {
    fn hooks(&self) -> Hooks {
        let camera = self.clone();
        Hooks {
            open_camera: std::sync::Arc::new(move |_spec, width, height, fps| {
                use std::sync::atomic::Ordering::SeqCst;
                if camera.open.swap(true, SeqCst) {
                    camera.refused.fetch_add(1, SeqCst);
                    return Err(confab_media::CaptureError::Unavailable(
                        "the camera is in use".into(),
                    ));
                }
                camera.opened.fetch_add(1, SeqCst);
                Ok(Some(Box::new(HeldCamera {
                    pattern: TestPattern::new(width, height, fps),
                    open: camera.open.clone(),
                }) as _))
            }),
            ..Hooks::default()
        }
    }

    fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The app in a call with media flowing (its threads take a moment to stop), with a peer
/// session on a local server; its camera a `OneCamera`, opened by the preview, then the call.
fn in_a_call_with_one_camera() -> (
    tokio::runtime::Runtime,
    confab_signaling::RunningServer,
    tempfile::TempDir,
    OneCamera,
    Harness<'static, ConfabApp>,
    Session,
) {
    let camera = OneCamera::default();
    let (net, server, dir, harness, peer) = in_a_call_with("test", camera.hooks());
    assert_eq!(
        (camera.opened(), camera.refused()),
        (2, 0),
        "the preview's camera, then the call's"
    );
    (net, server, dir, camera, harness, peer)
}

/// Closes the window as eframe does, then stops the server.
fn close(
    mut harness: Harness<'static, ConfabApp>,
    net: &tokio::runtime::Runtime,
    server: confab_signaling::RunningServer,
) {
    eframe::App::on_exit(harness.state_mut(), None);
    drop(harness);
    net.block_on(server.shutdown()).unwrap();
}

/// A link to the room we are in, opened during a call (the invitation clicked again): the next
/// call opens the camera once the call being left has closed it (a real camera is open in one
/// place at a time), and joins once that call has left the room.
#[test]
fn a_link_during_a_call_opens_the_camera_once_the_call_has_let_go() {
    use super::call::CallState;

    let (net, server, _dir, camera, mut harness, peer) = in_a_call_with_one_camera();

    harness.state_mut().open_link(crate::link::JoinLink {
        room: "kfq-wmzt-pxd".parse().unwrap(),
        server: None,
    });
    run_until(&mut harness, "the question", |h| {
        h.query_by_label("Leave this call and join room kfq-wmzt-pxd?")
            .is_some()
    });
    harness.get_by_label("Join").click();
    // The peer hears that we left, and its call ends (it leaves the room too).
    run_until(&mut harness, "the peer's call to end", |_| {
        peer.task.is_finished()
    });
    let ended = net.block_on(peer.task);
    assert!(
        matches!(ended, Ok(Ok(confab_engine::session::Ended::PeerLeft))),
        "{ended:?}"
    );
    // The new call is in the room: waiting, or it met the peer on its way out.
    run_until(&mut harness, "the new call in the room", |h| {
        h.state().starting.is_none()
            && h.state()
                .call
                .as_ref()
                .is_some_and(|c| matches!(c.state, CallState::Waiting | CallState::PeerLeft))
    });
    assert_eq!(
        (camera.opened(), camera.refused()),
        (3, 0),
        "the new call opened the camera, and not while the old one had it"
    );
    let warnings: Vec<String> = harness
        .state()
        .call
        .as_ref()
        .expect("in the new call")
        .warnings
        .iter()
        .map(|(_, w)| w.clone())
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    close(harness, &net, server);
}

/// Minimized in the lobby, nobody sees the preview: the camera (and its light) is let go until
/// the window shows again, when the preview opens it again.
#[test]
fn a_minimized_lobby_lets_go_of_the_camera_until_the_window_shows_again() {
    let camera = OneCamera::default();
    let dir = tempfile::tempdir().unwrap();
    settings_for(dir.path(), "ws://127.0.0.1:9", "test", "none");
    let app = ConfabApp::with_hooks(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        None,
        camera.hooks(),
    );
    let mut harness = harness_for(app);
    run_until(&mut harness, "the preview's picture", |h| {
        h.state().preview_texture.is_some()
    });
    assert!(camera.is_open());

    // Frames of logic alone, as eframe runs them while the window is minimized.
    run_minimized_until(
        &mut harness,
        |_| "the camera to close".into(),
        |_| !camera.is_open(),
    );
    assert!(harness.state().preview.is_none());

    run_until(&mut harness, "the preview again", |h| {
        h.state().preview_texture.is_some()
    });
    assert_eq!(
        (camera.opened(), camera.refused()),
        (2, 0),
        "the preview opened the camera again, once"
    );
}

/// Hanging up a call with media flowing: the lobby's preview opens the camera once the call
/// has closed it.
#[test]
fn after_hanging_up_the_preview_opens_the_camera_once_the_call_has_let_go() {
    let (net, server, _dir, camera, mut harness, _peer) = in_a_call_with_one_camera();
    harness.get_by_label("Hang up").click();
    run_until(&mut harness, "the preview's picture", |h| {
        h.state().preview_texture.is_some()
    });
    assert_eq!(
        (camera.opened(), camera.refused()),
        (3, 0),
        "the preview opened the camera again, and not while the call had it"
    );
    close(harness, &net, server);
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
        .build_ui_state(run_app, app);
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

/// A port nobody listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs frames of the app's logic alone, as eframe does while the window is minimized (nothing
/// is drawn), until `done` or 20 s; `what` says what was waited for, on failure.
fn run_minimized_until(
    harness: &mut Harness<'_, ConfabApp>,
    what: impl Fn(&ConfabApp) -> String,
    mut done: impl FnMut(&ConfabApp) -> bool,
) {
    let ctx = harness.ctx.clone();
    let mut hidden = egui::RawInput::default();
    hidden
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .minimized = Some(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = ctx.run_logic(&hidden, |ctx| harness.state_mut().tick(ctx));
        if done(harness.state()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "minimized, timed out waiting for: {}",
            what(harness.state())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A frame of the app as eframe runs it: its logic, then its window.
fn run_app(ui: &mut egui::Ui, app: &mut ConfabApp) {
    app.tick(ui.ctx());
    app.show(ui);
}

fn harness_for(app: ConfabApp) -> Harness<'static, ConfabApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .build_ui_state(run_app, app);
    let ctx = harness.ctx.clone();
    harness.state_mut().ctx = ctx;
    harness
}

/// Something slow the test lets finish: it lasts at least `at_least`, and until the test calls
/// `release` (at most a minute, so a window that waits for it fails instead of hanging).
struct Gate {
    released: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    at_least: Duration,
    /// How many waits have begun and ended.
    began: std::sync::atomic::AtomicUsize,
    ended: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn new(at_least: Duration) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            released: std::sync::Mutex::new(false),
            wake: std::sync::Condvar::new(),
            at_least,
            began: 0.into(),
            ended: 0.into(),
        })
    }

    fn wait(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.began.fetch_add(1, SeqCst);
        let start = Instant::now();
        let mut released = self.released.lock().unwrap();
        while !*released && start.elapsed() < Duration::from_secs(60) {
            released = self
                .wake
                .wait_timeout(released, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        drop(released);
        std::thread::sleep(self.at_least.saturating_sub(start.elapsed()));
        self.ended.fetch_add(1, SeqCst);
    }

    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn began(&self) -> usize {
        self.began.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Steps `frames` frames; each must come back although the slow thing has not finished.
fn draw_frames_while(harness: &mut Harness<'_, ConfabApp>, gate: &Gate, frames: usize) {
    for frame in 0..frames {
        harness.step();
        assert_eq!(gate.ended(), 0, "frame {frame} waited for the slow device");
    }
}

#[test]
fn the_window_draws_while_a_camera_takes_3_s_to_open() {
    let dir = tempfile::tempdir().unwrap();
    settings_for(
        dir.path(),
        &format!("ws://127.0.0.1:{}", dead_port()),
        "test",
        "none",
    );
    let gate = Gate::new(Duration::from_secs(3));
    let slow = gate.clone();
    let hooks = Hooks {
        open_camera: std::sync::Arc::new(move |_spec, width, height, fps| {
            slow.wait();
            Ok(Some(Box::new(TestPattern::new(width, height, fps)) as _))
        }),
        ..Hooks::default()
    };
    let app = ConfabApp::with_hooks(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        None,
        hooks,
    );
    let mut harness = harness_for(app);
    // The lobby preview is opening the camera (its thread may take a moment to get there on a
    // busy machine); the lobby draws and takes clicks meanwhile.
    run_until(
        &mut harness,
        "the preview to begin opening the camera",
        |_| gate.began() == 1,
    );
    draw_frames_while(&mut harness, &gate, 10);
    assert!(harness.state().preview_texture.is_none(), "no picture yet");
    assert_eq!(gate.began(), 1, "the preview opens the camera");
    harness.state_mut().room_input = "kfq-wmzt-pxd".into();
    harness.get_by_label("Join").click();
    // Joining stops the preview (still stuck opening) and opens the camera for the call: the
    // window keeps drawing, and its Cancel button works, while both wait.
    draw_frames_while(&mut harness, &gate, 30);
    harness.get_by_label("Opening camera and microphone…");
    assert!(harness.state().starting.is_some());
    harness.get_by_label("Cancel").click();
    draw_frames_while(&mut harness, &gate, 10);
    harness.get_by_label("Room code or link");
    assert!(harness.state().starting.is_none());

    // Once the camera opens, the preview shows it.
    gate.release();
    run_until(&mut harness, "the preview picture", |h| {
        h.state().preview_texture.is_some()
    });
    // And a call starts with it (then fails: nobody serves that port) without the window waiting.
    // Only a call's session says it cannot reach the server, so the error shows the call began.
    // (Waiting to see `call` set first raced: the port refuses at once, and on a loaded machine
    // the call was made and ended within one frame's passes, so it was never seen in between.)
    harness.get_by_label("Join").click();
    run_until(&mut harness, "the error in the lobby", |h| {
        h.query_by_label_contains("cannot reach the signaling server")
            .is_some()
    });
    assert!(harness.state().call.is_none(), "back in the lobby");
    assert!(harness.state().starting.is_none());
}

#[test]
fn the_window_draws_while_the_hosted_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        name: "Ada".into(),
        camera: "none".into(),
        mic: "none".into(),
        speaker: "null".into(),
        server_mode: ServerMode::Host,
        ..Settings::default()
    };
    settings.save(Some(dir.path())).unwrap();
    let gate = Gate::new(Duration::ZERO);
    let slow = gate.clone();
    let hooks = Hooks {
        start_server: std::sync::Arc::new(move |_port, _dir| {
            let slow = slow.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || slow.wait())
                    .await
                    .map_err(|e| e.to_string())?;
                Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
        ..Hooks::default()
    };
    let app = ConfabApp::with_hooks(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        None,
        hooks,
    );
    let mut harness = harness_for(app);
    // Nothing is started (nothing listens) until the person hosts: making a room starts it.
    harness.run_steps(5);
    assert_eq!(gate.began(), 0, "no server before hosting");
    harness.get_by_label("New room").click();
    run_until(&mut harness, "the server start to begin", |_| {
        gate.began() == 1
    });
    draw_frames_while(&mut harness, &gate, 10);
    harness.get_by_label("Starting the local server…");
    // Joining the room waits for the server, and the window draws meanwhile.
    draw_frames_while(&mut harness, &gate, 3);
    harness.get_by_label("Start").click();
    draw_frames_while(&mut harness, &gate, 10);
    harness.get_by_label("Starting the local server…");
    harness.get_by_label("Cancel");
    assert!(harness.state().waiting_for_server.is_some());

    // Once the server is up, the call goes in and waits for the other person.
    gate.release();
    // The call window's first frame draws its toolbar where it stays: a click aimed at that
    // frame hits the button (egui sizes panels from the frame before, and the toolbar used to
    // start 36 px too low and jump, so the "Hang up" below now and then missed).
    run_until(&mut harness, "the call window", |h| {
        h.query_by_label("Hang up").is_some()
    });
    let first = harness.get_by_label("Hang up").rect();
    harness.run_steps(2);
    assert_eq!(
        harness.get_by_label("Hang up").rect(),
        first,
        "the toolbar moved"
    );
    run_until(&mut harness, "the room on the hosted server", |h| {
        h.query_by_label("Waiting for the other person…").is_some()
    });
    harness.get_by_label("Hang up").click();
    run_until(&mut harness, "the lobby", |h| {
        h.query_by_label("Others on your network use:").is_some()
    });
    let HostState::Running(hosted) = &harness.state().host else {
        panic!("the hosted server runs");
    };
    assert!(hosted.server.ws_url().starts_with("ws://127.0.0.1:"));
}

#[test]
fn the_windowed_join_honours_every_call_flag() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    settings_for(dir.path(), "wss://confab.example.org:8443", "none", "none");
    let receive = dir.path().join("in");
    let server = format!("ws://127.0.0.1:{}", dead_port());
    let cli = crate::cli::Cli::try_parse_from([
        "confab",
        "join",
        "kfq-wmzt-pxd",
        "--server",
        &server,
        "--camera",
        "none",
        "--mic",
        "none",
        "--speaker",
        "null",
        "--screen",
        "window:no such window",
        "--video-size",
        "640x360",
        "--fps",
        "15",
        "--video-bitrate",
        "700",
        "--no-aec",
        "--no-ns",
        "--no-agc",
        "--no-hpf",
        "--ice-server",
        "turn:alice:secret@10.0.0.1:3478",
        "--relay-only",
        "--bind",
        "127.0.0.1:0",
        "--receive-dir",
        receive.to_str().unwrap(),
    ])
    .unwrap();
    let Some(crate::cli::Command::Join(args)) = cli.command else {
        panic!("a join");
    };
    let config = crate::window_call(&args).unwrap();
    let app = ConfabApp::new(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        Some(config),
    );
    let starting = app.starting.as_ref().expect("the call starts at once");
    let call = &starting.call;
    assert_eq!(
        call.room.as_ref().map(ToString::to_string).as_deref(),
        Some("kfq-wmzt-pxd")
    );
    assert_eq!(call.server_url.as_deref(), Some(server.as_str()));
    assert_eq!(call.screen.as_deref(), Some("window:no such window"));
    assert_eq!(
        (
            call.camera.as_str(),
            call.mic.as_str(),
            call.speaker.as_str()
        ),
        ("none", "none", "null")
    );
    assert_eq!(
        call.name.as_deref(),
        Some("Ada"),
        "the settings' name fills in"
    );
    let s = &starting.config;
    assert_eq!(s.server_url, server);
    assert_eq!(s.video.bitrate_bps, 700_000);
    assert_eq!(s.video.max_fps, 15.0);
    assert_eq!(
        (
            call.video.size.width,
            call.video.size.height,
            call.video.fps
        ),
        (640, 360, 15)
    );
    assert_eq!(
        s.apm,
        ApmSettings {
            echo_cancellation: false,
            noise_suppression: false,
            gain_control: false,
            high_pass_filter: false,
        }
    );
    assert_eq!(s.extra_ice_servers.len(), 1);
    assert_eq!(s.extra_ice_servers[0].urls, vec!["turn:10.0.0.1:3478"]);
    assert_eq!(s.extra_ice_servers[0].username.as_deref(), Some("alice"));
    assert!(s.relay_only);
    assert_eq!(
        s.bind,
        vec!["127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()]
    );
    assert_eq!(s.receive_dir, receive);
    assert_eq!(s.name, "Ada");
    assert!(!s.auto_accept_files, "the window asks before saving a file");
}

/// Everything a sink was given, shared with the test.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<f32>>>);

impl Heard {
    /// The power of `hz` and of the test signal's 440 Hz in the last 200 ms heard.
    fn last_tones(&self, hz: f64) -> Option<(f64, f64)> {
        let heard = self.0.lock().unwrap();
        let last = heard.get(heard.len().checked_sub(9_600)?..)?;
        let power = |hz| confab_media::audio::tone_power(last, hz, 48_000);
        Some((power(hz), power(440.0)))
    }
}

struct HeardSink(Heard);

impl confab_media::AudioSink for HeardSink {
    fn name(&self) -> &str {
        "recording"
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), confab_media::CaptureError> {
        self.0 .0.lock().unwrap().extend_from_slice(samples);
        Ok(())
    }
}

/// A steady 1 kHz tone in real time: the other microphone (the test signal is 440 Hz).
struct Tone {
    samples: u64,
    pacer: confab_media::Pacer,
}

impl confab_media::AudioSource for Tone {
    fn name(&self) -> &str {
        "tone"
    }
    fn read(&mut self, out: &mut [f32]) -> Result<u64, confab_media::CaptureError> {
        self.pacer.wait();
        for s in out.iter_mut() {
            let t = self.samples as f64 / 48_000.0;
            *s = (0.3 * (std::f64::consts::TAU * 1000.0 * t).sin()) as f32;
            self.samples += 1;
        }
        Ok(confab_media::clock::now_us())
    }
}

/// The size of every frame the other person decoded, last first.
#[derive(Default)]
struct Sizes(std::sync::Mutex<Vec<(u32, u32)>>);

impl VideoOut for Sizes {
    fn frame(&self, frame: &VideoFrame) {
        self.0.lock().unwrap().push((frame.width, frame.height));
    }
}

impl Sizes {
    fn last(&self) -> Option<(u32, u32)> {
        self.0.lock().unwrap().last().copied()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn devices_chosen_during_a_call_are_switched_to_at_once() {
    use super::command::UiCommand;
    use confab_devices::VideoSpec;
    use std::sync::Arc;
    let (net, server) = local_server();
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    Settings {
        name: "Ada".into(),
        camera: "test".into(),
        mic: "test".into(),
        speaker: "null".into(),
        server_mode: ServerMode::Remote,
        server_url: url.clone(),
        // Nothing between the tone and the wire that would shape it.
        echo_cancellation: false,
        noise_suppression: false,
        ..Settings::default()
    }
    .save(Some(dir.path()))
    .unwrap();
    // Synthetic devices: a square camera, a broken one, a tone, a speaker that records.
    let app_heard = Heard::default();
    let hooks = Hooks {
        open_camera: Arc::new(|spec: &VideoSpec, width, height, fps| match spec {
            VideoSpec::Device(name) if name == "square" => {
                Ok(Some(Box::new(TestPattern::new(240, 240, 15)) as _))
            }
            VideoSpec::Device(name) if name == "broken" => Err(
                confab_media::CaptureError::Unavailable("the device is busy".into()),
            ),
            spec => confab_devices::open_camera(spec, width, height, fps),
        }),
        open_mic: Arc::new(|spec: &VideoSpec| match spec {
            VideoSpec::Device(name) if name == "tone" => Ok(Some(Box::new(Tone {
                samples: 0,
                pacer: confab_media::Pacer::new(Duration::from_millis(10)),
            }) as _)),
            spec => confab_devices::open_mic(spec),
        }),
        open_speaker: {
            let heard = app_heard.clone();
            Arc::new(move |spec: &str| match spec {
                "phones" => Ok(Box::new(HeardSink(heard.clone())) as _),
                spec => confab_devices::open_speaker(spec),
            })
        },
        ..Hooks::default()
    };
    let app = ConfabApp::with_hooks(
        egui::Context::default(),
        Some(dir.path().to_owned()),
        None,
        hooks,
    );
    let mut harness = harness_for(app);
    let room = "kfq-wmzt-pxd";
    harness.state_mut().room_input = room.into();
    harness.get_by_label("Join").click();
    let sizes = Arc::new(Sizes::default());
    let peer_heard = Heard::default();
    let io = MediaIo {
        camera: Some(Box::new(TestPattern::new(320, 180, 15))),
        mic: Some(Box::new(TestSignal::new())),
        speaker: Some(Box::new(HeardSink(peer_heard.clone()))),
        screen: None,
        video_out: sizes.clone(),
    };
    let peer = net.block_on(async { peer_with(&url, room, Instant::now(), io) });
    run_until(&mut harness, "the camera's 16:9 frames", |_| {
        sizes.last().is_some_and(|(w, h)| w * 9 == h * 16)
    });

    // Another camera, of another shape: the other person decodes its frames.
    harness
        .state_mut()
        .apply(UiCommand::ChooseCamera("square".into()));
    run_until(&mut harness, "the square camera's frames", |_| {
        sizes.last().is_some_and(|(w, h)| w == h)
    });
    assert_eq!(
        harness.state().settings.camera,
        "square",
        "saved for the next call"
    );

    // One that cannot open: the square one stays in use, and a short sentence says why.
    harness
        .state_mut()
        .apply(UiCommand::ChooseCamera("broken".into()));
    run_until(&mut harness, "the toast", |h| {
        h.query_by_label_contains("Still using the one before")
            .is_some()
    });
    harness.get_by_label_contains("The camera is busy or not allowed.");
    let before = sizes.count();
    run_until(&mut harness, "more square frames", |_| {
        sizes.count() > before + 10
    });
    assert_eq!(sizes.last().map(|(w, h)| w == h), Some(true));
    assert_eq!(
        harness.state().settings.camera,
        "square",
        "a broken one is not saved"
    );

    // Another microphone: the other person hears the 1 kHz tone instead of the test signal.
    assert!(
        peer_heard
            .last_tones(1000.0)
            .is_some_and(|(tone, signal)| signal > tone),
        "the test signal first"
    );
    harness
        .state_mut()
        .apply(UiCommand::ChooseMic("tone".into()));
    run_until(&mut harness, "the tone at the other side", |_| {
        peer_heard
            .last_tones(1000.0)
            .is_some_and(|(tone, signal)| tone > 100.0 * signal.max(1e-9))
    });
    assert_eq!(harness.state().settings.mic, "tone");

    // Another speaker: what the other person sends (the test signal) plays on it.
    harness
        .state_mut()
        .apply(UiCommand::ChooseSpeaker("phones".into()));
    run_until(&mut harness, "the test signal on the new speaker", |_| {
        app_heard
            .last_tones(1000.0)
            .is_some_and(|(tone, signal)| signal > 100.0 * tone.max(1e-9))
    });
    assert_eq!(harness.state().settings.speaker, "phones");

    harness.get_by_label("Hang up").click();
    run_until(&mut harness, "lobby", |h| {
        h.query_by_label("Room code or link").is_some()
    });
    drop(peer);
    drop(harness);
    net.block_on(server.shutdown()).unwrap();
}
