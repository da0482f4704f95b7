//! The real `confab` window under Xvfb, in a call with a headless peer that sends the stamped test
//! pattern: a screenshot of the display must show the remote pattern, readable stamp and all.
//! The screenshot is kept in target/ui-screenshots/ for people to look at.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab_e2e::services::Xvfb;
use confab_e2e::{bin, room_code, serial, test_media, Peer, Proc, Server};

fn screenshots_dir() -> PathBuf {
    let dir = confab_e2e::bin_dir().join("..").join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `confab` window on `x`, joined to `room` with `devices` (camera, microphone, speaker
/// flags), in a call with a headless peer sending the test pattern at `size` for `secs`; returned
/// once the window shows the peer's video, with the file the window reports its layout in and
/// its log.
struct WindowCall {
    window: Proc,
    peer: Peer,
    layout: PathBuf,
    log: PathBuf,
}

fn window_call(
    x: &Xvfb,
    dir: &std::path::Path,
    server: &Server,
    room: &str,
    devices: &[&str],
    (size, secs): (&str, &str),
) -> WindowCall {
    let layout = dir.join("layout.json");
    let log = dir.join("window.stderr");
    let window = confab_e2e::command(bin("confab"))
        .args(["join", room, "--server", &server.url])
        .args(devices)
        .env("DISPLAY", &x.display)
        .env("CONFAB_CONFIG_DIR", dir)
        .env("CONFAB_UI_LAYOUT", &layout)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("confab window");
    let window = Proc {
        child: window,
        name: "confab window".into(),
    };
    let peer = Peer::start(
        dir,
        "peer",
        &server.url,
        room,
        &test_media(size, &["--duration", secs, "--wait", "30"]),
    );
    // The window reports where it draws the remote video once it does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !layout.exists() {
        assert!(
            Instant::now() < deadline,
            "the window never showed remote video: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    WindowCall {
        window,
        peer,
        layout,
        log,
    }
}

#[test]
fn the_window_shows_the_other_persons_video() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(1280, 800);
    let server = Server::start(&[]);
    let room = room_code(71);
    let devices = [
        "--camera",
        "test",
        "--mic",
        "test",
        "--speaker",
        "null",
        "--name",
        "Window",
    ];
    let WindowCall {
        window: _window,
        peer,
        layout,
        ..
    } = window_call(&x, dir.path(), &server, &room, &devices, ("640x360", "12"));
    std::thread::sleep(Duration::from_secs(3));
    let shot = screenshots_dir().join("call.png");
    let status = Command::new("import")
        .args(["-display", &x.display, "-window", "root"])
        .arg(&shot)
        .status()
        .unwrap();
    assert!(status.success());
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    let r: Vec<f64> = layout["remote_video"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let size = &layout["video_size"];
    assert_eq!(size, &serde_json::json!([640, 360]));
    let out = Command::new(bin("confab"))
        .arg("debug-stamp")
        .arg(&shot)
        .arg("--rect")
        .arg(format!("{},{},{},{}", r[0], r[1], r[2], r[3]))
        .args(["--size", "640x360"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no stamp on screen ({}): {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stamp: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "window screenshot {}: remote frame {} shown, {:.0} ms after capture",
        shot.display(),
        stamp["index"],
        stamp["age_ms"]
    );
    assert!(
        stamp["index"].as_u64().unwrap() > 30,
        "a frame from after the start of the call: {stamp}"
    );
    // Screenshot and stamp check took a moment; the frame on screen was fresh when taken.
    assert!(stamp["age_ms"].as_f64().unwrap() < 3000.0, "{stamp}");
    let peer = peer.finish(Duration::from_secs(40));
    assert!(peer.status.success(), "{}", peer.stderr);
}

/// Runs `xdotool` on `display` with `args`; what it printed.
fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool (scripts/setup.sh --test installs it)");
    assert!(out.status.success(), "xdotool {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The window minimized (by the window manager, as a person would) draws nothing; the app still
/// runs its logic, and asks the other side for the least video: the peer sends 180p until the
/// window is shown again, and then 720p again in one step, not a rung at a time.
#[test]
fn a_minimized_window_asks_for_the_least_video_until_it_is_shown_again() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(1280, 800);
    let _wm = x.window_manager();
    let server = Server::start(&[]);
    let room = room_code(77);
    let devices = ["--camera", "none", "--mic", "none", "--speaker", "null"];
    let WindowCall {
        mut window,
        peer,
        log,
        ..
    } = window_call(&x, dir.path(), &server, &room, &devices, ("1280x720", "20"));
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(2));
    let id = xdotool(&x.display, &["search", "--name", "Confab"]);
    let id = id
        .lines()
        .next()
        .expect("the window, by its title")
        .to_owned();
    xdotool(&x.display, &["windowminimize", &id]);
    std::thread::sleep(Duration::from_secs(5));
    xdotool(&x.display, &["windowactivate", &id]);
    let peer = peer.finish(Duration::from_secs(40)).succeeded("peer");
    assert!(
        window.child.try_wait().unwrap().is_none(),
        "the window is still up"
    );
    let said = log();
    assert!(
        said.contains("no longer shows the other person's video")
            && said.contains("the window shows the other person's video"),
        "the window saw itself minimized and shown again: {said}"
    );

    // What the peer sent, second by second: 720p, 180p for the receiver while minimized, then
    // 720p again with nothing in between.
    confab_e2e::assert_least_video_then_all(&confab_e2e::sent_by_second(&peer));
}
