//! A browser joins a room: Debian's headless Chromium (driven by playwright-core, never a
//! downloaded browser) opens the web page the signaling server serves, and calls a native
//! `confab join --headless` peer: H.264 and Opus both ways, chat both ways, the same security
//! code on both sides.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use confab_e2e::relay::{lose_first, HostileRelay};
use confab_e2e::{num, room_code, serial, test_media, Peer, Server};

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Runs tests/web/browser_call.js; returns (exit success, its JSON line, stderr).
fn browser(url: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let script = web_dir().join("browser_call.js");
    assert!(
        web_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm install` in tests/web (scripts/setup.sh --test does)"
    );
    let out = Command::new("node")
        .arg(&script)
        .arg(url)
        .args(args)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A native peer and the browser meet in `room`: the native one first (the browser offers), or
/// the browser first, waiting, and the native peer arrives and offers. Returns the native peer
/// (still running) and the browser's outcome.
fn meet(
    dir: &std::path::Path,
    server: &Server,
    room: &str,
    url: &str,
    native_args: &[&str],
    browser_args: &[&'static str],
    native_first: bool,
) -> (Peer, (bool, serde_json::Value, String)) {
    if native_first {
        let native = Peer::start(dir, "native", &server.url, room, native_args);
        std::thread::sleep(Duration::from_millis(500));
        (native, browser(url, browser_args))
    } else {
        let (url, browser_args) = (url.to_owned(), browser_args.to_vec());
        let handle = std::thread::Builder::new()
            .name("browser".into())
            .spawn(move || browser(&url, &browser_args))
            .expect("invariant: the OS can start a thread");
        std::thread::sleep(Duration::from_secs(3));
        let native = Peer::start(dir, "native", &server.url, room, native_args);
        (native, handle.join().unwrap())
    }
}

/// Waits for the native peer; both sides ended well. Returns the native peer's stats.
fn both_succeeded(
    native: Peer,
    ok: bool,
    json: &serde_json::Value,
    stderr: &str,
) -> serde_json::Value {
    let native = native.finish(Duration::from_secs(60));
    assert!(ok, "browser side failed: {json}\n{stderr}");
    assert!(
        native.status.success(),
        "native side failed: {}",
        native.stderr
    );
    native.stats.expect("native stats")
}

fn call_with_browser(native_first: bool) {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(if native_first { 61 } else { 62 });
    let http = server
        .url
        .replace("ws://", "http://")
        .trim_end_matches("/ws")
        .to_owned();
    let url = format!("{http}/join/{room}?autojoin=1&name=Browser");
    let native_args = test_media(
        "640x360",
        &[
            "--duration",
            "12",
            "--wait",
            "40",
            "--chat",
            "hi from native",
        ],
    );
    let browser_args = [
        "--frames",
        "90",
        "--timeout",
        "40",
        "--hold",
        "12",
        "--chat",
        "hi from browser",
        "--expect-chat",
        "1",
        // The browser also opens 20 data channels we have no use for: each must be closed.
        "--foreign-channels",
        "20",
    ];

    let (native, (ok, json, stderr)) = meet(
        dir.path(),
        &server,
        &room,
        &url,
        &native_args,
        &browser_args,
        native_first,
    );
    let stats = both_succeeded(native, ok, &json, &stderr);

    // The browser decoded our H.264 and got our chat.
    assert!(
        json["framesDecoded"].as_f64().unwrap_or(0.0) >= 90.0,
        "{json}"
    );
    assert!(
        json["codec"]
            .as_str()
            .unwrap_or_default()
            .eq_ignore_ascii_case("video/H264"),
        "{json}"
    );
    assert_eq!(
        json["chatReceived"],
        serde_json::json!(["hi from native"]),
        "{json}"
    );
    // We decoded the browser's video and audio, and got its chat.
    assert!(
        num(&stats, "/video_recv/frames_decoded") >= 100.0,
        "{stats:#}"
    );
    assert!(
        num(&stats, "/audio_recv/frames_decoded") >= 300.0,
        "{stats:#}"
    );
    assert_eq!(
        stats["chat"]["received"],
        serde_json::json!(["hi from browser"])
    );
    // Both show the same security code, from the certificates DTLS verified and the exchange on
    // the data channel.
    assert!(json["securityCode"].is_string(), "{json}");
    assert_eq!(
        json["securityCode"], stats["security_code"],
        "{json}\n{stats:#}"
    );
    // Chrome's padding packets must not be mistaken for broken frames.
    assert!(
        num(&stats, "/video_recv/frames_dropped") <= 2.0,
        "{stats:#}"
    );
    // The channels it had no use for were closed, and chat and the code went on beside them.
    assert_eq!(
        json["foreignChannels"],
        serde_json::json!({"opened": 20, "closed": 20}),
        "{json}"
    );
}

#[test]
fn a_browser_joins_a_native_peer_who_waits() {
    call_with_browser(true);
}

#[test]
fn a_native_peer_joins_a_browser_who_waits() {
    call_with_browser(false);
}

/// A signaling relay in front of the native peer loses the first offer it would deliver: the
/// browser's (it arrived second, so it offers). The page sends its offer again and the call
/// connects.
#[test]
fn a_browser_whose_offer_is_lost_sends_it_again() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let relay = HostileRelay::start(&server.url, lose_first("offer"));
    let room = room_code(66);
    let url = confab_e2e::browser::page_url(&server.url, &room, "Browser");
    let native_args = test_media("320x180", &["--duration", "3", "--wait", "30"]);
    let native = Peer::start(dir.path(), "native", &relay.url, &room, &native_args);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, json, stderr) = browser(&url, &["--frames", "30", "--timeout", "30", "--hold", "3"]);
    let stats = both_succeeded(native, ok, &json, &stderr);
    assert!(num(&json, "/offersResent") >= 1.0, "{json}\n{stderr}");
    assert!(
        stderr.contains("no answer to our offer yet; sending it again"),
        "{stderr}"
    );
    assert!(num(&stats, "/video_recv/frames_decoded") > 0.0, "{stats:#}");
}

/// The page's security code construction gives the value engine/src/security.rs's known-vector
/// test asserts (so a change on one side only fails a test), and its exchange catches a value
/// that does not match its commitment.
#[test]
fn the_web_client_computes_the_native_security_code() {
    let script = r#"
const c = require(process.argv[1]);
(async () => {
  const code = await c.securityCode('sha-256 CC:DD', '02'.repeat(32), 'sha-256 AA:BB', '01'.repeat(32));
  const fp = await c.certificateFingerprint(new TextEncoder().encode('certificate'));
  const cheat = new c.SasExchange(new Uint8Array(32).fill(1));
  await cheat.commit();
  const other = new c.SasExchange(new Uint8Array(32).fill(2));
  cheat.onCommit(await other.commit());
  await cheat.onReveal('03'.repeat(32));
  console.log(JSON.stringify({ code, fp: fp.slice(0, 20), cheat: cheat.state }));
})();
"#;
    let page_script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../signaling/web/confab.js")
        .canonicalize()
        .expect("the web client is in the workspace");
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&page_script)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON line from node");
    assert_eq!(
        json,
        serde_json::json!({
            "code": "3795 3951 4983",
            "fp": "sha-256 03:D6:6D:D0:",
            "cheat": "failed",
        })
    );
}

/// A browser that cannot do H.264 (H.264 hidden from its codec capabilities, so it offers and
/// answers VP8 only): the call goes on with audio and chat both ways, no video, and Confab says
/// why.
fn call_with_vp8_only_browser(native_first: bool) {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(if native_first { 63 } else { 64 });
    let http = server
        .url
        .replace("ws://", "http://")
        .trim_end_matches("/ws")
        .to_owned();
    let url = format!("{http}/join/{room}?autojoin=1&name=Browser");
    let native_args = test_media(
        "320x180",
        &[
            "--duration",
            "8",
            "--wait",
            "40",
            "--chat",
            "hi from native",
        ],
    );
    let browser_args = [
        "--no-h264",
        "--frames",
        "0",
        "--timeout",
        "40",
        "--hold",
        "8",
        "--chat",
        "hi from browser",
        "--expect-chat",
        "1",
    ];
    let (native, (ok, json, stderr)) = meet(
        dir.path(),
        &server,
        &room,
        &url,
        &native_args,
        &browser_args,
        native_first,
    );
    let native = native.finish(Duration::from_secs(60));
    assert!(
        ok,
        "browser side failed: {json}\n{stderr}\nnative: {}",
        native.stderr
    );
    assert!(
        native.status.success(),
        "native side failed: {}",
        native.stderr
    );
    assert!(
        native
            .stderr
            .contains("confab: the other side sends no H.264 video"),
        "{}",
        native.stderr
    );
    let stats = native.stats.expect("native stats");
    // Audio and chat both ways; no video either way.
    assert!(
        num(&stats, "/audio_recv/frames_decoded") >= 200.0,
        "{stats:#}"
    );
    assert!(
        json["audioPacketsReceived"].as_f64().unwrap_or(0.0) >= 100.0,
        "{json}"
    );
    assert_eq!(
        stats["chat"]["received"],
        serde_json::json!(["hi from browser"])
    );
    assert_eq!(
        json["chatReceived"],
        serde_json::json!(["hi from native"]),
        "{json}"
    );
    assert_eq!(num(&stats, "/video_recv/frames_decoded"), 0.0, "{stats:#}");
    assert_eq!(json["framesDecoded"].as_f64(), Some(0.0), "{json}");
}

#[test]
fn a_vp8_only_browser_joins_a_native_peer_who_waits() {
    call_with_vp8_only_browser(true);
}

#[test]
fn a_native_peer_joins_a_vp8_only_browser_who_waits() {
    call_with_vp8_only_browser(false);
}

/// Two browsers: the page closes the data channels it has no use for (as the native peer does,
/// `a_browser_joins_a_native_peer_who_waits`), and the call goes on.
#[test]
fn the_web_page_closes_data_channels_it_does_not_use() {
    use confab_e2e::browser::{page_url, Browser};
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(67);
    let goals = ["--frames", "10", "--timeout", "40", "--hold", "3"];
    let opener_args = [&goals[..], &["--foreign-channels", "5"]].concat();
    let opener = Browser::start(
        None,
        dir.path(),
        "opener",
        &page_url(&server.url, &room, "Opener"),
        &opener_args,
    );
    std::thread::sleep(Duration::from_secs(2));
    let page = Browser::start(
        None,
        dir.path(),
        "page",
        &page_url(&server.url, &room, "Page"),
        &goals,
    );
    let opener = opener.finish(Duration::from_secs(60));
    let page = page.finish(Duration::from_secs(60));
    assert!(
        opener.ok,
        "{}\n{}",
        opener.json,
        confab_e2e::tail(&opener.stderr, 4000)
    );
    assert!(
        page.ok,
        "{}\n{}",
        page.json,
        confab_e2e::tail(&page.stderr, 4000)
    );
    assert_eq!(
        opener.json["foreignChannels"],
        serde_json::json!({"opened": 5, "closed": 5}),
        "{}",
        opener.json
    );
    assert_eq!(
        page.stderr
            .matches("closing a data channel we do not use")
            .count(),
        5,
        "{}",
        confab_e2e::tail(&page.stderr, 4000)
    );
}

/// A native peer whose decoder cannot keep up with the browser's picture asks the page for less
/// on the data channel; the page scales its picture down (`scaleResolutionDownBy`), and the
/// native peer gets the smaller picture at the full frame rate. The test hook makes a 720p frame
/// take 214 ms longer to decode, so that 480x270, which Chromium reaches 3-11 s into a call on
/// loopback (its bandwidth estimate ramps up from 180p or 360p), takes 30 ms: a slower machine
/// than any real one, so that the test does not wait for the rest of Chromium's ramp.
#[test]
fn a_native_peer_that_cannot_decode_the_browsers_picture_gets_a_smaller_one() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(76);
    let y4m = dir.path().join("pattern-720p.y4m");
    confab_e2e::browser::write_pattern_y4m(&y4m, 1280, 720, 60);
    let y4m = y4m.to_str().expect("invariant: a temp path is UTF-8");
    let url = confab_e2e::browser::page_url(&server.url, &room, "Browser");
    let native_args = test_media(
        "640x360",
        &[
            "--duration",
            "26",
            "--wait",
            "40",
            "--test-slow-decoder-ms",
            "214",
        ],
    );
    let browser_args = [
        "--frames",
        "30",
        "--timeout",
        "40",
        "--hold",
        "30",
        "--fake-video",
        y4m,
    ];
    let native = Peer::start(dir.path(), "native", &server.url, &room, &native_args);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, json, stderr) = browser(&url, &browser_args);
    let stats = both_succeeded(native, ok, &json, &stderr);
    let secs = stats["timeline"].as_array().expect("a timeline");
    for s in secs {
        eprintln!(
            "native {:>5.1} s: got {:.0} fps at {}p, {:.0} kbit/s",
            num(s, "/t_s"),
            num(s, "/recv_fps"),
            num(s, "/recv_height"),
            num(s, "/recv_kbps"),
        );
    }
    eprintln!(
        "native's decoder: load {:.2}, asked for {}; the page: {}",
        num(&stats, "/video_recv/decoder_load"),
        num(&stats, "/video_recv/asked_max_pixel_rate"),
        json["videoLimit"]
    );
    let before = secs
        .iter()
        .map(|s| num(s, "/recv_height"))
        .fold(0.0, f64::max);
    assert!(before >= 360.0, "the browser never sent 360p or more");
    let asked = num(&stats, "/video_recv/asked_max_pixel_rate");
    assert!(asked > 0.0, "the native decoder asked for nothing");
    assert_eq!(num(&json, "/videoLimit/maxPixelRate"), asked, "{json}");
    let scale = num(&json, "/videoLimit/scale");
    assert!(scale > 1.0, "{json}");
    // The page holds the smaller picture's bitrate to what it needs, as the native sender does
    // a capped rung: 0.07 bits a pixel of 720p30 scaled down, at least 150 kbit/s.
    let max_kbps = num(&json, "/videoLimit/maxBitrate") / 1000.0;
    let expected = (0.07 * 1280.0 * 720.0 * 30.0 / (scale * scale) / 1000.0).max(150.0);
    assert!(
        (max_kbps - expected).abs() < 1.0,
        "{max_kbps} kbit/s: {json}"
    );
    let last = &secs[secs.len().saturating_sub(3)..];
    for s in last {
        assert!(
            num(s, "/recv_height") < before,
            "native's last seconds: {s}"
        );
        assert!(num(s, "/recv_fps") >= 25.0, "native's last seconds: {s}");
        // The receive rate counts the packets' headers too (~40 kbit/s at 30 fps).
        assert!(
            num(s, "/recv_kbps") <= max_kbps * 1.2 + 40.0,
            "native's last seconds: {s}, the page's limit {max_kbps:.0} kbit/s"
        );
    }
}

/// A page that is hidden (another tab in front, the browser minimized) asks the native sender
/// for the least video, and for all of it once it shows again: the native peer sends 180p while
/// the page is hidden, then 720p in one step. (Headless Chromium shows every page: the harness
/// hides it in the page's DOM, `--hide`, which is what the page's script sees of a background
/// tab.) Later in the same call the page is muted while its microphone (the test signal) goes
/// on: the page tells its user, once, as the app does.
#[test]
fn a_hidden_page_asks_the_native_peer_for_the_least_video_and_a_muted_one_says_so() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(78);
    let url = confab_e2e::browser::page_url(&server.url, &room, "Browser");
    let native_args = test_media("1280x720", &["--duration", "22", "--wait", "40"]);
    // The page's microphone is the test signal, never quiet: muted 12 s in, the page says so.
    let wav = dir.path().join("signal.wav");
    confab_e2e::browser::write_signal_wav(&wav);
    let wav = wav.to_str().expect("invariant: a temp path is UTF-8");
    let browser_args = [
        "--frames",
        "30",
        "--timeout",
        "40",
        "--hold",
        "20",
        "--hide",
        "3:9",
        "--fake-audio",
        wav,
        "--mute-at",
        "12",
    ];
    let native = Peer::start(dir.path(), "native", &server.url, &room, &native_args);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, json, stderr) = browser(&url, &browser_args);
    let stats = both_succeeded(native, ok, &json, &stderr);
    confab_e2e::assert_least_video_then_all(&confab_e2e::sent_by_second(&stats));
    assert_eq!(
        json["askedLeastVideo"], false,
        "shown again at the end: {json}"
    );
    assert_eq!(
        json["mutedNotices"], 1,
        "one notice for 8 s of speaking into a muted microphone: {json}"
    );
}
