//! `confab://join/CODE?server=URL` links with the real binaries: a headless join through a link
//! meets a peer in that room on that server; a second launch with a link hands it to the Confab
//! already running (a `--listen-links` process, and a real window under Xvfb that then joins).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use confab_e2e::services::Xvfb;
use confab_e2e::{bin, num, room_code, serial, test_media, Peer, Proc, Server};

fn link(room: &str, server: &str) -> String {
    let server: String = server
        .bytes()
        .map(|b| match b {
            b':' => "%3A".to_owned(),
            b'/' => "%2F".to_owned(),
            b => (b as char).to_string(),
        })
        .collect();
    format!("confab://join/{room}?server={server}")
}

/// `confab LINK` with the instance socket at `socket`: its exit status and stderr.
fn launch_with(socket: &Path, link: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(bin("confab"))
        .arg(link)
        .env("CONFAB_INSTANCE_SOCKET", socket)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("confab LINK");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_headless_join_through_a_link_meets_the_peer_in_that_room() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(141);
    let peer = Peer::start(
        dir.path(),
        "peer",
        &server.url,
        &room,
        &test_media("320x180", &["--duration", "4", "--wait", "30"]),
    );
    // The link names the server; the --server the harness passes points nowhere, so the call
    // only happens if the link's server is the one used.
    let linked = Peer::start(
        dir.path(),
        "linked",
        "ws://127.0.0.1:9",
        &link(&room, &server.url),
        &test_media("320x180", &["--duration", "4", "--wait", "30"]),
    );
    let linked = linked.finish(Duration::from_secs(60));
    let peer = peer.finish(Duration::from_secs(60));
    assert!(linked.status.success(), "{}", linked.stderr);
    assert!(peer.status.success(), "{}", peer.stderr);
    let stats = peer.stats.expect("peer stats");
    assert!(
        num(&stats, "/video_recv/frames_decoded") > 0.0,
        "no video from the linked side: {stats:#}"
    );
}

#[test]
fn a_bad_link_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("instance.sock");
    for (bad, reason) in [
        ("confab://join/abc", "10 letters"),
        ("confab://join/kfq-wmzt-pxd?server=http://x", "not a ws://"),
        ("confab://call/kfq-wmzt-pxd", "confab://join/CODE"),
    ] {
        let (ok, stderr) = launch_with(&socket, bad, &[]);
        assert!(!ok, "{bad} was accepted");
        assert!(stderr.contains(reason), "{bad}: {stderr}");
        let out = Command::new(bin("confab"))
            .args(["join", bad, "--headless"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "join {bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(reason),
            "join {bad}: {out:?}"
        );
    }
}

#[test]
fn a_second_launch_hands_its_link_to_the_listening_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/instance.sock");
    let mut first = confab_e2e::command(bin("confab"))
        .arg("--listen-links")
        .env("CONFAB_INSTANCE_SOCKET", &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let _first = Proc {
        child: first,
        name: "confab --listen-links".into(),
    };
    assert_eq!(lines.next().unwrap().unwrap(), "listening");

    let sent = link("kfq-wmzt-pxd", "wss://confab.example.org/ws");
    let (ok, stderr) = launch_with(&socket, &sent, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("went to the Confab already running"),
        "{stderr}"
    );
    let (ok, stderr) = launch_with(&socket, "confab://join/KFQWMZTPXD", &[]);
    assert!(ok, "{stderr}");
    // The first instance got both, in their canonical form.
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "confab://join/kfq-wmzt-pxd?server=wss%3A%2F%2Fconfab.example.org%2Fws"
    );
    assert_eq!(lines.next().unwrap().unwrap(), "confab://join/kfq-wmzt-pxd");
    // A second listener finds the first one there.
    let out = Command::new(bin("confab"))
        .arg("--listen-links")
        .env("CONFAB_INSTANCE_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_running_window_joins_the_room_of_a_link_handed_to_it() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(1280, 800);
    let server = Server::start(&[]);
    let room = room_code(142);
    let socket = dir.path().join("instance.sock");
    std::fs::write(
        dir.path().join("settings.json"),
        r#"{"name": "Window", "camera": "test", "mic": "test", "speaker": "null"}"#,
    )
    .unwrap();
    let stderr_path = dir.path().join("window.stderr");
    let window = confab_e2e::command(bin("confab"))
        .env("DISPLAY", &x.display)
        .env("CONFAB_CONFIG_DIR", dir.path())
        .env("CONFAB_INSTANCE_SOCKET", &socket)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("confab window");
    let _window = Proc {
        child: window,
        name: "confab window".into(),
    };
    // The window listens once it is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the window never listened: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let peer = Peer::start(
        dir.path(),
        "peer",
        &server.url,
        &room,
        &test_media("320x180", &["--duration", "4", "--wait", "40"]),
    );
    let (ok, stderr) = launch_with(
        &socket,
        &link(&room, &server.url),
        &[("DISPLAY", x.display.as_str())],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("went to the Confab already running"),
        "{stderr}"
    );
    let peer = peer.finish(Duration::from_secs(60));
    let window_log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        peer.status.success(),
        "the window did not join: {}\nwindow: {window_log}",
        peer.stderr
    );
    assert!(
        window_log.contains("a link from a later launch"),
        "{window_log}"
    );
    let stats = peer.stats.expect("peer stats");
    assert!(
        num(&stats, "/video_recv/frames_decoded") > 0.0,
        "no video from the window: {stats:#}\nwindow: {window_log}"
    );
}
