//! Bandwidth adaptation against Chromium: a Confab peer in one NetLab home and Debian's headless
//! Chromium (the web client) in the other, both uplinks on the constrained profile (1 Mbit/s,
//! 40 ms each way), 720p pattern video both ways. Each test asserts one direction of the call.

use std::time::Duration;

use confab_e2e::browser::{page_url, write_pattern_y4m, Browser, BrowserOutcome};
use confab_e2e::netem::{NetLab, Profile, Side};
use confab_e2e::timeline::{end, growth, mean, series, window};
use confab_e2e::{num, room_code, serial, tail, test_media, Peer};
use serde_json::Value;

/// How long the native peer stays in the call.
const CALL_SECS: u32 = 20;

/// One call on the constrained profile: Confab in `confab_side`'s home, Chromium in the other;
/// the one in `first` joins first. Returns (Confab's stats, the browser's run).
fn call(confab_side: Side, first: Side, room: u64) -> (Value, BrowserOutcome) {
    let mut lab = NetLab::new(Profile::CONSTRAINED);
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&[]);
    let room = room_code(room);
    let y4m = dir.path().join("pattern-720p.y4m");
    write_pattern_y4m(&y4m, 1280, 720, 60);
    let y4m = y4m
        .to_str()
        .expect("invariant: a temp path is UTF-8")
        .to_owned();
    let duration = CALL_SECS.to_string();
    let native_args = test_media("1280x720", &["--duration", &duration, "--wait", "30"]);
    // The browser stays until the native peer leaves (its hold outlasts the call).
    let browser_args = [
        "--frames",
        "30",
        "--timeout",
        "30",
        "--hold",
        "60",
        "--fake-video",
        &y4m,
    ];
    let browser_side = if confab_side == Side::Alice {
        Side::Bob
    } else {
        Side::Alice
    };
    let url = page_url(&server.url, &room, "Chromium");
    let start_native = || {
        Peer::start_in(
            lab.home(confab_side),
            dir.path(),
            "confab",
            &server.url,
            &room,
            &native_args,
        )
    };
    let start_browser = || {
        Browser::start(
            Some(lab.home(browser_side)),
            dir.path(),
            "chromium",
            &url,
            &browser_args,
        )
    };
    let (native, browser) = if first == confab_side {
        let native = start_native();
        std::thread::sleep(Duration::from_millis(500));
        (native, start_browser())
    } else {
        let browser = start_browser();
        // Chromium takes a moment to start and join.
        std::thread::sleep(Duration::from_secs(3));
        (start_native(), browser)
    };
    let native = native.finish(Duration::from_secs(u64::from(CALL_SECS) + 60));
    let browser = browser.finish(Duration::from_secs(30));
    eprintln!("{}", lab.report());
    assert!(native.status.success(), "confab: {}", native.stderr);
    assert!(
        browser.ok,
        "browser: {}\n{}",
        browser.json,
        tail(&browser.stderr, 3000)
    );
    let stats = native
        .stats
        .unwrap_or_else(|| panic!("confab: no stats\n{}", native.stderr));
    print_both(&stats, &browser);
    (stats, browser)
}

fn print_both(native: &Value, browser: &BrowserOutcome) {
    eprintln!(
        "chromium {} sends {} ({} to {})",
        browser.json["browserVersion"],
        browser.json["media"],
        browser.json["stats"]["encoder"],
        browser.json["stats"]["sendCodec"],
    );
    for line in browser
        .stderr
        .lines()
        .filter(|l| l.contains("getUserMedia"))
    {
        eprintln!("chromium: {line}");
    }
    eprintln!("confab video_send {}", native["video_send"]);
    eprintln!("confab video_recv {}", native["video_recv"]);
    eprintln!("confab: t send_kbps target size fps | recv_fps freezes concealed");
    for s in native["timeline"].as_array().expect("a timeline") {
        eprintln!(
            "  {:5.1} {:5.0} {:5.0} {:4}x{:<4} {:3.0} | {:3.0} {} {:.2}",
            num(s, "/t_s"),
            num(s, "/send_kbps"),
            num(s, "/target_kbps"),
            num(s, "/send_width"),
            num(s, "/send_height"),
            num(s, "/send_fps"),
            num(s, "/recv_fps"),
            num(s, "/freezes"),
            num(s, "/audio_concealed"),
        );
    }
    eprintln!("chromium: t send_kbps size fps limitation | recv_fps size freezes concealed");
    for s in browser.timeline() {
        eprintln!(
            "  {:5.1} {:5.0} {:4}x{:<4} {:3.0} {:9} | {:3.0} {}x{} {} {:.2}",
            s["t_s"].as_f64().unwrap_or(0.0),
            s["send_kbps"].as_f64().unwrap_or(0.0),
            s["send_width"],
            s["send_height"],
            s["send_fps"].as_f64().unwrap_or(0.0),
            s["quality_limitation"].as_str().unwrap_or("-"),
            s["recv_fps"].as_f64().unwrap_or(0.0),
            s["recv_width"],
            s["recv_height"],
            s["freezes"],
            s["audio_concealed"].as_f64().unwrap_or(0.0),
        );
    }
}

/// The browser's last 10 s of the call: its final sample is the second the native peer left in.
fn browser_last_10s(browser: &BrowserOutcome) -> Vec<&Value> {
    let tl = browser.timeline();
    let last = end(tl);
    window(tl, last - 10.5, last - 0.5)
}

#[test]
fn chromium_receives_confab_on_a_constrained_link() {
    let _machine = serial();
    let (native, browser) = call(Side::Alice, Side::Alice, 3001);
    let t_end = num(&native, "/duration_s");
    let native_tl = native["timeline"].as_array().expect("a timeline");
    let send_kbps = mean(&series(
        &window(native_tl, t_end - 10.0, t_end),
        "send_kbps",
    ));
    let last = browser_last_10s(&browser);
    let fps = mean(&series(&last, "recv_fps"));
    let freezes = growth(&last, "freezes");
    let concealed = mean(&series(&last, "audio_concealed"));
    eprintln!(
        "confab -> chromium: last 10 s video {send_kbps:.0} kbit/s sent, {fps:.1} fps received, \
         {freezes} freezes, audio concealed {:.1}% ({} browser seconds)",
        concealed * 100.0,
        last.len()
    );
    assert!(
        last.len() >= 9,
        "the browser sampled only {} seconds",
        last.len()
    );
    assert!(
        send_kbps <= 950.0,
        "confab sends {send_kbps:.0} kbit/s into a 1 Mbit/s link"
    );
    assert!(send_kbps >= 300.0, "confab uses only {send_kbps:.0} kbit/s");
    assert!(
        fps >= 20.0,
        "chromium decodes {fps:.1} fps of confab's video"
    );
    assert!(freezes <= 2.0, "{freezes} freezes in the last 10 s");
    assert!(
        concealed <= 0.05,
        "chromium conceals {:.1}% of confab's audio",
        concealed * 100.0
    );
}

#[test]
fn confab_receives_chromium_on_a_constrained_link() {
    let _machine = serial();
    let (native, browser) = call(Side::Bob, Side::Alice, 3002);
    let last = browser_last_10s(&browser);
    let send_kbps = mean(&series(&last, "send_kbps"));
    let t_end = num(&native, "/duration_s");
    let native_tl = native["timeline"].as_array().expect("a timeline");
    let recv = window(native_tl, t_end - 10.0, t_end);
    let fps = mean(&series(&recv, "recv_fps"));
    let freezes = growth(&recv, "freezes");
    let concealed = mean(&series(&recv, "audio_concealed"));
    eprintln!(
        "chromium -> confab: last 10 s video {send_kbps:.0} kbit/s sent, {fps:.1} fps received, \
         {freezes} freezes, audio concealed {:.1}%",
        concealed * 100.0
    );
    assert!(
        last.len() >= 9,
        "the browser sampled only {} seconds",
        last.len()
    );
    // Chromium's own adaptation: the link is filled, not flooded, by the browser too.
    assert!(
        (100.0..=950.0).contains(&send_kbps),
        "chromium sends {send_kbps:.0} kbit/s into a 1 Mbit/s link"
    );
    assert!(
        fps >= 20.0,
        "confab decodes {fps:.1} fps of chromium's video"
    );
    assert!(freezes <= 2.0, "{freezes} freezes in the last 10 s");
    assert!(
        concealed <= 0.05,
        "confab conceals {:.1}% of chromium's audio",
        concealed * 100.0
    );
}
